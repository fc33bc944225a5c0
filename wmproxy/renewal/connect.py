"""TCP connections of the renewal worker under one deadline, the name lookup included.

``socket.create_connection`` and ``socket.getaddrinfo`` look the server's name up with the
C library's resolver, which no timeout of Python bounds: with a resolver that does not answer
(a name server dropping queries) glibc waits ``timeout`` x ``attempts`` x name servers
(``resolv.conf``; 5 s x 2 x 3 = 30 s by default) before it gives up, whatever time the attempt
had left, and the renewal thread with it (past its claim's lease, holding a slot of the worker's
pool). :func:`getaddrinfo_within` runs the lookup in a short-lived daemon thread and waits for
it until the deadline only: the attempt then fails (a :class:`LookupTimeoutError`, a
``TimeoutError``) and the thread ends by itself when the resolver gives up. At most
:data:`MAX_PENDING_LOOKUPS` such threads run at once; beyond them a lookup fails at once
rather than adding threads a broken resolver would hold.

A name that is an IP address (``ipaddress`` form) needs no resolver and is looked up in the
caller's thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Name lookups waiting for the resolver at once, in a process, past which a lookup fails at
#: once (a resolver that does not answer holds each for up to its own timeout): the renewal
#: worker's most threads (``--threads``, 1-64; each waits for one lookup at a time), so that
#: lookups answered in time never meet it.
MAX_PENDING_LOOKUPS = 64

_pending = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)

AddressInfo = tuple[Any, ...]
Resolve = Callable[..., Sequence[AddressInfo]]


class LookupTimeoutError(TimeoutError):
    """The name lookup did not answer before the deadline (or too many lookups are waiting)."""


class _Lookup:
    """One lookup's outcome, filled in by its thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.found: Sequence[AddressInfo] = ()
        self.error: BaseException | None = None

    def run(self, resolve: Resolve, host: str, port: int, kind: int) -> None:
        try:
            self.found = resolve(host, port, type=kind)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            _pending.release()
            self.done.set()


def getaddrinfo_within(
    host: str, port: int, deadline: float, *, kind: int = socket.SOCK_STREAM, resolve: Resolve = socket.getaddrinfo,
    clock: Callable[[], float] = time.monotonic,
) -> list[AddressInfo]:
    """``resolve(host, port, type=kind)`` (``socket.getaddrinfo``), waited for until ``deadline``
    (``clock``'s seconds, ``time.monotonic``).

    Raises:
        LookupTimeoutError: no answer before the deadline, no time left, or
            :data:`MAX_PENDING_LOOKUPS` lookups still waiting for the resolver.
        OSError: the resolver's own failure (``socket.gaierror``: unknown name...).
    """
    if _is_address(host):
        return list(resolve(host, port, type=kind))
    left = deadline - clock()
    if left <= 0:
        raise LookupTimeoutError(f"no time left to look up {host}")
    if not _pending.acquire(blocking=False):
        raise LookupTimeoutError(f"the name lookup of {host} was not tried: {MAX_PENDING_LOOKUPS} lookups "
                                 "are still waiting for the resolver")
    lookup = _Lookup()
    try:
        threading.Thread(target=lookup.run, args=(resolve, host, port, kind), name=f"lookup {host}",
                         daemon=True).start()
    except BaseException:
        _pending.release()
        raise
    if not lookup.done.wait(left):
        raise LookupTimeoutError(f"the name lookup of {host} did not answer in {left:.3g} s")
    if lookup.error is not None:
        raise lookup.error
    return list(lookup.found)


def connect_within(
    addresses: Sequence[AddressInfo], deadline: float, *, make_socket: Callable[..., socket.socket] = socket.socket,
    clock: Callable[[], float] = time.monotonic,
) -> socket.socket:
    """A TCP connection to the first of ``addresses`` (``getaddrinfo``'s tuples) that answers
    before ``deadline``, each tried with the time left (``socket.create_connection`` gave each
    the whole timeout). An address whose socket cannot be made (``EAFNOSUPPORT``: an IPv6
    address on a host booted without IPv6) is passed over as one that refused.

    Raises:
        TimeoutError: the deadline passed (or ``addresses`` is empty).
        OSError: the last address's failure (refused, unreachable...).
    """
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        left = deadline - clock()
        if left <= 0:
            break
        sock: socket.socket | None = None
        try:  # the socket made too: EAFNOSUPPORT for an IPv6 address on a host without IPv6
            sock = make_socket(family, kind, proto)
            sock.settimeout(left)
            sock.connect(address)
        except OSError as exc:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            error = exc
            continue
        return sock
    if error is None or isinstance(error, TimeoutError):
        raise TimeoutError("timed out")
    raise error


def _is_address(host: str) -> bool:
    """Whether ``host`` is an IP address as it is (scoped IPv6 ``fe80::1%eth0`` included): only
    then is it looked up in the caller's thread, without the deadline."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
