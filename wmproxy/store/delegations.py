"""Repository of delegated proxies and pending delegation requests."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from wmproxy.store.schema import Delegation, DelegationRequest


class SqlDelegationStore:
    """Rows are always looked up by (owner DN, delegation id): another DN never sees them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def put_request(self, owner_dn: str, delegation_id: str, sealed_key: bytes, csr_pem: str, now: dt.datetime) -> None:
        """Store a pending request, replacing an older one for the same (DN, id)."""
        self.session.execute(
            delete(DelegationRequest).where(
                DelegationRequest.owner_dn == owner_dn, DelegationRequest.delegation_id == delegation_id
            )
        )
        self.session.add(
            DelegationRequest(
                owner_dn=owner_dn, delegation_id=delegation_id, sealed_key=sealed_key, csr_pem=csr_pem, created_at=now
            )
        )
        self.session.flush()

    def get_request(self, owner_dn: str, delegation_id: str) -> DelegationRequest | None:
        return self.session.scalars(
            select(DelegationRequest).where(
                DelegationRequest.owner_dn == owner_dn, DelegationRequest.delegation_id == delegation_id
            )
        ).one_or_none()

    def delete_request(self, request: DelegationRequest) -> None:
        self.session.delete(request)

    def get(self, owner_dn: str, delegation_id: str) -> Delegation | None:
        return self.session.scalars(
            select(Delegation).where(Delegation.owner_dn == owner_dn, Delegation.delegation_id == delegation_id)
        ).one_or_none()

    def upsert(
        self,
        owner_dn: str,
        delegation_id: str,
        sealed_proxy: bytes,
        not_before: dt.datetime,
        not_after: dt.datetime,
        fqans: tuple[str, ...],
        now: dt.datetime,
    ) -> Delegation:
        """Insert or replace the delegated proxy of (DN, id)."""
        row = self.get(owner_dn, delegation_id)
        if row is None:
            row = Delegation(owner_dn=owner_dn, delegation_id=delegation_id, created_at=now)
            self.session.add(row)
        row.sealed_proxy = sealed_proxy
        row.not_before = not_before
        row.not_after = not_after
        row.fqans = "\n".join(fqans)
        row.updated_at = now
        self.session.flush()
        return row

    def delete(self, row: Delegation) -> None:
        self.session.delete(row)
