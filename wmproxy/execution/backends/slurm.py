"""Run jobs on a Slurm cluster: the job wrapper submitted with ``sbatch`` as the job's
mapped account, into the chosen CE's partition, its work dir on the filesystem the
cluster's nodes share.

The work dir is the local backend's (:meth:`LocalExecutionBackend.prepare
<wmproxy.execution.backends.local.LocalExecutionBackend.prepare>`: input sandbox, proxy
copy, spec) plus, in ``.wmproxy/``, a copy of the wrapper (standard library only, so a
node needs only ``python3`` and the shared filesystem) and the batch script
``slurm.sh``, whose ``#SBATCH`` lines carry every option:

* ``--partition`` the CE's queue, ``--job-name=wmp_<last part of the job id>``,
  ``--comment=<job id>``;
* ``--chdir`` the work dir, ``--output``/``--error`` ``.wmproxy/wrapper.log`` (the wrapper's
  own output, with the prologue's and epilogue's);
* ``--time`` the CE's wall-clock limit in whole minutes (rounded up), ``--mem`` the memory
  limit in MiB, when given;
* ``--no-requeue`` (the WMS does the retrying: a job never runs twice behind its back)
  and ``--export=NONE`` (the wrapper builds the job's environment from nothing);
* the script body ``exec <python> -I -S <work dir>/.wmproxy/jobwrapper.py <work dir>`` (isolated,
  no site: the wrapper needs only the standard library, and every millisecond of its start
  counts at a thousand jobs).

``sbatch --parsable`` then runs as the account (:func:`wmproxy.execution.identity.run_as`:
setpriv, no capability), so munge vouches for the account's uid and Slurm owns the job to
it; with no account (mapping off) as the worker's own user, and never as root.

Following: one ``squeue --states=all -j <every followed job>`` per ``refresh`` seconds
serves every :meth:`SlurmExecutionBackend.poll` in between, so a worker following a
thousand jobs asks Slurm once a second, not a thousand times. A job Slurm still lists
as pending, running or completing is running; once it has left (a final state, or
gone) the wrapper's ``status.json`` decides (:func:`outcome_of`). Without a status
(after ``status_grace`` seconds, for the shared filesystem to show it) Slurm's own end
(``scontrol show job`` for ``MinJobAge`` seconds, else ``sacct`` where accounting runs)
goes into the reason, and ``started.json`` tells deep from shallow. A wrapper that
recorded a signal which wmproxy did not send (its own SIGTERM, or the payload's: Slurm
signals every process of the job) in a job Slurm ended as NODE_FAIL, TIMEOUT, PREEMPTED,
OUT_OF_MEMORY... was stopped by Slurm: Aborted with Slurm's state in the reason, neither
Cancelled nor Done. A job pending longer than ``max_pending`` seconds since Slurm's submit
time (so the clock survives a worker restart) is scancelled and Aborted as never scheduled
(shallow).

Failure classification (the worker feeds it to the retry rules):

=========================================== ======================== ==============
Slurm outcome                                JobOutcome               retry
=========================================== ======================== ==============
sbatch refused (partition unknown, INACTIVE, :class:`BackendError`     shallow
DRAIN, memory too large, controller down)    (Slurm's message)
pending longer than ``max_pending``          Aborted, not started     shallow
wrapper could not start (python missing),    Aborted, not started     shallow
NODE_FAIL/BOOT_FAIL before the payload
NODE_FAIL, TIMEOUT, PREEMPTED,               Aborted, started         deep
OUT_OF_MEMORY after the payload started
payload exit N (any Slurm state)             Done (exit code N)       none
prologue failed                              Aborted, not started     shallow
cancelled by wmproxy                         Cancelled                none
=========================================== ======================== ==============

Backend reference: ``slurm:<cluster>:<Slurm job id>:<work dir name>`` with ``-`` for the
id between :meth:`~SlurmExecutionBackend.prepare` and :meth:`~SlurmExecutionBackend.spawn`.
Slurm job ids are global to a cluster, so any worker configured for the same cluster
(and work root) adopts the job; a reference without id is resolved by the job's name and
work dir in ``squeue``, or requeued when Slurm never saw the job. :attr:`RunHandle.pid`
holds the Slurm job id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from wmproxy.domain import JobState, job_unique
from wmproxy.errors import WMProxyError
from wmproxy.execution import identity
from wmproxy.execution.backends import BackendError, JobLaunch, JobOutcome, RunHandle, outcome_of
from wmproxy.execution.backends.local import CANCEL_MARGIN, LocalExecutionBackend
from wmproxy.execution.identity import Account, IdentityError, WrapperStatusError
from wmproxy.execution.jobwrapper import LOG_NAME, STATE_DIR
from wmproxy.execution.slurm import (
    DEFAULT_TIMEOUT,
    FINAL_STATES,
    KILLED_BY_SLURM,
    PENDING_STATE,
    JobEnd,
    QueuedJob,
    SlurmCommands,
    SlurmError,
    time_limit,
)
from wmproxy.sandbox.confined import ConfinementError, open_confined

log = logging.getLogger(__name__)

SCHEME = "slurm"
SCRIPT_NAME = "slurm.sh"
NAME_PREFIX = "wmp_"
#: Seconds between two squeue calls that serve every poll in between.
DEFAULT_REFRESH = 1.0
#: Seconds a job that has left Slurm may take to show its status.json on the shared filesystem.
DEFAULT_STATUS_GRACE = 5.0
_UNSAFE_PATH = re.compile(r"[\s%\\\"']")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_LOG_TAIL_BYTES = 4096
_REF = re.compile(rf"{SCHEME}:([^:]*):(-|[0-9]+):(.+)", re.S)


@dataclass
class _Followed:
    """What the backend remembers of one Slurm job it follows."""

    cancelled: bool = False  # wmproxy sent the cancel
    killed: bool = False  # the final scancel (KILL) was sent
    expired: str | None = None  # the reason when it was cancelled for pending too long
    ended_at: float | None = None  # monotonic time it was first seen gone without status


class SlurmExecutionBackend:
    """:class:`~wmproxy.execution.backends.ExecutionBackend` submitting the job wrapper to
    a Slurm cluster.

    Args:
        work_root: the work root on the filesystem every node of the cluster mounts at the
            same path (``[slurm] work_dir``); the same ownership rules as the local
            backend's. No whitespace, ``%``, quotes or backslashes in it (it goes into
            ``#SBATCH`` lines).
        slurm_conf: the cluster's ``slurm.conf``; None: Slurm's default.
        bin_dir: where ``sbatch`` and the other clients are; None: ``/usr/bin`` etc.
        python: the interpreter on the nodes that runs the wrapper.
        max_pending: seconds a job may stay PENDING (since its Slurm submit time) before
            it is cancelled and Aborted as never scheduled.
        kill_grace: the wrapper's seconds between SIGTERM and SIGKILL of a cancelled job;
            ``scancel`` ends the job when it has not stopped this plus
            :data:`~wmproxy.execution.backends.local.CANCEL_MARGIN` seconds after.
        cluster: the cluster's name in references (``ClusterName``); jobs of other
            clusters are not adopted.
        refresh: seconds between two squeue calls (one serves all polls in between).
        status_grace: seconds to wait for ``status.json`` of a job that has left Slurm.
        timeout: seconds a Slurm command may take.
        commands: the Slurm driver (built from ``slurm_conf``/``bin_dir``/``timeout``
            when None).
        background_removal: as :class:`LocalExecutionBackend`'s: released work dirs are
            set aside with one rename and removed by a background thread.

    Raises:
        ValueError: the work root has characters Slurm would misread.
    """

    def __init__(self, work_root: Path, *, slurm_conf: str | os.PathLike[str] | None = None,
                 bin_dir: str | os.PathLike[str] | None = None, python: str = "/usr/bin/python3",
                 max_pending: float = 1800.0, kill_grace: float = 10.0, cluster: str = "",
                 refresh: float = DEFAULT_REFRESH, status_grace: float = DEFAULT_STATUS_GRACE,
                 timeout: float = DEFAULT_TIMEOUT, commands: SlurmCommands | None = None,
                 background_removal: bool = False) -> None:
        self.work_root = Path(os.path.abspath(work_root))
        if _UNSAFE_PATH.search(str(self.work_root)):
            raise ValueError(f"The Slurm work root {self.work_root} must not hold whitespace, %, quotes or \\")
        if ":" in cluster:
            raise ValueError(f"Invalid Slurm cluster name {cluster!r}")
        self.commands = commands or SlurmCommands(slurm_conf, bin_dir, timeout)
        self.python = python
        self.max_pending = max_pending
        self.kill_grace = kill_grace
        self.cluster = cluster
        self.refresh = refresh
        self.status_grace = status_grace
        self._files = LocalExecutionBackend(self.work_root, kill_grace=kill_grace, python=python,
                                            background_removal=background_removal)
        self._followed: dict[int, _Followed] = {}
        self._queue: dict[int, QueuedJob] = {}
        self._queried: set[int] = set()  # the ids the last squeue asked for
        self._queue_at = float("-inf")  # monotonic time of the last squeue

    # --- starting ------------------------------------------------------------------

    def prepare(self, launch: JobLaunch) -> RunHandle:
        """The local backend's work dir plus the wrapper copy and the batch script; nothing
        is submitted yet.

        Raises:
            BackendError: as :meth:`LocalExecutionBackend.prepare`, or no partition was
                chosen, or the wrapper or script cannot be written (the work dir is
                removed again).
        """
        if not launch.queue:
            raise BackendError(f"No Slurm partition was chosen for the job {launch.job_id}")
        handle = self._files.prepare(launch)
        work_dir = handle.work_dir
        try:
            wrapper = identity.install_wrapper(work_dir, launch.account)
            script = batch_script(launch, work_dir, wrapper, self.python)
            identity.write_state_file(work_dir, SCRIPT_NAME, script.encode(), 0o400, launch.account)
        except WMProxyError as exc:
            self._files.release(handle)
            raise BackendError(str(exc)) from None
        handle.ref = self._ref(None, work_dir.name)
        return handle

    def spawn(self, handle: RunHandle) -> RunHandle:
        """``sbatch`` the prepared job as its account; the handle then names the Slurm job.

        Raises:
            BackendError: sbatch refused the job (Slurm's message: unknown or inactive
                partition, impossible limits, controller unreachable), or no account was
                mapped while the worker runs as root.
        """
        script = handle.work_dir / STATE_DIR / SCRIPT_NAME
        try:
            job_id = self.commands.submit(script, handle.account, handle.work_dir)
        except SlurmError as exc:
            found = self._submitted_anyway(handle) if exc.timed_out else None
            if found is None:
                raise BackendError(f"Slurm refused the job: {exc}") from None
            job_id = found
        self._follow(handle, job_id)
        return handle

    def _submitted_anyway(self, handle: RunHandle) -> int | None:
        """After an sbatch that timed out: the job it may have created after all. When Slurm
        cannot say, a job of that name is cancelled (best effort), so that a resubmission
        never runs beside it."""
        name = job_name(handle.work_dir.name)
        try:
            found = self.commands.find(name, handle.work_dir)
        except SlurmError as exc:
            log.warning("sbatch of %s timed out and Slurm cannot be asked (%s); cancelling %s", handle.ref, exc, name)
            with contextlib.suppress(SlurmError):
                self.commands.run("scancel", f"--name={name}", account=handle.account, as_account=True)
            return None
        return None if found is None else found.job_id

    def _follow(self, handle: RunHandle, job_id: int) -> None:
        handle.pid = job_id
        handle.ref = self._ref(job_id, handle.work_dir.name)
        self._followed.setdefault(job_id, _Followed())

    # --- following -----------------------------------------------------------------

    def poll(self, handle: RunHandle) -> JobOutcome | None:
        """None while Slurm lists the job as active (or cannot be asked); then its outcome
        (module docstring). Runs at most one ``squeue`` per ``refresh`` seconds for all
        jobs; a job pending too long is scancelled here."""
        if handle.pid is None:
            return self._poll_unsubmitted(handle)
        job_id = handle.pid
        followed = self._followed.setdefault(job_id, _Followed())
        known, queued = self._lookup(job_id)
        if not known:
            return None
        if queued is not None and queued.state not in FINAL_STATES:
            if queued.state == PENDING_STATE:
                self._expire_if_stale(handle, followed, queued)
            return None
        outcome = self._ended(handle, job_id, followed, queued)
        if outcome is not None:
            self._forget(job_id)
        return outcome

    def _poll_unsubmitted(self, handle: RunHandle) -> JobOutcome | None:
        """A job adopted from a reference without Slurm job id: follow the job sbatch made
        if Slurm knows one, else report that it never ran (the worker requeues it)."""
        try:
            found = self.commands.find(job_name(handle.work_dir.name), handle.work_dir)
        except SlurmError as exc:
            log.warning("cannot look %s up in Slurm: %s", handle.work_dir.name, exc)
            return None
        if found is not None:
            self._follow(handle, found.job_id)
            return None
        status = self._status(handle)
        if isinstance(status, JobOutcome):
            return status
        started = self._started(handle, status)
        if status is not None:
            return outcome_of(status, started)
        if not started:
            return _failure("Slurm has no job for it: it was never submitted", False, recorded=False)
        return outcome_of(None, started)

    def _lookup(self, job_id: int) -> tuple[bool, QueuedJob | None]:
        """``(known, queued)``: whether the last squeue (refreshed when older than
        ``refresh``) asked for the job, and its line (None: Slurm no longer lists it)."""
        now = time.monotonic()
        if now - self._queue_at >= self.refresh:
            ids = sorted(self._followed)
            try:
                queue = self.commands.queue(ids)
            except SlurmError as exc:
                log.warning("squeue failed, the state of %d Slurm job(s) is unknown: %s", len(ids), exc)
                self._queue_at = now
                self._queried = set()
                return False, None
            self._queue, self._queried, self._queue_at = queue, set(ids), now
        if job_id not in self._queried:
            return False, None
        return True, self._queue.get(job_id)

    def _expire_if_stale(self, handle: RunHandle, followed: _Followed, queued: QueuedJob) -> None:
        if followed.expired is not None or queued.submitted is None:
            return
        pending = time.time() - queued.submitted
        if pending <= self.max_pending:
            return
        try:
            self.commands.cancel(queued.job_id, handle.account)
        except SlurmError as exc:
            log.warning("cannot cancel Slurm job %d pending for %.0f s: %s", queued.job_id, pending, exc)
            return
        followed.expired = (f"Slurm did not schedule the job within {self.max_pending:g} s (Slurm job "
                            f"{queued.job_id} pending, reason {queued.reason}); it was cancelled")
        log.info("Slurm job %d cancelled after %.0f s pending (%s)", queued.job_id, pending, queued.reason)

    def _ended(self, handle: RunHandle, job_id: int, followed: _Followed,
               queued: QueuedJob | None) -> JobOutcome | None:
        status = self._status(handle)
        if isinstance(status, JobOutcome):
            return status
        started = self._started(handle, status)
        if status is None:
            now = time.monotonic()
            if followed.ended_at is None:
                followed.ended_at = now
            if now - followed.ended_at < self.status_grace:
                return None  # the shared filesystem may not show the status file yet
            if followed.cancelled:
                return JobOutcome(JobState.CANCELLED, payload_started=started, recorded=False)
            if followed.expired is not None:
                return _failure(followed.expired, started, recorded=False)
            return _failure(f"the job wrapper ended without recording the job's outcome; Slurm job {job_id}: "
                            f"{self._slurm_end(job_id, queued)}{self._log_tail(handle)}", started, recorded=False)
        signalled = status.cancelled_by is not None or status.signal is not None
        if signalled and not followed.cancelled:  # Slurm may have signalled the wrapper or the payload
            if followed.expired is not None:
                return _failure(followed.expired, started)
            end = self._end_of(job_id, queued)
            if end is not None and end.state in KILLED_BY_SLURM:
                return _failure(f"Slurm stopped the job: Slurm job {job_id}: {end.describe()}", started)
        return outcome_of(status, started)

    def _status(self, handle: RunHandle) -> identity.WrapperStatus | JobOutcome | None:
        """The wrapper's status, or the outcome when it is unacceptable or the work dir is gone."""
        try:
            return identity.read_status(handle.work_dir, handle.account)
        except WrapperStatusError as exc:
            return JobOutcome(JobState.ABORTED, reason=str(exc), payload_started=True)
        except IdentityError as exc:
            return JobOutcome(JobState.ABORTED, reason=f"the job's work directory is gone: {exc}", recorded=False)

    def _started(self, handle: RunHandle, status: identity.WrapperStatus | None) -> bool:
        return (status is not None and status.payload_started) or self.started(handle)

    def _end_of(self, job_id: int, queued: QueuedJob | None) -> JobEnd | None:
        try:
            end = self.commands.job_end(job_id)
        except SlurmError as exc:
            log.warning("cannot read how Slurm ended job %d: %s", job_id, exc)
            end = None
        if end is None and queued is not None:
            end = JobEnd(queued.state, queued.reason)
        return end

    def _slurm_end(self, job_id: int, queued: QueuedJob | None) -> str:
        end = self._end_of(job_id, queued)
        return "no longer known to Slurm" if end is None else end.describe()

    def _log_tail(self, handle: RunHandle) -> str:
        """``; last output: <line>`` of the wrapper's log (Slurm's batch output), if any."""
        try:
            fd = open_confined(handle.work_dir, f"{STATE_DIR}/{LOG_NAME}")
        except ConfinementError:
            return ""
        with os.fdopen(fd, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            stream.seek(max(0, size - _LOG_TAIL_BYTES))
            lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
        return f"; last output: {lines[-1][:300]}" if lines else ""

    def started(self, handle: RunHandle) -> bool:
        """Whether ``started.json`` (or a status saying so) exists; an unreadable one counts
        as started, so the job is never run again."""
        return self._files.started(handle)

    def cancel(self, handle: RunHandle) -> None:
        """Cancel as the account: a pending job is removed (``scancel``); a running one's
        wrapper gets SIGTERM (``scancel --signal=TERM --batch``: it stops the payload and
        records ``cancelled_by``); once ``kill_grace`` plus the margin has passed,
        ``scancel`` ends the job (SIGKILL after Slurm's ``KillWait``). Idempotent; Slurm's
        complaints about a job that has already ended are ignored."""
        job_id = handle.pid
        if job_id is None:
            return
        followed = self._followed.setdefault(job_id, _Followed())
        now = time.monotonic()
        queued = self._queue.get(job_id)
        try:
            if handle.cancel_sent_at is None:
                handle.cancel_sent_at = now
                followed.cancelled = True
                if queued is not None and queued.state == PENDING_STATE:
                    self.commands.cancel(job_id, handle.account)
                else:
                    try:
                        self.commands.cancel(job_id, handle.account, signal="TERM", batch_only=True)
                    except SlurmError:  # pending after all, or the batch step not launched yet
                        self.commands.cancel(job_id, handle.account)
            elif not followed.killed and now - handle.cancel_sent_at > self.kill_grace + CANCEL_MARGIN:
                followed.killed = True
                self.commands.cancel(job_id, handle.account)
        except SlurmError as exc:
            log.info("scancel of Slurm job %d: %s", job_id, exc)

    def attach(self, ref: str, account: Account | None) -> RunHandle | None:
        """The handle of a job from its reference (any worker of this cluster): None unless
        it is ``slurm:<this cluster>:``. A reference without job id is resolved at the
        next :meth:`poll`."""
        parsed = parse_ref(ref)
        if parsed is None or parsed[0] != self.cluster:
            return None
        _cluster, job_id, name = parsed
        handle = RunHandle(ref=self._ref(job_id, name), work_dir=self.work_root / name, account=account, pid=job_id)
        if job_id is not None:
            self._follow(handle, job_id)
        return handle

    def release(self, handle: RunHandle) -> None:
        """Remove the job's proxy copy and work dir (as the local backend) and forget it.

        Raises:
            BackendError: the directory could not be removed.
        """
        if handle.pid is not None:
            self._forget(handle.pid)
        self._files.release(handle)

    # --- helpers -------------------------------------------------------------------

    def _forget(self, job_id: int) -> None:
        self._followed.pop(job_id, None)

    def _ref(self, job_id: int | None, name: str) -> str:
        return f"{SCHEME}:{self.cluster}:{'-' if job_id is None else job_id}:{name}"


def _failure(reason: str, started: bool, *, recorded: bool = True) -> JobOutcome:
    """Aborted for a reason outside the payload: deep when the payload had started, else shallow."""
    kind = "deep" if started else "shallow"
    return JobOutcome(JobState.ABORTED, reason=f"{reason} ({kind} failure)", payload_started=started,
                      recorded=recorded)


def parse_ref(ref: str) -> tuple[str, int | None, str] | None:
    """``(cluster, Slurm job id or None, work dir name)`` of a Slurm backend reference,
    None for another backend's or a malformed one."""
    match = _REF.fullmatch(ref)
    if match is None:
        return None
    cluster, job_id, name = match.groups()
    return cluster, None if job_id == "-" else int(job_id), name


def job_name(work_dir_name: str) -> str:
    """The Slurm job name of a job: ``wmp_`` + the last part of its id (the work dir name
    encodes the id), at most 64 characters of ``[A-Za-z0-9_.-]``."""
    return NAME_PREFIX + _NAME_CHARS.sub("_", job_unique(_job_id_of(work_dir_name)))[:60]


def _job_id_of(work_dir_name: str) -> str:
    """The job id from a work dir name (:func:`wmproxy.domain.to_filename` reversed)."""
    return re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), work_dir_name)


def batch_script(launch: JobLaunch, work_dir: Path, wrapper: Path, python: str) -> str:
    """The ``sbatch`` script of a job (module docstring): ``#SBATCH`` lines, then the
    wrapper's command line.

    Raises:
        BackendError: the partition or a limit cannot be written as an option.
    """
    queue = launch.queue or ""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", queue):
        raise BackendError(f"Invalid Slurm partition name {queue!r}")
    if _UNSAFE_PATH.search(str(work_dir)) or _UNSAFE_PATH.search(python):
        raise BackendError(f"The work directory {work_dir} or interpreter {python} cannot go into #SBATCH lines")
    log_file = work_dir / STATE_DIR / LOG_NAME
    options = [
        f"--partition={queue}",
        f"--job-name={job_name(work_dir.name)}",
        f"--chdir={work_dir}",
        f"--output={log_file}",
        f"--error={log_file}",
        "--no-requeue",
        "--export=NONE",
        "--nodes=1",
        "--ntasks=1",
    ]
    if re.fullmatch(r"[\w.:/@-]+", launch.job_id):
        options.append(f"--comment={launch.job_id}")
    if launch.wall_time is not None:
        if launch.wall_time <= 0:
            raise BackendError(f"Invalid wall-clock limit {launch.wall_time} s")
        options.append(f"--time={time_limit(launch.wall_time)}")
    if launch.memory_mb is not None:
        if launch.memory_mb <= 0:
            raise BackendError(f"Invalid memory limit {launch.memory_mb} MiB")
        options.append(f"--mem={launch.memory_mb}M")
    command = shlex.join([python, "-I", "-S", str(wrapper), str(work_dir)])
    lines = ["#!/bin/sh", f"# wmproxy job {launch.job_id}", *(f"#SBATCH {option}" for option in options),
             f"exec {command}", ""]
    return "\n".join(lines)
