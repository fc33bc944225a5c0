"""The Core INSERTs of a simple jobRegister/jobSubmit (``SqlJobStore.insert``,
``SqlExecutionQueue.insert``) on a real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import ExecutionRequest, Job


def _job(job_id: str, state: str, now: dt.datetime, parent_id: str | None = None) -> Job:
    return Job(id=job_id, parent_id=parent_id, owner_dn="/CN=core", delegation_id="d", state=state,
               jdl_original="[ a = 1 ]", jdl_registered="[ a = 1; b = 2 ]", sandbox_dir=job_id.rsplit("/", 1)[1],
               local_account="pool01", created_at=now, updated_at=now)


def test_a_started_job_goes_in_with_its_history_and_its_request(factory) -> None:
    now = utcnow().replace(microsecond=0)
    job_id = "https://h:9000/core-started"
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_job(job_id, "Waiting", now), ("Submitted", "Waiting"))
        uow.queue.insert(job_id, "start", now)
        assert job_id not in {getattr(o, "id", None) for o in uow.session}  # not kept in the session
    with UnitOfWork(factory) as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        assert (job.state, job.owner_dn, job.jdl_registered, job.local_account) == (
            "Waiting", "/CN=core", "[ a = 1; b = 2 ]", "pool01")
        assert (job.shallow_retries, job.deep_retries, job.exit_code, job.reason) == (0, 0, None, None)
        assert job.created_at == now
        events = uow.jobs.events(job_id)
        assert [(e.state, e.kind, e.source, e.at) for e in events] == [
            ("Submitted", "registered", "user", now), ("Waiting", "enqueued", "service", now)]
        claimed = uow.queue.claim_next("w-core", now, command="start")
        assert claimed is not None and claimed.job_id == job_id and claimed.created_at == now


def test_a_job_inserted_with_its_request_is_the_same_as_in_three_steps(factory) -> None:
    """``insert(..., request="start")`` (on PostgreSQL one statement) leaves the rows that
    ``insert`` then ``queue.insert`` leave, and counts as the transaction's notification."""
    now = utcnow().replace(microsecond=0)
    rows = {}
    for job_id, together in (("https://h:9000/core-one-go", True), ("https://h:9000/core-steps", False)):
        with UnitOfWork(factory) as uow:
            if together:
                uow.jobs.insert(_job(job_id, "Waiting", now), ("Submitted", "Waiting"), request="start")
                assert uow.session.info.get("wmproxy.queue_notified") is (
                    True if uow.session.get_bind().dialect.name == "postgresql" else None)
            else:
                uow.jobs.insert(_job(job_id, "Waiting", now), ("Submitted", "Waiting"))
                uow.queue.insert(job_id, "start", now)
        with UnitOfWork(factory) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            request = uow.session.scalars(sa.select(ExecutionRequest).where(ExecutionRequest.job_id == job_id)).one()
            rows[together] = (
                (job.state, job.owner_dn, job.jdl_original, job.jdl_registered, job.sandbox_dir, job.local_account,
                 job.shallow_retries, job.deep_retries, job.exit_code, job.reason, job.created_at, job.updated_at),
                [(e.state, e.kind, e.source, e.reason, e.at) for e in uow.jobs.events(job_id)],
                (request.command, request.created_at, request.claimed_by, request.not_before, request.done_at))
    one_go, steps = rows[True], rows[False]
    assert one_go[0][4] == "core-one-go" and steps[0][4] == "core-steps"
    assert (one_go[0][:4], one_go[0][5:], one_go[1:]) == (steps[0][:4], steps[0][5:], steps[1:])
    assert one_go[1] == [("Submitted", "registered", "user", None, now), ("Waiting", "enqueued", "service", None, now)]
    assert one_go[2] == ("start", now, None, None, None)


def test_a_registered_job_has_one_event_and_no_request(factory) -> None:
    now = utcnow()
    job_id = "https://h:9000/core-registered"
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_job(job_id, "Submitted", now), ("Submitted",))
    with UnitOfWork(factory) as uow:
        assert [e.state for e in uow.jobs.events(job_id)] == ["Submitted"]
        assert uow.session.scalar(
            sa.select(sa.func.count()).select_from(ExecutionRequest).where(ExecutionRequest.job_id == job_id)) == 0


def test_pending_rows_of_the_session_go_first(factory) -> None:
    """A row the ORM still holds (here the parent the new row refers to) is flushed before
    the Core INSERT, so the foreign key holds on both databases."""
    now = utcnow()
    parent, child = "https://h:9000/core-parent", "https://h:9000/core-child"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(_job(parent, "Submitted", now), flush=False)
        uow.jobs.insert(_job(child, "Submitted", now, parent_id=parent), ("Submitted",))
    with UnitOfWork(factory) as uow:
        assert [j.id for j in uow.jobs.children(parent)] == [child]


def test_a_rolled_back_insert_leaves_nothing(factory) -> None:
    now = utcnow()
    job_id = "https://h:9000/core-rolled-back"

    def fail_after_the_inserts() -> None:
        with UnitOfWork(factory) as uow:
            uow.jobs.insert(_job(job_id, "Waiting", now), ("Submitted", "Waiting"))
            uow.queue.insert(job_id, "start", now)
            raise RuntimeError("the submission failed after the INSERTs")

    with pytest.raises(RuntimeError, match=r"^the submission failed after the INSERTs$"):
        fail_after_the_inserts()
    with UnitOfWork(factory) as uow:
        assert uow.jobs.get(job_id) is None
        assert list(uow.jobs.events(job_id)) == []


@pytest.mark.parametrize("history", [(), ("Submitted",), ("Waiting", "Submitted")])
def test_the_history_must_end_with_the_state(factory, history: tuple[str, ...]) -> None:
    with UnitOfWork(factory) as uow:
        job = _job("https://h:9000/core-bad", "Waiting", utcnow())
        with pytest.raises(ValueError, match="must end with its state"):
            uow.jobs.insert(job, history)


@pytest.mark.parametrize("request_command", [None, "start"])
def test_a_refused_insert_is_sqlalchemys_integrity_error_and_leaves_nothing(factory, request_command) -> None:
    """The INSERTs go to the driver's connection (``DriverStatement.send``): a row the database
    refuses (here a job id taken) is raised as SQLAlchemy raises a failed statement's, and the
    transaction is rolled back whole (no event, no request of the refused job)."""
    now = utcnow().replace(microsecond=0)
    job_id = f"https://h:9000/core-twice-{request_command}"
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_job(job_id, "Submitted", now), ("Submitted",))
    with pytest.raises(sa.exc.IntegrityError) as raised, UnitOfWork(factory) as uow:
        uow.jobs.insert(_job(job_id, "Waiting", now), ("Submitted", "Waiting"), request=request_command)
    assert "jobs" in str(raised.value.statement)
    with UnitOfWork(factory) as uow:
        assert [e.state for e in uow.jobs.events(job_id)] == ["Submitted"]
        assert uow.session.scalar(
            sa.select(sa.func.count()).select_from(ExecutionRequest).where(ExecutionRequest.job_id == job_id)) == 0
        uow.jobs.insert(_job(job_id + "-next", "Submitted", now), ("Submitted",))  # the pooled connection still serves


def test_an_insert_on_a_lost_connection_is_a_disconnect_and_the_next_transaction_works(factory) -> None:
    """The driver's connection gone under the transaction (the database restarted, say): the
    INSERT sent on it is raised as SQLAlchemy's disconnect, its connection invalidated, and
    the pool connects anew for the next unit of work."""
    now = utcnow().replace(microsecond=0)
    job_id = "https://h:9000/core-lost-connection"

    def insert_on_a_lost_connection() -> None:
        with UnitOfWork(factory) as uow:
            uow.session.connection().connection.dbapi_connection.close()
            uow.jobs.insert(_job(job_id, "Submitted", now), ("Submitted",))

    with pytest.raises(sa.exc.DBAPIError) as raised:
        insert_on_a_lost_connection()
    assert raised.value.connection_invalidated
    assert "INSERT INTO jobs" in str(raised.value.statement)  # the INSERT's error, not the rollback's
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_job(job_id, "Submitted", now), ("Submitted",))
    with UnitOfWork(factory) as uow:
        assert [e.state for e in uow.jobs.events(job_id)] == ["Submitted"]
