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

from sqlalchemy import Engine, TextClause, bindparam, delete, func, select, text
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


def _take_key_and_put_proxy() -> TextClause:
    """PostgreSQL: :data:`_TAKE_KEY` and the proxy's upsert (``put_proxy``'s) as one statement:
    the proxy is stored only if the request was deleted; ``RETURNING id, created_at``."""
    updated = ", ".join(f"{name} = excluded.{name}" for name in PROXY_UPDATED)
    sql = (f"WITH t AS (DELETE FROM {_requests.name} WHERE owner_dn = :owner_dn "  # noqa: S608 - schema names, bound values
           "AND delegation_id = :delegation_id AND sealed_key = :sealed_key RETURNING 1) "
           f"INSERT INTO {_delegations.name} ({', '.join(_PROXY_COLUMNS)}) "
           f"SELECT {', '.join(f':{name}' for name in _PROXY_COLUMNS)} FROM t "
           f"ON CONFLICT (owner_dn, delegation_id) DO UPDATE SET {updated} RETURNING id, created_at")
    return text(sql).bindparams(bindparam("sealed_key", type_=_requests.c.sealed_key.type),
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
        if self.sqlite:
            self._take_key = _Compiled(_TAKE_KEY, dialect)
            self._claim = _Compiled(keypool._CLAIM, dialect)
            self._put_request = _Compiled(upserts.put_request, dialect, _REQUEST_COLUMNS)
        else:
            self._take_key_and_put = _Compiled(_take_key_and_put_proxy(), dialect)
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
        params = {"owner_dn": owner_dn}
        if self.sqlite:
            with pooled(self.engine) as cursor:
                row = self._pending_count.execute(cursor, params)
        else:
            with single_statement(self.engine) as cursor:
                row = self._pending_count.execute(cursor, params)
        return 0 if row is None else int(row[0])

    def pending_key(self, owner_dn: str, delegation_id: str) -> bytes | None:
        """The sealed key of the pending request of (DN, id), read in a transaction of its own
        (no lock: it may be taken or replaced right after), or None when there is none."""
        params = {"owner_dn": owner_dn, "delegation_id": delegation_id}
        if self.sqlite:  # a read in the connection's autocommit mode: no write lock
            with pooled(self.engine) as cursor:
                row = self._pending_key.execute(cursor, params)
        else:
            with single_statement(self.engine) as cursor:
                row = self._pending_key.execute(cursor, params, binary=True)
        return None if row is None else bytes(row[0])

    def put_proxy_for_request(self, owner_dn: str, delegation_id: str, sealed_key: bytes, sealed_proxy: bytes,
                              not_before: dt.datetime, not_after: dt.datetime, fqans: tuple[str, ...],
                              now: dt.datetime) -> StoredDelegation | None:
        """putProxy's write: delete the pending request of (DN, id) if it still holds
        ``sealed_key`` (the key :meth:`pending_key` read and the proxy was checked against) and
        store the proxy (inserted, or replacing the row of (DN, id), which keeps its id and
        ``created_at``: the upsert of ``SqlDelegationStore.put_proxy``), in one transaction (on
        PostgreSQL one statement in autocommit). Returns the stored row's values, or None with
        nothing written when the request was taken or replaced meanwhile; a concurrent taker of
        the same request waits for this transaction, then gets None."""
        bind = self._bind_time
        joined = "\n".join(fqans)
        stamp = bind(now)
        values = {"owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_proxy": sealed_proxy,
                  "not_before": bind(not_before), "not_after": bind(not_after), "fqans": joined,
                  "created_at": stamp, "updated_at": stamp}
        if self.sqlite:
            with transaction(self.engine) as cursor:
                self._take_key.run(cursor, {"owner_dn": owner_dn, "delegation_id": delegation_id,
                                            "sealed_key": sealed_key})
                if cursor.rowcount != 1:
                    return None  # nothing was written: the commit is empty
                row = self._put_proxy.execute(cursor, values)
        else:
            with single_statement(self.engine) as cursor:
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
