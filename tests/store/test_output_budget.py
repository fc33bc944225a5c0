"""The worker collects at most a job's output sandbox budget: the smallest of ``[limits]
max_output_sandbox_size``, what is left of the owner's hard quota and the job's
``GLITE_LOCAL_MAX_OSB_SIZE``. A file over it is truncated (the job is Done, its reason names
the file), never copied whole nor retried for ever; a sparse file is not blown up beyond it.
Real worker in process, real jobs (as the mapped account), both databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import job_row, run_to_end, submit
from tests.support import delegate_in_process, principal_of
from wmproxy.domain import JobState
from wmproxy.execution import worker as worker_module
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import REASON_FILES_SHOWN
from wmproxy.services import quota
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

SPARSE = "truncate -s 400M out; printf error >&2; exit 0"
"""A job whose stdout ``out`` is a 400 MB sparse file (no block on the work dir's disk)."""


@pytest.fixture
def runtime(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
            store_key_dir: Path) -> Iterator[Any]:
    """``runtime(limits=..., jobs=...)``: a runtime with the worker's settings and these sections."""
    opened: list[Any] = []

    def make(**sections: dict[str, Any]) -> Runtime:
        context = mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                                 execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0},
                                 **sections)
        opened.append(context)
        return context.__enter__()

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)


def run_to_done(rt: Runtime, pki: Pki, work_root: Path, script: str, extra: str = "") -> str:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    job_id = submit(rt, alice, script, extra)
    run_to_end(rt, job_id, work_root)
    return job_id


def kept(rt: Runtime, job_id: str, name: str) -> os.stat_result:
    return os.stat(rt.storage.job_area(job_id).output_dir / name)


def test_the_owners_hard_quota_bounds_a_sparse_output(runtime: Any, pki: Pki, work_root: Path) -> None:
    rt = runtime(jobs={"quota_soft_limit": 1_000_000, "quota_hard_limit": 1_000_000})
    job_id = run_to_done(rt, pki, work_root, SPARSE)

    row = job_row(rt, job_id)
    assert row.state == JobState.DONE.value
    out = kept(rt, job_id, "out")
    assert out.st_size == 1_000_000 and out.st_blocks * 512 <= 2_000_000  # not 400 MB of zeros
    assert kept(rt, job_id, "err").st_size == 0  # nothing left of the quota after out
    assert "output sandbox truncated at 1000000 bytes (the owner's disk quota)" in (row.reason or "")
    assert "out (kept 1000000 of 419430400 bytes)" in (row.reason or "")
    assert "err (kept 0 of 5 bytes)" in (row.reason or "")
    assert quota.used_bytes(rt, row.owner_dn) == 1_000_000  # at the hard limit, not over it


def test_the_site_limit_and_the_jobs_own_limit_the_smaller_wins(runtime: Any, pki: Pki, work_root: Path) -> None:
    rt = runtime(limits={"max_output_sandbox_size": 3000}, jobs={"quota_hard_limit": 0, "quota_soft_limit": 0})
    by_site = run_to_done(rt, pki, work_root, SPARSE)
    by_job = run_to_done(rt, pki, work_root, SPARSE, 'Environment = {"GLITE_LOCAL_MAX_OSB_SIZE=1000"};')
    above_site = run_to_done(rt, pki, work_root, SPARSE, 'Environment = {"GLITE_LOCAL_MAX_OSB_SIZE=5000000"};')

    assert kept(rt, by_site, "out").st_size == 3000
    assert "(the site's output sandbox limit)" in (job_row(rt, by_site).reason or "")
    assert kept(rt, by_job, "out").st_size == 1000
    assert "(the job's GLITE_LOCAL_MAX_OSB_SIZE)" in (job_row(rt, by_job).reason or "")
    assert kept(rt, above_site, "out").st_size == 3000  # a job cannot raise the site's limit
    for job_id in (by_site, by_job, above_site):
        assert job_row(rt, job_id).state == JobState.DONE.value


def test_outputs_within_the_budget_are_collected_whole_without_a_reason(runtime: Any, pki: Pki,
                                                                       work_root: Path) -> None:
    rt = runtime(limits={"max_output_sandbox_size": 3000})
    job_id = run_to_done(rt, pki, work_root, "printf hello; printf error >&2")

    row = job_row(rt, job_id)
    assert row.state == JobState.DONE.value and row.reason is None
    assert (rt.storage.job_area(job_id).output_dir / "out").read_bytes() == b"hello"
    assert (rt.storage.job_area(job_id).output_dir / "err").read_bytes() == b"error"


MANY = ("for i in $(seq -w 0 29); do printf x > f$i.o; done; "
        "for i in $(seq -w 0 24); do ln -s /etc/passwd s$i.o; done")
"""A job making 30 one-byte files and 25 symbolic links that its ``*.o`` wildcard matches."""


def _run_many(rt: Runtime, pki: Pki, work_root: Path) -> str:
    """alice's job running :data:`MANY` with ``OutputSandbox = {"*.o"}``, to its end."""
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    jdl = f'[ Executable = "/bin/sh"; Arguments = "-c \'{MANY}\'"; OutputSandbox = {{"*.o"}}; ]'
    job_id = submit_job(rt, alice, jdl, "exec").job_id
    run_to_end(rt, job_id, work_root)
    return job_id


def test_a_reason_names_at_most_twenty_files_of_each_kind(runtime: Any, pki: Pki, work_root: Path) -> None:
    """A wildcard matches as many files as the job made: the reason (the database, every status
    answer) names the first :data:`REASON_FILES_SHOWN` files not collected and truncated, and
    counts the rest."""
    rt = runtime(limits={"max_output_sandbox_size": 5})
    job_id = _run_many(rt, pki, work_root)

    row = job_row(rt, job_id)
    reason = row.reason or ""
    assert row.state == JobState.DONE.value
    assert [name for name, _size in rt.storage.output_files(job_id)] == [f"f{i:02d}.o" for i in range(30)]
    assert reason.count("not collected: symbolic link") == REASON_FILES_SHOWN  # s00-s19.o
    assert "s19.o not collected" in reason and "s20.o" not in reason
    assert "and 5 more output sandbox files not collected" in reason  # s20-s24.o
    assert reason.count("(kept 0 of 1 bytes)") == REASON_FILES_SHOWN  # f05-f24.o named
    assert "f24.o (kept 0 of 1 bytes) and 5 more files" in reason and "f25.o" not in reason


def test_with_no_file_limit_the_worker_collects_at_most_its_ceiling(runtime: Any, pki: Pki, work_root: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_output_sandbox_files = 0`` leaves registration unbounded, not the worker's copy: a
    wildcard's matches beyond :data:`OUTPUT_FILES_CEILING` are not collected."""
    monkeypatch.setattr(worker_module, "OUTPUT_FILES_CEILING", 27)
    rt = runtime(limits={"max_output_sandbox_files": 0})
    job_id = _run_many(rt, pki, work_root)

    row = job_row(rt, job_id)
    assert row.state == JobState.DONE.value
    assert [name for name, _size in rt.storage.output_files(job_id)] == [f"f{i:02d}.o" for i in range(27)]
    assert "f27.o not collected: the maximum number of output sandbox files (27) is reached" in (row.reason or "")


def test_a_name_longer_than_the_sites_limit_is_not_collected(runtime: Any, pki: Pki, work_root: Path) -> None:
    """The sandbox edge refuses a name longer than ``[limits] max_sandbox_name_bytes`` (400):
    collection checks the same limit, not 255, and names the file in the reason."""
    rt = runtime(limits={"max_sandbox_name_bytes": 16})
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    script = "printf x > yyyyyyyyyyyyyy.o; printf x > zzzzzzzzzzzzzzzzz.o"
    jdl = f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; OutputSandbox = {{"*.o"}}; ]'
    job_id = submit_job(rt, alice, jdl, "exec").job_id
    run_to_end(rt, job_id, work_root)

    row = job_row(rt, job_id)
    assert row.state == JobState.DONE.value
    assert [name for name, _size in rt.storage.output_files(job_id)] == ["y" * 14 + ".o"]
    assert "output sandbox file zzzzzzzzzzzzzzzzz.o not collected: its destination name cannot be served" \
        in (row.reason or "")
    assert "19 bytes long, at most 16 allowed" in (row.reason or "")
