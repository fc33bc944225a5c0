"""Repository of execution worker heartbeats (``execution_workers``) and of the jobs each
worker holds (``jobs.worker``).

A worker registers under its name when it starts and refreshes ``heartbeat_at``
periodically. A worker whose heartbeat is older than the lease is dead; another worker
on its host (or the same worker restarted under the same name) takes its jobs over with
:meth:`SqlWorkerStore.take_over`, a compare-and-set on the dead worker's row, so that
with several workers racing exactly one of them adopts the jobs:

* PostgreSQL (READ COMMITTED): the conditional DELETE locks the row; a concurrent
  taker waits, then re-evaluates the condition and matches nothing.
* SQLite: transactions start with ``BEGIN IMMEDIATE`` (``engine.py``), so writers are
  serialised and the second taker no longer finds the row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from wmproxy.store.engine import rows_matched
from wmproxy.store.schema import ExecutionRequest, ExecutionWorkerRow, Job, not_by_index


class SqlWorkerStore:
    """Worker heartbeats, looked up by worker name."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, name: str, *, for_update: bool = False) -> ExecutionWorkerRow | None:
        """The row of worker ``name``, if any."""
        stmt = select(ExecutionWorkerRow).where(ExecutionWorkerRow.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def all(self) -> Sequence[ExecutionWorkerRow]:
        """Every registered worker, by name."""
        return self.session.scalars(select(ExecutionWorkerRow).order_by(ExecutionWorkerRow.name)).all()

    def register(self, name: str, host: str, pid: int, now: dt.datetime) -> None:
        """Record worker ``name`` as running on ``host`` as ``pid`` since ``now`` (its
        previous row, if any, is replaced; its jobs stay its own)."""
        row = self.get(name, for_update=True)
        if row is None:
            self.session.add(ExecutionWorkerRow(name=name, host=host, pid=pid, started_at=now, heartbeat_at=now))
        else:
            row.host, row.pid, row.started_at, row.heartbeat_at = host, pid, now, now
        self.session.flush()

    def heartbeat(self, name: str, host: str, pid: int, now: dt.datetime) -> bool:
        """Refresh the heartbeat of ``name`` if it is still this process's (host, pid).

        Returns False when the row is gone or belongs to another process: the worker
        was taken for dead and its jobs adopted, so it must stop touching them.
        """
        return rows_matched(
            self.session,
            update(ExecutionWorkerRow)
            .where(ExecutionWorkerRow.name == name, ExecutionWorkerRow.host == host, ExecutionWorkerRow.pid == pid)
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False),
        ) == 1

    def stale(self, host: str, cutoff: dt.datetime, exclude: str) -> Sequence[ExecutionWorkerRow]:
        """Workers on ``host`` whose last heartbeat is before ``cutoff``, except ``exclude``."""
        return self.session.scalars(
            select(ExecutionWorkerRow)
            .where(
                ExecutionWorkerRow.host == host,
                ExecutionWorkerRow.heartbeat_at < cutoff,
                ExecutionWorkerRow.name != exclude,
            )
            .order_by(ExecutionWorkerRow.name)
        ).all()

    def take_over(self, dead: ExecutionWorkerRow, heir: str, states: Iterable[str], *,
                  backend_kinds: Collection[str] | None = None, any_backend: Collection[str] = (),
                  stopping: Collection[str] = ()) -> int | None:
        """Compare-and-set: give the dead worker's jobs in ``states`` to worker ``heir`` and
        remove its row, if its heartbeat is still the one seen.

        Args:
            stopping: states (final ones) whose jobs change hands too while a ``cancel``
                request for them is pending: their process was still to be stopped.
            backend_kinds: when given, only the jobs whose ``backend_ref`` names one of these
                kinds (``<kind>:...``; none counts as ``local``), or whose state is in
                ``any_backend``, change hands; the row stays while the dead worker holds other
                jobs in ``states``, for a worker with their backend.

        Returns:
            How many jobs changed hands, or None when another worker took the row over
            first (or the dead worker came back and heartbeat meanwhile).
        """
        seen = (ExecutionWorkerRow.name == dead.name, ExecutionWorkerRow.heartbeat_at == dead.heartbeat_at)
        held = (Job.worker == dead.name, _held_states(states, stopping))
        # The row is locked (and checked) first: two heirs never both win it.
        won = rows_matched(self.session, update(ExecutionWorkerRow).where(*seen)
                           .values(heartbeat_at=dead.heartbeat_at).execution_options(synchronize_session=False))
        if won != 1:
            return None
        followable = () if backend_kinds is None else (_of_kinds(backend_kinds, any_backend),)
        moved = rows_matched(self.session, update(Job).where(*held, *followable)
                             .values(worker=heir).execution_options(synchronize_session=False))
        self.session.execute(delete(ExecutionWorkerRow).where(*seen, ~exists().where(*held))
                             .execution_options(synchronize_session=False))
        return moved

    def held_jobs(self, name: str, states: Iterable[str], *, stopping: Collection[str] = ()) -> Sequence[Job]:
        """Jobs in ``states`` held by worker ``name``, and those in ``stopping`` with a pending
        ``cancel`` request (:meth:`take_over`), oldest first, locked for update."""
        return self.session.scalars(
            select(Job)
            .where(Job.worker == name, _held_states(states, stopping))
            .order_by(Job.created_at)
            .with_for_update()
        ).all()

    def remove(self, name: str, host: str, pid: int) -> bool:
        """Delete the row of ``name`` if it is this process's; True when deleted."""
        return rows_matched(
            self.session,
            delete(ExecutionWorkerRow)
            .where(ExecutionWorkerRow.name == name, ExecutionWorkerRow.host == host, ExecutionWorkerRow.pid == pid)
            .execution_options(synchronize_session=False),
        ) == 1


def _held_states(states: Iterable[str], stopping: Collection[str]) -> ColumnElement[bool]:
    """A job in ``states``, or in ``stopping`` with a pending ``cancel`` request."""
    held = Job.state.in_(list(states))
    if not stopping:
        return held
    cancel_pending = exists().where(ExecutionRequest.job_id == Job.id, ExecutionRequest.command == "cancel",
                                    not_by_index(ExecutionRequest.done_at).is_(None))
    return or_(held, and_(Job.state.in_(list(stopping)), cancel_pending))


def _of_kinds(kinds: Collection[str], any_backend: Collection[str]) -> ColumnElement[bool]:
    """Jobs whose backend reference names one of ``kinds`` (none: ``local``), or in a state
    of ``any_backend``."""
    matches: list[ColumnElement[bool]] = [Job.backend_ref.startswith(f"{kind}:", autoescape=True) for kind in kinds]
    if "local" in kinds:
        matches.append(Job.backend_ref.is_(None))
    if any_backend:
        matches.append(Job.state.in_(list(any_backend)))
    return or_(*matches) if matches else Job.id.is_(None)
