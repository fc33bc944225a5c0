"""Job events with kind and source (migration 0008, issue 12) and the listing query, on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job, JobAclEntry, UTCDateTime

T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _add_job(factory: sessionmaker[Session], name: str, owner: str = "/CN=owner", state: str = "Submitted",
             created: dt.datetime = T0, parent: str | None = None) -> str:
    job_id = f"https://h:9000/{name}"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(Job(id=job_id, owner_dn=owner, delegation_id="d", state=state, jdl_original="[]",
                         jdl_registered="[]", sandbox_dir=name, parent_id=parent, created_at=created,
                         updated_at=created))
    return job_id


class TestMigration0008:
    def test_rows_written_before_it_are_state_changes_reported_by_the_service(
            self, factory: sessionmaker[Session], down_to: Callable[[str], AbstractContextManager[None]]) -> None:
        job_id = _add_job(factory, "old")
        engine = factory.kw["bind"]
        with down_to("0008-1"):
            assert {"kind", "source"}.isdisjoint(c["name"] for c in sa.inspect(engine).get_columns("job_events"))
            with engine.begin() as conn:
                insert = sa.text("insert into job_events (job_id, state, reason, at) values (:j, 'Running', "
                                 "'old row', :at)").bindparams(sa.bindparam("at", type_=UTCDateTime()))
                conn.execute(insert, {"j": job_id, "at": T0})
        with UnitOfWork(factory) as uow:
            events = uow.jobs.history(job_id)
            assert [(e.state, e.kind, e.source, e.reason) for e in events] == [
                ("Submitted", "state", "service", None), ("Running", "state", "service", "old row")]
            assert [e.state for e in uow.jobs.events(job_id)] == ["Submitted", "Running"]


class TestHistory:
    def test_actions_and_filters(self, factory: sessionmaker[Session]) -> None:
        job_id = _add_job(factory, "hist")
        with UnitOfWork(factory) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            uow.jobs.set_state(job, "Running", T0 + dt.timedelta(seconds=10))
            uow.jobs.record_event(job, "retry", T0 + dt.timedelta(seconds=20), source="worker", reason="shallow")
        with UnitOfWork(factory) as uow:
            assert [e.kind for e in uow.jobs.history(job_id)] == ["registered", "running", "retry"]
            assert [e.kind for e in uow.jobs.history(job_id, since=T0 + dt.timedelta(seconds=10),
                                                     until=T0 + dt.timedelta(seconds=10))] == ["running"]
            assert [e.reason for e in uow.jobs.history(job_id, kinds=["retry"])] == ["shallow"]
            assert [e.kind for e in uow.jobs.events(job_id)] == ["registered", "running"]


class TestListingCandidates:
    def test_own_top_level_jobs_and_those_with_an_acl(self, factory: sessionmaker[Session]) -> None:
        mine_old = _add_job(factory, "l-mine-old", "/CN=lister", "Done", T0 - dt.timedelta(days=2))
        mine_new = _add_job(factory, "l-mine-new", "/CN=lister", "Running", T0)
        _add_job(factory, "l-node", "/CN=lister", "Running", T0, parent=mine_new)
        other = _add_job(factory, "l-other", "/CN=someone", "Running", T0)
        _add_job(factory, "l-private", "/CN=someone", "Running", T0)
        with UnitOfWork(factory) as uow:
            uow.session.add(JobAclEntry(job_id=other, item="/CN=lister"))
        with UnitOfWork(factory) as uow:
            owned, shared, _ = uow.jobs.listing_candidates("/CN=lister", acl_keys={"/CN=lister"})
            assert sorted(j.id for j in owned) == sorted([mine_new, mine_old])
            assert [(j.id, item) for j, item in shared] == [(other, "/CN=lister")]
            owned, _, _ = uow.jobs.listing_candidates("/CN=lister", acl_keys={"/CN=lister"}, states=["Done"])
            assert [j.id for j in owned] == [mine_old]
            owned, _, _ = uow.jobs.listing_candidates("/CN=lister", acl_keys={"/CN=lister"}, exclude_states=["Done"],
                                                   since=T0 - dt.timedelta(days=1))
            assert [j.id for j in owned] == [mine_new]
            owned, shared, _ = uow.jobs.listing_candidates("/CN=lister", acl_keys={"/CN=lister"},
                                                        until=T0 - dt.timedelta(days=1))
            assert ([j.id for j in owned], shared) == ([mine_old], [])
