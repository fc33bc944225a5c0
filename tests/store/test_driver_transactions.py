"""The driver's transactions (``wmproxy.store.driver.transaction``, a context manager class) end
as they did as a generator, on SQLite and PostgreSQL: a committed one leaves nothing open on the
connection, any other ending is rolled back and the connection reset by the pool, and a COMMIT on
a connection invalidated meanwhile is the driver's error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store.driver import DriverCursor, transaction

#: A statement valid on both databases that writes nothing.
NOTHING = "DELETE FROM delegation_key_pool WHERE key_bits = -1"


@pytest.fixture
def resets(factory: sessionmaker[Session]) -> Iterator[tuple[sa.Engine, list[bool]]]:
    """The factory's engine and, for each connection its pool resets from now on, whether the
    pool was told its transaction had been ended already."""
    engine = factory.kw["bind"]
    seen: list[bool] = []

    def reset(_dbapi_conn: Any, _record: Any, state: Any) -> None:
        seen.append(state.transaction_was_reset)

    sa.event.listen(engine, "reset", reset)
    try:
        yield engine, seen
    finally:
        sa.event.remove(engine, "reset", reset)


def _idle(driver: Any) -> bool:
    """Whether the driver's connection has no transaction open."""
    if hasattr(driver, "in_transaction"):  # sqlite3
        return not driver.in_transaction
    import psycopg

    return bool(driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)


def test_a_committed_transaction_goes_back_with_nothing_open(
        resets: tuple[sa.Engine, list[bool]]) -> None:
    engine, seen = resets
    with transaction(engine) as cursor:
        cursor.execute(NOTHING)
        driver = cursor.driver
    assert seen == [False]  # reset by the pool, as any connection checked in
    assert _idle(driver)


def _failed(engine: sa.Engine, body: Callable[[DriverCursor], None], error: type[BaseException]) -> Any:
    """Run ``body`` in a transaction, which must raise ``error``; returns the driver's connection."""
    drivers: list[Any] = []

    def run() -> None:
        with transaction(engine) as cursor:
            drivers.append(cursor.driver)
            body(cursor)

    with pytest.raises(error):
        run()
    return drivers[0]


def _refuse(cursor: DriverCursor) -> None:
    cursor.execute(NOTHING)
    raise RuntimeError("refused")


def test_a_transaction_ended_by_an_exception_is_rolled_back_and_reset_by_the_pool(
        resets: tuple[sa.Engine, list[bool]]) -> None:
    engine, seen = resets
    driver = _failed(engine, _refuse, RuntimeError)
    assert seen == [False]
    assert _idle(driver)


def test_a_failed_statement_leaves_the_connection_reset_by_the_pool(
        resets: tuple[sa.Engine, list[bool]]) -> None:
    engine, seen = resets
    driver = _failed(engine, lambda cursor: cursor.execute("SELECT no_such_column FROM delegation_key_pool"),
                     sa.exc.DBAPIError)
    assert seen == [False]
    assert _idle(driver)
    with transaction(engine) as cursor:  # the pool's next connection works
        cursor.execute(NOTHING)
    assert seen == [False, False]


@pytest.mark.sqlite_only  # psycopg's refusal trips SQLAlchemy's handler on the gone connection, as before
def test_a_commit_on_a_connection_invalidated_meanwhile_is_the_drivers_error(
        resets: tuple[sa.Engine, list[bool]]) -> None:
    """A block that invalidated its connection (a caller that went on after a disconnect) and
    ends cleanly gets the driver's refusal of the COMMIT, raised as SQLAlchemy raises it."""
    engine, _seen = resets

    def invalidated() -> None:
        with transaction(engine) as cursor:
            cursor.invalidate()

    with pytest.raises(sa.exc.DBAPIError):
        invalidated()
    with transaction(engine) as cursor:  # the pool connects anew
        cursor.execute(NOTHING)


@pytest.mark.postgresql_only  # sqlite3 keeps making a cursor per transaction (wmproxy/store/driver.py)
def test_a_pooled_psycopg_connection_keeps_one_cursor_across_transactions(
        resets: tuple[sa.Engine, list[bool]]) -> None:
    """Each transaction on the same pooled connection uses the cursor the first one made; a
    failed statement's cursor (closed by SQLAlchemy's error handling) is replaced by a new one,
    kept in turn; the connection the pool makes after one was invalidated gets a cursor of its
    own; the answers are each statement's own."""
    engine, _seen = resets
    engine.dispose()  # a pool of fresh connections: the loops below take the same one each time
    cursors: list[Any] = []
    for value in (1, 2):
        with transaction(engine) as cursor:
            cursor.execute("SELECT %(value)s::integer", {"value": value})
            assert cursor.fetchone() == (value,)
            cursors.append(cursor._cursor)
    driver = _failed(engine, lambda cursor: cursor.execute("SELECT no_such_column FROM delegation_key_pool"),
                     sa.exc.DBAPIError)
    with transaction(engine) as cursor:
        assert cursor.driver is driver
        cursor.execute("SELECT 3")
        assert cursor.fetchone() == (3,)
        cursors.append(cursor._cursor)
    with transaction(engine) as cursor:
        cursors.append(cursor._cursor)
    assert cursors[0] is cursors[1]
    assert cursors[0].closed
    assert cursors[2] is cursors[3]
    assert not cursors[3].closed
    assert _idle(driver)
    # a connection made anew after its predecessor was invalidated gets a cursor of its own
    kept: list[Any] = []

    def invalidated() -> None:
        with transaction(engine) as cursor:
            cursor.execute("SELECT 1")
            kept.extend((cursor._cursor, cursor.driver))
            cursor.invalidate()
            raise RuntimeError("gone")  # no COMMIT on the connection gone

    with pytest.raises(RuntimeError, match=r"^gone$"):
        invalidated()
    first, old = kept
    with transaction(engine) as cursor:
        assert cursor.driver is not old
        assert cursor._cursor is not first
        assert cursor._cursor.connection is cursor.driver
        cursor.execute("SELECT 4")
        assert cursor.fetchone() == (4,)
