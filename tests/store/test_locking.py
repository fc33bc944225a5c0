"""Row locks on PostgreSQL: one lock order (a compound job before its node) and a worker's
claim that never waits for a job row while it holds a queue row. Together they keep a
worker and a concurrent jobCancel from deadlocking (seen under load: the jobCancel of a
node got "Internal server error" when PostgreSQL broke the deadlock). SQLite serialises
writers (BEGIN IMMEDIATE) and has no row locks, so these run on PostgreSQL only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _postgres_database
from tests.store.locking_support import family
from wmproxy.admin import upgrade_database
from wmproxy.config import DatabaseSettings, Settings
from wmproxy.domain import utcnow
from wmproxy.store import JobLockedError, UnitOfWork, make_engine, make_session_factory


@pytest.fixture(scope="module")
def factory() -> Iterator:
    for url in _postgres_database():
        upgrade_database(Settings(database=DatabaseSettings(url=url)))
        engine = make_engine(url)
        yield make_session_factory(engine)
        engine.dispose()


def test_locking_a_node_takes_its_compound_job_first(factory) -> None:
    parent, node = family(factory, "order")
    with UnitOfWork(factory) as holder:
        assert holder.jobs.get(parent, for_update=True) is not None
        with pytest.raises(JobLockedError), UnitOfWork(factory) as other:
            other.jobs.get(node, for_update=True, nowait=True)
    with UnitOfWork(factory) as uow:  # released at commit
        locked = uow.jobs.get(node, for_update=True, nowait=True)
        assert locked is not None and locked.id == node


def _claim_then_lock(factory, node: str) -> None:
    """What a worker's claim does: claim the oldest start request, lock its job, complete
    the request (a second update of the row: PostgreSQL then share-locks the job's row for
    the foreign key, which must not wait either)."""
    with UnitOfWork(factory) as worker:
        request = worker.queue.claim_next("w1", utcnow(), command="start")
        assert request is not None and request.job_id == node
        worker.jobs.get(node, for_update=True, nowait=True)
        worker.queue.complete(request, utcnow())


def test_a_claim_gives_way_to_a_cancel_holding_thejob_row(factory) -> None:
    """The cancel locks the node, then completes its queued start request; the worker has
    claimed that request (row locked) and must not wait for the node: it rolls back."""
    _parent, node = family(factory, "claim")
    with UnitOfWork(factory) as uow:
        uow.queue.enqueue(node, "start", utcnow())
    with UnitOfWork(factory) as cancel:
        assert cancel.jobs.get(node, for_update=True) is not None
        with pytest.raises(JobLockedError):
            _claim_then_lock(factory, node)
        pending = cancel.queue.pending_for(node)  # the worker's claim was rolled back
        assert [r.command for r in pending] == ["start"]
        for request in pending:
            cancel.queue.complete(request, utcnow())  # would wait forever if the claim still held the row
    with UnitOfWork(factory) as uow:
        assert uow.queue.claim_next("w1", utcnow(), command="start") is None
