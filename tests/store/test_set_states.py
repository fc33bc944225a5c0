"""SqlJobStore.lock_states + set_states (the worker's Scheduled/Running/ends as Core statements)
write the same job rows and the same events, in the same order, as the ORM path (get with
for_update, set_state, record_event). Both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import family, job_row
from wmproxy.store import UnitOfWork
from wmproxy.store.jobs import StateChange
from wmproxy.store.schema import Job, JobEvent

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
        assert uow.jobs.lock_states([node]) == {node: ("Waiting", parent)}
        assert uow.jobs.lock_states([]) == {}
