"""Unit of work: one transaction, committed on a clean exit, rolled back on an exception."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import cached_property
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store.ce_states import SqlCeStateStore
from wmproxy.store.delegations import SqlDelegationStore
from wmproxy.store.housekeeping import add_removed_counts
from wmproxy.store.jobs import SqlExecutionQueue, SqlJobStore
from wmproxy.store.keypool import SqlDelegationKeyPool
from wmproxy.store.leases import SqlPoolLeaseStore
from wmproxy.store.renewals import SqlRenewalStore
from wmproxy.store.usage import SqlSandboxUsageStore
from wmproxy.store.workers import SqlWorkerStore

#: :meth:`UnitOfWork.one_snapshot`'s statement (PostgreSQL).
_REPEATABLE_READ = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


class UnitOfWork:
    """``with UnitOfWork(factory) as uow:`` gives ``uow.jobs``, ``uow.delegations``, ``uow.queue``, ``uow.renewals``,
    ``uow.leases``, ``uow.workers``, ``uow.ce_states``, ``uow.key_pool``, ``uow.usage``."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self.session: Session
        self._outcomes: list[tuple[Callable[[], None], Callable[[], None], Callable[[], None] | None]] = []

    def __enter__(self) -> UnitOfWork:
        self.session = _idle_session(self._factory)
        self.session.begin()
        self._outcomes = []
        for name in _REPOSITORIES:  # a reused UnitOfWork: the repositories of its last session go
            self.__dict__.pop(name, None)
        return self

    # The repositories are made on first use: a transaction pays for the ones it touches
    # (a jobSubmit uses three of nine).

    @cached_property
    def jobs(self) -> SqlJobStore:
        return SqlJobStore(self.session)

    @cached_property
    def delegations(self) -> SqlDelegationStore:
        return SqlDelegationStore(self.session)

    @cached_property
    def queue(self) -> SqlExecutionQueue:
        return SqlExecutionQueue(self.session)

    @cached_property
    def renewals(self) -> SqlRenewalStore:
        return SqlRenewalStore(self.session)

    @cached_property
    def leases(self) -> SqlPoolLeaseStore:
        return SqlPoolLeaseStore(self.session)

    @cached_property
    def workers(self) -> SqlWorkerStore:
        return SqlWorkerStore(self.session)

    @cached_property
    def ce_states(self) -> SqlCeStateStore:
        return SqlCeStateStore(self.session)

    @cached_property
    def key_pool(self) -> SqlDelegationKeyPool:
        return SqlDelegationKeyPool(self.session)

    @cached_property
    def usage(self) -> SqlSandboxUsageStore:
        return SqlSandboxUsageStore(self.session)

    def one_snapshot(self) -> None:
        """Make every read of this transaction see the database as of its first one, for a read
        of several rows that must agree (a stored proxy's end and its renewal record): on
        PostgreSQL ``REPEATABLE READ`` (under the default READ COMMITTED each statement sees the
        commits made before it, so a commit between two reads mixes before and after); SQLite's
        transaction is one snapshot already. Call it before the transaction's first statement.
        A writing transaction should not: a write that meets a row changed since its snapshot
        fails (PostgreSQL's serialization failure)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(_REPEATABLE_READ)

    def on_outcome(self, committed: Callable[[], None], undone: Callable[[], None],
                   ended: Callable[[], None] | None = None) -> None:
        """Call ``committed()`` once the transaction has committed, or ``undone()`` when the block
        ends in an exception, before the rollback (its locks still held); the ``undone()`` of
        several calls run last first. Neither runs when the commit itself fails (its outcome is
        not known): what the transaction did outside the database then stays as it is.
        ``ended()`` runs last in every case (the commit failing too, or ``committed()`` raising)."""
        self._outcomes.append((committed, undone, ended))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcomes, self._outcomes = self._outcomes, []
        try:
            try:
                if exc_type is None:
                    add_removed_counts(self.session)  # the running totals of removed rows, locked last
                    self.session.commit()
                else:
                    try:
                        for _committed, undone, _ended in reversed(outcomes):
                            undone()
                    finally:
                        self.session.rollback()
            finally:
                self.session.close()  # raises: the session is not used again
                _keep_idle(self._factory, self.session)
            if exc_type is None:
                for committed, _undone, _ended in outcomes:
                    committed()
        finally:
            for _committed, _undone, ended in outcomes:
                if ended is not None:
                    ended()


#: The repository properties of :class:`UnitOfWork` (its cached properties).
_REPOSITORIES = tuple(name for name, value in vars(UnitOfWork).items() if isinstance(value, cached_property))


# A closed Session is as good as a new one (SQLAlchemy: "close() ... the Session may be used
# again"), and making one costs 15-25 µs of CPU per transaction (its instance-level event
# dispatch, identity map, transaction bookkeeping; issue 14). Each thread keeps its closed
# sessions per factory and a unit of work takes one of them: a unit of work opened inside another
# one in the same thread gets a session of its own, a session is never shared between threads.
_IDLE = threading.local()
#: Closed sessions a thread keeps per factory (more are dropped).
IDLE_PER_THREAD = 4


def _idle_sessions(factory: sessionmaker[Session]) -> list[Session]:
    kept: weakref.WeakKeyDictionary[sessionmaker[Session], list[Session]] | None = getattr(_IDLE, "sessions", None)
    if kept is None:
        kept = _IDLE.sessions = weakref.WeakKeyDictionary()
    found = kept.get(factory)
    if found is None:
        found = kept[factory] = []
    return found


def _idle_session(factory: sessionmaker[Session]) -> Session:
    """A closed session of ``factory`` this thread kept, or a new one; its ``info`` is empty."""
    idle = _idle_sessions(factory)
    if not idle:
        return factory()
    session = idle.pop()
    session.info.clear()  # what the last transaction noted (jobs._NOTIFIED, retire._COUNT)
    return session


def _keep_idle(factory: sessionmaker[Session], session: Session) -> None:
    idle = _idle_sessions(factory)
    if len(idle) < IDLE_PER_THREAD:
        idle.append(session)
