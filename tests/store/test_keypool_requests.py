"""getProxyReq's store step (issue 14): a pooled key claimed straight into the pending delegation
request (``SqlDelegationKeyPool.claim_into_request``; one statement on PostgreSQL), on a real
database (SQLite file and PostgreSQL): each key serves one request, concurrent claims included."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import run_together
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import DelegationRequest

ALICE = "/C=XX/O=Grid/CN=Alice"
BOB = "/C=XX/O=Grid/CN=Bob"
#: Seconds a racing thread may take; generous, the machine is shared.
DEADLINE = 120.0


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as uow:
        uow.session.execute(sa.delete(PooledDelegationKey))
        uow.session.execute(sa.delete(DelegationRequest))


def _requests(factory: sessionmaker[Session]) -> dict[tuple[str, str], tuple[bytes, str]]:
    with factory() as session:
        return {(r.owner_dn, r.delegation_id): (r.sealed_key, r.csr_pem)
                for r in session.scalars(sa.select(DelegationRequest))}


def _add(factory: sessionmaker[Session], *keys: tuple[bytes, str, int]) -> None:
    with UnitOfWork(factory) as uow:
        for sealed, csr, bits in keys:
            uow.key_pool.add(sealed, csr, bits, utcnow())


class TestClaimIntoRequest:
    def test_the_oldest_key_of_the_size_becomes_the_request(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed-a", "csr-a", 2048), (b"sealed-b", "csr-b", 4096), (b"sealed-c", "csr-c", 2048))
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.claim_into_request(2048, ALICE, "d1", utcnow()) == "csr-a"
        assert _requests(factory) == {(ALICE, "d1"): (b"sealed-a", "csr-a")}
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(2048) == 1
            assert uow.key_pool.size(4096) == 1

    def test_a_new_request_replaces_the_older_one_of_its_dn_and_id_only(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed-a", "csr-a", 2048), (b"sealed-b", "csr-b", 2048), (b"sealed-c", "csr-c", 2048))
        with UnitOfWork(factory) as uow:
            uow.key_pool.claim_into_request(2048, ALICE, "d1", utcnow())
            uow.key_pool.claim_into_request(2048, BOB, "d1", utcnow())
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.claim_into_request(2048, ALICE, "d1", utcnow()) == "csr-c"
        assert _requests(factory) == {(ALICE, "d1"): (b"sealed-c", "csr-c"), (BOB, "d1"): (b"sealed-b", "csr-b")}

    def test_an_empty_pool_stores_nothing(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed-big", "csr-big", 4096))
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.claim_into_request(2048, ALICE, "d1", utcnow()) is None
        assert _requests(factory) == {}
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(4096) == 1

    def test_a_rolled_back_claim_keeps_the_key_and_stores_no_request(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed", "csr", 2048))
        uow = UnitOfWork(factory)
        uow.__enter__()
        assert uow.key_pool.claim_into_request(2048, ALICE, "d1", utcnow()) == "csr"
        uow.__exit__(RuntimeError, RuntimeError("the request failed"), None)
        assert _requests(factory) == {}
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(2048) == 1

    def test_concurrent_requests_get_each_key_once(self, factory: sessionmaker[Session]) -> None:
        keys = 8
        _add(factory, *((f"sealed-{i}".encode(), f"csr-{i}", 2048) for i in range(keys)))

        def claim(n: int) -> str | None:
            with UnitOfWork(factory) as uow:
                return uow.key_pool.claim_into_request(2048, ALICE, f"d{n}", utcnow())

        got = run_together(2 * keys, claim, DEADLINE)
        served = sorted(csr for csr in got if csr is not None)
        assert served == sorted({f"csr-{i}" for i in range(keys)})  # each key once, none lost
        stored = _requests(factory)
        assert sorted(csr for _, csr in stored.values()) == served
        assert all(sealed == f"sealed-{csr.split('-')[1]}".encode() for sealed, csr in stored.values())
