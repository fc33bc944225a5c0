"""Migration 0010 on a real database (SQLite file and PostgreSQL): the index on the jobs' sandbox
directory, the delegation key pool (each key claimed once under concurrency), the per-user
sandbox usage counter, and the delegation repository's one-statement steps (issue 14)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import schema_diffs
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import Delegation, DelegationRequest
from wmproxy.store.usage import SandboxUsage

ALICE = "/C=XX/O=Grid/CN=Alice"
BOB = "/C=XX/O=Grid/CN=Bob"
#: Seconds a racing thread may take; generous, the machine is shared.
DEADLINE = 120.0


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as uow:
        uow.session.execute(sa.delete(PooledDelegationKey))
        uow.session.execute(sa.delete(SandboxUsage))
        uow.session.execute(sa.delete(DelegationRequest))
        uow.session.execute(sa.delete(Delegation))


class TestMigration:
    def test_the_sandbox_directory_is_indexed(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            indexes = sa.inspect(session.get_bind()).get_indexes("jobs")
        assert any(ix["column_names"] == ["sandbox_dir"] for ix in indexes)

    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        diffs = schema_diffs(factory)
        mine = [d for d in diffs if any(w in repr(d) for w in ("delegation_key_pool", "sandbox_usage", "sandbox_dir"))]
        assert mine == []

    def test_a_sandbox_lookup_uses_the_index(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            bind = session.get_bind()
            if bind.dialect.name == "sqlite":
                plan = session.execute(
                    sa.text("EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE sandbox_dir = :d"), {"d": "x"}).all()
                assert "ix_jobs_sandbox_dir" in " ".join(str(row) for row in plan)
            else:
                session.execute(sa.text("SET LOCAL enable_seqscan = off"))
                plan = session.execute(
                    sa.text("EXPLAIN SELECT id FROM jobs WHERE sandbox_dir = :d"), {"d": "x"}).all()
                assert "ix_jobs_sandbox_dir" in " ".join(str(row) for row in plan)


class TestKeyPool:
    def test_claims_take_the_oldest_key_of_the_size_asked(self, factory: sessionmaker[Session]) -> None:
        now = utcnow()
        with UnitOfWork(factory) as uow:
            uow.key_pool.add(b"sealed-a", "csr-a", 2048, now)
            uow.key_pool.add(b"sealed-b", "csr-b", 4096, now)
            uow.key_pool.add(b"sealed-c", "csr-c", 2048, now)
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(2048) == 2
            assert uow.key_pool.claim(2048) == (b"sealed-a", "csr-a")
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.claim(2048) == (b"sealed-c", "csr-c")
            assert uow.key_pool.claim(2048) is None
            assert uow.key_pool.size(4096) == 1

    def test_a_rolled_back_claim_leaves_the_key_in_the_pool(self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            uow.key_pool.add(b"sealed", "csr", 2048, utcnow())
        uow = UnitOfWork(factory)
        uow.__enter__()
        assert uow.key_pool.claim(2048) is not None
        uow.__exit__(RuntimeError, RuntimeError("the request failed"), None)
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(2048) == 1

    def test_concurrent_claims_get_each_key_once(self, factory: sessionmaker[Session]) -> None:
        keys = 8
        with UnitOfWork(factory) as uow:
            for i in range(keys):
                uow.key_pool.add(f"sealed-{i}".encode(), f"csr-{i}", 2048, utcnow())
        got: list[bytes | None] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2 * keys)

        def claim() -> None:
            try:
                start.wait(DEADLINE)
                with UnitOfWork(factory) as uow:
                    claimed = uow.key_pool.claim(2048)
                got.append(claimed[0] if claimed else None)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=claim) for _ in range(2 * keys)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert errors == []
        taken = [g for g in got if g is not None]
        assert len(taken) == len(set(taken)) <= keys
        with UnitOfWork(factory) as uow:
            assert uow.key_pool.size(2048) == keys - len(taken)


class TestUsageCounter:
    def test_adds_subtracts_and_never_goes_below_zero(self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 0
            uow.usage.add(ALICE, 1000, utcnow())
            uow.usage.add(ALICE, -300, utcnow())
            uow.usage.add(BOB, 5, utcnow())
        with UnitOfWork(factory) as uow:
            assert (uow.usage.used(ALICE), uow.usage.used(BOB)) == (700, 5)
            uow.usage.add(ALICE, -5000, utcnow())
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 0
            uow.usage.set(ALICE, 42, utcnow())
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 42
            assert sorted(uow.usage.owners()) == [ALICE, BOB]

    def test_a_rolled_back_change_is_not_counted(self, factory: sessionmaker[Session]) -> None:
        uow = UnitOfWork(factory)
        uow.__enter__()
        uow.usage.add(ALICE, 1000, utcnow())
        uow.__exit__(RuntimeError, RuntimeError("the rename failed"), None)
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 0

    def test_concurrent_additions_all_count(self, factory: sessionmaker[Session]) -> None:
        def add() -> None:
            for _ in range(5):
                with UnitOfWork(factory) as uow:
                    uow.usage.used(ALICE, for_update=True)
                    uow.usage.add(ALICE, 10, utcnow())

        _race(8, add)
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 8 * 5 * 10


class TestDelegationSteps:
    """The delegation repository's one-statement steps: a pending request is replaced by an
    upsert and taken once by ``DELETE ... RETURNING``, a rolled-back take leaves it pending,
    and the stored proxy's upsert keeps the row of a replaced proxy."""

    def test_a_request_is_replaced_and_taken_once(self, factory: sessionmaker[Session]) -> None:
        now = utcnow()
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(ALICE, "d", b"old-key", "old-csr", now)
            uow.delegations.put_request(BOB, "d", b"bobs-key", "bobs-csr", now)
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(ALICE, "d", b"new-key", "new-csr", now)
        with UnitOfWork(factory) as uow:
            request = uow.delegations.get_request(ALICE, "d")
            assert request is not None and (request.sealed_key, request.csr_pem) == (b"new-key", "new-csr")
            assert uow.delegations.take_request(ALICE, "d") == b"new-key"
            assert uow.delegations.take_request(ALICE, "d") is None
        with UnitOfWork(factory) as uow:
            assert uow.delegations.get_request(ALICE, "d") is None
            assert uow.delegations.take_request(BOB, "d") == b"bobs-key"


    def test_a_rolled_back_take_leaves_the_request(self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(ALICE, "d", b"key", "csr", utcnow())
        uow = UnitOfWork(factory)
        uow.__enter__()
        assert uow.delegations.take_request(ALICE, "d") == b"key"
        uow.__exit__(RuntimeError, RuntimeError("the proxy was refused"), None)
        with UnitOfWork(factory) as uow:
            assert uow.delegations.take_request(ALICE, "d") == b"key"


    def test_concurrent_takers_get_the_request_once(self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(ALICE, "d", b"key", "csr", utcnow())
        got: list[bytes | None] = []

        def take() -> None:
            with UnitOfWork(factory) as uow:
                got.append(uow.delegations.take_request(ALICE, "d"))

        _race(6, take)
        assert sorted(got, key=lambda g: g is None) == [b"key"] + [None] * 5


    def test_a_replaced_proxy_keeps_its_row(self, factory: sessionmaker[Session]) -> None:
        created = utcnow()
        later = created + dt.timedelta(minutes=5)
        with UnitOfWork(factory) as uow:
            first = uow.delegations.put_proxy(ALICE, "d", b"p1", created, created + dt.timedelta(hours=1), ("/vo",),
                                              created)
            uow.delegations.put_proxy(BOB, "d", b"b1", created, created + dt.timedelta(hours=1), (), created)
        with UnitOfWork(factory) as uow:
            second = uow.delegations.put_proxy(ALICE, "d", b"p2", later, later + dt.timedelta(hours=2),
                                               ("/vo", "/vo/g"), later)
        assert (second.id, second.created_at) == (first.id, created)
        with UnitOfWork(factory) as uow:
            row = uow.delegations.get(ALICE, "d")
            assert row is not None
            assert (row.id, row.sealed_proxy, row.fqans, row.created_at) == (first.id, b"p2", "/vo\n/vo/g", created)
            assert (row.not_before, row.not_after, row.updated_at) == (later, later + dt.timedelta(hours=2), later)
            bobs = uow.delegations.get(BOB, "d")
            assert bobs is not None and bobs.sealed_proxy == b"b1"


def _race(threads: int, work: Callable[[], None]) -> None:
    """Run ``work`` in ``threads`` threads started together; none of them may fail."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run() -> None:
        try:
            start.wait(DEADLINE)
            work()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(DEADLINE)
    assert errors == []
