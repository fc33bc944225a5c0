"""The renewal worker loop: every ``renewal.cycle`` seconds one pass over the credentials.

A pass (:meth:`RenewalWorker.step`):

1. aborts the jobs of credentials that have expired (renewable or not); a running job only once
   its own proxy copy has ended too;
2. removes the renewal records no job needs any more;
3. renews the due credentials, the one ending first first, up to ``threads`` MyProxy
   exchanges at once, each one claimed first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, compare-and-set on SQLite) so
   that several workers on one database renew each credential once per cycle; a record
   whose server the site no longer allows is refused without connecting;
   after MyProxy, a credential delegated with VOMS attributes gets new ones from a VOMS
   server (:mod:`wmproxy.services.renewal.voms`, :mod:`wmproxy.renewal.voms_client`);
4. rewrites the proxy files of running jobs that are older than the stored proxy, when it has
   the VOMS FQAN they were registered with (:class:`wmproxy.services.renewal.ProxyFit`); a
   job it does not fit is aborted once its own copy has ended
   (:func:`wmproxy.services.renewal.abort_ended_copies`).

Each credential gets its own units of work, so one failure does not roll back the others.
The decisions are in :mod:`wmproxy.services.renewal`; the MyProxy exchange is
:func:`wmproxy.renewal.myproxy.renew_proxy`, authenticated with the service's host
credential. A database error skips the rest of the pass and the next one is delayed
(doubling up to 10 cycles).

A worker whose store key is no longer the database's (``wmproxy-admin rotate-store-key``
forced while it ran) stops: each pass first checks the key, and a renewal checks it again
in the transaction that stores the renewed proxy, so nothing sealed with the retired key is
stored (:class:`~wmproxy.services.storekey.RetiredKeyError`, raised by :meth:`RenewalWorker.run`
and :meth:`RenewalWorker.step` after the log line "the store key was rotated: restart
wmproxy-renewal with the new key file").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from wmproxy.domain import utcnow
from wmproxy.errors import WMProxyError
from wmproxy.renewal.jobfiles import push_job_proxy
from wmproxy.renewal.myproxy import MyProxyError, MyProxyRefusedError, MyProxyUnreachableError, renew_proxy
from wmproxy.renewal.voms_client import DownServers, refresh_voms
from wmproxy.services import renewal as service
from wmproxy.services.runtime import Runtime
from wmproxy.services.storekey import RetiredKeyError, check_sealing_key
from wmproxy.store import database_reason

log = logging.getLogger(__name__)

MAX_BACKOFF_CYCLES = 10

K = TypeVar("K")
V = TypeVar("V")


class PassMemo(MutableMapping[K, V]):
    """A memo the passes share, holding only what the last two passes looked up.

    The worker keeps the AC ends of the stored VOMS proxies (:data:`~wmproxy.services.renewal.AcEnds`)
    so that each stored proxy is read once; their key names the stored proxy (its delegation's
    ``updated_at``), so every renewal or re-delegation makes a new key and leaves the old one
    behind (365 bytes each, up to the 100,000 :func:`~wmproxy.services.renewal.due_renewals`
    cleared them at: 37 MB). :meth:`next_pass` starts a pass: what neither the previous pass nor
    this one looked up or stored is forgotten, so the memo holds at most the keys of two passes
    (two per VOMS credential), and a credential passed over for one pass (claimed elsewhere,
    waiting for its next attempt) is still not read again."""

    def __init__(self) -> None:
        self._current: dict[K, V] = {}
        self._previous: dict[K, V] = {}

    def next_pass(self) -> None:
        self._previous, self._current = self._current, {}

    def __getitem__(self, key: K) -> V:
        if key in self._current:
            return self._current[key]
        value = self._current[key] = self._previous.pop(key)  # KeyError: not kept
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._current or key in self._previous

    def __setitem__(self, key: K, value: V) -> None:
        self._previous.pop(key, None)
        self._current[key] = value

    def __delitem__(self, key: K) -> None:
        if key in self._current:  # a key is in one of the two, never in both
            del self._current[key]
        else:
            del self._previous[key]

    def __iter__(self) -> Iterator[K]:
        yield from self._current
        yield from self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def clear(self) -> None:
        self._current.clear()
        self._previous.clear()


@dataclass
class PassReport:
    """What one pass did (for logs, tests and the benchmark)."""

    aborted: int = 0
    deregistered: int = 0
    attempted: int = 0
    renewed: int = 0
    pushed: int = 0


class RenewalWorker:
    """Renews delegated proxies from MyProxy; ``step()`` is one pass, ``run()`` loops."""

    def __init__(self, rt: Runtime, name: str | None = None, threads: int = 4,
                 renew: Callable[..., bytes] = renew_proxy,
                 refresh: Callable[..., tuple[bytes | None, str | None]] = refresh_voms) -> None:
        self.rt = rt
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.settings = rt.settings.renewal
        self.threads = max(1, threads)
        self.renew = renew
        self.refresh = refresh
        self.voms_down = DownServers(hold=self.settings.cycle)  # VOMS servers passed over for a cycle
        #: the AC ends of stored proxies, read once each (those of the last two passes)
        self.ac_ends: PassMemo[tuple[str, str, dt.datetime | None], dt.datetime | None] = PassMemo()
        self.wake = threading.Event()  # set by SIGUSR1: pass now

    def run(self, stop: threading.Event) -> None:
        """Pass every cycle until ``stop`` is set.

        Raises:
            RetiredKeyError: the store key was rotated while the worker ran (logged).
        """
        log.info("renewal worker %s started (cycle %s s, threshold %s s, lifetime %s s, %d threads)",
                 self.name, self.settings.cycle, self.settings.threshold, self.settings.lifetime, self.threads)
        backoff = 1
        with ThreadPoolExecutor(self.threads, thread_name_prefix="renewal") as pool:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.step(pool)
                    backoff = 1
                except SQLAlchemyError as exc:
                    log.error("renewal pass failed on the database: %s; next pass in %d cycle(s)",
                              database_reason(exc), backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_CYCLES)
                except RetiredKeyError:
                    log.info("renewal worker %s stopped", self.name)
                    raise
                self._sleep(stop, started + self.settings.cycle * backoff)
        log.info("renewal worker %s stopped", self.name)

    def _sleep(self, stop: threading.Event, until: float) -> None:
        while not stop.is_set() and not self.wake.is_set():
            left = until - time.monotonic()
            if left <= 0:
                break
            stop.wait(min(left, 0.2))
        self.wake.clear()

    def step(self, pool: ThreadPoolExecutor | None = None) -> PassReport:
        """One pass (see the module docstring).

        Raises:
            RetiredKeyError: the store key was rotated while the worker ran (logged; nothing
                sealed with the retired key was stored).
        """
        try:
            return self._pass(pool)
        except RetiredKeyError as exc:
            log.error("the store key was rotated: restart wmproxy-renewal with the new key file (%s); nothing "
                      "sealed with the retired key was stored", exc)
            raise

    def _pass(self, pool: ThreadPoolExecutor | None) -> PassReport:
        report = PassReport()
        rt, now = self.rt, utcnow()
        with rt.uow() as uow:  # a worker that ran through a rotation opens nothing re-sealed
            check_sealing_key(uow.session, rt.sealer.fingerprint)
        with rt.uow() as uow:
            expired = service.expired_credentials(uow, now)
        for owner_dn, delegation_id in expired:
            with rt.uow() as uow:
                report.aborted += len(service.abort_expired_credential(uow, rt, owner_dn, delegation_id, now))
        with rt.uow() as uow:
            report.deregistered = service.deregister_unused(uow, now)
        self.ac_ends.next_pass()
        with rt.uow() as uow:
            due = service.due_renewals(uow, rt, now, self.ac_ends)
        if pool is None or self.threads == 1 or len(due) <= 1:
            results = [self._renew_one(record_id) for record_id in due]
        else:
            results = list(pool.map(self._renew_one, due))
        for attempted, renewed, pushed in results:
            report.attempted += attempted
            report.renewed += renewed
            report.pushed += pushed
        report.pushed += self._refresh_stale()
        if report.aborted or report.deregistered or report.attempted:
            log.info("renewal pass: %d attempted, %d renewed, %d job proxies rewritten, %d jobs aborted, "
                     "%d records removed", report.attempted, report.renewed, report.pushed, report.aborted,
                     report.deregistered)
        return report

    def _renew_one(self, record_id: int) -> tuple[int, int, int]:
        """Claim, ask MyProxy, store, push. Returns (attempted, renewed, files written)."""
        rt = self.rt
        try:
            with rt.uow() as uow:
                order = service.begin_renewal(uow, rt, record_id, self.name, utcnow())
        except SQLAlchemyError as exc:
            log.warning("could not claim renewal record %d: %s", record_id, database_reason(exc))
            return 0, 0, 0
        if order is None:
            return 0, 0, 0
        try:
            outcome = self._exchange(order)
            if order.voms and outcome.proxy_pem is not None:
                outcome = service.settle_voms_refresh(rt, order, self._refresh(order, outcome, outcome.proxy_pem),
                                                      utcnow())
            with rt.uow() as uow:
                result, jobs = service.finish_renewal(uow, rt, order, outcome, utcnow())
        except SQLAlchemyError:
            raise  # the pass stops and the next one is delayed (run)
        except RetiredKeyError:
            raise  # the worker stops (step, run): nothing it seals could be opened
        except Exception:
            # a defect met by one credential must not stop the others' renewals (nor, raised
            # from run(), the worker): this one is tried again once its claim lapses
            log.exception("renewal of proxy %s of %s failed on an internal error", order.delegation_id,
                          order.owner_dn)
            return 1, 0, 0
        pushed = self._push(jobs, outcome.proxy_pem) if jobs and outcome.proxy_pem is not None else 0
        return 1, int(result == "renewed"), pushed

    def _exchange(self, order: service.RenewalOrder) -> service.RenewalOutcome:
        sec = self.rt.settings.security
        log.info("renewing proxy %s of %s from %s:%d (%d s left; claimed at %s)", order.delegation_id,
                 order.owner_dn, order.host, order.port, (order.not_after - order.started_at).total_seconds(),
                 order.started_at.isoformat())
        try:
            pem = self.renew(
                order.host, order.port, host_cert=sec.host_cert, host_key=sec.host_key, ca_dir=sec.ca_dir,
                user_proxy_pem=order.proxy_pem, username=order.owner_dn, lifetime=self.settings.lifetime,
                timeout=self.settings.timeout, key_bits=order.key_bits,
                listed=service.server_listed(self.settings, order.host, order.port),
            )
        except MyProxyUnreachableError as exc:
            return service.RenewalOutcome("unreachable", error=str(exc))
        except MyProxyRefusedError as exc:
            return service.RenewalOutcome("refused", error=str(exc))
        except MyProxyError as exc:
            return service.RenewalOutcome("failed", error=str(exc))
        except Exception as exc:
            log.exception("renewal of proxy %s of %s crashed", order.delegation_id, order.owner_dn)
            return service.RenewalOutcome("failed", error=f"internal error: {type(exc).__name__}")
        return service.RenewalOutcome("renewed", proxy_pem=pem)

    def _refresh(self, order: service.RenewalOrder, outcome: service.RenewalOutcome,
                 renewed_pem: bytes) -> service.RenewalOutcome:
        """Ask the VOMS servers of ``order.voms`` for new ACs with the renewed proxy
        ``renewed_pem`` (the edge: :func:`wmproxy.renewal.voms_client.refresh_voms`)."""
        rt = self.rt
        try:
            refreshed, error = self.refresh(
                renewed_pem, order.voms, ca_dir=rt.settings.security.ca_dir,
                lifetime=self.settings.voms_lifetime, timeout=self.settings.timeout, key_bits=order.key_bits,
                check=lambda request, der: service.ac_problem(rt, renewed_pem, request, der, utcnow()),
                down=self.voms_down,
            )
        except Exception as exc:
            log.exception("VOMS refresh of proxy %s of %s crashed", order.delegation_id, order.owner_dn)
            refreshed, error = None, f"internal error: {type(exc).__name__}"
        return dataclasses.replace(outcome, refreshed_pem=refreshed, voms_error=error)

    def _push(self, job_ids: list[str], pem: bytes) -> int:
        written = 0
        for job_id in job_ids:
            try:
                written += push_job_proxy(self.rt, job_id, pem)
            except (OSError, WMProxyError) as exc:
                log.warning("could not rewrite the proxy file of job %s: %s", job_id, exc)
        return written

    def _refresh_stale(self) -> int:
        rt, now = self.rt, utcnow()
        with rt.uow() as uow:
            targets = uow.renewals.held_jobs(service.HELD_STATES)
        copies = service.stale_copies(rt, targets, now)  # the job's files, read outside the transaction
        with rt.uow() as uow:
            stale = service.stale_job_proxies(uow, rt, now, copies)
        written = 0
        for refresh in stale:
            if refresh.job_ids:
                written += self._push(refresh.job_ids, refresh.proxy_pem)
                log.info("proxy %s of %s: rewrote %d stale job proxy file(s)", refresh.delegation_id,
                         refresh.owner_dn, len(refresh.job_ids))
            if refresh.ended:
                with rt.uow() as uow:
                    service.abort_ended_copies(uow, rt, refresh.owner_dn, refresh.delegation_id, refresh.ended,
                                               utcnow())
        return written
