"""destroy and putProxy of the same (DN, delegation id) at once, on PostgreSQL: they take the
pending request's row, then the delegation's, in the same order, so the later one waits for the
earlier instead of deadlocking (services/delegation.py ``destroy``;
``wmproxy.store.delegation_writes``).

The interleaving is made deterministic with a third connection: it holds the request's row
(``SELECT ... FOR UPDATE``) while putProxy, then destroy, come to wait for it, and lets go once
both wait. PostgreSQL hands a row to its waiters in the order they came (the tuple lock), so
putProxy goes first. Before, destroy deleted the delegation's row first (the ORM flushed its
DELETE before reading the request) and then waited for the request's row, which putProxy held
while it waited for the delegation's: PostgreSQL found the deadlock (after ``deadlock_timeout``)
and aborted one of them, and putProxy answered an untyped internal error.
"""

from __future__ import annotations

import pytest

from tests.conftest import Pki
from tests.store.locking_support import race_behind_request_row
from tests.support import delegate_in_process, principal_of
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime

pytestmark = pytest.mark.postgresql_only

RACED = "raced"


def _rows(rt: Runtime, dn: str) -> tuple[bool, bool]:
    """(a proxy is stored, a request is pending) under (dn, RACED)."""
    with rt.uow() as uow:
        return (uow.delegations.get(dn, RACED) is not None, uow.delegations.get_request(dn, RACED) is not None)


def test_destroy_waiting_behind_a_put_proxy_of_the_same_delegation_does_not_deadlock(
        rt: Runtime, pki: Pki, database_url: str) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, RACED)  # a stored proxy
    _, csr = delegation.create_proxy_request(rt, alice, RACED)  # and a pending request, signed
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600).decode()
    assert _rows(rt, alice.dn) == (True, True)
    outcome = race_behind_request_row(
        database_url, alice.dn, RACED,
        ("putProxy", lambda: delegation.store_proxy(rt, alice, RACED, signed)),
        ("destroy", lambda: delegation.destroy(rt, alice, RACED)))
    assert not isinstance(outcome["putProxy"], Exception), outcome
    assert outcome["destroy"] is None, outcome
    assert outcome["putProxy"].delegation_id == RACED
    assert _rows(rt, alice.dn) == (False, False)  # putProxy stored its proxy, then destroy removed it

