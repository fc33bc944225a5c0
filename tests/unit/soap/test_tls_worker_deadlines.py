"""The per-operation deadline of a request thread's connection (``[load] io_timeout``;
``wmproxy.soap.tls_worker.DeadlineSocket``, ``HandshakeWorker.handle``; docs/load.md).

A real TLS connection over a socket pair: the service's side is a ``DeadlineSocket`` (the SSL
context's ``sslsocket_class``, as the worker makes it). Each wait is one socket timeout of a
fraction of a second; no duration is measured.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from wmproxy.soap.tls_worker import DeadlineSocket, HandshakeWorker, PeerStalledError

IO_TIMEOUT = 0.2


@pytest.fixture
def pair(pki: Pki, tmp_path: Path) -> Iterator[tuple[DeadlineSocket, ssl.SSLSocket]]:
    """(the service's side, the client's side) of a TLS connection past its handshake."""
    cert, key = pki.ca.issue_host("localhost", tmp_path / "host")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    server_ctx.sslsocket_class = DeadlineSocket
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.settimeout(30)
    server = server_ctx.wrap_socket(ours, server_side=True, do_handshake_on_connect=False)
    assert isinstance(server, DeadlineSocket)
    clients: list[ssl.SSLSocket] = []
    thread = threading.Thread(target=lambda: clients.append(client_ctx.wrap_socket(theirs)))
    thread.start()
    server.do_handshake()
    thread.join(30)
    server.io_timeout = IO_TIMEOUT
    try:
        yield server, clients[0]
    finally:
        server.close()
        clients[0].close()


def test_blocking_mode_gets_the_deadline(pair: tuple[DeadlineSocket, ssl.SSLSocket]) -> None:
    server, _ = pair
    server.setblocking(True)  # gthread, when a request thread takes the connection
    assert server.gettimeout() == IO_TIMEOUT
    server.setblocking(False)  # gthread, when it goes back to the event loop
    assert server.gettimeout() == 0.0
    with pytest.raises(ssl.SSLWantReadError):
        server.recv(1)


def test_without_io_timeout_blocking_is_plain(pair: tuple[DeadlineSocket, ssl.SSLSocket]) -> None:
    server, _ = pair
    server.io_timeout = None
    server.setblocking(True)
    assert server.gettimeout() is None


def test_a_silent_client_is_cut_and_one_that_sends_is_read(pair: tuple[DeadlineSocket, ssl.SSLSocket]) -> None:
    server, client = pair
    server.setblocking(True)
    client.sendall(b"a")
    assert server.recv(10) == b"a"
    with pytest.raises(PeerStalledError, match=r"the client sent nothing for 0\.2 s"):
        server.recv(10)


def test_a_client_that_reads_nothing_is_cut(pair: tuple[DeadlineSocket, ssl.SSLSocket]) -> None:
    server, _ = pair
    server.setblocking(True)
    with pytest.raises(PeerStalledError, match="the client read nothing"):
        server.sendall(b"x" * (16 << 20))  # far more than the socket buffers hold


def test_a_timeout_set_by_gunicorn_stays_a_timeout(pair: tuple[DeadlineSocket, ssl.SSLSocket]) -> None:
    """gunicorn's bounded drain of an unread body and its graceful close set their own timeout
    and expect ``TimeoutError``, not the abandonment of the request."""
    server, _ = pair
    server.setblocking(True)
    server.settimeout(IO_TIMEOUT)
    with pytest.raises(TimeoutError) as caught:
        server.recv(10)
    assert not isinstance(caught.value, PeerStalledError)


class _Conn:
    def __init__(self) -> None:
        self.client = ("192.0.2.7", 51234)
        self.shut: list[int] = []
        self.sock = self

    def shutdown(self, how: int) -> None:
        self.shut.append(how)


def test_the_worker_closes_a_stalled_connection_with_one_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from gunicorn.config import Config
    from gunicorn.workers.gthread import ThreadWorker

    def stalled(self: Any, conn: Any) -> Any:
        raise PeerStalledError("the client sent nothing for 2 s")

    monkeypatch.setattr(ThreadWorker, "handle", stalled)
    worker = HandshakeWorker(0, os.getpid(), [], None, 30, Config(), logging.getLogger("test.tls_worker"))
    try:
        conn = _Conn()
        with caplog.at_level(logging.WARNING, logger="test.tls_worker"):
            assert worker.handle(conn) is False  # gthread's finish_request closes it
        assert conn.shut == [socket.SHUT_RDWR]  # so that close does not linger for the silent peer
        assert [r.getMessage() for r in caplog.records] == [
            "Closing the connection of ('192.0.2.7', 51234): the client sent nothing for 2 s"]
        assert all(r.exc_info is None for r in caplog.records)
    finally:
        worker.tmp.close()
