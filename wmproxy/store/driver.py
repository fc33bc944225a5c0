"""Statements on the database driver's own connection, under a SQLAlchemy ``Connection`` (issue 14).

The hot writes (``wmproxy.store.job_writes``, ``wmproxy.store.delegation_writes``) send
precompiled SQL on the DBAPI cursor: no ORM session and no execution context per statement.
They take the connection with ``Engine.connect()``, so the pool's checkout events (the ping
after idle) run, and a driver error goes through ``Connection._handle_dbapi_exception``: it is
raised as SQLAlchemy raises a failed statement's (wrapped in ``DBAPIError``, the statement's
values hidden by the engine), and a disconnect invalidates the connection and the pool's older
ones. SQLAlchemy itself never begins a transaction on these connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine


class DriverCursor:
    """The driver's cursor of ``conn``, its driver errors raised as SQLAlchemy raises them."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._errors = (conn.dialect.loaded_dbapi.Error, KeyboardInterrupt, SystemExit)
        self._cursor: Any = None
        self._cursor = self.call("", (), conn.connection.driver_connection.cursor)  # type: ignore[union-attr]

    def call(self, sql: str, params: Any, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on behalf of the statement ``sql`` with ``params`` (named in the
        error): a driver error (or an exit exception) goes through SQLAlchemy's handler."""
        try:
            return function(*args)
        except self._errors as exc:
            self._conn._handle_dbapi_exception(exc, sql, params, self._cursor, None)
            raise  # not reached: the handler raises

    def execute(self, sql: str, params: Any = ()) -> None:
        self.call(sql, params, self._cursor.execute, sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[DriverCursor]:
    """A cursor in one transaction, committed when the block ends cleanly (a ``return`` too)
    and rolled back on any exception; on SQLite begun with ``BEGIN IMMEDIATE``, as every
    transaction of the service is (the connection is in the driver's autocommit mode:
    ``wmproxy.store.engine``)."""
    with engine.connect() as conn:
        cursor = DriverCursor(conn)
        driver: Any = conn.connection.driver_connection
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
            cursor.call("COMMIT", (), driver.commit)
        except BaseException:
            if not conn.invalidated:
                with contextlib.suppress(Exception):  # the error that counts is the one raised
                    driver.rollback()
            raise


@contextlib.contextmanager
def single_statement(engine: Engine) -> Iterator[DriverCursor]:
    """PostgreSQL: a cursor for one statement that is its own transaction (psycopg's
    autocommit): no ``BEGIN`` and ``COMMIT`` round trips (issue 14: about 0.1-0.2 ms of
    psycopg's CPU per transaction). A failing statement changes nothing. The connection never
    goes back to the pool in autocommit (it is invalidated if that cannot be turned off)."""
    with engine.connect() as conn:
        cursor = DriverCursor(conn)
        driver: Any = conn.connection.driver_connection  # idle: checked in after a commit or rollback
        cursor.call("", (), setattr, driver, "autocommit", True)
        try:
            yield cursor
        finally:
            if not conn.invalidated:
                with contextlib.suppress(Exception):  # else it stays on: invalidated below
                    driver.autocommit = False
                if driver.autocommit:
                    conn.invalidate()
