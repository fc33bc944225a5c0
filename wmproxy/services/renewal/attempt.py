"""One renewal attempt: claim a record, then store what MyProxy granted (issue 4).

The renewal worker (``wmproxy.renewal.worker``) owns the threads and the MyProxy exchange;
around it:

* :func:`begin_renewal` claims a record (lease + next attempt time, so that several
  workers try a credential at most once per cycle) and hands the worker the still valid
  stored proxy, which proves possession to MyProxy;
* :func:`finish_renewal` stores what MyProxy granted (sealed, and only if it ends later
  than what is stored: renewal never extends beyond what MyProxy grants, and never
  shortens) and records the attempt; the worker then rewrites the proxy files of the jobs
  (:func:`wmproxy.renewal.jobfiles.push_job_proxy`).

VOMS attributes are refreshed after the MyProxy exchange when the credential was delegated
with FQANs (:mod:`.voms`: the order names the servers, the worker asks them, and
:func:`~.voms.settle_voms_refresh` keeps the refreshed proxy only if it proves exactly the
delegated FQANs). Expired, lost or unverifiable VOMS attributes, and a refresh that failed, are
logged, kept in the record's ``notes`` and written into the ``proxy_renewed`` event of each
job; a renewed proxy whose verified FQANs are others than the delegated ones (which matching
and the account mapping read) is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from wmproxy.errors import ProxyError
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import load_credential
from wmproxy.security.renewed import check_renewed_proxy, expired_voms_attributes, has_voms_attributes
from wmproxy.security.voms import verified_fqans
from wmproxy.services import history
from wmproxy.services.delegation import ac_host_names
from wmproxy.services.renewal.jobfiles import HELD_STATES, ProxyFit, fitting_jobs
from wmproxy.services.renewal.registration import parse_server, server_allowed
from wmproxy.services.renewal.schedule import ac_end, refresh_due, renewal_due, renewal_margin, retry_delay
from wmproxy.services.renewal.voms import VomsRequest, proves_delegated, voms_requests
from wmproxy.services.runtime import Runtime
from wmproxy.services.storekey import check_sealing_key
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import ProxyRenewal
from wmproxy.text import short_text

log = logging.getLogger(__name__)

#: Seconds a claim outlives the MyProxy timeout (then another worker may take the record).
LEASE_MARGIN = 30.0
#: Part of a cycle after which a record may be tried again (a little less than a cycle, so
#: that a worker waking every cycle retries on each wake-up); after an attempt that did not
#: renew, the next one may also wait longer (:func:`~.schedule.retry_delay`).
RETRY_FRACTION = 0.9


@dataclass(frozen=True)
class RenewalOrder:
    """A claimed record: what the worker needs for one MyProxy exchange (times aware UTC)."""

    record_id: int
    owner_dn: str
    delegation_id: str
    host: str
    port: int
    proxy_pem: bytes  # the stored, still valid proxy (proof of possession)
    sealed_proxy: bytes  # as stored: every putProxy, renewal or re-seal writes other bytes
    not_after: dt.datetime  # of the stored proxy
    started_at: dt.datetime  # the time of the claim
    worker: str
    expired_voms: tuple[str, ...] = ()
    key_bits: int = 2048  # RSA size of the renewed proxy's key (:func:`renewal_key_bits`)
    fqans: tuple[str, ...] = ()  # delegated (``delegations.fqans``), primary first
    voms: tuple[VomsRequest, ...] = ()  # the VOMS refresh to make after MyProxy (:mod:`.voms`)
    voms_due: bool = False  # due for its VOMS attributes only (their AC ends; :func:`~.schedule.refresh_due`)


@dataclass(frozen=True)
class RenewalOutcome:
    """What the MyProxy exchange gave: a proxy (grid file layout), or a failure.

    ``result`` is ``renewed`` with ``proxy_pem``, else ``unreachable`` (connection refused,
    timeout, TLS), ``refused`` (MyProxy's ``ERROR`` answer) or ``failed``. After a VOMS
    refresh, ``refreshed_pem`` is the proxy carrying the new ACs (signed by ``proxy_pem``), or
    ``voms_error`` says why there is none; :func:`~.voms.settle_voms_refresh` chooses, and
    ``notes`` are recorded with the attempt.
    """

    result: str
    proxy_pem: bytes | None = None
    error: str | None = None
    refreshed_pem: bytes | None = None
    voms_error: str | None = None
    notes: tuple[str, ...] = field(default=())


def begin_renewal(uow: UnitOfWork, rt: Runtime, record_id: int, worker: str, now: dt.datetime) -> RenewalOrder | None:
    """Claim the record for ``worker`` at ``now`` (aware UTC) and return the order.

    The claim holds for the MyProxy timeout plus :data:`LEASE_MARGIN` seconds and blocks
    another attempt for :data:`RETRY_FRACTION` of a cycle. Returns None when another worker
    has the record, it was tried this cycle, or the proxy is not due any more (renewed
    meanwhile). Returns None too, without any connection, when the record's server is no
    longer allowed (:func:`~wmproxy.services.renewal.registration.server_allowed`: the site's
    list changed since the job was registered); the attempt is then recorded as
    ``not-allowed`` with the reason, for the owner to see. The order's ``key_bits`` is
    :func:`renewal_key_bits` of the stored proxy. Runs in the caller's transaction, whose
    commit publishes the claim.
    """
    settings = rt.settings.renewal
    record = uow.renewals.claim(
        record_id, worker, now,
        lease_until=now + dt.timedelta(seconds=settings.timeout + LEASE_MARGIN),
        next_attempt_at=now + dt.timedelta(seconds=settings.cycle * RETRY_FRACTION),
    )
    if record is None:
        return None
    delegation = uow.delegations.get(record.owner_dn, record.delegation_id)
    if delegation is None:
        _release(record, worker)
        return None
    margin = renewal_margin(settings.threshold, settings.lifetime, delegation.not_after, record.last_renewed_at)
    pem = rt.sealer.open(delegation.sealed_proxy)
    delegated = tuple(f for f in delegation.fqans.split("\n") if f)
    due = renewal_due(delegation.not_after, now, margin)
    voms_due = bool(delegated) and not due and refresh_due(settings, delegation.not_after, ac_end(pem), now)
    if not (voms_due or due):
        _release(record, worker)
        return None
    if not server_allowed(settings, record.myproxy_server):
        _refuse(uow, record, worker, now)
        return None
    host, port = parse_server(record.myproxy_server)
    return RenewalOrder(
        record_id=record.id, owner_dn=record.owner_dn, delegation_id=record.delegation_id, host=host, port=port,
        proxy_pem=pem, sealed_proxy=bytes(delegation.sealed_proxy), not_after=delegation.not_after,
        started_at=now, worker=worker,
        expired_voms=expired_voms_attributes(pem, now),
        key_bits=renewal_key_bits(rt.settings.security.delegation_key_bits, pem),
        fqans=delegated, voms=voms_requests(rt, pem, delegated), voms_due=voms_due,
    )


def renewal_key_bits(configured: int, proxy_pem: bytes) -> int:
    """RSA size in bits of the key to make for a renewed proxy: ``[security]
    delegation_key_bits`` (``configured``), or the size of the stored proxy's key
    (``proxy_pem``, grid file layout) when larger, so that a renewal never weakens a key (a
    proxy delegated with a larger key than the site's, or stored before the site lowered
    its size); the site's size applies from the first renewal on, as for a delegation
    (``wmproxy.services.delegation_keys``). A stored key that is unreadable or not RSA counts
    for nothing (the configured size).
    """
    try:
        key = load_credential(proxy_pem).key
    except ProxyError:
        key = None
    return max(configured, key.key_size if isinstance(key, rsa.RSAPrivateKey) else 0)


def finish_renewal(
    uow: UnitOfWork, rt: Runtime, order: RenewalOrder, outcome: RenewalOutcome, now: dt.datetime
) -> tuple[str, list[str]]:
    """Record the attempt and, on success, replace the stored proxy in the same transaction.

    The new proxy must be of the owner's identity and verify against the CA directory at
    ``now`` (aware UTC); it is stored (sealed, with its end) only if it ends later than the
    stored one and the stored proxy is still the one ``order`` read (``not-extended`` when the
    user delegated again meanwhile: the proxy from MyProxy was made from the replaced one and
    may carry fewer VOMS attributes than the user's new proxy). Returns the result
    (``renewed``, ``not-extended``, or the failure of ``outcome``) and, when renewed, the ids
    of the jobs a worker holds that the renewed proxy fits
    (:class:`~wmproxy.services.renewal.jobfiles.ProxyFit`), whose proxy files are to be
    rewritten; the others keep theirs and get an event. Runs in the caller's transaction.

    Before anything is stored, the store key this process seals with is checked against the
    database's (:func:`~wmproxy.services.storekey.check_sealing_key`, its row locked against a
    rotation until the transaction ends): a worker that kept running through a key rotation
    would store a proxy sealed with the retired key, which nothing opens after its restart.

    Raises:
        wmproxy.services.storekey.RetiredKeyError: the store key was rotated while this
            worker ran; nothing is stored or recorded (the transaction is to be rolled back)
            and the worker must stop.
    """
    if outcome.proxy_pem is not None:  # first, before any row lock: a rotation locks this row first
        check_sealing_key(uow.session, rt.sealer.fingerprint)
    record = uow.renewals.by_id(order.record_id)
    where = f"proxy {order.delegation_id} of {order.owner_dn} from {order.host}:{order.port}"
    notes = [*_voms_notes(order), *outcome.notes]
    result, error, end = outcome.result, error_text(outcome.error), order.not_after
    pushed: list[str] = []
    kept: list[str] = []
    if outcome.proxy_pem is not None:
        result, error, end, delegated = _store(uow, rt, order, outcome.proxy_pem, now, notes)
        error = error_text(error)
        if result == "renewed":
            held = uow.renewals.jobs_of(order.owner_dn, order.delegation_id, HELD_STATES, jobs=uow.jobs)
            fit = ProxyFit(rt, outcome.proxy_pem, delegated, end, now)
            pushed, kept = fitting_jobs(uow, fit, held)
            log.info("renewed %s: valid until %s (was %s); %d running job(s) updated%s",
                     where, end.isoformat(), order.not_after.isoformat(), len(pushed),
                     f", {len(kept)} of other VOMS attributes left alone" if kept else "")
    left = (end - now).total_seconds()
    retry_at = _retry_at(rt, record, end, now) if result != "renewed" else None
    if result == "not-extended":
        log.warning("renewal of %s did not extend the proxy: %s; it expires in %d s, next attempt at %s",
                    where, error, left, retry_at.isoformat() if retry_at else "-")
    elif result != "renewed":
        log.warning("renewal of %s failed (%s): %s; the proxy expires in %d s, next attempt at %s",
                    where, result, error, left, retry_at.isoformat() if retry_at else "-")
    for note in notes:
        log.warning("renewal of %s: %s", where, note)
    if record is not None:
        _record_attempt(record, order, result, error, notes, now)
        if retry_at is not None:
            record.next_attempt_at = retry_at
    history.note_renewal(uow, order.owner_dn, order.delegation_id, result, error, now, notes=notes, kept=kept)
    return result, pushed


#: Characters of an attempt's error stored (the record's ``last_error``, the jobs' events): a
#: MyProxy server's own text is cut at 500 (:data:`wmproxy.renewal.myproxy.MAX_ERROR_TEXT`),
#: the service's words around it and a verification's reason take a few hundred more.
MAX_ERROR_TEXT = 1000


def error_text(error: str | None) -> str | None:
    """``error`` as stored: on one line (:func:`~wmproxy.text.log_text`), at most
    :data:`MAX_ERROR_TEXT` characters."""
    return None if error is None else short_text(error, MAX_ERROR_TEXT)


def _retry_at(rt: Runtime, record: ProxyRenewal | None, end: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When to try again a proxy ending at ``end`` whose attempt at ``now`` did not renew it:
    after :func:`~.schedule.retry_delay` from its remaining lifetime, and not before the next
    cycle (:data:`RETRY_FRACTION`, as the claim set it)."""
    settings = rt.settings.renewal
    margin = renewal_margin(settings.threshold, settings.lifetime, end,
                            record.last_renewed_at if record is not None else None)
    delay = retry_delay((end - now).total_seconds(), settings.threshold, margin)
    return now + dt.timedelta(seconds=max(settings.cycle * RETRY_FRACTION, delay))


def _record_attempt(record: ProxyRenewal, order: RenewalOrder, result: str, error: str | None,
                    notes: list[str], now: dt.datetime) -> None:
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


def _store(
    uow: UnitOfWork, rt: Runtime, order: RenewalOrder, pem: bytes, now: dt.datetime, notes: list[str]
) -> tuple[str, str | None, dt.datetime, tuple[str, ...]]:
    """Replace the stored proxy with ``pem`` if usable, longer, and the stored proxy is still the
    one the order read (not delegated again meanwhile): (result, error, end, the delegated
    FQANs, which a renewal keeps). Longer is not asked of a renewal made for the VOMS
    attributes (``order.voms_due``) whose proxy proves them: as the reference, the proxy with
    new attributes replaces one whose attributes ended, even if MyProxy granted a shorter one.

    The verified FQANs of ``pem`` must prove the stored ones (``delegation.fqans``, which
    matching and the account mapping read; :func:`~.voms.proves_delegated`), or be none (a
    note: MyProxy holds no VOMS attributes).
    """
    sec = rt.settings.security
    try:
        validity = check_renewed_proxy(pem, order.owner_dn, sec.ca_dir, now, stored_pem=order.proxy_pem,
                                       max_depth=rt.settings.limits.max_proxy_chain_depth)
        fqans = verified_fqans(load_pem_chain(pem), vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, at=now,
                               host_names=ac_host_names(rt))
    except ProxyError as exc:
        return "failed", f"unusable proxy from MyProxy: {exc}", order.not_after, ()
    delegation = uow.renewals.lock_delegation(order.owner_dn, order.delegation_id)
    if delegation is None:
        return "failed", "the delegation was destroyed during the renewal", order.not_after, ()
    delegated = tuple(f for f in delegation.fqans.split("\n") if f)
    if bytes(delegation.sealed_proxy) != order.sealed_proxy:
        notes.clear()  # they were of the replaced proxy
        return ("not-extended", ("the stored proxy was replaced during the renewal (delegated again); the proxy "
                                 "from MyProxy, made from the one replaced, is not stored"), delegation.not_after,
                delegated)
    if fqans and not proves_delegated(fqans, delegated):  # none: MyProxy holds no VOMS attributes (below)
        return "failed", (f"MyProxy returned a proxy with the VOMS attributes {' '.join(fqans)}, not the "
                          f"delegated ones ({' '.join(delegated) or 'none'})"), order.not_after, delegated
    if validity.not_after <= delegation.not_after and not (order.voms_due and fqans):
        return ("not-extended", (f"MyProxy granted a proxy until {validity.not_after.isoformat()}, not later than "
                                 f"the stored one ({delegation.not_after.isoformat()})"), delegation.not_after,
                delegated)
    note = _lost_voms_note(order, pem, delegated, fqans, refresh_tried=bool(order.voms))
    if note is not None:
        notes.append(note)
    delegation.sealed_proxy = rt.sealer.seal(pem)
    delegation.not_before = validity.not_before
    delegation.not_after = validity.not_after
    delegation.updated_at = now
    return "renewed", None, validity.not_after, delegated


def _lost_voms_note(order: RenewalOrder, pem: bytes, delegated: tuple[str, ...],
                    fqans: tuple[str, ...], *, refresh_tried: bool) -> str | None:
    """What the renewed proxy ``pem`` (verified FQANs ``fqans``) no longer proves, if anything.

    Based on the verified FQANs: a proxy whose ACs do not verify (ended, as the 12 h AC of a
    MyProxy credential stored with ``myproxy-init --voms`` once it has outlived it, or signed by
    a VOMS server this service does not trust) proves no more than one without AC. The
    delegated FQANs stay the credential's (jobs keep being matched and mapped with them, as
    after a stored proxy's own AC ends); the note tells the owner. When a refresh was tried
    (``refresh_tried``), its own note says why it failed.
    """
    if fqans:
        return None
    why = "" if refresh_tried else f"; {_NO_REFRESH}"
    if has_voms_attributes(pem):
        if not delegated:
            return None  # the stored proxy proved none either
        return (f"the VOMS attributes of the renewed proxy do not verify (ended, or not signed by a VOMS server "
                f"this service trusts): it does not prove the delegated ones ({' '.join(delegated)}){why}")
    if delegated or order.expired_voms or has_voms_attributes(order.proxy_pem):
        return f"the renewed proxy carries no VOMS attributes (MyProxy holds none{why})"
    return None


#: Why a renewal without delegated FQANs (or with ``[renewal] voms_refresh`` off) refreshes
#: no VOMS attributes.
_NO_REFRESH = "they are refreshed only for a credential delegated with VOMS attributes and [renewal] voms_refresh on"


def _refuse(uow: UnitOfWork, record: ProxyRenewal, worker: str, now: dt.datetime) -> None:
    """Record an attempt refused before any connection: the record's server is not allowed."""
    error = (f"the MyProxy server {record.myproxy_server} is not allowed by this service "
             "([renewal] myproxy_allowed_servers); the proxy is not renewed")
    log.warning("renewal of proxy %s of %s refused: %s", record.delegation_id, record.owner_dn, error)
    record.attempts = (record.attempts or 0) + 1
    record.last_attempt_at = now
    record.last_result = "not-allowed"
    record.last_error = error
    record.updated_at = now
    _release(record, worker)
    history.note_renewal(uow, record.owner_dn, record.delegation_id, "not-allowed", error, now)


def _release(record: ProxyRenewal, worker: str) -> None:
    if record.claimed_by == worker:
        record.claimed_by = None
        record.claimed_until = None


def _voms_notes(order: RenewalOrder) -> list[str]:
    if not order.expired_voms:
        return []
    refreshed = "asked again of a VOMS server" if order.voms else f"not refreshed: {_NO_REFRESH}"
    return ["VOMS attributes expired while the X.509 proxy was valid: " + ", ".join(order.expired_voms)
            + f" (renewed; {refreshed})"]
