"""Limits of local jobs, with real wrappers as a real account: the wall time of the launch (the
wrapper stops the job and it ends Aborted, even after another worker adopted it)."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import DEADLINE, HOST, alive, kill_session, launch, run, wait_for
from wmproxy.domain import JobState
from wmproxy.execution.backends import JobOutcome, RunHandle
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account


@pytest.fixture
def backend(work_root: Path) -> Iterator[LocalExecutionBackend]:
    (work_root / "jobs").mkdir(mode=0o755)
    backend = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=1.0)
    yield backend
    backend.close()


@pytest.fixture
def cleanup() -> Iterator[list[RunHandle]]:
    """Handles whose sessions are killed after the test (never leave a job running)."""
    handles: list[RunHandle] = []
    yield handles
    for handle in handles:
        if handle.pid is not None and alive(handle.pid):
            kill_session(handle.pid)


def _outcome(backend: LocalExecutionBackend, handle: RunHandle) -> JobOutcome:
    deadline = time.monotonic() + DEADLINE
    while (outcome := backend.poll(handle)) is None:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    return outcome


class TestWallTime:
    def test_a_job_past_its_wall_time_is_stopped_and_aborted_as_a_deep_failure(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        job = dataclasses.replace(launch(input_dir, account, "sleep 600; echo done > done"), wall_time=1)
        handle, outcome = run(backend, job)
        assert outcome.state == JobState.ABORTED and outcome.payload_started, outcome
        assert outcome.reason is not None and "wall time of 1 s" in outcome.reason, outcome
        assert "deep failure" in outcome.reason, outcome
        assert outcome.exit_code == 128 + signal.SIGTERM
        assert not (handle.work_dir / "done").exists()

    def test_a_payload_ignoring_sigterm_is_killed_after_the_grace(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        job = dataclasses.replace(launch(input_dir, account, "trap '' TERM; while :; do sleep 0.2; done",
                                         kill_grace=1.0),
                                  wall_time=1)
        _, outcome = run(backend, job)
        assert outcome.state == JobState.ABORTED and outcome.exit_code == 128 + signal.SIGKILL, outcome

    def test_a_prologue_past_the_wall_time_is_a_shallow_failure(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        job = dataclasses.replace(launch(input_dir, account, "echo ran > ran", prologue="/bin/sleep",
                                         prologue_arguments=["600"]), wall_time=1)
        handle, outcome = run(backend, job)
        assert outcome.state == JobState.ABORTED and not outcome.payload_started, outcome
        assert outcome.reason is not None and "wall time of 1 s" in outcome.reason, outcome
        assert not (handle.work_dir / "ran").exists()

    def test_an_adopted_job_keeps_its_wall_time(self, work_root: Path, backend: LocalExecutionBackend,
                                                input_dir: Path, account: Account | None,
                                                cleanup: list[RunHandle]) -> None:
        job = dataclasses.replace(launch(input_dir, account, "echo up > up; sleep 600"), wall_time=3)
        handle = backend.spawn(backend.prepare(job))
        cleanup.append(handle)
        wait_for((handle.work_dir / "up").exists, "the job to start")
        backend.close()  # the worker goes away; the wrapper runs on
        other = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=1.0)
        try:
            adopted = other.attach(handle.ref, account)
            assert adopted is not None and adopted.pid == handle.pid
            outcome = _outcome(other, adopted)
        finally:
            other.close()
        assert outcome.state == JobState.ABORTED and outcome.payload_started, outcome
        assert outcome.reason is not None and "wall time of 3 s" in outcome.reason, outcome

    def test_without_a_wall_time_the_job_runs_to_its_end(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        _, outcome = run(backend, launch(input_dir, account, "sleep 1.5; exit 4"))
        assert outcome == JobOutcome(JobState.DONE, exit_code=4, payload_started=True)
