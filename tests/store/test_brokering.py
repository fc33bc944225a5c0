"""What brokering keeps in the database, on SQLite and PostgreSQL: the job's destination and
retry counters, start requests that are not due yet, the CE states, and migration 0006 both ways."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import schema_diffs
from wmproxy.admin import MIGRATIONS_DIR
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import CeState, ExecutionRequest, Job

T0 = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> Iterator[None]:
    yield
    with UnitOfWork(factory) as uow:
        for table in (ExecutionRequest, Job, CeState):
            uow.session.execute(sa.delete(table))


def _add_job(factory: sessionmaker[Session], name: str, state: str = "Waiting", destination: str | None = None) -> str:
    job_id = f"https://h:9000/{name}"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(Job(id=job_id, owner_dn="/CN=x", delegation_id="d", state=state, jdl_original="[]",
                         jdl_registered="[]", sandbox_dir=name, destination=destination, created_at=T0,
                         updated_at=T0))
    return job_id


def _claim(factory: sessionmaker[Session], now: dt.datetime) -> str | None:
    with UnitOfWork(factory) as uow:
        request = uow.queue.claim_next("w", now, command="start")
        return request.job_id if request is not None else None


def _alembic(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = database_url
    config.attributes["configure_logger"] = False
    return config


class TestSchema:
    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        diffs = schema_diffs(factory)
        assert diffs == []

    def test_a_new_job_has_no_destination_and_no_retries(self, factory: sessionmaker[Session]) -> None:
        job_id = _add_job(factory, "fresh")
        with UnitOfWork(factory) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and (job.destination, job.shallow_retries, job.deep_retries) == (None, 0, 0)
            job.destination, job.shallow_retries, job.deep_retries = "ce1:8443/q", 2, 1
        with UnitOfWork(factory) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and (job.destination, job.shallow_retries, job.deep_retries) == ("ce1:8443/q", 2, 1)

    def test_jobs_are_counted_by_state_and_destination(self, factory: sessionmaker[Session]) -> None:
        _add_job(factory, "r1", "Running", "ce1")
        _add_job(factory, "r2", "Ready", "ce1")
        _add_job(factory, "r3", "Running", "ce2")
        _add_job(factory, "w1", "Waiting")
        with UnitOfWork(factory) as uow:
            assert uow.jobs.count_at(("Ready", "Scheduled", "Running"), destination="ce1") == 2
            assert uow.jobs.count_at(("Running",)) == 2
            assert uow.jobs.count_at(("Waiting",)) == 1
            assert uow.jobs.count_at_ce_and_waiting(("Ready", "Scheduled", "Running"), "ce1", ("Waiting",)) == (2, 1)
            assert uow.jobs.count_at_ce_and_waiting(("Running",), "ce2", ("Waiting", "Ready")) == (1, 2)


class TestNotBefore:
    def test_a_request_is_claimed_only_once_it_is_due(self, factory: sessionmaker[Session]) -> None:
        later, now_due = _add_job(factory, "later"), _add_job(factory, "now")
        with UnitOfWork(factory) as uow:
            uow.queue.enqueue(later, "start", T0, not_before=T0 + dt.timedelta(seconds=300))
            uow.queue.enqueue(now_due, "start", T0)
        assert _claim(factory, T0) == now_due
        assert _claim(factory, T0 + dt.timedelta(seconds=299)) is None
        assert _claim(factory, T0 + dt.timedelta(seconds=300)) == later

    def test_a_postponed_request_keeps_its_age_and_place(self, factory: sessionmaker[Session]) -> None:
        first, second = _add_job(factory, "first"), _add_job(factory, "second")
        with UnitOfWork(factory) as uow:
            uow.queue.enqueue(first, "start", T0)
            uow.queue.enqueue(second, "start", T0 + dt.timedelta(seconds=1))
        with UnitOfWork(factory) as uow:
            request = uow.queue.claim_next("w", T0, command="start")
            assert request is not None and request.job_id == first
            uow.queue.postpone(request, T0 + dt.timedelta(seconds=60))
        assert _claim(factory, T0 + dt.timedelta(seconds=10)) == second
        with UnitOfWork(factory) as uow:
            request = uow.queue.claim_next("w", T0 + dt.timedelta(seconds=60), command="start")
            assert request is not None and (request.job_id, request.created_at) == (first, T0)
            assert (request.claimed_by, request.not_before) == ("w", T0 + dt.timedelta(seconds=60))


class TestCeStates:
    def test_a_state_is_replaced_and_only_fresh_ones_are_read(self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            uow.ce_states.put("ce1", {"GlueCEStateFreeCPUs": 3, "GlueCEStateStatus": "Production"}, T0)
            uow.ce_states.put("ce2", {"GlueCEStateFreeCPUs": 8}, T0 - dt.timedelta(hours=1))
        with UnitOfWork(factory) as uow:
            uow.ce_states.put("ce1", {"GlueCEStateFreeCPUs": 4, "GlueCEStateEstimatedResponseTime": 2.5}, T0)
        with UnitOfWork(factory) as uow:
            assert uow.ce_states.fresh(T0 - dt.timedelta(minutes=10)) == {
                "ce1": {"GlueCEStateFreeCPUs": 4, "GlueCEStateEstimatedResponseTime": 2.5}}
            assert set(uow.ce_states.fresh(T0 - dt.timedelta(hours=2))) == {"ce1", "ce2"}


class TestMigration0006:
    def test_downgrade_and_upgrade_keep_the_jobs(self, factory: sessionmaker[Session], database_url: str) -> None:
        job_id = _add_job(factory, "kept", "Running", "ce1")
        with UnitOfWork(factory) as uow:
            uow.queue.enqueue(job_id, "start", T0, not_before=T0)
            uow.ce_states.put("ce1", {"GlueCEStateFreeCPUs": 1}, T0)
        config = _alembic(database_url)
        engine = factory.kw["bind"]
        try:
            command.downgrade(config, "0005")
            engine.dispose()
            inspector = sa.inspect(engine)
            assert "ce_states" not in inspector.get_table_names()
            assert {"destination", "shallow_retries", "deep_retries"}.isdisjoint(
                c["name"] for c in inspector.get_columns("jobs"))
            assert "not_before" not in {c["name"] for c in inspector.get_columns("execution_requests")}
            with engine.connect() as conn:
                assert conn.execute(sa.text("select state from jobs where id = :j"), {"j": job_id}).scalar_one() \
                    == "Running"
        finally:
            command.upgrade(config, "head")
            engine.dispose()
        with UnitOfWork(factory) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and (job.destination, job.shallow_retries, job.deep_retries) == (None, 0, 0)
            assert uow.ce_states.fresh(utcnow() - dt.timedelta(days=3650)) == {}
            [request] = uow.queue.pending_for(job_id)
            assert request.not_before is None
