"""SqlJobStore.lock_states + set_states (the worker's Scheduled/Running/ends as Core statements)
and the claim's Core statements (SqlExecutionQueue.claim_rows + settle, SqlJobStore.lock_claims +
set_ready) write the same job rows, the same events in the same order and the same request rows
as the ORM path (claim_next, get with for_update, set_state, record_event, complete, postpone,
release). Both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import family, job_row
from wmproxy.store import JobLockedError, UnitOfWork
from wmproxy.store.jobs import ClaimedJob, ClaimedRequest, RequestChange, StateChange
from wmproxy.store.schema import ExecutionRequest, Job, JobEvent

_NOW = dt.datetime(2026, 12, 3, 8, 30, 0, 123456, tzinfo=dt.UTC)
_SKIP = {"id", "sandbox_dir", "created_at"}


def _rows(factory: sessionmaker[Session], job_id: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    with factory() as session:
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
        row = {c.key: getattr(job, c.key) for c in Job.__table__.columns if c.key not in _SKIP}
        events = [(e.state, e.reason, e.at, e.kind, e.source) for e in
                  session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]
        return row, events


def _new(factory: sessionmaker[Session]) -> str:
    job_id = f"https://h:9000/{uuid.uuid4().hex}"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(job_row(job_id))
    return job_id


def _orm(factory: sessionmaker[Session], job_id: str, state: str, *, reason: str | None = None,
         exit_code: int | None = None, ref: str | None = None, submitted: bool = False) -> None:
    with UnitOfWork(factory) as uow:
        job = uow.jobs.get(job_id, for_update=True)
        assert job is not None
        uow.jobs.set_state(job, state, _NOW, reason=reason, exit_code=exit_code)
        if ref is not None:
            job.backend_ref = ref
        if submitted:
            uow.jobs.record_event(job, "backend_submitted", _NOW, source="worker", reason=f"submitted to {ref}")


def test_set_states_writes_what_the_orm_path_writes(factory: sessionmaker[Session]) -> None:
    orm, core, other = _new(factory), _new(factory), _new(factory)
    for job_id in (orm, core, other):
        with UnitOfWork(factory) as uow:  # a reason and a backend reference that the next change keeps or clears
            job = uow.jobs.get(job_id, for_update=True)
            assert job is not None
            uow.jobs.set_state(job, "Ready", _NOW, reason="matched to CE x")
    _orm(factory, orm, "Scheduled", ref="local:h:1:/w", submitted=True)
    _orm(factory, orm, "Running", ref="local:h:2:/w")
    _orm(factory, orm, "Done", reason="fine", exit_code=3)
    steps = [("Scheduled", StateChange(core, backend_ref="local:h:1:/w", submitted=True)),
             ("Running", StateChange(core, backend_ref="local:h:2:/w")),
             ("Done", StateChange(core, reason="fine", exit_code=3))]
    for state, change in steps:
        with UnitOfWork(factory) as uow:
            assert set(uow.jobs.lock_states([core, other, core, "https://h:9000/unknown"])) == {core, other}
            uow.jobs.set_states(state, _NOW, [change])
    (row, events), (orm_row, orm_events) = _rows(factory, core), _rows(factory, orm)
    assert (row, events[1:]) == (orm_row, orm_events[1:])  # the first: the job's registration, at its own time
    assert (row["state"], row["exit_code"], row["backend_ref"], row["reason"]) == ("Done", 3, "local:h:2:/w", "fine")
    assert [e[3] for e in events] == ["enqueued", "matched", "scheduled", "backend_submitted", "running", "done"]
    assert _rows(factory, other)[0]["state"] == "Ready"  # locked, not changed


def test_set_states_of_several_jobs_keeps_each_jobs_event_order(factory: sessionmaker[Session]) -> None:
    jobs = [_new(factory) for _ in range(3)]
    with UnitOfWork(factory) as uow:
        uow.jobs.lock_states(jobs)
        uow.jobs.set_states("Scheduled", _NOW, [StateChange(j, backend_ref=f"r{i}", submitted=True)
                                                for i, j in enumerate(jobs)])
    for i, job_id in enumerate(jobs):
        row, events = _rows(factory, job_id)
        assert (row["state"], row["backend_ref"], row["updated_at"]) == ("Scheduled", f"r{i}", _NOW)
        assert events[1:] == [("Scheduled", None, _NOW, "scheduled", "worker"),
                              ("Scheduled", f"submitted to r{i}", _NOW, "backend_submitted", "worker")]


def test_lock_states_reads_state_and_compound_job(factory: sessionmaker[Session]) -> None:
    parent, node = family(factory, f"states-{uuid.uuid4().hex}")
    with UnitOfWork(factory) as uow:
        assert uow.jobs.lock_states([node]) == {node: ("Waiting", parent, 0)}
        assert uow.jobs.lock_states([]) == {}


# --- the claim (services.execution.claim_starts/claim_next_start): Core rows against the ORM path ---

_LATER = _NOW + dt.timedelta(seconds=5)


def _request_row(factory: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    with factory() as session:
        request = session.scalars(select(ExecutionRequest).where(ExecutionRequest.job_id == job_id)).one()
        return {c.key: getattr(request, c.key) for c in ExecutionRequest.__table__.columns
                if c.key not in {"id", "job_id"}}


def _queued(factory: sessionmaker[Session], *, not_before: dt.datetime | None = None) -> str:
    """A Waiting job with a reason and an old backend reference, and its start request."""
    job_id = _new(factory)
    with UnitOfWork(factory) as uow:
        job = uow.jobs.get(job_id, for_update=True)
        assert job is not None
        uow.jobs.set_state(job, "Waiting", _NOW, reason="requeued: earlier")
        job.backend_ref = "local:h:9:/old"
        uow.queue.enqueue(job_id, "start", _NOW, not_before=not_before)
    return job_id


def _claimed_orm(uow: UnitOfWork, job_id: str) -> tuple[ExecutionRequest, Job]:
    request = uow.queue.claim_next("w", _LATER, command="start")
    assert request is not None and request.job_id == job_id
    job = uow.jobs.get(job_id, for_update=True, nowait=True)
    assert job is not None
    return request, job


def _claimed_core(uow: UnitOfWork, job_id: str) -> tuple[ClaimedRequest, ClaimedJob]:
    [request] = uow.queue.claim_rows("w", _LATER, command="start", limit=5)
    assert request.job_id == job_id
    jobs = uow.jobs.lock_claims([job_id, job_id, "https://h:9000/unknown"], nowait=True)
    assert set(jobs) == {job_id}
    return request, jobs[job_id]


def test_a_claim_to_ready_writes_what_the_orm_path_writes(factory: sessionmaker[Session]) -> None:
    orm, core = _queued(factory), _queued(factory)
    with UnitOfWork(factory) as uow:  # what _claim wrote through the ORM before exec9
        request, job = _claimed_orm(uow, orm)
        uow.queue.complete(request, _LATER)
        job.destination = "ce1"
        uow.jobs.set_state(job, "Ready", _LATER, reason="matched to CE ce1")
        job.worker = "w"
        job.backend_ref = None
    with UnitOfWork(factory) as uow:
        claimed, row = _claimed_core(uow, core)
        assert (row.state, row.reason, row.parent_id, row.jdl_registered, row.shallow_retries) == \
            ("Waiting", "requeued: earlier", None, "[]", 0)
        uow.queue.settle([RequestChange.completed(claimed, "w", _LATER)])
        uow.jobs.set_ready(_LATER, "w", [(core, "ce1")])
    (row_core, events), (row_orm, orm_events) = _rows(factory, core), _rows(factory, orm)
    assert (row_core, events[1:]) == (row_orm, orm_events[1:])
    assert (row_core["state"], row_core["destination"], row_core["worker"], row_core["backend_ref"]) == \
        ("Ready", "ce1", "w", None)
    assert events[-1] == ("Ready", "matched to CE ce1", _LATER, "matched", "worker")
    assert _request_row(factory, core) == _request_row(factory, orm)
    assert _request_row(factory, core)["done_at"] == _LATER


def test_a_claim_left_waiting_writes_what_the_orm_path_writes(factory: sessionmaker[Session]) -> None:
    orm, core = _queued(factory), _queued(factory)
    due = _LATER + dt.timedelta(minutes=1)
    with UnitOfWork(factory) as uow:
        request, job = _claimed_orm(uow, orm)
        uow.queue.postpone(request, due)
        uow.jobs.set_state(job, "Waiting", _LATER, reason="no match")
    with UnitOfWork(factory) as uow:
        claimed, _ = _claimed_core(uow, core)
        uow.queue.settle([RequestChange.postponed(claimed, due)])
        uow.jobs.set_states("Waiting", _LATER, [StateChange(core, reason="no match")])
    (row_core, events), (row_orm, orm_events) = _rows(factory, core), _rows(factory, orm)
    assert (row_core, events[1:]) == (row_orm, orm_events[1:])
    assert _request_row(factory, core) == _request_row(factory, orm)
    assert _request_row(factory, core)["not_before"] == due and _request_row(factory, core)["claimed_by"] is None


def test_a_released_claim_is_due_as_before(factory: sessionmaker[Session]) -> None:
    later = _LATER + dt.timedelta(seconds=30)  # before the requests left Waiting above are due
    core, orm = _queued(factory, not_before=later), _queued(factory, not_before=_NOW)
    with UnitOfWork(factory) as uow:  # at _LATER only orm's request is due
        request, _ = _claimed_orm(uow, orm)
        uow.queue.release([request])
    with UnitOfWork(factory) as uow:  # after later both are: the oldest, core's
        [claimed] = uow.queue.claim_rows("w", later, command="start", limit=1)
        assert claimed.job_id == core
        uow.queue.settle([RequestChange.postponed(claimed, claimed.not_before)])
    core_row, orm_row = _request_row(factory, core), _request_row(factory, orm)
    assert (core_row.pop("not_before"), orm_row.pop("not_before")) == (later, _NOW)
    assert core_row == orm_row
    with UnitOfWork(factory) as uow:  # both claimable again, oldest first (then done: the queue is left empty)
        again = uow.queue.claim_rows("w", later, command="start", limit=5)
        assert [r.job_id for r in again] == [core, orm]
        uow.queue.settle([RequestChange.completed(r, "w", later) for r in again])


@pytest.mark.postgresql_only  # SQLite: one writing transaction at a time, no row locks
def test_a_claim_nowait_refuses_a_job_another_transaction_holds(factory: sessionmaker[Session]) -> None:
    parent, node = family(factory, f"claim-{uuid.uuid4().hex}")
    with UnitOfWork(factory) as holder:
        holder.jobs.get(parent, for_update=True)
        with pytest.raises(JobLockedError), UnitOfWork(factory) as uow:
            uow.jobs.lock_claims([node], nowait=True)  # its compound job first: refused


def test_pending_jobs_reads_what_pending_commands_reads_and_leaves_the_requests_pending(
        factory: sessionmaker[Session]) -> None:
    done, twice, once, quiet = _new(factory), _new(factory), _new(factory), _new(factory)
    with UnitOfWork(factory) as uow:
        for job_id in (done, twice, once, twice):
            uow.queue.enqueue(job_id, "cancel", _NOW)
        uow.queue.enqueue(quiet, "start", _NOW)
    with UnitOfWork(factory) as uow:
        for request in uow.queue.pending_commands([done], "cancel"):
            uow.queue.complete(request, _LATER)
    with UnitOfWork(factory) as uow:
        ids = [done, twice, once, quiet]
        assert uow.queue.pending_jobs(ids, "cancel") == [twice, once]  # by the oldest request, each once
        assert sorted(r.job_id for r in uow.queue.pending_commands(ids, "cancel")) == sorted([twice, twice, once])
        assert uow.queue.pending_jobs([quiet], "cancel") == []
    with UnitOfWork(factory) as uow:  # nothing was marked done
        assert len(uow.queue.pending_commands([twice, once], "cancel")) == 3
