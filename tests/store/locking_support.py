"""Rows for the row-lock tests (tests/store/test_locking.py, test_lock_all.py): a job, and a
compound job with one node; :func:`run_together`, threads racing for the same rows; and, for the
tests that order transactions by PostgreSQL's own lock queue (test_destroy_beside_put_proxy.py,
test_rotation_beside_put_proxy.py), :func:`hold_request_row`, :func:`lock_waiters` and
:func:`race_behind_request_row` (with :func:`lock_waiters`, :func:`start_thread`); and
:func:`race_behind_row`, the same behind any row (:func:`hold_rows`; test_sandbox_usage_races.py: a user's
usage counter; test_renewal_lock_order.py: a job, :func:`hold_job_row`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from tests.support import start_thread, wait_for
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

T = TypeVar("T")


def job_row(job_id: str, parent_id: str | None = None, *, owner_dn: str = "/CN=x", state: str = "Waiting") -> Job:
    now = utcnow()
    return Job(id=job_id, parent_id=parent_id, owner_dn=owner_dn, delegation_id="d", state=state,
               jdl_original="[]", jdl_registered="[]", sandbox_dir=job_id, created_at=now, updated_at=now)


def family(factory, name: str) -> tuple[str, str]:
    parent, node = f"https://h:9000/{name}", f"https://h:9000/{name}-node"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(job_row(parent))
        uow.jobs.add(job_row(node, parent))
    return parent, node


def run_together(count: int, fn: Callable[[int], T], deadline: float = 120.0) -> list[T]:
    """``fn(0)`` ... ``fn(count - 1)`` in ``count`` threads released together by a barrier;
    their results (in the order they finished). Fails the test if any raised or did not end
    within ``deadline`` seconds (generous: the machine is shared)."""
    results: list[T] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(deadline)
            results.append(fn(n))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline)
    assert errors == []
    assert not any(t.is_alive() for t in threads)
    return results


def hold_request_row(conn: sa.Connection, owner_dn: str, delegation_id: str) -> None:
    """Lock the pending delegation request of (``owner_dn``, ``delegation_id``) in ``conn``'s
    transaction (``SELECT ... FOR UPDATE``) until it ends: putProxy's statement, and whatever
    locks that row after it, then wait in PostgreSQL's queue for it, in the order they came."""
    locked = conn.execute(sa.text(
        "SELECT count(*) FROM (SELECT 1 FROM delegation_requests WHERE owner_dn = :dn "
        "AND delegation_id = :id FOR UPDATE) AS locked"), {"dn": owner_dn, "id": delegation_id}).scalar_one()
    assert locked == 1


def hold_rows(locking: sa.Select[Any]) -> Callable[[sa.Connection], None]:
    """For :func:`race_behind_row`: lock the one row ``locking`` (a ``SELECT ... FOR UPDATE``)
    selects in the connection's transaction."""
    def hold(conn: sa.Connection) -> None:
        assert len(conn.execute(locking).all()) == 1

    return hold


def hold_job_row(job_id: str) -> Callable[[sa.Connection], None]:
    """For :func:`race_behind_row`: lock the job ``job_id``'s row (:func:`hold_rows`)."""
    return hold_rows(sa.select(Job.id).where(Job.id == job_id).with_for_update())


def lock_waiters(conn: sa.Connection) -> int:
    """Backends of this database waiting for a lock (``conn`` in autocommit: a transaction
    would keep reading its first snapshot of the statistics)."""
    return int(conn.execute(sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )).scalar_one())


def race_behind_request_row(database_url: str, owner_dn: str, delegation_id: str,
                            *calls: tuple[str, Callable[[], Any]], deadline: float = 120.0) -> dict[str, Any]:
    """Run ``calls`` (``(name, call)``) in threads queued, in that order, for the pending request
    row of (``owner_dn``, ``delegation_id``) (:func:`hold_request_row`; see :func:`race_behind_row`)."""
    return race_behind_row(database_url, lambda conn: hold_request_row(conn, owner_dn, delegation_id),
                           *calls, deadline=deadline)


def race_behind_row(database_url: str, hold_row: Callable[[sa.Connection], None],
                    *calls: tuple[str, Callable[[], Any]], deadline: float = 120.0,
                    also_waiting: Callable[[], int] = lambda: 0) -> dict[str, Any]:
    """Run ``calls`` (``(name, call)``) in threads queued, in that order, for a row: a third
    connection holds it (``hold_row(conn)``, e.g. :func:`hold_request_row`), each call is started
    once the one before waits for a lock (``pg_stat_activity``, polled up to ``deadline`` seconds;
    or, counted by ``also_waiting``, for a lock the calls take before the row's, such as a job's
    ``flock``), and the row is let go once all wait. Returns ``{name: result or the exception raised}``; fails
    the test if a thread has not ended within ``deadline`` seconds (generous: the machine is shared)."""
    outcome: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    holder = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as hold, holder.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            hold_row(hold)
            for waiting, (name, call) in enumerate(calls, start=1):
                threads.append(start_thread(name, call, outcome))
                wait_for(lambda: lock_waiters(watch) + also_waiting(), lambda n, waiting=waiting: n == waiting,
                         what=f"{name} to wait for a row", timeout=deadline)
            hold.rollback()
            for thread in threads:
                thread.join(deadline)
            assert not any(thread.is_alive() for thread in threads)
    finally:
        holder.dispose()
    return outcome
