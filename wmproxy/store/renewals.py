"""Repository of proxy renewal records (one per delegated credential) and the job and
delegation queries the renewal worker needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wmproxy.store.engine import rows_matched
from wmproxy.store.housekeeping import count_removed_renewals
from wmproxy.store.jobs import SqlJobStore
from wmproxy.store.schema import Delegation, Job, ProxyRenewal


@dataclass(frozen=True)
class RenewalCandidate:
    """A record with the validity of the proxy it renews (None: the delegation is gone)."""

    id: int
    owner_dn: str
    delegation_id: str
    next_attempt_at: dt.datetime | None
    claimed_until: dt.datetime | None
    last_renewed_at: dt.datetime | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    fqans: str | None = None  # the delegation's, newline separated ("" or None: none)
    updated_at: dt.datetime | None = None  # of the delegation: its proxy changed


@dataclass(frozen=True)
class JobProxyTarget:
    """A job a worker holds, with the end of the stored proxy of its credential."""

    job_id: str
    owner_dn: str
    delegation_id: str
    not_after: dt.datetime


class SqlRenewalStore:
    """Records are keyed by (owner DN, delegation id), like the delegations they renew."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def get(self, owner_dn: str, delegation_id: str, *, for_update: bool = False) -> ProxyRenewal | None:
        stmt = select(ProxyRenewal).where(
            ProxyRenewal.owner_dn == owner_dn, ProxyRenewal.delegation_id == delegation_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def by_id(self, record_id: int) -> ProxyRenewal | None:
        return self.session.get(ProxyRenewal, record_id)

    def register(self, owner_dn: str, delegation_id: str, server: str, now: dt.datetime, *,
                 replace: Callable[[str], bool] = lambda _current: True) -> ProxyRenewal:
        """Create the record of (DN, id) or point the existing one at ``server`` when
        ``replace(its server)`` is true (by default always; else it keeps its server).

        The existing row is locked (so a concurrent deregistration waits for this
        transaction and then sees its jobs); a concurrent first registration of the same
        credential loses the insert inside a savepoint and updates the winner's row.
        """
        row = self.get(owner_dn, delegation_id, for_update=True)
        if row is None:
            try:
                with self.session.begin_nested():
                    row = ProxyRenewal(
                        owner_dn=owner_dn, delegation_id=delegation_id, myproxy_server=server,
                        created_at=now, updated_at=now, attempts=0, renewals=0,
                    )
                    self.session.add(row)
                    self.session.flush()
                return row
            except IntegrityError:
                row = self.get(owner_dn, delegation_id, for_update=True)
                if row is None:  # inserted concurrently, then deleted before we could read it
                    raise
        if not replace(row.myproxy_server):
            return row
        row.myproxy_server = server
        row.updated_at = now
        self.session.flush()
        return row

    def candidates(self) -> list[RenewalCandidate]:
        """Every record with its delegation's validity (the schedule is decided by the caller)."""
        stmt = select(
            ProxyRenewal.id, ProxyRenewal.owner_dn, ProxyRenewal.delegation_id, ProxyRenewal.next_attempt_at,
            ProxyRenewal.claimed_until, ProxyRenewal.last_renewed_at, Delegation.not_before, Delegation.not_after,
            Delegation.fqans, Delegation.updated_at,
        ).outerjoin(
            Delegation,
            and_(Delegation.owner_dn == ProxyRenewal.owner_dn, Delegation.delegation_id == ProxyRenewal.delegation_id),
        ).order_by(ProxyRenewal.id)
        return [RenewalCandidate(**row._asdict()) for row in self.session.execute(stmt).all()]

    def claim(
        self, record_id: int, worker: str, now: dt.datetime, *, lease_until: dt.datetime, next_attempt_at: dt.datetime
    ) -> ProxyRenewal | None:
        """Take the record for one MyProxy attempt unless another worker holds it or already
        tried it this cycle; None when taken or not due.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so a record another transaction is
        claiming is skipped rather than waited for. Both databases: the conditional UPDATE is
        a compare-and-set only one worker wins (SQLite transactions begin IMMEDIATE).
        """
        free = and_(
            ProxyRenewal.id == record_id,
            or_(ProxyRenewal.claimed_until.is_(None), ProxyRenewal.claimed_until <= now),
            or_(ProxyRenewal.next_attempt_at.is_(None), ProxyRenewal.next_attempt_at <= now),
        )
        if self._postgres():
            found = self.session.scalars(select(ProxyRenewal.id).where(free).with_for_update(skip_locked=True))
            if found.one_or_none() is None:
                return None
        won = rows_matched(
            self.session,
            update(ProxyRenewal)
            .where(free)
            .values(claimed_by=worker, claimed_until=lease_until, next_attempt_at=next_attempt_at)
            .execution_options(synchronize_session=False),
        )
        if won != 1:
            return None
        row = self.by_id(record_id)
        if row is not None:
            self.session.refresh(row)
        return row

    def delete(self, row: ProxyRenewal) -> None:
        """Delete the (locked) record; its counters go to the running totals (``service_meta``)."""
        count_removed_renewals(self.session, [(row.renewals, row.attempts)])
        self.session.delete(row)
        self.session.flush()

    def delete_many(self, ids: Iterable[int]) -> None:
        count_removed_renewals(self.session, self.session.execute(
            delete(ProxyRenewal).where(ProxyRenewal.id.in_(list(ids)))
            .returning(ProxyRenewal.renewals, ProxyRenewal.attempts)).all())

    # --- delegations and jobs, as the renewal worker sees them ---

    def lock_delegation(self, owner_dn: str, delegation_id: str) -> Delegation | None:
        """The delegation row of (DN, id), locked until the end of the transaction."""
        return self.session.scalars(
            select(Delegation)
            .where(Delegation.owner_dn == owner_dn, Delegation.delegation_id == delegation_id)
            .with_for_update()
        ).one_or_none()

    def jobs_of(self, owner_dn: str, delegation_id: str, states: Iterable[str], *,
                jobs: SqlJobStore) -> list[Job]:
        """Jobs of the credential in ``states``, locked, nodes before their compound jobs (the
        order the callers handle them in: a node's end may end its compound job).

        They are locked in the one order (:meth:`~wmproxy.store.jobs.SqlJobStore.lock_all` of
        ``jobs``, the transaction's job store: a compound job before its nodes, also when
        the compound job is not in ``states``), as jobCancel, the execution worker and the
        claim lock them; locking the nodes first deadlocked with them on PostgreSQL. The ids
        are read without a lock, then the states again under it: a job that left ``states``
        meanwhile is not returned, one that entered them is left to the next pass.
        """
        wanted = list(states)
        ids = self.session.scalars(
            select(Job.id)
            .where(Job.owner_dn == owner_dn, Job.delegation_id == delegation_id, Job.state.in_(wanted))
            .order_by(Job.parent_id.is_(None), Job.id)
        ).all()
        locked = jobs.lock_all(ids)
        return [job for job_id in ids if (job := locked.get(job_id)) is not None and job.state in wanted]

    def has_jobs(self, owner_dn: str, delegation_id: str, states: Iterable[str]) -> bool:
        return self.session.scalar(
            select(
                exists().where(
                    Job.owner_dn == owner_dn, Job.delegation_id == delegation_id, Job.state.in_(list(states))
                )
            )
        ) or False

    def expired_credentials(self, now: dt.datetime, states: Iterable[str],
                            held_states: Iterable[str]) -> list[tuple[str, str]]:
        """(DN, id) of the delegations that have expired while jobs in ``states`` use them, and
        of those that are gone (destroyed) while jobs in ``held_states`` use them."""
        expired = (
            select(Job.owner_dn, Job.delegation_id)
            .join(Delegation, and_(Delegation.owner_dn == Job.owner_dn, Delegation.delegation_id == Job.delegation_id))
            .where(Job.state.in_(list(states)), Delegation.not_after <= now)
        )
        gone = select(Job.owner_dn, Job.delegation_id).where(
            Job.state.in_(list(held_states)),
            ~exists().where(Delegation.owner_dn == Job.owner_dn, Delegation.delegation_id == Job.delegation_id),
        )
        return [(dn, did) for dn, did in self.session.execute(union(expired, gone)).all()]

    def held_jobs(self, states: Iterable[str]) -> list[JobProxyTarget]:
        """Jobs in ``states`` (those a worker holds) with their stored proxy's end."""
        stmt = (
            select(Job.id, Job.owner_dn, Job.delegation_id, Delegation.not_after)
            .join(Delegation, and_(Delegation.owner_dn == Job.owner_dn, Delegation.delegation_id == Job.delegation_id))
            .where(Job.state.in_(list(states)))
            .order_by(Job.owner_dn, Job.delegation_id)
        )
        return [JobProxyTarget(*row) for row in self.session.execute(stmt).all()]
