"""The load limiter: new work is refused while the host or the service is overloaded
(anchors.md §1.3, the reference's ``glite_wms_wmproxy_load_monitor``; ``docs/load.md``).

Before jobRegister, jobSubmit and jobListMatch (and their JSDL forms; not jobStart, reference
bug #40370) the edge calls :func:`check_load`. It refuses with ServerOverloadedError
"System load is too high: <threshold> ..." when any threshold of ``[load]`` trips:

- ``load1``: 1-minute load ≥ threshold; ``load5``: 5-minute load ≥ threshold while rising
  (load1 > load5); ``load15``: 15-minute load ≥ threshold while rising (load1 > load15 and
  load5 > load15), the reference's rules;
- ``memory_usage``, ``swap_usage``, ``disk_usage`` (the sandbox area's file system, as df's
  Use%: :func:`disk_percent`): percent in use ≥ threshold; ``free_fds``: free file descriptors
  ≤ threshold, the fewer of the host's (``fs.file-max`` minus those allocated: the reference's
  fdnum) and the worker's own (its open-files limit minus the descriptors it holds). Every
  gunicorn process raises its soft open-files limit to the hard one at start
  (:func:`raise_open_files_limit`; the systemd unit sets ``LimitNOFILE=65536``): measured
  against systemd's default soft limit of 1024, a threshold of 1000 refused every job of a
  worker holding 25 descriptors;
- ``queued_jobs``: jobs started and not yet taken by a worker (Waiting, Ready) > threshold;
- ``max_live_jobs`` (jobRegister/jobSubmit only): the caller (DN) already has that many jobs
  that are not final.

:func:`check_submission_size` refuses a jobRegister/jobSubmit whose JDL would create more than
``max_jobs_per_submission`` nodes. System values and the queue depth are sampled at most once
per ``sample_interval`` seconds per process (:class:`LoadMonitor`); 0 turns a threshold off.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from wmproxy.config import LoadSettings, Settings
from wmproxy.domain import FINAL_STATES, JobState, Principal
from wmproxy.errors import ServerOverloadedError, WMProxyError
from wmproxy.jdl import check_expressions, node_count, parse_jdl
from wmproxy.services.runtime import Runtime

#: Operations the load limiter guards: the reference's priority class 1 without jobStart.
LOAD_CHECKED_OPERATIONS = frozenset(
    {"jobRegister", "jobRegisterJSDL", "jobSubmit", "jobSubmitJSDL", "jobListMatch", "jobListMatchJSDL"}
)
#: Of those, the ones that create jobs (the per-user caps apply to them).
CREATING_OPERATIONS = frozenset({"jobRegister", "jobRegisterJSDL", "jobSubmit", "jobSubmitJSDL"})

#: Started jobs not yet running: the execution queue the ``queued_jobs`` threshold measures.
QUEUED_STATES = (JobState.WAITING.value, JobState.READY.value)

OVERLOADED = "System load is too high"

T = TypeVar("T")


@dataclass(frozen=True)
class SystemSample:
    """One sample of the host: load averages, percent of memory, swap and disk in use,
    free file descriptors (the fewer of this process's and the system's)."""

    load1: float
    load5: float
    load15: float
    memory_usage: float
    swap_usage: float
    disk_usage: float
    free_fds: int


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as lines:
        for line in lines:
            key, _, rest = line.partition(":")
            number = rest.split()
            if number:
                values[key] = int(number[0])
    return values


def _percent(used: float, total: float) -> float:
    return 100.0 * used / total if total > 0 else 0.0


def disk_percent(st: os.statvfs_result) -> float:
    """Percent of a file system in use as df's Use% counts it (the reference's script read
    ``df -P``): used / (used + available to unprivileged users), with used = blocks − free.
    The blocks reserved for root are left out of both: on ext4 (5 % reserved) a file system
    the service user can no longer write to is 100 %, where used / total said 95 %. df
    rounds up to a whole percent; this is the exact value. 0 for a file system of no blocks.
    """
    used = st.f_blocks - st.f_bfree
    return _percent(used, used + st.f_bavail)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files (RLIMIT_NOFILE) to its hard limit, so that
    the worker's share of ``free_fds`` is its real headroom, not systemd's default soft limit of
    1024 kept for ``select()``-based programs (gunicorn and wmproxy use none); children inherit
    it. Returns the soft limit now in force (unchanged when it cannot be raised)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):  # a hard limit over the kernel's nr_open: keep the soft one
            return soft
    return hard


def fd_limit_problem(load: LoadSettings) -> str | None:
    """The warning a serving process logs at start when ``[load] free_fds`` would trip for its
    own limit alone (every job refused), None otherwise."""
    if not load.free_fds:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or _process_free_fds() > load.free_fds:
        return None
    return (f"[load] free_fds = {load.free_fds} refuses every new job: this process may open only {soft} files "
            "(its hard limit); raise LimitNOFILE= in the unit (deploy/wmproxy.service: 65536) or lower free_fds")


def _process_free_fds() -> int:
    """This process's own headroom: its soft open-files limit (2**20 when unlimited) less the
    descriptors it holds."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20) - len(os.listdir("/proc/self/fd"))


def _free_fds() -> int:
    process_free = _process_free_fds()
    try:
        allocated, _, maximum = (int(v) for v in Path("/proc/sys/fs/file-nr").read_text().split())
    except (OSError, ValueError):
        return process_free
    return min(process_free, maximum - allocated)


def sample_system(disk_path: str) -> SystemSample:
    """Read the host's values now (Linux ``/proc``).

    Args:
        disk_path: a path on the file system whose usage counts (the sandbox root; its
            nearest existing parent when it does not exist yet).
    """
    load1, load5, load15 = os.getloadavg()
    mem = _meminfo()
    total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", 0))
    swap_total = mem.get("SwapTotal", 0)
    path = Path(disk_path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return SystemSample(
        load1=load1, load5=load5, load15=load15,
        memory_usage=_percent(total - available, total),
        swap_usage=_percent(swap_total - mem.get("SwapFree", 0), swap_total),
        disk_usage=disk_percent(os.statvfs(path)),
        free_fds=_free_fds(),
    )


def tripped(load: LoadSettings, sample: SystemSample) -> str | None:
    """The first system threshold ``sample`` trips, as "<name> <measured> ≥ <threshold>"; None
    when none does (the reference's rules, anchors.md §1.3)."""
    s = sample
    if load.load1 and s.load1 >= load.load1:
        return f"load1 {s.load1:.2f} >= {load.load1:g}"
    if load.load5 and s.load5 >= load.load5 and s.load1 > s.load5:
        return f"load5 {s.load5:.2f} >= {load.load5:g} and rising (load1 {s.load1:.2f})"
    if load.load15 and s.load15 >= load.load15 and s.load1 > s.load15 and s.load5 > s.load15:
        return f"load15 {s.load15:.2f} >= {load.load15:g} and rising (load1 {s.load1:.2f}, load5 {s.load5:.2f})"
    for name in ("memory_usage", "swap_usage", "disk_usage"):
        limit, value = getattr(load, name), getattr(s, name)
        if limit and value >= limit:
            return f"{name} {value:.1f}% >= {limit:g}%"
    if load.free_fds and s.free_fds <= load.free_fds:
        return f"free_fds {s.free_fds} <= {load.free_fds}"
    return None


class LoadMonitor:
    """Caches a value for ``[load] sample_interval`` seconds (thread-safe, per process).

    Args:
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, object]] = {}

    def cached(self, key: str, interval: float, read: Callable[[], T]) -> T:
        """``read()``'s value, read again when the one kept under ``key`` is older than ``interval``."""
        now = self._clock()
        with self._lock:
            kept = self._values.get(key)
            if kept is not None and now - kept[0] < interval:
                return cast(T, kept[1])
        value = read()
        with self._lock:
            self._values[key] = (now, value)
        return value


#: The process's monitor (one per gunicorn worker process).
MONITOR = LoadMonitor()


def _system_checked(load: LoadSettings) -> bool:
    return any((load.load1, load.load5, load.load15, load.memory_usage, load.swap_usage, load.disk_usage,
                load.free_fds))


def _queued_jobs(rt: Runtime) -> int:
    with rt.uow() as uow:
        return uow.jobs.count_at(QUEUED_STATES)


def _live_jobs(rt: Runtime, owner_dn: str) -> int:
    """The jobs (not nodes) of ``owner_dn`` not in a final state, counted by the database."""
    with rt.uow() as uow:
        return uow.jobs.live_count(owner_dn, [state.value for state in FINAL_STATES])


def check_load(rt: Runtime, principal: Principal, operation: str, monitor: LoadMonitor = MONITOR) -> None:
    """Refuse new work while a ``[load]`` threshold trips (nothing for other operations).

    Args:
        operation: the SOAP operation's local name; only :data:`LOAD_CHECKED_OPERATIONS` are checked.

    Raises:
        ServerOverloadedError: "System load is too high: <threshold> <measured> ..." (1228).
    """
    if operation not in LOAD_CHECKED_OPERATIONS:
        return
    load = rt.settings.load
    reason: str | None = None
    if _system_checked(load):
        root = rt.settings.sandbox.root
        sample = monitor.cached(f"system {root}", load.sample_interval, lambda: sample_system(root))
        reason = tripped(load, sample)
    if reason is None and load.queued_jobs:
        url = rt.settings.database.url
        queued = monitor.cached(f"queued {url}", load.sample_interval, lambda: _queued_jobs(rt))
        if queued > load.queued_jobs:
            reason = f"queued_jobs {queued} > {load.queued_jobs}"
    if reason is None and load.max_live_jobs and operation in CREATING_OPERATIONS:
        live = _live_jobs(rt, principal.dn)
        if live >= load.max_live_jobs:
            reason = f"max_live_jobs: {live} live jobs of this user, at most {load.max_live_jobs}"
    if reason is not None:
        raise ServerOverloadedError(f"{OVERLOADED}: {reason}")


def check_submission_size(settings: Settings, jdl: str) -> None:
    """Refuse a JDL that would create more than ``[load] max_jobs_per_submission`` nodes.

    The nodes are counted, not made (:func:`wmproxy.jdl.node_count`): registration expands
    the JDL once. A JDL whose nodes cannot be counted (it does not parse, a bad node list or
    ``Parameters``) passes: registration reports it with its own error.

    Raises:
        ServerOverloadedError: "System load is too high: max_jobs_per_submission: <n> nodes,
            at most <cap>" (1228).
    """
    cap = settings.load.max_jobs_per_submission
    if not cap:
        return
    try:
        ad = parse_jdl(jdl)
        check_expressions(ad)  # Parameters may be an expression: nothing of the JDL evaluated unchecked
        nodes = node_count(ad, max_nodes=settings.jobs.max_nodes)  # no node is made
    except WMProxyError:
        return
    if nodes > cap:
        raise ServerOverloadedError(f"{OVERLOADED}: max_jobs_per_submission: {nodes} nodes, at most {cap}")
