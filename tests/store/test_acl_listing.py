"""listJobs reads only the ACL items that may name its caller (migration 0015, red-team L1), on
SQLite and PostgreSQL: the items are looked up by their value without trailing ``/`` through the
index ``ix_job_acl_trimmed_item``, and what listJobs shows is still exactly what
:func:`wmproxy.services.access.grants` decides, item by item, for DNs and FQAN prefixes.

Before, listJobs loaded every ACL item of every other user's jobs and filtered them in Python:
one user's 120,000 junk items on his own jobs made everybody's listJobs take 5 s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import DELEGATION, schema_diffs
from tests.support import ECHO_JDL
from wmproxy.domain import Principal
from wmproxy.services.access import grant_keys, grants
from wmproxy.services.listing import JobFilter, list_jobs
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job, JobAclEntry

INDEX = "ix_job_acl_trimmed_item"
#: Junk items one user gave his own job.
FLOOD = 3000
T0 = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
PRODUCTION = "/atlas/uk/Role=production/Capability=NULL"
#: Callers, none of them the jobs' owner.
CAROL = Principal("/C=XX/O=x/CN=Carol", fqans=(PRODUCTION,))
DAVE = Principal("/CN=dave", fqans=("/cms", "/dteam/Role=NULL/Capability=NULL"))
ERIN = Principal("/CN=erin/")
#: ACL items of every shape: FQAN prefixes with and without trailing slashes, string prefixes
#: that are no FQAN prefix, the root ``/``, DNs with a trailing slash, DN-like items.
ITEMS = ("/atlas", "/atlas/", "/atlas//", "/atlas/uk", PRODUCTION, "/atlas/uk/Role=production", "/atlasx",
         "/atlas/u", "/", "//", "/cms/", "/cmsx", "/dteam/Role=NULL", CAROL.dn, CAROL.dn + "/", "/CN=erin",
         ERIN.dn, "/CN=erin//", "/C=XX", "/C=XX/O=x", "junk", "/junk/x")


def _index_sql(session: Session) -> dict[str, str]:
    """The job_acl table's indexes by name, each as the database's own definition (lower case)."""
    if session.get_bind().dialect.name == "sqlite":
        rows = session.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                       "AND tbl_name = 'job_acl' AND sql IS NOT NULL")).all()
    else:
        rows = session.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'job_acl'")).all()
    return {name: " ".join(sql.lower().split()) for name, sql in rows}


@contextlib.contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``engine`` runs within the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _add_job(uow: UnitOfWork, name: str, owner: str, items: tuple[str, ...] = ()) -> str:
    job_id = f"https://h:9000/acl-{name}"
    uow.jobs.add(Job(id=job_id, owner_dn=owner, delegation_id="d", state="Running", jdl_original="[]",
                     jdl_registered="[]", sandbox_dir=name, created_at=T0, updated_at=T0))
    uow.session.flush()
    for item in items:
        uow.session.add(JobAclEntry(job_id=job_id, item=item))
    return job_id


class TestMigration0015:
    def test_the_index_is_on_the_item_without_trailing_slashes(self, factory: sessionmaker[Session]) -> None:
        with factory() as session:
            definition = _index_sql(session)[INDEX]
        assert "rtrim(" in definition and "'/'" in definition, definition

    def test_it_goes_down_and_up_again(self, factory: sessionmaker[Session],
                                       down_to: Callable[[str], AbstractContextManager[None]]) -> None:
        with down_to("0014"), factory() as session:
            assert INDEX not in _index_sql(session)
        with factory() as session:
            assert INDEX in _index_sql(session)

    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        diffs = schema_diffs(factory)
        assert [d for d in diffs if "job_acl" in repr(d)] == []


class TestListingCandidates:
    def test_only_the_items_that_may_name_the_caller_are_read_through_the_index(
            self, factory: sessionmaker[Session]) -> None:
        with UnitOfWork(factory) as uow:
            flooded = _add_job(uow, "flooded", "/CN=mallory", tuple(f"/junk/{i}" for i in range(FLOOD)))
            shared = _add_job(uow, "shared", "/CN=mallory", ("/atlas/", "/junk/x", CAROL.dn))
        engine = factory.kw["bind"]
        with _statements(engine) as seen, UnitOfWork(factory) as uow:
            _, rows, _ = uow.jobs.listing_candidates(CAROL.dn, acl_keys=grant_keys(CAROL))
            assert sorted((job.id, item) for job, item in rows) == [(shared, CAROL.dn), (shared, "/atlas/")]
        assert flooded not in {job.id for job, _ in rows}
        [(sql, parameters)] = [(s, p) for s, p in seen if "job_acl" in s]
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")  # the planner knows the flood as the service's would
            explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
            plan = conn.exec_driver_sql(f"{explain} {sql}", parameters).all()
        assert INDEX in " ".join(str(row) for row in plan), plan


class TestListJobs:
    @pytest.mark.parametrize("caller", [CAROL, DAVE, ERIN], ids=["carol", "dave", "erin"])
    def test_what_is_listed_is_what_grants_decides(self, rt: Runtime, alice: Principal, caller: Principal) -> None:
        jobs = {item: register_job(rt, alice, ECHO_JDL, DELEGATION).job_id for item in ITEMS}
        with rt.uow() as uow:
            for item, job_id in jobs.items():
                uow.session.add(JobAclEntry(job_id=job_id, item=item))
        expected = {job_id for item, job_id in jobs.items() if grants([item], caller)}
        assert expected  # every caller is named by some of the items

        page = list_jobs(rt, caller, JobFilter(limit=1000))

        assert {j.job_id for j in page.jobs} & set(jobs.values()) == expected
        # the database found the items equal to a key once their trailing slashes are off
        # (rtrim as str.rstrip): those that grant, DN-like ones that do not, and ``/cms/``, which
        # does not admit the FQAN ``/cms`` itself (only those below it)
        with rt.uow() as uow:
            _, rows, _ = uow.jobs.listing_candidates(caller.dn, acl_keys=grant_keys(caller))
        found = sorted(item for job, item in rows if job.id in jobs.values())
        assert found == sorted(item for item in ITEMS if item.rstrip("/") in grant_keys(caller))
        dropped = {item for item in found if not grants([item], caller)}
        assert dropped <= {CAROL.dn + "/", "/CN=erin", "/CN=erin//", "/cms/"}
