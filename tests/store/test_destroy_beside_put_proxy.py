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

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.support import delegate_in_process, principal_of, wait_for
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime

pytestmark = pytest.mark.postgresql_only

#: Seconds a thread may take; generous, the machine is shared.
DEADLINE = 120.0
RACED = "raced"


def _lock_waiters(conn: sa.Connection) -> int:
    """Backends of this database waiting for a lock (``conn`` in autocommit: a transaction
    would keep reading its first snapshot of the statistics)."""
    return int(conn.execute(sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )).scalar_one())


def _rows(rt: Runtime, dn: str) -> tuple[bool, bool]:
    """(a proxy is stored, a request is pending) under (dn, RACED)."""
    with rt.uow() as uow:
        return (uow.delegations.get(dn, RACED) is not None, uow.delegations.get_request(dn, RACED) is not None)


def _start(name: str, call: Callable[[], Any], outcome: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            outcome[name] = call()
        except Exception as exc:  # noqa: BLE001 - compared below
            outcome[name] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_destroy_waiting_behind_a_put_proxy_of_the_same_delegation_does_not_deadlock(
        rt: Runtime, pki: Pki, database_url: str) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, RACED)  # a stored proxy
    _, csr = delegation.create_proxy_request(rt, alice, RACED)  # and a pending request, signed
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600).decode()
    assert _rows(rt, alice.dn) == (True, True)
    outcome: dict[str, Any] = {}
    threads = []
    holder = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as hold, holder.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            assert hold.execute(sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM delegation_requests WHERE owner_dn = :dn "
                "AND delegation_id = :id FOR UPDATE) AS locked"), {"dn": alice.dn, "id": RACED}).scalar_one() == 1
            threads.append(_start("putProxy", lambda: delegation.store_proxy(rt, alice, RACED, signed), outcome))
            wait_for(lambda: _lock_waiters(watch), lambda n: n == 1, what="putProxy to wait for the request's row",
                     timeout=DEADLINE)
            threads.append(_start("destroy", lambda: delegation.destroy(rt, alice, RACED), outcome))
            wait_for(lambda: _lock_waiters(watch), lambda n: n == 2, what="destroy to wait for a row too",
                     timeout=DEADLINE)
            hold.rollback()
            for thread in threads:
                thread.join(DEADLINE)
            assert not any(thread.is_alive() for thread in threads)
    finally:
        holder.dispose()
    assert not isinstance(outcome["putProxy"], Exception), outcome
    assert outcome["destroy"] is None, outcome
    assert outcome["putProxy"].delegation_id == RACED
    assert _rows(rt, alice.dn) == (False, False)  # putProxy stored its proxy, then destroy removed it

