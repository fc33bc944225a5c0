"""Repository of the pool of pre-generated delegation keys (getProxyReq without RSA key
generation on the request path; issue 14).

Each row holds one sealed RSA private key and the CSR made with it. A row is claimed by
deleting it in the claiming transaction, so a key is handed out at most once, whichever
process or thread asks.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, cast

from sqlalchemy import Integer, LargeBinary, String, Table, Text, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, Session, mapped_column

from wmproxy.store.delegations import put_request_statement
from wmproxy.store.schema import Base, DelegationRequest, UTCDateTime


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

    def claim_into_request(self, key_bits: int, owner_dn: str, delegation_id: str, now: dt.datetime) -> str | None:
        """Take one key of ``key_bits`` bits out of the pool (as :meth:`claim`) and store it as
        the pending delegation request of (``owner_dn``, ``delegation_id``), replacing an older
        one (as ``SqlDelegationStore.put_request``), in the caller's transaction. Returns the
        key's CSR PEM, or None when the pool has no free key (nothing is stored then).

        PostgreSQL does both in one statement, one round-trip (``WITH k AS (DELETE ...
        RETURNING ...) INSERT ... SELECT ... FROM k ON CONFLICT ... RETURNING``); SQLite, whose
        ``WITH`` cannot hold a ``DELETE``, in two.
        """
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            row = conn.execute(_claim_into_request(), {
                "bits": key_bits, "owner_dn": owner_dn, "delegation_id": delegation_id,
                "created_at": now}).one_or_none()
            return None if row is None else str(row[0])
        claimed = self.claim(key_bits)
        if claimed is None:
            return None
        conn.execute(put_request_statement(conn.dialect.name), {
            "owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_key": claimed[0],
            "csr_pem": claimed[1], "created_at": now})
        return claimed[1]


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


@functools.cache
def _claim_into_request() -> Any:
    """PostgreSQL: :data:`_CLAIM` as a data-modifying CTE feeding the pending request's upsert."""
    requests = cast(Table, DelegationRequest.__table__)
    key = _CLAIM.cte("k")
    insert = postgresql.insert(requests).from_select(
        ["owner_dn", "delegation_id", "sealed_key", "csr_pem", "created_at"],
        select(bindparam("owner_dn", type_=String()), bindparam("delegation_id", type_=String()),
               key.c.sealed_key, key.c.csr_pem, bindparam("created_at", type_=UTCDateTime())),
    ).add_cte(key)
    return insert.on_conflict_do_update(
        index_elements=[requests.c.owner_dn, requests.c.delegation_id],
        set_={name: insert.excluded[name] for name in ("sealed_key", "csr_pem", "created_at")},
    ).returning(requests.c.csr_pem, requests.c.sealed_key)
