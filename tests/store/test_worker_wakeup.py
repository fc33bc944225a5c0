"""What wakes the execution worker, and its per-backend limits (issue 14, issue 9), on a real
database (SQLite file and PostgreSQL) with the worker in-process.

* PostgreSQL: the transaction that queues a start request notifies the listening worker at
  commit (never on rollback); SQLite: the worker watches the database's directory (inotify), and
  a rolled-back transaction writes nothing there (test_sqlite_wakeup.py: commits that wake it).
* The exit of a wrapper the worker spawned wakes it (pidfd).
* ``[execution] max_running`` caps the local backend only; ``[slurm] max_submitted`` the
  Slurm backend.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import end_jobs
from tests.unit.execution.wrapper_support import DEADLINE
from wmproxy.config import SlurmSettings
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.wakeup import Wakeup
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

#: Seconds a wait may take when something must wake it (never reached when it works).
WOKEN_WITHIN = 60.0


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "poll_interval": 0.05, "max_running": 1},
                        replace={"slurm": SlurmSettings(max_submitted=7)}) as runtime:
        yield runtime



@pytest.fixture
def wakeup(rt: Runtime) -> Iterator[Wakeup]:
    waker = Wakeup(rt.session_factory.kw["bind"])
    yield waker
    waker.close()


def _engine_name(rt: Runtime) -> str:
    return str(rt.session_factory.kw["bind"].dialect.name)


class TestQueueNotification:
    @pytest.mark.postgresql_only  # SQLite: only a commit made during the wait wakes it (test_sqlite_wakeup.py)
    def test_a_committed_start_wakes_the_listening_worker_on_postgresql(self, rt: Runtime, alice: Principal,
                                                                       wakeup: Wakeup) -> None:
        wakeup.wait(0)  # opens the LISTEN connection
        assert wakeup.listening
        submit_job(rt, alice, '[ Executable = "/bin/true"; ]', "exec")
        assert wakeup.wait(WOKEN_WITHIN), "jobSubmit's start request did not wake the listener"

    def test_a_rolled_back_enqueue_does_not_wake_it(self, rt: Runtime, alice: Principal, wakeup: Wakeup) -> None:
        wakeup.wait(0)
        job_id = submit_job(rt, alice, '[ Executable = "/bin/true"; ]', "exec").job_id
        postgresql = _engine_name(rt) == "postgresql"
        if postgresql:  # consume the submit's notification (SQLite: dropped when the next wait begins)
            assert wakeup.wait(WOKEN_WITHIN)

        def rolled_back() -> None:
            uow = rt.uow()
            try:
                with uow:
                    uow.queue.enqueue(job_id, "cancel", utcnow())
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

        if postgresql:  # a notification would wait in the connection
            rolled_back()
            assert not wakeup.wait(1.0)
            return
        # SQLite: events that arrive before a wait begins are dropped; roll back during the wait
        timer = threading.Timer(0.3, rolled_back)
        timer.start()
        try:
            assert not wakeup.wait(1.5)
        finally:
            timer.join()


class TestIdle:
    def test_with_nothing_to_watch_it_sleeps_for_the_timeout(self, tmp_path: Path) -> None:
        waker = Wakeup(None)  # SQLite: no notifications
        begin = time.monotonic()
        assert not waker.wait(0.3)
        assert time.monotonic() - begin >= 0.3  # slept, never a busy loop

    def test_a_set_stop_event_ends_the_wait(self) -> None:
        stop = threading.Event()
        stop.set()
        assert not Wakeup(None).wait(3600, stop)  # returns at once instead of in an hour


class TestChildExit:
    def test_the_exit_of_a_watched_child_wakes_the_worker(self, wakeup: Wakeup, tmp_path: Path) -> None:
        gate = tmp_path / "go"
        child = subprocess.Popen(["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"])
        try:
            wakeup.watch([child.pid])
            assert not wakeup.wait(0.2)  # still running: nothing to wake for
            gate.touch()
            assert wakeup.wait(WOKEN_WITHIN), "the child's exit did not wake the worker"
        finally:
            child.wait(timeout=DEADLINE)

    def test_woken_by_one_exit_it_gathers_the_others_that_follow(self, wakeup: Wakeup, tmp_path: Path) -> None:
        gate = tmp_path / "go"
        first = subprocess.Popen(["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"])
        second = subprocess.Popen(["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done; sleep 0.2"])
        try:
            wakeup.watch([first.pid, second.pid])
            gate.touch()
            assert wakeup.wait(WOKEN_WITHIN, gather=WOKEN_WITHIN)
            # returned once both had exited (the second 0.2 s after the first), not at the first exit
            assert second.wait(timeout=0) is not None
        finally:
            first.wait(timeout=DEADLINE)
            second.wait(timeout=DEADLINE)

    def test_without_gather_it_returns_at_the_first_exit(self, wakeup: Wakeup, tmp_path: Path) -> None:
        gate = tmp_path / "go"
        first = subprocess.Popen(["/bin/true"])
        second = subprocess.Popen(["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"])
        try:
            wakeup.watch([first.pid, second.pid])
            assert wakeup.wait(WOKEN_WITHIN)
            assert second.poll() is None  # still waiting for its gate: the wait did not wait for it
        finally:
            gate.touch()
            first.wait(timeout=DEADLINE)
            second.wait(timeout=DEADLINE)


    def test_a_process_watched_for_its_reaping_wakes_it_then_not_at_its_exit(self, wakeup: Wakeup,
                                                                               tmp_path: Path) -> None:
        """A zygote's wrapper is not the worker's child: the worker learns how it ended once its
        parent has reaped it, and its pidfd, readable from its exit on, woke every wait meanwhile."""
        gate = tmp_path / "reap"
        parent = subprocess.Popen([sys.executable, "-c", PARENT_WAITING_TO_REAP, str(gate)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert parent.stdout is not None
            pid = int(parent.stdout.readline())  # has exited: a zombie until its parent reaps it
            wakeup.watch([], reaped=[pid])
            assert not wakeup.wait(0.3)  # its exit wakes nothing
            gate.touch()
            assert wakeup.wait(WOKEN_WITHIN), "the reaping did not wake the worker"
        finally:
            gate.touch()
            parent.communicate(timeout=DEADLINE)


#: A parent that starts ``/bin/true``, prints its pid once it has exited (a zombie), and reaps it
#: once the file its first argument names exists.
PARENT_WAITING_TO_REAP = """
import os, subprocess, sys, time
child = subprocess.Popen(["/bin/true"])
os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
print(child.pid, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
child.wait()
"""


class TestLimits:
    def test_max_running_caps_the_local_backend_and_max_submitted_slurm(
            self, rt: Runtime, alice: Principal, work_root: Path, tmp_path: Path) -> None:
        slurm = SlurmExecutionBackend(work_root, slurm_conf=tmp_path / "no-slurm.conf")
        worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0),
                                      "slurm": slurm}, "w-limits")
        assert worker.limits == {"local": 1, "slurm": 7}
        script = "while [ ! -e go ]; do sleep 0.1; done"
        jobs = [submit_job(rt, alice, f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; ]',
                           "exec").job_id for _ in range(2)]
        try:
            worker.start()
            deadline = time.monotonic() + DEADLINE
            while not worker.running:
                assert time.monotonic() < deadline, "no job started"
                worker.step()
            for _ in range(20):  # the local backend is full: the second job is not claimed
                worker.step()
            assert len(worker.running) == 1
            assert worker._with_room() == ["slurm"]
            with rt.uow() as uow:
                states = {j: str(getattr(uow.jobs.get(j), "state", "")) for j in jobs}
            assert sorted(states.values()) == sorted([JobState.RUNNING.value, JobState.WAITING.value])
        finally:
            end_jobs(worker)
