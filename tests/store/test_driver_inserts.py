"""``SqlJobStore.insert`` sends its statements as the driver's SQL (``wmproxy.store.prepared``):
the rows it writes, down to the stored text of a time on SQLite, are those the ORM writes, on
SQLite and PostgreSQL, from a ``Job`` or from column values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from wmproxy.store import UnitOfWork, prepared
from wmproxy.store.schema import Job, UTCDateTime

#: A time with microseconds in another zone than UTC: stored as UTC, to the microsecond.
WHEN = dt.datetime(2026, 12, 3, 13, 14, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _values(job_id: str, state: str = "Submitted") -> dict[str, Any]:
    return {"id": job_id, "parent_id": None, "node_name": None, "owner_dn": "/CN=driver", "delegation_id": "d",
            "state": state, "jdl_original": "[\n  a = 1;\n]\n", "jdl_registered": "[\n  a = 'é';\n]\n",
            "sandbox_dir": f"SandboxDir/dr/{job_id[-4:]}", "local_account": None, "created_at": WHEN,
            "updated_at": WHEN}


def _stored(factory: Any, job_id: str) -> tuple[Any, ...]:
    """The job's row, its events and its requests as the database returns them without
    SQLAlchemy's types (on SQLite the times are the stored text)."""
    with UnitOfWork(factory) as uow:
        conn = uow.session.connection()
        job = conn.execute(sa.text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).one()
        events = conn.execute(sa.text("SELECT job_id, state, reason, at, kind, source FROM job_events "
                                      "WHERE job_id = :id ORDER BY id"), {"id": job_id}).all()
        requests = conn.execute(sa.text("SELECT job_id, command, created_at, claimed_by, claimed_at, done_at, "
                                        "not_before FROM execution_requests WHERE job_id = :id"), {"id": job_id}).all()
    return tuple(job._mapping.items()), [tuple(e) for e in events], [tuple(r) for r in requests]


def _without_id(stored: tuple[Any, ...]) -> tuple[Any, ...]:
    """What the rows of two jobs have in common: all but the ids and the sandbox directory."""
    job, events, requests = stored
    return ([(k, v) for k, v in job if k not in ("id", "sandbox_dir")],
            [e[1:] for e in events], [r[1:] for r in requests])


def test_values_a_job_object_and_the_orm_store_the_same(factory: Any) -> None:
    ids = {"values": "https://h:9000/drv-values", "job": "https://h:9000/drv-jobobj", "orm": "https://h:9000/drv-ormadd"}
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_values(ids["values"]), ("Submitted",))
        uow.jobs.insert(Job(**_values(ids["job"])), ("Submitted",))
        uow.jobs.add(Job(**_values(ids["orm"])))  # the ORM's own INSERTs: the reference
    stored = {how: _stored(factory, job_id) for how, job_id in ids.items()}
    assert _without_id(stored["values"]) == _without_id(stored["job"]) == _without_id(stored["orm"])
    with UnitOfWork(factory) as uow:
        job = uow.jobs.get(ids["values"])
        assert job is not None and job.created_at == WHEN and job.jdl_registered == "[\n  a = 'é';\n]\n"
        assert (job.shallow_retries, job.deep_retries) == (0, 0)


def test_a_started_job_stores_what_the_three_orm_steps_store(factory: Any) -> None:
    """With its start request (PostgreSQL: one statement), the rows of ORM add + set_state +
    enqueue, the way the service wrote them before issue 14."""
    driver, orm = "https://h:9000/drv-started", "https://h:9000/drv-ormstart"
    with UnitOfWork(factory) as uow:
        uow.jobs.insert(_values(driver, "Waiting"), ("Submitted", "Waiting"), request="start")
    with UnitOfWork(factory) as uow:
        job = Job(**_values(orm))
        uow.jobs.add(job)
        uow.jobs.set_state(job, "Waiting", WHEN)
        uow.jobs.flush()
        uow.queue.enqueue(orm, "start", WHEN)
    assert _without_id(_stored(factory, driver)) == _without_id(_stored(factory, orm))


def test_a_value_of_no_column_writes_nothing(factory: Any) -> None:
    job_id = "https://h:9000/drv-unknown"
    with pytest.raises(KeyError, match="colour"), UnitOfWork(factory) as uow:
        uow.jobs.insert({**_values(job_id), "colour": "blue"}, ("Submitted",))
    with UnitOfWork(factory) as uow:
        assert uow.jobs.get(job_id) is None


def test_statements_are_compiled_once_per_dialect(factory: Any) -> None:
    with UnitOfWork(factory) as uow:
        dialect = uow.session.connection().dialect
    built: list[int] = []

    def build() -> sa.TextClause:
        built.append(1)
        return sa.text("SELECT :x").bindparams(sa.bindparam("x", type_=sa.Integer))

    first = prepared.statement(dialect, ("test", "once"), build)
    assert prepared.statement(dialect, ("test", "once"), build) is first
    assert built == [1]
    assert first.positional == (dialect.name == "sqlite")


def test_times_bound_in_turn_are_each_processed(factory: Any) -> None:
    """The ``UTCDateTime`` binds of a dialect share one processor that gives the value it was
    last given its last result again (issue 14: a jobSubmit binds one ``now`` five times): any
    other value, in any bind of any statement, is processed as the type processes it."""
    with UnitOfWork(factory) as uow:
        dialect = uow.session.connection().dialect
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    expected = process or (lambda value: value)

    def build() -> sa.TextClause:
        return sa.text("SELECT :a, :b").bindparams(sa.bindparam("a", type_=UTCDateTime),
                                                    sa.bindparam("b", type_=UTCDateTime))

    first = prepared.statement(dialect, ("test", "times", 1), build)
    second = prepared.statement(dialect, ("test", "times", 2), build)
    later = WHEN + dt.timedelta(microseconds=1)
    equal_but_not_the_same = WHEN.astimezone(dt.UTC)
    for statement, a, b in [(first, WHEN, WHEN), (first, WHEN, later), (second, later, WHEN),
                            (second, equal_but_not_the_same, later), (first, later, later), (first, None, WHEN)]:
        sent = statement.parameters({"a": a, "b": b})
        values = list(sent.values()) if isinstance(sent, dict) else list(sent)
        assert values == [expected(a), expected(b)]
    processed = dict(first.order)
    assert processed["a"] is processed["b"] is dict(second.order)["a"]
