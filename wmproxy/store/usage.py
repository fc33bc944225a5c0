"""Repository of the per-user sandbox usage counter (bytes in the job areas of one owner DN).

The counter is changed in the transaction that commits the bytes it counts (an upload's
rename, a delete, a purge), so a quota check reads one row instead of walking every job
area of the user (issue 14).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from wmproxy.store.engine import rows_matched
from wmproxy.store.schema import Base, UTCDateTime


class SandboxUsage(Base):
    """Bytes held by the job areas of one owner DN."""

    __tablename__ = "sandbox_usage"

    owner_dn: Mapped[str] = mapped_column(String(512), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SqlSandboxUsageStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def used(self, owner_dn: str, *, for_update: bool = False) -> int:
        """Bytes counted for ``owner_dn`` (0 without a row). ``for_update`` creates the row if
        needed and locks it until the transaction ends (concurrent uploads of one user are
        then checked against the quota one after the other)."""
        if for_update:
            self._ensure(owner_dn)
        stmt = select(SandboxUsage.bytes).where(SandboxUsage.owner_dn == owner_dn)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt) or 0

    def add(self, owner_dn: str, delta: int, now: dt.datetime) -> None:
        """Add ``delta`` bytes (negative to subtract) to ``owner_dn``'s counter, never below 0."""
        if delta == 0:
            return
        self._ensure(owner_dn, now)
        self.session.execute(
            update(SandboxUsage)
            .where(SandboxUsage.owner_dn == owner_dn)
            .values(bytes=SandboxUsage.bytes + delta, updated_at=now)
        )
        if delta < 0:
            self.session.execute(
                update(SandboxUsage).where(SandboxUsage.owner_dn == owner_dn, SandboxUsage.bytes < 0).values(bytes=0)
            )

    def set(self, owner_dn: str, value: int, now: dt.datetime) -> None:
        """Set ``owner_dn``'s counter to ``value`` bytes (a recount)."""
        self._ensure(owner_dn, now)
        self.session.execute(
            update(SandboxUsage).where(SandboxUsage.owner_dn == owner_dn).values(bytes=value, updated_at=now)
        )

    def owners(self) -> list[str]:
        """Owner DNs that have a counter row."""
        return list(self.session.scalars(select(SandboxUsage.owner_dn)))

    def _ensure(self, owner_dn: str, now: dt.datetime | None = None) -> None:
        if now is None:
            now = dt.datetime.now(dt.UTC)
        touched = rows_matched(self.session, update(SandboxUsage).where(SandboxUsage.owner_dn == owner_dn)
                               .values(updated_at=now))
        if touched:
            return
        dialect = self.session.get_bind().dialect.name
        values = {"owner_dn": owner_dn, "bytes": 0, "updated_at": now}
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self.session.execute(pg_insert(SandboxUsage).values(**values).on_conflict_do_nothing())
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            self.session.execute(sqlite_insert(SandboxUsage).values(**values).on_conflict_do_nothing())
