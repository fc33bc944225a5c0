"""Repository of delegated proxies and pending delegation requests."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wmproxy.store.schema import Delegation, DelegationRequest

_requests = cast(Table, DelegationRequest.__table__)
_delegations = cast(Table, Delegation.__table__)


_TAKE_REQUEST = (
    delete(_requests)
    .where(_requests.c.owner_dn == bindparam("owner_dn"), _requests.c.delegation_id == bindparam("delegation_id"))
    .returning(_requests.c.sealed_key)
)


_DELETE_PROXY = delete(_delegations).where(
    _delegations.c.owner_dn == bindparam("owner_dn"), _delegations.c.delegation_id == bindparam("delegation_id"))


#: The lookups by (DN, id), built once: building the ORM select per call cost about as much as
#: running it (issue 14).
_GET_REQUEST = select(DelegationRequest).where(
    DelegationRequest.owner_dn == bindparam("owner_dn"), DelegationRequest.delegation_id == bindparam("delegation_id"))
_GET = select(Delegation).where(
    Delegation.owner_dn == bindparam("owner_dn"), Delegation.delegation_id == bindparam("delegation_id"))
#: The columns a job submission reads, as a Core SELECT: no ORM row processor, identity map or
#: session bookkeeping (the ORM lookup was about a sixth of a jobSubmit's CPU, issue 14).
_GET_STORED = select(
    _delegations.c.delegation_id, _delegations.c.sealed_proxy, _delegations.c.not_before, _delegations.c.not_after,
    _delegations.c.fqans,
).where(_delegations.c.owner_dn == bindparam("owner_dn"), _delegations.c.delegation_id == bindparam("delegation_id"))


@dataclass(frozen=True, slots=True)
class StoredProxy:
    """What the services check of a stored delegated proxy, read without the ORM (see
    :meth:`SqlDelegationStore.stored_proxy`); the attributes are :class:`Delegation`'s."""

    delegation_id: str
    sealed_proxy: bytes = field(repr=False)  # the proxy's private key, sealed
    not_before: dt.datetime
    not_after: dt.datetime
    fqans: str  # newline separated, primary first


@dataclass(frozen=True)
class _Upserts:
    put_request: Any
    put_proxy: Any


#: The columns a replaced delegated proxy's row takes from the new one (it keeps its id and
#: ``created_at``).
PROXY_UPDATED = ("sealed_proxy", "not_before", "not_after", "fqans", "updated_at")


@functools.cache
def _statements(dialect: str) -> _Upserts:
    """The upserts of a dialect (``postgresql`` or ``sqlite``), built once: their values are
    bound at execution. Built per call, their construction cost about as much as running them."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    request = insert(_requests)
    proxy = insert(_delegations)
    updated = PROXY_UPDATED
    return _Upserts(
        put_request=request.on_conflict_do_update(
            index_elements=[_requests.c.owner_dn, _requests.c.delegation_id],
            set_={name: request.excluded[name] for name in ("sealed_key", "csr_pem", "created_at")},
        ),
        put_proxy=proxy.on_conflict_do_update(
            index_elements=[_delegations.c.owner_dn, _delegations.c.delegation_id],
            set_={name: proxy.excluded[name] for name in updated},
        ).returning(_delegations.c.id, _delegations.c.created_at),
    )


def put_request_statement(dialect: str) -> Any:
    """The pending request's upsert of ``dialect`` (built once), for a repository that stores a
    request in the same transaction (the key pool's claim)."""
    return _statements(dialect).put_request


class SqlDelegationStore:
    """Rows are always looked up by (owner DN, delegation id): another DN never sees them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def put_request(self, owner_dn: str, delegation_id: str, sealed_key: bytes, csr_pem: str, now: dt.datetime) -> None:
        """Store a pending request, replacing an older one for the same (DN, id) (one upsert
        statement on the (DN, id) unique constraint)."""
        conn = self.session.connection()
        conn.execute(_statements(conn.dialect.name).put_request, {
            "owner_dn": owner_dn, "delegation_id": delegation_id, "sealed_key": sealed_key, "csr_pem": csr_pem,
            "created_at": now})

    def take_request(self, owner_dn: str, delegation_id: str) -> bytes | None:
        """Delete the pending request of (DN, id) in this transaction and return its sealed
        key, or None when there is none. A rolled-back transaction leaves the request pending;
        a concurrent taker of the same request waits for this transaction and then gets None."""
        row = self.session.connection().execute(
            _TAKE_REQUEST, {"owner_dn": owner_dn, "delegation_id": delegation_id}).one_or_none()
        return None if row is None else bytes(row[0])

    def trim_requests(self, owner_dn: str, keep: int) -> int:
        """Delete the pending requests of ``owner_dn`` but its ``keep`` newest (by creation time,
        then row id); returns how many were deleted."""
        newest = (select(DelegationRequest.id).where(DelegationRequest.owner_dn == owner_dn)
                  .order_by(DelegationRequest.created_at.desc(), DelegationRequest.id.desc()).limit(keep))
        result = self.session.execute(delete(DelegationRequest).where(
            DelegationRequest.owner_dn == owner_dn, DelegationRequest.id.not_in(newest)))
        return int(getattr(result, "rowcount", 0) or 0)

    def get_request(self, owner_dn: str, delegation_id: str) -> DelegationRequest | None:
        return self.session.scalars(
            _GET_REQUEST, {"owner_dn": owner_dn, "delegation_id": delegation_id}).one_or_none()

    def get(self, owner_dn: str, delegation_id: str) -> Delegation | None:
        return self.session.scalars(_GET, {"owner_dn": owner_dn, "delegation_id": delegation_id}).one_or_none()

    def stored_proxy(self, owner_dn: str, delegation_id: str) -> StoredProxy | None:
        """The stored proxy of (DN, id) as a :class:`StoredProxy` read with one Core SELECT of
        its five columns, or None when there is none; read in this transaction every time. (A
        copy a service keeps is only relied on by a write that checks the store still holds
        the same sealed proxy: ``wmproxy.store.job_writes``.)"""
        row = self.session.connection().execute(
            _GET_STORED, {"owner_dn": owner_dn, "delegation_id": delegation_id}).one_or_none()
        if row is None:
            return None
        return StoredProxy(row[0], bytes(row[1]), row[2], row[3], row[4])

    def put_proxy(
        self,
        owner_dn: str,
        delegation_id: str,
        sealed_proxy: bytes,
        not_before: dt.datetime,
        not_after: dt.datetime,
        fqans: tuple[str, ...],
        now: dt.datetime,
    ) -> Delegation:
        """Insert or replace the delegated proxy of (DN, id) in one statement (``INSERT ... ON
        CONFLICT DO UPDATE ... RETURNING``, no ORM load of the old row): returns the stored
        row, detached from the session; a replaced row keeps its id and ``created_at``."""
        values = {"sealed_proxy": sealed_proxy, "not_before": not_before, "not_after": not_after,
                  "fqans": "\n".join(fqans), "updated_at": now}
        conn = self.session.connection()
        key, created_at = conn.execute(_statements(conn.dialect.name).put_proxy, {
            "owner_dn": owner_dn, "delegation_id": delegation_id, "created_at": now, **values}).one()
        return Delegation(id=key, owner_dn=owner_dn, delegation_id=delegation_id, created_at=created_at, **values)

    def delete_proxy(self, owner_dn: str, delegation_id: str) -> bool:
        """Delete the stored proxy of (DN, id) in this transaction, at once (one statement, not
        at the session's flush: the order of a transaction's row locks is its statements');
        False when there is none."""
        result = self.session.connection().execute(
            _DELETE_PROXY, {"owner_dn": owner_dn, "delegation_id": delegation_id})
        return bool(result.rowcount)
