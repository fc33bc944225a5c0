"""The job wrapper, run for real: ``/usr/bin/python3 -I jobwrapper.py <work_dir>`` as the
current user and, when the tests run as root, as a throwaway account (``wrap`` behind a random tag,
created with useradd; under CI=true failing to create it fails the tests)."""

from __future__ import annotations

import json
import marshal
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.leftover_support import HOP, LEAVE, kill_left, kill_members, left_files, session_members, still_running
from tests.unit.execution.wrapper_support import DEADLINE, JOB, PYTHON, alive, kill_session, sh, wait_for
from wmproxy.execution import identity, jobwrapper, worker
from wmproxy.execution.identity import Account, WrapperStatus
from wmproxy.execution.jobwrapper import TMP_DIR, JobSpec, WrapperError


@dataclass
class Runner:
    """Prepares a work dir and runs the wrapper in it as ``account`` (None: ourselves)."""

    root: Path
    account: Account | None
    count: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def work_dir(self) -> Path:
        self.count += 1
        return identity.prepare_work_dir(self.root, f"job{self.count}", self.account)

    def stage(self, work: Path, name: str, text: str, mode: int = 0o644) -> Path:
        path = work / name
        path.write_text(text)
        path.chmod(mode)
        if self.account is not None:  # as staging gives it (wmproxy.execution.backends.local._stage_in)
            os.chown(path, self.account.uid, self.account.gid)
        return path

    def start(self, work: Path, spec: JobSpec | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start the wrapper (umask 0o077, like a strict worker); ``spec`` None keeps the
        ``job.marshal`` already there; ``env`` is added to the wrapper's own environment."""
        if spec is not None:
            identity.write_spec(work, spec, self.account)
        process = subprocess.Popen(
            [PYTHON, "-I", str(identity.WRAPPER_PATH), str(work)],
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            cwd=work,
            start_new_session=True,
            umask=0o077,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=None if self.account is None else self.account.uid,
            group=None if self.account is None else self.account.gid,
            extra_groups=None if self.account is None else [],
        )
        self.processes.append(process)
        return process

    def run(self, work: Path, spec: JobSpec | None, env: dict[str, str] | None = None) -> tuple[int, WrapperStatus]:
        process = self.start(work, spec, env)
        _, err = process.communicate(timeout=DEADLINE)
        status = identity.read_status(work, self.account)
        assert status is not None, err.decode()
        return process.returncode, status


@pytest.fixture(params=["self", "account"])
def runner(request: pytest.FixtureRequest, work_root: Path) -> Iterator[Runner]:
    account = None if request.param == "self" else request.getfixturevalue("job_account")
    yield from _runner(work_root, account)


@pytest.fixture
def own_runner(work_root: Path) -> Iterator[Runner]:
    """A :class:`Runner` running wrappers as ourselves only."""
    yield from _runner(work_root, None)


def _runner(work_root: Path, account: Account | None) -> Iterator[Runner]:
    runner = Runner(work_root, account)
    yield runner
    for process in runner.processes:
        kill_session(process.pid)  # a failed test must not leave its job running (the wrapper leads its session)
        if process.stderr is not None:
            process.stderr.close()
        process.wait(timeout=DEADLINE)


class TestOutcome:
    def test_exit_code_times_and_started_file_are_recorded(self, runner: Runner) -> None:
        work = runner.work_dir()
        process = runner.start(work, sh("echo out; echo err >&2; while test ! -e go; do sleep 0.05; done; exit 7"))
        started_path = work / ".wmproxy" / "started.json"
        wait_for(lambda: started_path.exists() and started_path.read_bytes().endswith(b"\n"), "started.json")
        started = json.loads(started_path.read_text())
        assert started["job_id"] == JOB and started["payload_pid"] > 0
        assert identity.payload_started(work, runner.account)
        (work / "go").write_text("")
        _, err = process.communicate(timeout=DEADLINE)
        code, status = process.returncode, identity.read_status(work, runner.account)
        assert status is not None, err.decode()
        assert code == 7
        assert (status.exit_code, status.signal, status.failure) == (7, None, None)
        assert status.payload_started and not status.succeeded
        assert status.job_id == JOB
        assert status.payload_started_at is not None
        assert status.started_at <= status.payload_started_at <= status.ended_at
        assert (work / "std.out").read_text() == "out\n"
        assert (work / "std.err").read_text() == "err\n"
        assert identity.payload_started(work, runner.account)
        # started.json became status.json: one inode for both, no temporary file left
        assert sorted(p.name for p in (work / ".wmproxy").iterdir()) == ["job.marshal", "status.json"]

    def test_a_job_that_removes_started_json_still_gets_its_status(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("rm .wmproxy/started.json; exit 3"))
        assert code == 3 and status.payload_started and status.exit_code == 3
        assert sorted(p.name for p in (work / ".wmproxy").iterdir()) == ["job.marshal", "status.json"]

    def test_a_payload_that_never_ran_leaves_a_status_and_no_started_file(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, JobSpec(job_id=JOB, executable="/nonexistent/program"))
        assert code == 127 and not status.payload_started
        assert sorted(p.name for p in (work / ".wmproxy").iterdir()) == ["job.marshal", "status.json"]

    def test_success(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("true"))
        assert code == 0 and status.succeeded and status.shell_exit_code == 0

    def test_the_payload_leads_its_own_group_with_default_signals_and_no_inherited_descriptor(
            self, work_root: Path) -> None:
        runner = Runner(work_root, None)
        work = runner.work_dir()
        identity.write_spec(work, sh('echo "$$ $(ps -o pgid= -p $$) $(ps -o sid= -p $$)"; '
                                     "grep ^SigIgn: /proc/self/status; "
                                     "for fd in 0 1 2 57; do [ -e /proc/self/fd/$fd ] && echo open $fd; done; "
                                     "true"), None)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 57)  # an inheritable descriptor the wrapper's parent passed on (a batch daemon's)
        try:
            process = subprocess.Popen([PYTHON, "-I", "-S", str(identity.WRAPPER_PATH), str(work)], cwd=work,
                                       start_new_session=True, pass_fds=(57,), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            runner.processes.append(process)
            _, err = process.communicate(timeout=DEADLINE)
        finally:
            for fd in (read_end, write_end, 57):
                os.close(fd)
        assert process.returncode == 0, err.decode()
        ids, ignored, *open_fds = (work / "std.out").read_text().splitlines()
        pid, pgid, sid = (int(x) for x in ids.split())
        assert pid == pgid and sid == process.pid  # its own group, inside the wrapper's session
        ignored_mask = int(ignored.split()[1], 16)  # Python ignores both: the payload gets the defaults back
        assert not ignored_mask & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)), hex(ignored_mask)
        assert open_fds == ["open 0", "open 1", "open 2"]  # descriptor 57 never reached the payload

    def test_payload_killed_by_a_signal(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("kill -KILL $$"))
        assert (status.exit_code, status.signal, status.cancelled_by) == (None, 9, None)
        assert code == 137 and status.shell_exit_code == 137

    def test_missing_executable_is_a_failure_and_never_started(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, JobSpec(job_id=JOB, executable="no-such-program"))
        assert code == jobwrapper.EXIT_NOT_FOUND
        assert not status.payload_started and status.exit_code is None
        assert status.failure is not None and "Job Wrapper error" in status.failure
        assert "no-such-program" in status.failure
        assert not (work / ".wmproxy" / "started.json").exists()
        assert not identity.payload_started(work, runner.account)

    def test_non_executable_absolute_file_is_a_failure(self, runner: Runner, work_root: Path) -> None:
        data = work_root / "data.txt"
        data.write_text("not a program\n")
        data.chmod(0o644)
        work = runner.work_dir()
        code, status = runner.run(work, JobSpec(job_id=JOB, executable=str(data)))
        assert code == jobwrapper.EXIT_NOT_EXECUTABLE
        assert not status.payload_started and "not executable" in (status.failure or "")

    def test_staged_executable_is_made_executable(self, runner: Runner) -> None:
        work = runner.work_dir()
        runner.stage(work, "exe.sh", "#!/bin/sh\necho staged \"$@\"\n", mode=0o644)
        code, status = runner.run(work, JobSpec(job_id=JOB, executable="exe.sh", arguments=["a b", "c"],
                                                stdout="std.out"))
        assert code == 0 and status.succeeded
        assert (work / "std.out").read_text() == "staged a b c\n"
        assert (work / "exe.sh").stat().st_mode & stat.S_IXUSR

    def test_missing_stdin_fails_before_the_payload(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("touch ran", stdin="absent.txt"))
        assert code == jobwrapper.EXIT_WRAPPER_ERROR
        assert not status.payload_started and "StdInput" in (status.failure or "")
        assert not (work / "ran").exists()

    def test_stdin_is_read_from_the_work_dir(self, runner: Runner) -> None:
        work = runner.work_dir()
        runner.stage(work, "in.txt", "hello\n")
        code, _ = runner.run(work, sh("cat", stdin="in.txt", stderr="std.out"))
        assert code == 0 and (work / "std.out").read_text() == "hello\n"


class TestPrologueEpilogue:
    def test_failed_prologue_fails_the_job_without_running_the_payload(self, runner: Runner) -> None:
        work = runner.work_dir()
        runner.stage(work, "prologue.sh", "#!/bin/sh\necho \"$@\" > prologue.out\nexit 4\n")
        code, status = runner.run(work, sh("touch payload-ran", prologue="prologue.sh",
                                           prologue_arguments=["Prologue", "Arguments"]))
        assert code == jobwrapper.EXIT_WRAPPER_ERROR
        assert status.prologue is not None and status.prologue.exit_code == 4
        assert not status.payload_started and "prologue failed" in (status.failure or "")
        assert (work / "prologue.out").read_text() == "Prologue Arguments\n"
        assert not (work / "payload-ran").exists()

    def test_missing_prologue_fails_the_job(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("touch payload-ran", prologue="/no/such/prologue"))
        assert code == jobwrapper.EXIT_WRAPPER_ERROR and not status.payload_started
        assert status.prologue is not None and status.prologue.failure is not None
        assert not (work / "payload-ran").exists()

    def test_prologue_payload_epilogue_run_in_order(self, runner: Runner) -> None:
        work = runner.work_dir()
        runner.stage(work, "log.sh", "#!/bin/sh\necho \"$@\" >> order.txt\n")
        spec = JobSpec(job_id=JOB, executable="log.sh", arguments=["payload"], prologue="log.sh",
                       prologue_arguments=["prologue"], epilogue="log.sh", epilogue_arguments=["epilogue"])
        code, status = runner.run(work, spec)
        assert code == 0 and status.succeeded
        assert (work / "order.txt").read_text() == "prologue\npayload\nepilogue\n"
        assert status.prologue is not None and status.prologue.succeeded
        assert status.epilogue is not None and status.epilogue.succeeded

    def test_prologue_and_epilogue_arguments_are_words_no_shell_reads(self, runner: Runner) -> None:
        """JDL ``PrologueArguments``/``EpilogueArguments`` never go to a shell, even in a job whose
        ``Environment`` and ``Arguments`` do: gLite's wrapper ran ``${__prologue}
        "${__prologue_arguments}"``, no ``eval`` (docs/execution.md, "PrologueArguments and
        EpilogueArguments: no shell"). The worker's split (quotes and backslashes removed)
        reaches the programs with ``$``, globs and ``~`` as written."""
        work = runner.work_dir()
        runner.stage(work, "a.dat", "")
        runner.stage(work, "args.sh", "#!/bin/sh\nprintf '[%s]' \"$@\" >> args.out\necho >> args.out\n", mode=0o755)
        text = "$HOME ${GLITE_WMS_JOBID} 'a  b' \"$X\" *.dat ~ \\$Y"
        spec = JobSpec(job_id=JOB, executable="/bin/true", shell_arguments="$HOME", shell_environment=["X=$HOME"],
                       prologue="args.sh", prologue_arguments=worker._split(text, "PrologueArguments"),
                       epilogue="args.sh", epilogue_arguments=worker._split(text, "EpilogueArguments"))
        code, status = runner.run(work, spec)
        assert code == 0 and status.succeeded, status.failure
        assert (work / "args.out").read_text() == "[$HOME][${GLITE_WMS_JOBID}][a  b][$X][*.dat][~][$Y]\n" * 2

    def test_failed_epilogue_is_recorded_and_fails_the_job(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, status = runner.run(work, sh("exit 0", epilogue="/bin/sh", epilogue_arguments=["-c", "exit 3"]))
        assert status.exit_code == 0 and status.payload_started
        assert status.epilogue is not None and status.epilogue.exit_code == 3
        assert not status.succeeded and code == jobwrapper.EXIT_WRAPPER_ERROR


class TestEnvironment:
    def test_built_from_scratch(self, runner: Runner) -> None:
        work = runner.work_dir()
        script = "env > env.txt; touch \"$HOME/home-ok\"; mktemp > mktemp.txt"
        spec = sh(script, environment={"VAR": "TestVariable", "LD_PRELOAD": "/no/such/lib.so"}, proxy="user.proxy")
        worker_env = {"LD_PRELOAD": "/no/such/worker.so", "LD_LIBRARY_PATH": "/opt/x", "PYTHONPATH": "/opt/py",
                      "WMPROXY_DATABASE_URL": "sqlite:///secret.db"}
        code, status = runner.run(work, spec, worker_env)
        assert code == 0, (work / "std.err").read_text()
        env = dict(line.split("=", 1) for line in (work / "env.txt").read_text().splitlines() if "=" in line)
        expected = {"PATH", "LANG", "HOME", "TMPDIR", "GLITE_WMS_JOBID", "X509_USER_PROXY", "VAR", "PWD"}
        expected |= {"USER", "LOGNAME"}
        assert set(env) - {"SHLVL", "_", "OLDPWD"} == expected
        assert env["HOME"] == str(work) and env["TMPDIR"] == str(work / TMP_DIR)
        assert env["X509_USER_PROXY"] == str(work / "user.proxy") and env["GLITE_WMS_JOBID"] == JOB
        assert env["VAR"] == "TestVariable"
        assert env["USER"] == pwd.getpwuid(runner.account.uid if runner.account else os.getuid()).pw_name
        assert (work / "home-ok").exists()
        made = Path((work / "mktemp.txt").read_text().strip())
        assert made.parent == work / TMP_DIR and made.exists()
        assert any("LD_PRELOAD" in note for note in status.notes)
        assert (work / "std.err").read_text() == ""  # no loader complaint about a missing preload

    def test_the_user_name_is_the_one_looked_up_before_the_fork(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The zygote looks the user name up before each batch (``prepare_fork``): a wrapper it
        forks does not read the password database again."""
        monkeypatch.setattr(jobwrapper, "_USER_NAME", [])
        jobwrapper.prepare_fork()
        name = pwd.getpwuid(os.getuid()).pw_name

        def refused(uid: int) -> pwd.struct_passwd:
            raise AssertionError("the password database read again")

        monkeypatch.setattr(jobwrapper.pwd, "getpwuid", refused)
        env = jobwrapper.build_environment(JobSpec(job_id=JOB, executable="/bin/true"), "/w", [])
        assert env["USER"] == env["LOGNAME"] == name

    def test_jdl_cannot_override_job_id_or_proxy(self, runner: Runner) -> None:
        work = runner.work_dir()
        spec = sh("echo $GLITE_WMS_JOBID $X509_USER_PROXY", proxy="user.proxy",
                  environment={"GLITE_WMS_JOBID": "forged", "X509_USER_PROXY": "/tmp/other"})
        runner.run(work, spec)
        assert (work / "std.out").read_text() == f"{JOB} {work / 'user.proxy'}\n"

    def test_spec_umask_applies_whatever_the_spawner_umask(self, runner: Runner) -> None:
        work = runner.work_dir()
        code, _ = runner.run(work, sh("echo data > made.txt; mkdir made.d"))  # spawned with umask 0o077
        assert code == 0
        assert stat.S_IMODE((work / "made.txt").stat().st_mode) == 0o644
        assert stat.S_IMODE((work / "made.d").stat().st_mode) == 0o755
        assert stat.S_IMODE((work / "std.out").stat().st_mode) == 0o644
        assert (work / "made.txt").read_text() == "data\n"  # the worker (us) reads the output


class TestOrphans:
    def test_an_orphan_of_the_job_is_adopted_and_reaped_by_the_wrapper(self, runner: Runner) -> None:
        """The wrapper leading its session adopts its job's orphans (``PR_SET_CHILD_SUBREAPER``,
        so that its leftovers are among its descendants) and reaps those that end while the
        job runs: none stays a zombie, counted against the account's process limit."""
        work = runner.work_dir()
        script = ("sh -c 'sleep 600 & echo $! > orphan.pid'; o=$(cat orphan.pid); "
                  "awk '{print $4}' /proc/$o/stat > orphan.ppid; echo $PPID > wrapper.pid; kill $o; n=0; "
                  "while [ -e /proc/$o ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; "
                  "if [ -e /proc/$o ]; then echo left; else echo reaped; fi > orphan.end")
        code, status = runner.run(work, sh(script))
        assert code == 0 and status.exit_code == 0, (work / "std.err").read_text()
        assert (work / "orphan.ppid").read_text() == (work / "wrapper.pid").read_text()
        assert (work / "orphan.end").read_text() == "reaped\n"

    def test_what_left_the_session_is_killed_when_the_job_ends(self, runner: Runner) -> None:
        """A ``setsid``'ed process and a double-forked ``setsid``'ed daemon the payload left do not
        outlive the job: orphans, they were adopted by the wrapper, which kills all its
        descendants, in its session or not."""
        work = runner.work_dir()
        files = left_files(work / "left")
        try:
            code, status = runner.run(work, sh(LEAVE, arguments=["-c", LEAVE, "sh", "left"]))
            assert code == 0 and status.exit_code == 0, (work / "std.err").read_text()
            assert [path.exists() for path in files] == [True, True]
            wait_for(lambda: not still_running(files), "the processes the job left to be killed")
        finally:
            kill_left(files)

    def test_what_left_the_session_is_killed_when_the_job_is_cancelled(self, runner: Runner) -> None:
        work = runner.work_dir()
        files = left_files(work / "left")
        try:
            process = runner.start(work, sh(LEAVE, arguments=["-c", LEAVE, "sh", "left", "hold"]))
            wait_for((work / "left.ready").exists, "the payload to leave its processes")
            wait_for(lambda: len(still_running(files)) == 2, "both to run")
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=DEADLINE)
            status = identity.read_status(work, runner.account)
            assert status is not None and status.cancelled_by == signal.SIGTERM
            wait_for(lambda: not still_running(files), "the processes the job left to be killed")
        finally:
            kill_left(files)


    def test_an_orphan_that_forks_and_exits_while_the_wrapper_kills_is_killed(self, runner: Runner) -> None:
        """A hostile review's payload (:data:`tests.leftover_support.HOP`): an orphan of the job
        forks and exits while the wrapper's first pass of its kill visits some 1500 zombies left
        to it; that pass found nothing alive (the orphan a zombie by its turn, its child adopted
        after the pass read the wrapper's children), and the child outlived the job. Now a pass
        that killed nothing ends the kill only if the wrapper's children did not change meanwhile."""
        work = runner.work_dir()
        sid_file = work / "hop.sid"
        try:
            code, status = runner.run(work, JobSpec(job_id=JOB, executable=PYTHON, stdout="std.out", stderr="std.err",
                                                    arguments=["-I", "-c", HOP, str(sid_file), "1500", "3"]))
            assert code == 0 and status.exit_code == 0, (work / "std.err").read_text()
            sid = int(sid_file.read_text())
            wait_for(lambda: not session_members(sid), "the processes the job left to be killed")
        finally:
            if sid_file.exists():
                kill_members(int(sid_file.read_text()))


class TestShellMeaning:
    """JDL ``Environment`` and ``Arguments`` as the original job wrapper's ``eval export <entry>``
    and ``eval "<exe>" <arguments>`` read them, through ``/bin/sh`` in the wrapper
    (``shell_environment``, ``shell_arguments``: the worker sets them only for text with shell
    syntax, :func:`wmproxy.execution.worker.shell_fields`)."""

    def test_environment_entries_are_evaluated_in_order_against_the_jobs_environment(self, runner: Runner) -> None:
        work = runner.work_dir()
        self._tool(runner, work, "#!/bin/sh\necho tool \"$PATH\"\n")
        entries = ["MYPATH=$PATH:/bin:/usr/bin:$HOME", "PATH=$PATH:$HOME/tools", "GREETING='hello  world'",
                   "JOB=${GLITE_WMS_JOBID}", "PROXY=$X509_USER_PROXY", 'BOTH="$GREETING/$JOB"', "KEPT='$HOME'",
                   "ESCAPED=\\$HOME", "A=1 B=2", "TMP=$TMPDIR"]
        spec = JobSpec(job_id=JOB, executable="mytool", stdout="std.out", stderr="std.err", proxy="user.proxy",
                       shell_environment=entries, environment={"PLAIN": "p"})
        code, status = runner.run(work, spec)
        assert code == 0 and status.succeeded, (status.failure, (work / "std.err").read_text())
        extended = f"{jobwrapper.BASE_PATH}:{work}/tools"
        assert (work / "std.out").read_text() == f"tool {extended}\n"  # found through the PATH the JDL extended
        env = self._env_of(runner, work, spec)
        assert env["MYPATH"] == f"{jobwrapper.BASE_PATH}:/bin:/usr/bin:{work}"
        assert env["PATH"] == extended
        assert env["GREETING"] == "hello  world"
        assert env["JOB"] == JOB and env["PROXY"] == str(work / "user.proxy")
        assert env["BOTH"] == f"hello  world/{JOB}"
        assert env["KEPT"] == "$HOME" and env["ESCAPED"] == "$HOME"
        assert (env["A"], env["B"]) == ("1", "2")  # the shell's word splitting, as eval export $env
        assert env["TMP"] == str(work / TMP_DIR) and env["PLAIN"] == "p"
        assert "PWD" not in env  # the shell's own export is not the job's
        assert jobwrapper._EVALUATED not in env

    @staticmethod
    def _tool(runner: Runner, work: Path, script: str) -> None:
        """``tools/mytool`` in ``work``, the account's, as staging leaves it."""
        (work / "tools").mkdir()
        if runner.account is not None:
            os.chown(work / "tools", runner.account.uid, runner.account.gid)
        runner.stage(work, "tools/mytool", script, mode=0o755)

    @staticmethod
    def _env_of(runner: Runner, work: Path, spec: JobSpec) -> dict[str, str]:
        """The environment the payload of ``spec`` gets (run again in a new work dir, as ``env``)."""
        again = runner.work_dir()
        code, _ = runner.run(again, JobSpec(**{**spec.as_dict(), "executable": "/usr/bin/env"}))
        assert code == 0, (again / "std.err").read_text()
        text = (again / "std.out").read_text().replace(str(again), str(work))
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def test_the_jdl_cannot_override_the_job_id_or_the_proxy_through_the_shell(self, runner: Runner) -> None:
        work = runner.work_dir()
        spec = sh('echo "$GLITE_WMS_JOBID $X509_USER_PROXY"', proxy="user.proxy",
                  shell_environment=["GLITE_WMS_JOBID=$HOME", "X509_USER_PROXY='/tmp/other'"])
        code, _ = runner.run(work, spec)
        assert code == 0 and (work / "std.out").read_text() == f"{JOB} {work / 'user.proxy'}\n"

    def test_arguments_are_expanded_unquoted_and_globbed_in_the_work_dir(self, runner: Runner) -> None:
        work = runner.work_dir()
        for name in ("b.dat", "a.dat"):
            runner.stage(work, name, "")
        arguments = "$HOME/data.in ${GLITE_WMS_JOBID} 'a  b' \"$GREETING\" \\$LITERAL '$x' *.dat"
        spec = JobSpec(job_id=JOB, executable="/usr/bin/printf", shell_arguments="'[%s]\\n' " + arguments,
                       stdout="std.out", stderr="std.err", environment={"GREETING": "hi"})
        code, status = runner.run(work, spec)
        assert code == 0 and status.succeeded, (work / "std.err").read_text()
        words = [f"{work}/data.in", JOB, "a  b", "hi", "$LITERAL", "$x", "a.dat", "b.dat"]
        assert (work / "std.out").read_text() == "".join(f"[{w}]\n" for w in words)

    def test_a_syntax_error_in_the_arguments_fails_the_job_as_the_shell_does(self, runner: Runner) -> None:
        """As the original's ``eval``: the payload's exit code is the shell's (2), its message in StdError."""
        work = runner.work_dir()
        spec = JobSpec(job_id=JOB, executable="/bin/echo", shell_arguments='"unterminated', stdout="std.out",
                       stderr="std.err")
        code, status = runner.run(work, spec)
        assert code == 2 and status.payload_started and status.exit_code == 2 and status.failure is None
        assert "Syntax error" in (work / "std.err").read_text() and (work / "std.out").read_text() == ""

    @pytest.mark.parametrize("entry", ['B="x', "B=${UNSET_VARIABLE?is not set}", "1B=x"])
    def test_an_environment_entry_the_shell_refuses_fails_the_job_naming_it(self, runner: Runner, entry: str) -> None:
        work = runner.work_dir()
        spec = sh("echo ran > ran", shell_environment=["A=$HOME", entry, "C=3"])
        code, status = runner.run(work, spec)
        assert code == jobwrapper.EXIT_WRAPPER_ERROR and not status.payload_started
        assert status.failure is not None
        assert f"the JDL Environment entry {entry!r} could not be evaluated by /bin/sh: sh: " in status.failure
        assert not (work / "ran").exists()

    def test_an_environment_that_never_finishes_its_evaluation_is_stopped_by_a_cancel(self, runner: Runner) -> None:
        work = runner.work_dir()
        spec = sh("echo ran > ran", shell_environment=["A=$(echo go > go; sleep 600)"], kill_grace=0.5)
        process = runner.start(work, spec)
        wait_for((work / "go").exists, "the evaluation")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        status = identity.read_status(work, runner.account)
        assert status is not None and status.cancelled_by == signal.SIGTERM and not status.payload_started
        assert "cancelled while the JDL Environment was evaluated" in (status.failure or "")
        assert not (work / "ran").exists()


class TestConfinement:
    def test_symlink_at_the_stdout_name_is_not_followed(self, runner: Runner, work_root: Path) -> None:
        work = runner.work_dir()
        victim = work_root / "victim.txt"
        victim.write_text("precious\n")
        victim.chmod(0o666)  # even a file the account may write is left alone
        (work / "std.out").symlink_to(victim)
        code, _ = runner.run(work, sh("echo output"))
        assert code == 0
        assert victim.read_text() == "precious\n"
        assert not (work / "std.out").is_symlink() and (work / "std.out").read_text() == "output\n"

    def test_symlinked_directory_in_a_std_name_is_not_followed(self, runner: Runner, work_root: Path) -> None:
        work = runner.work_dir()
        outside = work_root / "outside"
        outside.mkdir(mode=0o777)
        outside.chmod(0o777)
        (work / "logs").symlink_to(outside)
        code, status = runner.run(work, sh("echo output", stdout="logs/std.out"))
        assert code == jobwrapper.EXIT_WRAPPER_ERROR and not status.payload_started
        assert list(outside.iterdir()) == []

    @pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "", ".wmproxy/status.json"])
    def test_std_names_outside_the_work_dir_are_refused(self, name: str) -> None:
        with pytest.raises(WrapperError):
            sh("true", stdout=name).check()

    def test_unknown_spec_version_is_a_failure(self, runner: Runner) -> None:
        work = runner.work_dir()
        identity.write_spec(work, sh("touch ran"), runner.account)
        spec_path = work / ".wmproxy" / "job.marshal"
        data = marshal.loads(spec_path.read_bytes())  # noqa: S302 - the test's own file
        data["version"] = 99
        spec_path.write_bytes(marshal.dumps(data, 4))  # as the worker (root or the owner)
        code, status = runner.run(work, None)
        assert code == jobwrapper.EXIT_WRAPPER_ERROR
        assert not status.payload_started and "version" in (status.failure or "")
        assert not (work / "ran").exists()


class TestStatusFile:
    def test_written_atomically_and_stale_status_removed_at_start(self, runner: Runner) -> None:
        work = runner.work_dir()
        stale = work / ".wmproxy" / "status.json"
        stale.write_text('{"version": 1, "exit_code": 0}')
        if runner.account is not None:
            os.chown(stale, runner.account.uid, runner.account.gid)
        code, status = runner.run(work, sh("test -e .wmproxy/status.json && echo stale-visible; exit 5"))
        assert code == 5 and status.exit_code == 5
        assert (work / "std.out").read_text() == ""
        leftovers = [p.name for p in (work / ".wmproxy").iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []
        json.loads(stale.read_text())

    def test_wrapper_needs_only_the_system_python_and_its_own_file(self, tmp_path: Path) -> None:
        lone = tmp_path / "lone"
        lone.mkdir()
        shutil.copy(identity.WRAPPER_PATH, lone / "jobwrapper.py")
        work = tmp_path / "work"
        (work / ".wmproxy").mkdir(parents=True)
        (work / ".wmproxy" / "job.marshal").write_bytes(sh("echo lone").to_bytes())
        done = subprocess.run([PYTHON, "-I", str(lone / "jobwrapper.py"), str(work)], cwd=lone,
                              env={}, capture_output=True, timeout=DEADLINE, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert (work / "std.out").read_text() == "lone\n"


class TestCancel:
    def _start_trapping(self, runner: Runner, work: Path, trap: str, grace: float) -> subprocess.Popen[bytes]:
        script = f"{trap}; sleep 1000 & echo $! > child.pid; echo ready > ready; while :; do sleep 0.1; done"
        process = runner.start(work, sh(script, kill_grace=grace))
        wait_for(lambda: (work / "ready").exists() and (work / ".wmproxy" / "started.json").exists(), "the payload")
        return process

    def test_sigterm_is_forwarded_to_the_payload_group_and_recorded(self, runner: Runner) -> None:
        work = runner.work_dir()
        process = self._start_trapping(runner, work, "trap 'echo got TERM; exit 42' TERM", grace=DEADLINE)
        grandchild = int((work / "child.pid").read_text())
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        status = identity.read_status(work, runner.account)
        assert status is not None
        assert status.cancelled_by == signal.SIGTERM and status.payload_started
        assert (status.exit_code, status.signal) == (42, None)
        assert (work / "std.out").read_text() == "got TERM\n"
        wait_for(lambda: not alive(grandchild), "the payload's background process to die")

    def test_payload_ignoring_sigterm_is_killed_after_the_grace(self, runner: Runner) -> None:
        work = runner.work_dir()
        process = self._start_trapping(runner, work, "trap '' TERM", grace=0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        status = identity.read_status(work, runner.account)
        assert status is not None and status.cancelled_by == signal.SIGTERM
        assert status.signal == signal.SIGKILL and process.returncode == 128 + signal.SIGKILL

    def test_cancel_during_the_prologue_skips_the_payload(self, runner: Runner) -> None:
        work = runner.work_dir()
        prologue = "echo ready > ready; while :; do sleep 0.1; done"
        process = runner.start(work, sh("touch payload-ran", prologue="/bin/sh",
                                        prologue_arguments=["-c", prologue]))
        wait_for((work / "ready").exists, "the prologue")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=DEADLINE)
        status = identity.read_status(work, runner.account)
        assert status is not None and status.cancelled_by == signal.SIGINT
        assert not status.payload_started and not (work / "payload-ran").exists()
        assert status.prologue is not None and status.prologue.signal == signal.SIGTERM


class TestInspectionAgent:
    """The wrapper starts the inspection agent only for a job still running after
    ``WMPROXY_INSPECTION_DELAY`` seconds (0: at once). The payload itself looks for an agent
    in the wrapper's session (``pgrep -s 0``); the agent, given a real proxy and a service
    that refuses connections, stays up retrying until the wrapper stops it."""

    PROBE = "pgrep -s 0 -f 'inspection_agen[t].py' >/dev/null"  # [t]: not the probing shell itself

    @staticmethod
    def _spec(runner: Runner, work: Path, pki: Pki, script: str, delay: str, **kw: object) -> JobSpec:
        shutil.copyfile(pki.users["alice"].proxy, work / "proxy.pem")
        (work / "proxy.pem").chmod(0o600)
        agent = {"WMPROXY_INSPECTION_URL": "https://127.0.0.1:1/wmproxy-inspection/agent",
                 "WMPROXY_INSPECTION_TOKEN": "0" * 64, "WMPROXY_INSPECTION_CA_DIR": str(pki.ca_dir),
                 "WMPROXY_INSPECTION_DELAY": delay}
        return sh(script, proxy="proxy.pem", base_environment=agent, **kw)

    def test_a_quick_job_starts_no_agent_and_an_immediate_one_is_seen(self, own_runner: Runner, pki: Pki) -> None:
        runner = own_runner
        script = f"if {self.PROBE}; then echo agent; else echo none; fi; env > payload.env"
        quick = runner.work_dir()
        code, status = runner.run(quick, self._spec(runner, quick, pki, script, "30.0"))
        assert code == 0 and status.succeeded
        assert (quick / "std.out").read_text() == "none\n"
        assert "WMPROXY_INSPECTION" not in (quick / "payload.env").read_text()
        at_once = runner.work_dir()  # the probe does see an agent: delay 0 starts it before the payload
        code, status = runner.run(at_once, self._spec(runner, at_once, pki, script, "0"))
        assert code == 0 and (at_once / "std.out").read_text() == "agent\n"
        assert "WMPROXY_INSPECTION" not in (at_once / "payload.env").read_text()

    def test_the_shells_evaluation_of_the_environment_sees_no_secret(self, own_runner: Runner, pki: Pki) -> None:
        """The JDL ``Environment`` the wrapper's shell evaluates is the job's code: it runs after
        the spec file is removed and without the agent's variables, and cannot set them."""
        runner = own_runner
        work = runner.work_dir()
        entries = ["SEEN=x${WMPROXY_INSPECTION_TOKEN}${WMPROXY_INSPECTION_URL}",
                   "SPEC=$(test -e .wmproxy/job.marshal && echo present || echo gone)",
                   "WMPROXY_INSPECTION_DELAY=$HOME"]
        code, status = runner.run(work, self._spec(runner, work, pki, "env > payload.env", "0",
                                                   shell_environment=entries))
        assert code == 0 and status.succeeded, status.failure
        env = dict(line.split("=", 1) for line in (work / "payload.env").read_text().splitlines() if "=" in line)
        assert (env["SEEN"], env["SPEC"]) == ("x", "gone")
        assert not [key for key in env if key.startswith("WMPROXY_INSPECTION")]

    def test_a_job_still_running_after_the_delay_gets_its_agent_stopped_with_the_wrapper(
            self, own_runner: Runner, pki: Pki) -> None:
        runner = own_runner
        work = runner.work_dir()
        script = (f"n=0; until {self.PROBE}; do n=$((n+1)); [ $n -gt {int(DEADLINE * 10)} ] && exit 3; "
                  "sleep 0.1; done; echo seen")
        process = runner.start(work, self._spec(runner, work, pki, script, "0.3"))
        _, err = process.communicate(timeout=DEADLINE * 2)
        status = identity.read_status(work, runner.account)
        assert status is not None and status.succeeded, err.decode()
        assert (work / "std.out").read_text() == "seen\n"
        assert subprocess.run(["pgrep", "-s", str(process.pid), "-f", "inspection_agent.py"],
                              check=False).returncode == 1  # the wrapper stopped it before it ended

    def test_the_agent_starts_during_an_epilogue_still_running_after_the_delay(
            self, own_runner: Runner, pki: Pki) -> None:
        runner = own_runner
        work = runner.work_dir()
        wait = f"n=0; until {self.PROBE}; do n=$((n+1)); [ $n -gt {int(DEADLINE * 10)} ] && exit 3; sleep 0.1; done"
        spec = self._spec(runner, work, pki, "echo payload", "0.5", epilogue="/bin/sh",
                          epilogue_arguments=["-c", wait + "; echo seen > epilogue.out"])
        code, status = runner.run(work, spec)
        assert code == 0 and status.epilogue is not None and status.epilogue.exit_code == 0
        assert (work / "epilogue.out").read_text() == "seen\n"

    def test_sigterm_and_the_kill_grace_work_while_the_agent_is_awaited(self, own_runner: Runner, pki: Pki) -> None:
        runner = own_runner
        work = runner.work_dir()
        script = "trap '' TERM; echo ready > ready; while :; do sleep 0.1; done"
        process = runner.start(work, self._spec(runner, work, pki, script, "3600", kill_grace=0.5))
        wait_for(lambda: (work / "ready").exists() and (work / ".wmproxy" / "started.json").exists(), "the payload")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        status = identity.read_status(work, runner.account)
        assert status is not None and status.cancelled_by == signal.SIGTERM
        assert status.signal == signal.SIGKILL and process.returncode == 128 + signal.SIGKILL

    def test_the_payload_cannot_read_the_secret_from_the_agent_the_wrapper_or_the_spec(
            self, job_account: Account, work_root: Path, pki: Pki) -> None:
        """The payload runs as the agent's and the wrapper's uid; it finds the agent, then tries
        to open the agent's and the wrapper's ``environ`` and ``mem`` and the spec file: every
        one is refused (none of them opens) and the secret shows up nowhere it could read."""
        runner = Runner(work_root, job_account)
        try:
            work = runner.work_dir()
            secret = "5ec7e7" * 10 + "abcd"
            targets = ' '.join(f'"{t}"' for t in ("/proc/$agent/environ", "/proc/$PPID/environ", "/proc/$agent/mem",
                                                  "/proc/$PPID/mem", ".wmproxy/job.marshal"))
            script = (f"n=0; until agent=$({self.PROBE[:-len(' >/dev/null')]} | head -n1) && [ -n \"$agent\" ]; "
                      f"do n=$((n+1)); [ $n -gt {int(DEADLINE * 10)} ] && exit 3; sleep 0.1; done; "
                      f"for f in {targets}; do if (: < \"$f\") 2>/dev/null; then echo \"$f\" >> opened; "
                      "cat \"$f\" >> leaked 2>/dev/null; fi; done; "
                      "for f in /proc/$agent/cmdline /proc/$PPID/cmdline; do tr '\\0' ' ' < $f >> leaked; done; "
                      "echo probed")
            spec = self._spec(runner, work, pki, script, "0")
            spec.base_environment["WMPROXY_INSPECTION_TOKEN"] = secret
            os.chown(work / "proxy.pem", job_account.uid, job_account.gid)
            code, status = runner.run(work, spec)
            assert code == 0 and status.succeeded, (work / "std.err").read_text()
            assert (work / "std.out").read_text() == "probed\n"
            assert not (work / "opened").exists(), (work / "opened").read_text()
            assert secret not in (work / "leaked").read_text(errors="replace")
            assert "inspection_agent.py" in (work / "leaked").read_text(errors="replace")  # the agent was seen
            assert not (work / ".wmproxy" / "job.marshal").exists()
        finally:
            for process in runner.processes:
                kill_session(process.pid)
                if process.stderr is not None:
                    process.stderr.close()
                process.wait(timeout=DEADLINE)


class TestAsTheMappedAccount:
    def test_job_runs_as_the_account_without_extra_groups(self, job_account: Account, work_root: Path) -> None:
        runner = Runner(work_root, job_account)
        work = runner.work_dir()
        code, _ = runner.run(work, sh("id -u; id -g; id -G"))
        assert code == 0
        assert (work / "std.out").read_text().split() == [str(job_account.uid), str(job_account.gid),
                                                          str(job_account.gid)]

    def test_job_cannot_read_a_root_only_file_next_to_the_work_root(self, job_account: Account,
                                                                     work_root: Path) -> None:
        key = work_root / "store.key"
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot-for-jobs\n")
        key.chmod(0o600)
        runner = Runner(work_root, job_account)
        work = runner.work_dir()
        code, status = runner.run(work, sh(f"cat {key}; echo rc=$?"))
        assert code == 0 and status.exit_code == 0
        out = (work / "std.out").read_text()
        assert out == "rc=1\n"
        assert "Permission denied" in (work / "std.err").read_text()
