"""Repository of the deployment's shared facts (``service_meta``), of the sealed columns
(for a key rotation) and of what the purger removes (``wmproxy.services.purge``).

Knows tables, not policy: the callers give the cut-off times and the states.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, ColumnElement, ScalarSelect, and_, cast, delete, exists, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wmproxy.store.schema import (
    Delegation,
    DelegationRequest,
    ExecutionRequest,
    ExecutionWorkerRow,
    Job,
    ProxyRenewal,
    PurgedJob,
    ServiceMeta,
)

#: ``service_meta`` name of the store key's fingerprint.
STORE_KEY_FINGERPRINT = "store_key_fingerprint"
#: ``service_meta`` names of the running totals of what the purger and the renewal worker
#: removed: the ``renewals`` and ``attempts`` of deleted renewal records, and the tombstones
#: deleted after ``[purge] tombstone_age``. The metrics add them to what the rows still hold,
#: so their counters never step down when rows go (``wmproxy.monitoring.metrics``).
REMOVED_RENEWALS = "removed_renewals"
REMOVED_RENEWAL_ATTEMPTS = "removed_renewal_attempts"
EXPIRED_TOMBSTONES = "expired_tombstones"
#: ``session.info`` key of the totals a transaction adds at its commit (:func:`count_removed`).
_REMOVED = "wmproxy.store.removed"


def count_removed(session: Session, counts: dict[str, int]) -> None:
    """Add ``counts`` (``service_meta`` name → number) to those running totals when this
    transaction commits (:func:`add_removed_counts`, run by the unit of work), so they count
    exactly the rows whose removal commits."""
    pending: dict[str, int] = session.info.setdefault(_REMOVED, {})
    for name, n in counts.items():
        pending[name] = pending.get(name, 0) + int(n or 0)


def add_removed_counts(session: Session) -> None:
    """Write what :func:`count_removed` noted in this transaction (nothing when it noted
    nothing); the unit of work runs it just before the commit.

    The rows are locked last, held only until the commit: a transaction holding one waits for
    no other row, so removals running at once (purgers of several workers, the renewal
    worker's deregistration) do not deadlock on them.
    """
    pending: dict[str, int] | None = session.info.pop(_REMOVED, None)
    if not pending:
        return
    store, now = SqlHousekeepingStore(session), dt.datetime.now(dt.UTC)
    for name, n in sorted(pending.items()):
        if n:
            store.add_to_meta(name, n, now)


def meta_count(name: str) -> ScalarSelect[int]:
    """The running total ``name`` of ``service_meta`` (0 when none), as a scalar subquery: read
    in the statement that reads the rows, it sees them in one snapshot (a removal and its count
    commit together)."""
    return (select(func.coalesce(func.sum(cast(ServiceMeta.value, BigInteger)), 0))
            .where(ServiceMeta.name == name).scalar_subquery())


@dataclass(frozen=True)
class PurgeCandidate:
    """A top-level job the purger may remove, and the rule that selected it."""

    job_id: str
    owner_dn: str
    state: str
    updated_at: dt.datetime
    rule: str


class SqlHousekeepingStore:
    """``service_meta``, the sealed columns, purge candidates and tombstones."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # --- service_meta ---

    def meta(self, name: str, *, for_update: bool = False, for_share: bool = False) -> str | None:
        """The value of ``name`` (None: none); ``for_update`` locks its row, waiting for a
        transaction that holds it to end; ``for_share`` locks it against writers only
        (PostgreSQL ``FOR SHARE``; SQLite serialises writers anyway)."""
        if for_update or for_share:
            return self.session.scalars(select(ServiceMeta.value).where(ServiceMeta.name == name)
                                        .with_for_update(read=not for_update)).one_or_none()
        row = self.session.get(ServiceMeta, name)
        return None if row is None else row.value

    def put_meta(self, name: str, value: str, now: dt.datetime) -> None:
        """Insert or replace ``name``; row-locked so two writers serialise."""
        row = self.session.scalars(select(ServiceMeta).where(ServiceMeta.name == name).with_for_update()).one_or_none()
        if row is None:
            self.session.add(ServiceMeta(name=name, value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now
        self.session.flush()

    def add_to_meta(self, name: str, n: int, now: dt.datetime) -> None:
        """Add ``n`` to the integer value of ``name`` (created at ``n``); row-locked, and a
        concurrent first insert loses inside a savepoint and adds to the winner's row."""
        row = self.session.scalars(select(ServiceMeta).where(ServiceMeta.name == name).with_for_update()).one_or_none()
        if row is None:
            try:
                with self.session.begin_nested():
                    self.session.add(ServiceMeta(name=name, value=str(n), updated_at=now))
                return
            except IntegrityError:
                row = self.session.scalars(select(ServiceMeta).where(ServiceMeta.name == name)
                                           .with_for_update()).one()
        row.value, row.updated_at = str(int(row.value) + n), now
        self.session.flush()

    # --- sealed columns ---

    def sealed_count(self) -> int:
        """How many rows hold a sealed secret (delegations plus pending requests)."""
        return (self.session.scalar(select(func.count()).select_from(Delegation)) or 0) + (
            self.session.scalar(select(func.count()).select_from(DelegationRequest)) or 0)

    def any_sealed(self) -> bytes | None:
        """One sealed token (to test a key against), None when none is stored."""
        token = self.session.scalar(select(Delegation.sealed_proxy).limit(1))
        return token if token is not None else self.session.scalar(select(DelegationRequest.sealed_key).limit(1))

    def sealed_rows_locked(self) -> tuple[Sequence[Delegation], Sequence[DelegationRequest]]:
        """Every delegation and pending request, locked until the end of the transaction: the
        requests first, in putProxy's order (its statement takes a request's row, then the
        delegation's), so a putProxy running meanwhile waits instead of deadlocking."""
        requests = self.session.scalars(
            select(DelegationRequest).order_by(DelegationRequest.id).with_for_update()).all()
        delegations = self.session.scalars(select(Delegation).order_by(Delegation.id).with_for_update()).all()
        return delegations, requests

    def sealed_sample(self, limit: int) -> list[tuple[str, str, bytes]]:
        """The ``limit`` most recently written rows of each sealed column, as ``(what, whose,
        token)``: delegations, pending requests and pooled delegation keys (the newest are the
        ones a process still running with a retired key would have sealed)."""
        from wmproxy.store.keypool import PooledDelegationKey

        rows: list[tuple[str, str, bytes]] = []
        for d in self.session.execute(select(Delegation.owner_dn, Delegation.delegation_id, Delegation.sealed_proxy)
                                      .order_by(Delegation.updated_at.desc()).limit(limit)):
            rows.append(("delegation", f"{d.owner_dn} {d.delegation_id}", d.sealed_proxy))
        for r in self.session.execute(select(DelegationRequest.owner_dn, DelegationRequest.delegation_id,
                                             DelegationRequest.sealed_key)
                                      .order_by(DelegationRequest.created_at.desc()).limit(limit)):
            rows.append(("pending request", f"{r.owner_dn} {r.delegation_id}", r.sealed_key))
        for k in self.session.execute(select(PooledDelegationKey.id, PooledDelegationKey.sealed_key)
                                      .order_by(PooledDelegationKey.created_at.desc()).limit(limit)):
            rows.append(("pooled key", f"#{k.id}", k.sealed_key))
        return rows

    # --- what runs (liveness records) ---

    def live_execution_workers(self, since: dt.datetime) -> Sequence[ExecutionWorkerRow]:
        """Execution workers whose last heartbeat is at or after ``since``, by name."""
        return self.session.scalars(select(ExecutionWorkerRow).where(ExecutionWorkerRow.heartbeat_at >= since)
                                    .order_by(ExecutionWorkerRow.name)).all()

    def renewal_claimers(self, now: dt.datetime) -> list[str]:
        """Names of the renewal workers holding a renewal lease that ends after ``now`` (one
        is in a MyProxy exchange), sorted."""
        names = self.session.scalars(select(ProxyRenewal.claimed_by).where(ProxyRenewal.claimed_until > now)).all()
        return sorted({name for name in names if name is not None})

    def discard_key_pool(self) -> int:
        """Remove every pre-generated delegation key (sealed with the key being retired; never
        handed out, so nothing depends on them); the service's fillers make new ones."""
        from wmproxy.store.keypool import PooledDelegationKey

        return int(self.session.execute(delete(PooledDelegationKey)).rowcount or 0)  # type: ignore[attr-defined]

    # --- purge candidates ---

    def purge_candidates(self, *, final_states: Iterable[str], final_before: dt.datetime,
                         forced_before: dt.datetime, forced_spared_states: Iterable[str], registered_state: str,
                         registered_before: dt.datetime, limit: int,
                         after: tuple[dt.datetime, str] | None = None) -> list[PurgeCandidate]:
        """Top-level jobs (nodes go with their parent) to purge, oldest first (last change,
        then id), after ``after`` (a candidate's ``(updated_at, job_id)``) if given:

        * ``final``: in ``final_states`` and last changed before ``final_before``;
        * ``registered``: in ``registered_state`` (never started) and registered before
          ``registered_before``;
        * ``forced``: last changed before ``forced_before``, in any state but
          ``forced_spared_states`` (left out here, so they never take a place in the batch).

        A job's last change is ``updated_at``, which every state change sets (the reference's
        purger measured from the L&B ``lastUpdateTime``, §4.7 ``-t``; its creation would take
        the output of a job that ran longer than the threshold as soon as it ends). A compound
        job's nodes count through it: the compound job takes its state from theirs
        (``wmproxy.services.compound.refresh_parent``) and becomes final only in the
        transaction that ends its last node, so its own ``updated_at`` is never older than a
        node's end; until then it is active (spared) or was never started (Submitted).
        """
        final = and_(Job.state.in_(list(final_states)), Job.updated_at < final_before)
        registered = and_(Job.state == registered_state, Job.created_at < registered_before)
        forced = and_(Job.updated_at < forced_before, Job.state.not_in(list(forced_spared_states)))
        stmt = (select(Job.id, Job.owner_dn, Job.state, Job.updated_at, Job.created_at)
                .where(Job.parent_id.is_(None), or_(final, registered, forced))
                .order_by(Job.updated_at, Job.id).limit(limit))
        if after is not None:
            stmt = stmt.where(or_(Job.updated_at > after[0], and_(Job.updated_at == after[0], Job.id > after[1])))
        out = []
        for job_id, owner, state, updated, created in self.session.execute(stmt).all():
            if state in set(final_states) and updated < final_before:
                rule = "final"
            elif state == registered_state and created < registered_before:
                rule = "registered"
            else:
                rule = "forced"
            out.append(PurgeCandidate(job_id, owner, state, updated, rule))
        return out

    def lock_job(self, job_id: str) -> Job | None:
        """The job row, locked (NOWAIT on PostgreSQL is not used: a purge can wait), as it is once
        locked (also when the session read it before)."""
        return self.session.scalars(select(Job).where(Job.id == job_id).with_for_update()
                                    .execution_options(populate_existing=True)).one_or_none()

    def node_ids(self, parent_id: str) -> list[str]:
        return list(self.session.scalars(select(Job.id).where(Job.parent_id == parent_id)).all())

    def remove_job(self, job: Job, reason: str, now: dt.datetime) -> list[str]:
        """Delete the job, its nodes and (by cascade) their events, queue entries, ACL and
        dependencies; leave a tombstone for each. Returns the ids removed (nodes first)."""
        ids = [*self.node_ids(job.id), job.id]
        for job_id in ids:
            self.session.merge(PurgedJob(job_id=job_id, owner_dn=job.owner_dn, state=job.state, reason=reason,
                                         purged_at=now))
        self.session.execute(delete(ExecutionRequest).where(ExecutionRequest.job_id.in_(ids)))
        self.session.execute(delete(Job).where(Job.parent_id == job.id))
        self.session.execute(delete(Job).where(Job.id == job.id))
        self.session.flush()
        return ids

    def tombstone(self, job_id: str) -> PurgedJob | None:
        return self.session.get(PurgedJob, job_id)

    def tombstones_before(self, before: dt.datetime) -> int:
        """Delete tombstones older than ``before``; returns how many went."""
        result = self.session.execute(delete(PurgedJob).where(PurgedJob.purged_at < before))
        removed = int(getattr(result, "rowcount", 0) or 0)
        count_removed(self.session, {EXPIRED_TOMBSTONES: removed})
        return removed

    def existing_jobs(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` (a batch) have a row."""
        return set(self.session.scalars(select(Job.id).where(Job.id.in_(list(job_ids)))).all())

    def job_exists(self, job_id: str) -> bool:
        return bool(self.session.scalar(select(exists().where(Job.id == job_id))))

    # --- credentials ---

    @staticmethod
    def _unused_expired(expired_before: dt.datetime, live_states: Iterable[str]) -> ColumnElement[bool]:
        """The delegation expired before ``expired_before`` and no job in ``live_states`` uses it."""
        used = exists().where(Job.owner_dn == Delegation.owner_dn, Job.delegation_id == Delegation.delegation_id,
                              Job.state.in_(list(live_states)))
        return and_(Delegation.not_after < expired_before, not_(used))

    def unused_expired_delegations(self, expired_before: dt.datetime, live_states: Iterable[str],
                                   limit: int) -> list[tuple[str, str]]:
        """(DN, id) of delegations that expired before ``expired_before`` and no job in
        ``live_states`` uses."""
        stmt = (select(Delegation.owner_dn, Delegation.delegation_id)
                .where(self._unused_expired(expired_before, live_states)).limit(limit))
        return [(dn, did) for dn, did in self.session.execute(stmt).all()]

    def remove_delegation(self, owner_dn: str, delegation_id: str, expired_before: dt.datetime,
                          live_states: Iterable[str]) -> bool:
        """Delete the delegation of (DN, id) and its renewal record if it still meets
        :meth:`unused_expired_delegations`' conditions; returns whether it went.

        The conditions are repeated in the ``DELETE``: between the listing and here a putProxy may
        have stored a fresh proxy under the same (DN, id) (the default id is fixed per DN and
        FQANs), and on PostgreSQL (READ COMMITTED) the ``DELETE`` sees it; that row stays.
        """
        result = self.session.execute(delete(Delegation).where(
            Delegation.owner_dn == owner_dn, Delegation.delegation_id == delegation_id,
            self._unused_expired(expired_before, live_states)))
        if not getattr(result, "rowcount", 0):
            return False
        count_removed_renewals(self.session, self.session.execute(
            delete(ProxyRenewal).where(ProxyRenewal.owner_dn == owner_dn, ProxyRenewal.delegation_id == delegation_id)
            .returning(ProxyRenewal.renewals, ProxyRenewal.attempts)).all())
        return True

    def stale_requests(self, created_before: dt.datetime) -> list[tuple[str, str]]:
        """(DN, id) of pending delegation requests created before ``created_before``."""
        stmt = select(DelegationRequest.owner_dn, DelegationRequest.delegation_id).where(
            DelegationRequest.created_at < created_before)
        return [(dn, did) for dn, did in self.session.execute(stmt).all()]

    def remove_requests(self, created_before: dt.datetime) -> int:
        result = self.session.execute(delete(DelegationRequest).where(DelegationRequest.created_at < created_before))
        return int(getattr(result, "rowcount", 0) or 0)

    def orphan_renewals(self, live_states: Iterable[str]) -> list[tuple[str, str]]:
        """(DN, id) of renewal records whose delegation is gone and which no job in
        ``live_states`` uses (a destroyed delegation's record stays while its jobs run: a
        delegation stored again under the same id is renewed for them)."""
        stmt = select(ProxyRenewal.owner_dn, ProxyRenewal.delegation_id).where(_orphan(live_states))
        return [(dn, did) for dn, did in self.session.execute(stmt).all()]

    def remove_renewal(self, owner_dn: str, delegation_id: str, live_states: Iterable[str]) -> bool:
        """Delete the renewal record of (DN, id) if it is still an orphan (a putProxy may have
        stored the delegation again, or a job may use it, since :meth:`orphan_renewals` listed
        it); True if deleted."""
        removed = self.session.execute(delete(ProxyRenewal).where(
            ProxyRenewal.owner_dn == owner_dn, ProxyRenewal.delegation_id == delegation_id, _orphan(live_states))
            .returning(ProxyRenewal.renewals, ProxyRenewal.attempts)).all()
        count_removed_renewals(self.session, removed)
        return bool(removed)

    # --- what an operator sees ---

    def jobs(self, *, owner_dn: str | None = None, states: Sequence[str] = (), older_than: dt.datetime | None = None,
             newer_than: dt.datetime | None = None, limit: int = 1000) -> Sequence[Job]:
        """Top-level jobs, newest first, filtered by owner DN, states and creation time."""
        stmt = select(Job).where(Job.parent_id.is_(None))
        if owner_dn:
            stmt = stmt.where(Job.owner_dn == owner_dn)
        if states:
            stmt = stmt.where(Job.state.in_(list(states)))
        if older_than is not None:
            stmt = stmt.where(Job.created_at < older_than)
        if newer_than is not None:
            stmt = stmt.where(Job.created_at >= newer_than)
        return self.session.scalars(stmt.order_by(Job.created_at.desc()).limit(limit)).all()

    def counts_by_state_and_owner(self) -> list[tuple[str, str, int]]:
        """(state, owner DN, count) of every job and node."""
        stmt = select(Job.state, Job.owner_dn, func.count()).group_by(Job.state, Job.owner_dn).order_by(Job.state)
        return [(state, owner, int(n)) for state, owner, n in self.session.execute(stmt).all()]

    def queue_depth(self) -> int:
        """Execution requests not done yet."""
        return self.session.scalar(
            select(func.count()).select_from(ExecutionRequest).where(ExecutionRequest.done_at.is_(None))) or 0


def count_removed_renewals(session: Session, removed: Iterable[tuple[int | None, int | None]]) -> None:
    """Keep the ``(renewals, attempts)`` of deleted renewal records in the running totals."""
    rows = list(removed)
    count_removed(session, {REMOVED_RENEWALS: sum(r or 0 for r, _a in rows),
                            REMOVED_RENEWAL_ATTEMPTS: sum(a or 0 for _r, a in rows)})


def _orphan(live_states: Iterable[str]) -> ColumnElement[bool]:
    """No delegation exists for the renewal record's (DN, id) and no job in ``live_states``
    uses it (correlated EXISTS)."""
    delegation = exists().where(Delegation.owner_dn == ProxyRenewal.owner_dn,
                                Delegation.delegation_id == ProxyRenewal.delegation_id).correlate(ProxyRenewal)
    used = exists().where(Job.owner_dn == ProxyRenewal.owner_dn, Job.delegation_id == ProxyRenewal.delegation_id,
                          Job.state.in_(list(live_states))).correlate(ProxyRenewal)
    return and_(not_(delegation), not_(used))
