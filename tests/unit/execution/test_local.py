from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from wmproxy.execution.backends import UNKNOWN_EXIT_CODE, BackendError, JobRunSpec, RunHandle
from wmproxy.execution.backends.local import LocalExecutionBackend

JOB = "https://lb.example.org:9000/AbC-x_1yz"


@pytest.fixture
def backend() -> LocalExecutionBackend:
    return LocalExecutionBackend()


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def _spec(work_dir: Path, script: str, **kw: object) -> JobRunSpec:
    args = {
        "job_id": JOB,
        "work_dir": work_dir,
        "executable": "/bin/sh",
        "arguments": f"-c {_quote(script)}",
        "std_output": "std.out",
        "std_error": "std.err",
        "proxy_file": work_dir / "user.proxy",
    }
    args.update(kw)
    return JobRunSpec(**args)  # type: ignore[arg-type]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _wait(backend: LocalExecutionBackend, handle: RunHandle, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := backend.poll(handle)) is None:
        assert time.monotonic() < deadline, "job did not end"
        time.sleep(0.02)
    return code


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line[stat_line.rfind(")") + 2] != "Z"


def _wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


class TestRun:
    def test_captures_stdout_stderr_and_exit_code(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        handle = backend.start(_spec(work_dir, "echo out; echo err >&2; exit 3"))
        assert _wait(backend, handle) == 3
        assert backend.poll(handle) == 3
        assert (work_dir / "std.out").read_text() == "out\n"
        assert (work_dir / "std.err").read_text() == "err\n"

    def test_arguments_are_split_with_shell_quoting(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        spec = _spec(work_dir, "", arguments="-c 'printf \"%s|\" \"$@\"' sh 'a b' \"c\" $HOME")
        assert _wait(backend, backend.start(spec)) == 0
        assert (work_dir / "std.out").read_text() == "a b|c|$HOME|"

    def test_same_file_for_output_and_error(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        spec = _spec(work_dir, "echo one; echo two >&2; echo three", std_error="std.out")
        assert _wait(backend, backend.start(spec)) == 0
        assert (work_dir / "std.out").read_text() == "one\ntwo\nthree\n"

    def test_unnamed_streams_go_to_dev_null(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        spec = _spec(work_dir, "echo lost; read x; echo \"[$x]\" >&2", std_output=None, std_error=None)
        assert _wait(backend, backend.start(spec)) == 0
        assert sorted(os.listdir(work_dir)) == []

    def test_stdin_from_a_file(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        (work_dir / "in.txt").write_text("line1\nline2\n")
        spec = _spec(work_dir, "wc -l", std_input="in.txt")
        assert _wait(backend, backend.start(spec)) == 0
        assert (work_dir / "std.out").read_text().strip() == "2"

    def test_environment_is_minimal_plus_jdl_and_proxy(
        self, backend: LocalExecutionBackend, work_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WORKER_SECRET", "do-not-leak")
        spec = _spec(work_dir, "env", environment={"MY_VAR": "a value", "LANG": "fr_FR.UTF-8"})
        assert _wait(backend, backend.start(spec)) == 0
        env = dict(
            line.split("=", 1) for line in (work_dir / "std.out").read_text().splitlines() if "=" in line
        )
        assert env["X509_USER_PROXY"] == str(work_dir / "user.proxy")
        assert env["HOME"] == str(work_dir)
        assert env["MY_VAR"] == "a value"
        assert env["LANG"] == "fr_FR.UTF-8"
        assert env["GLITE_WMS_JOBID"] == JOB
        assert "/bin" in env["PATH"].split(":")
        assert "WORKER_SECRET" not in env

    def test_proxy_cannot_be_overridden_by_the_jdl(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        spec = _spec(work_dir, 'echo "$X509_USER_PROXY"', environment={"X509_USER_PROXY": "/tmp/evil"})
        assert _wait(backend, backend.start(spec)) == 0
        assert (work_dir / "std.out").read_text().strip() == str(work_dir / "user.proxy")

    def test_runs_in_the_work_dir(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        assert _wait(backend, backend.start(_spec(work_dir, "pwd"))) == 0
        assert Path((work_dir / "std.out").read_text().strip()).resolve() == work_dir.resolve()

    def test_staged_executable_is_made_executable(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        script = work_dir / "job.sh"
        script.write_text("#!/bin/sh\necho \"staged $1\"\nexit 7\n")
        script.chmod(0o600)
        spec = _spec(work_dir, "", executable="job.sh", arguments="arg1")
        assert _wait(backend, backend.start(spec)) == 7
        assert script.stat().st_mode & stat.S_IXUSR
        assert (work_dir / "std.out").read_text() == "staged arg1\n"

    def test_killed_by_signal_reports_128_plus_n(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        assert _wait(backend, backend.start(_spec(work_dir, "kill -9 $$"))) == 128 + signal.SIGKILL


class TestStartFailures:
    def test_missing_executable(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        with pytest.raises(BackendError, match="not found"):
            backend.start(_spec(work_dir, "", executable="nothere.sh"))

    def test_missing_absolute_executable(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        with pytest.raises(BackendError, match="Cannot execute /no/such/bin"):
            backend.start(_spec(work_dir, "", executable="/no/such/bin"))

    def test_not_an_executable_format(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        (work_dir / "data.bin").write_bytes(b"\x00\x01\x02 not a program")
        with pytest.raises(BackendError, match=r"Cannot execute data\.bin"):
            backend.start(_spec(work_dir, "", executable="data.bin", arguments=""))

    def test_unbalanced_quotes(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        with pytest.raises(BackendError, match="Cannot parse the job arguments"):
            backend.start(_spec(work_dir, "", arguments="'unterminated"))

    def test_missing_stdin(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        with pytest.raises(BackendError, match="standard input"):
            backend.start(_spec(work_dir, "cat", std_input="missing.txt"))

    def test_missing_work_dir(self, backend: LocalExecutionBackend, tmp_path: Path) -> None:
        with pytest.raises(BackendError, match="does not exist"):
            backend.start(_spec(tmp_path / "nope", "true"))

    def test_bad_environment_name(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        with pytest.raises(BackendError, match="Invalid environment variable"):
            backend.start(_spec(work_dir, "true", environment={"A=B": "1"}))


class TestCancel:
    def test_cancel_kills_the_whole_process_group(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        handle = backend.start(_spec(work_dir, "sleep 60 & echo $! > child.pid; wait"))
        child = int(_wait_for_file(work_dir / "child.pid"))
        assert backend.poll(handle) is None
        assert _alive(child)
        backend.cancel(handle, grace=5.0)
        assert backend.poll(handle) == 128 + signal.SIGTERM  # no escalation needed
        assert not _alive(child)

    def test_sigterm_ignored_escalates_to_sigkill(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        handle = backend.start(_spec(work_dir, "trap '' TERM; echo ready > ready; while :; do sleep 0.1; done"))
        _wait_for_file(work_dir / "ready")
        started = time.monotonic()
        backend.cancel(handle, grace=0.5)
        assert time.monotonic() - started > 0.4
        assert backend.poll(handle) == 128 + signal.SIGKILL

    def test_cancel_after_the_end_is_harmless(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        handle = backend.start(_spec(work_dir, "exit 0"))
        assert _wait(backend, handle) == 0
        backend.cancel(handle, grace=0.1)
        assert backend.poll(handle) == 0

    def test_leftover_background_processes_are_killed_when_the_job_ends(
        self, backend: LocalExecutionBackend, work_dir: Path
    ) -> None:
        handle = backend.start(_spec(work_dir, "sleep 60 & echo $! > child.pid"))
        assert _wait(backend, handle) == 0
        child = int(_wait_for_file(work_dir / "child.pid"))
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child)


class TestRecreatedHandle:
    def test_from_pid_polls_while_alive_then_reports_an_exit(
        self, backend: LocalExecutionBackend, work_dir: Path
    ) -> None:
        original = backend.start(_spec(work_dir, "echo go > started; sleep 60"))
        _wait_for_file(work_dir / "started")
        handle = RunHandle.from_pid(original.pid)
        assert backend.poll(handle) is None
        backend.cancel(handle, grace=5.0)
        code = backend.poll(handle)
        assert code is not None
        assert code in (128 + signal.SIGTERM, UNKNOWN_EXIT_CODE)
        assert original.process is not None
        original.process.wait(timeout=5)  # its status was taken behind Popen's back

    def test_from_pid_of_a_foreign_process(self, backend: LocalExecutionBackend, work_dir: Path) -> None:
        # the job's own session leader, started by an intermediate shell that exits at once,
        # so it is not our child: like a job that survived a worker restart
        launcher = backend.start(
            _spec(
                work_dir,
                "setsid /bin/sh -c 'echo $$ > job.pid; exec sleep 60' </dev/null >/dev/null 2>&1 & "
                "while [ ! -s job.pid ]; do sleep 0.01; done",  # else our leftover-killing gets it
            )
        )
        assert _wait(backend, launcher) == 0
        pid = int(_wait_for_file(work_dir / "job.pid"))
        handle = RunHandle.from_pid(pid)
        assert backend.poll(handle) is None
        backend.cancel(handle, grace=5.0)
        deadline = time.monotonic() + 5
        while backend.poll(handle) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.poll(handle) == UNKNOWN_EXIT_CODE

    def test_from_pid_of_a_vanished_process_is_unknown(self, backend: LocalExecutionBackend) -> None:
        # a pid that certainly does not lead a session: our own (pytest is no session leader
        # under most runners) would be flaky, so use a finished, reaped process
        handle = backend.start(_spec(Path("/tmp"), "exit 0", std_output=None, std_error=None))
        assert _wait(backend, handle) == 0
        assert backend.poll(RunHandle.from_pid(handle.pid)) == UNKNOWN_EXIT_CODE
