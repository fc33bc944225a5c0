"""A job the worker set aside (its backend raised attaching or polling it: a defect, or the job's
own hostile files) can still be cancelled: the cancel reaches its wrapper and the job ends
Cancelled. Before, a set-aside job was out of the worker's followed jobs, so its cancel was
never taken: it stayed Running, its wrapper ran on, until the worker restarted.

The worker runs in-process on a real database (SQLite file and PostgreSQL); the job runs through
the wrapper as the mapped account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.worker_support import in_state, local_worker_runtime, submit, until
from tests.unit.execution.wrapper_support import alive
from wmproxy.domain import JobState, Principal
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.jobs import cancel_job
from wmproxy.services.runtime import Runtime


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with local_worker_runtime(tmp_path, pki, database_url, work_root, job_account, store_key_dir) as runtime:
        yield runtime


def test_a_job_set_aside_is_still_cancelled(rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalExecutionBackend(Path(rt.settings.execution.work_dir), kill_grace=2.0)
    worker = ExecutionWorker(rt, {"local": backend}, "w1")
    worker.start()
    job_id = submit(rt, alice, "sleep 600")
    until(worker, in_state(rt, job_id, JobState.RUNNING), "the job to run")
    until(worker, lambda: job_id in worker.running and worker.running[job_id].handle.pid is not None,
          "its wrapper to be spawned")
    wrapper = worker.running[job_id].handle.pid
    assert wrapper is not None

    def broken(_handle: object) -> None:
        raise ValueError("invalid literal for int() with base 10: '²'")  # what a job's own file did

    monkeypatch.setattr(backend, "poll", broken)
    until(worker, lambda: job_id in worker.set_aside, "the job to be set aside")
    assert job_id not in worker.running and alive(wrapper)
    cancel_job(rt, alice, job_id)
    until(worker, in_state(rt, job_id, JobState.CANCELLED), "the cancel of the job set aside")
    until(worker, lambda: not alive(wrapper), "its wrapper to be stopped")
    assert job_id not in worker.set_aside
