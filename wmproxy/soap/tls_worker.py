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
in the loop as an idle kept-alive connection does (gunicorn's keep-alive timeout). Everything
else (keep-alive, the request threads, the application) is gunicorn's ``gthread`` worker
unchanged.

Use: ``worker_class = "wmproxy.soap.tls_worker.HandshakeWorker"`` (deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import time
from functools import partial
from typing import Any

from gunicorn import http  # type: ignore[import-untyped]
from gunicorn import sock as gsock
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from wmproxy.config import load_settings
from wmproxy.text import log_text

_ACCEPT_ERRORS = (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK)


class HandshakeWorker(ThreadWorker):
    """``gthread`` with the TLS handshake in the event loop and a handshake deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: sockets in their handshake → (deadline, client address, server address, registered event)
        self.handshaking: dict[ssl.SSLSocket, tuple[float, Any, Any, int]] = {}
        self.handshake_timeout = 10.0

    def init_process(self) -> None:
        self.handshake_timeout = load_settings().load.handshake_timeout
        super().init_process()

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
            tls = gsock.ssl_context(self.cfg).wrap_socket(
                client, server_side=True, do_handshake_on_connect=False,
                suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
        except (OSError, ValueError):
            self.nr_conns -= 1
            client.close()
            return
        self.handshaking[tls] = (time.monotonic() + self.handshake_timeout, address, listener.getsockname(), 0)
        self._step(tls)

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
        conn = TConn(self.cfg, tls, address, server)
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
        """gunicorn's pending connections, then the handshakes past their deadline."""
        super().murder_pending()
        now = time.monotonic()
        for tls in [t for t, (deadline, *_) in self.handshaking.items() if deadline <= now]:
            self.log.debug("TLS handshake timed out")
            self._drop(tls)
