"""Proxy renewal from MyProxy (``wmproxy-behaviour.md`` §3.5; ``anchors.md`` §2; issue 4).

Registration (:func:`myproxy_server_for`, :func:`register_for_renewal`) attaches a
delegated credential, (owner DN, delegation id), to a MyProxy server: **one** record per
credential, shared by all the jobs that use it. The renewal worker
(``wmproxy.renewal.worker``) owns the loop, the threads and the MyProxy exchange; the
decisions are here:

* :func:`due_renewals` / :func:`renewal_due`: a proxy is renewed when less than
  ``renewal.threshold`` seconds are left (default 35 min: the original's 30 min Condor
  limit + 5 min clock skew), or earlier, when a quarter of ``renewal.lifetime`` is left
  (the original's planned renewal at three quarters of a renewed proxy's lifetime: a 10 h
  proxy is renewed when 2.5 h remain). A failed attempt is
  retried on the next cycle, never more than once per cycle whatever the number of workers.
* :func:`begin_renewal` claims a record (lease + next attempt time) and hands the worker the
  still valid stored proxy, which proves possession to MyProxy;
  :func:`finish_renewal` stores what MyProxy granted (sealed, never shorter than what is
  stored: renewal never extends beyond what MyProxy grants, and never shortens) and records
  the attempt; :func:`push_job_proxy` then rewrites ``<jobdir>/user.proxy`` of every job a
  worker holds (temporary file + rename, never truncation).
* :func:`abort_expired_credential`: once a credential has expired, jobs not yet running are
  Aborted and running jobs stopped (a ``cancel`` request) and Aborted, with the reason
  "the user proxy expired", whether or not the credential was registered for renewal.
* :func:`deregister_unused`: a record no non-final job uses any more is removed.

Known limit: the renewed proxy is what MyProxy holds; VOMS attributes are not refreshed
(that needs a VOMS server). Expired or lost VOMS attributes are logged and kept in the
record's ``notes``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import classad2

from wmproxy.config import RenewalSettings
from wmproxy.domain import FINAL_STATES, JobState
from wmproxy.errors import InvalidJdlAttributeError, ProxyError
from wmproxy.security.chain import identity_dn, load_pem_chain, verify_chain
from wmproxy.security.voms import voms_attributes
from wmproxy.services.compound import on_node_ended
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import ProxyRenewal

log = logging.getLogger(__name__)

#: The abort reason of jobs whose proxy expired (the original's Globus error 131).
PROXY_EXPIRED_REASON = "the user proxy expired"
#: MyProxy's port when ``MyProxyServer`` names none.
DEFAULT_MYPROXY_PORT = 7512
#: Fraction of a proxy's lifetime after which a planned renewal is due.
PLANNED_FRACTION = 0.75
#: Seconds a claim outlives the MyProxy timeout (then another worker may take the record).
LEASE_MARGIN = 30.0
#: Part of a cycle after which a record may be tried again (a little less than a cycle, so
#: that a worker waking every cycle retries on each wake-up).
RETRY_FRACTION = 0.9

#: States of jobs that still need their credential (registration → deregistration).
NON_FINAL_STATES = tuple(s.value for s in JobState if s not in FINAL_STATES)
#: States of jobs a worker holds; their ``user.proxy`` file gets the renewed proxy.
HELD_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


# --- registration ---


def parse_server(value: str) -> tuple[str, int]:
    """``host[:port]`` → ``(host, port)``; the port defaults to 7512.

    Raises:
        InvalidJdlAttributeError: not a host name with an optional port in 1-65535.
    """
    host, sep, port_text = value.strip().rpartition(":")
    if not sep:
        host, port_text = value.strip(), str(DEFAULT_MYPROXY_PORT)
    if not host or not _HOST.match(host) or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidJdlAttributeError(f"MyProxyServer: {value!r} is not host[:port]")
    return host, int(port_text)


def vo_defaults(text: str) -> dict[str, str]:
    """``"atlas=myproxy.cern.ch, cms=host:7512, dteam="`` → ``{vo: server}`` ("" = no renewal)."""
    result: dict[str, str] = {}
    for item in text.split(","):
        vo, sep, server = item.partition("=")
        if sep and vo.strip():
            result[vo.strip()] = server.strip()
    return result


def myproxy_server_for(settings: RenewalSettings, ad: classad2.ClassAd, vo: str | None) -> str | None:
    """The MyProxy server (``host[:port]``) a job's proxy is renewed from, or None (§3.5).

    A non-empty ``MyProxyServer`` of the JDL wins. Without the attribute, the default of the
    job's VO (``renewal.myproxy_servers_by_vo``) or else the global default
    (``renewal.myproxy_server``, the analogue of ``MYPROXY_SERVER``) applies. An empty
    value, in the JDL or as the default, means no renewal. Pure: ``ad`` is not modified;
    the caller writes the result into the registered JDL.

    Args:
        settings: the renewal settings.
        ad: the user's JDL (of the job, node or DAG level).
        vo: the VO of the delegated proxy's first FQAN, if any.

    Raises:
        InvalidJdlAttributeError: ``MyProxyServer`` is not a string of the form host[:port].
    """
    if "MyProxyServer" in ad:
        value = ad.get("MyProxyServer")
        if not isinstance(value, str):
            raise InvalidJdlAttributeError("MyProxyServer: a string host[:port] is expected")
    else:
        by_vo = vo_defaults(settings.myproxy_servers_by_vo)
        value = by_vo[vo] if vo is not None and vo in by_vo else settings.myproxy_server
    value = value.strip()
    if not value:
        return None
    parse_server(value)
    return value


def register_for_renewal(
    uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str, server: str | None, now: dt.datetime
) -> None:
    """Attach the delegation of (DN, id) to renewal from ``server`` (one record per credential).

    The latest registration's server is used for the credential; None (no renewal asked)
    leaves an existing record alone, since the jobs share one proxy.
    """
    if server is None:
        return
    record = uow.renewals.register(owner_dn, delegation_id, server, now)
    log.info("proxy %s (%s) of %s registered for renewal from %s", delegation_id, record.id, owner_dn, server)


# --- the schedule ---


def renewal_margin(threshold: float, lifetime: float, not_after: dt.datetime | None = None,
                   renewed_at: dt.datetime | None = None) -> float:
    """Seconds before its end at which a proxy is renewed.

    The ``threshold`` (renew as soon as possible), or earlier, a quarter of the lifetime
    asked of MyProxy: the original's planned renewal, which lets a job gain three quarters
    of a new lifetime (a 10 h proxy is renewed when 2.5 h remain). When the stored proxy
    came from MyProxy (``renewed_at``) and MyProxy granted less than asked, the quarter is
    of what it granted, so a short grant is not renewed on every cycle. The proxy's own
    start is not used: delegated proxies are back-dated for clock skew.
    """
    granted = float(lifetime)
    if renewed_at is not None and not_after is not None:
        granted = min(granted, max((not_after - renewed_at).total_seconds(), 0.0))
    return max(float(threshold), granted * (1 - PLANNED_FRACTION))


def renewal_due(not_after: dt.datetime, now: dt.datetime, margin: float) -> bool:
    """Whether to renew now; an expired proxy cannot be renewed (MyProxy refuses it)."""
    return now < not_after and not_after - now <= dt.timedelta(seconds=margin)


def due_renewals(uow: UnitOfWork, rt: Runtime, now: dt.datetime) -> list[int]:
    """Ids of the records to try now: proxy due, not held by a worker, not tried this cycle."""
    settings = rt.settings.renewal
    due = []
    for c in uow.renewals.candidates():
        if c.not_after is None:
            continue  # delegation destroyed: nothing to renew
        if c.claimed_until is not None and c.claimed_until > now:
            continue
        if c.next_attempt_at is not None and c.next_attempt_at > now:
            continue
        margin = renewal_margin(settings.threshold, settings.lifetime, c.not_after, c.last_renewed_at)
        if renewal_due(c.not_after, now, margin):
            due.append(c.id)
    return due


# --- one renewal ---


@dataclass(frozen=True)
class RenewalOrder:
    """A claimed record: what the worker needs for one MyProxy exchange."""

    record_id: int
    owner_dn: str
    delegation_id: str
    host: str
    port: int
    proxy_pem: bytes  # the stored, still valid proxy (proof of possession)
    not_after: dt.datetime  # of the stored proxy
    started_at: dt.datetime
    worker: str
    expired_voms: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenewalOutcome:
    """What the MyProxy exchange gave: a proxy (grid file layout), or a failure.

    ``result`` is ``renewed`` with ``proxy_pem``, else ``unreachable`` (connection refused,
    timeout, TLS), ``refused`` (MyProxy's ``ERROR`` answer) or ``failed``.
    """

    result: str
    proxy_pem: bytes | None = None
    error: str | None = None


def begin_renewal(uow: UnitOfWork, rt: Runtime, record_id: int, worker: str, now: dt.datetime) -> RenewalOrder | None:
    """Claim the record for ``worker`` and return the order, or None when another worker has
    it, tried it this cycle, or the proxy is not due any more (renewed meanwhile)."""
    settings = rt.settings.renewal
    record = uow.renewals.claim(
        record_id, worker, now,
        lease_until=now + dt.timedelta(seconds=settings.timeout + LEASE_MARGIN),
        next_attempt_at=now + dt.timedelta(seconds=settings.cycle * RETRY_FRACTION),
    )
    if record is None:
        return None
    delegation = uow.delegations.get(record.owner_dn, record.delegation_id)
    margin = renewal_margin(settings.threshold, settings.lifetime,
                            delegation.not_after if delegation else None, record.last_renewed_at)
    if delegation is None or not renewal_due(delegation.not_after, now, margin):
        _release(record, worker)
        return None
    host, port = parse_server(record.myproxy_server)
    pem = rt.sealer.open(delegation.sealed_proxy)
    return RenewalOrder(
        record_id=record.id, owner_dn=record.owner_dn, delegation_id=record.delegation_id, host=host, port=port,
        proxy_pem=pem, not_after=delegation.not_after, started_at=now, worker=worker,
        expired_voms=expired_voms_attributes(pem, now),
    )


def finish_renewal(
    uow: UnitOfWork, rt: Runtime, order: RenewalOrder, outcome: RenewalOutcome, now: dt.datetime
) -> tuple[str, list[str]]:
    """Record the attempt and, on success, replace the stored proxy in the same transaction.

    The new proxy must be of the owner's identity and verify against the CA directory; it is
    stored (sealed, with its end) only if it ends later than the stored one. Returns the
    result (``renewed``, ``not-extended``, or the failure of ``outcome``) and, when renewed,
    the ids of the jobs a worker holds, whose proxy files are to be rewritten
    (:func:`push_job_proxy`).
    """
    record = uow.renewals.by_id(order.record_id)
    where = f"proxy {order.delegation_id} of {order.owner_dn} from {order.host}:{order.port}"
    notes = list(_voms_notes(order))
    result, error, pushed = outcome.result, outcome.error, []
    if outcome.proxy_pem is not None:
        result, error, new_end = _store(uow, rt, order, outcome.proxy_pem, now, notes)
        if result == "renewed":
            pushed = [j.id for j in uow.renewals.jobs_of(order.owner_dn, order.delegation_id, HELD_STATES)]
            log.info("renewed %s: valid until %s (was %s); %d running job(s) updated",
                     where, new_end.isoformat(), order.not_after.isoformat(), len(pushed))
    left = (order.not_after - now).total_seconds()
    if result == "not-extended":
        log.warning("renewal of %s did not extend the proxy: %s; it expires in %d s", where, error, left)
    elif result != "renewed":
        log.warning("renewal of %s failed (%s): %s; the proxy expires in %d s, retrying each cycle",
                    where, result, error, left)
    for note in notes:
        log.warning("renewal of %s: %s", where, note)
    if record is not None:
        record.attempts = (record.attempts or 0) + 1
        record.last_attempt_at = order.started_at
        record.last_result = result
        record.last_error = error
        record.updated_at = now
        if result == "renewed":
            record.renewals = (record.renewals or 0) + 1
            record.last_renewed_at = now
            record.notes = "; ".join(notes) or None
        elif notes:
            record.notes = "; ".join(notes)
        _release(record, order.worker)
    return result, pushed


def _store(
    uow: UnitOfWork, rt: Runtime, order: RenewalOrder, pem: bytes, now: dt.datetime, notes: list[str]
) -> tuple[str, str | None, dt.datetime]:
    try:
        chain = load_pem_chain(pem)
        if identity_dn(chain) != order.owner_dn:
            raise ProxyError(f"MyProxy returned a proxy of {identity_dn(chain)}")
        verify_chain(chain, rt.settings.security.ca_dir, at=now)
    except ProxyError as exc:
        return "failed", f"unusable proxy from MyProxy: {exc}", order.not_after
    not_before = chain[0].not_valid_before_utc
    not_after = min(c.not_valid_after_utc for c in chain)
    delegation = uow.renewals.lock_delegation(order.owner_dn, order.delegation_id)
    if delegation is None:
        return "failed", "the delegation was destroyed during the renewal", order.not_after
    if not_after <= delegation.not_after:
        return ("not-extended", f"MyProxy granted a proxy until {not_after.isoformat()}, not later than the "
                f"stored one ({delegation.not_after.isoformat()})", delegation.not_after)
    if order.expired_voms or _has_voms(order.proxy_pem):
        if not _has_voms(pem):
            notes.append("the renewed proxy carries no VOMS attributes (MyProxy holds none; "
                         "refreshing them needs a VOMS server)")
    delegation.sealed_proxy = rt.sealer.seal(pem)
    delegation.not_before = not_before
    delegation.not_after = not_after
    delegation.updated_at = now
    uow.session.flush()
    return "renewed", None, not_after


def _release(record: ProxyRenewal, worker: str) -> None:
    if record.claimed_by == worker:
        record.claimed_by = None
        record.claimed_until = None


def _voms_notes(order: RenewalOrder) -> Iterable[str]:
    if order.expired_voms:
        yield ("VOMS attributes expired while the X.509 proxy was valid: " + ", ".join(order.expired_voms)
               + " (renewed without refreshing them: needs a VOMS server)")


def expired_voms_attributes(pem: bytes, now: dt.datetime) -> tuple[str, ...]:
    """The FQANs (with VO and end) of the proxy's VOMS ACs that have expired at ``now``."""
    try:
        acs = voms_attributes(load_pem_chain(pem))
    except ProxyError:
        return ()
    return tuple(
        f"{' '.join(ac.fqans) or ac.vo} (VO {ac.vo}, ended {ac.not_after.isoformat()})"
        for ac in acs
        if ac.not_after <= now
    )


def _has_voms(pem: bytes) -> bool:
    try:
        return bool(voms_attributes(load_pem_chain(pem)))
    except ProxyError:
        return False


# --- job proxy files ---


def job_proxy_path(rt: Runtime, job_id: str) -> Path:
    """``<jobdir>/user.proxy``: the file the job sees as ``X509_USER_PROXY``."""
    return rt.storage.job_dir(job_id) / "user.proxy"


def push_job_proxy(rt: Runtime, job_id: str, pem: bytes) -> bool:
    """Atomically replace the job's proxy file with ``pem`` (temporary file in the same
    directory, fsync, rename; mode 0600). A job whose file does not exist yet (not staged)
    is left alone: it gets the stored proxy when it starts. Returns whether it was written."""
    target = job_proxy_path(rt, job_id)
    if not target.exists():
        return False
    fd, tmp = tempfile.mkstemp(prefix=".user.proxy.", suffix=".renewed", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def job_proxy_end(rt: Runtime, job_id: str) -> dt.datetime | None:
    """notAfter of the proxy file of the job (None: no file or unreadable)."""
    try:
        return load_pem_chain(job_proxy_path(rt, job_id).read_bytes())[0].not_valid_after_utc
    except (OSError, ProxyError, ValueError, IndexError):
        return None


def stale_job_proxies(uow: UnitOfWork, rt: Runtime) -> dict[tuple[str, str], list[str]]:
    """Jobs a worker holds whose proxy file ends before the stored proxy of their credential
    (a push lost to a crash, a job staged with the proxy read just before a renewal, a
    re-delegation): ``{(DN, id): [job ids]}``."""
    stale: dict[tuple[str, str], list[str]] = {}
    for target in uow.renewals.held_jobs(HELD_STATES):
        end = job_proxy_end(rt, target.job_id)
        if end is not None and end < target.not_after - dt.timedelta(seconds=1):
            stale.setdefault((target.owner_dn, target.delegation_id), []).append(target.job_id)
    return stale


def stored_proxy(uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str) -> bytes | None:
    row = uow.delegations.get(owner_dn, delegation_id)
    return None if row is None else rt.sealer.open(row.sealed_proxy)


# --- expiry and deregistration ---


def expired_credentials(uow: UnitOfWork, now: dt.datetime) -> list[tuple[str, str]]:
    """(DN, id) of expired delegations that non-final jobs still use."""
    return uow.renewals.expired_credentials(now, NON_FINAL_STATES)


def abort_expired_credential(uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str,
                             now: dt.datetime) -> list[str]:
    """Abort every non-final job of an expired credential with "the user proxy expired".

    Jobs a worker holds also get a ``cancel`` request (the worker stops the process and
    keeps the Aborted state). Nodes go first, so DAG dependents and parents follow their
    rules (:func:`wmproxy.services.compound.on_node_ended`). Nothing happens if the
    delegation was renewed or replaced meanwhile. Returns the ids of the aborted jobs.
    """
    delegation = uow.renewals.lock_delegation(owner_dn, delegation_id)
    if delegation is None or delegation.not_after > now:
        return []
    aborted: list[str] = []
    for job in uow.renewals.jobs_of(owner_dn, delegation_id, NON_FINAL_STATES):
        state = JobState(job.state)
        if state in FINAL_STATES:
            continue  # ended as a consequence of an earlier node (DAG, parent)
        if job.parent_id is None and uow.jobs.children(job.id) and state != JobState.SUBMITTED:
            continue  # a started compound job's state follows its nodes
        if state.value in HELD_STATES:
            uow.queue.enqueue(job.id, "cancel", now)
        uow.jobs.set_state(job, JobState.ABORTED.value, now, reason=PROXY_EXPIRED_REASON)
        on_node_ended(uow, job, now)
        aborted.append(job.id)
    if aborted:
        log.warning("proxy %s of %s expired at %s: %d job(s) aborted (%s)", delegation_id, owner_dn,
                    delegation.not_after.isoformat(), len(aborted), PROXY_EXPIRED_REASON)
    return aborted


def deregister_unused(uow: UnitOfWork, now: dt.datetime) -> int:
    """Remove the records of credentials that no non-final job uses any more; returns how many.

    Each record is locked before the check, so a registration running at the same time
    either has already committed its job (seen here) or waits and re-creates the record.
    """
    removed = 0
    for candidate in uow.renewals.candidates():
        if candidate.claimed_until is not None and candidate.claimed_until > now:
            continue  # a worker is renewing it; next pass
        record = uow.renewals.get(candidate.owner_dn, candidate.delegation_id, for_update=True)
        if record is None:
            continue
        if not uow.renewals.has_jobs(record.owner_dn, record.delegation_id, NON_FINAL_STATES):
            log.info("proxy %s of %s deregistered from renewal: no job uses it any more",
                     record.delegation_id, record.owner_dn)
            uow.renewals.delete(record)
            removed += 1
    return removed


# --- what users see ---


@dataclass(frozen=True)
class RenewalStatus:
    """The renewal of one credential, for getJobProxyInfo-like views and the CLI."""

    myproxy_server: str
    attempts: int
    renewals: int
    last_attempt_at: dt.datetime | None
    last_result: str | None
    last_error: str | None
    last_renewed_at: dt.datetime | None
    notes: str | None


def renewal_status(uow: UnitOfWork, owner_dn: str, delegation_id: str) -> RenewalStatus | None:
    """The renewal record of (DN, id), or None when the credential is not renewed."""
    r = uow.renewals.get(owner_dn, delegation_id)
    if r is None:
        return None
    return RenewalStatus(r.myproxy_server, r.attempts, r.renewals, r.last_attempt_at, r.last_result,
                         r.last_error, r.last_renewed_at, r.notes)
