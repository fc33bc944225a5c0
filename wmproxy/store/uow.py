"""Unit of work: one transaction, committed on a clean exit, rolled back on an exception."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from wmproxy.store.ce_states import SqlCeStateStore
from wmproxy.store.delegations import SqlDelegationStore
from wmproxy.store.jobs import SqlExecutionQueue, SqlJobStore
from wmproxy.store.keypool import SqlDelegationKeyPool
from wmproxy.store.leases import SqlPoolLeaseStore
from wmproxy.store.renewals import SqlRenewalStore
from wmproxy.store.usage import SqlSandboxUsageStore
from wmproxy.store.workers import SqlWorkerStore


class UnitOfWork:
    """``with UnitOfWork(factory) as uow:`` gives ``uow.jobs``, ``uow.delegations``, ``uow.queue``, ``uow.renewals``,
    ``uow.leases``, ``uow.workers``, ``uow.ce_states``, ``uow.key_pool``, ``uow.usage``."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.session.begin()
        self.jobs = SqlJobStore(self.session)
        self.delegations = SqlDelegationStore(self.session)
        self.queue = SqlExecutionQueue(self.session)
        self.renewals = SqlRenewalStore(self.session)
        self.leases = SqlPoolLeaseStore(self.session)
        self.workers = SqlWorkerStore(self.session)
        self.ce_states = SqlCeStateStore(self.session)
        self.key_pool = SqlDelegationKeyPool(self.session)
        self.usage = SqlSandboxUsageStore(self.session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()
