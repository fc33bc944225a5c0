"""The local backend runs every job through the real job wrapper, as the job's mapped
account when the tests run as root (a throwaway account, see wrapper_support), else as
the test user; outcomes come from the wrapper's status.json."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki, need_peer
from tests.leftover_support import STOPCHAIN_C, build, group_left, kill_group
from tests.unit.execution.wrapper_support import (
    DEADLINE,
    HOST,
    JOB,
    alive,
    create_account,
    kill_session,
    launch,
    run,
    wait_for,
)
from wmproxy.domain import JobState, to_filename
from wmproxy.execution import identity, processes
from wmproxy.execution.backends import BackendError, JobLaunch, JobOutcome, RunHandle, local
from wmproxy.execution.backends.local import LocalExecutionBackend, is_wrapper, parse_ref
from wmproxy.execution.identity import PROXY_NAME, SPARE_PREFIX, Account
from wmproxy.execution.jobwrapper import SPEC_NAME, STARTED_NAME, STATE_DIR, STATUS_NAME, TMP_DIR, WALL_TIME_EXCEEDED
from wmproxy.sandbox import trees
from wmproxy.security.proxy import credential_pem, make_proxy


@pytest.fixture
def backend(work_root: Path) -> Iterator[LocalExecutionBackend]:
    backend = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=2.0)
    (work_root / "jobs").mkdir(mode=0o755)
    started: list[RunHandle] = []
    original = backend.spawn

    def spawn(handle: RunHandle) -> RunHandle:
        started.append(original(handle))
        return handle

    backend.spawn = spawn  # type: ignore[method-assign]
    yield backend
    for handle in started:  # never leave a job of a failed test running
        # pid None: the wrapper ended (and was reaped) before the worker read its start time
        if handle.pid is not None and alive(handle.pid):
            kill_session(handle.pid)
        if handle.process is not None:
            handle.process.wait(timeout=DEADLINE)


@pytest.fixture
def proxy_pem(pki: Pki) -> bytes:
    return credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600))


class TestOutcome:
    def test_exit_code_and_outputs_in_the_work_dir(self, backend: LocalExecutionBackend, input_dir: Path,
                                                   account: Account | None) -> None:
        handle, outcome = run(backend, launch(input_dir, account, "echo hello; echo oops >&2; exit 3"))
        assert outcome == JobOutcome(JobState.DONE, exit_code=3, payload_started=True)
        assert (handle.work_dir / "out").read_text() == "hello\n"
        assert (handle.work_dir / "err").read_text() == "oops\n"
        assert handle.work_dir == backend.work_root / to_filename(JOB)

    def test_a_signal_is_128_plus_n(self, backend: LocalExecutionBackend, input_dir: Path,
                                    account: Account | None) -> None:
        _, outcome = run(backend, launch(input_dir, account, "kill -9 $$"))
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 128 + signal.SIGKILL)

    def test_a_missing_executable_aborts_with_the_wrappers_reason(self, backend: LocalExecutionBackend,
                                                                   input_dir: Path, account: Account | None) -> None:
        _, outcome = run(backend, launch(input_dir, account, "", executable="no-such-program", arguments=[]))
        assert outcome.state == JobState.ABORTED and not outcome.payload_started
        assert outcome.reason is not None and "no-such-program" in outcome.reason, outcome

    def test_a_failing_prologue_aborts_without_running_the_payload(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle, outcome = run(backend, launch(input_dir, account, "echo ran > ran",
                                              prologue="/bin/sh", prologue_arguments=["-c", "exit 5"]))
        assert outcome.state == JobState.ABORTED and not outcome.payload_started
        assert outcome.reason is not None and "rologue" in outcome.reason, outcome
        assert not (handle.work_dir / "ran").exists()

    def test_a_failing_epilogue_is_a_deep_failure_with_its_reason(self, backend: LocalExecutionBackend,
                                                                  input_dir: Path, account: Account | None) -> None:
        _, outcome = run(backend, launch(input_dir, account, "exit 0",
                                         epilogue="/bin/sh", epilogue_arguments=["-c", "exit 4"]))
        assert outcome == JobOutcome(JobState.ABORTED, exit_code=0, reason="epilogue failed with exit code 4",
                                     payload_started=True)

    def test_cancel_stops_the_job_and_the_wrapper_records_it(self, backend: LocalExecutionBackend, input_dir: Path,
                                                             account: Account | None) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, "echo up > up; while :; do sleep 0.1; done")))
        wait_for((handle.work_dir / "up").exists, "the job to start")
        assert backend.poll(handle) is None
        backend.cancel(handle)
        deadline = time.monotonic() + DEADLINE
        while (outcome := backend.poll(handle)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert outcome.state == JobState.CANCELLED
        assert handle.pid is not None and not alive(handle.pid)


#: A payload that leaves a process in a group of its own within the wrapper's session (bash's
#: job control: ``setpgid``), writing its pid to ``bg.pid``.
MOVED_AWAY = "bash -c 'set -m; sleep 600 & echo $! > bg.pid'"


#: In a process group of its own, a thread that sleeps, then its main thread ends alone (SYS_exit).
MAIN_THREAD_ENDS = ("python3 -c \"import ctypes, os, threading, time; os.setpgid(0, 0); "
                    "threading.Thread(target=time.sleep, args=(600,)).start(); "
                    "open('zl.pid', 'w').write(str(os.getpid())); "
                    f"ctypes.CDLL(None).syscall({ {'x86_64': 60, 'aarch64': 93}[os.uname().machine] }, 0)\"")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("State:"))
    except OSError:
        return ""


def _threads_running(pid: int) -> bool:
    """Whether ``pid`` still runs a thread (its state may read Z: its main thread ended)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    return fields.get("State", "").split()[:1] != ["Z"] or int(fields.get("Threads", "1")) > 1


def _pid_in(path: Path) -> int:
    """The pid a job wrote to ``path``, once it is there."""
    wait_for(lambda: path.exists() and path.read_text().strip().isdigit(), f"{path.name} to be written")
    return int(path.read_text())


def _cancel_stopped(backend: LocalExecutionBackend, handle: RunHandle) -> None:
    """Cancel a job once it has stopped its wrapper, again (as the worker's loop does) until it ends."""
    wait_for(lambda: _state(handle.pid) == "T", "the job to stop its wrapper")  # type: ignore[arg-type]
    backend.cancel(handle)

    def ended() -> bool:
        backend.cancel(handle)
        return backend.poll(handle) is not None

    wait_for(ended, "the job to end")


@pytest.mark.skipif(os.geteuid() != 0, reason="a process of another uid to spare needs root")
def test_a_pid_reused_by_another_uid_after_the_pass_read_it_is_not_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's kill of what a session left (``CAP_KILL``: any process) checked each pid's uid
    in its pass over ``/proc``, then killed by pid: a pid reused meanwhile by another account's
    process was killed. Now the uid is read again while a pidfd holds the process, and the kill
    goes through it. The pass is made to name a process of root's, as a reused pid would be."""
    victim = subprocess.Popen(["/bin/sleep", "600"])
    try:
        monkeypatch.setattr(local, "_session_and_descendants", lambda sid, uid, leader=False: [victim.pid])
        local._kill_in_passes(victim.pid + 1_000_000, 65534, leader=False)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


class TestLeftovers:
    """A process the job moved to another process group of the wrapper's session is not in the
    payload's group, which is all the wrapper used to kill: it outlived the job and its cancel."""

    @pytest.mark.parametrize("cancelled", [False, True], ids=["ended", "cancelled"])
    def test_the_wrapper_kills_what_its_job_left_in_its_session(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cancelled: bool
    ) -> None:
        script = f"{MOVED_AWAY}; echo up > up; " + ("while :; do sleep 0.1; done" if cancelled else "exit 0")
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        moved = _pid_in(handle.work_dir / "bg.pid")
        try:
            if cancelled:
                wait_for((handle.work_dir / "up").exists, "the job to start")
                backend.cancel(handle)
            wait_for(lambda: backend.poll(handle) is not None, "the job to end")
            outcome = backend.poll(handle)
            assert outcome is not None
            assert outcome.state == (JobState.CANCELLED if cancelled else JobState.DONE), outcome
            wait_for(lambda: not alive(moved), "the process the job moved away to be killed")
        finally:
            if alive(moved):
                os.kill(moved, signal.SIGKILL)

    @pytest.mark.parametrize("cancelled", [False, True], ids=["ended", "cancelled"])
    def test_a_process_whose_main_thread_ended_alone_is_killed_too(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cancelled: bool
    ) -> None:
        """Its state reads ``Z`` while its other threads run: it was skipped as a zombie."""
        script = (f"{MAIN_THREAD_ENDS} & while [ ! -s zl.pid ]; do sleep 0.05; done; "
                  "until grep -q '^State:.Z' /proc/$(cat zl.pid)/status; do sleep 0.05; done; "
                  + ("while :; do sleep 0.1; done" if cancelled else "exit 0"))
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        leader = _pid_in(handle.work_dir / "zl.pid")
        try:
            if cancelled:  # an ended job waited for it itself: its end may kill it before a look here
                wait_for(lambda: _threads_running(leader) and _state(leader) == "Z", "its main thread to end")
                backend.cancel(handle)
            wait_for(lambda: backend.poll(handle) is not None, "the job to end")
            wait_for(lambda: not _threads_running(leader), "the process to be killed")
        finally:
            if _threads_running(leader):
                os.kill(leader, signal.SIGKILL)

    def test_a_session_leader_whose_main_thread_ended_alone_is_running_and_killed_as_a_leftover(
        self, tmp_path: Path
    ) -> None:
        """A job may trace its wrapper (same uid) and make its main thread end alone: the
        wrapper then reads Z while a thread runs on. It was taken for ended, and its session's
        leftover kill spared the leader itself."""
        code = MAIN_THREAD_ENDS.replace("os.setpgid(0, 0)", "os.setsid()").split('"')[1]
        leader = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
        try:
            pid = _pid_in(tmp_path / "zl.pid")
            wait_for(lambda: _threads_running(pid) and _state(pid) == "Z", "its main thread to end")
            started = int(local._stat_fields(pid)[19])  # type: ignore[index]
            assert local.is_process(pid, started)
            local._kill_leftovers(pid, started, os.getuid())
            wait_for(lambda: not _threads_running(pid), "the leader to be killed")
        finally:
            if _threads_running(leader.pid):
                os.kill(leader.pid, signal.SIGKILL)
            leader.wait(timeout=120)

    @pytest.mark.parametrize("how", ["cancel", "release"])
    def test_what_a_killed_wrapper_left_is_killed_by_a_cancel_or_the_release(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, how: str
    ) -> None:
        """The wrapper was killed (the OOM killer, say) and killed nothing: a cancel of the job, or
        its release, kills the processes left in its session (its pid, the session's id)."""
        script = f"echo $$ > payload.pid; {MOVED_AWAY}; while :; do sleep 0.1; done"
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        assert handle.pid is not None
        payload = _pid_in(handle.work_dir / "payload.pid")
        moved = _pid_in(handle.work_dir / "bg.pid")
        try:
            os.kill(handle.pid, signal.SIGKILL)
            wait_for(lambda: backend.poll(handle) is not None, "the wrapper's end to be seen")
            assert alive(payload) and alive(moved)  # nothing killed them
            if how == "cancel":
                backend.cancel(handle)
            else:
                backend.release(handle)
            wait_for(lambda: not alive(payload) and not alive(moved), "what the wrapper left to be killed")
        finally:
            kill_session(handle.pid)


class TestForgedStatus:
    @pytest.mark.parametrize("status", ["well-formed", "malformed", "at-once"])
    @pytest.mark.parametrize("zygotes", [True, False], ids=["zygote", "direct"])
    def test_a_wrapper_killed_after_a_forged_status_is_aborted_and_what_it_left_killed_at_the_release(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, zygotes: bool, status: str
    ) -> None:
        """The job wrote its own status.json and SIGKILLed its wrapper (same uid). A well-formed one
        saying "exit code 0" had the job recorded Done; and the release, which trusted a status
        file to mean the wrapper had killed the session, left its processes running (unless the
        worker had started the wrapper itself: its exit status). The wrapper's end is now known
        from its wait status (a zygote's wrapper: through a pidfd, Linux 6.15+, which the worker opens
        before the wrapper may run its job: ``at-once`` kills it first thing, before the worker
        could have read the zygote's answer)."""
        if zygotes and not processes.EXIT_STATUS_KNOWN:
            pytest.skip("the exit status of a process that is not the worker's child needs Linux 6.15+")
        backend.use_zygotes = zygotes
        forge = f"echo {shlex.quote(FORGED_STATUS if status != 'malformed' else '{}')} > {STATE_DIR}/{STATUS_NAME}"
        script = (f"{forge}; kill -9 $PPID; echo $$ > payload.pid; {MOVED_AWAY}; while :; do sleep 0.1; done"
                  if status == "at-once" else
                  f"echo $$ > payload.pid; {MOVED_AWAY}; {forge}; kill -9 $PPID; while :; do sleep 0.1; done")
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        assert handle.pid is not None
        assert (handle.process is None) == zygotes
        payload = _pid_in(handle.work_dir / "payload.pid")
        moved = _pid_in(handle.work_dir / "bg.pid")
        try:
            wait_for(lambda: backend.poll(handle) is not None, "the wrapper's end to be seen")
            reason = "the job wrapper was killed by signal 9 after the payload had started (deep failure)"
            assert backend.poll(handle) == JobOutcome(JobState.ABORTED, reason=reason, payload_started=True,
                                                      recorded=False)
            assert alive(payload) and alive(moved)
            backend.release(handle)
            wait_for(lambda: not alive(payload) and not alive(moved), "what the wrapper left to be killed")
        finally:
            kill_session(handle.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(moved, signal.SIGKILL)


    def test_how_every_zygote_wrapper_ended_is_known_also_of_jobs_that_end_at_once(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """A wrapper runs nothing of its job before the worker has opened its pidfd (the zygote
        holds it): a job that ended, or killed its wrapper, before the worker read the zygote's
        answer left its end unknown (about a third of ``/bin/true`` jobs), its status taken as written."""
        if not processes.EXIT_STATUS_KNOWN:
            pytest.skip("the exit status of a process that is not the worker's child needs Linux 6.15+")
        jobs = [dataclasses.replace(launch(input_dir, account, "", executable="/bin/true", arguments=[],
                                           job_id=f"{JOB}{i}"), job_id=f"{JOB}{i}") for i in range(16)]
        handles = [backend.prepare(job) for job in jobs]
        backend.spawn_batch(handles)
        for handle in handles:
            backend.spawn(handle)
            assert handle.process is None  # forked by the zygote
        wait_for(lambda: all(backend.poll(handle) is not None for handle in handles), "the jobs to end")
        assert [backend._wrapper_end(handle) for handle in handles] == [0] * len(handles)  # exit(0), all known


#: A well-formed status.json a job writes for its wrapper: the payload ran and exited 0.
FORGED_STATUS = json.dumps({
    "version": 1, "job_id": JOB, "wrapper_pid": 1, "hostname": HOST, "started_at": "2026-12-01T00:00:00.000000Z",
    "ended_at": "2026-12-01T00:00:02.000000Z", "payload_started": True,
    "payload_started_at": "2026-12-01T00:00:01.000000Z", "exit_code": 0, "signal": None, "cancelled_by": None,
    "prologue": None, "epilogue": None, "failure": None, "notes": []})


#: A payload that stops its wrapper (same uid), whose SIGALRM holds the wall time, after it has
#: left a process in its session, one in a session of its own (``setsid``), and a double-forked
#: one in a session of its own, whose parent ended (the wrapper adopted it), writing their pids.
STOPS_ITS_WRAPPER = ("echo $$ > payload.pid; sleep 600 & echo $! > child.pid; setsid sleep 600 & echo $! > away.pid; "
                     "sh -c 'setsid sh -c \"echo \\$\\$ > orphan.pid; exec sleep 600\" &'; "
                     "while [ ! -s orphan.pid ]; do sleep 0.05; done; "
                     "kill -STOP $PPID; while :; do sleep 0.1; done")
STOPS_ITS_WRAPPER_LEAVES = ("payload.pid", "child.pid", "away.pid", "orphan.pid")


def _ticks_ago(seconds: float) -> int:
    """A process start time (clock ticks after boot) ``seconds`` ago."""
    ticks = os.sysconf("SC_CLK_TCK")
    return int((time.clock_gettime(time.CLOCK_BOOTTIME) - seconds) * ticks)


class TestWallTimeBackstop:
    """The wrapper's own clock (its SIGALRM) was the only one: a job that SIGSTOPped its wrapper
    ran on past its wall time, holding its slot, and the worker kept seeing a live wrapper."""

    @pytest.mark.parametrize("follower", ["zygote", "worker", "adopter"])
    def test_a_job_that_stopped_its_wrapper_is_killed_and_aborted_at_its_wall_time(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch, follower: str
    ) -> None:
        monkeypatch.setattr(local, "CANCEL_MARGIN", 0.0)
        backend.use_zygotes = follower != "worker"  # "worker": started by the worker itself, no start time in its ref
        handle = backend.spawn(backend.prepare(launch(input_dir, account, STOPS_ITS_WRAPPER, wall_time=2.0)))
        assert handle.pid is not None
        pids = [_pid_in(handle.work_dir / name) for name in STOPS_ITS_WRAPPER_LEAVES]
        try:
            wait_for(lambda: _state(handle.pid) == "T", "the job to stop its wrapper")  # type: ignore[arg-type]
            if follower == "adopter":  # a worker that adopts the job reads the wall time in its reference
                heir = LocalExecutionBackend(backend.work_root, HOST, kill_grace=2.0)
                followed = heir.attach(handle.ref, account)
                assert followed is not None and followed.wall_time == 2.0
            else:
                heir, followed = backend, handle
            outcomes: list[JobOutcome] = []

            def ended() -> bool:
                outcome = heir.poll(followed)
                if outcome is not None:
                    outcomes.append(outcome)
                return outcome is not None

            wait_for(ended, "the job to end")
            (outcome,) = outcomes
            assert outcome.state == JobState.ABORTED and outcome.payload_started, outcome
            assert outcome.reason is not None and outcome.reason.startswith(f"{WALL_TIME_EXCEEDED} of 2 s")
            assert "deep failure" in outcome.reason
            wait_for(lambda: not any(alive(pid) for pid in [handle.pid, *pids]),  # type: ignore[list-item]
                     "the wrapper and every process of the job to be killed")
            heir.release(followed)
        finally:
            kill_session(handle.pid)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def test_a_job_that_stopped_its_wrapper_is_killed_past_its_cancels_grace(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The stopped wrapper heeds no SIGTERM: past the grace the worker kills it, its session,
        and what it adopted outside its session (killed with it, before init gets it)."""
        monkeypatch.setattr(local, "CANCEL_MARGIN", 0.0)
        handle = backend.spawn(backend.prepare(launch(input_dir, account, STOPS_ITS_WRAPPER)))
        assert handle.pid is not None
        pids = [_pid_in(handle.work_dir / name) for name in STOPS_ITS_WRAPPER_LEAVES]
        try:
            _cancel_stopped(backend, handle)
            wait_for(lambda: not any(alive(pid) for pid in [handle.pid, *pids]),  # type: ignore[list-item]
                     "the wrapper and every process of the job to be killed")
        finally:
            kill_session(handle.pid)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def test_a_chain_of_forks_under_a_stopped_wrapper_is_killed_past_its_cancels_grace(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hostile review's payload (:data:`tests.leftover_support.STOPCHAIN_C`): under S (its own
        session, a subreaper that reaps), a chain of processes that fork their successor and exit;
        the payload stops its wrapper. The worker killed the wrapper first, with what one pass
        over ``/proc`` found of its descendants (the chain had moved on by then): the chain went
        to init and ran on. Now the wrapper is killed last, once its descendants are gone."""
        if shutil.which("gcc") is None:
            need_peer("the payload is built with gcc")
        monkeypatch.setattr(local, "CANCEL_MARGIN", 0.0)
        payload = build(STOPCHAIN_C, backend.work_root.parent / "stopchain")
        handle = backend.spawn(backend.prepare(launch(input_dir, account, "", executable=str(payload),
                                                      arguments=["chain.sid", str(2 * DEADLINE)])))
        assert handle.pid is not None
        sid = _pid_in(handle.work_dir / "chain.sid")
        try:
            _cancel_stopped(backend, handle)
            wait_for(lambda: not group_left(sid), "the chain to be killed (and reaped)")
        finally:
            kill_group(sid)
            kill_session(handle.pid)

    def test_a_job_within_its_wall_time_is_left_alone(self, backend: LocalExecutionBackend, input_dir: Path,
                                                      account: Account | None) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, STOPS_ITS_WRAPPER, wall_time=3600.0)))
        payload = _pid_in(handle.work_dir / "payload.pid")
        try:
            wait_for(lambda: _state(handle.pid) == "T", "the job to stop its wrapper")  # type: ignore[arg-type]
            assert backend.poll(handle) is None and not handle.overrun
            assert alive(payload)
        finally:
            kill_session(handle.pid)  # type: ignore[arg-type]

    @pytest.mark.parametrize(("wall_time", "age", "cancelled", "overran"), [
        (10.0, 43.0, False, True),  # wall time 10 + kill grace 2 + margin 30 = 42 s passed
        (10.0, 32.0, False, False),  # 10 s short of it: headroom for a loaded machine between the two reads
        (10.0, 43.0, True, False),  # a cancel escalates on its own (and the job ends Cancelled)
        (None, 100000.0, False, False),
    ])
    def test_the_wrappers_process_start_decides(self, backend: LocalExecutionBackend, tmp_path: Path,
                                                wall_time: float | None, age: float, cancelled: bool,
                                                overran: bool) -> None:
        """Counted from the wrapper's start as the kernel tells it (in the reference), never from a
        file of the work dir the job could rewrite."""
        handle = RunHandle(ref=f"local:{HOST}:{os.getpid()}@{_ticks_ago(age)}:job", work_dir=tmp_path, account=None,
                           pid=os.getpid(), wall_time=wall_time, cancel_sent_at=1.0 if cancelled else None)
        assert backend._overran(handle) is overran

    def test_the_wall_time_is_in_the_reference(self, backend: LocalExecutionBackend, input_dir: Path,
                                               account: Account | None) -> None:
        prepared = backend.prepare(launch(input_dir, account, "exit 0", wall_time=90.5))
        assert prepared.ref == f"local:{HOST}:-+90.5:{prepared.work_dir.name}"
        assert backend.attach(prepared.ref, account).wall_time == 90.5  # type: ignore[union-attr]
        assert parse_ref(f"local:{HOST}:123@456+60:job") == (HOST, 123, "job")
        assert (local.ref_start_time(f"local:{HOST}:123@456+60:job"), local.ref_wall_time(f"local:{HOST}:12+60:j")) \
            == (456, 60.0)
        assert local.ref_wall_time(f"local:{HOST}:123@456:job") is None
        for ref in (f"local:{HOST}:12+:job", f"local:{HOST}:12+1e3:job", f"local:{HOST}:+60:job"):
            assert parse_ref(ref) is None


class TestEnvironmentAndFiles:
    def test_environment_is_built_from_scratch(self, backend: LocalExecutionBackend, input_dir: Path,
                                               account: Account | None, proxy_pem: bytes,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WMPROXY_WORKER_SECRET", "worker-only")
        monkeypatch.setenv("LD_PRELOAD", "/nonexistent/evil.so")
        handle, outcome = run(backend, launch(input_dir, account, "env > env.txt; id -u > uid.txt",
                                              proxy_pem=proxy_pem))
        assert outcome.exit_code == 0, outcome
        env = dict(line.split("=", 1) for line in (handle.work_dir / "env.txt").read_text().splitlines() if "=" in line)
        assert "WMPROXY_WORKER_SECRET" not in env and "LD_PRELOAD" not in env
        assert env["HOME"] == str(handle.work_dir)
        assert env["TMPDIR"].startswith(str(handle.work_dir) + "/")
        assert env["X509_USER_PROXY"] == str(handle.work_dir / PROXY_NAME)
        assert env["GLITE_WMS_JOBID"] == JOB
        expected_uid = os.geteuid() if account is None else account.uid
        assert int((handle.work_dir / "uid.txt").read_text()) == expected_uid

    def test_proxy_copy_is_0600_of_the_account_and_goes_with_the_work_dir(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, proxy_pem: bytes
    ) -> None:
        handle = backend.prepare(launch(input_dir, account, "true", proxy_pem=proxy_pem))
        st = os.lstat(handle.work_dir / PROXY_NAME)
        owner = os.geteuid() if account is None else account.uid
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (owner, 0o600)
        assert (handle.work_dir / PROXY_NAME).read_bytes() == proxy_pem
        backend.release(handle)
        assert not handle.work_dir.exists()

    def test_input_sandbox_is_staged_and_handed_over(self, backend: LocalExecutionBackend, input_dir: Path,
                                                     account: Account | None) -> None:
        (input_dir / "job.sh").write_text("#!/bin/sh\necho from-isb\n")
        handle, outcome = run(backend, launch(input_dir, account, "", executable="job.sh", arguments=[],
                                              isb=("job.sh",)))
        assert outcome.exit_code == 0, outcome
        assert (handle.work_dir / "out").read_text() == "from-isb\n"
        owner = os.geteuid() if account is None else account.uid
        assert os.lstat(handle.work_dir / "job.sh").st_uid == owner

    @pytest.mark.parametrize("kind", ["missing", "symlink"])
    def test_an_input_file_not_uploaded_refuses_the_start(self, backend: LocalExecutionBackend, input_dir: Path,
                                                          account: Account | None, tmp_path: Path, kind: str) -> None:
        if kind == "symlink":
            (tmp_path / "secret").write_text("key")
            (input_dir / "job.sh").symlink_to(tmp_path / "secret")
        with pytest.raises(BackendError, match=r"job\.sh has not been uploaded"):
            backend.prepare(launch(input_dir, account, "true", isb=("job.sh",)))
        assert not (backend.work_root / to_filename(JOB)).exists()

    def test_no_input_area_yet_is_an_empty_input_sandbox(self, backend: LocalExecutionBackend, tmp_path: Path,
                                                         account: Account | None) -> None:
        # input/ is made by the first upload: a job that uploaded nothing has none.
        never_uploaded = tmp_path / "job" / "input"
        handle, outcome = run(backend, launch(never_uploaded, account, "echo ran"))
        assert outcome.exit_code == 0, outcome
        assert (handle.work_dir / "out").read_text() == "ran\n"
        backend.release(handle)
        with pytest.raises(BackendError, match=r"input sandbox file job\.sh has not been uploaded"):
            backend.prepare(launch(never_uploaded, account, "true", isb=("job.sh", "data")))
        assert not never_uploaded.exists()

    @pytest.mark.parametrize("name", [PROXY_NAME, STATE_DIR])
    def test_an_input_file_named_as_a_service_file_refuses_the_start(
            self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, proxy_pem: bytes,
            name: str) -> None:
        """A job registered before such entries were refused: staged, ``user.proxy`` was written
        over by the job's proxy (the payload read the owner's credential, its file lost, Done),
        ``.wmproxy`` failed with "Cannot stage .wmproxy: File exists"."""
        (input_dir / name).write_text("the user's data\n")
        with pytest.raises(BackendError, match=rf"^input sandbox file '{re.escape(name)}' cannot be staged: the "
                                               r"job's work directory holds the .* under that name \(the job was "
                                               r"registered before InputSandbox entries so named were refused\)$"):
            backend.prepare(launch(input_dir, account, "cat user.proxy", proxy_pem=proxy_pem, isb=(name,)))
        assert not (backend.work_root / to_filename(JOB)).exists()

    def test_a_broken_proxy_refuses_the_start(self, backend: LocalExecutionBackend, input_dir: Path,
                                              account: Account | None) -> None:
        with pytest.raises(BackendError):
            backend.prepare(launch(input_dir, account, "true", proxy_pem=b"not a proxy"))
        assert not (backend.work_root / to_filename(JOB)).exists()


class TestOnceOnly:
    def test_a_leftover_work_dir_that_never_started_is_replaced(self, backend: LocalExecutionBackend,
                                                                input_dir: Path, account: Account | None) -> None:
        first = backend.prepare(launch(input_dir, account, "true"))
        (first.work_dir / "leftover").write_text("x")
        second = backend.prepare(launch(input_dir, account, "true"))
        assert not (second.work_dir / "leftover").exists()

    def test_a_work_dir_whose_payload_started_is_never_prepared_again(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle, _ = run(backend, launch(input_dir, account, "exit 0"))
        assert not (handle.work_dir / STATE_DIR / STARTED_NAME).exists()  # renamed to status.json at the end
        with pytest.raises(BackendError, match="already been started"):
            backend.prepare(launch(input_dir, account, "true"))

    def test_a_work_dir_whose_status_says_started_is_never_prepared_again(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle, _ = run(backend, launch(input_dir, account, "exit 0"))
        status = handle.work_dir / STATE_DIR / STATUS_NAME
        text = status.read_text()
        (handle.work_dir / STATE_DIR / STARTED_NAME).unlink(missing_ok=True)  # as the wrapper leaves it
        with pytest.raises(BackendError, match="already been started"):
            backend.prepare(launch(input_dir, account, "true"))
        status.write_text("{")  # unreadable: taken as started
        with pytest.raises(BackendError, match="already been started"):
            backend.prepare(launch(input_dir, account, "true"))
        status.write_text(text.replace('"payload_started": true', '"payload_started": false'))
        backend.prepare(launch(input_dir, account, "true"))  # never started (e.g. its prologue failed): again

    def test_a_job_forked_by_the_zygote_gets_its_spec_in_memory(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle = backend.prepare(launch(input_dir, account, "exit 4"))
        assert not (handle.work_dir / STATE_DIR / SPEC_NAME).exists()  # one inode fewer per job
        backend.spawn(handle)
        wait_for(lambda: backend.poll(handle) is not None, "the job to end")
        assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=4, payload_started=True)
        assert handle.process is None and not (handle.work_dir / STATE_DIR / SPEC_NAME).exists()

    def test_a_root_worker_without_an_account_starts_nothing(self, backend: LocalExecutionBackend,
                                                             input_dir: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("only a root worker refuses to run jobs as itself")
        handle = backend.prepare(launch(input_dir, None, "true"))
        with pytest.raises(BackendError, match="root"):
            backend.spawn(handle)


class TestBackgroundRemoval:
    def test_a_released_work_dir_is_set_aside_at_once_and_removed_by_tidy(
        self, work_root: Path, input_dir: Path, account: Account | None
    ) -> None:
        root = work_root / "tidy"
        root.mkdir(mode=0o755)
        left = root / ".discarded.from-a-previous-life"
        (left / "tmp").mkdir(parents=True)  # what a stopped worker set aside and never removed
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, background_removal=True)
        handle, outcome = run(backend, launch(input_dir, account, "mkdir -p a/b; echo x > a/b/f; exit 0"))
        assert outcome is not None and outcome.exit_code == 0
        backend.release(handle)
        assert not handle.work_dir.exists()  # a next attempt never finds it
        assert sorted(p.name.startswith(".discarded.") for p in root.iterdir()) == [True, True]
        assert backend.tidy() == 2
        assert list(root.iterdir()) == []
        assert backend.tidy() == 0

    def test_a_work_dir_that_cannot_be_removed_is_kept_and_tried_again_later(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root: an immutable file (chattr +i)")
        root = work_root / "retry"
        root.mkdir(mode=0o755)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, background_removal=True)
        handle, _ = run(backend, launch(input_dir, account, "echo x > f; exit 0"))
        subprocess.run(["chattr", "+i", str(handle.work_dir / "f")], check=True)
        try:
            backend.release(handle)
            [aside] = list(root.iterdir())
            monkeypatch.setattr(local, "REMOVAL_RETRY", math.inf)
            assert backend.tidy() == 1  # the removal fails: logged, the directory kept
            assert backend.tidy() == 0 and list(root.iterdir()) == [aside]
        finally:
            subprocess.run(["chattr", "-R", "-i", str(root)], check=False)
        monkeypatch.setattr(local, "REMOVAL_RETRY", 0.0)
        backend.tidy()  # the later try
        assert list(root.iterdir()) == []

    def test_a_large_work_dir_is_removed_a_budget_at_a_time(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A work dir of 200,000 files held the worker's cycle for 2.2 s: the budget was looked
        at between work dirs only. Now a budget spent stops inside one, and the next call goes on
        with it first."""
        root = work_root / "large"
        root.mkdir(mode=0o755)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, background_removal=True)
        handle, outcome = run(backend, launch(input_dir, account, "for i in $(seq 1 40); do : > f$i; done; exit 0"))
        assert outcome is not None and outcome.exit_code == 0
        backend.release(handle)
        [aside] = list(root.iterdir())
        monkeypatch.setattr(trees, "REMOVALS_PER_CHECK", 8)
        assert backend.tidy(budget=0.0) == 1
        left = len(os.listdir(aside))
        assert 0 < left < 40  # some of the files removed, not all
        rounds = 1
        while aside.exists():
            assert backend.tidy(budget=0.0) == 1  # still pending, first in line
            rounds += 1
        assert rounds > 2 and list(root.iterdir()) == []
        assert backend.tidy(budget=0.0) == 0

    def test_a_deep_chain_is_walked_down_once_over_many_budgets(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A removal stopped at its budget went on by walking down the tree again: a job's chain of
        50,000 directories cost a walk down (about 1.3 s) per call, for each batch removed, for
        hours. It goes on where it stopped; another work dir released meanwhile is not held
        behind it."""
        root = work_root / "chain"
        root.mkdir(mode=0o755)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, background_removal=True)
        depth = 600
        handle, outcome = run(backend, launch(
            input_dir, account, f"i=0; while [ $i -lt {depth} ]; do mkdir a && cd -P a || exit 1; i=$((i+1)); done"))
        assert outcome is not None and outcome.exit_code == 0
        backend.release(handle)
        [chain] = list(root.iterdir())
        monkeypatch.setattr(trees, "REMOVALS_PER_CHECK", 50)
        opened = []
        real_open = os.open

        def counting_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & os.O_DIRECTORY:
                opened.append(path)
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(trees.os, "open", counting_open)
        assert backend.tidy(budget=0.0) == 1
        assert chain.exists()
        second, _ = run(backend, launch(input_dir, account, "exit 0"))
        backend.release(second)
        [other] = [p for p in root.iterdir() if p != chain]
        backend.tidy(budget=0.0)
        assert not other.exists() and chain.exists()  # the new one first, the chain kept where it was
        while chain.exists():
            backend.tidy(budget=0.0)
        # down and up once: each level opened going down and, past the descriptors kept, again
        # through ".." going up; walked down again at each of the 13 calls it was several thousand
        assert len(opened) < 3 * depth

    def test_whatever_a_removal_raises_tidy_goes_on_and_keeps_the_work_dir(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error that is not an IdentityError left tidy and ended the worker (RecursionError
        from a job's deep tree did, before the removal walked without recursion)."""
        root = work_root / "broken"
        root.mkdir(mode=0o755)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, background_removal=True)
        handle, _ = run(backend, launch(input_dir, account, "exit 0"))
        backend.release(handle)
        [aside] = list(root.iterdir())

        def broken(work_root: Path, name: str) -> None:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(identity, "work_dir_removal", broken)
        assert backend.tidy() == 1
        assert list(root.iterdir()) == [aside]
        monkeypatch.undo()
        monkeypatch.setattr(local, "REMOVAL_RETRY", 0.0)
        backend.tidy()
        assert list(root.iterdir()) == []


class TestAttach:
    def test_references_name_host_pid_and_work_dir(self) -> None:
        assert parse_ref(f"local:{HOST}:123:job_dir") == (HOST, 123, "job_dir")
        assert parse_ref(f"local:{HOST}:-:job_dir") == (HOST, None, "job_dir")
        for ref in ("worker:w1", f"local:{HOST}:x1:job", f"local:{HOST}:12:", "slurm:1"):
            assert parse_ref(ref) is None

    def test_another_backend_instance_follows_a_running_job_to_its_end(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        script = "while [ ! -e go ]; do sleep 0.1; done; exit 7"
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        heir = LocalExecutionBackend(backend.work_root, HOST)
        assert heir.attach(handle.ref, account) is not None
        assert LocalExecutionBackend(backend.work_root, "other.example.org").attach(handle.ref, account) is None
        adopted = heir.attach(handle.ref, account)
        assert adopted is not None and adopted.pid == handle.pid and adopted.process is None
        assert heir.poll(adopted) is None
        (handle.work_dir / "go").write_text("")
        deadline = time.monotonic() + DEADLINE
        while (outcome := heir.poll(adopted)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 7)

    def test_a_reference_without_pid_finds_the_wrapper_by_its_command_line(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        prepared = backend.prepare(launch(input_dir, account, "while [ ! -e go ]; do sleep 0.1; done"))
        scheduled_ref = prepared.ref
        assert scheduled_ref.split(":")[2] == "-"
        assert backend.attach(scheduled_ref, account).pid is None  # type: ignore[union-attr]
        handle = backend.spawn(prepared)
        found = backend.attach(scheduled_ref, account)
        assert found is not None and found.pid == handle.pid
        assert handle.pid is not None and is_wrapper(handle.pid, handle.work_dir, account)
        assert not is_wrapper(os.getpid(), handle.work_dir, account)
        (handle.work_dir / "go").write_text("")


    def test_another_accounts_process_naming_the_work_dir_is_not_taken_for_the_wrapper(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """Any user can run a session leader whose command line is ``jobwrapper.py <work dir>``;
        only one running as the job's account is its wrapper."""
        if account is None:
            pytest.skip("needs root: a second account")
        prepared = backend.prepare(launch(input_dir, account, "while [ ! -e go ]; do sleep 0.1; done"))
        scheduled_ref = prepared.ref
        with _other_account() as other:
            forger = subprocess.Popen(
                ["/bin/sh", "-c", "while :; do sleep 1; done", str(identity.WRAPPER_PATH), str(prepared.work_dir)],
                user=other.uid, group=other.gid, extra_groups=[], start_new_session=True, cwd="/",
                stdin=subprocess.DEVNULL)
            try:
                assert Path(f"/proc/{forger.pid}/cmdline").read_bytes().split(b"\0")[-2:] == \
                    [str(prepared.work_dir).encode(), b""]
                assert not is_wrapper(forger.pid, prepared.work_dir, account)
                assert backend.attach(scheduled_ref, account).pid is None  # type: ignore[union-attr]
                handle = backend.spawn(prepared)
                assert handle.pid is not None and is_wrapper(handle.pid, handle.work_dir, account)
                found = backend.attach(scheduled_ref, account)
                assert found is not None and found.pid == handle.pid
                (handle.work_dir / "go").write_text("")
                wait_for(lambda: backend.poll(found) is not None, "the job to end")
                assert backend.poll(found) == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)
                assert forger.poll() is None
            finally:
                forger.kill()
                forger.wait(timeout=DEADLINE)


def _another(input_dir: Path, account: Account | None, script: str, **kw: object) -> JobLaunch:
    """:func:`launch` of another job (its own id, so its own work dir)."""
    return dataclasses.replace(launch(input_dir, account, script, job_id=JOB + "2", **kw), job_id=JOB + "2")


def _spares(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(SPARE_PREFIX))


class TestSpareWorkDirs:
    """``reuse_work_dirs``: a released work dir of the usual layout is emptied and kept for
    the next job of the same account; anything unusual is removed as before."""

    @pytest.fixture
    def recycling(self, work_root: Path) -> Iterator[LocalExecutionBackend]:
        root = work_root / "spares"
        root.mkdir(mode=0o755)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=True)
        yield backend
        backend.close()

    def test_the_next_job_of_the_account_starts_in_the_emptied_work_dir(
        self, recycling: LocalExecutionBackend, input_dir: Path, account: Account | None, proxy_pem: bytes
    ) -> None:
        root = recycling.work_root
        leave = ("echo x > left; touch .hidden; ln -s /etc/passwd link; ln -s /nowhere dangling; mkfifo fifo; "
                 f"echo y > ro; chmod 400 ro; touch none; chmod 000 none; echo t > {TMP_DIR}/t; touch .wmproxy/extra")
        first, outcome = run(recycling, launch(input_dir, account, leave, proxy_pem=proxy_pem))
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0), outcome
        inode = os.stat(first.work_dir).st_ino
        recycling.release(first)
        assert not os.path.lexists(first.work_dir)
        [spare] = _spares(root)
        assert os.stat(spare).st_ino == inode
        owner = (os.geteuid(), os.getegid()) if account is None else (account.uid, account.gid)
        second = recycling.prepare(_another(input_dir, account, "ls -A > listing", proxy_pem=proxy_pem))
        assert os.stat(second.work_dir).st_ino == inode and _spares(root) == []
        assert sorted(os.listdir(second.work_dir)) == [TMP_DIR, ".wmproxy", PROXY_NAME]
        assert os.listdir(second.work_dir / STATE_DIR) == [] and os.listdir(second.work_dir / TMP_DIR) == []
        for path in (second.work_dir, second.work_dir / STATE_DIR, second.work_dir / TMP_DIR):
            st = os.lstat(path)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (*owner, 0o700), path
        proxy = os.lstat(second.work_dir / PROXY_NAME)
        assert (proxy.st_uid, proxy.st_gid, stat.S_IMODE(proxy.st_mode)) == (*owner, 0o600)
        recycling.spawn(second)
        wait_for(lambda: recycling.poll(second) is not None, "the second job's end")
        assert recycling.poll(second) == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)
        assert (second.work_dir / "listing").read_text().split() == [TMP_DIR, ".wmproxy", "err", "listing", "out",
                                                                     PROXY_NAME]
        recycling.release(second)
        recycling.close()
        assert list(root.iterdir()) == []  # no spare outlives the backend

    @pytest.mark.parametrize("script", [
        "mkdir -p a/b; echo x > a/b/f",                                 # a directory of the job's
        "mkdir ro; touch ro/f; chmod 500 ro",                          # a read-only one
        f"chmod 000 {TMP_DIR}",                                        # the TMPDIR made unusable
        "chmod 755 .",                                                 # the work dir opened to others
        f"rmdir {TMP_DIR}; ln -s /etc {TMP_DIR}",                      # a link in place of TMPDIR
        "chmod 711 .wmproxy",                                          # .wmproxy another mode
        f"chattr +D {TMP_DIR}",                                        # an inode flag (dirsync)
        f"/usr/bin/python3 -c \"import os; os.setxattr('{TMP_DIR}', 'user.x', b'1')\"",  # an extended attribute
    ])
    def test_a_work_dir_with_anything_unusual_is_removed_not_kept(
        self, recycling: LocalExecutionBackend, input_dir: Path, account: Account | None, script: str
    ) -> None:
        handle, outcome = run(recycling, launch(input_dir, account, f"{script} && exit 0"))
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0), outcome
        recycling.release(handle)
        assert list(recycling.work_root.iterdir()) == []

    def test_a_spare_is_never_given_to_another_account(
        self, recycling: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        if account is None:
            pytest.skip("needs root: a second account")
        root = recycling.work_root
        first, _ = run(recycling, launch(input_dir, account, "exit 0"))
        recycling.release(first)
        [spare] = _spares(root)
        with contextlib.ExitStack() as stack:
            other = stack.enter_context(_other_account())
            handle = recycling.prepare(_another(input_dir, other, "exit 0"))
            st = os.lstat(handle.work_dir)
            assert (st.st_uid, st.st_gid) == (other.uid, other.gid)
            assert _spares(root) == [spare]  # still the first account's
            recycling.release(handle)
            # and the check at reuse refuses it even when asked: the spare is removed
            assert not identity.reuse_work_dir(root, spare.name, to_filename(JOB + "3"), other)
            assert list(root.iterdir()) == []

    def test_a_spare_written_into_since_its_release_is_not_reused(
        self, recycling: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        first, _ = run(recycling, launch(input_dir, account, "exit 0"))
        recycling.release(first)
        [spare] = _spares(root := recycling.work_root)
        (spare / TMP_DIR / "late").write_text("written by a process of the job still running")
        second = recycling.prepare(_another(input_dir, account, "exit 0"))
        assert sorted(os.listdir(second.work_dir)) == [".wmproxy"]  # a new one
        assert _spares(root) == []

    def test_a_spare_that_fails_its_check_and_cannot_be_removed_does_not_fail_the_job(
        self, recycling: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root: an immutable file (chattr +i)")
        first, _ = run(recycling, launch(input_dir, account, "exit 0"))
        recycling.release(first)
        [spare] = _spares(root := recycling.work_root)
        late = spare / TMP_DIR / "late"
        late.write_text("x")
        subprocess.run(["chattr", "+i", str(late)], check=True)
        try:
            second = recycling.prepare(_another(input_dir, account, "exit 0"))
            assert sorted(os.listdir(second.work_dir)) == [".wmproxy"]  # a new one
            [aside] = [p for p in root.iterdir() if p.name.startswith(".discarded.") and p != second.work_dir]
            assert not aside.name.startswith(SPARE_PREFIX) and (aside / TMP_DIR / "late").exists()
        finally:
            subprocess.run(["chattr", "-R", "-i", str(root)], check=False)

    def test_a_work_dir_with_many_files_is_not_emptied_in_the_cycle_but_set_aside(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Emptying a released work dir to keep it as a spare runs in the worker's cycle: one of
        200,000 files held it for 2.2 s. Past a few entries it goes to the background removal."""
        root = work_root / "many"
        root.mkdir(mode=0o755)
        monkeypatch.setattr(identity, "RECYCLE_MAX_ENTRIES", 10)
        backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=True, background_removal=True)
        for files, kept in ((6, True), (7, False)):  # with out, err, .wmproxy and tmp: 10, 11
            handle, outcome = run(backend, launch(input_dir, account, f"for i in $(seq 1 {files}); do : > f$i; done"))
            assert outcome is not None and outcome.exit_code == 0
            backend.release(handle)
            if kept:
                [spare] = _spares(root)
                assert sorted(os.listdir(spare)) == sorted((STATE_DIR, TMP_DIR))
                continue
            assert _spares(root) == []  # the second job took the first one's spare, and left none
            [aside] = [p for p in root.iterdir() if p.name.startswith(".discarded.")]
            assert len(os.listdir(aside)) == files + 4  # nothing unlinked in the cycle
        backend.tidy()
        assert list(root.iterdir()) == []

    def test_idle_spares_are_removed_by_tidy_and_a_dead_workers_at_start(
        self, work_root: Path, input_dir: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        backend, spare = _with_a_spare(work_root / "idle", input_dir, account)
        root = backend.work_root
        monkeypatch.setattr(local, "SPARE_IDLE", math.inf)  # however slow this machine: not idle yet
        assert backend.tidy() == 0  # used just now: kept
        assert _spares(root) == [spare]
        monkeypatch.setattr(local, "SPARE_IDLE", 0.0)
        backend.tidy()
        assert list(root.iterdir()) == []
        # a spare a worker that died left behind is removed by the next life's remover
        handle, _ = run(backend, launch(input_dir, account, "exit 0"))
        backend.release(handle)
        [spare] = _spares(root)
        local._Remover._by_root.pop(root)  # a new process: nothing known of the old one's spares
        reborn = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=True, background_removal=True)
        assert reborn.tidy() == 1
        assert list(root.iterdir()) == []

    def test_a_worker_starting_on_the_same_root_takes_the_spares_with_a_rename(
        self, work_root: Path, input_dir: Path, account: Account | None
    ) -> None:
        """Two workers may share a work root: the one starting takes the other's spares by
        renaming them before it removes them, so the other never reuses one being removed; it
        prepares new dirs."""
        first, spare = _with_a_spare(work_root / "shared", input_dir, account)
        root = first.work_root
        local._Remover._by_root.pop(root)  # the other worker is another process
        second = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=True, background_removal=True)
        assert _spares(root) == [] and not spare.exists()
        handle = first.prepare(_another(input_dir, account, "exit 0"))  # its spare is gone: a new dir
        assert sorted(os.listdir(handle.work_dir)) == [".wmproxy"]
        assert second.tidy() == 1
        assert [p.name for p in root.iterdir()] == [handle.work_dir.name]


def _with_a_spare(root: Path, input_dir: Path, account: Account | None) -> tuple[LocalExecutionBackend, Path]:
    """A backend on a new work root ``root`` (background removal, reusing work dirs) that has run
    and released one job, and the spare it kept."""
    root.mkdir(mode=0o755)
    backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=True, background_removal=True)
    handle, _ = run(backend, launch(input_dir, account, "exit 0"))
    backend.release(handle)
    [spare] = _spares(root)
    return backend, spare


@contextlib.contextmanager
def _other_account() -> Iterator[Account]:
    yield from create_account("wrapb")


def test_the_wall_time_kill_spares_a_pid_another_process_took() -> None:
    """The worker's wall-time kill names the wrapper by pid and start time: a process of the same
    account that got the pid since (a reaped wrapper's pid reused) is not killed."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        born = local.start_time(other.pid)
        assert born is not None
        local._kill_overrun(other.pid, os.getuid(), born - 1)  # the wrapper that started before, gone
        assert other.poll() is None
        local._kill_overrun(other.pid, os.getuid(), born)  # the wrapper itself
        assert other.wait(timeout=60) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            other.kill()
        other.wait()
