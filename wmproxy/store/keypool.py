"""Repository of the pool of pre-generated delegation keys (getProxyReq without RSA key
generation on the request path; issue 14).

Each row holds one sealed RSA private key and the CSR made with it. A row is claimed by
deleting it in the claiming transaction, so a key is handed out at most once, whichever
process or thread asks.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Integer, LargeBinary, Table, Text, bindparam, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from wmproxy.store.schema import Base, UTCDateTime


class PooledDelegationKey(Base):
    """A sealed server key pair (PEM private key, PEM CSR) waiting for a getProxyReq."""

    __tablename__ = "delegation_key_pool"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    csr_pem: Mapped[str] = mapped_column(Text)
    key_bits: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SqlDelegationKeyPool:
    """The pool rows; keys arrive sealed (``wmproxy.security.sealing``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, sealed_key: bytes, csr_pem: str, key_bits: int, now: dt.datetime) -> None:
        self.session.add(PooledDelegationKey(sealed_key=sealed_key, csr_pem=csr_pem, key_bits=key_bits, created_at=now))
        self.session.flush()

    def size(self, key_bits: int) -> int:
        """Keys of ``key_bits`` bits in the pool."""
        return self.session.scalar(
            select(func.count()).select_from(PooledDelegationKey).where(PooledDelegationKey.key_bits == key_bits)
        ) or 0

    def claim(self, key_bits: int) -> tuple[bytes, str] | None:
        """Take one key of ``key_bits`` bits out of the pool: ``(sealed key, CSR PEM)``, or None
        when the pool has none (or every one is being claimed by another transaction).

        The oldest row is deleted in the caller's transaction by one statement
        (``DELETE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``); a concurrent claimer skips
        it (PostgreSQL ``FOR UPDATE SKIP LOCKED`` in the subquery; SQLite transactions are
        serialised by ``BEGIN IMMEDIATE``), so a key is never given twice.
        """
        row = self.session.connection().execute(_CLAIM, {"bits": key_bits}).one_or_none()
        if row is None:
            return None
        return row[0], row[1]


_pool = cast(Table, PooledDelegationKey.__table__)
#: The claim, built once (Core, on the table: no ORM bookkeeping for a row that is deleted).
_CLAIM = (
    delete(_pool)
    .where(
        _pool.c.id == select(_pool.c.id)
        .where(_pool.c.key_bits == bindparam("bits"))
        .order_by(_pool.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    .returning(_pool.c.sealed_key, _pool.c.csr_pem)
)
