"""Fakes for client tests: a requests Session that replays recorded SOAP envelopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from lxml import etree

from wmproxy.client import WMProxyClient

ENDPOINT = "https://wms.example.org:7443/glite_wms_wmproxy_server"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(body: str, ns: str = "http://glite.org/wms/wmproxy") -> bytes:
    """A SOAP 1.1 envelope as gSOAP writes it (ns1 prefix for the port namespace)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:ns1="{ns}"><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>'
    ).encode()


def response(status: int, content: bytes, content_type: str = "text/xml; charset=utf-8") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = content
    r.headers["Content-Type"] = content_type
    r.encoding = "utf-8"
    return r


class FakeSession(requests.Session):
    """Records SOAP posts and answers them with ``reply(request_element) -> Response``."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[str, etree._Element, dict[str, str]]] = []
        self.reply: Callable[[etree._Element], requests.Response] = lambda _el: response(
            500, envelope("")
        )
        self.trust_env = False

    def post(  # type: ignore[override]
        self, url: str, data: bytes, headers: dict[str, str], timeout: Any = None, **_: Any
    ) -> requests.Response:
        root = etree.fromstring(data)
        wrapper = root.find(f"{{{SOAP_ENV}}}Body")[0]
        self.posts.append((url, wrapper, dict(headers)))
        return self.reply(wrapper)

    def get(self, url: str, **_: Any) -> requests.Response:  # type: ignore[override]
        raise AssertionError(f"unexpected GET {url}")


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def client(session: FakeSession) -> WMProxyClient:
    return WMProxyClient(ENDPOINT, "/nonexistent/proxy", "/nonexistent/ca", session=session)


@pytest.fixture
def answer(session: FakeSession) -> Callable[[str, str], None]:
    """``answer(body_xml, ns)``: make every call return 200 with that body."""

    def set_answer(body: str, ns: str = "http://glite.org/wms/wmproxy") -> None:
        session.reply = lambda _el: response(200, envelope(body, ns))

    return set_answer
