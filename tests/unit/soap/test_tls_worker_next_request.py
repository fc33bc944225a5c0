"""A request thread serves its kept-alive connection's next request itself when it comes soon
(``wmproxy.soap.tls_worker.HandshakeWorker.handle``; docs/performance.md, "Stop 51").

gthread's own request handling is replaced by a stand-in that reads one byte (a "request")
and answers keep-alive; the connection is one end of a socket pair, the client the other. The
next request is written before the thread looks for it, so no wait depends on timing.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from wmproxy.soap.tls_worker import HandshakeWorker


class _Sock:
    """The service's end: what the worker uses of gunicorn's socket (no TLS buffer here)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> int:
        return 0


class _Parser:
    def __init__(self) -> None:
        self.unreader = type("Unreader", (), {"buf": io.BytesIO()})()


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.client = ("192.0.2.7", 51234)
        self.sock = _Sock(sock)
        self.parser = _Parser()


@pytest.fixture
def ends() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.settimeout(30)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The requests gthread's handling (replaced) read, in order; each answers keep-alive."""
    from gunicorn.workers.gthread import ThreadWorker

    requests: list[bytes] = []

    def one_request(self: Any, conn: Any) -> Any:
        requests.append(conn.sock.sock.recv(1))
        return True

    monkeypatch.setattr(ThreadWorker, "handle", one_request)
    return requests


@pytest.fixture
def worker() -> Iterator[HandshakeWorker]:
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("threads", 4)
    made = HandshakeWorker(0, os.getpid(), [], None, 30, cfg, logging.getLogger("test.tls_worker"))
    made.alive = True
    try:
        yield made
    finally:
        made.tmp.close()


def _handed(worker: HandshakeWorker, conn: _Conn, others: int) -> Any:
    """``worker.handle(conn)`` as gthread calls it, with ``others`` more connections in the
    worker's request threads (queued or served)."""
    worker.in_threads = others + 1  # this one, counted by enqueue_req
    return worker.handle(conn)


def test_the_next_request_is_served_on_the_thread_while_another_thread_is_free(
        worker: HandshakeWorker, served: list[bytes], ends: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = ends
    conn = _Conn(ours)
    theirs.sendall(b"ab")  # a request, and the next one before the first is answered
    assert _handed(worker, conn, others=0) is True  # kept alive: back to the event loop at the end
    assert served == [b"a", b"b"]  # both on this thread, without going through the event loop
    assert worker.in_threads == 0  # given back


def test_the_connection_goes_back_when_no_other_thread_is_free(
        worker: HandshakeWorker, served: list[bytes], ends: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = ends
    conn = _Conn(ours)
    theirs.sendall(b"ab")
    assert _handed(worker, conn, others=3) is True  # 4 threads, every other one taken
    assert served == [b"a"]  # "b" waits in the event loop, behind the connections before it
    # A connection queued for a thread goes first, even when this one's next request has been
    # read already (gthread's finish_request gives it a thread again, behind the queued one).
    served.clear()
    conn.parser.unreader.buf.write(b"c")
    assert _handed(worker, conn, others=4) is True
    assert served == [b"b"]


def test_a_stopping_worker_hands_the_connection_back(
        worker: HandshakeWorker, served: list[bytes], ends: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = ends
    conn = _Conn(ours)
    theirs.sendall(b"ab")
    worker.alive = False  # SIGTERM: gthread answers what comes with "Connection: close"
    assert _handed(worker, conn, others=0) is True
    assert served == [b"a"]
