"""What users see of a credential's renewal (getProxyRenewalInfo, the CLI; issue 4)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from wmproxy.store import UnitOfWork


@dataclass(frozen=True)
class RenewalStatus:
    """The renewal record of one credential; times are aware UTC.

    ``last_result`` is ``renewed``, ``not-extended``, ``unreachable``, ``refused``, ``failed`` or
    ``not-allowed`` (the server is no longer allowed; nothing was sent); ``notes`` holds
    what a renewal could not do (e.g. refresh VOMS attributes).
    """

    myproxy_server: str
    attempts: int
    renewals: int
    last_attempt_at: dt.datetime | None
    last_result: str | None
    last_error: str | None
    last_renewed_at: dt.datetime | None
    notes: str | None


def renewal_status(uow: UnitOfWork, owner_dn: str, delegation_id: str) -> RenewalStatus | None:
    """The renewal record of (DN, id), or None when the credential is not renewed."""
    r = uow.renewals.get(owner_dn, delegation_id)
    if r is None:
        return None
    return RenewalStatus(r.myproxy_server, r.attempts or 0, r.renewals or 0, r.last_attempt_at, r.last_result,
                         r.last_error, r.last_renewed_at, r.notes)
