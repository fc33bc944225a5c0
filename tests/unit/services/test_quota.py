"""getTotalQuota / getFreeQuota: per-user limits on the bytes of the user's job areas
(services/quota.py; §4.4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import ECHO_JDL, build_runtime, close_runtime
from wmproxy.domain import Principal
from wmproxy.errors import QuotaExceededError, SandboxFileCountError
from wmproxy.sandbox.storage import TMP_SUFFIX, AreaTally
from wmproxy.services import jobs, quota, sandboxes
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

SOFT, HARD = 40_000_000, 50_000_000


def fill(rt: Runtime, job_id: str, size: int) -> None:
    """Put ``size`` bytes in the job's input area as the sandbox edge does (counted)."""
    path = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input") / "data.bin"

    def change() -> AreaTally:
        return AreaTally(size - path.stat().st_size, 0) if path.exists() else AreaTally(size, 1)

    sandboxes.change_area_bytes(rt, rt.storage.job_rel_dir(job_id), change, lambda: path.write_bytes(b"x" * size))


def fill_output(rt: Runtime, job_id: str, size: int) -> None:
    """``size`` bytes of output sandbox, counted as the execution worker does after collecting."""
    output = rt.storage.job_dir(job_id) / "output"
    output.mkdir(exist_ok=True)
    (output / "out.bin").write_bytes(b"y" * size)
    quota.count_output(rt, job_id)


def test_total_quota_is_the_configured_limits(rt: Runtime, alice: Principal) -> None:
    assert quota.total_quota(rt, alice) == (SOFT, HARD)


def test_free_quota_counts_the_callers_job_areas_only(rt: Runtime, alice: Principal, bob: Principal,
                                                     delegated: str) -> None:
    assert quota.free_quota(rt, alice) == (SOFT, HARD)
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    fill(rt, job_id, 1000)
    assert quota.free_quota(rt, alice) == (SOFT - 1000, HARD - 1000)
    assert quota.free_quota(rt, bob) == (SOFT, HARD)
    assert quota.upload_room(rt, alice.dn) == HARD - 1000


def test_purged_jobs_no_longer_count(rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    fill(rt, job_id, 5000)
    jobs.cancel_job(rt, alice, job_id)  # a registered job's area goes at once
    assert quota.free_quota(rt, alice) == (SOFT, HARD)


def test_over_the_hard_limit_there_is_no_room(tmp_path: Path, pki: Pki, template_db: Path, alice: Principal) -> None:
    from tests.support import delegate_in_process

    small = build_runtime(tmp_path / "small", pki, template_db, jobs={"quota_soft_limit": 100, "quota_hard_limit": 200})
    try:
        delegation = delegate_in_process(small, alice, pki.users["alice"].proxy, "q")
        job_id = register_job(small, alice, ECHO_JDL, delegation).job_id
        fill(small, job_id, 150)
        assert quota.free_quota(small, alice) == (-50, 50)
        with pytest.raises(QuotaExceededError, match="disk quota"):
            fill(small, job_id, 300)  # an upload is refused past the hard limit, and not written
        assert (small.storage.job_dir(job_id) / "input" / "data.bin").stat().st_size == 150
        fill_output(small, job_id, 150)  # a job's output is kept even past it
        assert quota.free_quota(small, alice) == (-200, -100)
        assert quota.upload_room(small, alice.dn) == 0
    finally:
        close_runtime(small)


def test_quotas_off_is_no_quota(tmp_path: Path, pki: Pki, template_db: Path, alice: Principal) -> None:
    """§4.4: (-1, -1) without a quota system, never GetQuotaManagementFault; bytes held change nothing."""
    off = build_runtime(tmp_path / "off", pki, template_db, jobs={"quota_soft_limit": 0, "quota_hard_limit": 0})
    try:
        from tests.support import delegate_in_process

        delegation = delegate_in_process(off, alice, pki.users["alice"].proxy, "q")
        fill(off, register_job(off, alice, ECHO_JDL, delegation).job_id, 1000)
        assert quota.total_quota(off, alice) == quota.free_quota(off, alice) == quota.NO_QUOTA == (-1, -1)
        assert quota.upload_room(off, alice.dn) is None
    finally:
        close_runtime(off)


def test_soft_limit_defaults_to_the_hard_one(tmp_path: Path, pki: Pki, template_db: Path, alice: Principal) -> None:
    hard_only = build_runtime(tmp_path / "hard", pki, template_db, jobs={"quota_soft_limit": 0, "quota_hard_limit": 7})
    try:
        assert quota.total_quota(hard_only, alice) == (7, 7)
    finally:
        close_runtime(hard_only)


def test_without_a_file_limit_an_input_area_still_holds_a_bounded_number_of_entries(
        tmp_path: Path, pki: Pki, template_db: Path, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty files and directories cost no bytes: with ``max_input_sandbox_files`` at 0 (the
    default) a user PUT as many as the file system's inodes into one job's input area."""
    from tests.support import delegate_in_process

    monkeypatch.setattr(sandboxes, "INPUT_ENTRIES_CEILING", 3)
    rt = build_runtime(tmp_path / "open", pki, template_db)
    try:
        assert rt.settings.limits.max_input_sandbox_files == 0
        delegation = delegate_in_process(rt, alice, pki.users["alice"].proxy, "q")
        job_id = register_job(rt, alice, ECHO_JDL, delegation).job_id
        input_dir = rt.storage.job_dir(job_id) / "input"

        def put_empty(name: str) -> None:
            sandboxes.change_area_bytes(rt, rt.storage.job_rel_dir(job_id), lambda: AreaTally(0, 1),
                                        (input_dir / name).touch)

        input_dir.mkdir(exist_ok=True)
        for name in ("a", "b", "c"):
            put_empty(name)
        with pytest.raises(SandboxFileCountError, match="4 files, at most 3 allowed"):
            put_empty("d")
        assert sorted(os.listdir(input_dir)) == ["a", "b", "c"]
    finally:
        close_runtime(rt)


def test_without_a_file_limit_a_jdl_listing_more_local_files_than_an_area_holds_is_refused(
        rt: Runtime, alice: Principal, delegated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its uploads would be refused past the input area's ceiling: the job could never start."""
    monkeypatch.setattr(sandboxes, "INPUT_ENTRIES_CEILING", 3)
    listed = ", ".join(f'"file://{name}"' for name in ("a", "b", "c", "d"))
    with pytest.raises(SandboxFileCountError, match="4 files, at most 3 allowed"):
        register_job(rt, alice, f'[ Executable = "/bin/true"; InputSandbox = {{ {listed} }}; ]', delegated)
    listed = ", ".join(f'"file://{name}"' for name in ("a", "b", "c"))
    register_job(rt, alice, f'[ Executable = "/bin/true"; InputSandbox = {{ {listed} }}; ]', delegated)


def test_a_change_is_held_against_the_input_limits_when_it_commits(
        tmp_path: Path, pki: Pki, template_db: Path, alice: Principal) -> None:
    """With the counter locked, what the input area holds then (uploads in progress left out):
    uploads of one job that each fitted when they started cannot pass the limits together."""
    from tests.support import delegate_in_process

    small = build_runtime(tmp_path / "small", pki, template_db, service={"max_input_sandbox_size": 100},
                          limits={"max_input_sandbox_files": 1})
    try:
        delegation = delegate_in_process(small, alice, pki.users["alice"].proxy, "q")
        job_id = register_job(small, alice, ECHO_JDL, delegation).job_id
        fill(small, job_id, 60)
        (small.storage.job_dir(job_id) / "input" / f".up.bin.k2j4l5m6{TMP_SUFFIX}").write_bytes(b"t" * 500)

        def change(size: int, files: int) -> None:
            sandboxes.change_area_bytes(small, small.storage.job_rel_dir(job_id), lambda: AreaTally(size, files),
                                        lambda: None)

        with pytest.raises(SandboxFileCountError, match="2 files, at most 1 allowed"):
            change(10, 1)
        with pytest.raises(QuotaExceededError, match="maximum input sandbox size of 100 bytes"):
            change(41, 0)
        change(40, 0)
        change(-60, -1)
        assert quota.used_bytes(small, alice.dn) == 40
    finally:
        close_runtime(small)
