"""Engine and session factory from a database URL."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, CursorResult, Delete, Engine, Update, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

#: Default of ``[database] ping_after_idle`` (seconds).
PING_AFTER_IDLE = 5.0
#: ``ConnectionRecord.info`` key: when (``time.monotonic()``) the connection went back to the pool.
_IDLE_SINCE = "wmproxy.idle_since"


_T = TypeVar("_T")
_PER_FACTORY: weakref.WeakKeyDictionary[sessionmaker[Session], dict[Callable[[Engine], Any], Any]] = (
    weakref.WeakKeyDictionary())
_PER_FACTORY_LOCK = threading.Lock()


def per_factory(session_factory: sessionmaker[Session], make: Callable[[Engine], _T]) -> _T:
    """The one ``make(engine)`` of ``session_factory`` and the engine it is bound to: made on
    the first call for that factory and ``make``, kept as long as the factory (e.g. a class
    whose instances hold statements compiled for the engine's dialect; they may hold the
    engine, not the factory)."""
    kept = _PER_FACTORY.get(session_factory)
    found = kept.get(make) if kept is not None else None
    if found is None:
        with _PER_FACTORY_LOCK:
            kept = _PER_FACTORY.setdefault(session_factory, {})
            found = kept.get(make)
            if found is None:
                found = kept[make] = make(session_factory.kw["bind"])
    return cast(_T, found)


def database_reason(exc: SQLAlchemyError) -> str:
    """What went wrong, for a log line: the driver's message of a failed statement (e.g.
    "database is locked", "terminating connection due to administrator command") without
    SQLAlchemy's rendering of the statement and its parameters (which may hold sealed secrets),
    else the error's class name."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{exc.__class__.__name__}: {str(exc.orig).strip() or exc.orig.__class__.__name__}"
    return exc.__class__.__name__


def make_engine(url: str, *, ping_after_idle: float = PING_AFTER_IDLE, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout for several processes,
    and a pool that hands out the connection returned last (its page cache is still valid).

    Other databases: a pooled connection unused for more than ``ping_after_idle`` seconds is
    checked with the dialect's ping (``SELECT 1``) when it is next checked out, and replaced
    when the database reports it disconnected (:func:`_ping_after_idle`); ``pool_pre_ping=True``
    in ``kwargs`` pings on every checkout instead.

    Every engine hides the values of a failed statement in its error (``hide_parameters``).
    """
    # A failed statement's error (and so a log line with its traceback) names the statement,
    # never its values: they may be a sealed proxy or key, a DN, a whole JDL.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        if _queue_pooled(url, kwargs):
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN reach SQLite so "BEGIN IMMEDIATE" can be issued.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is not fsynced (checkpoints are); the database stays
            # consistent after any crash, an OS crash or power loss may lose the last commits.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # On the driver's connection, not through exec_driver_sql: that sets up a whole
            # execution context, about 8 µs per transaction here (issue 14). A failure (a database
            # locked past the busy timeout, a closed one) is raised as SQLAlchemy raises a failed
            # statement's (wrapped, the connection invalidated on a disconnect, handle_error events).
            try:
                conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            except BaseException as exc:  # noqa: BLE001 - re-raised wrapped, as SQLAlchemy does for its own BEGIN
                conn._handle_dbapi_exception(exc, "BEGIN IMMEDIATE", (), None, None)

        return engine
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine, ping_after_idle)
    return engine


def _queue_pooled(url: str, kwargs: dict[str, Any]) -> bool:
    """Whether SQLAlchemy gives the SQLite ``url`` its ``QueuePool`` (a database file and no pool
    of the caller's); an in-memory database gets a pool of one connection per thread instead."""
    if "poolclass" in kwargs or "pool" in kwargs:
        return False
    parsed = make_url(url)
    return bool(parsed.database) and parsed.database != ":memory:" and parsed.query.get("mode") != "memory"


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's pessimistic disconnect handling, limited to connections that sat in the pool
    for more than ``idle_seconds``: a busy service's transactions skip the ``SELECT 1`` round
    trip that ``pool_pre_ping`` costs each of them. A ping that fails with a disconnect raises
    ``DisconnectionError``, on which the pool discards the connection and connects anew
    (``pool_pre_ping``'s own recovery); any other error propagates."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= idle_seconds:
            return  # a new connection, or one used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"pooled connection lost while idle: {exc}") from exc
            raise


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def rows_matched(session: Session, statement: Update | Delete) -> int:
    """Execute an UPDATE or DELETE in ``session`` and return how many rows it matched."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount
