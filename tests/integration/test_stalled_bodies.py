"""Clients that stop sending their request body cannot hold the request threads
(``[load] io_timeout``; wmproxy/soap/tls_worker.py ``DeadlineSocket``, docs/load.md).

gthread makes a request thread's socket blocking without a deadline: uploads announcing
500 kB that sent 100 kB and went quiet held every thread for ever, and no other call was
answered. With the fix each read must make progress within ``io_timeout`` (4 s here): the
stalled uploads are cut, their partial files removed and nothing committed, while an upload
that keeps making progress, however slowly, completes.

Every wait is for a condition with a generous deadline; no duration is asserted.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import SOAP, WMP, ReferenceClient, reference_client, session_for
from tests.integration.service import Deployment, closed_by_peer, tls_client_context
from tests.support import ECHO_JDL, delegate, wait_for

pytestmark = pytest.mark.integration

#: Request threads of the test deployments (tests/integration/service.py: 2 workers x 4 threads).
THREADS = 8
#: Stalled uploads opened: several times the threads, so that each worker's are all held.
STALLED = 3 * THREADS
#: Seconds without progress after which the service cuts a client (a small ``io_timeout``).
IO_TIMEOUT = 4
ANNOUNCED = 500_000
SENT = 100_000
GET_VERSION = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getVersion xmlns:w="{WMP}"/></e:Body>'
               "</e:Envelope>").encode()


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_LOAD_IO_TIMEOUT": str(IO_TIMEOUT)}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=env) as dep:
        yield dep


@pytest.fixture
def area(deployment: Deployment, pki: Pki) -> tuple[ReferenceClient, str]:
    """alice's client and the input sandbox URI of a job she registered (on a delegation of its own)."""
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegation = uuid.uuid4().hex[:12]
    delegate(ref, pki.users["alice"].proxy, delegation)
    job = ref.wmproxy.jobRegister(ECHO_JDL, delegation)
    return ref, str(ref.wmproxy.getSandboxDestURI(job.id, "https")[0])


def tls_socket(deployment: Deployment, pki: Pki) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=60)
    return tls_client_context(pki.ca_dir, pki.users["alice"].proxy).wrap_socket(raw, server_hostname="localhost")


def put_head(path: str, length: int) -> bytes:
    return f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n".encode()


def leftovers(deployment: Deployment) -> list[Path]:
    """Files of the stalled uploads in the sandbox area, committed or partial (``.stallN.*.tmp``)."""
    return sorted((deployment.state / "sandbox").rglob("*stall*"))


def test_stalled_uploads_are_cut_and_others_served(deployment: Deployment, pki: Pki,
                                                   area: tuple[ReferenceClient, str]) -> None:
    alice, uri = area
    path = urlsplit(uri).path
    stalled: list[ssl.SSLSocket] = []
    try:
        for i in range(STALLED):
            sock = tls_socket(deployment, pki)
            stalled.append(sock)
            sock.sendall(put_head(f"{path}/stall{i}", ANNOUNCED) + b"x" * SENT)  # then silence
        # Without a deadline every request thread now waits for ever for the rest of a body, and
        # this call is never answered (requests' own 90 s timeout fails the test).
        reply = session_for(pki.users["bob"].proxy, pki.ca_dir).post(
            deployment.endpoint, data=GET_VERSION, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=90)
        assert reply.status_code == 200, reply.text[:400]
        assert "<version>" in reply.text
        # Each stalled upload is cut: its connection closed, its partial file removed, nothing committed.
        wait_for(lambda: all(closed_by_peer(s) for s in stalled), timeout=120, what="the stalled uploads closed")
        wait_for(lambda: leftovers(deployment), lambda found: not found, timeout=60, what="no file of a stalled upload")
        listing = alice.session.get(uri + "/", timeout=60)
        assert listing.status_code == 200, listing.text[:400]
        assert "stall" not in listing.text
        for i in range(STALLED):
            assert alice.session.head(f"{uri}/stall{i}", timeout=60).status_code == 404
    finally:
        for sock in stalled:
            sock.close()


def test_slow_upload_that_progresses_is_not_cut(deployment: Deployment, pki: Pki,
                                                area: tuple[ReferenceClient, str]) -> None:
    """One byte at a time, each well within ``io_timeout`` of the last, for several times ``io_timeout``."""
    alice, uri = area
    body = b"slow but alive"
    sock = tls_socket(deployment, pki)
    try:
        sock.sendall(put_head(f"{urlsplit(uri).path}/slow.txt", len(body)))
        for byte in body:
            time.sleep(IO_TIMEOUT / 8)  # pacing the client (8 times within the deadline on a loaded machine)
            sock.sendall(bytes([byte]))  # one TLS record each: every read of the service makes progress
        reply = sock.recv(4096).decode()
    finally:
        sock.close()
    assert reply.startswith("HTTP/1.1 201"), reply
    assert alice.session.get(f"{uri}/slow.txt", timeout=60).content == body
