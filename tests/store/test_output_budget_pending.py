"""The output sandbox budgets of jobs of one owner ending in one worker cycle share what is left of
the owner's hard quota: the bytes collected and not recorded yet (earlier in the cycle, or ends the
worker still holds) are left out of each budget (``quota.output_budget``'s ``pending``); another
owner's are not. Both databases; the worker's end collection driven directly (no process runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import build_runtime, close_runtime, delegate_in_process, principal_of
from wmproxy.domain import JobState
from wmproxy.execution.backends import JobOutcome, RunHandle
from wmproxy.execution.worker import ExecutionWorker, RunningJob
from wmproxy.services import quota
from wmproxy.services.execution import claim_starts
from wmproxy.services.retries import AttemptEnd
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

JDL = '[ Executable = "/bin/true"; OutputSandbox = {"out"}; ]'
HARD = 1000


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    runtime = build_runtime(tmp_path / "rt", pki, database={"url": database_url},
                            security={"store_key_file": str(store_key_dir / "store.key")},
                            jobs={"quota_soft_limit": 0, "quota_hard_limit": HARD},
                            execution={"work_dir": str(tmp_path / "work")})
    yield runtime
    close_runtime(runtime)


class _Released:
    """A backend whose work dirs are left alone (the test's own)."""

    def release(self, handle: RunHandle) -> None:
        pass


def test_jobs_of_one_owner_ending_in_one_cycle_share_the_quota_left(rt: Runtime, pki: Pki, tmp_path: Path) -> None:
    alice, bob = principal_of(pki, "alice"), principal_of(pki, "bob")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "d")
    delegate_in_process(rt, bob, pki.users["bob"].proxy, "d")
    held, first, second = (submit_job(rt, alice, JDL, "d").job_id for _ in range(3))
    bobs = submit_job(rt, bob, JDL, "d").job_id
    orders = {o.job_id: o for o in claim_starts(rt, "w1", {"local": 4}, limit=4)}
    assert set(orders) == {held, first, second, bobs}
    used = quota.used_bytes(rt, alice.dn)

    assert quota.output_budget(rt, first, (), {bobs: 700})[0] == HARD - used  # type: ignore[index]
    assert quota.output_budget(rt, first, (), {held: 700, first: 50})[0] == HARD - used - 700  # type: ignore[index]

    backend = _Released()
    worker = ExecutionWorker(rt, {"local": backend}, "w1")  # type: ignore[dict-item]
    # An end collected earlier (its 600 bytes in the job area) that the database has not taken yet.
    worker.unrecorded.append((held, AttemptEnd(JobState.DONE, exit_code=0, payload_started=True,
                                               output_bytes=600, attempt=0)))
    ended = []
    for job_id in (first, second):
        work = tmp_path / f"w-{job_id[-6:]}"
        work.mkdir()
        (work / "out").write_bytes(b"x" * 5000)
        ended.append((RunningJob(orders[job_id], RunHandle(f"local:{job_id}", work, None), backend),  # type: ignore[arg-type]
                      JobOutcome(JobState.DONE, exit_code=0, payload_started=True)))
    worker._record_ends(ended)

    assert not worker.unrecorded
    assert rt.storage.output_bytes(first) == HARD - used - 600
    assert rt.storage.output_bytes(second) == 0
    assert quota.used_bytes(rt, alice.dn) == HARD  # at the hard limit, not past it
