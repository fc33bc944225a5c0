"""Execution backends: where and how the execution worker runs a job, always through the
job wrapper (:mod:`wmproxy.execution.jobwrapper`) as the job's mapped account.

The worker (``wmproxy.execution.worker``) claims a job and hands the backend a
:class:`JobLaunch`. Starting takes two steps so that a job runs at most once:

1. :meth:`ExecutionBackend.prepare` creates the job's work dir, stages the input
   sandbox, hands everything to the account, installs the proxy copy and writes the
   wrapper's spec; it returns the job's backend reference without a process.
2. The worker commits the job as Scheduled with that reference (the work dir is now
   recorded), then :meth:`ExecutionBackend.spawn` starts the wrapper and returns the
   reference naming its process, which the worker commits with Running.

:meth:`ExecutionBackend.poll` reads the outcome the wrapper recorded
(:func:`outcome_of`); :meth:`ExecutionBackend.attach` follows a job of a dead worker
from its stored reference (adoption). The backend knows nothing of the database.

Implementations: :class:`wmproxy.execution.backends.local.LocalExecutionBackend`
(processes on this host, kind ``local``). A worker holds one backend per kind and uses
the one the job's CE names (``WMProxyBackend``); a backend reference starts with its
kind (``local:``, ``slurm:``), so an adopted job goes back to the backend that started it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from wmproxy.domain import JobState
from wmproxy.errors import WMProxyError
from wmproxy.execution.identity import Account, WrapperStatus
from wmproxy.execution.jobwrapper import JobSpec


class BackendError(WMProxyError):
    """A job could not be started (work dir, staging, proxy, spec, wrapper spawn, a batch
    system that refuses it). The message says why; the worker reports it as a shallow
    failure (resubmitted within ``ShallowRetryCount``, else the job's abort reason)."""


@dataclass(frozen=True)
class JobLaunch:
    """Everything a backend needs to start one job.

    Attributes:
        job_id: the grid job id.
        account: the mapped account the job runs as; None (no mapping configured) runs
            it as the worker's own user.
        spec: what the wrapper runs (its ``proxy`` field names the proxy copy).
        input_dir: the job area's input directory (a node's: its parent's).
        isb_files: file names to copy from ``input_dir`` into the work dir.
        proxy_pem: the delegated proxy with its key (PEM), installed as the copy.
        ce_id: the CE the broker chose (``GlueCEUniqueID``), "" when unknown.
        queue: the batch queue of that CE (a Slurm partition), None for the local backend.
        wall_time: seconds the job may run (the CE's ``GlueCEPolicyMaxWallClockTime`` or the
            site default), None for no limit: Slurm's ``--time``, the job wrapper's own clock
            for the local backend.
        memory_mb: mebibytes of memory to ask the batch system for, None for its default.
        attempt: 0 for the first run, n for the n-th resubmission (shallow or deep).
    """

    job_id: str
    account: Account | None
    spec: JobSpec
    input_dir: Path
    isb_files: tuple[str, ...] = ()
    proxy_pem: bytes = b""
    ce_id: str = ""
    queue: str | None = None
    wall_time: int | None = None
    memory_mb: int | None = None
    attempt: int = 0


@dataclass
class RunHandle:
    """A job the backend started or attached to.

    Attributes:
        ref: the backend reference stored in ``jobs.backend_ref``.
        work_dir: the job's work dir.
        account: whom the work dir belongs to.
        pid: the wrapper's pid (also its session and process group id), None before
            :meth:`ExecutionBackend.spawn`.
        process: the wrapper's ``Popen`` while the spawning worker holds it.
        cancel_sent_at: monotonic time the cancel was sent, None if not cancelled.
        spec: the job's spec (``JobSpec.to_bytes``) not written to the work dir yet: the
            local backend hands it to the wrapper through its zygote, and writes
            ``.wmproxy/job.marshal`` only when it starts the wrapper itself; None once written.
        wall_time: seconds the job may run counted from its wrapper's start (the local
            backend's backstop, which also records it in the reference), None for no limit.
        wrapper_born: the wrapper's start time (clock ticks after boot, from ``/proc``), once
            the local backend has read it; None before.
        overrun: the local backend killed the job itself, past its wall time.
    """

    ref: str
    work_dir: Path
    account: Account | None
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    cancel_sent_at: float | None = None
    spec: bytes | None = field(default=None, repr=False, compare=False)
    wall_time: float | None = None
    wrapper_born: int | None = field(default=None, repr=False, compare=False)
    overrun: bool = False


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, as the worker records it.

    Attributes:
        state: Done (the payload ran; ``exit_code`` 0-255, 128+N for signal N),
            Aborted (a failure outside the payload: it never ran, its status is lost,
            or the epilogue failed; ``reason`` says why) or Cancelled (the wrapper was
            cancelled).
        exit_code: the payload's exit code, None when it did not run.
        reason: a sentence for the job's status (epilogue failure, wrapper error).
        payload_started: whether the payload was executed: an Aborted outcome is a
            deep failure if so, else a shallow one (``wmproxy.services.retries``).
        recorded: whether the wrapper recorded the outcome (``status.json``); False
            when it died without one.
    """

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    payload_started: bool = False
    recorded: bool = True


def outcome_of(status: WrapperStatus | None, payload_started: bool) -> JobOutcome:
    """The outcome of a job whose wrapper has ended.

    Args:
        status: the wrapper's ``status.json`` (None: the wrapper died without one).
        payload_started: whether ``started.json`` exists (used without a status).

    Returns:
        Cancelled when the wrapper was cancelled; Done with the payload's exit code
        (128+N for signal N) when the payload ran; Aborted with the wrapper's reason when
        the payload never ran (a shallow failure), when no status exists ("deep" or
        "shallow" failure in the reason), or when the epilogue failed after the payload
        ran (a deep failure, as the reference's ``Epilogue = "/bin/false"`` test wants;
        the payload's exit code is kept).
    """
    if status is None:
        if payload_started:
            return JobOutcome(JobState.ABORTED, reason="the job wrapper ended without recording the job's"
                              " outcome after the payload had started (deep failure)", payload_started=True,
                              recorded=False)
        return JobOutcome(JobState.ABORTED, reason="the job wrapper ended before starting the payload"
                          " (shallow failure)", recorded=False)
    if status.cancelled_by is not None:
        return JobOutcome(JobState.CANCELLED, exit_code=status.shell_exit_code,
                          payload_started=status.payload_started)
    if not status.payload_started:
        return JobOutcome(JobState.ABORTED, reason=status.failure or "the payload was not started")
    code = status.shell_exit_code
    reasons: list[str] = []
    if code is None:
        reasons.append(status.failure or "the payload's exit status was lost")
        code = 1
    epilogue = status.epilogue
    if epilogue is not None and not epilogue.succeeded:
        if epilogue.failure is not None:
            reasons.append(f"epilogue failed: {epilogue.failure}")
        elif epilogue.signal is not None:
            reasons.append(f"epilogue killed by signal {epilogue.signal}")
        else:
            reasons.append(f"epilogue failed with exit code {epilogue.exit_code}")
        return JobOutcome(JobState.ABORTED, exit_code=code, reason="; ".join(reasons), payload_started=True)
    return JobOutcome(JobState.DONE, exit_code=code, reason="; ".join(reasons) or None, payload_started=True)


def out_of_memory(outcome: JobOutcome, status: WrapperStatus | None, why: str) -> JobOutcome:
    """The outcome of a job some of whose processes the kernel's OOM killer killed (``why``, a
    sentence: :meth:`JobCgroups.oom_killed <wmproxy.execution.cgroups.JobCgroups.oom_killed>`).

    Returns:
        A cancelled job's outcome unchanged, and a payload's that exited 0 (it survived the kill
        of one of its processes) with ``why`` as its reason; else Aborted with ``why`` (and
        a recorded reason, e.g. an epilogue's failure), the payload's exit code kept: a deep
        failure once the payload started, as the Slurm backend's OUT_OF_MEMORY, else shallow.
    """
    if outcome.state == JobState.CANCELLED:
        return outcome
    if outcome.state == JobState.DONE and outcome.exit_code == 0:
        return JobOutcome(JobState.DONE, exit_code=0, reason="; ".join(filter(None, [outcome.reason, why])),
                          payload_started=outcome.payload_started, recorded=outcome.recorded)
    depth = "deep" if outcome.payload_started else "shallow"
    kept = outcome.reason if status is not None and outcome.reason else None
    return JobOutcome(JobState.ABORTED, exit_code=outcome.exit_code,
                      reason="; ".join(filter(None, [f"{why} ({depth} failure)", kept])),
                      payload_started=outcome.payload_started, recorded=outcome.recorded)


class ExecutionBackend(Protocol):
    """Runs jobs through the job wrapper somewhere and reports how they ended."""

    def prepare(self, launch: JobLaunch) -> RunHandle:
        """Create and fill the job's work dir; start nothing.

        Raises:
            BackendError: the work dir cannot be set up (it is removed again).
        """
        ...

    def spawn(self, handle: RunHandle) -> RunHandle:
        """Start the wrapper of a prepared job; the returned handle names its process.

        Raises:
            BackendError: the wrapper cannot be started.
        """
        ...

    def poll(self, handle: RunHandle) -> JobOutcome | None:
        """None while the wrapper runs, then the job's outcome. Never blocks."""
        ...

    def cancel(self, handle: RunHandle) -> None:
        """Ask the wrapper to stop the job (it records ``cancelled_by``); returns at once.
        Calling it again after the wrapper's grace has passed kills the job's session."""
        ...

    def attach(self, ref: str, account: Account | None) -> RunHandle | None:
        """Re-create the handle of a job from its stored reference (adoption); None when
        the reference is not this backend's or names another host."""
        ...

    def started(self, handle: RunHandle) -> bool:
        """Whether the job's payload has been executed (``started.json``)."""
        ...

    def release(self, handle: RunHandle) -> None:
        """Remove the job's proxy copy and work dir (after collection). Never raises for
        a missing directory."""
        ...


@runtime_checkable
class BatchSpawning(Protocol):
    """Optional hook of an :class:`ExecutionBackend` that starts several prepared jobs at once."""

    def spawn_batch(self, handles: Sequence[RunHandle]) -> None:
        """Start some of these prepared (and recorded Scheduled) jobs together, e.g. as one
        Slurm job array; :meth:`ExecutionBackend.spawn` is still called for each handle
        afterwards and starts the rest (or raises why it failed). Never raises."""
        ...
