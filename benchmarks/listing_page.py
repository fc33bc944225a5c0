"""listJobs' service cost for one user keeping N jobs (docs/performance.md, stop 51 listing-page).

``prepare`` migrates a database (SQLite file or PostgreSQL URL) and inserts N registered
top-level jobs of one user (a 1 KB JDL with UserTags each, registration times one second
apart); ``measure`` runs :func:`wmproxy.services.listing.list_jobs` in-process and prints the
median CPU time (``time.process_time``) of ``--calls`` calls after one warm-up call. Run
``measure`` with ``PYTHONPATH`` set to the tree to measure (it does not add its own).

    PYTHONPATH=. .venv/bin/python benchmarks/listing_page.py prepare sqlite:////tmp/l.db --jobs 10000
    PYTHONPATH=. .venv/bin/python benchmarks/listing_page.py measure sqlite:////tmp/l.db --limit 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from types import SimpleNamespace
from typing import Any

from wmproxy.config import DatabaseSettings, Settings
from wmproxy.domain import Principal

OWNER = "/C=XX/O=bench/CN=lister"
T0 = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
JDL = ('[ Executable = "/bin/sh"; Arguments = "-c \'echo hello\'"; StdOutput = "out.txt"; StdError = "err.txt";'
       ' OutputSandbox = {"out.txt", "err.txt"}; UserTags = [ campaign = "c%d"; run = "r1" ];'
       ' Requirements = other.GlueCEStateStatus == "Production"; Rank = -other.GlueCEStateEstimatedResponseTime;'
       ' VirtualOrganisation = "bench"; %s ]')


def prepare(url: str, jobs: int) -> None:
    from wmproxy.admin import upgrade_database
    from wmproxy.store import make_engine
    from wmproxy.store.schema import Job

    upgrade_database(Settings(database=DatabaseSettings(url=url)))
    engine = make_engine(url)
    rows: list[dict[str, Any]] = []
    for n in range(jobs):
        at = T0 + dt.timedelta(seconds=n)
        jdl = JDL % (n % 10, "Comment = \"%s\";" % ("x" * 600))
        rows.append({"id": f"https://bench:9000/job-{n:07d}", "parent_id": None, "owner_dn": OWNER,
                     "delegation_id": "d", "state": "Running" if n % 3 else "Done", "jdl_original": jdl,
                     "jdl_registered": jdl, "sandbox_dir": f"sb/{n}", "created_at": at, "updated_at": at,
                     "shallow_retries": 0, "deep_retries": 0})
    with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(Job.__table__.insert(), rows[start:start + 1000])  # type: ignore[attr-defined]
    engine.dispose()


def measure(url: str, limit: int, calls: int, tags: dict[str, str]) -> None:
    from wmproxy.services.listing import JobFilter, list_jobs
    from wmproxy.store import UnitOfWork, make_engine, make_session_factory

    engine = make_engine(url)
    factory = make_session_factory(engine)
    rt: Any = SimpleNamespace(uow=lambda: UnitOfWork(factory))
    principal = Principal(OWNER)
    flt = JobFilter(limit=limit, user_tags=tags)
    page = list_jobs(rt, principal, flt)  # warm-up (connection, statement caches)
    times = []
    for _ in range(calls):
        start = time.process_time()
        list_jobs(rt, principal, flt)
        times.append(time.process_time() - start)
    print(f"{statistics.median(times) * 1000:.2f} ms total={page.total} page={len(page.jobs)}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["prepare", "measure"])
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--user-tag", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.url, args.jobs)
    else:
        measure(args.url, args.limit, args.calls, dict(t.split("=", 1) for t in args.user_tag))


if __name__ == "__main__":
    main()
