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

:func:`pooled`, :func:`transaction` and :func:`single_statement` return context managers
written as classes, not generators: ``contextlib.contextmanager``'s generator object and its
two resumptions, nested for a transaction, were about 20,000 instructions of each transaction
beside the pool's own 64,000 (issue 14; a delegation has two transactions, a jobSubmit one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import PoolProxiedConnection

#: ``info`` key of a pooled psycopg connection (kept while that driver connection lives; the pool
#: clears ``info`` when it connects anew): the cursor :class:`DriverCursor` made on it.
_KEPT_CURSOR = "wmproxy.driver_cursor"


class DriverCursor:
    """The driver's cursor of the pooled connection ``pooled`` of ``engine``, its driver errors
    raised as SQLAlchemy raises them.

    psycopg: one cursor per pooled connection, made on its first use and used by every later
    transaction on it (issue 14, stop 49 in docs/performance.md). A psycopg cursor is a Python
    object with its own copy of the connection's adapters map: making one was about 25,000
    instructions, and an empty :func:`single_statement` (checkout, autocommit on and off,
    check-in) went from about 143,600 to 127,700 with the cursor kept; a delegation pair has two
    such transactions, a jobSubmit one. A cursor SQLAlchemy closed (it closes a failed
    statement's) is replaced. Reusing it is ordinary DB-API use: each ``execute`` starts afresh
    (psycopg resets the cursor's results and makes a new transformer per statement), a
    connection is used by one thread at a time (the pool's checkout), and psycopg fetches a
    statement's rows whole, so nothing is left open on the server between two uses. What the cursor keeps until the
    connection's next statement is its last statement's parameters and rows (sealed values,
    never an opened secret). sqlite3 keeps making a cursor per transaction: a sqlite3 cursor is
    cheap to make, and one kept after a ``SELECT`` not read to its end would hold its statement,
    and with it a read snapshot of the WAL, open on the pooled connection."""

    __slots__ = ("_cursor", "_engine", "_errors", "_pooled")

    def __init__(self, engine: Engine, pooled: PoolProxiedConnection) -> None:
        self._engine = engine
        self._pooled = pooled
        self._errors = (engine.dialect.loaded_dbapi.Error, KeyboardInterrupt, SystemExit)
        self._cursor: Any = None
        if engine.dialect.driver != "psycopg":
            self._cursor = self.call("", (), self.driver.cursor)
            return
        info = pooled.info
        kept = info.get(_KEPT_CURSOR)
        if kept is None or kept.closed or kept.connection is not self.driver:
            kept = info[_KEPT_CURSOR] = self.call("", (), self.driver.cursor)
        self._cursor = kept

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
            self._raise(exc, sql, params)

    def _raise(self, exc: BaseException, sql: str, params: Any) -> NoReturn:
        conn = Connection(self._engine, connection=self._pooled)
        conn._handle_dbapi_exception(exc, sql, params, self._cursor, None)
        raise exc  # not reached: the handler raises

    def execute(self, sql: str, params: Any = (), *, binary: bool = False) -> None:
        """Run ``sql`` with ``params`` (:meth:`call`'s errors). ``binary`` (psycopg only): the
        rows come back in PostgreSQL's binary format, not as text (a ``bytea`` is then its bytes,
        not a hexadecimal text the server writes and the driver decodes), read into the same
        Python values."""
        try:
            if binary:
                self._cursor.execute(sql, params, binary=True)
            else:
                self._cursor.execute(sql, params)
        except self._errors as exc:
            self._raise(exc, sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


def _check_out(engine: Engine) -> tuple[PoolProxiedConnection, DriverCursor]:
    """A connection of ``engine``'s pool and its :class:`DriverCursor` (the connection checked
    in again if the cursor cannot be made). A failure to connect is raised as SQLAlchemy's."""
    try:
        connection = engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        Connection._handle_dbapi_exception_noconnection(exc, engine.dialect, engine)
        raise  # not reached: the handler raises
    try:
        return connection, DriverCursor(engine, connection)
    except BaseException:
        connection.close()
        raise


class _Pooled:
    """:func:`pooled`'s context manager, and the base of the others: a connection checked out
    at ``__enter__`` (then :meth:`_begin`, after which a failure checks it in again) and checked
    in at ``__exit__`` (after :meth:`_end`, whatever it raises)."""

    __slots__ = ("_connection", "_cursor", "_driver", "_engine")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> DriverCursor:
        connection, cursor = _check_out(self._engine)
        self._driver: Any = cursor.driver  # kept: an invalidated connection has none any more
        try:
            self._begin(cursor)
        except BaseException:
            connection.close()
            raise
        self._connection, self._cursor = connection, cursor
        return cursor

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._end(exc_type is None)
        finally:
            self._connection.close()

    def _begin(self, cursor: DriverCursor) -> None:
        """What the block's connection needs before the block (nothing here)."""

    def _end(self, clean: bool) -> None:
        """What the block's connection needs after it, ``clean`` when it raised nothing (nothing here)."""


def pooled(engine: Engine) -> contextlib.AbstractContextManager[DriverCursor]:
    """A :class:`DriverCursor` on a connection checked out of ``engine``'s pool, checked in
    (reset: rolled back) when the block ends. A failure to connect is raised as SQLAlchemy's."""
    return _Pooled(engine)


class _Transaction(_Pooled):
    """:func:`transaction`'s context manager."""

    __slots__ = ()

    def _begin(self, cursor: DriverCursor) -> None:
        if self._engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")

    def _end(self, clean: bool) -> None:
        if clean:
            try:
                self._cursor.call("COMMIT", (), self._driver.commit)
            except BaseException:
                self._roll_back()
                raise
        else:
            self._roll_back()

    def _roll_back(self) -> None:
        if not self._cursor.invalidated:
            with contextlib.suppress(Exception):  # the error that counts is the one raised
                self._driver.rollback()


def transaction(engine: Engine) -> contextlib.AbstractContextManager[DriverCursor]:
    """A cursor in one transaction, committed when the block ends cleanly (a ``return`` too)
    and rolled back on any exception; on SQLite begun with ``BEGIN IMMEDIATE``, as every
    transaction of the service is (the connection is in the driver's autocommit mode:
    ``wmproxy.store.engine``)."""
    return _Transaction(engine)


class _SingleStatement(_Pooled):
    """:func:`single_statement`'s context manager."""

    __slots__ = ()

    def _begin(self, cursor: DriverCursor) -> None:
        cursor.call("", (), setattr, self._driver, "autocommit", True)  # idle: checked in after a commit or rollback

    def _end(self, clean: bool) -> None:
        if not self._cursor.invalidated:
            with contextlib.suppress(Exception):  # else it stays on: invalidated below
                self._driver.autocommit = False
            if self._driver.autocommit:
                self._cursor.invalidate()


def single_statement(engine: Engine) -> contextlib.AbstractContextManager[DriverCursor]:
    """PostgreSQL: a cursor for one statement that is its own transaction (psycopg's
    autocommit): no ``BEGIN`` and ``COMMIT`` round trips (issue 14: about 0.1-0.2 ms of
    psycopg's CPU per transaction). A failing statement changes nothing. The connection never
    goes back to the pool in autocommit (it is invalidated if that cannot be turned off)."""
    return _SingleStatement(engine)
