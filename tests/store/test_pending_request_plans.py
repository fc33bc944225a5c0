"""The worker's look-ups of a job's pending execution requests go by the job's index on SQLite,
not by ``ix_execution_requests_pending`` (``done_at`` first): without statistics SQLite took
``done_at IS NULL`` for a few rows and walked every pending request of the queue, each cycle of
every worker (about 0.3 ms a call with 3,000 queued; issue 14, helper exec-lean)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store import UnitOfWork, jobs, workers
from wmproxy.store.schema import Job

IDS = {"ids": ["https://h:9000/a", "https://h:9000/b"], "command": "cancel"}


def _plan(session: Session, statement: sa.Executable) -> str:
    sql = str(statement.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}))
    return " ".join(str(row) for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")).all())


@pytest.mark.sqlite_only  # PostgreSQL plans by its statistics
@pytest.mark.parametrize("statement", [
    jobs._PENDING_JOBS.params(**IDS),
    jobs._PENDING_COMMANDS.params(**IDS),
    jobs._PENDING_FOR.params(job_id="https://h:9000/a"),
    sa.select(Job.id).where(workers._held_states(["Running"], ["Cancelled"])),
], ids=["pending_jobs", "pending_commands", "pending_for", "held_states"])
def test_pending_requests_are_looked_up_by_their_job(factory: sessionmaker[Session],
                                                     statement: sa.Executable) -> None:
    with UnitOfWork(factory) as uow:
        plan = _plan(uow.session, statement)
    assert "ix_execution_requests_job_id" in plan, plan
    assert "ix_execution_requests_pending" not in plan, plan
