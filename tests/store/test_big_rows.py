"""A transaction that writes big JDL texts retires its pooled connection (issue 14,
``wmproxy.store.retire``), on a real database (SQLite file and PostgreSQL): the driver
connection is closed once the transaction ends, the next transaction gets a fresh one and works,
and ordinary transactions keep reusing theirs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork, make_engine, make_session_factory
from wmproxy.store.retire import RETIRE_BYTES, jdl_bytes, retire_connection_after
from wmproxy.store.schema import Base, Job, JobEvent


@pytest.fixture
def sessions(factory: sessionmaker[Session], database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions of an engine of this test's own (its pool holds one connection between the
    test's transactions), on the module's migrated database (``factory``)."""
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _job(job_id: str, now: dt.datetime, jdl_chars: int = 0, parent_id: str | None = None) -> Job:
    registered = f'[ Executable = "/bin/true"; Comment = "{"x" * jdl_chars}" ]'
    return Job(id=job_id, parent_id=parent_id, owner_dn="/CN=big", delegation_id="d", state="Submitted",
               jdl_original="[ Executable = \"/bin/true\" ]", jdl_registered=registered,
               sandbox_dir=job_id.rsplit("/", 1)[1], local_account=None, created_at=now, updated_at=now)


def _driver_connection(uow: UnitOfWork) -> Any:
    """The DB-API connection under the unit of work's session."""
    return uow.session.connection().connection.dbapi_connection


def _is_closed(dbapi_connection: Any) -> bool:
    """Whether a DB-API connection (sqlite3 or psycopg) has been closed."""
    if hasattr(dbapi_connection, "closed"):  # psycopg
        return bool(dbapi_connection.closed)
    try:  # sqlite3 has no attribute for it
        dbapi_connection.cursor().close()
    except Exception:  # noqa: BLE001 -- sqlite3.ProgrammingError: Cannot operate on a closed database
        return True
    return False


def test_ordinary_transactions_reuse_the_pooled_connection(sessions) -> None:
    now = utcnow()
    with UnitOfWork(sessions) as uow:
        uow.jobs.add(_job("https://h:9000/small-1", now))
        first = _driver_connection(uow)
    with UnitOfWork(sessions) as uow:
        uow.jobs.add_all([_job(f"https://h:9000/small-2-{i}", now, 1000) for i in range(10)])
        second = _driver_connection(uow)
    with UnitOfWork(sessions) as uow:
        assert _driver_connection(uow) is first is second
    assert not _is_closed(first)


def test_a_big_job_retires_the_connection_and_the_next_transaction_works(sessions) -> None:
    now = utcnow()
    job_id = "https://h:9000/big-parent"
    with UnitOfWork(sessions) as uow:
        before = _driver_connection(uow)
    with UnitOfWork(sessions) as uow:
        uow.jobs.add(_job(job_id, now, RETIRE_BYTES))
        big = _driver_connection(uow)
        assert big is before  # the transaction goes on on its connection
        uow.jobs.add_all([_job(f"{job_id}-node-{i}", now, parent_id=job_id) for i in range(3)])
        assert not _is_closed(big)
    assert _is_closed(big)
    with UnitOfWork(sessions) as uow:
        after = _driver_connection(uow)
        assert after is not big
        job = uow.jobs.get(job_id)
        assert job is not None and len(job.jdl_registered) > RETIRE_BYTES
        assert len(uow.jobs.children(job_id)) == 3
        uow.jobs.add(_job("https://h:9000/after-big", now))
    with UnitOfWork(sessions) as uow:
        assert _driver_connection(uow) is after  # the fresh connection is pooled as usual
        assert uow.jobs.get("https://h:9000/after-big") is not None


def test_a_big_simple_job_inserted_from_its_values_retires_the_connection(sessions) -> None:
    # the path of a simple jobSubmit/jobRegister (SqlJobStore.insert, no ORM object)
    now = utcnow()
    with UnitOfWork(sessions) as uow:
        small = _job("https://h:9000/insert-small", now)
        uow.jobs.insert({k: getattr(small, k) for k in ("id", "owner_dn", "delegation_id", "state", "jdl_original",
                                                       "jdl_registered", "sandbox_dir", "created_at", "updated_at")},
                        ("Submitted",))
        kept = _driver_connection(uow)
    with UnitOfWork(sessions) as uow:
        assert _driver_connection(uow) is kept
        big = _job("https://h:9000/insert-big", now, RETIRE_BYTES)
        uow.jobs.insert({k: getattr(big, k) for k in ("id", "owner_dn", "delegation_id", "state", "jdl_original",
                                                     "jdl_registered", "sandbox_dir", "created_at", "updated_at")},
                        ("Submitted",))
        retired = _driver_connection(uow)
    assert retired is kept and _is_closed(retired)
    with UnitOfWork(sessions) as uow:
        job = uow.jobs.get("https://h:9000/insert-big")
        assert job is not None and len(job.jdl_registered) > RETIRE_BYTES


def test_batches_that_add_up_to_the_limit_retire_the_connection(sessions) -> None:
    """The count is per transaction: batches below the limit each, above it together."""
    now = utcnow()
    batch = RETIRE_BYTES // 3 // 10 + 1
    with UnitOfWork(sessions) as uow:
        for b in range(3):
            uow.jobs.add_all([_job(f"https://h:9000/batch-{b}-{i}", now, batch) for i in range(10)])
        retired = _driver_connection(uow)
    assert _is_closed(retired)
    with UnitOfWork(sessions) as uow:  # two batches here and a third in the next transaction: no retirement
        for b in range(3, 5):
            uow.jobs.add_all([_job(f"https://h:9000/batch-{b}-{i}", now, batch) for i in range(10)])
        kept = _driver_connection(uow)
    with UnitOfWork(sessions) as uow:
        uow.jobs.add_all([_job(f"https://h:9000/batch-5-{i}", now, batch) for i in range(10)])
        assert _driver_connection(uow) is kept
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Job).where(
            Job.id.like("https://h:9000/batch-%"))) == 60
    assert not _is_closed(kept)


def test_a_rolled_back_big_transaction_leaves_nothing_and_retires_its_connection(sessions) -> None:
    now = utcnow()
    job_id = "https://h:9000/big-rolled-back"
    big: list[Any] = []

    def fail_after_the_insert() -> None:
        with UnitOfWork(sessions) as uow:
            uow.jobs.add(_job(job_id, now, 2 * RETIRE_BYTES))
            big.append(_driver_connection(uow))
            raise RuntimeError("the registration failed after the INSERT")

    with pytest.raises(RuntimeError, match=r"^the registration failed after the INSERT$"):
        fail_after_the_insert()
    assert _is_closed(big[0])
    with UnitOfWork(sessions) as uow:
        assert _driver_connection(uow) is not big[0]
        assert uow.jobs.get(job_id) is None
        assert list(uow.jobs.events(job_id)) == []


def test_an_in_memory_sqlite_database_keeps_its_only_connection() -> None:
    """Its pool holds the database itself: retiring the connection would lose every table."""
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    now = utcnow()
    try:
        with UnitOfWork(sessions) as uow:
            uow.jobs.add(_job("https://h:9000/memory-big", now, RETIRE_BYTES))
            kept = _driver_connection(uow)
        with UnitOfWork(sessions) as uow:
            assert _driver_connection(uow) is kept
            assert uow.jobs.get("https://h:9000/memory-big") is not None
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(JobEvent)) == 1
    finally:
        engine.dispose()


def test_the_count_is_the_jdl_texts_and_starts_again_with_each_transaction() -> None:
    now = utcnow()
    jobs = [_job("https://h:9000/count-1", now, 10), _job("https://h:9000/count-2", now)]
    assert jdl_bytes(jobs) == sum(len(j.jdl_original) + len(j.jdl_registered) for j in jobs)
    assert jdl_bytes([Job(id="x")]) == 0
    engine = make_engine("sqlite://")
    session = Session(engine)
    try:
        with session.begin():
            retire_connection_after(session, [_job("https://h:9000/count-3", now, RETIRE_BYTES // 2)])
            first = session.info["wmproxy.store.retire"]
        with session.begin():
            retire_connection_after(session, [_job("https://h:9000/count-4", now, RETIRE_BYTES // 2)])
            second = session.info["wmproxy.store.retire"]
        assert first[1] == second[1] < RETIRE_BYTES
        assert first[0] is not second[0]
    finally:
        session.close()
        engine.dispose()
