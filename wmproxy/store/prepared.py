"""Statements compiled once per dialect and sent as the driver's own SQL (issue 14).

A Core statement executed through ``Connection.execute`` is looked up in the compiled cache,
its parameters are built through the compiled form and an execution context is set up for
it on every call: on SQLite about 0.1 ms of CPU for each of a simple jobSubmit's three
INSERTs, more than the database's own work. :class:`DriverStatement` keeps what the
compilation gives (the SQL in the dialect's paramstyle, with PostgreSQL's casts, and the
order of its parameters) together with the bind processors of the parameters' types (a
``UTCDateTime`` becomes the same string on SQLite as through Core), and sends it with
``Connection.exec_driver_sql`` (:meth:`DriverStatement.execute`: the engine's statement events
see it) or, when no result is read, on the driver's own connection
(:meth:`DriverStatement.send`): the driver receives the same SQL and the same values, and the
rows written are the same.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam, text
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.sql.schema import ScalarElementColumnDefault
from sqlalchemy.types import TypeEngine

from wmproxy.store.schema import UTCDateTime


@dataclass(frozen=True)
class DriverStatement:
    """One compiled statement and how its parameters are sent.

    Attributes:
        sql: the statement as the driver receives it.
        order: ``(name, bind processor or None)`` of each parameter, in the order a positional
            paramstyle sends them.
        positional: whether the dialect's paramstyle is positional (a tuple is sent) or named
            (a dict).
    """

    sql: str
    order: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    positional: bool

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> CursorResult[Any]:
        """Send the statement on ``conn`` with ``values`` (every parameter by name).

        Raises:
            KeyError: a parameter has no value.
        """
        return conn.exec_driver_sql(self.sql, self.parameters(values))

    def send(self, conn: Connection, values: Mapping[str, Any]) -> None:
        """Send the statement on the driver's own connection under ``conn``, reading no result:
        what :meth:`execute` sends, without SQLAlchemy's execution context and result (about
        40 µs a statement on SQLite, issue 14); the engine's statement events do not see it. A
        driver error is raised as SQLAlchemy raises a failed statement's (wrapped in
        ``sqlalchemy.exc.DBAPIError``, the connection invalidated on a disconnect).

        Raises:
            KeyError: a parameter has no value.
            sqlalchemy.exc.DBAPIError: the database refused the statement.
        """
        parameters = self.parameters(values)
        cursor = None
        try:
            # The DBAPI connection (a detached one too: a transaction that retires its connection).
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(self.sql, parameters)
        except BaseException as exc:  # noqa: BLE001 - re-raised wrapped, as SQLAlchemy does for its own statements
            # SQLAlchemy closes the cursor (a connection it invalidates is closed: no close here).
            conn._handle_dbapi_exception(exc, self.sql, parameters, cursor, None)
        cursor.close()

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The parameters the driver receives for ``values`` (every parameter by name), each
        through its type's bind processor, in the dialect's paramstyle.

        Raises:
            KeyError: a parameter has no value.
        """
        processed = []
        for name, process in self.order:
            value = values[name]
            processed.append(value if process is None else process(value))
        if self.positional:
            return tuple(processed)
        return dict(zip((name for name, _ in self.order), processed, strict=True))


def compile_for(dialect: Dialect, statement: TextClause) -> DriverStatement:
    """``statement`` (typed binds, no literal values) compiled for ``dialect``."""
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    order = tuple((name, _bind_processor(dialect, compiled.binds[name].type)) for name in names)
    return DriverStatement(compiled.string, order, bool(compiled.positional))


class _LastValue:
    """A bind processor that gives the value it was last given its last result again, without
    processing it (compared by identity: the value object is held, so its id is not reused).

    Every ``UTCDateTime`` bind of a dialect shares one (:func:`_bind_processor`): a simple
    jobSubmit sends the same ``now`` five times (the job's ``created_at`` and ``updated_at``,
    its two events' ``at``, its request's ``created_at``), and SQLite's processor writes it
    with ``%`` formatting of seven integers, about 13,000 instructions each (issue 14). The
    processor is a pure function of an immutable value, so the result is the one processing
    would give. Thread-safe: the pair is replaced whole, and read once."""

    __slots__ = ("_last", "_process")

    def __init__(self, process: Callable[[Any], Any]) -> None:
        self._process = process
        self._last: tuple[Any, Any] = (_NOTHING, None)

    def __call__(self, value: Any) -> Any:
        last = self._last
        if last[0] is value:
            return last[1]
        processed = self._process(value)
        self._last = (value, processed)
        return processed


_NOTHING = object()
_SHARED: weakref.WeakKeyDictionary[Dialect, _LastValue | None] = weakref.WeakKeyDictionary()


def _bind_processor(dialect: Dialect, type_: TypeEngine[Any]) -> Callable[[Any], Any] | None:
    """The bind processor of ``type_`` for ``dialect``; for :class:`UTCDateTime` (a type without
    parameters: each instance processes a value as any other does) one :class:`_LastValue`
    shared by every statement of the dialect."""
    if type(type_) is not UTCDateTime:
        return type_.dialect_impl(dialect).bind_processor(dialect)
    with _LOCK:
        if dialect not in _SHARED:
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            _SHARED[dialect] = None if process is None else _LastValue(process)
        return _SHARED[dialect]


_CACHE: weakref.WeakKeyDictionary[Dialect, dict[Hashable, DriverStatement]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def statement(dialect: Dialect, key: Hashable, build: Callable[[], TextClause]) -> DriverStatement:
    """The :class:`DriverStatement` kept for ``dialect`` under ``key``, compiled from ``build()``
    the first time (per dialect: an engine's dialect lives as long as the engine)."""
    kept = _CACHE.get(dialect)
    found = kept.get(key) if kept is not None else None
    if found is not None:
        return found
    made = compile_for(dialect, build())
    with _LOCK:
        _CACHE.setdefault(dialect, {})[key] = made
    return made


def row_insert(table: Table, keys: tuple[str, ...]) -> TextClause:
    """``INSERT INTO <table> (<keys>) VALUES (:<key>, ...)`` with binds typed as the columns.

    Raises:
        KeyError: a key is not a column of ``table``.
    """
    columns = [table.c[key] for key in keys]
    sql = (f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) "  # noqa: S608 - schema names, bound values
           f"VALUES ({', '.join(f':{key}' for key in keys)})")
    return text(sql).bindparams(*(bindparam(key, type_=column.type) for key, column in zip(keys, columns, strict=True)))


@functools.cache
def scalar_defaults(table: Table) -> dict[str, Any]:
    """The columns of ``table`` with a scalar Python-side default (``default=0``), what Core's
    ``insert()`` adds for a column the values leave out."""
    return {column.key: column.default.arg for column in table.columns
            if isinstance(column.default, ScalarElementColumnDefault)}
