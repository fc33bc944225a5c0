"""Migration 0010 on a real database (SQLite file and PostgreSQL): the index on the jobs' sandbox
directory, the delegation key pool (each key claimed once under concurrency) and the per-user
sandbox usage counter (issue 14)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.keypool import PooledDelegationKey
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


class TestMigration:
    def test_the_sandbox_directory_is_indexed(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            indexes = sa.inspect(session.get_bind()).get_indexes("jobs")
        assert any(ix["column_names"] == ["sandbox_dir"] for ix in indexes)

    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from wmproxy.store.schema import Base

        with factory() as session:
            diffs = compare_metadata(MigrationContext.configure(session.connection()), Base.metadata)
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
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def add() -> None:
            try:
                start.wait(DEADLINE)
                for _ in range(5):
                    with UnitOfWork(factory) as uow:
                        uow.usage.used(ALICE, for_update=True)
                        uow.usage.add(ALICE, 10, utcnow())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=add) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert errors == []
        with UnitOfWork(factory) as uow:
            assert uow.usage.used(ALICE) == 8 * 5 * 10
