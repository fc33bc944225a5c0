"""getProxyRenewalInfo reads the stored proxy's end and the renewal record in one snapshot: a
renewal committed between its reads (a MyProxy renewal stores the longer proxy and counts itself in
one transaction) shows wholly or not at all, never "renewed" beside the old end. Under PostgreSQL's
READ COMMITTED each statement saw the commits made before it (a CI run caught the mix:
tests/integration/test_renewal_info.py). PostgreSQL only: SQLite's transaction holds the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store.conftest import DELEGATION
from wmproxy.domain import Principal, utcnow
from wmproxy.services import renewal_info
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

pytestmark = pytest.mark.postgresql_only


def test_a_renewal_committed_between_the_reads_is_not_half_seen(rt: Runtime, alice: Principal,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = submit_job(rt, alice, '[ Executable = "/bin/true"; ]', DELEGATION).job_id
    with rt.uow() as uow:
        uow.renewals.register(alice.dn, DELEGATION, "myproxy.example.org:7512", utcnow())
        delegation = uow.delegations.get(alice.dn, DELEGATION)
        assert delegation is not None
        old_end = delegation.not_after
    read = renewal_info.renewal_status

    def renewed_meanwhile(uow: Any, owner_dn: str, delegation_id: str) -> Any:
        with rt.uow() as other:  # another connection: the renewal worker's transaction
            stored = other.delegations.get(owner_dn, delegation_id)
            record = other.renewals.get(owner_dn, delegation_id)
            assert stored is not None and record is not None
            stored.not_after = stored.not_after + dt.timedelta(hours=6)
            record.renewals, record.last_result = 1, "renewed"
        return read(uow, owner_dn, delegation_id)

    monkeypatch.setattr(renewal_info, "renewal_status", renewed_meanwhile)
    info = renewal_info.proxy_renewal_info(rt, alice, job_id)
    assert (info.renewals, info.last_result, info.proxy_end_time) == (0, None, old_end)
    monkeypatch.undo()
    after = renewal_info.proxy_renewal_info(rt, alice, job_id)
    assert (after.renewals, after.last_result, after.proxy_end_time) == (1, "renewed", old_end + dt.timedelta(hours=6))
