"""Read-only queries of the job monitor and the metrics (counts, pages of jobs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, load_only

from wmproxy.domain import JobState
from wmproxy.store.housekeeping import (
    EXPIRED_TOMBSTONES,
    REMOVED_RENEWAL_ATTEMPTS,
    REMOVED_RENEWALS,
    meta_count,
)
from wmproxy.store.schema import ExecutionRequest, Job, JobDependency, ProxyRenewal, PurgedJob


def jobs_by_state(session: Session, owner_dn: str | None = None) -> dict[str, int]:
    """State → number of jobs (and nodes, when ``owner_dn`` is None; else the owner's top-level jobs)."""
    stmt = select(Job.state, func.count()).group_by(Job.state)
    if owner_dn is not None:
        stmt = stmt.where(Job.owner_dn == owner_dn, Job.parent_id.is_(None))
    return {state: int(count) for state, count in session.execute(stmt).all()}


def queue_depth(session: Session) -> int:
    """Execution requests not done yet."""
    stmt = select(func.count()).select_from(ExecutionRequest).where(ExecutionRequest.done_at.is_(None))
    return int(session.scalar(stmt) or 0)


def renewal_counts(session: Session) -> tuple[int, int]:
    """(renewals that gave a proxy, attempts that did not): summed over the renewal records,
    plus the running totals of the records deleted (``service_meta``), in one statement (one
    snapshot), so neither steps down when records go."""
    row = session.execute(select(
        select(func.coalesce(func.sum(ProxyRenewal.renewals), 0)).scalar_subquery() + meta_count(REMOVED_RENEWALS),
        select(func.coalesce(func.sum(ProxyRenewal.attempts), 0)).scalar_subquery()
        + meta_count(REMOVED_RENEWAL_ATTEMPTS))).one()
    ok, attempts = int(row[0]), int(row[1])
    return ok, max(attempts - ok, 0)


def purge_count(session: Session) -> int:
    """Jobs purged: top-level jobs in state Cleared (purged by jobPurge, rows still kept: one per
    job, however many events its purge recorded, a ``cleared`` and a ``purged`` event, one
    ``cleared`` per node), plus the purger's tombstones (one per job and node it removed), plus
    the tombstones deleted after ``[purge] tombstone_age`` (``service_meta``). In one statement
    (one snapshot): a Cleared job the purger removes leaves a tombstone in the same transaction,
    a tombstone deleted is counted in the same transaction, so the sum never steps down."""
    cleared = (select(func.count()).select_from(Job)
               .where(Job.state == JobState.CLEARED.value, Job.parent_id.is_(None)).scalar_subquery())
    tombstones = select(func.count()).select_from(PurgedJob).scalar_subquery()
    return int(session.scalar(select(cleared + tombstones + meta_count(EXPIRED_TOMBSTONES))) or 0)


def owner_jobs_page(session: Session, owner_dn: str, *, state: str | None, since: dt.datetime | None,
                    until: dt.datetime | None, offset: int, limit: int) -> tuple[int, Sequence[Job]]:
    """(how many match, one page of them newest first): the owner's top-level jobs, filtered by
    state and by creation time (``since`` inclusive, ``until`` exclusive, UTC)."""
    where = [Job.owner_dn == owner_dn, Job.parent_id.is_(None)]
    if state:
        where.append(Job.state == state)
    if since is not None:
        where.append(Job.created_at >= since)
    if until is not None:
        where.append(Job.created_at < until)
    total = int(session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)
    rows = session.scalars(select(Job).where(*where).order_by(Job.created_at.desc(), Job.id)
                           .offset(offset).limit(limit)).all()
    return total, rows


def dag_size(session: Session, parent_id: str) -> tuple[int, int]:
    """(nodes, dependencies between them) of compound job ``parent_id``, in one statement;
    (0, 0) for a simple job."""
    nodes = select(func.count()).select_from(Job).where(Job.parent_id == parent_id).scalar_subquery()
    edges = (select(func.count()).select_from(JobDependency)
             .join(Job, Job.id == JobDependency.job_id).where(Job.parent_id == parent_id).scalar_subquery())
    node_total, edge_total = session.execute(select(nodes, edges)).one()
    return int(node_total or 0), int(edge_total or 0)


#: What a node's row in the monitor needs (never its JDLs: a node's are kilobytes, and a
#: compound job has up to ``[jobs] max_nodes`` nodes).
_NODE_ROW = load_only(Job.id, Job.node_name, Job.state, Job.exit_code, Job.reason, Job.destination,
                      Job.created_at, Job.updated_at)


def node_rows(session: Session, parent_id: str, *, offset: int = 0, limit: int | None = None) -> Sequence[Job]:
    """The nodes of compound job ``parent_id`` by node name, from ``offset``, at most ``limit``;
    only the columns :data:`_NODE_ROW` names are loaded."""
    stmt = (select(Job).options(_NODE_ROW).where(Job.parent_id == parent_id)
            .order_by(Job.node_name, Job.id).offset(offset).limit(limit))
    return session.scalars(stmt).all()


def node_edges(session: Session, parent_id: str) -> list[tuple[str, str]]:
    """(node id, node it depends on) for the nodes of compound job ``parent_id``."""
    stmt = (select(JobDependency.job_id, JobDependency.depends_on)
            .join(Job, Job.id == JobDependency.job_id).where(Job.parent_id == parent_id)
            .order_by(JobDependency.id))
    return [(a, b) for a, b in session.execute(stmt).all()]
