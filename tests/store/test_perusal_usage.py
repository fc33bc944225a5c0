"""Perusal chunks count in their owner's usage (``wmproxy-behaviour.md`` §4.4, §8): the worker
writes no more than the owner's hard quota leaves, nor than the site's output sandbox limit
allows one job's ``peek/``; each chunk is added to the counter as it is written, a recount finds
the same bytes, a merge (getPerusalFiles) changes nothing, and the purge gives them back once.
A user with a 1 MB hard quota put 3 MB into the sandbox area by perusal, getFreeQuota showing
the whole quota free. Real worker in process, real jobs (as the mapped account), both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import end_jobs, in_state, job_row, submit, until
from tests.support import counted_on_disk, delegate_in_process, principal_of
from wmproxy.domain import JobState
from wmproxy.errors import QuotaExceededError
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services import jobs, quota
from wmproxy.services.perusal import enable_file_perusal, keep_perusal_chunk, perusal_files
from wmproxy.services.runtime import Runtime
from wmproxy.store.usage import SandboxUsage

BIG = "head -c 3000000 /dev/zero > big.txt"
"""A job that writes 3 MB into the file it is perused on, and ends Done."""
PERUSED = "PerusalFileEnable = true; PerusalTimeInterval = 1;"
HARD = 1_000_000


@pytest.fixture
def runtime(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
            store_key_dir: Path) -> Iterator[Any]:
    """``runtime(limits=..., jobs=...)``: a runtime with the worker's settings and these sections
    (perusal samples every second at the least), every usage counter emptied."""
    opened: list[Any] = []

    def make(**sections: dict[str, Any]) -> Runtime:
        jobs_section = {"min_perusal_interval": 1, **sections.pop("jobs", {})}
        context = mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                                 execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0},
                                 jobs=jobs_section, **sections)
        opened.append(context)
        rt = context.__enter__()
        with rt.uow() as uow:  # one database per module: the counters of the tests before
            uow.session.execute(sa.delete(SandboxUsage))
        return rt

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)


def perused_to_done(rt: Runtime, pki: Pki, work_root: Path) -> str:
    """Run :data:`BIG` with ``big.txt`` under perusal until it is Done (its last sample taken)."""
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w1")
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    job_id = submit(rt, alice, BIG, PERUSED)
    enable_file_perusal(rt, alice, job_id, ["big.txt"])  # before any worker claims it
    worker.start()
    try:
        until(worker, in_state(rt, job_id, JobState.DONE), "the job Done")
    finally:
        end_jobs(worker)
    return job_id


def peek_bytes(rt: Runtime, job_id: str) -> int:
    peek = rt.storage.job_area(job_id).peek_dir
    return sum(p.stat().st_size for p in peek.iterdir() if p.is_file()) if peek.is_dir() else 0


def test_the_owners_hard_quota_bounds_perusal_and_the_purge_gives_its_bytes_back(
        runtime: Any, pki: Pki, work_root: Path) -> None:
    rt = runtime(jobs={"quota_hard_limit": HARD, "quota_soft_limit": HARD})
    alice = principal_of(pki, "alice")
    job_id = perused_to_done(rt, pki, work_root)

    row = job_row(rt, job_id)
    assert row.state == JobState.DONE.value
    held = peek_bytes(rt, job_id)
    assert held == HARD, f"peek/ holds {held} bytes past the owner's hard quota of {HARD}"
    used = quota.used_bytes(rt, alice.dn)
    assert used == counted_on_disk(rt, alice.dn) == HARD, f"usage counter {used}, peek/ {held}"
    assert quota.free_quota(rt, alice) == (0, 0)
    assert "file perusal stopped: the owner's disk quota reached" in (row.reason or "")
    assert quota.recount_usage(rt, alice.dn) == {alice.dn: HARD}  # wmproxy-admin recount-usage agrees

    merged = perusal_files(rt, alice, job_id, "big.txt", True, None)  # chunks merged: same bytes
    assert merged and peek_bytes(rt, job_id) == HARD
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == HARD

    jobs.purge_job(rt, alice, job_id)
    assert quota.used_bytes(rt, alice.dn) == 0


def test_the_sites_output_sandbox_limit_bounds_a_jobs_perusal(runtime: Any, pki: Pki, work_root: Path) -> None:
    rt = runtime(limits={"max_output_sandbox_size": 500_000}, jobs={"quota_hard_limit": 0, "quota_soft_limit": 0})
    alice = principal_of(pki, "alice")
    job_id = perused_to_done(rt, pki, work_root)

    row = job_row(rt, job_id)
    assert peek_bytes(rt, job_id) == 500_000
    assert "file perusal stopped: the site's output sandbox limit reached" in (row.reason or "")
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == 500_000  # quotas off: counted too


def test_a_chunk_over_the_hard_quota_is_neither_written_nor_counted(runtime: Any, pki: Pki) -> None:
    rt = runtime(jobs={"quota_hard_limit": HARD, "quota_soft_limit": HARD})
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    job_id = submit(rt, alice, BIG, PERUSED)
    rt.storage.create_job_area(job_id)  # as the worker's claim makes it
    keep_perusal_chunk(rt, alice.dn, job_id, "big.txt", b"p" * (HARD - 10), 1)
    with pytest.raises(QuotaExceededError):
        keep_perusal_chunk(rt, alice.dn, job_id, "big.txt", b"p" * 11, 2)
    assert [p.name for p in rt.storage.job_area(job_id).peek_dir.iterdir()] == ["big.txt.1"]
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == HARD - 10
