"""Store-key rotation and a putProxy at once, on PostgreSQL: the rotation locks the pending
requests' rows before the delegations', putProxy's order (its statement takes a request's row,
then the delegation's; ``wmproxy.store.delegation_writes``), so the later one waits for the
earlier instead of deadlocking (``SqlHousekeepingStore.sealed_rows_locked``, 39f78cb).

The interleaving is made deterministic as in test_destroy_beside_put_proxy.py: a third
connection holds the request's row while putProxy, then the rotation, come to wait for it
(``pg_stat_activity``), and lets go once both wait. PostgreSQL hands the row to its waiters in
the order they came, so putProxy stores its proxy, then the rotation re-seals it. Before, the
rotation locked every delegation's row first and then waited for the request's, which putProxy
held while it waited for the delegation's: PostgreSQL found the deadlock (after
``deadlock_timeout``) and aborted one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.locking_support import race_behind_request_row
from tests.support import delegate_in_process, principal_of
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.security.sealing import Sealer
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime
from wmproxy.services.storekey import rotate_store_key

pytestmark = pytest.mark.postgresql_only

RACED = "raced"


def test_a_rotation_waiting_behind_a_put_proxy_does_not_deadlock(rt: Runtime, pki: Pki, database_url: str) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, RACED)  # a stored proxy
    _, csr = delegation.create_proxy_request(rt, alice, RACED)  # and a pending request, signed
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600)
    outcome = race_behind_request_row(
        database_url, alice.dn, RACED,
        ("putProxy", lambda: delegation.store_proxy(rt, alice, RACED, signed.decode())),
        ("rotation", lambda: rotate_store_key(rt.settings)))
    assert not isinstance(outcome["putProxy"], Exception), outcome
    assert not isinstance(outcome["rotation"], Exception), outcome
    assert (outcome["rotation"].delegations, outcome["rotation"].requests) == (1, 0)
    # putProxy stored its proxy (the request used), then the rotation re-sealed it with the new key
    new = Sealer.from_key_file(Path(rt.settings.security.store_key_file))
    assert new.fingerprint == outcome["rotation"].new_fingerprint
    with rt.uow() as uow:
        assert uow.delegations.get_request(alice.dn, RACED) is None
        stored = uow.delegations.get(alice.dn, RACED)
        assert stored is not None
        assert load_pem_chain(new.open(stored.sealed_proxy))[0] == load_pem_chain(signed)[0]
