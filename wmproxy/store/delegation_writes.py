"""getProxyReq's and putProxy's transactions on the database driver's own connection (issue 14).

The statements are those of :class:`~wmproxy.store.keypool.SqlDelegationKeyPool` and
:class:`~wmproxy.store.delegations.SqlDelegationStore`, compiled once per engine by
SQLAlchemy and run on the driver's connection, checked out of the engine's pool
(:mod:`wmproxy.store.driver`: the pool's checkout events, such as the ping after idle, still
run, and a driver error is raised as SQLAlchemy raises its statements'): no ORM session and no
execution context per statement.
In process those were about 0.2 ms of CPU per transaction on SQLite and 0.15 ms per statement
on PostgreSQL, a third of the service's part of a delegation.

A transaction is committed when its ``with`` block ends cleanly and rolled back on any
exception (nothing half-written); on SQLite it starts with ``BEGIN IMMEDIATE`` as every
other transaction of the service does (``wmproxy.store.driver.transaction``). putProxy reads the pending
request's key first, without a lock, and takes the request only if it still holds that key
when the proxy is stored (:meth:`DelegationWrites.put_proxy_for_request`): the proxy's checks
run outside any transaction (on SQLite no write lock is held while OpenSSL verifies), and on
PostgreSQL the two writes are one statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Integer, TextClause, bindparam, delete, func, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store import keypool
from wmproxy.store.delegations import PROXY_UPDATED, _delegations, _requests, _statements
from wmproxy.store.driver import pooled, single_statement, transaction
from wmproxy.store.engine import per_factory
from wmproxy.store.schema import UTCDateTime


class _Compiled:
    """One statement compiled for a dialect: its SQL text and the values SQLAlchemy binds
    itself (``LIMIT 1``...); run with named parameters on a DBAPI cursor."""

    def __init__(self, statement: Any, dialect: Any, column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.fixed = {name: value for name, value in compiled.params.items() if value is not None}

    def run(self, cursor: Any, params: Mapping[str, Any]) -> None:
        cursor.execute(self.sql, {**self.fixed, **params} if self.fixed else params)

    def execute(self, cursor: Any, params: Mapping[str, Any], *, binary: bool = False) -> Any:
        """:meth:`run`, then the first row it returned (``binary``: read in PostgreSQL's binary
        format, :meth:`wmproxy.store.driver.DriverCursor.execute`)."""
        cursor.execute(self.sql, {**self.fixed, **params} if self.fixed else params, binary=binary)
        return cursor.fetchone()


_REQUEST_COLUMNS = ["owner_dn", "delegation_id", "sealed_key", "csr_pem", "created_at"]
_PROXY_COLUMNS = ["owner_dn", "delegation_id", "sealed_proxy", "not_before", "not_after", "fqans",
                  "created_at", "updated_at"]

#: The sealed key of (DN, id)'s pending request, read without a lock.
_PENDING_KEY = select(_requests.c.sealed_key).where(
    _requests.c.owner_dn == bindparam("owner_dn"), _requests.c.delegation_id == bindparam("delegation_id"))
#: How many pending requests a DN has, through the (DN, id) unique index.
_PENDING_COUNT = select(func.count()).select_from(_requests).where(_requests.c.owner_dn == bindparam("owner_dn"))
#: SQLite: the pending request of (DN, id), deleted only while it holds the key read.
_TAKE_KEY = delete(_requests).where(
    _requests.c.owner_dn == bindparam("owner_dn"), _requests.c.delegation_id == bindparam("delegation_id"),
    _requests.c.sealed_key == bindparam("sealed_key"))

#: Whether (DN, id) may be stored under ``[limits] max_delegations_per_user``
#: (``:max_delegations``): its id is stored already (a replacement: the count is then not
#: run, a ``CASE`` rather than an ``OR``, which SQLite evaluated whole), or the DN has fewer
#: delegations than the bound. Both read the (DN, id) unique index, the count at most
#: ``max_delegations`` of its entries (``LIMIT``), whatever the DN holds.
_ROOM_SQL = (f"(CASE WHEN EXISTS (SELECT 1 FROM {_delegations.name} WHERE owner_dn = :owner_dn "  # noqa: S608
             "AND delegation_id = :delegation_id) THEN 1 "
             f"WHEN (SELECT count(*) FROM (SELECT 1 FROM {_delegations.name} WHERE owner_dn = :owner_dn "
             "LIMIT :max_delegations) AS stored) < :max_delegations THEN 1 ELSE 0 END = 1)")
#: SQLite: :data:`_TAKE_KEY`, only when (DN, id) may be stored (:data:`_ROOM_SQL`).
_TAKE_KEY_WITH_ROOM = text(
    f"DELETE FROM {_requests.name} WHERE owner_dn = :owner_dn AND delegation_id = :delegation_id "  # noqa: S608
    f"AND sealed_key = :sealed_key AND {_ROOM_SQL}").bindparams(
        bindparam("sealed_key", type_=_requests.c.sealed_key.type), bindparam("max_delegations", type_=Integer))
#: Whether the bound refuses (DN, id): 1 when it may not be stored, else 0.
_NO_ROOM = text(f"SELECT CASE WHEN {_ROOM_SQL} THEN 0 ELSE 1 END").bindparams(
    bindparam("max_delegations", type_=Integer))


def _take_key_and_put_proxy(bounded: bool) -> TextClause:
    """PostgreSQL: :data:`_TAKE_KEY` and the proxy's upsert (``put_proxy``'s) as one statement:
    the proxy is stored only if the request was deleted; ``RETURNING id, created_at``.
    ``bounded``: the request is deleted, so the proxy stored, only when (DN, id) may be stored
    (:data:`_ROOM_SQL`, read in the statement's snapshot)."""
    updated = ", ".join(f"{name} = excluded.{name}" for name in PROXY_UPDATED)
    room = f" AND {_ROOM_SQL}" if bounded else ""
    sql = (f"WITH t AS (DELETE FROM {_requests.name} WHERE owner_dn = :owner_dn "  # noqa: S608 - schema names, bound values
           f"AND delegation_id = :delegation_id AND sealed_key = :sealed_key{room} RETURNING 1) "
           f"INSERT INTO {_delegations.name} ({', '.join(_PROXY_COLUMNS)}) "
           f"SELECT {', '.join(f':{name}' for name in _PROXY_COLUMNS)} FROM t "
           f"ON CONFLICT (owner_dn, delegation_id) DO UPDATE SET {updated} RETURNING id, created_at")
    bounds = [bindparam("max_delegations", type_=Integer)] if bounded else []
    return text(sql).bindparams(bindparam("sealed_key", type_=_requests.c.sealed_key.type), *bounds,
                                *(bindparam(name, type_=_delegations.c[name].type) for name in _PROXY_COLUMNS))


class DelegationWrites:
    """The delegation transactions of one engine (:func:`delegation_writes` keeps one per session factory).

    Args:
        engine: the service's engine (SQLite or PostgreSQL).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        name = engine.dialect.name
        self.sqlite = name == "sqlite"
        # sqlite3 takes named parameters (":name") as well as the dialect's "?"; psycopg's is "%(name)s"
        dialect = sqlite.dialect(paramstyle="named") if self.sqlite else engine.dialect
        stored = UTCDateTime().dialect_impl(engine.dialect)
        bind = stored.bind_processor(engine.dialect)
        result = stored.result_processor(engine.dialect, None)
        #: A UTC datetime as the column stores it, and back (the ORM's conversions).
        self._bind_time: Callable[[dt.datetime], Any] = bind or (lambda value: value)
        self._read_time: Callable[[Any], Any] = result or (lambda value: value)
        upserts = _statements(name)
        self._put_proxy = _Compiled(upserts.put_proxy, dialect, _PROXY_COLUMNS)
        self._pending_key = _Compiled(_PENDING_KEY, dialect)
        self._pending_count = _Compiled(_PENDING_COUNT, dialect)
        self._no_room = _Compiled(_NO_ROOM, dialect)
        if self.sqlite:
            self._take_key = _Compiled(_TAKE_KEY, dialect)
            self._take_key_with_room = _Compiled(_TAKE_KEY_WITH_ROOM, dialect)
            self._claim = _Compiled(keypool._CLAIM, dialect)
            self._put_request = _Compiled(upserts.put_request, dialect, _REQUEST_COLUMNS)
        else:
            self._take_key_and_put = _Compiled(_take_key_and_put_proxy(bounded=False), dialect)
            self._take_key_with_room_and_put = _Compiled(_take_key_and_put_proxy(bounded=True), dialect)
            self._claim_into_request = _Compiled(keypool._claim_into_request(), dialect)

    def claim_into_request(self, key_bits: int, owner_dn: str, delegation_id: str,
                           now: dt.datetime) -> tuple[str, bytes] | None:
        """:meth:`~wmproxy.store.keypool.SqlDelegationKeyPool.claim_into_request` in its own
        transaction: the oldest pooled key of ``key_bits`` bits (deleted, so it serves one request
        only; PostgreSQL skips the keys other transactions are claiming) becomes the pending
        request of (``owner_dn``, ``delegation_id``), replacing an older one. Returns its CSR
        PEM and its sealed key (as :meth:`pending_key` would read it back), or None when the pool
        has no free key (nothing is written then)."""
        created = self._bind_time(now)
        if not self.sqlite:  # one statement (a data-modifying WITH): atomic by itself
            with single_statement(self.engine) as cursor:
                # binary rows: the sealed key (2.4 kB) comes back as its bytes, not as hexadecimal
                # text the server writes and psycopg decodes (issue 14)
                row = self._claim_into_request.execute(cursor, {
                    "bits": key_bits, "owner_dn": owner_dn, "delegation_id": delegation_id, "created_at": created},
                    binary=True)
                return None if row is None else (str(row[0]), bytes(row[1]))
        with transaction(self.engine) as cursor:
            claimed = self._claim.execute(cursor, {"bits": key_bits})
            if claimed is None:
                return None
            self._put_request.execute(cursor, {
                "owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_key": claimed[0],
                "csr_pem": claimed[1], "created_at": created})
            return str(claimed[1]), bytes(claimed[0])

    def pending_count(self, owner_dn: str) -> int:
        """How many pending requests ``owner_dn`` has, read in a transaction of its own without a
        lock (as :meth:`pending_key`)."""
        row = self._read(self._pending_count, {"owner_dn": owner_dn})
        return 0 if row is None else int(row[0])

    def _read(self, statement: _Compiled, params: Mapping[str, Any], *, binary: bool = False) -> Any:
        """The first row of a read in a transaction of its own, without a lock (SQLite: in the
        connection's autocommit mode, no write lock; ``binary``: PostgreSQL's binary rows)."""
        if self.sqlite:
            with pooled(self.engine) as cursor:
                return statement.execute(cursor, params)
        with single_statement(self.engine) as cursor:
            return statement.execute(cursor, params, binary=binary)

    def no_room(self, owner_dn: str, delegation_id: str, max_delegations: int) -> bool:
        """Whether ``[limits] max_delegations_per_user`` (``max_delegations``) refuses to store
        (DN, id) now: the id is not stored and the DN has that many delegations or more. Read
        in a transaction of its own without a lock (as :meth:`pending_key`)."""
        row = self._read(self._no_room, {
            "owner_dn": owner_dn, "delegation_id": delegation_id, "max_delegations": max_delegations})
        return row is not None and int(row[0]) == 1

    def pending_key(self, owner_dn: str, delegation_id: str) -> bytes | None:
        """The sealed key of the pending request of (DN, id), read in a transaction of its own
        (no lock: it may be taken or replaced right after), or None when there is none."""
        row = self._read(self._pending_key, {"owner_dn": owner_dn, "delegation_id": delegation_id}, binary=True)
        return None if row is None else bytes(row[0])

    def put_proxy_for_request(self, owner_dn: str, delegation_id: str, sealed_key: bytes, sealed_proxy: bytes,
                              not_before: dt.datetime, not_after: dt.datetime, fqans: tuple[str, ...],
                              now: dt.datetime, *, max_delegations: int | None = None) -> StoredDelegation | None:
        """putProxy's write: delete the pending request of (DN, id) if it still holds
        ``sealed_key`` (the key :meth:`pending_key` read and the proxy was checked against) and
        store the proxy (inserted, or replacing the row of (DN, id), which keeps its id and
        ``created_at``: the upsert of ``SqlDelegationStore.put_proxy``), in one transaction (on
        PostgreSQL one statement in autocommit). Returns the stored row's values, or None with
        nothing written when the request was taken or replaced meanwhile; a concurrent taker of
        the same request waits for this transaction, then gets None.

        With ``max_delegations`` (``[limits] max_delegations_per_user``), a new id is stored only
        while the DN has fewer delegations than that (a stored id is always replaced): the
        condition is part of the request's delete, in the same transaction (SQLite: under its
        write lock, exact; PostgreSQL: in the statement's snapshot, so putProxy calls of one DN
        running at the same instant under new ids may each pass it, the DN then holding at
        most that many more). Refused, nothing is written (the request stays pending) and None
        is returned, as for a request taken: :meth:`no_room` tells them apart."""
        bind = self._bind_time
        joined = "\n".join(fqans)
        stamp = bind(now)
        values = {"owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_proxy": sealed_proxy,
                  "not_before": bind(not_before), "not_after": bind(not_after), "fqans": joined,
                  "created_at": stamp, "updated_at": stamp}
        bounded = max_delegations is not None
        if self.sqlite:
            with transaction(self.engine) as cursor:
                take = {"owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_key": sealed_key}
                if bounded:
                    self._take_key_with_room.run(cursor, {**take, "max_delegations": max_delegations})
                else:
                    self._take_key.run(cursor, take)
                if cursor.rowcount != 1:
                    return None  # nothing was written: the commit is empty
                row = self._put_proxy.execute(cursor, values)
        else:
            with single_statement(self.engine) as cursor:
                if bounded:
                    row = self._take_key_with_room_and_put.execute(
                        cursor, {**values, "sealed_key": sealed_key, "max_delegations": max_delegations}, binary=True)
                else:
                    row = self._take_key_and_put.execute(cursor, {**values, "sealed_key": sealed_key}, binary=True)
            if row is None:
                return None
        key, created_at = row
        return StoredDelegation(key, owner_dn, delegation_id, sealed_proxy, not_before, not_after, joined,
                                self._read_time(created_at), now)


@dataclass(frozen=True, slots=True)
class StoredDelegation:
    """The row :meth:`DelegationWrites.put_proxy_for_request` stored, with the columns of
    :class:`~wmproxy.store.schema.Delegation` (times UTC-aware; ``fqans`` newline separated,
    primary first). A plain value: building the ORM object cost about 3-4 % of a putProxy's CPU
    in process (issue 14), and nothing reads it through a session."""

    id: int
    owner_dn: str
    delegation_id: str
    sealed_proxy: bytes = field(repr=False)  # the proxy's private key, sealed
    not_before: dt.datetime
    not_after: dt.datetime
    fqans: str
    created_at: dt.datetime
    updated_at: dt.datetime


def delegation_writes(session_factory: sessionmaker[Session]) -> DelegationWrites:
    """The :class:`DelegationWrites` of ``session_factory``'s engine (made once per factory)."""
    return per_factory(session_factory, DelegationWrites)
