"""The inspection agent presents the job's proxy as it is now (a red-team review, M3).

The agent loaded ``X509_USER_PROXY`` into its TLS context once, at start. Renewal and
re-delegation replace the job's ``user.proxy`` while it runs, but the agent kept presenting
the chain it had loaded: once that expired every poll was refused, so the long jobs renewal
exists for could not be inspected. The agent now reloads the proxy when the file changed
(checked before each request, and once more after a 403). A real TLS server records the
client certificate each request presented.
"""

from __future__ import annotations

import os
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.execution.inspection_agent import Agent


def leaf_der(proxy: Path) -> bytes:
    """The DER of the first certificate of a proxy file (the proxy itself)."""
    text = proxy.read_text()
    end = "-----END CERTIFICATE-----"
    first = text[text.index("-----BEGIN CERTIFICATE-----"):text.index(end) + len(end)]
    return ssl.PEM_cert_to_DER_cert(first)


class AgentService:
    """A TLS server on 127.0.0.1 that verifies client proxy chains (as gunicorn does) and
    records the leaf certificate each request presented; ``answer`` (the leaf's DER → the
    HTTP status) answers it, 204 by default."""

    def __init__(self, pki: Pki) -> None:
        self.presented: list[bytes] = []
        self.answer: Callable[[bytes], int] = lambda leaf: 204
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                leaf = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
                service.presented.append(leaf)
                self.send_response(service.answer(leaf))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - its name
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.host_cert, pki.host_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(capath=str(pki.ca_dir))
        context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/wmproxy-inspection/agent"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(60)


@pytest.fixture
def service(pki: Pki) -> Iterator[AgentService]:
    running = AgentService(pki)
    yield running
    running.close()


def agent(pki: Pki, service: AgentService, work: Path) -> Agent:
    shutil.copy(pki.proxy("alice", 3600), work / "user.proxy")
    return Agent(str(work), {"WMPROXY_INSPECTION_URL": service.url, "WMPROXY_INSPECTION_TOKEN": "0" * 64,
                             "WMPROXY_INSPECTION_CA_DIR": str(pki.ca_dir), "GLITE_WMS_JOBID": "https://h:9000/j",
                             "X509_USER_PROXY": str(work / "user.proxy")})


def renew(pki: Pki, work: Path) -> bytes:
    """Replace the job's ``user.proxy`` as renewal does (a new file renamed over it); the new
    proxy's leaf."""
    fresh = pki.proxy("alice", 7200)
    os.replace(shutil.copy(fresh, work / ".user.proxy.tmp"), work / "user.proxy")
    return leaf_der(fresh)


def test_the_agent_presents_the_renewed_proxy(pki: Pki, service: AgentService, tmp_path: Path) -> None:
    job_agent = agent(pki, service, tmp_path)
    assert job_agent.next_task() is None
    assert service.presented == [leaf_der(tmp_path / "user.proxy")]
    renewed = renew(pki, tmp_path)
    assert job_agent.next_task() is None
    assert renewed != service.presented[0]
    assert service.presented[1] == renewed
    assert job_agent.next_task() is None  # unchanged since: the same context, the same proxy
    assert service.presented[2] == renewed


def test_a_proxy_replaced_during_a_refused_request_is_tried_once_more(
        pki: Pki, service: AgentService, tmp_path: Path) -> None:
    job_agent = agent(pki, service, tmp_path)
    old = leaf_der(tmp_path / "user.proxy")
    renewed: list[bytes] = []

    def answer(leaf: bytes) -> int:
        if leaf == old:  # expired, say: the service refuses it; renewal replaces it meanwhile
            renewed.append(renew(pki, tmp_path))
            return 403
        return 204

    service.answer = answer
    assert job_agent.next_task() is None  # not an OSError "the service answered 403"
    assert service.presented == [old, renewed[0]]


def test_a_proxy_file_that_cannot_be_loaded_keeps_the_one_loaded(
        pki: Pki, service: AgentService, tmp_path: Path) -> None:
    job_agent = agent(pki, service, tmp_path)
    old = leaf_der(tmp_path / "user.proxy")
    (tmp_path / "user.proxy").write_text("-----BEGIN CERTIFICATE-----\ntrunc")  # being written in place
    assert job_agent.next_task() is None
    assert service.presented == [old]
    renewed = renew(pki, tmp_path)  # written out: loaded
    assert job_agent.next_task() is None
    assert service.presented == [old, renewed]
