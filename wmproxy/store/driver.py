"""Statements on the database driver's own connection, checked out of the engine's pool (issue 14).

The hot writes (``wmproxy.store.job_writes``, ``wmproxy.store.delegation_writes``) send
precompiled SQL on the DBAPI cursor: no ORM session and no execution context per statement.
They take the connection with ``Engine.raw_connection()``, so the pool's checkout events (the
ping after idle) and its reset on return run; a driver error goes through
``Connection._handle_dbapi_exception`` of a SQLAlchemy ``Connection`` made around that pooled
connection when the error happens (not for every transaction: about 10 µs each): it is raised
as SQLAlchemy raises a failed statement's (wrapped in ``DBAPIError``, the statement's values
hidden by the engine), and a disconnect invalidates the connection and the pool's older ones.
SQLAlchemy itself never begins a transaction on these connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import PoolProxiedConnection


class DriverCursor:
    """The driver's cursor of the pooled connection ``pooled`` of ``engine``, its driver errors
    raised as SQLAlchemy raises them."""

    def __init__(self, engine: Engine, pooled: PoolProxiedConnection) -> None:
        self._engine = engine
        self._pooled = pooled
        self._errors = (engine.dialect.loaded_dbapi.Error, KeyboardInterrupt, SystemExit)
        self._cursor: Any = None
        self._cursor = self.call("", (), self.driver.cursor)

    @property
    def driver(self) -> DBAPIConnection:
        """The driver's connection (sqlite3's, psycopg's)."""
        return self._pooled.driver_connection  # type: ignore[return-value]

    @property
    def invalidated(self) -> bool:
        """Whether an error invalidated the connection (it is not used again)."""
        return not self._pooled.is_valid

    def invalidate(self) -> None:
        """Discard the connection: the pool closes it and connects anew next time."""
        self._pooled.invalidate()

    def call(self, sql: str, params: Any, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on behalf of the statement ``sql`` with ``params`` (named in the
        error): a driver error (or an exit exception) goes through SQLAlchemy's handler."""
        try:
            return function(*args)
        except self._errors as exc:
            conn = Connection(self._engine, connection=self._pooled)
            conn._handle_dbapi_exception(exc, sql, params, self._cursor, None)
            raise  # not reached: the handler raises

    def execute(self, sql: str, params: Any = ()) -> None:
        self.call(sql, params, self._cursor.execute, sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


@contextlib.contextmanager
def pooled(engine: Engine) -> Iterator[DriverCursor]:
    """A :class:`DriverCursor` on a connection checked out of ``engine``'s pool, checked in
    (reset: rolled back) when the block ends. A failure to connect is raised as SQLAlchemy's."""
    try:
        connection = engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        Connection._handle_dbapi_exception_noconnection(exc, engine.dialect, engine)
        raise  # not reached: the handler raises
    try:
        yield DriverCursor(engine, connection)
    finally:
        connection.close()


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[DriverCursor]:
    """A cursor in one transaction, committed when the block ends cleanly (a ``return`` too)
    and rolled back on any exception; on SQLite begun with ``BEGIN IMMEDIATE``, as every
    transaction of the service is (the connection is in the driver's autocommit mode:
    ``wmproxy.store.engine``)."""
    with pooled(engine) as cursor:
        driver: Any = cursor.driver
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
            cursor.call("COMMIT", (), driver.commit)
        except BaseException:
            if not cursor.invalidated:
                with contextlib.suppress(Exception):  # the error that counts is the one raised
                    driver.rollback()
            raise


@contextlib.contextmanager
def single_statement(engine: Engine) -> Iterator[DriverCursor]:
    """PostgreSQL: a cursor for one statement that is its own transaction (psycopg's
    autocommit): no ``BEGIN`` and ``COMMIT`` round trips (issue 14: about 0.1-0.2 ms of
    psycopg's CPU per transaction). A failing statement changes nothing. The connection never
    goes back to the pool in autocommit (it is invalidated if that cannot be turned off)."""
    with pooled(engine) as cursor:
        driver: Any = cursor.driver  # idle: checked in after a commit or rollback
        cursor.call("", (), setattr, driver, "autocommit", True)
        try:
            yield cursor
        finally:
            if not cursor.invalidated:
                with contextlib.suppress(Exception):  # else it stays on: invalidated below
                    driver.autocommit = False
                if driver.autocommit:
                    cursor.invalidate()
