"""Repository of pool account leases: the gridmapdir of ``lcmaps_poolaccount`` in the database.

A lease ties one account of a pool to one identity (pool, DN, group). The two unique
constraints of ``pool_leases`` make taking an account safe with several gunicorn
workers and service nodes on one database:

* PostgreSQL (READ COMMITTED): a request inserts the lease for the first account it
  sees free, inside a SAVEPOINT. A concurrent insert of the same account (or of the
  same identity) waits for the other transaction and then fails with a unique
  violation; the savepoint is rolled back and the next free account is tried, or the
  identity's lease that the other request just committed is used.
* SQLite: every transaction starts with ``BEGIN IMMEDIATE`` (``engine.py``), so
  writers are serialised and the first free account is always still free.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wmproxy.domain import FINAL_STATES
from wmproxy.store.schema import Job, PoolLease

_FINAL = tuple(state.value for state in FINAL_STATES)

#: How often :meth:`SqlPoolLeaseStore.acquire` starts over when concurrent requests
#: took every account it saw free or removed the lease it found.
_ATTEMPTS = 5


class SqlPoolLeaseStore:
    """Pool leases, each looked up by identity (pool, DN, group) or by account name."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, pool: str, owner_dn: str, group: str) -> PoolLease | None:
        """The lease of identity (pool, DN, group), if any."""
        return self.session.scalars(
            select(PoolLease).where(
                PoolLease.pool == pool, PoolLease.owner_dn == owner_dn, PoolLease.group_name == group
            )
        ).one_or_none()

    def for_account(self, account: str) -> PoolLease | None:
        """The lease holding ``account``, if any."""
        return self.session.scalars(select(PoolLease).where(PoolLease.account == account)).one_or_none()

    def all(self) -> Sequence[PoolLease]:
        """Every lease, by account name."""
        return self.session.scalars(select(PoolLease).order_by(PoolLease.account)).all()

    def touch(self, lease: PoolLease, now: dt.datetime) -> bool:
        """Mark the lease used at ``now``; False when it has meanwhile been released."""
        result = self.session.execute(
            update(PoolLease)
            .where(PoolLease.id == lease.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        updated = cast("CursorResult[Any]", result).rowcount
        if updated == 1:
            lease.last_used_at = now
        return updated == 1

    def acquire(
        self, pool: str, owner_dn: str, group: str, candidates: Sequence[str], now: dt.datetime
    ) -> PoolLease | None:
        """The identity's lease, touched at ``now``, or a new lease on a free account.

        Args:
            pool: pool name (``wmpatl``).
            owner_dn, group: the identity (group ``""`` for a grid-mapfile mapping).
            candidates: the pool's accounts in the order they are handed out.
            now: UTC time of the request (``leased_at``, ``last_used_at``).

        Returns:
            The lease, or None when every candidate is leased to another identity.
        """
        for _ in range(_ATTEMPTS):
            lease = self.find(pool, owner_dn, group)
            if lease is not None:
                if self.touch(lease, now):
                    return lease
                continue  # released by a concurrent cleanup: start over
            taken = set(self.session.scalars(select(PoolLease.account).where(PoolLease.account.in_(candidates))))
            free = [account for account in candidates if account not in taken]
            if not free:
                return None
            for account in free:
                lease = self._insert(account, pool, owner_dn, group, now)
                if lease is not None:
                    return lease
                if self.find(pool, owner_dn, group) is not None:
                    break  # a concurrent request leased an account to this identity
        return None

    def _insert(self, account: str, pool: str, owner_dn: str, group: str, now: dt.datetime) -> PoolLease | None:
        lease = PoolLease(account=account, pool=pool, owner_dn=owner_dn, group_name=group, leased_at=now,
                          last_used_at=now)
        try:
            with self.session.begin_nested():
                self.session.add(lease)
        except IntegrityError:
            return None
        return lease

    def release(self, account: str) -> bool:
        """Drop the lease of ``account`` whatever its state (operator action); False if none."""
        result = self.session.execute(delete(PoolLease).where(PoolLease.account == account))
        deleted = cast("CursorResult[Any]", result).rowcount
        return deleted == 1

    def release_idle(self, cutoff: dt.datetime, keep: Collection[str] = ()) -> list[str]:
        """Drop the leases not used since ``cutoff`` whose account has no live job and is not
        in ``keep`` (accounts the caller knows to be still in use, e.g. with processes left).

        A job keeps its account's lease while it is not in a final state, and for as
        long as its last change (``jobs.updated_at``) is not older than ``cutoff``.

        Returns:
            The released account names, sorted.
        """
        busy = exists().where(
            Job.local_account == PoolLease.account,
            or_(Job.state.not_in(_FINAL), Job.updated_at >= cutoff),
        )
        condition = and_(PoolLease.last_used_at < cutoff, ~busy)
        if keep:
            condition = and_(condition, PoolLease.account.not_in(sorted(keep)))
        released = self.session.scalars(
            delete(PoolLease)
            .where(condition)
            .returning(PoolLease.account)
            .execution_options(synchronize_session=False)
        ).all()
        return sorted(released)
