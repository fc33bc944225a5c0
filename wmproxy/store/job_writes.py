"""jobSubmit's write of a simple job on the database driver's own connection, guarded by the
delegated proxy it was checked against (issue 14).

A simple job sent with jobSubmit goes in already Waiting, with its two events and its start
request (:meth:`~wmproxy.store.jobs.SqlJobStore.insert`). In a unit of work that write follows a
read of the caller's stored proxy, in the same transaction. :meth:`JobWrites.insert_started`
folds that read into the write: the job's row is inserted only if the delegation still holds
the sealed proxy the caller checked (the same sealed bytes: every change of a stored proxy,
putProxy, a MyProxy renewal, a new store key, seals it anew), and the events and the request
follow the job's row. On PostgreSQL that is one statement run as its own transaction
(autocommit): no ``BEGIN``, ``SELECT`` and ``COMMIT`` round trips, about 0.25 ms of the
service's CPU per jobSubmit through psycopg and SQLAlchemy. On SQLite it is one ``BEGIN
IMMEDIATE`` transaction of three INSERTs, the first one guarded. Both are sent on the driver's
connection checked out of the engine's pool (:mod:`wmproxy.store.driver`: the pool's checkout
events run, and a driver error is raised as SQLAlchemy raises its statements'), without an ORM
session or execution contexts.

Nothing is half-written: a statement that fails, or a guard that finds another proxy (or none),
leaves no row of the job.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, TextClause, bindparam, text
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store import prepared
from wmproxy.store.delegations import _delegations
from wmproxy.store.driver import single_statement, transaction
from wmproxy.store.engine import per_factory
from wmproxy.store.jobs import _JOBS, _REQUESTS, _events_insert, new_job_rows, started_insert
from wmproxy.store.retire import RETIRE_BYTES

#: Jobs whose JDL texts together are longer than this (characters) are not written here: the
#: unit of work's insert retires a connection that carried that much (``wmproxy.store.retire``).
MAX_JDL_CHARS = RETIRE_BYTES

_REQUEST_KEYS = ("job_id", "command", "created_at")


def _guard_sql() -> str:
    return (f"EXISTS (SELECT 1 FROM {_delegations.name} WHERE owner_dn = :guard_owner_dn "  # noqa: S608 - schema names, bound values
            "AND delegation_id = :guard_delegation_id AND sealed_proxy = :guard_sealed_proxy)")


def _guard_binds() -> list[Any]:
    return [bindparam("guard_owner_dn", type_=_delegations.c.owner_dn.type),
            bindparam("guard_delegation_id", type_=_delegations.c.delegation_id.type),
            bindparam("guard_sealed_proxy", type_=_delegations.c.sealed_proxy.type)]


def _job_binds(keys: tuple[str, ...]) -> list[Any]:
    return [bindparam(key, type_=_JOBS.c[key].type) for key in keys]


@functools.cache
def _guarded_job_insert(keys: tuple[str, ...]) -> TextClause:
    """SQLite: ``INSERT INTO jobs (<keys>) SELECT <values> WHERE <the delegation holds the proxy>``."""
    sql = (f"INSERT INTO {_JOBS.name} ({', '.join(keys)}) "
           f"SELECT {', '.join(f':{key}' for key in keys)} WHERE {_guard_sql()}")
    return text(sql).bindparams(*_job_binds(keys), *_guard_binds())


def _guarded_started_insert(keys: tuple[str, ...], rows: int) -> TextClause:
    """PostgreSQL: the started job's one statement (``jobs.started_insert``), its row guarded."""
    return started_insert(keys, rows, _guard_sql(), _guard_binds())


class JobWrites:
    """The guarded jobSubmit write of one engine (:func:`job_writes` keeps one per session factory).

    Args:
        engine: the service's engine (SQLite or PostgreSQL).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"

    def takes(self, job: Mapping[str, Any]) -> bool:
        """Whether :meth:`insert_started` takes ``job`` (column values): JDL texts of fewer than
        :data:`MAX_JDL_CHARS` characters together (the unit of work retires a connection at
        that many)."""
        return len(job.get("jdl_original") or "") + len(job.get("jdl_registered") or "") < MAX_JDL_CHARS

    @staticmethod
    def may_take(jdl: str) -> bool:
        """Whether a job of the JDL text ``jdl`` may fit :meth:`takes` (its registered JDL is
        longer than ``jdl``), known before the job is registered."""
        return 2 * len(jdl) < MAX_JDL_CHARS

    def insert_started(self, job: Mapping[str, Any], history: Sequence[str], request: str, *,
                       owner_dn: str, delegation_id: str, sealed_proxy: bytes) -> bool:
        """INSERT a new simple job (its column values by key, as for
        :meth:`~wmproxy.store.jobs.SqlJobStore.insert`, ``history`` its states oldest first) with
        its events and its ``request`` due at once, all in one transaction of their own, only if
        the delegation (``owner_dn``, ``delegation_id``) still holds ``sealed_proxy``.

        Returns:
            True when the job was written; False when the delegation holds another proxy or
            none (nothing is written).

        Raises:
            ValueError: ``history`` is empty or does not end with the job's state, or
                :meth:`takes` refuses the job (nothing is written).
            KeyError: a value names no column of ``jobs``, or ``id``, ``state`` or
                ``created_at`` is missing.
            sqlalchemy.exc.DBAPIError: the database refused a statement or the commit, raised
                as SQLAlchemy raises its own statements' errors (a disconnect invalidates the
                pool's connections). Nothing is written, except that a disconnect during
                PostgreSQL's one statement leaves unknown whether it was committed.
        """
        if not self.takes(job):
            raise ValueError("JDL texts too long for one write: insert them in a unit of work")
        values, events = new_job_rows(job, history)
        guard = {"guard_owner_dn": owner_dn, "guard_delegation_id": delegation_id,
                 "guard_sealed_proxy": sealed_proxy}
        dialect, keys, rows = self.engine.dialect, tuple(values), len(history)
        # The statements and their parameters first: an error there is not the database's.
        if not self.sqlite:
            started = prepared.statement(dialect, ("guarded-started", keys, rows),
                                         lambda: _guarded_started_insert(keys, rows))
            parameters = started.parameters({**values, **events, **guard, "request_command": request})
            with single_statement(self.engine) as cursor:
                cursor.execute(started.sql, parameters)
                return cursor.fetchone() is not None
        job_insert = prepared.statement(dialect, ("guarded-job", keys), lambda: _guarded_job_insert(keys))
        event_insert = prepared.statement(dialect, ("events", rows), lambda: _events_insert(rows))
        request_insert = prepared.statement(dialect, "request", lambda: prepared.row_insert(_REQUESTS, _REQUEST_KEYS))
        statements = [
            (event_insert.sql, event_insert.parameters(events)),
            (request_insert.sql, request_insert.parameters(
                {"job_id": values["id"], "command": request, "created_at": values["created_at"]})),
        ]
        job_parameters = job_insert.parameters({**values, **guard})
        with transaction(self.engine) as cursor:
            cursor.execute(job_insert.sql, job_parameters)
            if cursor.rowcount != 1:  # the guard: the delegation holds another proxy or none
                return False  # nothing written: the transaction commits empty
            for sql, parameters in statements:
                cursor.execute(sql, parameters)
        return True


def job_writes(session_factory: sessionmaker[Session]) -> JobWrites:
    """The :class:`JobWrites` of ``session_factory``'s engine (made once per factory)."""
    return per_factory(session_factory, JobWrites)


