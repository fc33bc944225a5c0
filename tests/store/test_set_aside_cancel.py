"""A job the worker set aside (its backend raised attaching or polling it: a defect, or the job's
own hostile files) can still be cancelled: the cancel reaches its wrapper and the job ends
Cancelled. Before, a set-aside job was out of the worker's followed jobs, so its cancel was
never taken: it stayed Running, its wrapper ran on, until the worker restarted. It is also
polled again (followed again once its backend answers) and given up after a bound (its cancel
sent, recorded Aborted, not retried); before, it stayed Running until the worker restarted.

The worker runs in-process on a real database (SQLite file and PostgreSQL); the job runs through
the wrapper as the mapped account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.worker_support import in_state, job_row, local_worker_runtime, submit, until
from tests.unit.execution.wrapper_support import alive
from wmproxy.domain import JobState, Principal
from wmproxy.execution import worker as worker_module
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
    worker, _backend, job_id, wrapper = set_aside_running_job(rt, alice, monkeypatch)
    assert job_id not in worker.running and alive(wrapper)
    cancel_job(rt, alice, job_id)
    until(worker, in_state(rt, job_id, JobState.CANCELLED), "the cancel of the job set aside")
    until(worker, lambda: not alive(wrapper), "its wrapper to be stopped")
    assert job_id not in worker.set_aside


def set_aside_running_job(rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch,
                          ) -> tuple[ExecutionWorker, LocalExecutionBackend, str, int]:
    """A worker whose only job, running ``sleep 600`` through its wrapper, is set aside because
    its backend's poll raises; returns the worker, its backend, the job id and the wrapper's pid."""
    backend = LocalExecutionBackend(Path(rt.settings.execution.work_dir), kill_grace=2.0)
    worker = ExecutionWorker(rt, {"local": backend}, "w1")
    worker.start()
    job_id = submit(rt, alice, "sleep 600")
    until(worker, lambda: job_id in worker.running and worker.running[job_id].handle.pid is not None,
          "its wrapper to be spawned")
    wrapper = worker.running[job_id].handle.pid
    assert wrapper is not None

    def broken(_handle: object) -> None:
        raise ValueError("invalid literal for int() with base 10: '²'")

    monkeypatch.setattr(backend, "poll", broken)
    until(worker, lambda: job_id in worker.set_aside, "the job to be set aside")
    return worker, backend, job_id, wrapper


def test_a_job_set_aside_is_followed_again_once_its_backend_answers(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "SET_ASIDE_RETRY", 0.0)
    worker, backend, job_id, wrapper = set_aside_running_job(rt, alice, monkeypatch)
    monkeypatch.delattr(backend, "poll")  # the backend answers again (its class's poll)
    until(worker, lambda: job_id in worker.running, "the job to be followed again")
    assert job_id not in worker.set_aside and alive(wrapper)
    cancel_job(rt, alice, job_id)  # followed as any job: its cancel ends it
    until(worker, in_state(rt, job_id, JobState.CANCELLED), "the cancel")
    until(worker, lambda: not alive(wrapper), "its wrapper to be stopped")


def test_a_job_its_backend_cannot_follow_is_given_up_cancelled_and_not_retried(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "SET_ASIDE_LIMIT", 0.0)
    worker, _backend, job_id, wrapper = set_aside_running_job(rt, alice, monkeypatch)
    until(worker, in_state(rt, job_id, JobState.ABORTED), "the job to be given up")
    until(worker, lambda: not alive(wrapper), "its wrapper to be stopped")
    assert job_id not in worker.set_aside and job_id not in worker.running
    job = job_row(rt, job_id)
    assert "could not follow the job" in (job.reason or "") and "not retried" in (job.reason or ""), job.reason
    for _ in range(5):  # not resubmitted: no new attempt is claimed
        worker.step()
    assert in_state(rt, job_id, JobState.ABORTED)() and not worker.running
