"""Run jobs as processes on the worker's own host.

Each job is started in a new session (``start_new_session``), so the job and
everything it forks share one process group whose id is the job's pid; cancelling
signals the whole group. When the main process ends, leftover processes of its group
are killed, so a job cannot leave daemons behind.

Exit status after a worker restart: a handle re-created with ``RunHandle.from_pid``
does not belong to the new worker process (the job was re-parented to init), so its
exit code cannot be collected; :meth:`LocalExecutionBackend.poll` then answers None
while the job's session still exists and :data:`UNKNOWN_EXIT_CODE` (-1) afterwards.
(If the pid happens to be a child of the calling process, its real status is used.)
A pid is taken as "still the job" only while it leads its own session, which guards
against most pid reuse.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from wmproxy.execution.backends import UNKNOWN_EXIT_CODE, BackendError, JobRunSpec, RunHandle

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
"""``PATH`` of every job (JDL ``Environment`` may override it)."""

_POLL_STEP = 0.05  # seconds between checks while cancelling


class LocalExecutionBackend:
    """:class:`~wmproxy.execution.backends.ExecutionBackend` running local processes
    as the worker's own user."""

    def start(self, spec: JobRunSpec) -> RunHandle:
        """Start ``spec`` as a process group leader in ``spec.work_dir``.

        The environment is ``PATH``, ``HOME`` (= work dir), ``LANG``, ``GLITE_WMS_JOBID``,
        then the JDL ``Environment``, then ``X509_USER_PROXY`` = ``spec.proxy_file``;
        nothing else of the worker's environment leaks in.

        Raises:
            BackendError: no work dir, executable missing or not executable,
                unparsable arguments, bad environment names, unreadable StdInput,
                unwritable StdOutput/StdError.
        """
        work_dir = Path(spec.work_dir)
        if not work_dir.is_dir():
            raise BackendError(f"The job working directory {work_dir} does not exist")
        argv = [self._executable(spec.executable, work_dir)]
        try:
            argv += shlex.split(spec.arguments or "")
        except ValueError as exc:
            raise BackendError(f"Cannot parse the job arguments {spec.arguments!r}: {exc}") from None
        env = _environment(spec, work_dir)
        with ExitStack() as files:
            stdin = _open(files, work_dir, spec.std_input, "rb", "standard input")
            stdout = _open(files, work_dir, spec.std_output, "wb", "standard output")
            if spec.std_error is not None and spec.std_error == spec.std_output:
                stderr = stdout
            else:
                stderr = _open(files, work_dir, spec.std_error, "wb", "standard error")
            try:
                process = subprocess.Popen(  # noqa: S603 - running the user's job is the point
                    argv,
                    cwd=work_dir,
                    env=env,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BackendError(f"Cannot execute {spec.executable}: {exc.strerror or exc}") from None
        return RunHandle(pid=process.pid, process=process)

    def poll(self, handle: RunHandle) -> int | None:
        """None while the job runs, else its exit code: 0-255, 128+N when killed by
        signal N, -1 (:data:`UNKNOWN_EXIT_CODE`) for a re-created handle whose job ended."""
        if handle.process is not None:
            was_running = handle.process.returncode is None
            code = handle.process.poll()
            if code is None:
                return None
            if was_running:
                _signal_group(handle.pid, signal.SIGKILL)  # leftovers of a finished job
            return 128 - code if code < 0 else code
        if handle.reaped_status is None:
            _reap_foreign(handle)
        if handle.reaped_status is not None:
            return handle.reaped_status
        return None if _session_alive(handle.pid) else UNKNOWN_EXIT_CODE

    def cancel(self, handle: RunHandle, grace: float = 5.0) -> None:
        """SIGTERM the job's process group, SIGKILL it after ``grace`` seconds.

        Returns once the group is gone (for a handle from ``start``, the main process
        is also reaped, so :meth:`poll` then reports 128+15 or 128+9).
        """
        if handle.process is not None and handle.process.returncode is not None:
            _signal_group(handle.pid, signal.SIGKILL)
            return
        if handle.process is None and self.poll(handle) is not None:
            _signal_group(handle.pid, signal.SIGKILL)
            return
        _signal_group(handle.pid, signal.SIGTERM)
        if self._wait_gone(handle, grace):
            return
        _signal_group(handle.pid, signal.SIGKILL)
        self._wait_gone(handle, 5.0)

    @staticmethod
    def _wait_gone(handle: RunHandle, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if handle.process is not None:
                handle.process.poll()  # reap the leader, else its zombie keeps the group alive
            elif handle.reaped_status is None:
                _reap_foreign(handle)
            if not _group_alive(handle.pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_STEP)

    @staticmethod
    def _executable(name: str, work_dir: Path) -> str:
        if not name:
            raise BackendError("The job has no executable")
        if os.path.isabs(name):
            return name
        candidate = work_dir / name
        if candidate.is_file():
            real_work = work_dir.resolve()
            if real_work in candidate.resolve().parents:  # never chmod outside the work dir
                mode = candidate.stat().st_mode
                if not mode & stat.S_IXUSR:
                    candidate.chmod(mode | stat.S_IXUSR)
            return str(candidate.absolute())
        found = shutil.which(name, path=BASE_PATH) if "/" not in name else None
        if found is None:
            raise BackendError(f"The executable {name} was not found in the job's working directory")
        return found


def _environment(spec: JobRunSpec, work_dir: Path) -> dict[str, str]:
    env = {
        "PATH": BASE_PATH,
        "HOME": str(work_dir.absolute()),
        "LANG": "C.UTF-8",
        "GLITE_WMS_JOBID": spec.job_id,
    }
    for key, value in spec.environment.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise BackendError(f"Invalid environment variable {key!r}")
        env[key] = value
    env["X509_USER_PROXY"] = str(Path(spec.proxy_file).absolute())
    return env


def _open(files: ExitStack, work_dir: Path, name: str | None, mode: str, what: str) -> IO[Any] | int:
    if not name:
        return subprocess.DEVNULL
    try:
        return files.enter_context(open(work_dir / name, mode))  # noqa: SIM115
    except OSError as exc:
        raise BackendError(f"Cannot open the job's {what} {name}: {exc.strerror}") from None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while the process group has a member that is not a zombie.

    Zombies are ignored (on Linux, via ``/proc``) because orphans are reaped by init,
    which may be slow in containers; they no longer run anything.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    states = _proc_states()
    if states is None:
        return True
    return any(pgrp == pgid and state != "Z" for state, pgrp, _sid in states.values())


def _session_alive(pid: int) -> bool:
    """True while ``pid`` runs (not a zombie) and still leads its own session, which
    guards against pid reuse."""
    try:
        if os.getsid(pid) != pid:
            return False
    except (ProcessLookupError, PermissionError):
        return False
    info = _proc_state(pid)
    if info is None:
        return not os.path.isdir("/proc/self")  # gone meanwhile, or no procfs: trust getsid
    return info[0] != "Z"


def _proc_state(pid: int) -> tuple[str, int, int] | None:
    """``(state, pgrp, session)`` of ``pid`` from ``/proc/<pid>/stat``, None if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the command name may contain spaces and ')'
    try:
        return fields[0], int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def _proc_states() -> dict[int, tuple[str, int, int]] | None:
    """:func:`_proc_state` of every process, None without ``/proc``."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    result: dict[int, tuple[str, int, int]] = {}
    for pid in pids:
        state = _proc_state(pid)
        if state is not None:
            result[pid] = state
    return result


def _reap_foreign(handle: RunHandle) -> None:
    """For a re-created handle: collect the status if the pid is (still) our child.

    Usually it is not (the worker restarted); then nothing happens.
    """
    try:
        pid, status = os.waitpid(handle.pid, os.WNOHANG)
    except ChildProcessError:
        return
    if pid == handle.pid:
        code = os.waitstatus_to_exitcode(status)
        handle.reaped_status = 128 - code if code < 0 else code
