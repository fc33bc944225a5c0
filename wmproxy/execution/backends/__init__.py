"""Execution backends: where and how the execution worker runs a job's executable.

The worker (``wmproxy.execution.worker``) stages the input sandbox into a work
directory, builds a :class:`JobRunSpec`, starts it with an :class:`ExecutionBackend`,
polls until it ends, then collects the output sandbox. The backend knows nothing of
JDL, the database or sandboxes.

Implementations: :class:`wmproxy.execution.backends.local.LocalExecutionBackend`
(processes on this host).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wmproxy.errors import WMProxyError

UNKNOWN_EXIT_CODE = -1
"""Reported by :meth:`ExecutionBackend.poll` when a job ended but its status could not
be collected (the worker restarted and the process was not its child any more)."""


class BackendError(WMProxyError):
    """A job could not be started (missing or non-executable executable, bad
    arguments, unreadable standard input...). The message says why; the worker
    reports it as the job's abort reason."""


@dataclass(frozen=True)
class JobRunSpec:
    """Everything a backend needs to run one job.

    Attributes:
        job_id: the grid job id (exported as ``GLITE_WMS_JOBID``).
        work_dir: existing directory holding the staged input sandbox; the job runs
            there and ``HOME`` points to it.
        executable: JDL ``Executable``: an absolute path, or a name relative to
            ``work_dir`` (a staged file, made executable by the backend).
        arguments: JDL ``Arguments``, split with shell quoting rules (no expansion).
        std_input, std_output, std_error: JDL ``StdInput``/``StdOutput``/``StdError``,
            file names relative to ``work_dir``; None → ``/dev/null``. Output and
            error may name the same file.
        environment: JDL ``Environment`` as a mapping (``{"A": "1"}``).
        proxy_file: the job's proxy, exported as ``X509_USER_PROXY``.
    """

    job_id: str
    work_dir: Path
    executable: str
    arguments: str = ""
    std_input: str | None = None
    std_output: str | None = None
    std_error: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    proxy_file: Path = Path("/dev/null")


@dataclass
class RunHandle:
    """A started job, as returned by :meth:`ExecutionBackend.start`.

    Attributes:
        pid: id of the job's main process; for the local backend it is also the id of
            its session and process group. Store it to re-create the handle after a
            worker restart with :meth:`from_pid`.
        process: the ``Popen`` object while the starting worker holds it; None for a
            re-created handle (then the exit code cannot be collected, see
            :data:`UNKNOWN_EXIT_CODE`).
    """

    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    reaped_status: int | None = field(default=None, init=False, repr=False, compare=False)
    """Exit code collected by a re-created handle whose pid happened to be our child."""

    @classmethod
    def from_pid(cls, pid: int) -> RunHandle:
        """Re-create a handle from a stored pid (worker restart)."""
        return cls(pid=pid)


class ExecutionBackend(Protocol):
    """Runs jobs somewhere and reports when they end.

    Exit codes reported by :meth:`poll`: 0-255 for a normal exit, 128+N for a job
    killed by signal N (the shell convention), :data:`UNKNOWN_EXIT_CODE` (-1) when the
    job ended but its status was lost.
    """

    def start(self, spec: JobRunSpec) -> RunHandle:
        """Start the job and return at once.

        Raises:
            BackendError: the job cannot be started; nothing is left running.
        """
        ...

    def poll(self, handle: RunHandle) -> int | None:
        """Return None while the job runs, then its exit code (see the class doc).

        Never blocks; may be called again after the job ended (same answer, except
        that a re-created handle always answers :data:`UNKNOWN_EXIT_CODE`).
        """
        ...

    def cancel(self, handle: RunHandle, grace: float = 5.0) -> None:
        """Stop the job and everything it started: SIGTERM, then SIGKILL after
        ``grace`` seconds. Returns when the job is gone; a job that already ended is
        not an error."""
        ...
