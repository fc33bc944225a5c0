"""The monitor in-process: a Runtime on a migrated SQLite database, alice's delegation, and the
whole WMProxyApplication with a fixed caller (no TLS; the real TLS path is in
tests/integration/test_monitor.py)."""

from __future__ import annotations

from io import BytesIO

import pytest

from tests.support import CALLER_KEY, caller_from_environ
from tests.unit.services.conftest import alice, bob, delegated, rt  # noqa: F401 - the services' fixtures
from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime
from wmproxy.soap.app import WMProxyApplication


def request(app: WMProxyApplication, principal: Principal, path: str, query: str = "",
            method: str = "GET", body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """One request as ``principal``; ``headers``: request headers (``Sec-Fetch-Site``...)."""
    environ: dict[str, object] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/xml; charset=utf-8",
        "wsgi.input": BytesIO(body), "wsgi.url_scheme": "https", "SERVER_NAME": "localhost",
        "SERVER_PORT": "7443", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": BytesIO(),
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ[CALLER_KEY] = principal
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    chunks = app(environ, lambda status, headers, exc_info=None: seen.append((status, headers)))
    try:
        data = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return seen[0][0], dict(seen[0][1]), data


@pytest.fixture
def app(rt: Runtime) -> WMProxyApplication:  # noqa: F811 - the imported fixture, requested
    return WMProxyApplication(rt, authenticate=caller_from_environ)
