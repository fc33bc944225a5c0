"""A small driver over the Slurm client commands (``sbatch``, ``squeue``, ``scontrol``,
``sacct``, ``scancel``, ``sinfo``) and the parsers of their machine-readable output.

Every command runs with a fixed environment (``PATH``, ``LANG``, ``SLURM_TIME_FORMAT=%s``
so that times are Unix seconds whatever the time zone, and ``SLURM_CONF`` when a
configuration file is given; nothing of the worker's own environment), a timeout, and
standard input from ``/dev/null``. A command that fails raises
:class:`SlurmError` carrying its standard error, which is Slurm's own message
("Batch job submission failed: Invalid partition name specified").

Jobs are read from fields their owner cannot set. A job's owner may rename it, set its
comment or work dir at any time (``scontrol update JobName=... WorkDir=...``), with newlines:
those fields never go into the squeue that reads the state of every job the worker follows
(``%i|%T|%V|%r``: id, state, submit time, Slurm's reason), and the squeue of names
(:meth:`SlurmCommands.named`) prints only names Slurm matched exactly to the ones asked for,
the work dir being read for one job at a time (:meth:`SlurmCommands.work_dir_of`). A line
that is not of the expected shape, or for a job not asked for, is skipped (logged once); a job
listed twice is left unknown for that round, never taken as ended.

``sbatch`` and ``scancel`` run as the job's mapped account through
:func:`wmproxy.execution.identity.run_as` (munge then authenticates that uid: no
``--uid`` privilege is needed); the reading commands run as the worker's user, which
must see every job (a Slurm operator where ``PrivateData=jobs`` hides other users' jobs,
as docs/slurm.md asks of a site).

CE attributes of a partition (:meth:`SlurmCommands.partition_states`), Glue 1.3 names:

* ``GlueCEInfoTotalCPUs``: CPUs of the partition's nodes (``sinfo %C`` total, every node
  counted once);
* ``GlueCEStateFreeCPUs`` and ``GlueCEStateFreeJobSlots``: idle CPUs of the nodes that can
  run jobs (not down, drained, draining, failing or not responding);
* ``GlueCEStateRunningJobs``: jobs RUNNING, CONFIGURING or COMPLETING there;
  ``GlueCEStateWaitingJobs``: PENDING jobs; ``GlueCEStateTotalJobs``: every job squeue
  lists there (a pending job submitted to several partitions counts in each);
* ``GlueCEStateStatus`` (Glue 1.3: whether the queue accepts jobs and whether they are
  served): ``Production`` when the partition is UP with at least one usable node,
  ``Queueing`` when it accepts jobs that cannot run (DOWN, or UP without a usable node),
  ``Draining`` when it runs its jobs but accepts none (DRAIN), ``Closed`` when neither
  (INACTIVE);
* ``GlueCEPolicyMaxWallClockTime``: the partition's ``MaxTime`` in minutes (rounded up);
  absent when UNLIMITED;
* ``GlueCEStateEstimatedResponseTime`` (seconds): 0 when a CPU is free; otherwise
  ``(waiting jobs + 1) × mean_job_seconds / usable CPUs`` (the queue ahead, plus the job
  itself, drained by every usable CPU at one mean job length each), rounded up; and
  :data:`UNREACHABLE_RESPONSE_TIME` (the Glue information providers' "never") when the
  partition has no usable CPU or does not run jobs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wmproxy.errors import WMProxyError
from wmproxy.execution import identity
from wmproxy.execution.identity import Account, CommandTimeoutError, IdentityError
from wmproxy.execution.jobwrapper import BASE_PATH
from wmproxy.text import log_text

log = logging.getLogger(__name__)

#: Seconds a Slurm command may take before it is killed.
DEFAULT_TIMEOUT = 60.0
#: Mean length of a job (seconds) assumed by the estimated response time.
DEFAULT_MEAN_JOB_SECONDS = 3600
#: ``GlueCEStateEstimatedResponseTime`` of a partition that cannot run the job (the value
#: the Glue 1.3 information providers publish for "never").
UNREACHABLE_RESPONSE_TIME = 2146660842
#: Job states in which Slurm is done with a job (``squeue --states=all`` still lists them
#: for ``MinJobAge`` seconds).
FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "TIMEOUT",
})
#: Final states in which Slurm itself stopped (or never ran) the job, whatever the payload did.
KILLED_BY_SLURM = frozenset({"BOOT_FAIL", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})
RUNNING_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING"})
PENDING_STATE = "PENDING"
#: Reasons (squeue ``%r``, ``job_reason_string``) of a pending job that cannot run where it
#: is as things stand: the partition or the nodes it needs are down, inactive or too small,
#: its limits exceed the partition's, its account, QOS or reservation is not allowed, it is
#: held, or its dependency can never be met. Not the reasons of a job merely waiting its turn
#: (``Resources``, ``Priority``, ``Dependency``, ``BeginTime``, ``*Limit`` of an association
#: or QOS, ``Licenses``...).
CANNOT_RUN_REASONS = frozenset({
    "AccountNotAllowed", "BadConstraints", "DependencyNeverSatisfied", "FrontEndDown", "InvalidAccount",
    "InvalidQOS", "JobHeldAdmin", "JobHeldUser", "JobLaunchFailure", "NodeDown", "PartitionDown",
    "PartitionInactive", "PartitionNodeLimit", "PartitionTimeLimit", "QOSNotAllowed", "ReqNodeNotAvail",
    "ReservationDeleted", "SystemFailure",
})
#: The beginnings of squeue's descriptions (``state_desc``, printed instead of the reason
#: code) of those reasons: ``ReqNodeNotAvail, UnavailableNodes:n1``, ``Nodes required for job
#: are DOWN, DRAINED or reserved for jobs in higher priority partitions``.
_CANNOT_RUN_DESCRIPTIONS = ("Nodes required for job are DOWN", "launch failed requeued held")
#: Base node states (``sinfo %T`` without its flag suffix) of nodes that can run jobs.
USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned"})
_NODE_FLAGS = "*~#!%$@^-+"
#: squeue's fields of the jobs followed: none a job's owner can set (not ``%j``, ``%k``, ``%Z``).
_QUEUE_FORMAT = "%i|%T|%V|%r"
#: squeue's fields of the jobs looked for by name (``-n``: names Slurm matches exactly).
_NAMED_FORMAT = "%i|%U|%j"
#: A number read from Slurm's output or a file a job can write: ASCII digits, at most 18.
NUMBER = re.compile(r"[0-9]{1,18}")
_QUEUE_LINE = re.compile(r"([0-9]{1,18}(?:_[0-9]{1,9})?)\|([A-Z_]{1,32})\|([^|]*)\|([^\x00-\x1f\x7f]*)")
_NAMED_LINE = re.compile(r"([0-9]{1,18}(?:_[0-9]{1,9})?)\|([0-9]{1,10})\|([A-Za-z0-9_.-]{1,200})")
#: Lines of Slurm's output already logged as skipped (each logged once), at most this many remembered.
_REPORTED_MAX = 1000
_INVALID_JOB = "Invalid job id specified"
#: scancel's messages for a job that has ended or is ending: there is nothing left to cancel.
_JOB_GONE = (_INVALID_JOB, "already completing or completed")
#: The message of a client that could not reach slurmctld at all (down, or not listening).
_NO_CONTROLLER = "Unable to contact slurm controller"
#: A Slurm job id: ``123``, or ``123_4`` for task 4 of the job array 123.
JOB_ID = re.compile(r"[0-9]{1,18}(?:_[0-9]{1,9})?")
#: Slurm's messages (``slurm_errtab.c``) and the system's of a request that may have reached
#: slurmctld although its answer never came back (the controller busy past ``MessageTimeout``,
#: the connection lost): what it asked for may have been done, even later. A connect failure
#: ("Unable to contact slurm controller (connect failure)") sent nothing and is not among them.
ANSWER_LOST = (
    "Socket timed out on send/recv operation",
    "Zero Bytes were transmitted or received",
    "Message send failure",
    "Message receive failure",
    "Unable to contact slurm controller (send failure)",
    "Unable to contact slurm controller (receive failure)",
    "Unable to contact slurm controller (shutdown failure)",
    "Unexpected message received",
    "Insane message length",
    "Connection reset by peer",
    "Broken pipe",
)


class SlurmError(WMProxyError):
    """A Slurm command failed, could not be run or did not answer in time.

    Attributes:
        command: the program (``sbatch``, ``squeue``, ...).
        returncode: its exit status, None when it did not run or was killed.
        stderr: its standard error (Slurm's message; its output when stderr is empty), stripped.
        timed_out: whether it was killed after the timeout (its effect is unknown).
    """

    def __init__(self, message: str, *, command: str, returncode: int | None = None, stderr: str = "",
                 timed_out: bool = False) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out

    @property
    def maybe_done(self) -> bool:
        """Whether the command may have taken effect although it failed: it was killed after
        the timeout, or Slurm's message says the controller's answer was lost
        (:data:`ANSWER_LOST`), so the controller may still act on the request."""
        return self.timed_out or any(text in self.stderr or text in str(self) for text in ANSWER_LOST)

    @property
    def unreachable(self) -> bool:
        """Whether the controller did not answer (down, not listening, too busy, the answer
        lost): the same request may succeed later, and any other would fail alike meanwhile."""
        return self.maybe_done or _NO_CONTROLLER in self.stderr or _NO_CONTROLLER in str(self)

    @property
    def job_gone(self) -> bool:
        """Whether scancel (or squeue) failed because the job has ended or is ending
        ("Invalid job id specified", "Job/step already completing or completed")."""
        return any(text in self.stderr for text in _JOB_GONE)


@dataclass(frozen=True)
class CpuCounts:
    """CPUs from sinfo's ``%C`` (``allocated/idle/other/total``): ``idle`` is the free CPUs."""

    allocated: int
    idle: int
    other: int
    total: int


@dataclass(frozen=True)
class QueuedJob:
    """One line of ``squeue --states=all -o '%i|%T|%V|%r'`` (fields Slurm sets, none the job's owner can).

    Attributes:
        job_id: the Slurm job id: ``123``, or ``123_4`` for task 4 of the job array 123.
        state: ``PENDING``, ``RUNNING``, ... or a final state (:data:`FINAL_STATES`).
        submitted: submit time in Unix seconds, None when Slurm prints none.
        reason: why it is pending or how it ended (``Resources``, ``NodeDown``, ``None``).
    """

    job_id: str
    state: str
    submitted: float | None
    reason: str


@dataclass(frozen=True)
class NamedJob:
    """One line of ``squeue -n <names> -o '%i|%U|%j'``: a job whose name Slurm matched exactly
    to one asked for.

    Attributes:
        job_id: the Slurm job id (``123`` or ``123_4``).
        user_id: the uid that owns it (Slurm's, not settable by the job).
        name: its name, one of those asked for.
    """

    job_id: str
    user_id: int
    name: str


@dataclass(frozen=True)
class Listing:
    """What squeue answered: the lines it could be trusted for, by job id, and the ids it
    listed more than once (their lines are left out: a job's owner may have forged one; such a
    job is unknown for that round), and the lines skipped (not of the expected shape, or of a
    job not asked for)."""

    jobs: dict[str, QueuedJob]
    doubtful: frozenset[str] = frozenset()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobEnd:
    """How Slurm says a job ended (``scontrol show job`` or ``sacct``).

    Attributes:
        state: the final state (``NODE_FAIL``, ``TIMEOUT``, ``CANCELLED``...).
        reason: Slurm's reason code, "" when unknown.
        exit_code: ``code:signal`` as Slurm prints it, "" when unknown.
    """

    state: str
    reason: str = ""
    exit_code: str = ""

    def describe(self) -> str:
        """``NODE_FAIL (reason NodeDown, exit code 0:9)``."""
        details = [f"reason {self.reason}"] if self.reason and self.reason != "None" else []
        if self.exit_code:
            details.append(f"exit code {self.exit_code}")
        return f"{self.state} ({', '.join(details)})" if details else self.state


# --- parsers -------------------------------------------------------------------------


def parse_cpus(sinfo_output: str) -> CpuCounts:
    """CPU counts from ``sinfo -h -N -o '%N %C'`` (add ``-p PARTITION`` for one partition).

    sinfo prints a node once per partition it belongs to; each node is counted once.

    Raises:
        ValueError: a line is not a node name and four slash-separated integers.
    """
    per_node: dict[str, list[int]] = {}
    for line in sinfo_output.splitlines():
        if not line.strip():
            continue
        node, counts = line.split()
        per_node[node] = _cpu_fields(counts, line)
    sums = [sum(fields[i] for fields in per_node.values()) for i in range(4)]
    return CpuCounts(*sums)


def _cpu_fields(counts: str, line: str) -> list[int]:
    fields = [int(part) for part in counts.split("/")]
    if len(fields) != 4:
        raise ValueError(f"not an A/I/O/T CPU count: {line!r}")
    return fields


def parse_job_states(squeue_output: str) -> dict[str, str]:
    """Job id → state from ``squeue -h -o '%i %T'`` (``PENDING``, ``RUNNING``, ...)."""
    states = {}
    for line in squeue_output.splitlines():
        if line.strip():
            job_id, state = line.split()
            states[job_id] = state
    return states


_PAIR = re.compile(r"(?:^|\s)([^\s=]+)=(.*?)(?=\s+[^\s=]+=|\s*$)", re.S)


def parse_scontrol(show_output: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol -o show job|node|partition`` record.

    A value may contain spaces (a node's ``Reason=test [root@...]``): it runs up to the
    next ``Key=``. A key that occurs more than once is left out: a job's owner sets its
    ``JobName`` (printed before ``JobState``) and ``Comment`` (after it), and may write
    ``JobState=COMPLETED`` there, which must not pass for Slurm's.
    """
    pairs: dict[str, str] = {}
    repeated: set[str] = set()
    for match in _PAIR.finditer(show_output.strip()):
        key = match.group(1)
        if key in pairs:
            repeated.add(key)
        pairs[key] = match.group(2).strip()
    return {key: value for key, value in pairs.items() if key not in repeated}


def parse_queue(squeue_output: str, asked: Iterable[str] | None = None) -> Listing:
    """Jobs from ``squeue -h -r -o '%i|%T|%V|%r'`` run with ``SLURM_TIME_FORMAT=%s``, by job
    id (``123``, or ``123_4`` for a task of a job array: ``-r`` lists each task).

    Line by line: a line not of that shape (no job id of at most 18 digits, no state of
    capitals, a control character) is skipped, and so is the line of a job whose base id is
    not among ``asked`` (the ids given to ``squeue -j``; None: any). An id listed twice is
    left out (:attr:`Listing.doubtful`). Never raises.
    """
    bases = None if asked is None else {base_job_id(str(job_id)) for job_id in asked}
    lines, doubtful, skipped = _job_lines(squeue_output, _QUEUE_LINE,
                                          lambda match: bases is None or base_job_id(match.group(1)) in bases)
    jobs = {job_id: QueuedJob(job_id, match.group(2),
                              float(match.group(3)) if NUMBER.fullmatch(match.group(3)) else None, match.group(4))
            for job_id, match in lines.items()}
    return Listing(jobs, frozenset(doubtful), skipped)


def parse_named(squeue_output: str, names: Iterable[str]) -> tuple[dict[str, NamedJob], tuple[str, ...]]:
    """Jobs from ``squeue -h -r -o '%i|%U|%j' -n <names>``, by job id, and the lines skipped:
    not of that shape, or of a name not among ``names``. An id listed twice is left out.
    Never raises."""
    wanted = set(names)
    lines, _doubtful, skipped = _job_lines(squeue_output, _NAMED_LINE, lambda match: match.group(3) in wanted)
    return {job_id: NamedJob(job_id, int(match.group(2)), match.group(3)) for job_id, match in lines.items()}, skipped


def _job_lines(output: str, shape: re.Pattern[str],
               wanted: Callable[[re.Match[str]], bool]) -> tuple[dict[str, re.Match[str]], set[str], tuple[str, ...]]:
    """The lines of ``output`` of ``shape`` (its first group the job id) that are ``wanted``, by
    job id; the ids listed more than once (their lines left out); the other lines, skipped."""
    found: dict[str, re.Match[str]] = {}
    doubtful: set[str] = set()
    skipped: list[str] = []
    for line in output.splitlines():
        if not line.strip():
            continue
        match = shape.fullmatch(line)
        if match is None or not wanted(match):
            skipped.append(line)
        elif match.group(1) in found or match.group(1) in doubtful:
            doubtful.add(match.group(1))
            found.pop(match.group(1), None)
        else:
            found[match.group(1)] = match
    return found, doubtful, tuple(skipped)


def cannot_run(reason: str) -> bool:
    """Whether a pending job's reason (squeue ``%r``: the code or Slurm's description) is one
    of :data:`CANNOT_RUN_REASONS`, not a job waiting its turn."""
    code = re.split(r"[,\s(]", reason.strip(), maxsplit=1)[0]
    return code in CANNOT_RUN_REASONS or reason.strip().startswith(_CANNOT_RUN_DESCRIPTIONS)


def base_job_id(job_id: str) -> str:
    """The job id of a job array's task (``123`` of ``123_4``); a plain job id as it is."""
    return job_id.partition("_")[0]


def parse_sacct(sacct_output: str) -> JobEnd | None:
    """The job's end from ``sacct -n -P -X -o JobID,State,ExitCode`` (first line); sacct
    writes ``CANCELLED by 0``, the state is the first word. None for no line."""
    for line in sacct_output.splitlines():
        fields = line.split("|")
        if len(fields) >= 3 and fields[1]:
            return JobEnd(state=fields[1].split()[0], exit_code=fields[2])
    return None


def parse_time_limit(text: str) -> int | None:
    """Minutes of a Slurm time limit (``MaxTime``): ``minutes``, ``minutes:seconds``,
    ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes``,
    ``days-hours:minutes:seconds``; seconds are rounded up to a minute. None for
    ``UNLIMITED``/``INFINITE``.

    Raises:
        ValueError: any other text.
    """
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, dash, clock = text.rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        day_count = int(days) if dash else 0
    except ValueError:
        raise ValueError(f"not a Slurm time limit: {text!r}") from None
    if dash:  # days-hours[:minutes[:seconds]]
        if len(parts) > 3:
            raise ValueError(f"not a Slurm time limit: {text!r}")
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) in (1, 2):  # minutes[:seconds]
        hours, minutes, seconds = 0, parts[0], [*parts, 0][1]
    else:
        raise ValueError(f"not a Slurm time limit: {text!r}")
    return day_count * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)


def time_limit(seconds: int) -> str:
    """``sbatch --time`` value for ``seconds`` (Slurm counts whole minutes: rounded up,
    at least one)."""
    return str(max(1, math.ceil(seconds / 60)))


def glue_status(partition_state: str, usable_nodes: int) -> str:
    """``GlueCEStateStatus`` of a partition (module docstring)."""
    state = partition_state.upper()
    if state == "UP":
        return "Production" if usable_nodes else "Queueing"
    if state == "DOWN":
        return "Queueing"
    if state == "DRAIN":
        return "Draining"
    return "Closed"


def response_time(free_cpus: int, usable_cpus: int, waiting: int, status: str,
                  mean_job_seconds: int = DEFAULT_MEAN_JOB_SECONDS) -> int:
    """``GlueCEStateEstimatedResponseTime`` in seconds (module docstring)."""
    if status not in ("Production", "Draining") or usable_cpus <= 0:
        return UNREACHABLE_RESPONSE_TIME
    if free_cpus > 0:
        return 0
    return math.ceil((waiting + 1) * mean_job_seconds / usable_cpus)


def partition_attributes(sinfo_output: str, squeue_output: str, scontrol_output: str,
                         partitions: Iterable[str],
                         mean_job_seconds: int = DEFAULT_MEAN_JOB_SECONDS) -> dict[str, dict[str, int | str]]:
    """The Glue attributes of ``partitions`` (module docstring) from
    ``sinfo -h -N -o '%N|%P|%C|%T'``, ``squeue -h -o '%P|%T'`` and
    ``scontrol -o show partition``. A partition Slurm does not know is left out.

    Raises:
        ValueError: output of an unexpected shape.
    """
    shown = {pairs["PartitionName"]: pairs for line in scontrol_output.splitlines()
             if "PartitionName" in (pairs := parse_scontrol(line))}
    nodes: dict[str, dict[str, tuple[list[int], bool]]] = {}
    for line in sinfo_output.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 4:
            raise ValueError(f"not an sinfo line of the form %N|%P|%C|%T: {line!r}")
        node, partition, cpus, state = fields
        usable = state.rstrip(_NODE_FLAGS) in USABLE_NODE_STATES and not state.endswith("*")
        nodes.setdefault(partition.rstrip("*"), {})[node] = (_cpu_fields(cpus, line), usable)
    jobs: dict[str, dict[str, int]] = {}
    for line in squeue_output.splitlines():
        if not line.strip():
            continue
        listed, _sep, state = line.partition("|")
        for partition in listed.split(","):
            counts = jobs.setdefault(partition, {"running": 0, "waiting": 0, "total": 0})
            counts["total"] += 1
            counts["running"] += state in RUNNING_STATES
            counts["waiting"] += state == PENDING_STATE
    result: dict[str, dict[str, int | str]] = {}
    for name in partitions:
        if name not in shown:
            continue
        members = nodes.get(name, {}).values()
        total = sum(fields[3] for fields, _usable in members)
        usable_cpus = sum(fields[3] for fields, usable in members if usable)
        free = sum(fields[1] for fields, usable in members if usable)
        status = glue_status(shown[name].get("State", ""), sum(1 for _f, usable in members if usable))
        counts = jobs.get(name, {"running": 0, "waiting": 0, "total": 0})
        attributes: dict[str, int | str] = {
            "GlueCEInfoTotalCPUs": total,
            "GlueCEStateFreeCPUs": free,
            "GlueCEStateFreeJobSlots": free,
            "GlueCEStateRunningJobs": counts["running"],
            "GlueCEStateWaitingJobs": counts["waiting"],
            "GlueCEStateTotalJobs": counts["total"],
            "GlueCEStateStatus": status,
            "GlueCEStateEstimatedResponseTime": response_time(free, usable_cpus, counts["waiting"], status,
                                                              mean_job_seconds),
        }
        max_time = parse_time_limit(shown[name].get("MaxTime", "UNLIMITED"))
        if max_time is not None:
            attributes["GlueCEPolicyMaxWallClockTime"] = max_time
        result[name] = attributes
    return result


# --- the commands ----------------------------------------------------------------------


class SlurmCommands:
    """Runs the Slurm client commands of one cluster.

    Args:
        slurm_conf: the cluster's ``slurm.conf`` (exported as ``SLURM_CONF``); None uses
            Slurm's default (``/etc/slurm/slurm.conf`` or configless DNS lookup).
        bin_dir: directory of the client programs; None looks them up in
            ``/usr/local/bin:/usr/bin:/bin``.
        timeout: seconds any command may take before it is killed.
    """

    def __init__(self, slurm_conf: str | os.PathLike[str] | None = None, bin_dir: str | os.PathLike[str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.slurm_conf = None if slurm_conf is None else Path(os.path.abspath(slurm_conf))
        self.bin_dir = None if bin_dir is None else Path(os.path.abspath(bin_dir))
        self.timeout = timeout
        self._accounting: bool | None = None  # None: sacct not tried yet
        self._reported: set[str] = set()  # lines of squeue skipped and logged already

    @property
    def env(self) -> dict[str, str]:
        """The complete environment of every command."""
        env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "SLURM_TIME_FORMAT": "%s"}
        if self.slurm_conf is not None:
            env["SLURM_CONF"] = str(self.slurm_conf)
        return env

    def program(self, name: str) -> str:
        """Absolute path of the client program ``name``.

        Raises:
            SlurmError: it is not installed there.
        """
        if self.bin_dir is not None:
            path = self.bin_dir / name
            if os.access(path, os.X_OK):
                return str(path)
            raise SlurmError(f"{path} is not an executable Slurm command", command=name)
        found = shutil.which(name, path=BASE_PATH)
        if found is None:
            raise SlurmError(f"The Slurm command {name} is not installed (PATH {BASE_PATH})", command=name)
        return found

    def run(self, name: str, *args: str, account: Account | None = None, as_account: bool = False,
            cwd: Path | None = None) -> str:
        """Run ``name args`` and return its standard output.

        Args:
            name: the client program.
            args: its arguments.
            account: with ``as_account``: whom to run it as (None: the worker's user, which
                :func:`identity.run_as` refuses for root).
            as_account: switch to ``account`` (``sbatch``, ``scancel``); False runs the
                command as the worker's user.
            cwd: working directory.

        Raises:
            SlurmError: the command is missing, exits non-zero (Slurm's message in the
                error), cannot be run as the account, or takes longer than the timeout
                (``timed_out``).
        """
        argv = [self.program(name), *args]
        try:
            if as_account:
                done = identity.run_as(argv, account, env=self.env, cwd=cwd, timeout=self.timeout)
            else:
                done = identity.run_as_worker(argv, env=self.env, cwd=cwd, timeout=self.timeout)
        except CommandTimeoutError as exc:
            raise SlurmError(str(exc), command=name, timed_out=True) from None
        except IdentityError as exc:
            raise SlurmError(str(exc), command=name) from None
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()  # scontrol says some errors on stdout
            message = _message(said) or f"exit status {done.returncode}"
            raise SlurmError(f"{name} failed: {message}", command=name, returncode=done.returncode, stderr=said)
        return done.stdout

    # --- jobs ------------------------------------------------------------------------

    def submit(self, script: Path, account: Account | None, cwd: Path) -> int:
        """``sbatch --parsable <script>`` as ``account``; the script's ``#SBATCH`` lines
        hold every option (``--array`` for a job array).

        Returns:
            the Slurm job id (of a job array: its base id, task N is ``<id>_<N>``).

        Raises:
            SlurmError: sbatch refused the job (Slurm's message) or did not answer
                (``timed_out``: the job may exist).
        """
        out = self.run("sbatch", "--parsable", str(script), account=account, as_account=True, cwd=cwd)
        first = out.strip().split(";")[0]
        if not NUMBER.fullmatch(first):
            raise SlurmError(f"sbatch printed no job id: {log_text(out.strip()[:200])}", command="sbatch")
        return int(first)

    def queue(self, job_ids: Sequence[str]) -> Listing:
        """The jobs Slurm still knows among ``job_ids`` (``123`` or ``123_4``) and the other
        tasks of their job arrays, from one ``squeue -r --states=all -j <base ids>``:
        active ones, and ended ones for ``MinJobAge`` seconds; a job missing from the
        result has left, unless squeue listed it twice (:attr:`Listing.doubtful`: unknown).
        A line that does not parse, or of a job not asked for, is skipped (logged once).

        Raises:
            SlurmError: squeue failed (the controller does not answer).
        """
        if not job_ids:
            return Listing({})
        bases = dict.fromkeys(base_job_id(str(job_id)) for job_id in job_ids)
        try:
            out = self.run("squeue", "-h", "-r", "--states=all", "-o", _QUEUE_FORMAT, "-j", ",".join(bases))
        except SlurmError as exc:
            if _INVALID_JOB in exc.stderr:  # squeue -j with one id that has left fails so
                return Listing({})
            raise
        listing = parse_queue(out, bases)
        self._report(listing.skipped)
        if listing.doubtful:
            log.warning("squeue listed the Slurm job(s) %s more than once (a job's owner may have forged a "
                        "line): unknown this round", log_text(", ".join(sorted(listing.doubtful))))
        return listing

    def find(self, name: str, work_dir: Path, task: int | None = None, user_id: int | None = None) -> NamedJob | None:
        """The job named ``name`` running in ``work_dir`` that Slurm still knows (the
        most recent one), None when there is none; with ``task``, that task of the job
        array of that name and directory (:meth:`pick`).

        Raises:
            SlurmError: squeue failed.
        """
        return self.pick(self.named([name]), name, work_dir, task, user_id)

    def named(self, names: Sequence[str]) -> dict[str, NamedJob]:
        """The jobs (array tasks one by one) Slurm still knows of any of ``names``, from one
        ``squeue -r --states=all -n <names> -o '%i|%U|%j'``, by job id (:meth:`pick` picks
        one). Slurm matches names exactly, so the names it prints are among those asked for,
        and the work dir, which the job's owner may set to anything, is not printed.

        Raises:
            SlurmError: squeue failed.
        """
        if not names:
            return {}
        out = self.run("squeue", "-h", "-r", "--states=all", "-o", _NAMED_FORMAT, "-n", ",".join(names))
        jobs, skipped = parse_named(out, names)
        self._report(skipped)
        return jobs

    def work_dir_of(self, job_id: str) -> str | None:
        """The work dir of one job (``squeue -j <id> -o '%i|%Z'``), None when Slurm does not
        list it or its answer is not exactly one line for that id (a work dir of several
        lines).

        Raises:
            SlurmError: squeue failed.
        """
        try:
            out = self.run("squeue", "-h", "-r", "--states=all", "-o", "%i|%Z", "-j", job_id)
        except SlurmError as exc:
            if _INVALID_JOB in exc.stderr:
                return None
            raise
        lines = out.splitlines()
        if len(lines) != 1 or not lines[0].startswith(f"{job_id}|"):
            return None
        return lines[0][len(job_id) + 1:]

    def pick(self, jobs: dict[str, NamedJob], name: str, work_dir: Path, task: int | None = None,
             user_id: int | None = None, work_dirs: dict[str, str | None] | None = None) -> NamedJob | None:
        """Of :meth:`named`'s ``jobs``, the job named ``name`` of ``user_id`` (any, when None)
        running in ``work_dir`` (asked of Slurm job by job, :meth:`work_dir_of`, each answer
        kept in ``work_dirs`` when given, and taken from there), the most recent one; None when
        there is none. With ``task``, that task of the job array of that name and directory.

        Raises:
            SlurmError: squeue failed.
        """
        known = {} if work_dirs is None else work_dirs
        for job in select_jobs(jobs, name, task, user_id):
            if job.job_id not in known:
                known[job.job_id] = self.work_dir_of(job.job_id)
            if known[job.job_id] == str(work_dir):
                return job
        return None

    def _report(self, skipped: Sequence[str]) -> None:
        """Log each skipped line of squeue once (escaped: a job's owner may have written it)."""
        for line in skipped:
            if line in self._reported:
                continue
            if len(self._reported) >= _REPORTED_MAX:
                self._reported.clear()
            self._reported.add(line)
            log.warning("squeue line skipped (not of the expected shape, or of a job not asked for): %s",
                        log_text(line[:500]))

    def job_end(self, job_id: str) -> JobEnd | None:
        """How Slurm ended ``job_id``: ``scontrol show job`` while the controller keeps it
        (``MinJobAge``), else ``sacct`` when accounting runs; None when neither knows.

        Raises:
            SlurmError: scontrol failed for another reason than an unknown job.
        """
        try:
            shown = parse_scontrol(self.run("scontrol", "-o", "show", "job", str(job_id)))
        except SlurmError as exc:
            if _INVALID_JOB not in exc.stderr:
                raise
        else:
            if "JobState" in shown:
                return JobEnd(shown["JobState"], shown.get("Reason", ""), shown.get("ExitCode", ""))
        return self.accounted_end(job_id)

    def accounted_end(self, job_id: str) -> JobEnd | None:
        """The job's end from ``sacct``; None when accounting does not run (remembered
        after the first refusal) or has no record."""
        if self._accounting is False:
            return None
        try:
            out = self.run("sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "JobID,State,ExitCode")
        except SlurmError:
            self._accounting = False
            return None
        self._accounting = True
        return parse_sacct(out)

    def cancel(self, job_id: str, account: Account | None, *, signal: str | None = None,
               batch_only: bool = False) -> None:
        """``scancel`` as ``account``: with ``signal``, send it (``TERM``) instead of ending
        the job, to the batch step only when ``batch_only``; without, end the job (its
        processes get SIGTERM, then SIGKILL after the cluster's ``KillWait``).

        Raises:
            SlurmError: scancel failed (e.g. the job has already ended).
        """
        args = [f"--signal={signal}"] if signal else []
        if batch_only:
            args.append("--batch")
        self.run("scancel", *args, str(job_id), account=account, as_account=True)

    # --- partitions ------------------------------------------------------------------

    def partition_states(self, partitions: Iterable[str],
                         mean_job_seconds: int = DEFAULT_MEAN_JOB_SECONDS) -> dict[str, dict[str, int | str]]:
        """The Glue CE attributes of each partition (module docstring), from one ``sinfo``,
        one ``squeue`` and one ``scontrol show partition`` for all of them.

        Returns:
            partition name → attribute name → value; unknown partitions are left out.

        Raises:
            SlurmError: a command failed or printed something unexpected.
        """
        sinfo = self.run("sinfo", "-h", "-N", "-o", "%N|%P|%C|%T")
        squeue = self.run("squeue", "-h", "-o", "%P|%T")
        scontrol = self.run("scontrol", "-o", "show", "partition")
        try:
            return partition_attributes(sinfo, squeue, scontrol, partitions, mean_job_seconds)
        except ValueError as exc:
            raise SlurmError(f"unexpected Slurm output: {exc}", command="sinfo") from None

    def partition_state(self, partition: str,
                        mean_job_seconds: int = DEFAULT_MEAN_JOB_SECONDS) -> dict[str, int | str]:
        """The Glue CE attributes of one partition (:meth:`partition_states`).

        Raises:
            SlurmError: a command failed, or Slurm has no such partition.
        """
        states = self.partition_states([partition], mean_job_seconds)
        if partition not in states:
            raise SlurmError(f"Slurm has no partition {partition!r}", command="scontrol")
        return states[partition]


def select_jobs(jobs: dict[str, NamedJob], name: str, task: int | None = None,
                user_id: int | None = None) -> list[NamedJob]:
    """Of :meth:`SlurmCommands.named`'s ``jobs``, those named ``name`` of ``user_id`` (any, when
    None), the most recent first; with ``task``, that task of job arrays of that name, else
    jobs that are no array task."""
    found = [job for job in jobs.values() if job.name == name and (user_id is None or job.user_id == user_id)
             and (task is None) == ("_" not in job.job_id)
             and (task is None or job.job_id.endswith(f"_{task}"))]
    return sorted(found, key=lambda job: int(base_job_id(job.job_id)), reverse=True)


def _message(stderr: str) -> str:
    """Slurm's message: the stderr lines, joined (``sbatch: error: `` prefixes kept out)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(re.sub(r"^\w+: (error|fatal): ", "", line) for line in lines)
