"""The SQLite engine's transactions begin with ``BEGIN IMMEDIATE`` sent on the driver's
connection (wmproxy/store/engine.py, issue 14): a transaction holds the write lock from its
start, and a BEGIN that fails is raised as SQLAlchemy raises a failed statement's error."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from wmproxy.store import database_reason, make_engine


@pytest.fixture
def engine_and_other(tmp_path: Path) -> Iterator[tuple[sa.Engine, sqlite3.Connection]]:
    """The service's engine on a database file, and another connection to it that never waits."""
    path = tmp_path / "begin.db"
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        yield engine, other
    finally:
        other.close()
        engine.dispose()


def test_a_transaction_holds_the_write_lock_from_its_begin(
        engine_and_other: tuple[sa.Engine, sqlite3.Connection]) -> None:
    engine, other = engine_and_other
    with engine.begin() as conn:
        assert conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # no statement of the transaction yet: the BEGIN took the lock
    other.execute("BEGIN IMMEDIATE")  # committed: the lock is free again
    other.execute("ROLLBACK")


def test_a_begin_refused_by_a_locked_database_is_sqlalchemys_operational_error(
        engine_and_other: tuple[sa.Engine, sqlite3.Connection]) -> None:
    engine, other = engine_and_other
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa.exc.OperationalError, match="BEGIN IMMEDIATE") as raised:
            conn.begin()
        assert isinstance(raised.value.orig, sqlite3.OperationalError)
        assert "locked" in str(raised.value.orig)
        assert not conn.in_transaction()
        other.execute("ROLLBACK")
        with conn.begin():  # the same connection begins once the lock is free
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_a_failed_statement_is_logged_by_the_drivers_message_without_its_parameters(
        engine_and_other: tuple[sa.Engine, sqlite3.Connection]) -> None:
    engine, _other = engine_and_other
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE sealed (id INTEGER PRIMARY KEY, blob TEXT)")
        conn.execute(sa.text("INSERT INTO sealed VALUES (1, 'x')"))
    with pytest.raises(sa.exc.IntegrityError) as failed, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sealed VALUES (1, :blob)"), {"blob": "SEALED-SECRET"})
    assert "SEALED-SECRET" not in str(failed.value)  # the engine hides the parameters (hide_parameters)
    assert database_reason(failed.value) == "IntegrityError: UNIQUE constraint failed: sealed.id"
    assert database_reason(sa.exc.NoSuchTableError("x")) == "NoSuchTableError"
