"""A gunicorn worker whose TLS handshakes run off the request threads (``docs/load.md``).

gunicorn's ``gthread`` worker hands every accepted connection to a request thread, which
then runs the TLS handshake on a blocking socket without a deadline: 200 clients trickling
a ClientHello a byte at a time held every thread and nobody else was served (issue 10).

:class:`HandshakeWorker` does the handshake in the worker's event loop instead: the accepted
socket is wrapped non-blocking (``do_handshake_on_connect=False``), each
``do_handshake()`` step runs when the socket is ready, and a client that has not finished
within ``[load] handshake_timeout`` seconds is disconnected. Only a connection that has
completed the handshake, i.e. presented a client certificate the CA directory verifies,
reaches a request thread, and only once its request has begun to arrive: until then it waits
in the loop as an idle kept-alive connection does (gunicorn's keep-alive timeout).

On a request thread, gthread makes the socket blocking without a deadline: a client that
stopped sending its request body (or reading its response) held the thread for ever, and as
many such clients as threads stopped the service. The connection's socket is a
:class:`DeadlineSocket`: while a request thread uses it, each read and write must make progress
within ``[load] io_timeout`` seconds, else the request is abandoned (:class:`PeerStalledError`,
one log line) and the connection closed. Everything else (keep-alive, the request threads, the
application) is gunicorn's ``gthread`` worker unchanged.

A caller the application refuses before reading its request body (not authenticated, not
admitted) must not hold a thread at its pace either: :func:`read_deadline` bounds the total time
of the reads of what the application still reads of it, and :func:`close_connection` ends the
connection after the answer without reading the rest (``docs/load.md``, "Callers the site
refuses").

A connection closed after its answer (``Connection: close``, an error) lingers for its client's
FIN as gunicorn's ``close_graceful`` does (RFC 9112 §9.6: unread request bytes must not make the
kernel reset the connection and cut the answer's last segment), but in the event loop without
blocking it: gunicorn waited up to 2 s per connection on the loop itself, so a client with a
trusted certificate that asked for ``Connection: close`` and never closed stopped every accept,
handshake and kept-alive connection of its worker for 2 s a connection.

Use: ``worker_class = "wmproxy.soap.tls_worker.HandshakeWorker"`` (deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, cast

from gunicorn import http  # type: ignore[import-untyped]
from gunicorn import sock as gsock
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from wmproxy.config import load_settings
from wmproxy.text import log_text
from wmproxy.web.unread import gunicorn_response

_ACCEPT_ERRORS = (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK)
#: Seconds a connection closed after its answer waits for its client's FIN at most, and bytes it
#: reads and drops meanwhile at most (gunicorn's ``close_graceful``'s).
LINGER_SECONDS = 2.0
LINGER_BYTES = 65536


class PeerStalledError(BaseException):
    """The client made no progress within ``[load] io_timeout`` while a request thread read its
    request or wrote its response.

    A :class:`BaseException`, as gunicorn's own abort (``SystemExit``) is: the application's
    handlers of ``Exception`` or ``OSError`` (a 500 reply, a drain of the rest of the body)
    would wait for the stalled client again. It unwinds the request (an upload's ``finally``
    and ``except BaseException`` remove its partial file) up to :meth:`HandshakeWorker.handle`,
    which closes the connection.
    """


class ReadDeadlineError(TimeoutError):
    """A read under :func:`read_deadline` did not complete before that deadline (the caller's
    total allowance, shorter than ``[load] io_timeout``)."""


#: environ key of gunicorn's ``start_response`` for this request (:meth:`HandshakeWorker.load_wsgi`):
#: :func:`close_connection` reaches the response through it.
_START_RESPONSE_KEY = "wmproxy.gunicorn_start_response"


@contextlib.contextmanager
def read_deadline(environ: dict[str, Any], seconds: float) -> Iterator[None]:
    """Within the block, each read of the request's socket also ends ``seconds`` from now:
    one that has not completed by then raises :class:`ReadDeadlineError`, however steadily the
    client sends. No effect without a :class:`DeadlineSocket` (tests in process)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, DeadlineSocket):
        yield
        return
    sock.read_until = time.monotonic() + seconds
    try:
        yield
    finally:
        sock.read_until = None


def close_connection(environ: dict[str, Any]) -> None:
    """End the request's connection after its answer, which says ``Connection: close``, without
    reading what the client still sends (neither gunicorn's drain of an unread body nor its
    graceful close's linger in the event loop): for a caller the service refuses outright, whose
    unread body must not hold a request thread or the loop. Call before ``start_response``;
    without gunicorn's response (tests in process), nothing happens."""
    response = gunicorn_response(environ.get(_START_RESPONSE_KEY))
    if response is None:
        return
    response.force_close()  # as wmproxy.web.unread.force_close; then, unlike it, no graceful close either:
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, DeadlineSocket):
        sock.abandoned = True


class _WithResponse:
    """The worker's WSGI application, which finds gunicorn's ``start_response`` in the environ
    (:data:`_START_RESPONSE_KEY`)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ[_START_RESPONSE_KEY] = start_response
        return self.application(environ, start_response)

    def stop(self) -> None:
        """The application's ``stop`` (:meth:`HandshakeWorker.handle_exit`), if it has one."""
        stop = getattr(self.application, "stop", None)
        if callable(stop):
            stop()


class DeadlineSocket(ssl.SSLSocket):
    """A TLS socket whose blocking mode has a per-operation deadline.

    gthread calls ``setblocking(True)`` when a request thread takes the connection and
    ``setblocking(False)`` when it goes back to the event loop. Here the former sets a timeout of
    :attr:`io_timeout` seconds instead: each read (one TLS record or more) and each write must
    complete within it. A timeout under that deadline raises :class:`PeerStalledError`; one
    gunicorn sets itself with ``settimeout`` (its bounded drain of an unread body, its graceful
    close) stays the ``TimeoutError`` it expects.
    """

    #: Seconds each operation may wait in blocking mode; None: no deadline (plain ``SSLSocket``).
    io_timeout: float | None = None
    #: ``time.monotonic()`` by which each read must have completed (:func:`read_deadline`), or None.
    read_until: float | None = None
    #: The connection is closed without reading the rest of the request (:func:`close_connection`).
    abandoned = False
    _deadline_armed = False

    def setblocking(self, flag: bool) -> None:
        if flag and self.io_timeout is not None:
            super().settimeout(self.io_timeout)
            self._deadline_armed = True
        else:
            super().setblocking(flag)
            self._deadline_armed = False

    def settimeout(self, value: float | None) -> None:
        super().settimeout(value)
        self._deadline_armed = False

    # recv and recv_into read through read(); sendall writes through send(). Each turns a timeout
    # under the deadline into PeerStalledError (_raise_if_stalled) in its own ``except``, not through a
    # context manager: they run for every TLS record a request reads or writes (issue 14).
    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - SSLSocket's signature
        if self.read_until is not None:
            return self._read_by(len, buffer)
        try:
            return super().read(len, buffer)
        except TimeoutError:
            self._raise_if_stalled("sent nothing")
            raise

    def _read_by(self, len: int, buffer: Any) -> Any:  # noqa: A002 - SSLSocket's signature
        """A read that also ends at :attr:`read_until` (:class:`ReadDeadlineError`)."""
        remaining = cast(float, self.read_until) - time.monotonic()
        if remaining <= 0:
            raise ReadDeadlineError("the read deadline has passed")
        if not self._deadline_armed or (self.io_timeout is not None and remaining >= self.io_timeout):
            try:
                return super().read(len, buffer)
            except TimeoutError:
                self._raise_if_stalled("sent nothing")
                raise
        super().settimeout(remaining)  # not self.settimeout: the io_timeout deadline stays armed
        try:
            return super().read(len, buffer)
        except TimeoutError:
            raise ReadDeadlineError("the read deadline has passed") from None
        finally:
            super().settimeout(self.io_timeout)

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except TimeoutError:
            self._raise_if_stalled("read nothing")
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except TimeoutError:
            self._raise_if_stalled("read nothing")
            raise

    def _raise_if_stalled(self, stalled: str) -> None:
        """For a timeout under the deadline, raise :class:`PeerStalledError` ("the client
        <stalled>"); for another (one gunicorn set with ``settimeout``) return: the caller
        re-raises its ``TimeoutError``."""
        if self._deadline_armed:
            raise PeerStalledError(f"the client {stalled} for {self.io_timeout:g} s") from None


class _Conn(TConn):
    """gthread's connection whose graceful close lingers in the event loop (``linger``, the
    worker's) instead of blocking it."""

    def __init__(self, *args: Any, linger: Callable[[socket.socket], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linger = linger

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.linger(self.sock)
        else:
            super().close(graceful)


class HandshakeWorker(ThreadWorker):
    """``gthread`` with the TLS handshake in the event loop and a handshake deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: sockets in their handshake → (deadline, client address, server address, registered event)
        self.handshaking: dict[ssl.SSLSocket, tuple[float, Any, Any, int]] = {}
        #: sockets closed after their answer, waiting for the client's FIN → [deadline, bytes read]
        self.lingering: dict[socket.socket, list[float]] = {}
        self.handshake_timeout = 10.0
        self.io_timeout = 60.0
        #: the last error that left an accepted connection without TLS (:meth:`_no_tls`)
        self.tls_error: str | None = None

    def init_process(self) -> None:
        # The master's settings (wmproxy.gunicorn_conf.post_fork), else the file's.
        load = (getattr(self, "wmproxy_settings", None) or load_settings()).load
        self.handshake_timeout, self.io_timeout = load.handshake_timeout, load.io_timeout
        super().init_process()

    def handle(self, conn: TConn) -> Any:
        """gthread's request handling on a request thread; a client that stalls (no progress
        within ``[load] io_timeout``) loses its request and its connection, with one log line."""
        try:
            kept = super().handle(conn)
            if getattr(conn.sock, "abandoned", False):  # close_connection: answered, not read further
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
                return False
            return kept
        except PeerStalledError as exc:
            self.log.warning("Closing the connection of %s: %s", conn.client, exc)
            # finish_request closes it, gracefully: in the event loop, reading until the peer
            # closes, for up to 2 s. Shut down now, that close ends at once for a stalled peer.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            return False

    def load_wsgi(self) -> None:
        """gunicorn's application, called with gunicorn's ``start_response`` in the environ
        (:func:`close_connection` needs its response)."""
        super().load_wsgi()
        settings = getattr(self, "wmproxy_settings", None)  # the master's (wmproxy.gunicorn_conf.post_fork)
        use_settings = getattr(getattr(self, "wsgi"), "use_settings", None)  # noqa: B009 - set by gunicorn
        if settings is not None and callable(use_settings):
            use_settings(settings)  # not the file again: a replacement worker after an edit with a typo
        self.wsgi = _WithResponse(getattr(self, "wsgi"))  # noqa: B009 - set by gunicorn, untyped

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM, a graceful stop: the application's held waits (inspection long-polls, up to
        30 s) are answered at once (its ``stop``), then gthread waits for the requests in flight."""
        stop = getattr(getattr(self, "wsgi", None), "stop", None)  # None while the app still loads
        if callable(stop):
            stop()
        super().handle_exit(sig, frame)

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection and start its handshake (without a request thread)."""
        if not self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_ERRORS:
                raise
            return
        self.nr_conns += 1
        client.setblocking(False)
        try:
            context = gsock.ssl_context(self.cfg)
            context.sslsocket_class = DeadlineSocket
            tls = cast(DeadlineSocket, context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False,
                suppress_ragged_eofs=self.cfg.suppress_ragged_eofs))
        except (OSError, ValueError) as exc:  # no TLS context (wmproxy.gunicorn_conf builds one at start)
            self.nr_conns -= 1
            client.close()
            self._no_tls(exc)
            return
        tls.io_timeout = self.io_timeout
        self.handshaking[tls] = (time.monotonic() + self.handshake_timeout, address, listener.getsockname(), 0)
        self._step(tls)

    def _no_tls(self, exc: Exception) -> None:
        """A connection closed because it could not be given TLS: logged (ERROR) once per
        different error, not once per connection."""
        why = log_text(exc)
        if why != self.tls_error:
            self.tls_error = why
            self.log.error("Closing the connections accepted: no TLS context: %s", why)

    def _step(self, tls: ssl.SSLSocket, _fileobj: Any = None) -> None:
        _, address, server, _ = self.handshaking[tls]
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._wait(tls, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._wait(tls, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            self.log.debug("TLS handshake with %s failed: %s", address, log_text(exc))
            self._drop(tls)
            return
        self._forget(tls)
        conn = _Conn(self.cfg, tls, address, server, linger=self._linger)
        conn.initialized = True
        conn.parser = http.get_parser(self.cfg, tls, address)
        if tls.pending():  # the request came with the handshake's last flight
            conn.data_ready = True
            self.enqueue_req(conn)
            return
        # Nothing to read yet: the connection waits in the loop, as a kept-alive one does, and
        # goes to a request thread when its request arrives; one silent for gunicorn's
        # keep-alive timeout is closed (gunicorn's pending connections). Handed to a thread
        # now, it would hold the thread in a blocking read without a deadline.
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(tls, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _wait(self, tls: ssl.SSLSocket, event: int) -> None:
        deadline, address, server, registered = self.handshaking[tls]
        if registered == event:
            return
        if registered:
            self.poller.modify(tls, event, partial(self._step, tls))
        else:
            self.poller.register(tls, event, partial(self._step, tls))
        self.handshaking[tls] = (deadline, address, server, event)

    def _forget(self, tls: ssl.SSLSocket) -> None:
        _, _, _, registered = self.handshaking.pop(tls)
        if registered:
            self.poller.unregister(tls)

    def _drop(self, tls: ssl.SSLSocket) -> None:
        self._forget(tls)
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            tls.close()

    def murder_pending(self) -> None:
        """gunicorn's pending connections, then the handshakes past their deadline and the
        lingering connections past theirs."""
        super().murder_pending()
        now = time.monotonic()
        for tls in [t for t, (deadline, *_) in self.handshaking.items() if deadline <= now]:
            self.log.debug("TLS handshake timed out")
            self._drop(tls)
        for sock in [s for s, (deadline, _) in self.lingering.items() if deadline <= now]:
            self._end_lingering(sock)

    # --- closing after the answer, without blocking the loop --------------------------

    def _linger(self, sock: socket.socket) -> None:
        """Close ``sock`` as gunicorn's ``close_graceful`` does (FIN sent, the client's bytes read
        and dropped until its FIN, :data:`LINGER_BYTES` or :data:`LINGER_SECONDS`), the waiting
        done by the event loop (:meth:`_drain_lingering`, :meth:`murder_pending`). Runs on the
        loop's thread, as gthread's ``finish_request`` that calls it."""
        try:
            sock.shutdown(socket.SHUT_WR)  # an SSLSocket drops its TLS layer: what follows is raw
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._drain_lingering)
        except (OSError, ValueError, KeyError):  # gone already, or closed: nothing to wait for
            with contextlib.suppress(OSError):
                sock.close()
            return
        self.lingering[sock] = [time.monotonic() + LINGER_SECONDS, 0]

    def _drain_lingering(self, sock: socket.socket) -> None:
        state = self.lingering.get(sock)
        if state is None:
            return
        try:
            while state[1] < LINGER_BYTES:
                data = sock.recv(4096)
                if not data:  # the client's FIN
                    break
                state[1] += len(data)
            else:
                self._end_lingering(sock)  # it keeps sending: enough
                return
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return  # nothing more for now: wait
        except OSError:
            pass
        self._end_lingering(sock)

    def _end_lingering(self, sock: socket.socket) -> None:
        self.lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()
