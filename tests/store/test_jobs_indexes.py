"""Migration 0012 on a real database (SQLite file and PostgreSQL): the jobs' indexes on parent_id,
worker and local_account leave out the rows where that column is NULL, the index on parent_id
alone is gone, the queries that look jobs up by these columns still use the indexes, and the
migration goes down and up again (issue 14: fewer b-trees written per submitted job)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import schema_diffs
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job, PoolLease

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
PARTIAL = {"ix_jobs_parent_state": "parent_id", "ix_jobs_worker": "worker", "ix_jobs_local_account": "local_account"}


def _index_sql(session: Session) -> dict[str, str]:
    """The jobs table's indexes by name, each as the database's own definition (lower case)."""
    if session.get_bind().dialect.name == "sqlite":
        rows = session.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                       "AND tbl_name = 'jobs' AND sql IS NOT NULL")).all()
    else:
        rows = session.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs' "
                                       "AND indexname LIKE 'ix_%'")).all()
    return {name: " ".join(sql.lower().split()) for name, sql in rows}


def _plan(session: Session, statement: sa.Executable) -> str:
    """The database's plan of ``statement`` (its values written in), as one string."""
    dialect = session.get_bind().dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "sqlite":
        rows = session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")).all()
    else:
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a few rows: the planner would scan
        rows = session.execute(sa.text(f"EXPLAIN {sql}")).all()
    return " ".join(str(row) for row in rows)


class TestIndexes:
    def test_the_nullable_lookups_are_partial_and_parent_alone_is_gone(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            indexes = _index_sql(session)
        assert "ix_jobs_parent_id" not in indexes
        for name, column in PARTIAL.items():
            assert f"where {column} is not null" in indexes[name].replace("(", "").replace(")", ""), indexes[name]
        for name in ("ix_jobs_owner_dn", "ix_jobs_state", "ix_jobs_sandbox_dir"):
            assert " where " not in indexes[name], indexes[name]

    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        diffs = schema_diffs(factory)
        assert [d for d in diffs if "jobs" in repr(d)] == []

    @pytest.mark.parametrize(("name", "statement"), [
        ("ix_jobs_parent_state", sa.select(Job.id).where(Job.parent_id == "https://h:9000/p")),
        ("ix_jobs_parent_state", sa.select(Job.id).where(Job.parent_id == "https://h:9000/p",
                                                         Job.state.in_(["Running", "Waiting"])).limit(1)),
        ("ix_jobs_parent_state", sa.delete(Job).where(Job.parent_id == "https://h:9000/p")),
        ("ix_jobs_worker", sa.select(Job).where(Job.worker == "w1", Job.state.in_(["Ready", "Running"]))
         .order_by(Job.created_at)),
        ("ix_jobs_worker", sa.update(Job).where(Job.worker == "w1", Job.state.in_(["Ready", "Running"]))
         .values(worker="w2")),
        ("ix_jobs_local_account", sa.select(PoolLease.account).where(sa.exists().where(
            Job.local_account == PoolLease.account, sa.or_(Job.state.not_in(["Done"]), Job.updated_at >= T0))))])
    def test_lookups_by_these_columns_use_their_index(self, factory: sessionmaker[Session], name: str,
                                                      statement: sa.Executable) -> None:
        with UnitOfWork(factory) as uow:
            assert name in _plan(uow.session, statement)

    def test_jobs_are_found_by_these_columns_whichever_are_null(self, factory: sessionmaker[Session]) -> None:
        parent = "https://h:9000/ix-parent"
        with UnitOfWork(factory) as uow:
            uow.jobs.add(_job(parent))
            uow.jobs.add(_job("https://h:9000/ix-node", parent_id=parent, worker="ix-w", local_account="ix-acct"))
            uow.jobs.add(_job("https://h:9000/ix-plain"))
        with UnitOfWork(factory) as uow:
            assert [job.id for job in uow.jobs.children(parent)] == ["https://h:9000/ix-node"]
            assert uow.jobs.has_children_in(parent, ["Running"])
            assert [job.id for job in uow.workers.held_jobs("ix-w", ["Running"])] == ["https://h:9000/ix-node"]
            assert uow.session.scalars(sa.select(Job.id).where(Job.local_account == "ix-acct")).all() == [
                "https://h:9000/ix-node"]
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(Job).where(
                Job.parent_id.is_(None), Job.worker.is_(None), Job.local_account.is_(None))) == 2


class TestMigration0012:
    def test_down_and_up_again(self, factory: sessionmaker[Session],
                               down_to: Callable[[str], AbstractContextManager[None]]) -> None:
        with down_to("0011"), factory() as session:
            before = _index_sql(session)
        assert "ix_jobs_parent_id" in before
        assert all(" where " not in before[name] for name in PARTIAL), before
        with factory() as session:
            after = _index_sql(session)
        assert "ix_jobs_parent_id" not in after
        assert all(" where " in after[name] for name in PARTIAL), after


def _job(job_id: str, **columns: str) -> Job:
    return Job(id=job_id, owner_dn="/CN=owner", delegation_id="d", state="Running", jdl_original="[]",
               jdl_registered="[]", sandbox_dir=job_id.rsplit("/", 1)[1], created_at=T0, updated_at=T0, **columns)
