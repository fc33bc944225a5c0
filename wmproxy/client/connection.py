"""How the client meets a WMProxy: the TLS context of every connection, the deadline of a call
and the largest reply it reads. Both paths use it: the standard-library POST of :mod:`.direct`
and the requests session of :mod:`.session` (zeep calls, sandbox transfers).

* **Trust**: only the grid CA directory (``X509_CERT_DIR``) and its CRLs. Every CA of the
  service's path must have its current CRL there (``<hash>.r0``, as fetch-crl keeps it): a
  revoked host certificate, a CA without a CRL or a CRL past its nextUpdate fail the handshake,
  as the service itself refuses such a client (``wmproxy.security.chain``: CRL_CHECK_ALL).
* **Host name**: matched against the certificate's subjectAltName only, never its subject CN.
* **Credential**: the user's proxy file (certificate, key, chain).
* **Deadline**: :func:`call_deadline` bounds a whole call (connect, handshake, request, the
  whole reply), not each read only: a peer sending a byte a second cannot hold it longer.
* **Size**: a reply is read up to :data:`MAX_REPLY` bytes (after decompression), no further.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Most bytes of one SOAP reply (a WSDL included), counted after any Content-Encoding is
#: undone: four times the service's largest request (``[limits] max_request_bytes``, 16 MiB),
#: room for a registered JDL or the status of a collection of 10,000 nodes.
MAX_REPLY = 64 * 1024 * 1024


class _Deadline(threading.local):
    """The end (``time.monotonic()``) of the call this thread makes, and its length; None outside
    a call. (A thread-local, not a ContextVar: ``threading`` is loaded already, ``contextvars``
    is not on the light path.)"""

    entry: tuple[float, float] | None = None


_CURRENT = _Deadline()

_UNSET: Any = object()


@contextmanager
def call_deadline(seconds: float | None) -> Iterator[None]:
    """Every socket operation of this thread's connections inside the block ends by ``seconds``
    from now (each waits at most what is left, below its own timeout); once they are spent, the
    next one raises :class:`TimeoutError`. None: no deadline (each operation its own timeout)."""
    if seconds is None:
        yield
        return
    previous = _CURRENT.entry
    _CURRENT.entry = (time.monotonic() + seconds, seconds)
    try:
        yield
    finally:
        _CURRENT.entry = previous


class ClosedWhileSending(ssl.SSLEOFError):
    """The peer ended the connection without a TLS close (an SSL EOF) after the handshake, while
    the request was being sent: a service refusing a request over its ``[limits]
    max_request_bytes`` closes it so. Not a handshake failure (:mod:`wmproxy.client.faults`)."""


class _DeadlineSocket(ssl.SSLSocket):
    """An SSLSocket whose handshake, reads and writes each wait at most until the call's deadline
    (:func:`call_deadline`); outside a deadline, its own timeout (``settimeout``) as usual."""

    _own_timeout: float | None = _UNSET
    _armed = False

    def settimeout(self, value: float | None) -> None:
        self._own_timeout = value
        self._armed = False
        super().settimeout(value)

    def _arm(self) -> None:
        if self._own_timeout is _UNSET:  # inside SSLSocket._create, before its settimeout
            return
        entry = _CURRENT.entry
        if entry is None:
            if self._armed:
                super().settimeout(self._own_timeout)
                self._armed = False
            return
        end, seconds = entry
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the call did not end within its {seconds:g} s timeout")
        own = self._own_timeout
        super().settimeout(left if own is None or left < own else own)
        self._armed = True

    def do_handshake(self, block: bool = False) -> None:
        self._arm()
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - SSLSocket's own names
        self._arm()
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        self._arm()
        with _sending():
            return super().write(data)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        with _sending():
            return super().send(data, flags)


@contextmanager
def _sending() -> Iterator[None]:
    """An SSL EOF of a write, which follows the handshake, as :class:`ClosedWhileSending`; so are
    a broken pipe and a reset (the peer closed with our bytes unread; Python 3.13's ``ssl`` raises
    these where 3.11's raises the SSL EOF). Those two urllib3 would swallow, to read an answer the
    peer never sent: the user then read "closed the connection without an answer"."""
    try:
        yield
    except (ssl.SSLEOFError, BrokenPipeError, ConnectionResetError) as exc:
        raise ClosedWhileSending(*exc.args) from exc


def tls_context(proxy_file: str, ca_dir: str) -> ssl.SSLContext:
    """The client TLS context: ``ca_dir`` (CAs and CRLs) the only trust, CRLs of the whole chain
    checked, host names matched against subjectAltName only, ``proxy_file`` as the credential,
    socket operations bounded by :func:`call_deadline`.

    Raises:
        ssl.SSLError, OSError: ``ca_dir`` or ``proxy_file`` cannot be loaded.
    """
    context = ssl.create_default_context(capath=ca_dir)
    # Python 3.13's default adds RFC 5280 strictness (an Authority Key Identifier in every
    # certificate...), which grid CAs do not all meet: off, as on the service's side
    # (wmproxy.gunicorn_conf) and in Python 3.11 and 3.12.
    context.verify_flags = (context.verify_flags & ~ssl.VERIFY_X509_STRICT) | ssl.VERIFY_CRL_CHECK_CHAIN
    context.hostname_checks_common_name = False
    context.sslsocket_class = _DeadlineSocket
    context.load_cert_chain(proxy_file)
    return context
