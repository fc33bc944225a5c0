"""getTotalQuota / getFreeQuota on a service whose quotas are off (``[jobs] quota_hard_limit = 0``,
the default): ``softLimit`` and ``hardLimit`` -1, what the reference answered without a quota
system; it never produced GetQuotaManagementFault (§4.4), and the gLite UI takes a limit ≤ 0 for
"no quota".

The WSGI application runs in-process with a fixed ``authenticate`` callable (no TLS); the
requests are what a client built from the reference WSDL sends (rpc/literal, empty wrapper).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest
from lxml import etree

from tests.support import close_runtime
from wmproxy.config import load_settings
from wmproxy.domain import Principal
from wmproxy.security.sealing import Sealer
from wmproxy.services.runtime import Runtime
from wmproxy.soap.app import WMProxyApplication
from wmproxy.store.schema import Base

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WMP = "http://glite.org/wms/wmproxy"
ALICE = "/C=XX/O=wmproxy-test/OU=Users/CN=Alice"


#: Runtimes made by :func:`make_app` in the running test, disposed after it (Python 3.13 warns about
#: an SQLite connection left for the garbage collector, whichever later test collects it).
_RUNTIMES: list[Runtime] = []


@pytest.fixture(autouse=True)
def _dispose_runtimes() -> Iterator[None]:
    yield
    while _RUNTIMES:
        close_runtime(_RUNTIMES.pop())


def make_app(tmp_path: Path, quota: str) -> WMProxyApplication:
    key = tmp_path / "store.key"
    key.write_bytes(Sealer.generate_key())
    config = tmp_path / "wmproxy.conf"
    config.write_text(
        f"[database]\nurl = sqlite:///{tmp_path}/wmproxy.db\n"
        f"[security]\nstore_key_file = {key}\nca_dir = {tmp_path}/certificates\n"
        f"[sandbox]\nroot = {tmp_path}/sandbox\n"
        f"[jobs]\n{quota}"
    )
    runtime = Runtime.from_settings(load_settings(config, environ={}))
    _RUNTIMES.append(runtime)
    Base.metadata.create_all(runtime.session_factory.kw["bind"])
    return WMProxyApplication(runtime, authenticate=lambda environ: Principal(dn=ALICE))


def post(app: Callable, operation: str) -> tuple[str, etree._Element]:
    body = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:{operation} xmlns:w="{WMP}"/></e:Body></e:Envelope>').encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/glite_wms_wmproxy_server", "QUERY_STRING": "",
        "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": BytesIO(body), "wsgi.url_scheme": "https", "SERVER_NAME": "localhost", "SERVER_PORT": "7443",
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": BytesIO(),
    }
    status: list[str] = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
    reply = etree.fromstring(b"".join(chunks))
    return status[0], reply.find(f"{{{SOAP}}}Body")[0]


@pytest.fixture
def quotas_off(tmp_path: Path) -> WMProxyApplication:
    return make_app(tmp_path, "quota_soft_limit = 0\nquota_hard_limit = 0\n")


def assert_no_quota(status: str, body: etree._Element, operation: str) -> None:
    assert status.startswith("200")
    assert etree.QName(body) == etree.QName(WMP, f"{operation}Response")
    assert [(c.tag, c.text) for c in body] == [("softLimit", "-1"), ("hardLimit", "-1")]


@pytest.mark.parametrize("operation", ["getTotalQuota", "getFreeQuota"])
def test_quota_operations_answer_no_quota_when_quotas_are_off(quotas_off: WMProxyApplication, operation: str) -> None:
    assert_no_quota(*post(quotas_off, operation), operation)


@pytest.mark.parametrize("operation", ["getTotalQuota", "getFreeQuota"])
def test_the_default_service_answers_no_quota(tmp_path: Path, operation: str) -> None:
    assert_no_quota(*post(make_app(tmp_path, ""), operation), operation)


@pytest.mark.parametrize("operation", ["getTotalQuota", "getFreeQuota"])
def test_only_a_soft_limit_still_means_quotas_off(tmp_path: Path, operation: str) -> None:
    app = make_app(tmp_path, "quota_soft_limit = 1000\nquota_hard_limit = 0\n")
    assert_no_quota(*post(app, operation), operation)


def test_quotas_on_answer_in_process(tmp_path: Path) -> None:
    app = make_app(tmp_path, "quota_soft_limit = 1000\nquota_hard_limit = 2000\n")
    for operation in ("getTotalQuota", "getFreeQuota"):
        status, body = post(app, operation)
        assert status.startswith("200")
        assert etree.QName(body) == etree.QName(WMP, f"{operation}Response")
        assert [(c.tag, c.text) for c in body] == [("softLimit", "1000"), ("hardLimit", "2000")]
