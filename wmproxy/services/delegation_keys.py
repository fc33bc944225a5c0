"""The pool of pre-generated delegation keys: getProxyReq hands out a key made earlier
instead of generating an RSA key while the client waits (issue 14).

Keys are RSA ``[security] delegation_key_bits`` (2048, the reference's size), made with
their CSR by :func:`wmproxy.security.delegation.new_proxy_request`, sealed with the store
key and kept in the database (``delegation_key_pool``). :func:`claim_key` deletes the row it
returns in the caller's transaction, so each key serves exactly one request, whichever
process asks. A daemon thread in each gunicorn worker (:func:`ensure_filler`, started
by ``wmproxy.soap.app.create_app``) keeps ``[security] delegation_key_pool`` keys ready,
generating them once no key has been claimed, by this or any other process, for
:data:`QUIET_PERIOD` seconds (a burst of requests keeps the CPU; another worker's claims show
as a pool that shrank); when the pool is empty (a long burst, or the pool turned off with
0) the key is generated inline as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from wmproxy.domain import utcnow
from wmproxy.security import delegation as crypto
from wmproxy.services.runtime import Runtime
from wmproxy.services.storekey import RetiredKeyError, check_sealing_key
from wmproxy.store.delegation_writes import delegation_writes

log = logging.getLogger(__name__)

#: Seconds the filler sleeps between checks of the pool when nothing wakes it.
FILL_INTERVAL = 5.0
#: Seconds without a claim before the filler generates keys: during a burst of getProxyReq
#: the worker's CPU goes to the requests; the pool is topped up once the burst is over.
QUIET_PERIOD = 1.0


def claim_request(rt: Runtime, dn: str, delegation_id: str) -> tuple[str, bytes] | None:
    """Store a pooled server key as the pending request of (``dn``, ``delegation_id``) for one
    getProxyReq (replacing an older pending request) and return its CSR PEM and sealed key;
    None when the pool is empty or off (then use :func:`new_key`).

    The key's row is deleted in the same transaction, its own
    (:meth:`wmproxy.store.delegation_writes.DelegationWrites.claim_into_request`): the key
    serves this request only (on PostgreSQL the claim and the request are one statement). Records the time of the claim
    for this process's filler, which then waits for a quiet moment (a time stamp, not an
    event: setting a ``threading.Event`` per claim took its lock and notified the sleeping
    filler on every request).
    """
    if rt.settings.security.delegation_key_pool <= 0:
        return None
    claimed = delegation_writes(rt.session_factory).claim_into_request(
        rt.settings.security.delegation_key_bits, dn, delegation_id, utcnow())
    filler = _fillers.get(id(rt))
    if filler is not None:
        filler.last_claim = time.monotonic()
    return claimed


def new_key(rt: Runtime) -> tuple[bytes, bytes]:
    """A server key generated now (the empty-pool fallback): ``(sealed private key PEM, CSR PEM)``."""
    key_pem, csr_pem = crypto.new_proxy_request(rt.settings.security.delegation_key_bits)
    return rt.sealer.seal(key_pem), csr_pem


def fill_pool(rt: Runtime, target: int | None = None, interrupted: Callable[[], bool] | None = None,
              *, yield_to_claims: bool = False) -> int:
    """Generate keys until the pool holds ``target`` (default ``[security] delegation_key_pool``)
    keys of the configured size, or until ``interrupted()`` is true (checked before each key);
    each key is committed on its own. Returns how many were added.

    With ``yield_to_claims``, also stop as soon as the pool holds fewer keys than after this
    call's previous key: some process (another gunicorn worker) is claiming keys, so
    requests are being served, and they keep the CPU (what a process's own claims do through
    ``interrupted``).

    Several processes may fill at once: the pool may then briefly hold a few keys more
    than ``target``, never fewer than asked.

    Raises:
        wmproxy.services.storekey.RetiredKeyError: the store key was rotated while this
            process ran (nothing sealed with the old key is added).
    """
    bits = rt.settings.security.delegation_key_bits
    target = rt.settings.security.delegation_key_pool if target is None else target
    added = 0
    expected = 0
    while interrupted is None or not interrupted():
        size = pool_size(rt)
        if size >= target or (yield_to_claims and size < expected):
            break
        key_pem, csr_pem = crypto.new_proxy_request(bits)
        with rt.uow() as uow:
            check_sealing_key(uow.session, rt.sealer.fingerprint)
            uow.key_pool.add(rt.sealer.seal(key_pem), csr_pem.decode(), bits, utcnow())
        added += 1
        expected = size + 1
    return added


def pool_size(rt: Runtime) -> int:
    """Keys of the configured size in the pool (all processes')."""
    with rt.uow() as uow:
        return uow.key_pool.size(rt.settings.security.delegation_key_bits)


class _Filler:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pid = os.getpid()
        #: ``time.monotonic()`` of this process's latest claim (written by the request threads).
        self.last_claim = float("-inf")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="delegation-key-pool", daemon=True)

    def _claimed_since(self, moment: float) -> bool:
        return self.last_claim >= moment

    def _run(self) -> None:
        while not self.stop.is_set():
            quiet = time.monotonic() - self.last_claim
            if quiet < QUIET_PERIOD:  # wait for a quiet moment
                self.stop.wait(QUIET_PERIOD - quiet)
                continue
            try:
                if self._quiet_and_short():
                    fill_pool(self.rt, interrupted=self._interrupted_from(time.monotonic()), yield_to_claims=True)
            except RetiredKeyError as exc:  # until a restart every key it made would be unusable
                log.error("the delegation key pool is no longer topped up by this process: %s", exc)
                return
            except Exception:  # the database may be away for a while: retry at the next tick
                log.exception("could not top up the delegation key pool")
            self._idle()

    def _interrupted_from(self, started: float) -> Callable[[], bool]:
        return lambda: self.stop.is_set() or self._claimed_since(started)

    def _idle(self) -> None:
        """Sleep up to :data:`FILL_INTERVAL` seconds, checking every :data:`QUIET_PERIOD`
        whether this process claimed a key meanwhile (then the pool is topped up once quiet)."""
        seen = self.last_claim
        end = time.monotonic() + FILL_INTERVAL
        while self.last_claim == seen and not self.stop.wait(min(QUIET_PERIOD, max(end - time.monotonic(), 0))):
            if time.monotonic() >= end:
                return

    def _quiet_and_short(self) -> bool:
        """True when the pool is short of keys and no process claimed one for
        :data:`QUIET_PERIOD` seconds (the other workers' claims show as a pool that shrank
        meanwhile)."""
        before = pool_size(self.rt)
        if before >= self.rt.settings.security.delegation_key_pool:
            return False
        checked = time.monotonic()
        if self.stop.wait(QUIET_PERIOD) or self._claimed_since(checked):
            return False
        return pool_size(self.rt) >= before


_fillers: dict[int, _Filler] = {}
_lock = threading.Lock()


def ensure_filler(rt: Runtime) -> None:
    """Start the background filler of ``rt``'s pool in this process if it is not running
    (once per process and runtime; a forked child starts its own). No-op when the pool is off."""
    if rt.settings.security.delegation_key_pool <= 0:
        return
    filler = _fillers.get(id(rt))
    if filler is not None and filler.pid == os.getpid() and filler.thread.is_alive():
        return
    with _lock:
        filler = _fillers.get(id(rt))
        if filler is not None and filler.pid == os.getpid() and filler.thread.is_alive():
            return
        filler = _Filler(rt)
        _fillers[id(rt)] = filler
        filler.thread.start()


def stop_filler(rt: Runtime, timeout: float = 60.0) -> None:
    """Stop ``rt``'s filler in this process (tests, shutdown); waits up to ``timeout`` seconds."""
    filler = _fillers.pop(id(rt), None)
    if filler is None or filler.pid != os.getpid():
        return
    filler.stop.set()
    filler.thread.join(timeout)
