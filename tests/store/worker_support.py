"""Helpers for the tests that run the execution worker in-process on a real database
(tests/store/test_adoption.py, test_worker_read_ahead.py): submit a shell job, read its row,
step a worker until a condition holds, and make a worker "die" by back-dating its heartbeat
past :data:`LEASE` (no sleeping)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from tests.unit.execution.wrapper_support import DEADLINE
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import ExecutionRequest, ExecutionWorkerRow, Job

LEASE = 60.0
"""The heartbeat lease (seconds) the tests' runtimes are configured with."""


def submit(rt: Runtime, alice: Principal, script: str, extra: str = "") -> str:
    jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; StdOutput = "out"; StdError = "err";'
           f' OutputSandbox = {{"out", "err"}}; {extra} ]')
    return submit_job(rt, alice, jdl, "exec").job_id


def job_row(rt: Runtime, job_id: str) -> Job:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.session.expunge(job)
        return job


def until(worker: ExecutionWorker, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        worker.step()
        time.sleep(0.05)


def in_state(rt: Runtime, job_id: str, *states: JobState) -> Callable[[], bool]:
    return lambda: job_row(rt, job_id).state in {s.value for s in states}


def abandon(worker: ExecutionWorker, rt: Runtime) -> None:
    """The worker dies: nothing of it runs any more and its heartbeat is older than the lease."""
    with rt.uow() as uow:
        uow.session.execute(sa.update(ExecutionWorkerRow).where(ExecutionWorkerRow.name == worker.name)
                            .values(heartbeat_at=utcnow() - dt.timedelta(seconds=2 * LEASE)))


def work_dir(rt: Runtime, job_id: str) -> Path:
    ref = job_row(rt, job_id).backend_ref
    assert ref is not None
    return Path(rt.settings.execution.work_dir) / ref.split(":", 3)[3]


def running_events(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return sum(1 for e in uow.jobs.events(job_id) if e.state == JobState.RUNNING.value)


def start_requests(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return len(uow.session.scalars(sa.select(ExecutionRequest).where(
            ExecutionRequest.job_id == job_id, ExecutionRequest.command == "start")).all())


WAIT_GO = "while [ ! -e go ]; do sleep 0.1; done; echo out; exit 5"
