"""A caller the site does not admit cannot hold the request threads by sending its request
slowly (docs/load.md, "Callers the site refuses").

mallory's certificate is issued by a trusted CA, so her TLS handshake succeeds, but the test
deployments' ``authorized_users`` do not admit her. The service read a SOAP body whole before
it authenticated and authorised the caller, and drained a refused sandbox upload at the
client's pace; ``io_timeout`` only cuts a client that makes no progress. A body announced at
16 MB and sent one byte every ``io_timeout / 2`` on three times as many connections as there are
request threads held every thread: no admitted user was answered. Now the caller is checked
before the body is read, and a refused caller's body is read for at most a short, bounded time.

Every wait is for a condition with a generous deadline; no duration is asserted.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import GET_VERSION_BODY, SOAP, WMP, reference_client, session_for
from tests.integration.service import Deployment, tls_client_context
from tests.support import ECHO_JDL, delegate, wait_for

pytestmark = pytest.mark.integration

#: Request threads of the test deployments (tests/integration/service.py: 2 workers x 4 threads).
THREADS = 8
#: Connections mallory drips on: several times the threads, so that each worker's are all held.
DRIPPING = 3 * THREADS
#: Seconds without progress after which the service cuts a client (a small ``io_timeout``):
#: mallory's drips, one byte every half of it, are progress.
IO_TIMEOUT = 4
#: What mallory announces: the largest SOAP request the service takes.
ANNOUNCED = 16_000_000
#: Seconds a test waits for what the fix brings (an answer, a closed connection) at most.
PATIENCE = 90
GET_VERSION = GET_VERSION_BODY


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_LOAD_IO_TIMEOUT": str(IO_TIMEOUT)}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=env) as dep:
        yield dep


def mallory_socket(deployment: Deployment, pki: Pki) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=PATIENCE)
    return tls_client_context(pki.ca_dir, pki.users["mallory"].proxy).wrap_socket(raw, server_hostname="localhost")


def soap_head(deployment: Deployment, length: int) -> bytes:
    return (f"POST {urlsplit(deployment.endpoint).path} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nContent-Length: {length}\r\n\r\n").encode()


def answer_while_dripping(sock: ssl.SSLSocket) -> bytes:
    """What the service sends on ``sock`` until it closes the connection, while this client sends
    one more byte of its body every ``IO_TIMEOUT / 2`` seconds (never a pause the service may cut).
    One thread reads and writes the socket, in turn. Without an answer within :data:`PATIENCE`
    seconds, what came (nothing)."""
    deadline = time.monotonic() + PATIENCE
    received = b""
    sock.settimeout(IO_TIMEOUT / 2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            continue
        except OSError:  # reset after the answer
            break
        if not chunk:
            break
        received += chunk
    return received


def test_dripping_unadmitted_bodies_do_not_stop_an_admitted_call(deployment: Deployment, pki: Pki) -> None:
    # mallory's whole request is refused with the operation's typed fault (getVersion declares
    # GenericFault only: 1207 "user not authorized"), as before
    mallory = session_for(pki.users["mallory"].proxy, pki.ca_dir)
    for _ in range(2):  # twice: the kept-alive connection of a whole body keeps serving
        refused = mallory.post(deployment.endpoint, data=GET_VERSION,
                               headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=PATIENCE)
        assert refused.status_code == 500, refused.text[:400]
        assert "GenericFault" in refused.text and "user not authorized" in refused.text  # getVersion's kind
    drips = [mallory_socket(deployment, pki) for _ in range(DRIPPING)]
    for sock in drips:
        sock.sendall(soap_head(deployment, ANNOUNCED))
    reopened = [0]
    stop = threading.Event()

    def drip() -> None:
        """A byte on each connection every IO_TIMEOUT / 2; one the service closed (its send fails)
        is replaced by a new one that begins another body: mallory never lets go."""
        while not stop.is_set():
            for index, sock in enumerate(drips):
                try:
                    sock.sendall(b" ")
                except OSError:
                    sock.close()
                    drips[index] = mallory_socket(deployment, pki)
                    drips[index].sendall(soap_head(deployment, ANNOUNCED))
                    reopened[0] += 1
            stop.wait(IO_TIMEOUT / 2)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        # Without the fix every request thread reads a dripped body for ever and this call is never
        # answered (requests' timeout fails the test).
        reply = session_for(pki.users["alice"].proxy, pki.ca_dir).post(
            deployment.endpoint, data=GET_VERSION, headers={"Content-Type": "text/xml; charset=utf-8"},
            timeout=PATIENCE)
        assert reply.status_code == 200, reply.text[:400]
        assert "<version>" in reply.text
        assert dripping.is_alive()  # answered while mallory drips
        # the service answers and closes the dripped connections, though mallory never stops sending
        wait_for(lambda: reopened[0], lambda count: count >= DRIPPING, timeout=PATIENCE,
                 what="the service to close as many dripped connections as mallory opened first")
    finally:
        stop.set()
        dripping.join(timeout=PATIENCE)
        for sock in drips:
            sock.close()


def test_a_refused_body_that_never_comes_whole_gets_the_fault_of_its_operation(deployment: Deployment,
                                                                                pki: Pki) -> None:
    """The first bytes name jobRegister; the rest of the announced 16 MB never comes."""
    begun = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:jobRegister xmlns:w="{WMP}"><jdl>').encode() + b"x" * 2000
    sock = mallory_socket(deployment, pki)
    try:
        sock.sendall(soap_head(deployment, ANNOUNCED) + begun)
        answer = answer_while_dripping(sock)
    finally:
        sock.close()
    # Without the fix the service waits for the rest of the body: no answer.
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500"), answer[:400]
    assert b"connection: close" in head.lower()
    assert b"AuthorizationFault" in body and b"user not authorized" in body


def test_a_refused_upload_is_not_read_at_the_callers_pace(deployment: Deployment, pki: Pki) -> None:
    """mallory's PUT into alice's input sandbox is refused (403) while its body still drips, and its
    connection closed: without the fix the refusal was sent once the body had been drained (up to
    64 MiB at the client's pace), i.e. never while the client drips."""
    alice = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegation = uuid.uuid4().hex[:12]
    delegate(alice, pki.users["alice"].proxy, delegation)
    job = alice.wmproxy.jobRegister(ECHO_JDL, delegation)
    uri = str(alice.wmproxy.getSandboxDestURI(job.id, "https")[0])
    sock = mallory_socket(deployment, pki)
    try:
        sock.sendall(f"PUT {urlsplit(uri).path}/dripped HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Length: 500000\r\n\r\n".encode() + b"x" * 100)
        answer = answer_while_dripping(sock)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 403"), answer[:400]
    assert b"connection: close" in head.lower()
    assert alice.session.head(f"{uri}/dripped", timeout=PATIENCE).status_code == 404
