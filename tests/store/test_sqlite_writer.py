"""Writers of one SQLite file in one process queue on a lock (``wmproxy.store.sqlite_writer``,
issue 14): a second thread's ``BEGIN IMMEDIATE`` waits for the first transaction's end on the
process's lock, not in SQLite's polling busy handler, and every way a transaction ends gives the
lock back."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from wmproxy.store import make_engine
from wmproxy.store.driver import transaction
from wmproxy.store.sqlite_writer import _lock_of

WAIT = 60.0  # generous: how long a test waits for a thread that should finish


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'writer.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER)")
    try:
        yield engine
    finally:
        engine.dispose()


def _second_writer(engine: sa.Engine, started: threading.Event, done: list[object]) -> None:
    raw = engine.raw_connection()  # not the first writer's (checked out): another one
    driver = raw.driver_connection
    driver.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
    raw.close()  # back to the pool, which hands out the connection returned last
    started.set()
    try:
        with engine.begin() as conn:  # that connection; the engine's begin event: BEGIN IMMEDIATE
            assert conn.connection.driver_connection is driver
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        done.append("committed")
    except sa.exc.OperationalError as exc:
        done.append(exc)


def test_a_second_writer_waits_for_the_first_on_the_process_lock(engine: sa.Engine) -> None:
    """The second writer's busy handler gives up at once, so it commits only if it waited for
    the first transaction's end before sending its BEGIN (SQLite alone: "database is locked")."""
    started, done = threading.Event(), []
    with transaction(engine) as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
        second = threading.Thread(target=_second_writer, args=(engine, started, done))
        second.start()
        assert started.wait(WAIT)
        second.join(0.3)
        assert second.is_alive() and not done  # waiting while the first transaction is open
    second.join(WAIT)
    assert done == ["committed"]
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT i FROM t").scalars()) == [1, 2]


@pytest.mark.parametrize("ending", ["commit", "rollback", "error", "close"])
def test_every_end_of_a_transaction_gives_the_lock_back(engine: sa.Engine, ending: str) -> None:
    lock = _lock_of(str(Path(engine.url.database or "").absolute()))
    if ending == "close":
        raw = engine.raw_connection()
        raw.driver_connection.begin_immediate()  # type: ignore[union-attr]
        assert lock.locked()
        raw.invalidate()  # the pool closes the driver's connection
    elif ending == "error":
        def fails() -> None:
            with transaction(engine) as cursor:
                assert lock.locked()
                cursor.execute("INSERT INTO missing VALUES (1)")

        with pytest.raises(sa.exc.OperationalError):
            fails()
    else:
        with engine.connect() as conn:
            conn.begin()
            assert lock.locked()
            conn.commit() if ending == "commit" else conn.rollback()
            assert not lock.locked()
    assert not lock.locked()


def test_a_begin_refused_by_another_process_gives_the_lock_back(engine: sa.Engine, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "writer.db", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's writer: not this process's lock
        with engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            with pytest.raises(sa.exc.OperationalError, match="locked"):
                conn.begin()
            other.execute("ROLLBACK")
            with transaction(engine) as cursor:  # another connection: conn, still out, holds no lock
                cursor.execute("INSERT INTO t VALUES (3)")
    finally:
        other.close()


def test_a_writer_waits_no_longer_than_its_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'short.db'}", connect_args={"timeout": 0.2})
    try:
        first, second = engine.raw_connection(), engine.raw_connection()
        first.driver_connection.begin_immediate()  # type: ignore[union-attr]
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            second.driver_connection.begin_immediate()  # type: ignore[union-attr]
        first.rollback()
        second.driver_connection.begin_immediate()  # type: ignore[union-attr]
        second.rollback()
        first.close()
        second.close()
    finally:
        engine.dispose()


def _child_takes(key: str, result: multiprocessing.queues.Queue[bool]) -> None:
    result.put(_lock_of(key).acquire(timeout=5))


def test_a_forked_child_starts_with_its_own_locks(tmp_path: Path) -> None:
    key = str(tmp_path / "forked.db")
    lock = _lock_of(key)
    lock.acquire()
    try:
        mp = multiprocessing.get_context("fork")
        result = mp.Queue()
        child = mp.Process(target=_child_takes, args=(key, result))
        child.start()
        assert result.get(timeout=WAIT) is True
        child.join(WAIT)
    finally:
        lock.release()
