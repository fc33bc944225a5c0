"""``/readyz``'s database and schema checks (:func:`wmproxy.monitoring.health.database_check`)
on each database: a probe logs nothing and leaves the engine's compiled statement cache as it
found it (a long run probed every 10 s), and a database behind, ahead or without the schema
still fails with the command that fixes it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.monitoring.health import database_check, schema_check, shipped_head
from wmproxy.store import make_engine
from wmproxy.store.migrations import head_revision

#: Probes per test: each one added a cache entry before (3 -> 62 entries in 60 probes).
PROBES = 30


@pytest.fixture
def engine(factory: sessionmaker[Session], database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _probe(engine: sa.Engine) -> tuple[bool, str | None, str]:
    database, revision = database_check(engine)
    schema = schema_check(revision, shipped_head())
    return database.ok, revision, schema.state + " " + schema.detail


@contextlib.contextmanager
def _altered(engine: sa.Engine, *statements: str) -> Iterator[None]:
    """``statements`` run (and committed); the table ``alembic_version`` restored after."""
    with engine.begin() as conn:
        saved = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
        for statement in statements:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                conn.execute(sa.text("alter table alembic_version_saved rename to alembic_version"))
            conn.execute(sa.text("update alembic_version set version_num = :v"), {"v": saved})


def test_probes_log_nothing_and_do_not_grow_the_compiled_cache(engine: sa.Engine,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert _probe(engine) == (True, head_revision(), f"ok at head {head_revision()}")
    cached = len(engine._compiled_cache)  # type: ignore[attr-defined] # the engine's LRU statement cache
    caplog.clear()
    for _ in range(PROBES):
        assert _probe(engine)[0]
    assert len(engine._compiled_cache) == cached  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


def test_the_head_is_read_once_per_process() -> None:
    assert shipped_head() == head_revision()
    assert shipped_head.cache_info().currsize == 1


def test_a_database_behind_or_ahead_fails_with_the_command(engine: sa.Engine) -> None:
    with _altered(engine, "update alembic_version set version_num = '0001'"):
        assert _probe(engine) == (True, "0001", f"FAIL at 0001, head is {head_revision()}: run wmproxy-admin migrate")
    with _altered(engine, "update alembic_version set version_num = '9999'"):
        assert _probe(engine) == (True, "9999", f"FAIL at 9999, head is {head_revision()}: run wmproxy-admin migrate")
    assert _probe(engine)[2] == f"ok at head {head_revision()}"


def test_a_database_without_the_schema_fails_with_the_command(engine: sa.Engine) -> None:
    with _altered(engine, "alter table alembic_version rename to alembic_version_saved"):
        for _ in range(3):  # and the connection it used serves the next probe (PostgreSQL: rolled back)
            assert _probe(engine) == (True, None, f"FAIL no schema (head {head_revision()}): run wmproxy-admin migrate")
    assert _probe(engine)[2] == f"ok at head {head_revision()}"


def test_an_unreachable_database_fails_the_database_check(tmp_path: object) -> None:
    engine = make_engine("postgresql+psycopg://wmproxy@127.0.0.1:1/none?connect_timeout=5")
    try:
        database, revision = database_check(engine)
    finally:
        engine.dispose()
    assert (database.ok, revision) == (False, None) and database.detail.startswith("unreachable (")
