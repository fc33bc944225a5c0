"""A connection closed after its answer lingers for its client's FIN without stopping the
gunicorn worker's event loop (``wmproxy.soap.tls_worker``, docs/load.md).

gunicorn closes a ``Connection: close`` connection gracefully (RFC 9112 §9.6: FIN sent, then
the client's bytes read until its own FIN, up to 2 s) on its event loop's thread, which meanwhile
accepts nothing, runs no TLS handshake and serves no kept-alive connection. Any client with a
trusted certificate that asked for ``Connection: close`` and never closed held its worker's loop
2 s per connection: with many of them at once no one was served for minutes.

Every wait is for a condition with a generous deadline; no duration is asserted.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import GET_VERSION_BODY, session_for
from tests.integration.service import Deployment, tls_client_context
from tests.support import wait_for

pytestmark = pytest.mark.integration

#: Clients that ask for ``Connection: close`` and never close: without the fix each held its
#: worker's loop 2 s, about LINGERING seconds of each of the two workers' loops in all, longer than
#: PATIENCE.
LINGERING = 120
#: Seconds a test waits for an answer at most.
PATIENCE = 60
GET_VERSION = GET_VERSION_BODY


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state")) as dep:
        yield dep


def _answered_then_held(deployment: Deployment, pki: Pki, answered: list[int], release: threading.Event) -> None:
    """One getVersion with ``Connection: close``, its whole answer read; then the connection held
    open (no FIN, nothing read) until ``release``."""
    raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=3 * PATIENCE)
    sock: ssl.SSLSocket = tls_client_context(pki.ca_dir, pki.users["alice"].proxy).wrap_socket(
        raw, server_hostname="localhost")
    try:
        sock.sendall((f"POST {urlsplit(deployment.endpoint).path} HTTP/1.1\r\nHost: localhost\r\n"
                      f"Connection: close\r\nContent-Type: text/xml; charset=utf-8\r\n"
                      f"Content-Length: {len(GET_VERSION)}\r\n\r\n").encode() + GET_VERSION)
        if _whole_answer(sock).startswith(b"HTTP/1.1 200"):
            answered.append(1)
        release.wait(3 * PATIENCE)
    finally:
        sock.close()


def _whole_answer(sock: ssl.SSLSocket) -> bytes:
    """The response on ``sock``: its head and as many body bytes as its Content-Length says."""
    received = b""
    while True:
        head, found, body = received.partition(b"\r\n\r\n")
        if found:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return received
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def test_clients_that_never_close_do_not_stop_the_others(deployment: Deployment, pki: Pki) -> None:
    answered: list[int] = []
    release = threading.Event()
    with ThreadPoolExecutor(LINGERING) as pool:
        held = [pool.submit(_answered_then_held, deployment, pki, answered, release) for _ in range(LINGERING)]
        try:
            wait_for(lambda: len(answered), lambda count: count >= 10, timeout=3 * PATIENCE,
                     what="the first clients that never close to be answered")
            # Without the fix both workers' loops spend 2 s on each of those connections in turn:
            # this call waits behind them (minutes) and its timeout fails the test.
            reply = session_for(pki.users["alice"].proxy, pki.ca_dir).post(
                deployment.endpoint, data=GET_VERSION, headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=PATIENCE)
            assert reply.status_code == 200, reply.text[:400]
            wait_for(lambda: len(answered), lambda count: count == LINGERING, timeout=3 * PATIENCE,
                     what="every client that never closes to be answered")
        finally:
            release.set()
        for future in held:
            future.result(timeout=3 * PATIENCE)
