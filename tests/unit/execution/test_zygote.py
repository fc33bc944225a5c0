"""The local backend forks wrappers from a zygote per account (wmproxy.execution.zygote): the
wrapper runs as the account in its own session, is not the worker's child, is named by pid
and start time (a pid reused by another process is not taken for it), looks like a wrapper
on its command line; a broken zygote makes the backend start wrappers itself for a while."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import DEADLINE, HOST, alive, kill_session, launch, run, wait_for
from wmproxy.domain import JobState
from wmproxy.execution.backends import BackendError, JobLaunch, JobOutcome, RunHandle
from wmproxy.execution.backends.local import (
    LocalExecutionBackend,
    _child_in,
    _child_of,
    _stat_fields,
    is_process,
    is_wrapper,
    parse_ref,
    ref_start_time,
)
from wmproxy.execution.identity import WRAPPER_PATH, Account
from wmproxy.execution.zygote import MAX_REPLY, Zygote, _stopped, start_time


@pytest.fixture
def backend(work_root: Path) -> Iterator[LocalExecutionBackend]:
    backend = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=2.0)
    (work_root / "jobs").mkdir(mode=0o755)
    yield backend
    backend.close()


def _job(input_dir: Path, account: Account | None, script: str, index: int, **spec: object) -> JobLaunch:
    job = launch(input_dir, account, script, **spec)
    return dataclasses.replace(job, job_id=f"{job.job_id}-{index}")


def _cleanup(handle: RunHandle) -> None:
    if handle.pid is not None and alive(handle.pid):
        kill_session(handle.pid)
    if handle.process is not None:
        handle.process.wait(timeout=DEADLINE)


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


class TestForked:
    def test_the_wrapper_is_forked_by_the_zygote_as_the_account_in_its_own_session(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, "while [ ! -e go ]; do sleep 0.1; done")))
        try:
            assert handle.process is None and handle.pid is not None  # not the worker's child
            parsed = parse_ref(handle.ref)
            assert parsed == (HOST, handle.pid, handle.work_dir.name)
            assert ref_start_time(handle.ref) == start_time(handle.pid)
            assert os.getsid(handle.pid) == handle.pid
            assert _uid(handle.pid) == (os.getuid() if account is None else account.uid)
            argv = [p for p in Path(f"/proc/{handle.pid}/cmdline").read_bytes().split(b"\0") if p]
            assert argv[-2:] == [str(WRAPPER_PATH).encode(), str(handle.work_dir).encode()]
            assert is_wrapper(handle.pid, handle.work_dir, account)
            assert backend.poll(handle) is None
            heir = LocalExecutionBackend(backend.work_root, HOST).attach(handle.ref, account)  # a new worker life
            assert heir is not None and heir.pid == handle.pid and heir.ref == handle.ref
            (handle.work_dir / "go").write_text("")
            deadline = time.monotonic() + DEADLINE
            while (outcome := backend.poll(heir)) is None:
                assert time.monotonic() < deadline, "the job did not end"
                time.sleep(0.05)
            assert outcome == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)
        finally:
            _cleanup(handle)

    def test_the_zygote_holds_no_capability_and_no_secret_of_the_worker(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, "while [ ! -e go ]; do sleep 0.1; done")))
        try:
            (launcher,) = backend._zygotes.values()
            status = dict(line.split(":", 1) for line in
                          Path(f"/proc/{launcher.process.pid}/status").read_text().splitlines() if ":" in line)
            assert int(status["Uid"].split()[0]) == (os.getuid() if account is None else account.uid)
            # real, effective, saved and file system gids: the spare real gid it started with is gone
            assert set(status["Gid"].split()) == {str(os.getgid() if account is None else account.gid)}
            if os.geteuid() == 0:
                assert {int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")} == {0}
                assert status["NoNewPrivs"].strip() == "1" and status["Groups"].strip() in ("", str(account.gid))
            assert handle.pid is not None
            assert int(Path(f"/proc/{handle.pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == \
                launcher.process.pid  # the wrapper is the zygote's child
            modules = Path(f"/proc/{launcher.process.pid}/maps").read_text()
            assert "sqlalchemy" not in modules and "cryptography" not in modules  # no wmproxy server code
            (handle.work_dir / "go").write_text("")
        finally:
            _cleanup(handle)

    def test_a_wrapper_log_only_when_the_wrapper_has_something_to_write(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        quiet, outcome = run(backend, _job(input_dir, account, "exit 0", 0))
        assert outcome.exit_code == 0
        assert not (quiet.work_dir / ".wmproxy" / "wrapper.log").exists()
        chatty = backend.prepare(_job(input_dir, account, "exit 0", 1, prologue="/bin/sh",
                                      prologue_arguments=["-c", "echo prologue-ran"]))
        log = chatty.work_dir / ".wmproxy" / "wrapper.log"
        log.write_text("an earlier run's log\n")
        backend.spawn(chatty)
        wait_for(lambda: backend.poll(chatty) is not None, "the job to end")
        assert backend.poll(chatty) == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)
        assert log.read_text() == "prologue-ran\n"
        st = log.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.getuid() if account is None else account.uid)
        missing, outcome = run(backend, _job(input_dir, account, "exit 0", 2, executable="/nonexistent/program"))
        assert not outcome.payload_started
        assert "/nonexistent/program was not found" in (missing.work_dir / ".wmproxy" / "wrapper.log").read_text()

    def test_a_wrong_start_time_is_another_process(self, backend: LocalExecutionBackend, input_dir: Path,
                                                   account: Account | None) -> None:
        handle, outcome = run(backend, launch(input_dir, account, "exit 4"))
        assert outcome.exit_code == 4
        started = start_time(os.getpid())
        assert started is not None
        assert is_process(os.getpid(), started) is (os.getsid(0) == os.getpid())
        assert not is_process(os.getpid(), started + 1)
        reused = f"local:{HOST}:{os.getpid()}@{started + 1}:{handle.work_dir.name}"
        stale = backend.attach(reused, account)
        assert stale is not None and stale.pid == os.getpid()
        assert backend.poll(stale) is not None  # never taken for a running wrapper

    def test_several_jobs_of_a_batch_in_one_round_trip(self, backend: LocalExecutionBackend, input_dir: Path,
                                                       account: Account | None) -> None:
        script = "while [ ! -e go ]; do sleep 0.1; done; exit {}"
        handles = [backend.prepare(_job(input_dir, account, script.format(index), index)) for index in range(3)]
        backend.spawn_batch(handles)
        assert all(h.pid is not None and ref_start_time(h.ref) is not None for h in handles)
        for handle in handles:
            (handle.work_dir / "go").write_text("")
        for index, handle in enumerate(handles):
            assert backend.spawn(handle) is handle  # already started: spawn changes nothing
            wait_for(lambda h=handle: backend.poll(h) is not None, "the job to end")  # type: ignore[misc]
            assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=index, payload_started=True)

    def test_a_refused_work_dir_inside_a_batch_leaves_the_others_started_in_order(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        # the zygote forks every child of a batch before it awaits the first answer; the jobs
        # wait for "go", so none can end (and be reaped) before the worker checks its pid
        script = "while [ ! -e go ]; do sleep 0.1; done; exit {}"
        handles = [backend.prepare(_job(input_dir, account, script.format(index), index)) for index in range(3)]
        gone = handles[1].work_dir
        for entry in sorted(gone.rglob("*"), reverse=True):
            entry.unlink() if not entry.is_dir() or entry.is_symlink() else entry.rmdir()
        gone.rmdir()
        backend.spawn_batch(handles)
        assert handles[1].pid is None
        assert [h.pid is not None for h in (handles[0], handles[2])] == [True, True]
        assert backend._zygotes  # the zygote is fine and kept
        for index in (0, 2):
            (handles[index].work_dir / "go").write_text("")
        for index in (0, 2):
            handle = handles[index]
            wait_for(lambda h=handle: backend.poll(h) is not None, "the job to end")  # type: ignore[misc]
            assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=index, payload_started=True)
        with pytest.raises(Exception, match="Cannot start the job wrapper"):
            backend.spawn(handles[1])

    def test_a_work_dir_the_zygote_cannot_enter_is_refused(self, backend: LocalExecutionBackend, input_dir: Path,
                                                           account: Account | None) -> None:
        handle = backend.prepare(launch(input_dir, account, "true"))
        for entry in sorted(handle.work_dir.rglob("*"), reverse=True):
            entry.unlink() if not entry.is_dir() or entry.is_symlink() else entry.rmdir()
        handle.work_dir.rmdir()
        with pytest.raises(Exception, match="Cannot start the job wrapper"):
            backend.spawn(handle)
        assert backend._zygotes  # the zygote is fine and kept


class TestIdle:
    def test_an_idle_zygote_is_closed_and_the_next_job_gets_a_new_one(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pool account may later go to another grid user: a zygote that a job of the first
        user could have taken over must not fork the second user's wrappers."""
        run(backend, _job(input_dir, account, "true", 0))
        (first,) = backend._zygotes.values()
        monkeypatch.setattr("wmproxy.execution.backends.local.ZYGOTE_IDLE", 0.0)
        handle, outcome = run(backend, _job(input_dir, account, "exit 3", 1))
        assert outcome.exit_code == 3 and handle.process is None  # forked by a zygote
        (second,) = backend._zygotes.values()
        assert second is not first
        first.process.wait(timeout=DEADLINE)  # the idle one was told to go, and went

    def test_an_idle_zygote_is_closed_by_the_idle_workers_tidy(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An account's zygote is closed after :data:`ZYGOTE_IDLE` seconds without a job also
        when no other job comes (the worker tidies when it is about to wait): it was closed only
        at the next spawn of any account, so an idle worker kept every account's zygote."""
        run(backend, _job(input_dir, account, "true", 0))
        (first,) = backend._zygotes.values()
        backend.tidy()
        assert backend._zygotes  # not idle long enough: kept
        monkeypatch.setattr("wmproxy.execution.backends.local.ZYGOTE_IDLE", 0.0)
        backend.tidy()
        assert not backend._zygotes
        first.process.wait(timeout=DEADLINE)  # told to go, and went

    def test_wrappers_ending_while_the_zygote_waits_are_reaped_without_another_request(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """The zygote reaps its ended wrappers as they end, not when the worker next asks it for
        something: a SIGCHLD that lands just before the zygote blocks in its wait for the next
        request wakes it through the signal's wake-up pipe (a job that exits at once ends in
        that window now and then)."""
        for batch in range(5):
            handles = [backend.prepare(_job(input_dir, account, "exit 0", 10 * batch + index)) for index in range(8)]
            backend.spawn_batch(handles)
            (launcher,) = backend._zygotes.values()
            pids = [h.pid for h in handles]

            def none_left(pids: list[int | None] = pids, parent: int = launcher.process.pid) -> bool:
                return not any((fields := _stat_fields(pid)) is not None and int(fields[1]) == parent
                               for pid in pids if pid is not None)

            wait_for(none_left, "the zygote to reap its ended wrappers")
            for handle in handles:
                assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)


class TestFallback:
    def test_a_dead_zygote_is_replaced_by_direct_starts_logged_once(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = run(backend, launch(input_dir, account, "true"))
        assert first.process is None
        (launcher,) = backend._zygotes.values()
        os.kill(launcher.process.pid, signal.SIGKILL)
        launcher.process.wait(timeout=DEADLINE)
        with caplog.at_level(logging.WARNING, logger="wmproxy.execution.backends.local"):
            for index in range(2):
                handle, outcome = run(backend, _job(input_dir, account, "exit 5", index))
                assert outcome.exit_code == 5
                assert handle.process is not None  # started by the worker itself
                assert ref_start_time(handle.ref) is None
                handle.process.wait(timeout=DEADLINE)
        assert len([r for r in caplog.records if "fork server" in r.getMessage()]) == 1
        assert not backend._zygotes

    def test_without_zygotes_the_worker_starts_the_wrapper(self, work_root: Path, input_dir: Path,
                                                           account: Account | None) -> None:
        backend = LocalExecutionBackend(work_root / "plain", HOST, kill_grace=2.0, zygotes=False)
        (work_root / "plain").mkdir(mode=0o755)
        handle, outcome = run(backend, launch(input_dir, account, "exit 0"))
        assert handle.process is not None and outcome.state == JobState.DONE
        handle.process.wait(timeout=DEADLINE)
        assert not backend._zygotes


FORGING_ZYGOTE = """
import os, sys
fd = int(sys.argv[1])
with os.fdopen(os.dup(fd), "rb") as requests:
    for _line in requests:
        os.write(fd, b"1 0\\n")  # names init, which the worker could be made to signal
"""


#: A zygote that dies at its first request, forking nothing and answering nothing.
DYING_ZYGOTE = """
import os, sys
os.read(int(sys.argv[1]), 65536)
os._exit(1)
"""


def _runs(handle: RunHandle) -> int:
    """How often the job's payload ran (it appends a line to ``runs`` in its work dir)."""
    path = handle.work_dir / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _fake_zygote(backend: LocalExecutionBackend, account: Account | None, tmp_path: Path, source: str) -> None:
    """Make the Python program ``source`` (e.g. :data:`DYING_ZYGOTE`) ``account``'s zygote."""
    script = tmp_path / "zygote.py"
    script.write_text(source)
    key = None if account is None else (account.uid, account.gid)
    backend._zygotes[key] = Zygote([sys.executable, str(script)], str(WRAPPER_PATH), sys.executable)


class TestLostZygote:
    def test_a_job_that_ran_before_its_zygote_died_unanswered_is_not_started_again(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, tmp_path: Path
    ) -> None:
        """The zygote forked the wrapper, which ran its payload and ended, then the zygote died
        before it answered: no wrapper to find, but the work dir shows the payload started."""
        handle = backend.prepare(_job(input_dir, account, "echo run >> runs; exit 3", 0))
        forked = dataclasses.replace(handle)  # what the zygote forked, as another handle
        other = LocalExecutionBackend(backend.work_root, HOST, kill_grace=2.0)
        try:
            other.spawn(forked)
            wait_for(lambda: other.poll(forked) is not None, "the job to end")
        finally:
            other.close()
        _fake_zygote(backend, account, tmp_path, DYING_ZYGOTE)
        backend.spawn_batch([handle])
        assert not backend._zygotes and handle.pid is None
        assert backend.spawn(handle) is handle and handle.process is None  # not started again
        assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=3, payload_started=True)
        assert _runs(handle) == 1

    def test_a_zygote_dying_before_it_forks_leaves_the_jobs_to_the_worker_once(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, tmp_path: Path
    ) -> None:
        _fake_zygote(backend, account, tmp_path, DYING_ZYGOTE)
        script = "echo run >> runs; while [ ! -e go ]; do sleep 0.1; done; exit {}"
        handles = [backend.prepare(_job(input_dir, account, script.format(index), index)) for index in range(2)]
        backend.spawn_batch(handles)
        assert not backend._zygotes and all(h.pid is None for h in handles)  # no wrapper found
        for index, handle in enumerate(handles):
            try:
                assert backend.spawn(handle) is handle and handle.process is not None  # started by the worker
                (handle.work_dir / "go").write_text("")
                wait_for(lambda h=handle: backend.poll(h) is not None, "the job to end")  # type: ignore[misc]
                assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=index, payload_started=True)
                assert _runs(handle) == 1
            finally:
                _cleanup(handle)


class TestUntrusted:
    def test_a_pid_that_is_not_the_zygotes_child_is_refused(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, tmp_path: Path,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        _fake_zygote(backend, account, tmp_path, FORGING_ZYGOTE)
        handle = backend.prepare(_job(input_dir, account, "exit 0", 0))
        with caplog.at_level(logging.WARNING, logger="wmproxy.execution.backends.local"), \
                pytest.raises(BackendError, match="not its child"):
            backend.spawn(handle)
        assert handle.pid is None and not backend._zygotes  # closed: its account's wrappers started directly
        assert any("fork server" in r.getMessage() for r in caplog.records)


#: A zygote that answers its first request with a well-formed refusal one byte every 0.1 s: never
#: a pause as long as the (shortened) reply timeout, 4 s for the whole answer.
TRICKLING_ZYGOTE = """
import os, sys, time
fd = int(sys.argv[1])
os.read(fd, 65536)
for byte in b"E refused, one byte at a time" + b"." * 10 + b"\\n":
    time.sleep(0.1)
    os.write(fd, bytes([byte]))
time.sleep(600)
"""

#: A zygote that answers its first request at once with a well-formed refusal of 1 MiB.
VERBOSE_ZYGOTE = """
import os, sys, time
fd = int(sys.argv[1])
os.read(fd, 65536)
answer = memoryview(b"E " + b"x" * (1 << 20) + b"\\n")
while answer:
    answer = answer[os.write(fd, answer):]
time.sleep(600)
"""


class TestUnresponsive:
    """The zygote runs as the account: a job can stop it or, where it may take its socket, make
    it answer slowly or at length. One deadline bounds the whole exchange (each receive waits
    only for the time left) and an answer is at most MAX_REPLY bytes; a zygote that misses
    either is taken for failed and the worker starts its account's wrappers itself."""

    @pytest.mark.parametrize(("source", "why", "timeout"), [
        (TRICKLING_ZYGOTE, "did not answer within 0.5 s", 0.5),
        # the default timeout: on a loaded machine the 1 MiB answer took longer than 0.5 s to
        # arrive, and the zygote was taken for failed as a silent one (failed in CI)
        (VERBOSE_ZYGOTE, f"answer longer than {MAX_REPLY} bytes", None),
    ], ids=["trickling", "over-long"])
    def test_the_zygote_is_taken_for_failed_and_the_worker_starts_the_job(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, source: str, why: str,
        timeout: float | None,
    ) -> None:
        if timeout is not None:
            monkeypatch.setattr("wmproxy.execution.zygote.REPLY_TIMEOUT", timeout)
        _fake_zygote(backend, account, tmp_path, source)
        (launcher,) = backend._zygotes.values()
        handle = backend.prepare(_job(input_dir, account, "exit 6", 0))
        with caplog.at_level(logging.WARNING, logger="wmproxy.execution.backends.local"):
            backend.spawn_batch([handle])
        assert not backend._zygotes and handle.pid is None
        assert launcher.process.returncode is not None  # ended and reaped, not left behind
        assert any(why in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        try:
            assert backend.spawn(handle) is handle and handle.process is not None  # started by the worker
            wait_for(lambda: backend.poll(handle) is not None, "the job to end")
            assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=6, payload_started=True)
        finally:
            _cleanup(handle)


class TestChildOf:
    """``_child_of``: which pid a zygote names is adopted (real processes of this machine)."""

    def test_its_own_child_leading_a_session_gives_its_start_time(self) -> None:
        import subprocess

        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            assert _child_of(child.pid, os.getpid()) == start_time(child.pid)
            assert _child_of(child.pid, os.getppid()) is False  # not that process's child
        finally:
            child.kill()
            child.wait()
        assert _child_of(child.pid, os.getpid()) is None  # reaped

    def test_another_process_is_refused(self) -> None:
        assert _child_of(1, os.getpid()) is False  # init leads its own session, has no parent
        assert _child_of(os.getpid(), os.getppid()) is False  # a child, not a session leader

    def test_a_wrapper_being_reaped_as_its_stat_is_read_is_taken_as_ended(self) -> None:
        """While the zygote reaps a wrapper, its stat shows it dead (``X``) with parent and
        session 0: the fields of a real child's stat, as the kernel shows them at that instant
        (which no test can hold still), are an ended wrapper, not a forged pid; a live process
        showing parent and session 0 (a kernel thread, or an init started without a session)
        is still refused."""
        import subprocess

        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            fields = _stat_fields(child.pid)
        finally:
            child.kill()
            child.wait()
        assert fields is not None and _child_in(fields, child.pid, os.getpid()) == int(fields[19])
        reaping = [b"X", b"0", b"0", b"0", *fields[4:]]
        assert _child_in(reaping, child.pid, os.getpid()) is None
        assert _child_in([b"S", *reaping[1:]], child.pid, os.getpid()) is False


    def test_a_wrapper_reaped_between_the_state_and_the_parent_is_read_again(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The kernel reads the state first, then the parent and session under the task's
        signal lock; a wrapper reaped in between shows ``Z`` (or ``R``) with parent 0 and
        session -1 (one job of 400 ``/bin/true`` jobs aborted so, "named a process that is not
        its child"). That instant cannot be held still for a test: the two reads ``_child_of``
        makes are given here, as ``/proc`` showed them. A second read that finds the task gone
        or dead is an ended wrapper; a live process without a parent stays refused."""
        import subprocess

        from wmproxy.execution.backends import local

        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            fields = _stat_fields(child.pid)
        finally:
            child.kill()
            child.wait()
        assert fields is not None
        released = [b"Z", b"0", b"-1", b"-1", *fields[4:]]

        def reads(*answers: list[bytes] | None) -> None:
            pending = list(answers)
            monkeypatch.setattr(local, "_stat_fields", lambda pid: pending.pop(0))

        reads(released, None)  # gone at the second read
        assert _child_of(child.pid, os.getpid()) is None
        reads([b"R", *released[1:]], [b"X", b"0", b"-1", b"-1", *fields[4:]])  # dead at the second read
        assert _child_of(child.pid, os.getpid()) is None
        reads([b"S", *released[1:]], [b"S", *released[1:]])  # a live process without a parent
        assert _child_of(child.pid, os.getpid()) is False
        reads([b"S", b"1", *fields[2:]])  # another parent: refused at once, no second read
        assert _child_of(child.pid, os.getpid()) is False


class TestLean:
    def test_the_zygote_holds_only_the_modules_its_wrappers_need(self) -> None:
        """Every module the zygote imports is memory each forked wrapper maps, copies on write
        and unmaps: the zygote's interpreter, as it starts (``-I -S``), imports ``zygote`` and
        ``jobwrapper`` (and ``select`` for the wrapper's pidfd wait), none of these heavier ones."""
        import subprocess

        from wmproxy.execution.identity import SYSTEM_PYTHON

        python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
        code = "import sys; sys.path.insert(0, sys.argv[1]); import zygote, jobwrapper; print(*sorted(sys.modules))"
        out = subprocess.run([python, "-I", "-S", "-c", code, str(WRAPPER_PATH.parent)], check=True,
                             capture_output=True, text=True, timeout=DEADLINE).stdout.split()
        assert {"zygote", "jobwrapper"} <= set(out)
        heavy = {"socket", "selectors", "typing", "contextlib", "enum", "functools", "collections", "re",
                 "subprocess", "threading", "json", "wmproxy"}
        assert heavy.isdisjoint(out), sorted(heavy & set(out))


class TestHeld:
    """A wrapper requested with ``hold`` (job cgroups: the worker puts it in the job's cgroup
    meanwhile) runs nothing of its job until the worker lets it go, and exits running nothing
    when the worker drops it or the zygote ends first."""

    def _held(self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
              index: int) -> tuple[Zygote, RunHandle, int]:
        handle = backend.prepare(_job(input_dir, account, "echo run >> runs", index))
        launcher = backend._zygote(account)
        assert launcher is not None
        (answer,) = launcher.request([str(handle.work_dir)], [handle.spec], hold=True)
        assert not isinstance(answer, Exception), answer
        pid, started = answer
        assert started is not None and _child_of(pid, launcher.process.pid) == started
        return launcher, handle, pid

    def test_a_held_wrapper_runs_its_job_once_let_go(self, backend: LocalExecutionBackend, input_dir: Path,
                                                     account: Account | None) -> None:
        launcher, handle, pid = self._held(backend, input_dir, account, 0)
        try:
            launcher.release([pid], [])
            wait_for(lambda: _runs(handle) == 1 and not is_process(pid, start_time(pid) or 0), "the job to run")
            assert (handle.work_dir / ".wmproxy" / "status.json").exists()
        finally:
            kill_session(pid)

    @pytest.mark.parametrize("how", ["dropped", "zygote closed"])
    def test_a_dropped_wrapper_or_one_whose_zygote_ends_runs_nothing(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, how: str
    ) -> None:
        launcher, handle, pid = self._held(backend, input_dir, account, 1)
        started = start_time(pid)
        assert started is not None
        try:
            if how == "dropped":
                launcher.release([], [pid])
            else:
                backend.close()
            wait_for(lambda: not is_process(pid, started), "the held wrapper to exit")
            assert _runs(handle) == 0
            assert not (handle.work_dir / ".wmproxy" / "started.json").exists()
            assert not (handle.work_dir / ".wmproxy" / "status.json").exists()
        finally:
            kill_session(pid)


#: Run as the job's account: what another process of it (a job) tries against each pid given,
#: one line per attempt (``<pid> mem EACCES``). ``PTRACE_SEIZE``: the permission check of
#: ``PTRACE_ATTACH`` without stopping the target; the attacher's exit detaches it.
ATTACK = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for pid in sys.argv[1:]:
    for name in ("mem", "environ"):
        try:
            os.close(os.open(f"/proc/{pid}/{name}", os.O_RDONLY))
            result = "OK"
        except OSError as exc:
            result = errno.errorcode.get(exc.errno, str(exc.errno))
        print(pid, name, result)
    seized = libc.ptrace(0x4206, int(pid), None, None) == 0
    print(pid, "ptrace", "OK" if seized else errno.errorcode.get(ctypes.get_errno(), "?"))
"""

#: Run by the zygote's own start command in place of zygote.py: its "dumpable" attribute at its
#: first instruction (prctl PR_GET_DUMPABLE).
PROBE = "import ctypes; print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"

#: Yama's ptrace restriction (absent where the kernel has no Yama).
YAMA_PTRACE_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")


def _yama_allows_ptrace() -> bool:
    """Whether only dumpability decides if a process may ``ptrace`` another of its uid: no Yama,
    or its ``ptrace_scope`` at 0. Above 0 Yama refuses (EPERM) to attach to a process that is
    not a descendant whether the target is dumpable or not, so a refused attach proves nothing;
    the test never changes the global setting (two test sessions run side by side)."""
    return not YAMA_PTRACE_SCOPE.exists() or YAMA_PTRACE_SCOPE.read_text().strip() == "0"


def _as_account(account: Account | None, *argv: str) -> list[str]:
    """``argv`` run as ``account`` (as this process's user for None)."""
    if account is None:
        return list(argv)
    return ["/usr/bin/setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups", "--", *argv]


class TestNotDumpable:
    """The zygote holds, in memory it freed, the specs (inspection secrets) it handed to other
    wrappers, and a wrapper it forked a copy of that memory: no other process of the account
    (a job) may read either's memory, trace it, or read its environment."""

    def test_a_process_of_the_account_can_neither_read_nor_trace_the_zygote_or_a_wrapper(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        import subprocess

        from wmproxy.execution.identity import SYSTEM_PYTHON

        handle = backend.spawn(backend.prepare(launch(input_dir, account, "while [ ! -e go ]; do sleep 0.1; done")))
        try:
            (launcher,) = backend._zygotes.values()
            targets = [str(launcher.process.pid), str(handle.pid)]
            out = subprocess.run(_as_account(account, SYSTEM_PYTHON, "-I", "-c", ATTACK, *targets), check=True,
                                 capture_output=True, text=True, timeout=DEADLINE).stdout.splitlines()
            # A non-dumpable process's /proc/<pid> files are root's whatever Yama says: that alone
            # shows it, and the account's opens are refused for it.
            for pid in targets:
                assert [os.stat(f"/proc/{pid}/{name}").st_uid for name in ("mem", "environ")] == [0, 0]
            refused = {"mem": "EACCES", "environ": "EACCES", "ptrace": "EPERM"}
            if not _yama_allows_ptrace():  # Yama alone refuses the attach: its EPERM would show nothing
                del refused["ptrace"]
            attempts = [line.split() for line in out]
            assert [a for a in attempts if a[1] in refused] == [[pid, name, error] for pid in targets
                                                                 for name, error in refused.items()]
            assert not _stopped_or_traced(launcher.process.pid)
            (handle.work_dir / "go").write_text("")
            wait_for(lambda: backend.poll(handle) is not None, "the job to end")
            assert backend.poll(handle) == JobOutcome(JobState.DONE, exit_code=0, payload_started=True)
        finally:
            _cleanup(handle)

    def test_the_zygote_of_an_account_is_not_dumpable_from_its_exec(self, account: Account | None,
                                                                   work_root: Path) -> None:
        """Not only once it sealed itself: a process of the account could otherwise attach to
        it, or open its memory, while its interpreter starts, and keep that afterwards."""
        import subprocess

        from wmproxy.execution.identity import zygote_command

        if account is None:
            pytest.skip("the worker's own user has no spare gid to start its zygote with")
        if Path("/proc/sys/fs/suid_dumpable").read_text().strip() == "1":
            pytest.skip("fs.suid_dumpable = 1 leaves every process dumpable at its exec")
        probe = work_root / "probe.py"  # the work root: every account may read it
        probe.write_text(PROBE)
        probe.chmod(0o644)
        command = zygote_command(account)
        out = subprocess.run([*command[:-1], str(probe)], check=True, capture_output=True, text=True,
                             timeout=DEADLINE, cwd="/").stdout
        assert out.strip() != "1"  # 0, or 2 where fs.suid_dumpable = 2 (apport, systemd-coredump)


def _stopped_or_traced(pid: int) -> bool:
    """Whether ``pid`` is stopped (``T``/``t``) or has a tracer (``TracerPid``)."""
    return "TracerPid:\t0\n" not in Path(f"/proc/{pid}/status").read_text() or _stopped(pid)


#: Starts the zygote (argv: python, zygote.py, jobwrapper.py) under a tracer, as a zygote a job of
#: the account attached to before it sealed itself, lets it run and prints its exit status; its
#: socket's other end is closed, so an unsealed zygote ends at once (end of file) with 0.
TRACED_START = r"""
import ctypes, os, signal, socket, sys
python, zygote, wrapper = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
ours, theirs = socket.socketpair()
theirs.set_inheritable(True)
pid = os.fork()
if pid == 0:
    if libc.ptrace(0, 0, None, None) != 0:  # PTRACE_TRACEME
        os._exit(99)
    os.execv(python, [python, "-I", "-S", zygote, str(theirs.fileno()), python, wrapper, "x" * 64])
ours.close()
theirs.close()
while True:
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        print(os.WEXITSTATUS(status))
        break
    if os.WIFSIGNALED(status):
        print("signal", os.WTERMSIG(status))
        break
    sig = os.WSTOPSIG(status)
    libc.ptrace(7, pid, None, 0 if sig == signal.SIGTRAP else sig)  # PTRACE_CONT
"""


class TestSealFailure:
    def test_a_zygote_traced_from_its_start_serves_nothing(self) -> None:
        """A tracer attached before the zygote made itself non-dumpable stays attached: such a
        zygote exits (EXIT_UNSEALED) and the worker starts the account's wrappers itself."""
        import subprocess

        from wmproxy.execution import zygote
        from wmproxy.execution.identity import SYSTEM_PYTHON

        done = subprocess.run([sys.executable, "-I", "-c", TRACED_START, SYSTEM_PYTHON, zygote.__file__,
                               str(WRAPPER_PATH)], capture_output=True, text=True, timeout=DEADLINE, check=True)
        if done.stdout.strip() == "99":
            pytest.skip("PTRACE_TRACEME refused here (Yama ptrace_scope 3)")
        assert done.stdout.strip() == str(zygote.EXIT_UNSEALED)
        assert "cannot make itself non-dumpable" in done.stderr and "traced by process" in done.stderr


#: Run as the account with the zygote's own start command (its spare real gid), argv: zygote.py.
#: Made dumpable first, as ``fs.suid_dumpable = 1`` leaves every process at its ``exec``, it seals
#: itself as the zygote does and prints its "dumpable" attribute at the moment its real gid was set
#: back to the account's (with the account's credentials from then on), then after the seal.
SEAL_ORDER = r"""
import ctypes, os, runpy, sys
libc = ctypes.CDLL(None)
assert libc.prctl(4, 1, 0, 0, 0) == 0  # PR_SET_DUMPABLE 1
seen = []
setresgid = os.setresgid
def watched(*gids):
    seen.append(libc.prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
    setresgid(*gids)
os.setresgid = watched
runpy.run_path(sys.argv[1])["_seal"](None)
print(seen, libc.prctl(3, 0, 0, 0, 0), os.getgid() == os.getegid())
"""

#: The zygote (argv: zygote.py, jobwrapper.py) with a C library whose ``memmove`` fails when
#: called through ``_ctypes``; its socket's other end is closed, so a zygote that got through
#: its seal ends at once (end of file) with 0.
BROKEN_MEMMOVE = r"""
import _ctypes, os, runpy, socket, sys
call = _ctypes.call_function
memmove = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "memmove")
def broken(address, args):
    if address == memmove:
        raise OSError("memmove is broken here")
    return call(address, args)
_ctypes.call_function = broken
ours, theirs = socket.socketpair()
ours.close()
zygote, wrapper = sys.argv[1:]
sys.argv = [zygote, str(theirs.fileno()), sys.executable, wrapper, "x" * 64]
runpy.run_path(zygote, run_name="__main__")
"""

#: Forks one wrapper child (argv: zygote.py, work dir) whose title cannot be written, running a
#: job that does nothing; prints the zygote's answer for it.
BROKEN_TITLE = r"""
import os, runpy, sys, types
zygote = runpy.run_path(sys.argv[1])
def broken(address, args):
    raise OSError("memmove is broken here")
titles = zygote["_Titles"](broken, 0, int, (0, 4096))
module = types.SimpleNamespace(run=lambda work_dir, log_dir, spec: 0, exit_child=os._exit)
print(zygote["_fork_all"]([sys.argv[2].encode()], sys.executable, "jobwrapper.py", module, titles)[0])
"""


class TestSeal:
    def test_the_zygote_is_never_dumpable_with_the_accounts_credentials(self, account: Account | None,
                                                                        work_root: Path) -> None:
        """Where ``fs.suid_dumpable = 1`` leaves it dumpable at its ``exec``, the zygote makes
        itself non-dumpable before it sets its real gid back: with the other order a process of
        the account could open its ``/proc/<pid>/mem`` in between and read it ever after."""
        import subprocess

        from wmproxy.execution.identity import zygote_command

        if account is None:
            pytest.skip("the worker's own user has no spare gid to start its zygote with")
        script = work_root / "seal_order.py"  # the work root: every account may read it
        script.write_text(SEAL_ORDER)
        script.chmod(0o644)
        command = zygote_command(account)
        out = subprocess.run([*command[:-1], str(script), command[-1]], check=True, capture_output=True,
                             text=True, timeout=DEADLINE, cwd="/").stdout
        assert out.split() == ["[0]", "0", "True"]

    @pytest.mark.skipif(os.geteuid() != 0, reason="a zygote running as root needs root")
    def test_a_zygote_running_as_root_serves_nothing(self) -> None:
        """Whatever started it (zygote_command never does): every wrapper it forked would run its
        job as root. Its socket's other end is closed, so a zygote that serves ends at once (end
        of file) with 0."""
        import socket
        import subprocess

        from wmproxy.execution import zygote

        ours, theirs = socket.socketpair()
        ours.close()
        with theirs:
            done = subprocess.run([sys.executable, "-I", "-S", zygote.__file__, str(theirs.fileno()),
                                   sys.executable, str(WRAPPER_PATH), "x" * 64], pass_fds=(theirs.fileno(),),
                                  check=False, capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == zygote.EXIT_PRIVILEGED, done.stderr
        assert "refusing to fork job wrappers as root" in done.stderr

    def test_a_zygote_whose_memmove_fails_serves_nothing(self) -> None:
        """Its children could not write their titles: rather than have them fail every job, the
        zygote exits (EXIT_UNSEALED) and the worker starts the account's wrappers itself."""
        import subprocess

        from wmproxy.execution import zygote

        done = subprocess.run([sys.executable, "-I", "-c", BROKEN_MEMMOVE, zygote.__file__, str(WRAPPER_PATH)],
                              check=False, capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == zygote.EXIT_UNSEALED, done.stderr
        assert "cannot make itself non-dumpable" in done.stderr and "memmove is broken here" in done.stderr

    def test_a_wrapper_whose_title_cannot_be_written_runs_its_job(self, tmp_path: Path) -> None:
        import subprocess

        from wmproxy.execution import zygote

        (tmp_path / zygote.STATE_DIR).mkdir()
        out = subprocess.run([sys.executable, "-I", "-c", BROKEN_TITLE, zygote.__file__, str(tmp_path)],
                             check=True, capture_output=True, text=True, timeout=DEADLINE).stdout
        assert not out.startswith("E "), out  # not "E the job wrapper died at its start"
        pid, started = out.split()
        assert pid.isdigit() and (started.isdigit() or started == "-")


#: Stands for the interpreter (``LocalExecutionBackend(python=...)``): starts the wrappers the
#: worker starts itself, but a zygote exits at once with the status given, as one whose Python
#: needs a library found only through LD_LIBRARY_PATH (127) or that cannot seal itself (3).
FAILING_ZYGOTE_PYTHON = """#!/bin/sh
case "$*" in *zygote.py*) exit {status};; esac
exec {python} "$@"
"""


class TestZygoteExit:
    @pytest.mark.parametrize("status", [3, 127], ids=["unsealed", "interpreter-not-started"])
    def test_the_worker_logs_the_exit_status_of_a_zygote_that_exits_at_its_start(
        self, work_root: Path, input_dir: Path, account: Account | None, caplog: pytest.LogCaptureFixture,
        status: int,
    ) -> None:
        """Not only "Connection reset by peer": the status says why (docs/execution.md); the
        account's jobs are started by the worker meanwhile."""
        from wmproxy.execution.identity import SYSTEM_PYTHON

        python = work_root / "python"  # the work root: every account may run it
        python.write_text(FAILING_ZYGOTE_PYTHON.format(status=status, python=SYSTEM_PYTHON))
        python.chmod(0o755)
        (work_root / "jobs").mkdir(mode=0o755)
        backend = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=2.0, python=str(python))
        try:
            with caplog.at_level(logging.WARNING, logger="wmproxy.execution.backends.local"):
                handle, outcome = run(backend, launch(input_dir, account, "exit 4"))
            assert outcome.exit_code == 4 and handle.process is not None  # started by the worker
            handle.process.wait(timeout=DEADLINE)
            messages = [r.getMessage() for r in caplog.records if "fork server" in r.getMessage()]
            assert len(messages) == 1 and f"it exited with status {status} (" in messages[0], messages
        finally:
            backend.close()
