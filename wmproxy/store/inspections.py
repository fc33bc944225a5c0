"""Inspection requests (live inspection of running jobs, ``docs/inspection.md``) and the
job event each inspection leaves.

A request goes ``pending`` (asked) → ``running`` (the job's agent took it) → ``done``
(the agent posted a result) or ``failed`` (no answer in time, the job stopped). A request
asked of a job that had already ended is not stored (its ``ended`` answer is made from the job:
``wmproxy.services.inspection``); ``ended`` rows are those of earlier releases. Requests are
deleted ``[inspection] retention`` after they were asked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    ScalarSelect,
    String,
    Text,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from wmproxy.domain import INSPECTION_FINISHED
from wmproxy.store.schema import Base, JobEvent, UTCDateTime

PENDING, RUNNING, DONE, FAILED, ENDED = "pending", "running", "done", "failed", "ended"
FINISHED = INSPECTION_FINISHED
assert {DONE, FAILED, ENDED} == FINISHED  # noqa: S101 - the states named here


class InspectionRequest(Base):
    """One inspection of one job: the command, who asked, and what came back."""

    __tablename__ = "inspection_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, URL-safe
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    requester_dn: Mapped[str] = mapped_column(String(512), index=True)  # the per-user cap (migration 0016)
    argv: Mapped[str] = mapped_column(Text)  # JSON list of strings
    time_limit: Mapped[float] = mapped_column(Float())  # seconds
    output_cap: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))  # bytes
    state: Mapped[str] = mapped_column(String(16), index=True)
    asked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)  # retention (migration 0016)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    timed_out: Mapped[bool] = mapped_column(Boolean(), default=False)
    truncated: Mapped[bool] = mapped_column(Boolean(), default=False)
    output: Mapped[bytes | None] = mapped_column(LargeBinary)  # at most output_cap bytes
    message: Mapped[str | None] = mapped_column(Text)  # why it failed, or the ended job's state


def _lock_key(kind: str, name: str) -> int:
    """The signed 64-bit ``pg_advisory_xact_lock`` key of the requests of one job or one DN."""
    digest = hashlib.blake2b(f"wmproxy inspection {kind}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlInspectionStore:
    """Inspection requests in the caller's session (the unit of work's)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, request: InspectionRequest) -> None:
        self.session.add(request)

    def get(self, request_id: str, *, for_update: bool = False) -> InspectionRequest | None:
        stmt = select(InspectionRequest).where(InspectionRequest.id == request_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).first()

    def next_pending(self, job_id: str) -> InspectionRequest | None:
        """The oldest pending request of ``job_id``, locked (PostgreSQL) for the claim."""
        stmt = (
            select(InspectionRequest)
            .where(InspectionRequest.job_id == job_id, InspectionRequest.state == PENDING)
            .order_by(InspectionRequest.asked_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        return self.session.scalars(stmt).first()

    def of_job(self, job_id: str) -> Sequence[InspectionRequest]:
        stmt = select(InspectionRequest).where(InspectionRequest.job_id == job_id).order_by(InspectionRequest.asked_at)
        return self.session.scalars(stmt).all()

    def lock_counts(self, job_id: str, requester_dn: str) -> None:
        """Serialise, until this transaction ends, the transactions that count and then add
        requests of ``job_id`` or of ``requester_dn`` (so a count read after this call stays
        true until the commit): on PostgreSQL transaction-scoped advisory locks, the job's then
        the DN's (one order for every caller: no deadlock), each keyed by a 64-bit hash of its
        kind and name (a collision only serialises more). Nothing else waits on them: the
        agent's claims, the purger and the jobs' rows are not locked. SQLite: nothing to do,
        its transactions begin ``BEGIN IMMEDIATE`` (one writer at a time)."""
        if self.session.get_bind().dialect.name == "sqlite":
            return
        for kind, name in (("job", job_id), ("dn", requester_dn)):
            self.session.execute(text("select pg_advisory_xact_lock(:key)"), {"key": _lock_key(kind, name)})

    def counts(self, job_id: str, requester_dn: str) -> tuple[int, int]:
        """(requests ``job_id`` keeps, requests ``requester_dn`` keeps over all jobs), whatever
        their state, in one statement."""
        def kept(where: ColumnElement[bool]) -> ScalarSelect[int]:
            return select(func.count()).select_from(InspectionRequest).where(where).scalar_subquery()

        row = self.session.execute(select(kept(InspectionRequest.job_id == job_id),
                                          kept(InspectionRequest.requester_dn == requester_dn))).one()
        return int(row[0] or 0), int(row[1] or 0)

    def remove_expired_of(self, job_id: str, requester_dn: str, asked_before: dt.datetime) -> int:
        """Delete the requests of ``job_id`` or of ``requester_dn`` asked before ``asked_before``;
        how many."""
        result = self.session.execute(delete(InspectionRequest).where(
            or_(InspectionRequest.job_id == job_id, InspectionRequest.requester_dn == requester_dn),
            InspectionRequest.asked_at < asked_before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def count_expired(self, asked_before: dt.datetime) -> int:
        stmt = select(func.count()).select_from(InspectionRequest).where(InspectionRequest.asked_at < asked_before)
        return int(self.session.scalar(stmt) or 0)

    def remove_expired(self, asked_before: dt.datetime, limit: int) -> int:
        """Delete at most ``limit`` requests asked before ``asked_before``, oldest first; how many."""
        oldest = (select(InspectionRequest.id).where(InspectionRequest.asked_at < asked_before)
                  .order_by(InspectionRequest.asked_at).limit(limit))
        result = self.session.execute(delete(InspectionRequest).where(InspectionRequest.id.in_(oldest)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def add_event(self, job_id: str, state: str, reason: str, at: dt.datetime) -> None:
        """A ``job_events`` row for an inspection; the job's state is left unchanged."""
        self.session.add(JobEvent(job_id=job_id, state=state, reason=reason, at=at))
