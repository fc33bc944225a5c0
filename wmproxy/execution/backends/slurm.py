"""Run jobs on a Slurm cluster: the job wrapper submitted with ``sbatch`` as the job's
mapped account, into the chosen CE's partition, its work dir on the filesystem the
cluster's nodes share.

The work dir is the local backend's (:meth:`LocalExecutionBackend.prepare
<wmproxy.execution.backends.local.LocalExecutionBackend.prepare>`: input sandbox, proxy
copy, spec) plus, in ``.wmproxy/``, the batch script ``slurm.sh``, whose ``#SBATCH`` lines
carry every option:

* ``--partition`` the CE's queue, ``--job-name=wmp_<last part of the job id>`` (and
  ``.<n>`` for the n-th resubmission: :func:`job_name`), ``--comment=<job id>``;
* ``--chdir`` the work dir, ``--output``/``--error`` ``.wmproxy/wrapper.log`` (the wrapper's
  own output, with the prologue's and epilogue's);
* ``--time`` the CE's wall-clock limit in whole minutes (rounded up), ``--mem`` the memory
  limit in MiB, when given;
* ``--no-requeue`` (the WMS does the retrying: a job never runs twice behind its back)
  and ``--export=ALL``: the batch job gets sbatch's environment, which is the fixed one of
  :attr:`SlurmCommands.env <wmproxy.execution.slurm.SlurmCommands.env>` (``PATH``, ``LANG``,
  ``SLURM_*``), nothing of the worker's; the wrapper then builds the job's environment from
  nothing, passing on only the ``SLURM_*`` variables. Not ``--export=NONE``: it implies
  ``--get-user-env``, so slurmd ran ``su - <account>`` for a login environment at every job
  start (the job wrapper would discard it anyway), which cost the node more than the
  wrapper's own start;
* the script body ``exec <python> -I -S -c <import the wrapper> <wrapper dir> <work dir>``
  (isolated, no site: the wrapper needs only the standard library, and every millisecond
  of its start counts at a thousand jobs). The wrapper (standard library only, so a node
  needs only ``python3`` and the shared filesystem) is in one directory of the work root
  per wrapper version (:func:`install_shared_wrapper`) with its byte code, compiled once by
  the worker, so a node does not compile it again for every job.

Job arrays: the worker hands the jobs of one cycle to :meth:`SlurmExecutionBackend.spawn_batch`
before spawning each; those sharing account, partition and limits go to Slurm as one job array
(``--array=0-<N-1>``, :func:`array_script`: one sbatch, one account switch and one
controller request for N jobs), task K running the K-th job's wrapper in its work dir. A
task is the Slurm job ``<array id>_<K>`` in the reference, squeue, scancel and scontrol;
each job's ``.wmproxy/slurm-task`` says ``<array name> <K>`` (written before sbatch, so a
reference stored without id still finds its task). A job alone of its kind (a retry, say)
is submitted alone with its ``slurm.sh``.

``sbatch --parsable`` then runs as the account (:func:`wmproxy.execution.identity.run_as`:
setpriv, no capability), so munge vouches for the account's uid and Slurm owns the job to
it; with no account (mapping off) as the worker's own user, and never as root.

Following: one ``squeue -r --states=all -j <every followed job or array>`` per ``refresh`` seconds
serves every :meth:`SlurmExecutionBackend.poll` in between, so a worker following a
thousand jobs asks Slurm once a second, not a thousand times (and the jobs without Slurm id
are looked for by one ``squeue -n`` of their names). While slurmctld does not answer, the
wait after a failed squeue doubles up to :data:`MAX_BACKOFF` seconds: an outage costs one
squeue per wait, not one per job, and a cancel whose scancel failed is sent again then. A job Slurm still lists
as pending, running or completing is running; once it has left (a final state, or
gone) the wrapper's ``status.json`` decides (:func:`outcome_of`). Without a status
(after ``status_grace`` seconds, for the shared filesystem to show it) Slurm's own end
(``scontrol show job`` for ``MinJobAge`` seconds, else ``sacct`` where accounting runs)
goes into the reason, and ``started.json`` tells deep from shallow. A wrapper that
recorded a signal which wmproxy did not send (its own SIGTERM, or the payload's: Slurm
signals every process of the job) in a job Slurm ended as NODE_FAIL, TIMEOUT, PREEMPTED,
OUT_OF_MEMORY... was stopped by Slurm: Aborted with Slurm's state in the reason, neither
Cancelled nor Done. A job pending longer than ``max_pending`` seconds for a reason that
means it cannot run there (:func:`~wmproxy.execution.slurm.cannot_run`: partition down,
required nodes down, held...) is scancelled and Aborted as never scheduled (shallow); a job
waiting its turn (``Resources``, ``Priority``) waits.

An sbatch whose answer was lost (killed after the timeout, or Slurm's "Socket timed out on
send/recv operation" and the like: :attr:`SlurmError.maybe_done
<wmproxy.execution.slurm.SlurmError.maybe_done>`) is not a refusal: slurmctld may create the
job even later. The job stays without Slurm id and is followed once squeue lists it; only
``submit_settle`` seconds later, Slurm still listing none, is its name scancelled and the job
reported never submitted (shallow), so that Slurm never runs it beside a resubmission. A job
adopted without Slurm id from a worker that died before knowing how its sbatch went is waited
for alike, from the time its submission script was written.

Failure classification (the worker feeds it to the retry rules):

=========================================== ======================== ==============
Slurm outcome                                JobOutcome               retry
=========================================== ======================== ==============
sbatch refused (partition unknown, INACTIVE, :class:`BackendError`     shallow
DRAIN, memory too large, controller down)    (Slurm's message)
sbatch lost its answer, no job after         Aborted, not started     shallow
``submit_settle``
pending longer than ``max_pending`` where    Aborted, not started     shallow
it cannot run
wrapper could not start (python missing),    Aborted, not started     shallow
NODE_FAIL/BOOT_FAIL before the payload
NODE_FAIL, TIMEOUT, PREEMPTED,               Aborted, started         deep
OUT_OF_MEMORY after the payload started
payload exit N (any Slurm state)             Done (exit code N)       none
prologue failed                              Aborted, not started     shallow
cancelled by wmproxy                         Cancelled                none
=========================================== ======================== ==============

Backend reference: ``slurm:<cluster>:<Slurm job id>:<work dir name>`` (the id ``123`` or
``123_4`` for task 4 of an array) with ``-`` for the
id between :meth:`~SlurmExecutionBackend.prepare` and :meth:`~SlurmExecutionBackend.spawn`.
Slurm job ids are global to a cluster, so any worker configured for the same cluster
(and work root) adopts the job; a reference without id is resolved by the job's name and
work dir in ``squeue`` (or its ``slurm-task``), or requeued when Slurm has not listed it for
``submit_settle`` seconds since its submission script was written.
:attr:`RunHandle.pid` holds the Slurm job id (of an array task: the array's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import py_compile
import re
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmproxy.domain import JobState, job_unique
from wmproxy.errors import WMProxyError
from wmproxy.execution import identity
from wmproxy.execution.backends import BackendError, JobLaunch, JobOutcome, RunHandle, outcome_of
from wmproxy.execution.backends.local import CANCEL_MARGIN, LocalExecutionBackend
from wmproxy.execution.identity import Account, IdentityError, WrapperStatusError
from wmproxy.execution.jobwrapper import INSPECTION_AGENT, LOG_NAME, STATE_DIR
from wmproxy.execution.slurm import (
    DEFAULT_TIMEOUT,
    FINAL_STATES,
    KILLED_BY_SLURM,
    NUMBER,
    PENDING_STATE,
    JobEnd,
    NamedJob,
    QueuedJob,
    SlurmCommands,
    SlurmError,
    base_job_id,
    cannot_run,
    time_limit,
)
from wmproxy.sandbox.confined import ConfinementError, open_confined

log = logging.getLogger(__name__)

SCHEME = "slurm"
SCRIPT_NAME = "slurm.sh"
#: The batch script of a job array, in the work dir of its task 0.
ARRAY_SCRIPT_NAME = "slurm-array.sh"
#: ``<job array name> <task>`` of a job submitted as a task of a job array, written before sbatch.
TASK_NAME = "slurm-task"
#: Directory (in the work root, one per wrapper version) of the wrapper every Slurm job runs.
WRAPPER_DIR_PREFIX = ".wmproxy-wrapper-"
#: The batch script's Python: import the wrapper (its first argument, the shared copy's path)
#: from its directory, so that the byte code the worker compiled there is used, and run it on
#: the work dir (its second argument). The command line still shows ``.../jobwrapper.py``.
WRAPPER_BOOT = ("import sys; w = sys.argv.pop(1); sys.path = [w.rpartition('/')[0]] + [p for p in sys.path if p]; "
                "import jobwrapper; sys.exit(jobwrapper.main())")
#: Jobs one job array carries at most (below Slurm's default ``MaxArraySize`` of 1001).
DEFAULT_MAX_ARRAY = 1000
NAME_PREFIX = "wmp_"
#: Seconds between two squeue calls that serve every poll in between.
DEFAULT_REFRESH = 1.0
#: Seconds at most (or ``refresh``, if longer) between two tries to reach a controller that
#: did not answer: after a failure the wait doubles from twice ``refresh`` up to this.
MAX_BACKOFF = 30.0
#: Seconds a job that has left Slurm may take to show its status.json on the shared filesystem.
DEFAULT_STATUS_GRACE = 5.0
#: Seconds after an sbatch whose answer was lost during which slurmctld may still create the
#: job: munge's default credential lifetime (300 s; slurmctld refuses an older request) plus
#: a margin.
DEFAULT_SUBMIT_SETTLE = 330.0
#: ``<Unix time> <job name> <task or ->`` and sbatch's message, written (only) after an sbatch
#: whose answer was lost, so that a worker adopting the job waits as long for it to appear.
UNRESOLVED_NAME = "slurm-unresolved"
_UNSAFE_PATH = re.compile(r"[\s%\\\"']")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_LOG_TAIL_BYTES = 4096
_SCRIPT_NAME_LINE = re.compile(r"^#SBATCH --job-name=(\S+)$", re.M)
_SCRIPT_HEAD_BYTES = 4096
_REF = re.compile(rf"{SCHEME}:([^:]*):(-|[0-9]{{1,18}}(?:_[0-9]{{1,9}})?):(.+)", re.S)
#: A Slurm job name wmproxy gives (:func:`job_name`), as read back from a file the job can write.
_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: A job array's task number, as read from a file the job can write.
_TASK = re.compile(r"[0-9]{1,9}")


@dataclass
class _Followed:
    """What the backend remembers of one Slurm job it follows."""

    cancelled: bool = False  # wmproxy sent the cancel
    killed: bool = False  # the final scancel (KILL) was sent
    expired: str | None = None  # the reason when it was cancelled for pending too long
    stuck_since: float | None = None  # monotonic time it was first seen pending for a reason it cannot run
    ended_at: float | None = None  # monotonic time it was first seen gone without status
    cancel_failures: int = 0  # scancels of it that failed in a row (it is tried again)
    cancel_retry_at: float = float("-inf")  # monotonic time of its next scancel try


@dataclass(frozen=True)
class _Unresolved:
    """An sbatch whose answer was lost: the job may exist, or appear until ``since`` plus
    ``submit_settle``."""

    name: str  # the job's (or its job array's) name
    task: int | None  # its task in the job array, None for a job alone
    since: float  # Unix time of the failure (of the submission script, for an interrupted sbatch)
    error: str  # sbatch's message; "" for the sbatch a dying worker may have left

    def encode(self) -> bytes:
        task = "-" if self.task is None else str(self.task)
        return f"{self.since:.0f} {self.name} {task}\n{self.error}\n".encode()

    @classmethod
    def decode(cls, data: bytes) -> _Unresolved | None:
        head, _newline, error = data.decode(errors="replace").partition("\n")
        fields = head.split()
        if (len(fields) != 3 or not NUMBER.fullmatch(fields[0]) or not _JOB_NAME.fullmatch(fields[1])
                or not (fields[2] == "-" or _TASK.fullmatch(fields[2]))):
            return None  # the job may have written anything there
        return cls(fields[1], None if fields[2] == "-" else int(fields[2]), float(fields[0]), error.strip())


@dataclass(frozen=True)
class _Prepared:
    """What a prepared job's submission needs beyond its work dir: jobs with equal
    ``batch_key`` (account, partition, limits) may share one job array."""

    job_id: str
    name: str  # the Slurm job name (:func:`job_name`: of this attempt)
    queue: str
    wall_time: int | None
    memory_mb: int | None
    uid: int | None

    @property
    def batch_key(self) -> tuple[int | None, str, int | None, int | None]:
        return self.uid, self.queue, self.wall_time, self.memory_mb


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
        max_pending: seconds a job may stay PENDING for a reason that means it cannot run
            there (:func:`~wmproxy.execution.slurm.cannot_run`) before it is cancelled and
            Aborted as never scheduled.
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
            set aside with one rename and removed by :meth:`tidy`.
        max_array: jobs one job array of :meth:`spawn_batch` carries at most (1: none,
            every job its own sbatch); at most the cluster's ``MaxArraySize`` - 1.
        submit_settle: seconds after an sbatch whose answer was lost (timeout, Slurm's
            "Socket timed out on send/recv operation"...) during which the job is looked
            for in Slurm before it counts as never submitted.

    Raises:
        ValueError: the work root has characters Slurm would misread.
    """

    def __init__(self, work_root: Path, *, slurm_conf: str | os.PathLike[str] | None = None,
                 bin_dir: str | os.PathLike[str] | None = None, python: str = "/usr/bin/python3",
                 max_pending: float = 1800.0, kill_grace: float = 10.0, cluster: str = "",
                 refresh: float = DEFAULT_REFRESH, status_grace: float = DEFAULT_STATUS_GRACE,
                 timeout: float = DEFAULT_TIMEOUT, commands: SlurmCommands | None = None,
                 background_removal: bool = False, max_array: int = DEFAULT_MAX_ARRAY,
                 submit_settle: float = DEFAULT_SUBMIT_SETTLE) -> None:
        self.work_root = Path(os.path.abspath(work_root))
        if _UNSAFE_PATH.search(str(self.work_root)):
            raise ValueError(f"The Slurm work root {self.work_root} must not hold whitespace, %, quotes or \\")
        if ":" in cluster:
            raise ValueError(f"Invalid Slurm cluster name {cluster!r}")
        if max_array < 1:
            raise ValueError(f"Invalid job array size {max_array}")
        self.max_array = max_array
        self.commands = commands or SlurmCommands(slurm_conf, bin_dir, timeout)
        self.python = python
        self.max_pending = max_pending
        self.kill_grace = kill_grace
        self.cluster = cluster
        self.refresh = refresh
        self.status_grace = status_grace
        self.submit_settle = submit_settle
        self._files = LocalExecutionBackend(self.work_root, kill_grace=kill_grace, python=python,  # no zygotes:
                                            background_removal=background_removal, zygotes=False)  # job.marshal
        self._followed: dict[str, _Followed] = {}
        self._queue: dict[str, QueuedJob] = {}
        self._queried: set[str] = set()  # the ids the last squeue asked for
        self._prepared: dict[Path, _Prepared] = {}  # work dir → prepared, not yet spawned
        # work dir → its task's id, or why its array failed, or its lost sbatch
        self._batched: dict[Path, str | BackendError | _Unresolved] = {}
        self._unresolved: dict[Path, _Unresolved] = {}  # work dir → its lost sbatch, job not found yet
        self._wrapper_dir: Path | None = None  # the shared wrapper, once installed
        # work dir of a job without Slurm id → the (name, work dir, task) its job may be found by
        self._wanted: dict[Path, tuple[tuple[str, Path, int | None], ...]] = {}
        self._named: dict[str, NamedJob] = {}  # what the last squeue -n listed of the wanted names
        self._work_dirs: dict[str, str | None] = {}  # Slurm job id → its work dir, asked since that squeue
        self._names_queried: set[str] = set()  # the names it asked for
        self._next_refresh = float("-inf")  # monotonic time before which no squeue runs
        self._failures = 0  # Slurm commands in a row that found no controller

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
            script = batch_script(launch, work_dir, self._wrapper(), self.python)
            identity.write_state_file(work_dir, SCRIPT_NAME, script.encode(), 0o400, launch.account)
        except WMProxyError as exc:
            self._files.release(handle)
            raise BackendError(str(exc)) from None
        handle.ref = self._ref(None, work_dir.name)
        self._prepared[work_dir] = _Prepared(launch.job_id, job_name(work_dir.name, launch.attempt), launch.queue,
                                             launch.wall_time, launch.memory_mb,
                                             None if launch.account is None else launch.account.uid)
        return handle

    def _wrapper(self) -> Path:
        """The shared wrapper directory (:func:`install_shared_wrapper`), installed at first use."""
        if self._wrapper_dir is None:
            self._wrapper_dir = install_shared_wrapper(self.work_root)
        return self._wrapper_dir

    def spawn_batch(self, handles: Sequence[RunHandle]) -> None:
        """Submit prepared jobs that share their account, partition and limits as job
        arrays, one ``sbatch`` (one account switch, one controller request) for up to
        ``max_array`` jobs; task N of the array runs the N-th job's wrapper. Jobs alone of
        their kind are left to :meth:`spawn`, which afterwards completes every handle (or
        raises the array's refusal). Never raises; an array that cannot be written leaves
        its jobs to :meth:`spawn` one by one.

        Args:
            handles: prepared handles (:meth:`prepare`), in the order of their tasks.
        """
        groups: dict[tuple[int | None, str, int | None, int | None], list[tuple[RunHandle, _Prepared]]] = {}
        for handle in handles:
            prepared = self._prepared.get(handle.work_dir)
            if prepared is not None and handle.pid is None and handle.work_dir not in self._batched:
                groups.setdefault(prepared.batch_key, []).append((handle, prepared))
        for members in groups.values():
            for start in range(0, len(members), self.max_array):
                chunk = members[start:start + self.max_array]
                if len(chunk) > 1:
                    self._submit_array(chunk)

    def _submit_array(self, chunk: list[tuple[RunHandle, _Prepared]]) -> None:
        first = chunk[0][0]
        name = chunk[0][1].name
        try:
            for index, (handle, _prepared) in enumerate(chunk):
                identity.write_state_file(handle.work_dir, TASK_NAME, f"{name} {index}\n".encode(), 0o400,
                                          handle.account)
            shared = chunk[0][1]
            script = array_script([(h.work_dir, p.job_id) for h, p in chunk], name=name, work_root=self.work_root,
                                  wrapper_dir=self._wrapper(), python=self.python, queue=shared.queue,
                                  wall_time=shared.wall_time, memory_mb=shared.memory_mb)
            path = identity.write_state_file(first.work_dir, ARRAY_SCRIPT_NAME, script.encode(), 0o400, first.account)
        except WMProxyError as exc:
            log.warning("cannot write the job array of %d jobs (each is submitted alone): %s", len(chunk), exc)
            return
        try:
            array_id: int | None = self.commands.submit(path, first.account, first.work_dir)
        except SlurmError as exc:
            if not exc.maybe_done:
                error = BackendError(f"Slurm refused the job: {exc}")
                for handle, _prepared in chunk:
                    self._batched[handle.work_dir] = error
                return
            array_id = self._submitted_anyway(name, self.work_root, 0, first.account)
            if array_id is None:
                since = time.time()
                for index, (handle, _prepared) in enumerate(chunk):
                    self._batched[handle.work_dir] = _Unresolved(name, index, since, str(exc))
                return
        for index, (handle, _prepared) in enumerate(chunk):
            self._batched[handle.work_dir] = f"{array_id}_{index}"

    def spawn(self, handle: RunHandle) -> RunHandle:
        """``sbatch`` the prepared job as its account; the handle then names the Slurm job, or,
        when sbatch's answer was lost and Slurm lists no job yet, none (:meth:`poll` resolves it).

        Raises:
            BackendError: sbatch refused the job (Slurm's message: unknown or inactive
                partition, impossible limits, controller unreachable), or no account was
                mapped while the worker runs as root.
        """
        prepared = self._prepared.pop(handle.work_dir, None)
        batched = self._batched.pop(handle.work_dir, None)
        if isinstance(batched, BackendError):
            raise batched
        if isinstance(batched, _Unresolved):  # its job array's sbatch lost its answer
            self._unresolve(handle, batched)
            return handle
        if batched is not None:  # a task of a job array spawn_batch submitted
            self._follow(handle, batched)
            return handle
        script = handle.work_dir / STATE_DIR / SCRIPT_NAME
        try:
            job_id = self.commands.submit(script, handle.account, handle.work_dir)
        except SlurmError as exc:
            if not exc.maybe_done:
                raise BackendError(f"Slurm refused the job: {exc}") from None
            name = prepared.name if prepared is not None else self._submission_name(handle.work_dir)
            found = self._submitted_anyway(name, handle.work_dir, None, handle.account)
            if found is None:
                self._unresolve(handle, _Unresolved(name, None, time.time(), str(exc)))
                return handle
            job_id = found
        self._follow(handle, str(job_id))
        return handle

    def _submitted_anyway(self, name: str, work_dir: Path, task: int | None, account: Account | None) -> int | None:
        """After an sbatch whose answer was lost: the job (the job array, with ``task``) it
        has created, None when Slurm lists none (yet) or cannot be asked."""
        try:
            found = self.commands.find(name, work_dir, task, _uid(account))
        except SlurmError as exc:
            log.warning("sbatch of %s lost its answer and Slurm cannot be asked: %s", name, exc)
            return None
        return None if found is None else int(base_job_id(found.job_id))

    def _unresolve(self, handle: RunHandle, unresolved: _Unresolved) -> None:
        """Leave the job without Slurm id after an sbatch whose answer was lost: :meth:`poll`
        follows the job once Slurm lists it, and reports it never submitted only
        ``submit_settle`` seconds later (after a ``scancel`` of its name), so that a job
        slurmctld creates late never runs beside a resubmission. Recorded in the work dir
        for a worker that adopts the job meanwhile."""
        log.warning("sbatch of %s lost its answer (%s): looking for the job in Slurm for %g s", unresolved.name,
                    unresolved.error, self.submit_settle)
        self._unresolved[handle.work_dir] = unresolved
        self._want(handle.work_dir)
        try:
            identity.write_state_file(handle.work_dir, UNRESOLVED_NAME, unresolved.encode(), 0o400, handle.account)
        except WMProxyError as exc:
            log.warning("cannot record the lost sbatch of %s in its work dir: %s", unresolved.name, exc)

    def _follow(self, handle: RunHandle, job_id: str) -> None:
        self._wanted.pop(handle.work_dir, None)
        handle.pid = int(base_job_id(job_id))
        handle.ref = self._ref(job_id, handle.work_dir.name)
        self._followed.setdefault(job_id, _Followed())

    def _slurm_id(self, handle: RunHandle) -> str | None:
        """The Slurm job id (``123`` or ``123_4``) of a spawned or adopted job."""
        parsed = parse_ref(handle.ref)
        return None if parsed is None else parsed[1]

    # --- following -----------------------------------------------------------------

    def poll(self, handle: RunHandle) -> JobOutcome | None:
        """None while Slurm lists the job as active (or cannot be asked); then its outcome
        (module docstring). Runs at most one ``squeue`` per ``refresh`` seconds for all
        jobs; a job pending too long is scancelled here."""
        job_id = self._slurm_id(handle)
        if handle.pid is None or job_id is None:
            return self._poll_unsubmitted(handle)
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
        known, found = self._find_submitted(handle)
        if not known:
            return None  # not asked yet (at the next refresh), or Slurm cannot be asked
        if found is not None:
            self._unresolved.pop(handle.work_dir, None)
            self._follow(handle, found.job_id)
            return None
        unresolved = self._lost_sbatch(handle.work_dir)
        if unresolved is not None:
            if time.time() - unresolved.since < self.submit_settle:
                return None  # slurmctld may still create it
            try:  # a job recorded since the squeue above never runs beside a resubmission
                self.commands.run("scancel", f"--name={unresolved.name}", account=handle.account, as_account=True)
            except SlurmError as exc:
                log.warning("cannot cancel the jobs named %s: %s", unresolved.name, exc)
                return None
        status = self._status(handle)
        if isinstance(status, JobOutcome):
            return status
        started = self._started(handle, status)
        if status is not None:
            return outcome_of(status, started)
        if not started:
            if unresolved is not None and unresolved.error:
                return _failure(f"{unresolved.error}, and Slurm had no job for it "
                                f"{self.submit_settle:g} s later: it was never submitted", False, recorded=False)
            return _failure("Slurm has no job for it: it was never submitted", False, recorded=False)
        return outcome_of(None, started)

    def _lost_sbatch(self, work_dir: Path) -> _Unresolved | None:
        """The lost sbatch of an unresolved job: this worker's, the one recorded in its work
        dir (by a worker that died since), or else the one a worker that died during its sbatch
        may have left (:meth:`_interrupted_sbatch`)."""
        unresolved = self._unresolved.get(work_dir)
        if unresolved is not None:
            return unresolved
        recorded = _state_head(work_dir, UNRESOLVED_NAME, _LOG_TAIL_BYTES)
        unresolved = None if recorded is None else _Unresolved.decode(recorded)
        if unresolved is None:
            unresolved = self._interrupted_sbatch(work_dir)
        if unresolved is not None:
            self._unresolved[work_dir] = unresolved
        return unresolved

    def _interrupted_sbatch(self, work_dir: Path) -> _Unresolved | None:
        """The sbatch a worker may have been running when it died, for a job adopted without
        Slurm id and without a recorded lost answer: nothing says whether the worker died
        before its sbatch, during it (slurmctld may create the job up to ``submit_settle``
        seconds later) or after it. Dated by the submission script written just before (the
        job array's ``slurm-task``, else ``slurm.sh``), it is waited for as a lost answer is;
        None when the job has neither (it was never prepared for Slurm)."""
        task_time = _state_mtime(work_dir, TASK_NAME)
        script_time = _state_mtime(work_dir, SCRIPT_NAME)
        if task_time is not None and (script_time is None or task_time >= script_time):
            task = _task_of(work_dir)
            if task is not None:
                return _Unresolved(task[0], task[1], task_time, "")
        if script_time is None:
            return None
        return _Unresolved(self._submission_name(work_dir), None, script_time, "")

    def _find_submitted(self, handle: RunHandle) -> tuple[bool, NamedJob | None]:
        """``(known, job)``: whether the last squeue of the wanted names (:meth:`_refresh`)
        asked for this job's, and the Slurm job of a job whose reference has no id: its task in
        the job array its ``slurm-task`` names, else the job of its own name and work dir; a job
        of the handle's account only (its uid is Slurm's), whose work dir Slurm gives for it
        alone (:meth:`SlurmCommands.pick`)."""
        candidates = self._want(handle.work_dir)
        self._refresh()
        if not all(name in self._names_queried for name, _work_dir, _task in candidates):
            return False, None
        try:
            for name, work_dir, task in candidates:
                found = self.commands.pick(self._named, name, work_dir, task, _uid(handle.account), self._work_dirs)
                if found is not None:
                    return True, found
        except SlurmError as exc:
            log.warning("squeue failed, the Slurm job of %s is not looked for this round: %s", handle.work_dir.name,
                        exc)
            return False, None
        return True, None

    def _want(self, work_dir: Path) -> tuple[tuple[str, Path, int | None], ...]:
        """Register a job without Slurm id for the next squeue of names (:meth:`_refresh`):
        its task in the job array its ``slurm-task`` names, and its own name and work dir."""
        candidates = self._wanted.get(work_dir)
        if candidates is None:
            task = _task_of(work_dir)
            found: list[tuple[str, Path, int | None]] = []
            if task is not None:
                found.append((task[0], self.work_root, task[1]))
            found.append((self._submission_name(work_dir), work_dir, None))
            candidates = self._wanted[work_dir] = tuple(found)
        return candidates

    def _submission_name(self, work_dir: Path) -> str:
        """The Slurm job name the work dir's ``slurm.sh`` gives (the attempt's, :func:`job_name`);
        the name of a first attempt when the script cannot be read."""
        script = _state_head(work_dir, SCRIPT_NAME, _SCRIPT_HEAD_BYTES)
        found = None if script is None else _SCRIPT_NAME_LINE.search(script.decode(errors="replace"))
        return found.group(1) if found and _JOB_NAME.fullmatch(found.group(1)) else job_name(work_dir.name)

    def _lookup(self, job_id: str) -> tuple[bool, QueuedJob | None]:
        """``(known, queued)``: whether the last squeue (:meth:`_refresh`) asked for the job,
        and its line (None: Slurm no longer lists it)."""
        self._refresh()
        if job_id not in self._queried:
            return False, None
        return True, self._queue.get(job_id)

    def _refresh(self) -> None:
        """Once ``refresh`` seconds have passed since the last squeue ended: one ``squeue -j``
        of every followed job and one ``squeue -n`` of the names of the jobs without Slurm id
        (:meth:`_want`), serving every poll until the next. After a failure for want of the
        controller none runs for twice ``refresh`` seconds, doubled at each failure in a row
        up to :data:`MAX_BACKOFF`, so that an outage costs one squeue per wait, not one per
        job (a squeue that cannot reach slurmctld takes seconds)."""
        if time.monotonic() < self._next_refresh:
            return
        ids = sorted(self._followed)
        names = sorted({name for wanted in self._wanted.values() for name, _work_dir, _task in wanted})
        if not ids and not names:
            return
        reached = True
        if ids:
            try:
                listing = self.commands.queue(ids)
                self._queue, self._queried = listing.jobs, set(ids) - listing.doubtful
            except SlurmError as exc:
                log.warning("squeue failed, the state of %d Slurm job(s) is unknown: %s", len(ids), exc)
                self._queried = set()
                reached = not exc.unreachable
        if names and reached:
            try:
                self._named, self._names_queried = self.commands.named(names), set(names)
                self._work_dirs = {}
            except SlurmError as exc:
                log.warning("squeue failed, %d job(s) without Slurm id are not looked for: %s", len(names), exc)
                self._names_queried = set()
                reached = not exc.unreachable
        else:
            self._names_queried = set()
        self._contacted(reached)

    def _contacted(self, reached: bool) -> None:
        """Record whether the last Slurm command reached the controller, and when the next
        squeue may run (:meth:`_refresh`)."""
        now = time.monotonic()
        if reached:
            self._failures = 0
            self._next_refresh = max(self._next_refresh, now + self.refresh)
            return
        self._failures += 1
        backoff = min(self.refresh * 2.0 ** min(self._failures, 32), max(self.refresh, MAX_BACKOFF))
        self._next_refresh = now + backoff

    def _controller_waited_for(self) -> bool:
        """Whether the controller did not answer lately and its wait (:meth:`_contacted`) is not over."""
        return self._failures > 0 and time.monotonic() < self._next_refresh

    def _expire_if_stale(self, handle: RunHandle, followed: _Followed, queued: QueuedJob) -> None:
        """Cancel a job pending for more than ``max_pending`` seconds for a reason that means
        it cannot run there (:func:`~wmproxy.execution.slurm.cannot_run`), counted from when
        this backend first saw such a reason (and never before Slurm's submit time); a job
        waiting its turn (``Resources``, ``Priority``...) waits as long as Slurm keeps it."""
        if followed.expired is not None:
            return
        if not cannot_run(queued.reason):
            followed.stuck_since = None
            return
        now = time.monotonic()
        if followed.stuck_since is None:
            followed.stuck_since = now
        pending = now - followed.stuck_since
        if queued.submitted is not None:
            pending = min(pending, time.time() - queued.submitted)
        if pending <= self.max_pending:
            return
        try:
            self.commands.cancel(queued.job_id, handle.account)
        except SlurmError as exc:
            log.warning("cannot cancel Slurm job %s pending for %.0f s: %s", queued.job_id, pending, exc)
            return
        followed.expired = (f"Slurm did not schedule the job within {self.max_pending:g} s (Slurm job "
                            f"{queued.job_id} pending, reason {queued.reason}); it was cancelled")
        log.info("Slurm job %s cancelled after %.0f s pending (%s)", queued.job_id, pending, queued.reason)

    def _ended(self, handle: RunHandle, job_id: str, followed: _Followed,
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
        if followed.cancelled and status.cancelled_by is None and status.signal is not None:
            # Cancelled by wmproxy, the payload killed by a signal, but no cancelled_by: Slurm
            # signalled the payload too (a plain scancel, or the job's end), and the wrapper
            # recorded its death before it handled its own SIGTERM. Still the job we cancelled.
            return JobOutcome(JobState.CANCELLED, exit_code=status.shell_exit_code, payload_started=started)
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

    def _end_of(self, job_id: str, queued: QueuedJob | None) -> JobEnd | None:
        try:
            end = self.commands.job_end(job_id)
        except SlurmError as exc:
            log.warning("cannot read how Slurm ended job %s: %s", job_id, exc)
            end = None
        if end is None and queued is not None:
            end = JobEnd(queued.state, queued.reason)
        return end

    def _slurm_end(self, job_id: str, queued: QueuedJob | None) -> str:
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
        complaints about a job that has already ended count as done. A scancel that fails
        otherwise (slurmctld down or too busy) is tried again at a later call, the worker's
        next cycle (not before twice ``refresh`` seconds, doubled per failure, nor while the
        controller's wait after a failed squeue runs): the cancel counts as sent only once a
        scancel went through."""
        job_id = self._slurm_id(handle)
        if handle.pid is None or job_id is None:
            return
        followed = self._followed.setdefault(job_id, _Followed())
        followed.cancelled = True  # wmproxy wants it cancelled, even while the scancel is not through
        now = time.monotonic()
        if followed.killed or now < followed.cancel_retry_at or self._controller_waited_for():
            return
        if handle.cancel_sent_at is not None and now - handle.cancel_sent_at <= self.kill_grace + CANCEL_MARGIN:
            return
        queued = self._queue.get(job_id)
        try:
            if handle.cancel_sent_at is None:
                if queued is not None and queued.state == PENDING_STATE:
                    self._scancel(job_id, handle.account)
                else:
                    try:
                        self._scancel(job_id, handle.account, signal="TERM", batch_only=True)
                    except SlurmError as exc:  # pending after all, or the batch step not launched yet
                        if exc.unreachable:
                            raise
                        self._scancel(job_id, handle.account)
                handle.cancel_sent_at = now
            else:
                self._scancel(job_id, handle.account)
                followed.killed = True
        except SlurmError as exc:  # not through: tried again at a later call (the worker's next cycle)
            followed.cancel_failures += 1
            followed.cancel_retry_at = time.monotonic() + min(
                self.refresh * 2.0 ** min(followed.cancel_failures, 32), max(self.refresh, MAX_BACKOFF))
            log.warning("scancel of Slurm job %s failed (tried again): %s", job_id, exc)
            return
        followed.cancel_failures = 0

    def _scancel(self, job_id: str, account: Account | None, **options: Any) -> None:
        """``scancel`` (:meth:`SlurmCommands.cancel`); a job that has ended or is ending counts
        as cancelled.

        Raises:
            SlurmError: scancel failed otherwise (the controller's wait is recorded).
        """
        try:
            self.commands.cancel(job_id, account, **options)
        except SlurmError as exc:
            if exc.job_gone:
                log.info("scancel of Slurm job %s: %s", job_id, exc)
                return
            if exc.unreachable:
                self._contacted(False)
            raise

    def attach(self, ref: str, account: Account | None) -> RunHandle | None:
        """The handle of a job from its reference (any worker of this cluster): None unless
        it is ``slurm:<this cluster>:``. A reference without job id is resolved by the
        next squeue of names (:meth:`_refresh`), at a :meth:`poll`."""
        parsed = parse_ref(ref)
        if parsed is None or parsed[0] != self.cluster:
            return None
        _cluster, job_id, name = parsed
        handle = RunHandle(ref=self._ref(job_id, name), work_dir=self.work_root / name, account=account,
                           pid=None if job_id is None else int(base_job_id(job_id)))
        if job_id is not None:
            self._follow(handle, job_id)
        else:  # looked for with the other jobs without id, from the next squeue on
            self._want(handle.work_dir)
        return handle

    def release(self, handle: RunHandle) -> None:
        """Remove the job's proxy copy and work dir (as the local backend) and forget it.

        Raises:
            BackendError: the directory could not be removed.
        """
        job_id = self._slurm_id(handle)
        if job_id is not None:
            self._forget(job_id)
        self._prepared.pop(handle.work_dir, None)
        self._batched.pop(handle.work_dir, None)
        self._unresolved.pop(handle.work_dir, None)
        self._wanted.pop(handle.work_dir, None)
        # the handle's pid is the Slurm job id, not a local session: the local release must not
        # look for leftovers of a session of that number (Slurm ends the job's processes)
        self._files.release(dataclasses.replace(handle, pid=None, process=None))

    def tidy(self, budget: float | None = None) -> int:
        """Remove the released work dirs set aside (as :meth:`LocalExecutionBackend.tidy`)."""
        return self._files.tidy(budget)

    # --- helpers -------------------------------------------------------------------

    def _forget(self, job_id: str) -> None:
        self._followed.pop(job_id, None)

    def _ref(self, job_id: str | None, name: str) -> str:
        return f"{SCHEME}:{self.cluster}:{'-' if job_id is None else job_id}:{name}"


def _failure(reason: str, started: bool, *, recorded: bool = True) -> JobOutcome:
    """Aborted for a reason outside the payload: deep when the payload had started, else shallow."""
    kind = "deep" if started else "shallow"
    return JobOutcome(JobState.ABORTED, reason=f"{reason} ({kind} failure)", payload_started=started,
                      recorded=recorded)


def _uid(account: Account | None) -> int:
    """The uid Slurm owns the job of ``account`` to (sbatch runs as it; the worker's own user without)."""
    return os.geteuid() if account is None else account.uid


def _task_of(work_dir: Path) -> tuple[str, int] | None:
    """``(job array name, task)`` of the work dir's ``slurm-task``, None when it has none or
    not of that shape (the job can write it: a name of :func:`job_name`'s characters and a
    task of ASCII digits only)."""
    recorded = _state_head(work_dir, TASK_NAME, 256)
    fields = None if recorded is None else recorded.decode(errors="replace").split()
    if not fields or len(fields) != 2 or not _JOB_NAME.fullmatch(fields[0]) or not _TASK.fullmatch(fields[1]):
        return None
    return fields[0], int(fields[1])


def _state_head(work_dir: Path, name: str, size: int) -> bytes | None:
    """The first ``size`` bytes of the work dir's ``.wmproxy/<name>`` (opened confined to the
    work dir), None when it cannot be opened."""
    try:
        fd = open_confined(work_dir, f"{STATE_DIR}/{name}")
    except ConfinementError:
        return None
    with os.fdopen(fd, "rb") as stream:
        return stream.read(size)


def _state_mtime(work_dir: Path, name: str) -> float | None:
    """The modification time (Unix seconds) of the work dir's ``.wmproxy/<name>`` (opened
    confined to the work dir), None when it cannot be opened."""
    try:
        fd = open_confined(work_dir, f"{STATE_DIR}/{name}")
    except ConfinementError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def parse_ref(ref: str) -> tuple[str, str | None, str] | None:
    """``(cluster, Slurm job id or None, work dir name)`` of a Slurm backend reference
    (the id ``123``, or ``123_4`` for task 4 of a job array), None for another backend's
    or a malformed one."""
    match = _REF.fullmatch(ref)
    if match is None:
        return None
    cluster, job_id, name = match.groups()
    return cluster, None if job_id == "-" else job_id, name


def job_name(work_dir_name: str, attempt: int = 0) -> str:
    """The Slurm job name of an attempt of a job: ``wmp_`` + the last part of its id (the
    work dir name encodes the id), then ``.<attempt>`` for a resubmission (attempt 1 on),
    at most 64 characters of ``[A-Za-z0-9_.-]``. A reference without Slurm id is resolved by
    this name, so a job of an earlier attempt (same work dir, kept by Slurm ``MinJobAge``
    seconds, or still running) is never taken for this attempt's."""
    suffix = f".{attempt}" if attempt else ""
    return NAME_PREFIX + _NAME_CHARS.sub("_", job_unique(_job_id_of(work_dir_name)))[:60 - len(suffix)] + suffix


def _job_id_of(work_dir_name: str) -> str:
    """The job id from a work dir name (:func:`wmproxy.domain.to_filename` reversed)."""
    return re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), work_dir_name)


def install_shared_wrapper(work_root: Path) -> Path:
    """The directory ``<work root>/.wmproxy-wrapper-<digest>`` holding the job wrapper, its
    inspection agent and the wrapper's byte code compiled by this interpreter (hash-checked
    against the source, so a node whose ``python3`` has the same version skips compiling
    its ~800 lines at every job start; another version compiles in memory). Created once per
    wrapper version (the digest of the files), owned by the worker's user, 0755/0444, by a
    rename, so workers sharing the work root may race; an existing one is used when it is a
    real directory of the worker's user.

    Returns:
        the directory's path.

    Raises:
        BackendError: the wrapper cannot be read or the directory cannot be created.
    """
    names = [identity.WRAPPER_PATH.name, INSPECTION_AGENT]
    try:
        sources = {name: data for name in names
                   if (data := _read_if_exists(identity.WRAPPER_PATH.with_name(name))) is not None}
    except OSError as exc:
        raise BackendError(f"Cannot read the job wrapper {identity.WRAPPER_PATH}: {exc.strerror}") from None
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + data + b"\0" for name, data in sources.items()))
    final = work_root / f"{WRAPPER_DIR_PREFIX}{digest.hexdigest()[:16]}"
    if _owned_directory(final):
        return final
    try:
        building = Path(tempfile.mkdtemp(prefix=f"{WRAPPER_DIR_PREFIX}new-", dir=work_root))
        try:
            for name, data in sources.items():
                (building / name).write_bytes(data)
                (building / name).chmod(0o444)
            wrapper = building / identity.WRAPPER_PATH.name
            compiled = Path(importlib.util.cache_from_source(str(wrapper)))
            py_compile.compile(str(wrapper), cfile=str(compiled), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            compiled.chmod(0o444)
            compiled.parent.chmod(0o755)
            building.chmod(0o755)
            os.rename(building, final)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            if not _owned_directory(final):  # not another worker's rename first
                raise
    except (OSError, py_compile.PyCompileError) as exc:
        raise BackendError(f"Cannot install the job wrapper in {work_root}: {exc}") from None
    return final


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _owned_directory(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _wrapper_command(python: str, wrapper_dir: Path, work_dir: str) -> str:
    """``exec <python> -I -S -c <boot> <wrapper dir>/jobwrapper.py <work dir>`` (``work_dir`` as shell text)."""
    wrapper = str(wrapper_dir / identity.WRAPPER_PATH.name)
    return f"exec {shlex.join([python, '-I', '-S', '-c', WRAPPER_BOOT, wrapper])} {work_dir}"


def batch_script(launch: JobLaunch, work_dir: Path, wrapper_dir: Path, python: str) -> str:
    """The ``sbatch`` script of a job (module docstring): ``#SBATCH`` lines, then the
    wrapper's command line (the shared wrapper of :func:`install_shared_wrapper` in
    ``wrapper_dir``).

    Raises:
        BackendError: the partition or a limit cannot be written as an option.
    """
    _check_paths(work_dir, python)
    log_file = work_dir / STATE_DIR / LOG_NAME
    options = [
        f"--partition={_partition(launch.queue)}",
        f"--job-name={job_name(work_dir.name, launch.attempt)}",
        f"--chdir={work_dir}",
        f"--output={log_file}",
        f"--error={log_file}",
        *_FIXED_OPTIONS,
    ]
    if re.fullmatch(_COMMENT_ID, launch.job_id):
        options.append(f"--comment={launch.job_id}")
    options += _limit_options(launch.wall_time, launch.memory_mb)
    lines = ["#!/bin/sh", f"# wmproxy job {launch.job_id}", *(f"#SBATCH {option}" for option in options),
             _wrapper_command(python, wrapper_dir, shlex.quote(str(work_dir))), ""]
    return "\n".join(lines)


def array_script(jobs: Sequence[tuple[Path, str]], *, name: str, work_root: Path, wrapper_dir: Path, python: str,
                 queue: str | None,
                 wall_time: int | None = None, memory_mb: int | None = None) -> str:
    """The ``sbatch`` script of a job array whose task N runs the wrapper of the N-th of
    ``jobs`` (``(work dir, grid job id)``; they share the partition ``queue`` and the limits,
    seconds and MiB as in :class:`JobLaunch`):
    ``--array=0-<N-1>``, ``--job-name`` the first job's name, ``--comment`` the grid job
    ids in task order (comma-separated, when they fit), ``--chdir`` the work root and no
    Slurm output file; the script goes to the task's work dir and sends its output to
    the task's ``.wmproxy/wrapper.log``, as the single job's ``--output`` does.

    Raises:
        BackendError: the partition, a limit or a path cannot be written into the script.
    """
    _check_paths(work_root, python)
    options = [
        f"--partition={_partition(queue)}",
        f"--job-name={name}",
        f"--array=0-{len(jobs) - 1}",
        f"--chdir={work_root}",
        "--output=/dev/null",
        "--error=/dev/null",
        *_FIXED_OPTIONS,
        *_limit_options(wall_time, memory_mb),
    ]
    comment = ",".join(job_id for _work_dir, job_id in jobs)
    if all(re.fullmatch(_COMMENT_ID, job_id) for _work_dir, job_id in jobs) and len(comment) <= _MAX_COMMENT:
        options.append(f"--comment={comment}")
    lines = ["#!/bin/sh", f"# wmproxy job array of {len(jobs)} jobs: task N runs the N-th work dir below",
             *(f"#SBATCH {option}" for option in options), 'case "$SLURM_ARRAY_TASK_ID" in']
    for index, (work_dir, _job_id) in enumerate(jobs):
        _check_paths(work_dir, python)
        lines.append(f"{index}) d={shlex.quote(str(work_dir))} ;;")
    lines += ["*) echo \"no job for task $SLURM_ARRAY_TASK_ID\" >&2; exit 1 ;;", "esac",
              'cd "$d" || exit 1', f'exec >"$d"/{STATE_DIR}/{LOG_NAME} 2>&1',
              _wrapper_command(python, wrapper_dir, '"$d"'), ""]
    return "\n".join(lines)


_COMMENT_ID = r"[\w.:/@-]+"
_MAX_COMMENT = 4000


def _check_paths(work_dir: Path, python: str) -> None:
    if _UNSAFE_PATH.search(str(work_dir)) or _UNSAFE_PATH.search(python):
        raise BackendError(f"The work directory {work_dir} or interpreter {python} cannot go into #SBATCH lines")


def _partition(queue: str | None) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", queue or ""):
        raise BackendError(f"Invalid Slurm partition name {queue!r}")
    return queue or ""


#: ``--no-requeue``, ``--export=ALL`` (not NONE: no ``su -`` on the node), one task on one
#: node: every job's.
_FIXED_OPTIONS = ("--no-requeue", "--export=ALL", "--nodes=1", "--ntasks=1")


def _limit_options(wall_time: int | None, memory_mb: int | None) -> list[str]:
    """``--time`` (minutes, rounded up) and ``--mem`` (MiB) when given."""
    options = []
    if wall_time is not None:
        if wall_time <= 0:
            raise BackendError(f"Invalid wall-clock limit {wall_time} s")
        options.append(f"--time={time_limit(wall_time)}")
    if memory_mb is not None:
        if memory_mb <= 0:
            raise BackendError(f"Invalid memory limit {memory_mb} MiB")
        options.append(f"--mem={memory_mb}M")
    return options
