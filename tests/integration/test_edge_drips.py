"""A caller the site does not admit cannot hold the request threads by dripping a request body
the service answers without reading (docs/load.md, "Callers the site refuses").

mallory's certificate passes the TLS handshake; ``authorized_users`` does not admit her. The
sandbox edge parsed the path and the file names before it knew the caller: a bad path or name
was refused as an admitted caller's is, after draining the body at the client's pace (up to
64 MiB). An answer sent while the body was unread (the router's 404, ``?wsdl`` with a body)
kept the connection alive, and gunicorn then drained the body itself, 1 KiB at a time, checking
its deadline only between reads: about 25 minutes a connection at a byte every 1.5 s. As many
dripping connections as request threads stopped the service. Now the caller is admitted before
the path is looked at, and every answer that leaves body bytes unread closes its connection.

The module also sends the edge the malformed requests of the same review (a malformed chunked
upload, a MOVE to a path longer than PATH_MAX): each is the client's fault, a 400, never a 500.

Every wait is for a condition with a generous deadline; no duration is asserted.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import reference_client
from tests.integration.service import Deployment, tls_client_context
from tests.support import ECHO_JDL, delegate, wait_for

pytestmark = pytest.mark.integration

#: Request threads of the test deployments (tests/integration/service.py: 2 workers x 4 threads).
THREADS = 8
#: Connections mallory drips on at a time: several times the threads.
DRIPPING = 3 * THREADS
#: Seconds without progress after which the service cuts a client: mallory's drips, a byte every
#: half of it, are progress.
IO_TIMEOUT = 4
#: What mallory announces (more than the sandbox edge drains for anyone: 64 MiB is not reached
#: at her pace either way).
ANNOUNCED = 500_000
#: Seconds a test waits for what the fix brings (an answer, a closed connection) at most.
PATIENCE = 90


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_LOAD_IO_TIMEOUT": str(IO_TIMEOUT)}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=env) as dep:
        yield dep


@pytest.fixture(scope="module")
def job_path(deployment: Deployment, pki: Pki) -> str:
    """The URL path of the input sandbox of a job of alice's (``/<SandboxDir>/Ab/<job>/input``)."""
    alice = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegation = uuid.uuid4().hex[:12]
    delegate(alice, pki.users["alice"].proxy, delegation)
    job = alice.wmproxy.jobRegister(ECHO_JDL, delegation)
    return urlsplit(str(alice.wmproxy.getSandboxDestURI(job.id, "https")[0])).path


class Dripper:
    """mallory's connections, each a request whose body comes a byte every ``IO_TIMEOUT / 2``
    seconds; one the service closes is replaced by a new one (she never lets go), and what the
    service sent on it until it closed is kept in :attr:`answers`."""

    def __init__(self, deployment: Deployment, pki: Pki, request_line: str) -> None:
        self.deployment = deployment
        self.context = tls_client_context(pki.ca_dir, pki.users["mallory"].proxy)
        self.head = (f"{request_line} HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Length: {ANNOUNCED}\r\n\r\n").encode() + b"x" * 100
        self.answers: list[bytes] = []
        self.stop = threading.Event()
        self.socks = [self._open() for _ in range(DRIPPING)]
        self.received = [b""] * DRIPPING
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.deployment.port), timeout=PATIENCE)
        sock = self.context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(self.head)
        sock.settimeout(0.05)
        return sock

    def _closed(self, index: int) -> bool:
        """Read what came on connection ``index``; True once the service has closed it."""
        sock = self.socks[index]
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                return False
            except OSError:  # reset after the answer
                return True
            if not chunk:
                return True
            self.received[index] += chunk

    def _run(self) -> None:
        while not self.stop.is_set():
            for index, sock in enumerate(self.socks):
                if self.stop.is_set():
                    return
                closed = self._closed(index)
                if not closed:
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        closed = True
                if closed:
                    sock.close()
                    self.answers.append(self.received[index])
                    self.received[index] = b""
                    with contextlib.suppress(OSError):
                        self.socks[index] = self._open()
            self.stop.wait(IO_TIMEOUT / 2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=PATIENCE)
        for sock in self.socks:
            sock.close()


#: mallory's requests, built from the path of a job's input sandbox and the SOAP endpoint's: a file
#: name the edge refuses, a path outside any job area, a path no route serves, ?wsdl with a body.
REQUESTS: dict[str, Callable[[str, str], str]] = {
    "bad name": lambda job, endpoint: f"PUT {job}/bad%01name",
    "bad sandbox path": lambda job, endpoint: f"PUT /{job.split('/')[1]}/zz",
    "unknown route": lambda job, endpoint: "POST /nope",
    "wsdl with a body": lambda job, endpoint: f"GET {endpoint}?wsdl",
}


@pytest.mark.parametrize("request_kind", list(REQUESTS))
def test_dripped_bodies_of_a_refused_caller_do_not_hold_the_threads(
        deployment: Deployment, pki: Pki, job_path: str, request_kind: str) -> None:
    alice = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    dripper = Dripper(deployment, pki, REQUESTS[request_kind](job_path, urlsplit(deployment.endpoint).path))
    try:
        # Without the fix every request thread reads a dripped body (for 64 MiB or ~25 minutes)
        # and this listing is never answered: requests' timeout fails the test.
        service = urlsplit(deployment.endpoint)
        listing = alice.session.get(f"{service.scheme}://{service.netloc}{job_path}/", timeout=PATIENCE)
        assert listing.status_code == 200, listing.text[:400]
        assert dripper.thread.is_alive()  # answered while mallory drips
        # the service answers every dripped request and closes its connection, though mallory
        # never stops sending
        wait_for(lambda: len(dripper.answers), lambda count: count >= DRIPPING, timeout=PATIENCE,
                 what="the service to answer and close as many dripped connections as mallory opened first")
    finally:
        dripper.close()
    for answer in dripper.answers[:DRIPPING]:
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith((b"http/1.1 4", b"http/1.1 200")), answer[:400]
        assert b"connection: close" in head, answer[:400]


def alice_answer(deployment: Deployment, pki: Pki, request: bytes) -> bytes:
    """What the service sends alice on a connection of her own for ``request`` until it closes it
    (or :data:`PATIENCE` seconds)."""
    raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=PATIENCE)
    with tls_client_context(pki.ca_dir, pki.users["alice"].proxy).wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(request)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and b"connection: close" not in received.lower():
                    head, _, body = received.partition(b"\r\n\r\n")
                    length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length:")]
                    if length and len(body) >= length[0]:
                        break
    return received


def test_a_malformed_chunked_upload_is_a_400(deployment: Deployment, pki: Pki, job_path: str) -> None:
    """A chunk size that is not hexadecimal: gunicorn's InvalidChunkSize escaped as a 500 with a
    traceback in the log."""
    answer = alice_answer(deployment, pki, (
        f"PUT {job_path}/bad.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode() + b"10\r\n" + b"y" * 16 + b"\r\nzz\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:400]
    assert b"truncated or malformed request body" in body
    alice = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    service = urlsplit(deployment.endpoint)
    assert alice.session.head(f"{service.scheme}://{service.netloc}{job_path}/bad.bin",
                              timeout=PATIENCE).status_code == 404
