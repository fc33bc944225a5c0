"""The execution worker loop: heartbeat, adopt, claim, prepare, spawn, watch, collect.

Several workers may run against one database: claiming uses the queue's
``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or compare-and-set (SQLite). Claiming a job
matches it to a CE (:func:`wmproxy.services.execution.claim_next_start`); the CE names
the backend kind that runs it (``local``, ``slurm``), and the worker hands the job to
its backend of that kind. A worker follows up to ``[execution] max_running`` local jobs
and, separately, ``[slurm] max_submitted`` Slurm jobs at once, each through the job
wrapper as its mapped account (``jobs.local_account``; the worker's own user without
mapping). It polls its jobs every ``poll_interval`` seconds and, while a backend has
room, the queue five times as often; a queued job (PostgreSQL NOTIFY) or a wrapper's
exit wakes it at once (:mod:`wmproxy.execution.wakeup`), so a started job begins
without waiting for a tick.

When an attempt ends the worker collects the outputs of a Done job, releases the work
dir, and only then reports the end (:func:`wmproxy.services.retries.end_attempt`), which
may resubmit the job (shallow or deep retry): the next attempt never finds the old work
dir. A backend that cannot prepare or spawn a job is a shallow failure.

An end is never lost to an outage: a job whose outputs cannot be collected (the sandbox's
file system full, the database unavailable, an unexpected error) keeps its work dir and is
tried again, after :data:`END_RETRY_FIRST` seconds doubled per failure up to
:data:`END_RETRY_MAX`; ends the database does not take are kept in memory
(:attr:`ExecutionWorker.unrecorded`), written to the worker's ends journal on disk
(:mod:`~wmproxy.execution.ends_journal`, taken over by the next worker on the host should this
one stop or die first) and recorded at the next cycle. Every cycle's ends are in that journal
before their work dirs are released, so a worker killed (SIGKILL, the OOM killer) between a
release and the commit of the end loses no end either; a cycle that fails on
the database or the file system is logged and the loop goes on after a back-off (up to
:data:`DATABASE_BACKOFF_MAX` seconds), its jobs still followed. Another worker on the host
takes a worker's jobs over only once its process is gone, not merely its heartbeat late.

No job is lost or run twice:

* the wrapper is spawned only after the job is committed as Scheduled with a backend
  reference naming its work dir, and a work dir holding ``started.json`` is never
  prepared again;
* the worker heartbeats every ``heartbeat_lease / 4`` seconds; at start and as often
  as it heartbeats it adopts the jobs of dead workers on its host and its own previous
  life's (:func:`wmproxy.services.execution.adopt_jobs`): running jobs are followed
  through their wrapper and ``status.json``, claimed-but-never-started ones requeued;
* a job prepared ahead of a free slot (short jobs: :data:`READ_AHEAD_RUNTIME`) is
  recorded Scheduled before it is held, is known to the worker's own adoption, is
  cancelled without running, and goes back to the queue (work dir released first) at a
  drain or after :data:`READ_AHEAD_HOLD` seconds without a slot;
* stopping (SIGTERM) drains: the worker stops claiming and exits, leaving its jobs
  running (each wrapper leads its own session); the next worker on the host, or this
  one restarted under the same name, adopts them. Only ``cancel_running_on_exit``
  (``wmproxy-worker --cancel-running-on-exit``) stops them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import functools
import logging
import os
import re
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from wmproxy.config import Settings
from wmproxy.domain import JobState, reserved_input_file, service_file, to_filename
from wmproxy.errors import WMProxyError
from wmproxy.execution import ends_journal, identity
from wmproxy.execution.backends import BackendError, BatchSpawning, ExecutionBackend, JobLaunch, JobOutcome, RunHandle
from wmproxy.execution.identity import PROXY_NAME, Account, AccountRefusedError
from wmproxy.execution.jobwrapper import JobSpec
from wmproxy.execution.wakeup import Wakeup
from wmproxy.execution.zygote import start_time
from wmproxy.sandbox.confined import ConfinementError, open_confined
from wmproxy.services import execution as service
from wmproxy.services import inspection, quota
from wmproxy.services.broker_shares import OwnerShares
from wmproxy.services.execution import StartOrder
from wmproxy.services.mapping import unmappable_account
from wmproxy.services.matchmaking import MatchingFailures
from wmproxy.services.perusal import PerusalBudget, keep_perusal_chunk, perusal_budget, perusal_lists
from wmproxy.services.retries import AttemptEnd, EndsNotRecordedError, end_attempt, end_attempts
from wmproxy.services.runtime import Runtime
from wmproxy.store import database_reason
from wmproxy.text import log_text, xml_text

log = logging.getLogger(__name__)

#: Fraction of ``poll_interval`` an idle worker waits between queue polls.
IDLE_POLL_FRACTION = 0.2
#: Jobs one cycle claims and starts at most (while a backend has room) before it looks
#: at its running jobs again.
STARTS_PER_STEP = 8
#: Seconds the worker, woken by a wrapper's exit, waits at most for the other running
#: wrappers to exit too, so that one cycle records several ends (and claims as many jobs)
#: in one transaction each; a lone running job is not delayed at all.
GATHER_ENDS = 0.03
#: Busy cycles (each started a job) after which the backends remove all the work dirs
#: released meanwhile even though the worker is not about to wait (:meth:`ExecutionWorker._tidy`).
TIDY_EVERY = 16
#: Seconds a worker about to wait spends removing released work dirs at most (then it waits,
#: and goes on at its next idle moment), so a wrapper's exit is not left unseen for long.
TIDY_BUDGET = 0.01
#: Seconds a worker spends removing released work dirs after :data:`TIDY_EVERY` busy cycles
#: in a row at most: enough for hundreds of ordinary work dirs, while one of a job that left a
#: million files is removed over several such moments instead of holding one cycle for seconds.
TIDY_BUSY_BUDGET = 1.0
#: Seconds a job ran at most for its end to count as a short job's. Each short job that a cycle
#: found ended has the cycle claim and prepare one more job of its backend kind ahead of a
#: free slot (up to :data:`STARTS_PER_STEP` per kind held at once), recorded Scheduled: the
#: next cycle spawns it as soon as a slot frees, before its own bookkeeping, instead of
#: claiming, preparing and scheduling it while no job runs.
READ_AHEAD_RUNTIME = 0.5
#: Seconds a job prepared ahead waits for a slot at most; then its work dir is released and
#: it is put back in the queue, for any worker (:meth:`ExecutionWorker._put_back`).
READ_AHEAD_HOLD = 1.0
#: Bytes of a perused file copied per sample at most (less when the job's
#: :func:`~wmproxy.services.perusal.perusal_budget` leaves less).
PERUSAL_READ_LIMIT = 16 * 1024 * 1024
#: Seconds after which the worker tries again to collect an attempt's end that it could not
#: collect (the sandbox's file system full, the database unavailable, an unexpected error);
#: doubled at each further failure, up to :data:`END_RETRY_MAX`. The job keeps its work dir
#: (its outputs) and its slot meanwhile; a cancel is taken at once.
END_RETRY_FIRST = 1.0
#: Seconds between two tries to collect an attempt's end at most.
END_RETRY_MAX = 300.0
#: Failures to collect an attempt's end, other than an outage (the database failing, the
#: sandbox's file system full: tried as long as it lasts), after which the attempt ends Aborted,
#: not retried, with the failure as its reason (about 18 minutes after the first try when all
#: failures are of that kind: 1 + 2 + ... + 256 + 300 + 300 seconds).
END_TRIES = 12
#: Seconds the loop waits at most after cycles that failed on the database: ``poll_interval``
#: after the first, doubled at each further one up to this.
DATABASE_BACKOFF_MAX = 30.0
#: ``errno`` values of a sandbox write that a later try can get past (space or quota freed).
_STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)
#: Output sandbox files a job's reason names at most among those not collected, and among those
#: truncated; the others are counted ("and 199980 more"): a wildcard can match as many files as
#: the job made, and the reason goes into the database and every status answer.
REASON_FILES_SHOWN = 20
#: Output sandbox files the worker collects for a job at most when ``[limits]
#: max_output_sandbox_files`` is 0 (no limit at registration): a wildcard matches every file the
#: job made, and they are copied in the worker's cycle (200,000 files: 37 s without a bound).
OUTPUT_FILES_CEILING = 10_000


#: Seconds between two polls of a job set aside after a poll raised (:meth:`ExecutionWorker.
#: _retry_set_aside`): one that answers again is followed again.
SET_ASIDE_RETRY = 60.0
#: Seconds after which a job its backend could not follow is given up: its cancel sent (to its
#: wrapper or Slurm job, when the worker has its handle) and the job recorded Aborted, not
#: retried (its payload may still run). It stayed Running until the worker restarted.
SET_ASIDE_LIMIT = 3600.0


@dataclass
class SetAside:
    """A job whose backend failed to attach or poll it (:meth:`ExecutionWorker._set_aside`)."""

    why: str
    attempt: int
    #: its backend and handle when it was being followed (a poll failed), to send a cancel to
    backend: ExecutionBackend | None = None
    handle: RunHandle | None = None
    #: the job as it was followed (a poll failed): polled again every :data:`SET_ASIDE_RETRY`
    job: RunningJob | None = None
    #: ``time.monotonic()`` when it was set aside, and of its next poll
    since: float = 0.0
    next_try: float = 0.0


@dataclass
class RunningJob:
    """A job this worker follows."""

    order: StartOrder
    handle: RunHandle
    backend: ExecutionBackend
    next_sample: float = 0.0
    offsets: dict[str, int] = field(default_factory=dict)
    #: the newest perusal chunk's timestamp per file: each chunk gets a later one, so no chunk
    #: is ever written twice and no two merged files share a name
    stamps: dict[str, int] = field(default_factory=dict)
    #: what held its perusal back (its budget used up: "<what> reached"), None while nothing did;
    #: named in the reason of its Done end
    perusal_held: str | None = None
    cancel_reason: str | None = None  # None: not being cancelled; "" : cancelled by its owner
    since: float = 0.0  # monotonic seconds: when its wrapper was spawned (0: adopted), or prepared ahead
    #: the attempt's outcome, once it ended and its end could not be collected (tried again later)
    ended: JobOutcome | None = None
    end_failures: int = 0  # tries to collect its end that failed
    end_defects: int = 0  # those that failed other than by an outage (END_TRIES)
    retry_end_at: float = 0.0  # monotonic seconds: when its end is tried again
    #: adopted from a reference without backend id (a worker died before, or during, the spawn
    #: of its wrapper): while it has none, an end that says the wrapper never ran requeues it
    unsubmitted: bool = False
    #: the backend reference the database holds for it (None: not known to be recorded); when
    #: the handle's differs (a Slurm job id found after its sbatch lost its answer), the
    #: handle's is recorded (:meth:`ExecutionWorker._record_references`)
    recorded_ref: str | None = None


@dataclass
class PeriodicTask:
    """Something the worker does every ``interval`` seconds between cycles.

    Attributes:
        name: for the log.
        interval: seconds between two runs (the first run is at the first cycle).
        run: the task; an exception is logged and the task runs again after ``interval``.
    """

    name: str
    interval: float
    run: Callable[[], object]
    due: float = 0.0


class ExecutionWorker:
    """Runs started jobs through its backends; ``step()`` is one cycle, ``run()`` loops.

    Args:
        rt: settings and collaborators.
        backends: where jobs run, by backend kind (``{"local": ..., "slurm": ...}``):
            a job goes to the backend its CE names; a job whose CE names a kind this
            worker lacks is left queued for another worker.
        name: the worker's stable name (default: the host name); a worker restarted
            under the same name adopts its previous life's jobs.
        cancel_running_on_exit: stop every running job when :meth:`run` ends instead of
            leaving them to be adopted.
        periodic: tasks run at their own interval between cycles (e.g. refreshing the
            Slurm CEs' dynamic state); a task's exception is logged, never fatal.
    """

    def __init__(self, rt: Runtime, backends: Mapping[str, ExecutionBackend], name: str | None = None, *,
                 cancel_running_on_exit: bool = False, periodic: Sequence[PeriodicTask] = ()) -> None:
        if not backends:
            raise ValueError("an execution worker needs at least one backend")
        self.rt = rt
        self.backends = dict(backends)
        self.host = socket.gethostname()
        self.name = name or self.host
        self.pid = os.getpid()
        self.settings = rt.settings.execution
        self.running: dict[str, RunningJob] = {}
        #: jobs prepared ahead of a free slot and recorded Scheduled, not spawned yet (in claim order)
        self.ahead: dict[str, RunningJob] = {}
        self.detached: list[RunHandle] = []  # wrappers this process spawned but no longer follows
        #: ends of attempts (job id, end) whose work dirs are released but that the database has
        #: not taken yet: recorded at the next cycle, and never adopted meanwhile
        self.unrecorded: list[tuple[str, AttemptEnd]] = []
        #: jobs whose backend failed to attach or poll them (a defect, or a job's own hostile
        #: files): their records kept (Scheduled or Running), polled again now and then and given
        #: up after :data:`SET_ASIDE_LIMIT` (:meth:`_retry_set_aside`); a cancel of one is still
        #: sent and recorded (:meth:`_cancel_set_aside`)
        self.set_aside: dict[str, SetAside] = {}
        #: the work root (``[execution] work_dir``), where :attr:`unrecorded` is journaled
        self.work_root = Path(os.path.abspath(self.settings.work_dir))
        self._journal: Path | None = None  # this worker's ends journal, while it holds one
        self._journaled: list[tuple[str, AttemptEnd]] = []  # what it holds (not written again)
        self._synced = False  # whether that journal was synced to disk
        #: journals of gone workers whose ends this one took, with the descriptor holding each
        #: one's lock (:func:`~wmproxy.execution.ends_journal.lock`): removed once its own journal
        #: holds them (or they are recorded), never taken again meanwhile
        self._taken: dict[Path, int] = {}
        #: this process life's journal file (a random token: a restart with the same pid as
        #: pid 1 of a container never writes over its previous life's journal)
        self._life = secrets.token_hex(4)
        self.journal_path = ends_journal.journal_path(self.work_root, self.host, self.pid, self.name, self._life)
        self.cancel_running_on_exit = cancel_running_on_exit
        self._next_heartbeat = 0.0
        self._next_cancel_check = 0.0
        self._registered = False
        self.periodic = list(periodic)
        self.limits = {kind: self._limit(kind) for kind in self.backends}
        self.wakeup = Wakeup(rt.session_factory.kw.get("bind"))
        #: matchmaking CPU time per job owner, over this worker's cycles (in memory: docs/brokering.md)
        self.match_shares = OwnerShares.of(rt.settings.brokering)
        self.match_failures = MatchingFailures(log)
        self._busy_since_tidy = 0
        # No job runs as the service user, whose files these are (the worker's own user and
        # group are refused anyway; they differ from these when the worker runs as root).
        identity.refuse_identities(*service_identities(rt.settings))

    def _limit(self, kind: str) -> int:
        """Jobs of backend ``kind`` this worker follows at most: ``[slurm] max_submitted``
        for Slurm, ``[execution] max_running`` for the local backend (and any other)."""
        if kind == "slurm":
            return self.rt.settings.slurm.max_submitted
        return self.settings.max_running

    def _room(self) -> dict[str, int]:
        """Free slots per backend kind: its limit minus the jobs it runs (never below 0)."""
        counts = dict.fromkeys(self.backends, 0)
        for job in self.running.values():
            counts[job.order.backend] = counts.get(job.order.backend, 0) + 1
        return {kind: max(self.limits[kind] - counts[kind], 0) for kind in self.backends}

    def _with_room(self) -> list[str]:
        """The backend kinds below their limit."""
        return [kind for kind, free in self._room().items() if free > 0]

    # --- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Register, adopt, then loop until ``stop`` is set; then drain (or cancel)."""
        self.start()
        log.info("execution worker %s started (at most %s jobs)", self.name,
                 ", ".join(f"{n} {kind}" for kind, n in self.limits.items()))
        failures = 0
        try:
            while not stop.is_set():
                try:
                    busy = self.step()
                except (SQLAlchemyError, OSError) as exc:  # an outage: the jobs stay followed, nothing is lost
                    if isinstance(exc, OSError) and not (_storage_full(exc) or exc.errno == errno.EIO):
                        raise  # e.g. EMFILE, EACCES: the process ends, and its restart may mend it
                    failures += 1
                    pause = min(self.settings.poll_interval * 2 ** (failures - 1), DATABASE_BACKOFF_MAX)
                    where = "on the database" if isinstance(exc, SQLAlchemyError) else "on the file system"
                    log.error("execution worker %s: a cycle failed %s (%s); next cycle in %g s", self.name, where,
                              database_reason(exc) if isinstance(exc, SQLAlchemyError) else exc, pause)
                    stop.wait(pause)
                    continue
                if failures:
                    log.info("execution worker %s: cycles succeed again", self.name)
                    failures = 0
                if not busy and not stop.is_set():
                    self._wait(stop)
        except BaseException:  # a defect: the process ends (and is restarted), the kept ends first
            with contextlib.suppress(Exception):
                self._record_unrecorded()
            self._log_unrecorded("ends")
            raise
        finally:
            self.wakeup.close()
        self.stop()
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if callable(close):
                close()  # e.g. the local backend's zygotes (their wrappers keep running)

    def _wait(self, stop: threading.Event) -> None:
        """Sleep until a poll is due: ``poll_interval`` when every backend is full, its
        :data:`IDLE_POLL_FRACTION` while a job could be claimed and nothing wakes the worker
        for it; woken earlier by a queued request (PostgreSQL NOTIFY, an SQLite commit seen
        by inotify) or the exit of a wrapper this process spawned
        (:class:`~wmproxy.execution.wakeup.Wakeup`)."""
        room = bool(self._with_room())
        fraction = self.settings.poll_interval * IDLE_POLL_FRACTION
        timeout = fraction if room else self.settings.poll_interval
        if room and self.wakeup.listening:
            timeout = self.settings.poll_interval  # a queued job wakes the worker at once
        self.wakeup.watch(*self._watched())
        self.wakeup.wait(timeout, stop, gather=GATHER_ENDS, recheck=fraction if room else None)

    def _watched(self) -> tuple[list[int], list[int]]:
        """The wrapper pids whose end should wake the worker: its own children still running (at
        their exit: it reaps them), and the local wrappers it follows (forked by a zygote, or
        adopted), which were running at this cycle's reaping; a pidfd also works for a process
        that is not a child. Those of the second kind whose end is known only once their parent
        has reaped them (:meth:`LocalExecutionBackend.ends_at_reaping
        <wmproxy.execution.backends.local.LocalExecutionBackend.ends_at_reaping>`) are listed
        apart, watched for that reaping: woken at their exit, the worker would find them not
        ended yet and wake again at once, for as long as the reaping took. (A Slurm handle's pid
        is a Slurm job id.)"""
        pids: list[int] = []
        reaped: list[int] = []
        for job in self.running.values():
            if job.ended is not None:  # ended; its end is tried again at its time
                continue
            process = job.handle.process
            if process is not None:
                if process.poll() is None:
                    pids.append(process.pid)
            elif job.handle.pid is not None and job.order.backend == "local":
                at_reaping = getattr(job.backend, "ends_at_reaping", None)
                (reaped if at_reaping is not None and at_reaping(job.handle) else pids).append(job.handle.pid)
        return pids, reaped

    def start(self) -> None:
        """Register the heartbeat and adopt what is due (also called by :meth:`step`).

        Raises:
            WorkerNameInUseError: another live worker uses this name.
        """
        service.register_worker(self.rt, self.name, self.host, self.pid, _pid_alive)
        self._registered = True
        self._next_heartbeat = time.monotonic() + self._heartbeat_every()
        self.adopt()

    def stop(self) -> None:
        """Drain: leave running jobs to their wrappers (adopted after a restart), or
        cancel them when ``cancel_running_on_exit``. The jobs prepared ahead (never spawned)
        have their work dirs released and go back to the queue (should the database refuse,
        adoption requeues them). A job whose end is being retried is never cancelled: its work
        dir stays for adoption. Ends not recorded yet are tried once more, last; those the
        database still does not take are logged by job id and stay in the worker's ends journal,
        which the next worker on the host (this one restarted) takes over and records before it
        adopts their jobs."""
        try:
            for job in list(self.ahead.values()):
                try:
                    self._put_back(job, "its worker stopped before starting it")
                except SQLAlchemyError as exc:  # released already: adoption requeues it
                    log.error("job %s prepared ahead not put back (%s)", job.order.job_id, database_reason(exc))
            if self.cancel_running_on_exit and self.running:
                self._cancel_all()  # needs no database until the ends, which are kept
            self._record_unrecorded()
            if self.running:
                log.info("execution worker %s stops; %d job(s) keep running and will be adopted: %s",
                         self.name, len(self.running), ", ".join(self.running))
            elif not self.unrecorded:
                service.unregister_worker(self.rt, self.name, self.host, self.pid)
        except SQLAlchemyError as exc:
            log.error("execution worker %s stops during a database outage (%s)", self.name, database_reason(exc))
        finally:
            self._log_unrecorded("stops")
            self._detach()

    def _log_unrecorded(self, what: str) -> None:
        if self.unrecorded:
            kept = f"kept in {self._journal}" if self._journal is not None else "NOT journaled"
            log.error("execution worker %s %s with %d end(s) not recorded (%s): %s", self.name, what,
                      len(self.unrecorded), kept,
                      "; ".join(f"{job_id} {end.state.value}" for job_id, end in self.unrecorded))

    def _detach(self) -> None:
        """Stop following every job; their wrappers keep running (and are still reaped
        by :meth:`step` when they are this process's children; the local wrappers a zygote
        forked are listed too until the next step)."""
        self.detached += [job.handle for job in self.running.values()
                          if job.handle.process is not None or job.order.backend == "local"]
        self.running.clear()
        self.ahead.clear()  # Scheduled, never spawned: the worker that adopts them requeues them

    def step(self) -> bool:
        """One cycle: heartbeat, cancels, perusal; the running jobs that ended are found, the
        jobs prepared ahead spawned into the slots they free, then the ends recorded; then up
        to :data:`STARTS_PER_STEP` jobs claimed and started while a backend has room, and
        as many as short jobs ended claimed and prepared ahead (:data:`READ_AHEAD_RUNTIME`);
        returns True when a job was started (so the loop goes on at once)."""
        self._record_unrecorded()  # before the heartbeat's adoption, which must not find them
        if not self._registered:
            self.start()
        self.detached = [h for h in self.detached if h.process is not None and h.process.poll() is None]
        if time.monotonic() >= self._next_heartbeat:
            self._heartbeat()
        self._run_periodic()
        self._take_cancels()
        for job in self.running.values():
            if job.cancel_reason is not None:
                job.backend.cancel(job.handle)  # escalates once the grace has passed
        self._sample_perusal()
        ended = self._ended()
        spawned = self._launch(self._due_ahead())  # before the ends' bookkeeping: the slots are free now
        made = self._record_ends(ended)
        room = self._room()
        wanted = self._read_ahead(made)
        claim = {kind: min(room[kind], STARTS_PER_STEP) + wanted.get(kind, 0) for kind in room}
        try:  # one transaction for the cycle's claims
            orders = service.claim_starts(self.rt, self.name, claim,
                                          limit=min(sum(room.values()), STARTS_PER_STEP) + sum(wanted.values()),
                                          shares=self.match_shares)
        except WMProxyError as exc:  # e.g. an unreadable CE catalogue: the requests stay queued
            self.match_failures.failed(exc, time.monotonic())  # logged once per change, not per cycle
            orders = []
        else:
            self.match_failures.passed()
        prepared: list[RunningJob] = []
        try:
            for order in orders:
                if (ready := self._prepare(order)) is not None:
                    prepared.append(ready)
            scheduled = self._schedule(prepared)
        except BaseException:  # the cycle fails: no prepared work dir (with its proxy copy) is left behind;
            for job in prepared:  # the claimed jobs are requeued by the next heartbeat's adoption
                self._release(job.backend, job.handle)
            raise
        at_once, later = [], []
        for job in scheduled:
            if room.get(job.order.backend, 0) > 0:
                room[job.order.backend] -= 1
                at_once.append(job)
            else:
                later.append(job)
        spawned += self._launch(at_once)
        held_since = time.monotonic()
        for job in later:
            job.since = held_since
            self.ahead[job.order.job_id] = job
        if spawned:  # one transaction for the cycle's starts (a crash before it: adoption finds the wrappers)
            service.mark_running(self.rt, spawned)
        self._put_back_stale()
        busy = bool(spawned) or len(orders) > len(later)
        self._tidy(busy=busy)
        return busy

    def _read_ahead(self, ended: Sequence[tuple[RunningJob, JobOutcome]]) -> dict[str, int]:
        """Jobs to prepare ahead per backend kind: one per job of the kind that ended after
        running less than :data:`READ_AHEAD_RUNTIME` seconds, up to :data:`STARTS_PER_STEP`
        held ahead at once."""
        now = time.monotonic()
        short: dict[str, int] = {}
        for job, _outcome in ended:
            if job.since and now - job.since < READ_AHEAD_RUNTIME:
                short[job.order.backend] = short.get(job.order.backend, 0) + 1
        for job in self.ahead.values():
            short[job.order.backend] = short.get(job.order.backend, 0) - 1
        return {kind: min(n, STARTS_PER_STEP - sum(1 for j in self.ahead.values() if j.order.backend == kind))
                for kind, n in short.items() if n > 0 and kind in self.backends}

    def _due_ahead(self) -> list[RunningJob]:
        """The jobs prepared ahead that the backends have room for now, oldest first, taken
        out of :attr:`ahead` (the caller spawns them)."""
        room = self._room()
        due = []
        for job_id, job in list(self.ahead.items()):
            if room.get(job.order.backend, 0) > 0:
                room[job.order.backend] -= 1
                due.append(self.ahead.pop(job_id))
        return due

    def _put_back_stale(self) -> None:
        """Put back the jobs prepared ahead more than :data:`READ_AHEAD_HOLD` seconds ago: the
        running jobs did not end as soon as expected, and another worker may have room."""
        if not self.ahead:
            return
        cutoff = time.monotonic() - READ_AHEAD_HOLD
        for job in [job for job in self.ahead.values() if job.since < cutoff]:
            self._put_back(job, f"no slot on worker {self.name} within {READ_AHEAD_HOLD:g} s")

    def _put_back(self, job: RunningJob, reason: str) -> None:
        """A job prepared ahead goes back to the queue, never spawned: its work dir released
        first, then Waiting with a new start request (:func:`~wmproxy.services.execution.
        requeue_unstarted`)."""
        del self.ahead[job.order.job_id]
        self._release(job.backend, job.handle)
        if service.requeue_unstarted(self.rt, self.name, job.order.job_id, reason):
            log.info("job %s prepared ahead put back in the queue: %s", job.order.job_id, reason)

    def _tidy(self, *, busy: bool) -> None:
        """Have the backends remove the work dirs they set aside at release (their ``tidy``,
        if any): for :data:`TIDY_BUDGET` seconds once the cycle started no job (the worker is
        about to wait), for :data:`TIDY_BUSY_BUDGET` seconds after :data:`TIDY_EVERY` busy
        cycles in a row. The removal stays off the path from a job's end to the next start
        while the worker has anything to do, and a large work dir is removed a budget at a time."""
        self._busy_since_tidy = self._busy_since_tidy + 1 if busy else 0
        if busy and self._busy_since_tidy < TIDY_EVERY:
            return
        budget = TIDY_BUSY_BUDGET if busy else TIDY_BUDGET
        self._busy_since_tidy = 0
        for backend in self.backends.values():
            tidy = getattr(backend, "tidy", None)
            if callable(tidy):
                tidy(budget)

    def _take_cancels(self) -> None:
        """Send the cancels queued for running jobs. The queue is looked at when the worker
        was woken by a queue notification (PostgreSQL), else at most every
        :data:`IDLE_POLL_FRACTION` × ``poll_interval`` seconds (as SQLite polls for starts), not
        at every cycle: one transaction per cycle was one per job when wrappers end one by one.

        A request stays pending until the job's end is recorded (:func:`~wmproxy.services.
        execution.cancel_requests`): one this worker acts on already (``cancel_reason`` set) is
        skipped; a job adopted from a worker that died while stopping it is stopped again."""
        now = time.monotonic()
        notified, self.wakeup.notified = self.wakeup.notified, False
        if not (self.running or self.ahead or self.set_aside) or (now < self._next_cancel_check and not notified):
            return
        self._next_cancel_check = now + self.settings.poll_interval * IDLE_POLL_FRACTION
        for job_id in service.cancel_requests(self.rt, [*self.running, *self.ahead, *self.set_aside]):
            if (aside := self.set_aside.pop(job_id, None)) is not None:
                self._cancel_set_aside(job_id, aside)
                continue
            ahead = self.ahead.pop(job_id, None)
            if ahead is None:
                self._cancel(job_id, "")  # once per job: its cancel_reason is set
                continue
            # recorded with the cycle's ends; journaled before the release (the cancel was taken)
            durable = bool(self.unrecorded)
            self.unrecorded.append((job_id, AttemptEnd(JobState.CANCELLED, attempt=ahead.order.attempt)))
            self._keep_journal(durable=durable)
            self._release(ahead.backend, ahead.handle)  # never spawned: nothing to stop
            log.info("job %s cancelled before its wrapper was spawned", job_id)

    def _cancel_set_aside(self, job_id: str, aside: SetAside) -> None:
        """A cancel of a job set aside: sent to its wrapper or Slurm job when the worker still
        has its handle (best effort: the backend failed on it before), and recorded Cancelled
        with the cycle's ends; its work dir is left to the purger (releasing it is what may
        fail again)."""
        self._end_set_aside(job_id, aside, AttemptEnd(JobState.CANCELLED, attempt=aside.attempt))
        log.info("job %s (set aside: %s) cancelled", job_id, log_text(aside.why))

    def _end_set_aside(self, job_id: str, aside: SetAside, end: AttemptEnd) -> None:
        """``end`` recorded with the cycle's ends for a job set aside, after its cancel was sent
        when the worker has its handle."""
        if aside.backend is not None and aside.handle is not None:
            try:
                aside.backend.cancel(aside.handle)
            except Exception as exc:  # noqa: BLE001 - its backend failed on it before: it may again
                log.warning("job %s (set aside): the cancel could not be sent: %s", job_id, log_text(exc))
        durable = bool(self.unrecorded)
        self.unrecorded.append((job_id, end))
        self._keep_journal(durable=durable)

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for task in self.periodic:
            if now < task.due:
                continue
            task.due = now + task.interval
            try:
                task.run()
            except Exception as exc:  # noqa: BLE001 - a failed refresh must not stop the worker
                log.warning("%s failed: %s", task.name, exc)

    def _heartbeat_every(self) -> float:
        return max(self.settings.heartbeat_lease / 4, 0.05)

    def _heartbeat(self) -> None:
        self._next_heartbeat = time.monotonic() + self._heartbeat_every()
        if not service.heartbeat(self.rt, self.name, self.host, self.pid):
            log.error("execution worker %s was taken for dead; its %d job(s) now belong to another worker",
                      self.name, len(self.running))
            self._detach()
            self.start()  # a new life; refused if another live process took the name meanwhile
            return
        self.adopt()

    # --- adoption ------------------------------------------------------------------

    def adopt(self) -> list[str]:
        """Adopt the jobs of dead workers on this host and of this name's previous life.

        Returns:
            The ids of the jobs now followed or requeued.
        """
        adopted: list[str] = []
        journaled = self._take_journals()
        if journaled is None:
            log.error("execution worker %s puts adoption off to its next heartbeat: the ends journals could "
                      "not be read", self.name)
            return adopted
        known = {*self.running, *self.ahead, *(job_id for job_id, _end in self.unrecorded), *journaled,
                 *self.set_aside}
        for order in service.adopt_jobs(self.rt, self.name, self.host, known, worker_alive, self.backends.keys()):
            try:
                account = _account(order.local_account)
            except WMProxyError as exc:
                service.set_state(self.rt, order.job_id, JobState.ABORTED, reason=f"cannot adopt the job: {exc}")
                continue
            backend = self.backends.get(order.backend)
            outcome = None
            try:
                handle = backend.attach(order.backend_ref or "", account) if backend is not None else None
                if backend is not None and handle is not None and handle.pid is None and not backend.started(handle):
                    outcome = backend.poll(handle)
            except (OSError, SQLAlchemyError):
                raise  # an outage: the cycle's (run's) handling
            except Exception as exc:  # noqa: BLE001 - one job's defect must not end the worker
                self._set_aside(order.job_id, "adopting", exc, SetAside("", order.attempt))
                continue
            if backend is None or handle is None:
                log.warning("job %s: backend reference %r is not followable here", order.job_id, order.backend_ref)
                continue
            adopted.append(order.job_id)
            if outcome is not None and not outcome.recorded and not outcome.payload_started:
                # Scheduled, wrapper never spawned (or died before the payload): run it again once.
                self._release(backend, handle)
                service.requeue_unstarted(self.rt, self.name, order.job_id, "its wrapper was never started")
                log.info("job %s requeued: its worker stopped before starting it", order.job_id)
                continue
            self.running[order.job_id] = RunningJob(order, handle, backend, unsubmitted=handle.pid is None,
                                                    recorded_ref=order.backend_ref)
            log.info("job %s adopted (%s)", order.job_id, handle.ref)
        if adopted:  # a cancel the dead worker was carrying out is sent again before any end is read
            self._next_cancel_check = 0.0
        return adopted

    # --- starting ------------------------------------------------------------------

    def _prepare(self, order: StartOrder) -> RunningJob | None:
        """Prepare the job's work dir through its backend; None when it cannot start (then
        it is requeued or has ended Aborted)."""
        job_id = order.job_id
        backend = self.backends.get(order.backend)
        if backend is None:  # defensive: claim_next_start hands out only the kinds it is given
            log.warning("job %s: CE %s needs the %s backend, which this worker lacks: put back in the queue",
                        job_id, order.ce_id, order.backend)
            service.requeue_unstarted(self.rt, self.name, job_id, f"no {order.backend} backend on worker {self.name}")
            return None
        if order.local_account is None and self.rt.settings.mapping.mode != "none":
            # Registered while [mapping] mode was none: run now, it would run as the service's own
            # user, which can read the store key and the database.
            reason = (f"the job has no mapped account ([mapping] mode is {self.rt.settings.mapping.mode}; "
                      "it was registered while jobs were not mapped): not run as the service's user")
            log.warning("job %s: %s", job_id, reason)
            end_attempt(self.rt, job_id, AttemptEnd(JobState.ABORTED, reason=reason, retryable=False))
            return None
        if (reserved := reserved_input_file(order.isb_files)) is not None:
            # Registration refuses such entries now; a job registered before is never run with
            # its file and the proxy written over each other, nor retried.
            log.warning("job %s: %s", job_id, reserved)
            end_attempt(self.rt, job_id, AttemptEnd(JobState.ABORTED, reason=reserved, retryable=False))
            return None
        try:
            launch = JobLaunch(
                job_id=job_id,
                account=self._job_account(order),
                spec=self._spec(order),
                input_dir=order.area.input_dir,
                isb_files=order.isb_files,
                proxy_pem=order.proxy_pem,
                ce_id=order.ce_id,
                queue=order.queue,
                wall_time=order.wall_time,
                memory_mb=order.memory_mb,
                attempt=order.attempt,
            )
            handle = backend.prepare(launch)
        except AccountRefusedError as exc:
            # The mapping refuses the same at registration: the database was written by someone
            # else (a compromised service, a job reaching the database). Never run, never retried.
            log.error("job %s refused, not run (its stored account is not one jobs may run as): %s", job_id,
                      log_text(exc))
            end_attempt(self.rt, job_id, AttemptEnd(JobState.ABORTED, reason=str(exc), retryable=False))
            return None
        except WMProxyError as exc:
            log.info("job %s could not be prepared (shallow failure): %s", job_id, exc)
            end_attempt(self.rt, job_id, AttemptEnd(JobState.ABORTED, reason=str(exc)))
            return None
        return RunningJob(order, handle, backend)

    def _job_account(self, order: StartOrder) -> Account | None:
        """The account ``order`` runs as: its stored one (``jobs.local_account``), if the current
        mapping policy can give it to anyone (:func:`~wmproxy.services.mapping.unmappable_account`)
        and it is not one the identity switch refuses (root, the worker's or the service's user or
        group: :func:`~wmproxy.execution.identity.check_account`); None without mapping.

        Raises:
            AccountRefusedError: it must not run as that account (why, naming it).
            IdentityError: there is no such account.
        """
        if order.local_account is None:
            return None
        account = _account(order.local_account)
        why = unmappable_account(self.rt.settings.mapping, order.local_account)
        if why is not None:
            raise AccountRefusedError(f"Refusing to run a job as {order.local_account}: {why}")
        return account

    def _schedule(self, prepared: Sequence[RunningJob]) -> list[RunningJob]:
        """Record the prepared jobs Scheduled with their backend references (one
        transaction, before any spawn, so a crash never loses a running wrapper); returns
        those recorded (a job that ended meanwhile, cancelled, has its work dir released)."""
        if not prepared:
            return []
        scheduled = service.mark_scheduled(self.rt, [(job.order.job_id, job.handle.ref) for job in prepared])
        for job in prepared:
            if job.order.job_id not in scheduled:  # ended meanwhile (cancelled)
                self._release(job.backend, job.handle)
        return [job for job in prepared if job.order.job_id in scheduled]

    def _launch(self, ready: Sequence[RunningJob]) -> list[tuple[str, str]]:
        """Spawn the wrappers of Scheduled jobs; returns the ``(job id, backend reference)`` of
        those whose wrapper runs (the caller records them Running); a job whose wrapper cannot
        start is a shallow failure."""
        if not ready:
            return []
        for backend in {id(job.backend): job.backend for job in ready}.values():
            if isinstance(backend, BatchSpawning):  # e.g. one Slurm job array for the cycle's jobs
                backend.spawn_batch([job.handle for job in ready if job.backend is backend])
        spawned: list[tuple[str, str]] = []
        for job in ready:
            job_id = job.order.job_id
            try:
                job.backend.spawn(job.handle)
            except BackendError as exc:
                log.info("job %s could not be started (shallow failure): %s", job_id, exc)
                self._release(job.backend, job.handle)
                end_attempt(self.rt, job_id, AttemptEnd(JobState.ABORTED, reason=str(exc)))
                continue
            job.since = time.monotonic()
            job.recorded_ref = job.handle.ref  # the caller records it (mark_running)
            self.running[job_id] = job
            log.info("job %s running (%s)", job_id, job.handle.ref)
            spawned.append((job_id, job.handle.ref))
        return spawned

    def _spec(self, order: StartOrder) -> JobSpec:
        """The wrapper's spec of ``order`` (``Environment`` and ``Arguments``: :func:`shell_fields`)."""
        desc = order.description
        return JobSpec(
            job_id=order.job_id,
            executable=desc.executable,
            **shell_fields(desc.environment, desc.arguments),
            stdin=desc.std_input or None,
            stdout=desc.std_output or None,
            stderr=desc.std_error or None,
            proxy=PROXY_NAME if order.proxy_pem else None,
            prologue=order.prologue,
            prologue_arguments=_split(order.prologue_arguments, "PrologueArguments"),
            epilogue=order.epilogue,
            epilogue_arguments=_split(order.epilogue_arguments, "EpilogueArguments"),
            kill_grace=self.settings.kill_grace,
            max_processes=self.settings.max_job_processes,
            base_environment=inspection.agent_environment(self.rt.settings, order.job_id, attempt=order.attempt),
        )

    # --- ending --------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect the jobs whose attempt ended (:meth:`_ended`, :meth:`_record_ends`)."""
        self._record_ends(self._ended())

    def _ended(self) -> list[tuple[RunningJob, JobOutcome]]:
        """The followed jobs whose attempt ended, with their outcomes, no longer followed
        (their slots are free; a job whose end is tried again keeps its slot until its end is
        made); the caller records them (:meth:`_record_ends`)."""
        ended: list[tuple[RunningJob, JobOutcome]] = []
        now = time.monotonic()
        for job_id, job in list(self.running.items()):
            if job.ended is not None:  # its end could not be made: tried again when due (or cancelled),
                if now >= job.retry_end_at or job.cancel_reason is not None:  # its slot held meanwhile
                    ended.append((job, job.ended))
                continue
            try:
                outcome = job.backend.poll(job.handle)
            except (OSError, SQLAlchemyError):
                raise  # an outage: the cycle's (run's) handling
            except Exception as exc:  # noqa: BLE001 - one job's defect must not end the worker
                del self.running[job_id]
                self._set_aside(job_id, "polling", exc, SetAside("", job.order.attempt, job.backend, job.handle, job))
                continue
            if outcome is not None:
                del self.running[job_id]
                ended.append((job, outcome))
        if self.set_aside:
            ended += self._retry_set_aside(now)
        self._record_references()
        return ended

    def _retry_set_aside(self, now: float) -> list[tuple[RunningJob, JobOutcome]]:
        """The jobs set aside after a poll raised, polled again every :data:`SET_ASIDE_RETRY`
        seconds: one whose backend answers is followed again (its outcome returned when it
        ended meanwhile). A job set aside for :data:`SET_ASIDE_LIMIT` seconds is given up
        (:meth:`_give_up`), one whose attach failed at adoption included."""
        ended: list[tuple[RunningJob, JobOutcome]] = []
        for job_id, aside in list(self.set_aside.items()):
            if now - aside.since >= SET_ASIDE_LIMIT:
                del self.set_aside[job_id]
                self._give_up(job_id, aside)
                continue
            if now < aside.next_try:
                continue
            aside.next_try = now + SET_ASIDE_RETRY
            job = aside.job
            if job is None:  # its attach failed at adoption: nothing to poll (the next life attaches again)
                continue
            try:
                outcome = job.backend.poll(job.handle)
            except (OSError, SQLAlchemyError):
                raise  # an outage: the cycle's (run's) handling
            except Exception as exc:  # noqa: BLE001 - still failing: tried again later, given up in the end
                log.warning("job %s (set aside) still cannot be polled: %s", job_id,
                            log_text(f"{exc.__class__.__name__}: {exc}"))
                continue
            del self.set_aside[job_id]
            log.info("job %s (set aside: %s) is followed again: its backend answered", job_id, log_text(aside.why))
            if outcome is None:
                self.running[job_id] = job
            else:
                ended.append((job, outcome))
        return ended

    def _give_up(self, job_id: str, aside: SetAside) -> None:
        """A job its backend could not follow for :data:`SET_ASIDE_LIMIT` seconds: its cancel
        sent and the job recorded Aborted, not retried (its payload may still run where the
        cancel did not reach it)."""
        reason = (f"the worker could not follow the job for {SET_ASIDE_LIMIT:.0f} s ({aside.why}): cancelled "
                  "and not retried")
        self._end_set_aside(job_id, aside, AttemptEnd(JobState.ABORTED, reason=reason[:500], payload_started=True,
                                                      retryable=False, attempt=aside.attempt))
        log.error("job %s given up: %s", job_id, log_text(reason))

    def _record_references(self) -> None:
        """Record in the database the backend references the backends resolved since they were
        recorded (a Slurm job id found after its sbatch lost its answer), so that a worker
        adopting the job follows that Slurm job, not one looked for again by name and by the
        files of the job's work dir; tried again at the next cycle when the database fails."""
        changed = [(job_id, job.recorded_ref, job.handle.ref) for job_id, job in self.running.items()
                   if job.recorded_ref is not None and job.handle.ref != job.recorded_ref and job.ended is None]
        if not changed:
            return
        try:
            service.record_references(self.rt, changed)
        except SQLAlchemyError as exc:
            log.warning("the backend references of %d job(s) are not recorded yet: %s", len(changed),
                        database_reason(exc))
            return
        for job_id, _old, new in changed:
            self.running[job_id].recorded_ref = new

    def _set_aside(self, job_id: str, doing: str, exc: Exception, aside: SetAside) -> None:
        """Follow the job no more as usual after its backend failed ``doing`` it: its record
        stays as it is (Scheduled or Running, held by this worker); one whose poll failed is
        polled again every :data:`SET_ASIDE_RETRY` seconds, and any is given up after
        :data:`SET_ASIDE_LIMIT` (:meth:`_retry_set_aside`); a cancel of it is still sent and
        recorded; the next life of the worker attaches it again."""
        why = f"{doing} it failed: {exc.__class__.__name__}: {exc}"
        aside.why = why
        aside.since = time.monotonic()
        aside.next_try = aside.since + SET_ASIDE_RETRY
        self.set_aside[job_id] = aside
        log.error("job %s set aside (its record kept; polled again every %.0f s, given up after %.0f s): %s",
                  job_id, SET_ASIDE_RETRY, SET_ASIDE_LIMIT, log_text(why), exc_info=exc)

    def _record_ends(self, ended: Sequence[tuple[RunningJob, JobOutcome]]) -> list[tuple[RunningJob, JobOutcome]]:
        """Each attempt's end made (a Done job's outputs collected: :meth:`_attempt_end`) and its
        work dir released, then every end recorded in one transaction
        (:func:`~wmproxy.services.retries.end_attempts`). A job whose end cannot be made keeps
        its work dir and is followed again (:meth:`_end_later`); ends the database does not
        take wait in :attr:`unrecorded` (:meth:`_record_unrecorded`). Returns the jobs whose
        end was made."""
        ended = [(job, outcome) for job, outcome in ended if not self._requeued(job, outcome)]
        made: list[tuple[RunningJob, JobOutcome, AttemptEnd]] = []
        # Output bytes collected and not counted yet (the owners' counters grow when the ends are
        # recorded): each budget leaves them out, so jobs of one owner ending together share it.
        pending = {job_id: end.output_bytes for job_id, end in self.unrecorded if end.output_bytes}
        for job, outcome in ended:
            try:
                end = self._attempt_end(job, outcome, pending)
            except Exception as exc:  # noqa: BLE001 - tried again later, the outputs kept in the work dir
                given_up = self._end_later(job, outcome, exc)
                if given_up is None:
                    continue
                end = given_up
            made.append((job, outcome, end))
            if end.output_bytes:
                pending[job.order.job_id] = end.output_bytes
        if made:  # in the journal before any work dir (its status.json) is gone: a SIGKILL from the
            # releases to the commit below leaves the ends there, not a Running job without a work dir
            self._keep_journal([*self.unrecorded, *((job.order.job_id, end) for job, _outcome, end in made)],
                               durable=bool(self.unrecorded))  # refused or taken ends: kept synced
        for job, _outcome, end in made:
            self.running.pop(job.order.job_id, None)
            self._release(job.backend, job.handle)  # before the end is recorded: a resubmission
            self.unrecorded.append((job.order.job_id, end))  # must not find the old work dir
        self._record_unrecorded()
        return [(job, outcome) for job, outcome, _end in made]

    def _requeued(self, job: RunningJob, outcome: JobOutcome) -> bool:
        """Requeue (as adoption does) a job adopted without backend id that ended without its
        wrapper ever having run: the dead worker never spawned it (a Slurm job sbatch never
        created, known only once ``submit_settle`` has passed). Its work dir is released first,
        then it goes back to Waiting (:func:`~wmproxy.services.execution.requeue_unstarted`).
        False for any other end, and for a job no longer Scheduled (Running: the dead worker's
        sbatch lost its answer, a shallow failure as for this worker's own), which ends as usual."""
        if not (job.unsubmitted and job.handle.pid is None and job.cancel_reason is None and job.ended is None
                and not outcome.recorded and not outcome.payload_started):
            return False
        job_id = job.order.job_id
        self._release(job.backend, job.handle)
        try:
            requeued = service.requeue_unstarted(self.rt, self.name, job_id, "its wrapper was never started")
        except SQLAlchemyError as exc:  # followed again: its work dir is gone, so it ends so at the next cycle
            log.error("job %s, never started, not requeued yet: %s", job_id, database_reason(exc))
            self.running[job_id] = job
            return True
        if requeued:
            log.info("job %s requeued: its worker stopped before starting it", job_id)
        return requeued

    def _end_later(self, job: RunningJob, outcome: JobOutcome, exc: Exception) -> AttemptEnd | None:
        """Follow again a job whose end could not be made: tried after :data:`END_RETRY_FIRST`
        seconds, doubled per failure up to :data:`END_RETRY_MAX` (a cancel at once). After
        :data:`END_TRIES` failures that are not an outage, the end to record instead (Aborted,
        not retried: the payload may have run)."""
        job.end_failures += 1
        outage = isinstance(exc, SQLAlchemyError) or _storage_full(exc)
        job.end_defects += 0 if outage else 1
        if isinstance(exc, SQLAlchemyError):
            why = f"the database failed ({database_reason(exc)})"
        elif isinstance(exc, WMProxyError | OSError):
            why = str(exc)
        else:  # a defect: its traceback for the log
            log.error("job %s: collecting the end of its attempt failed", job.order.job_id, exc_info=exc)
            why = f"{exc.__class__.__name__}: {exc}"
        if job.end_defects >= END_TRIES:
            log.error("job %s: its end could not be collected in %d tries (%s); it is aborted", job.order.job_id,
                      job.end_failures, log_text(why))
            return AttemptEnd(JobState.ABORTED, reason=f"the worker could not collect the job's end: {xml_text(why)}",
                              payload_started=outcome.payload_started, retryable=False, attempt=job.order.attempt,
                              output_bytes=self._output_left(job))
        job.ended = outcome
        delay = end_retry_delay(job.end_failures)
        job.retry_end_at = time.monotonic() + delay
        self.running[job.order.job_id] = job
        log.error("job %s: its end is not collected yet (%s); its work dir is kept, next try in %g s (try %d)",
                  job.order.job_id, log_text(why), delay, job.end_failures + 1)
        return None

    def _record_unrecorded(self) -> bool:
        """Record the ends in :attr:`unrecorded` in one transaction; those the database does
        not take stay there (logged). Returns True when none is left."""
        if not self.unrecorded:
            return True
        ends, self.unrecorded = self.unrecorded, []
        try:  # journaled before the one-by-one records (each up to the busy timeout) should the batch fail
            states = dict(zip((job_id for job_id, _end in ends), end_attempts(
                self.rt, ends, before_one_by_one=lambda: self._keep_journal(ends)), strict=True))
        except EndsNotRecordedError as exc:
            states = exc.states
            failed = set(exc.failed)
            self.unrecorded = [(job_id, end) for job_id, end in ends if job_id in failed]
            log.error("%d ended attempt(s) not recorded, kept for the next cycle: %s",
                      len(self.unrecorded), database_reason(exc.cause))
        except SQLAlchemyError as exc:
            self.unrecorded = ends + self.unrecorded
            log.error("%d ended attempt(s) not recorded, kept for the next cycle: %s", len(ends), database_reason(exc))
            return False
        except BaseException:
            self.unrecorded = ends + self.unrecorded
            raise
        finally:
            self._keep_journal()
        for job_id, end in ends:
            if job_id in states:
                state = states[job_id]
                log.info("job %s: attempt ended %s (%s), now %s", job_id, end.state.value,  # reason: the job's
                         log_text(end.reason) if end.exit_code is None else f"exit code {end.exit_code}",
                         state.value if state is not None else "already ended")
        return not self.unrecorded

    def _keep_journal(self, ends: Sequence[tuple[str, AttemptEnd]] | None = None, *, durable: bool = True) -> bool:
        """Write ``ends`` (default :attr:`unrecorded`) to this worker's ends journal
        (:mod:`~wmproxy.execution.ends_journal`), or remove the journal once nothing is left
        (no file operation while there is neither); the journals taken from gone workers are
        removed once this one holds their ends. Returns False when the journal could not be
        written (logged: the ends are then kept in memory only).

        Args:
            durable: synced to disk (ends the database refused, which may be held for long);
                False for a cycle's ends before their commit: the journal then outlives this
                process (SIGKILL), not a crash of the host, which also loses the unsynced
                status files those ends were read from (read as deep failures after it).

        Raises:
            nothing: a failure to remove a file is logged (it is removed at the next call).
        """
        ends = list(self.unrecorded if ends is None else ends)
        try:  # an outage's cycles write the same ends once (made durable once)
            if ends and (self._journal is None or ends != self._journaled or (durable and not self._synced)):
                self._journal = ends_journal.save(self.work_root, self.name, self.host, self.pid, ends,
                                                  durable=durable, life=self._life)
                self._journaled, self._synced = ends, durable
            elif not ends and self._journal is not None:
                ends_journal.remove(self._journal)
                self._journal, self._journaled, self._synced = None, [], False
        except OSError as exc:
            if durable:
                log.error("execution worker %s: its ends journal could not be written (%s); %d end(s) kept in memory"
                          " only", self.name, exc, len(ends))
            else:  # the cycle's commit follows at once: only a kill before it would lose them
                log.warning("execution worker %s: its ends journal could not be written before the commit (%s)",
                            self.name, exc)
            return False
        for path in sorted(self._taken):
            try:
                ends_journal.remove(path)
            except OSError as exc:
                log.error("ends journal %s taken over but not removed: %s", path, exc)
                continue
            os.close(self._taken.pop(path))  # its lock, held until the file is gone
        return True

    def _take_journals(self) -> set[str] | None:
        """Take over the ends journals on this host of workers whose process is gone (this
        name's previous life included): their ends join :attr:`unrecorded` and are recorded at
        the next cycle; their files are removed once this worker's own journal holds them.

        Returns:
            The jobs with an end in any journal on this host (live workers' too): adoption
            must leave them alone, whoever records them; None when the journals could not be
            read (adoption waits for the next heartbeat).
        """
        journaled: set[str] = set()
        have = {job_id for job_id, _end in self.unrecorded}
        taken = False
        found = ends_journal.journals(self.work_root, self.host)
        if found is None:  # unreadable, or kept changing: which jobs the journals hold is not known
            return None
        for journal in found:
            ids = [job_id for job_id, _end in journal.ends]
            # This life's own journal, and any other process's that lives, are not taken; another
            # file with this pid is a previous life's (one file per life), whatever its time says.
            if journal.path == self.journal_path or journal.path in self._taken or (
                    journal.pid != self.pid and worker_alive(journal.pid, journal.written_at)):
                journaled.update(ids)
                continue
            fd = ends_journal.lock(journal.path)
            if fd is None:  # another worker is taking it over (or has)
                journaled.update(ids)
                continue
            try:
                new, rest = self._without_work_dirs(
                    [(job_id, end) for job_id, end in journal.ends if job_id not in have], journal.worker)
            except BaseException:
                os.close(fd)
                raise
            if not new and rest:  # no work dir it left can be released here (yet): taken at a later heartbeat
                os.close(fd)
                journaled.update(ids)
                continue
            removable = True  # the journal, once this worker's own holds the ends taken here
            if rest:  # the rest, for the workers that hold those jobs or have their backend
                try:
                    ends_journal.save(self.work_root, journal.worker, journal.host, journal.pid, rest,
                                      life=secrets.token_hex(4), written_at=journal.written_at)
                except OSError as exc:  # the journal stays whole (its ends taken here recorded twice: harmless)
                    log.error("execution worker %s cannot split the ends journal of worker %s (it stays whole): %s",
                              self.name, journal.worker, exc)
                    removable = False
            journaled.update(job_id for job_id, _end in [*new, *rest])  # the rest: in a journal still
            have.update(job_id for job_id, _end in new)
            self.unrecorded += new
            if removable:
                self._taken[journal.path] = fd
                taken = True
            else:
                os.close(fd)
            log.warning("execution worker %s takes over %d end(s) that worker %s (pid %d) could not record: %s",
                        self.name, len(new), journal.worker, journal.pid, ", ".join(job_id for job_id, _end in new))
        if taken:
            self._keep_journal()  # theirs are removed only once this worker's journal holds their ends
        return journaled

    def _without_work_dirs(self, ends: list[tuple[str, AttemptEnd]], writer: str
                           ) -> tuple[list[tuple[str, AttemptEnd]], list[tuple[str, AttemptEnd]]]:
        """(The ends of a gone worker's journal, taken under its lock, that this worker records,
        with no work dir of theirs left; the ends it cannot take over, which stay journaled
        under the writer's name for another worker or a later heartbeat.)

        A work dir still under a job's name (both backends name it after the job id in the one
        work root) means the writer was killed before or while it released it (its status may
        be half gone). If the job is still on the journaled attempt, the dir is that attempt's:
        released now as the writer would have (its backend's ``release``), before the end is
        recorded (a resubmission must not find it), and the journaled end is the one recorded
        (it may say what the dir cannot: a cancel, the outputs collected). This worker does so
        for a job held by the writer or by itself (adopted meanwhile) and followed by no run
        here; the end of a job another worker holds is left to it, as is one whose backend this
        worker lacks (a dead worker's jobs go to heirs by backend) or whose wrapper still runs.
        A dir under that name while the job is on a later attempt (or ended) is that attempt's:
        left alone, and the end dropped.

        Raises:
            SQLAlchemyError: the database failed (nothing is taken then).
        """
        left = [job_id for job_id, _end in ends if os.path.lexists(self.work_root / to_filename(job_id))]
        if not left:
            return ends, []
        held = service.attempts_in_flight(self.rt, left)
        kept: list[tuple[str, AttemptEnd]] = []
        rest: list[tuple[str, AttemptEnd]] = []
        for job_id, end in ends:
            if job_id not in left:
                kept.append((job_id, end))
                continue
            info = held.get(job_id)
            if info is None or (end.attempt is not None and info.attempt != end.attempt):
                log.warning("job %s: a journaled end of worker %s dropped: its work dir is a later attempt's",
                            job_id, writer)
                continue
            if info.worker not in (writer, self.name) or job_id in self.running or job_id in self.ahead:
                log.info("job %s: a journaled end of worker %s is left to worker %s, which holds the job",
                         job_id, writer, info.worker)
                rest.append((job_id, end))
                continue
            backend = self.backends.get(info.backend)
            try:
                handle = backend.attach(info.backend_ref or "", _account(info.local_account)) if backend else None
                runs = backend is None or handle is None or backend.poll(handle) is None
            except (OSError, SQLAlchemyError):
                raise  # an outage: the caller's handling
            except Exception as exc:  # a job's defect (or its hostile files) must not end the worker
                log.error("job %s: the work dir worker %s left cannot be followed here: %s", job_id, writer,
                          log_text(exc), exc_info=not isinstance(exc, WMProxyError))
                rest.append((job_id, end))
                continue
            if runs or backend is None or handle is None:
                log.error("job %s: the work dir worker %s left cannot be released here (no %s backend, or its "
                          "wrapper runs)", job_id, writer, info.backend)
                rest.append((job_id, end))
                continue
            self._release(backend, handle)
            log.warning("job %s: the work dir worker %s left of its ended attempt is released", job_id, writer)
            kept.append((job_id, end))
        return kept, rest

    def _attempt_end(self, job: RunningJob, outcome: JobOutcome,
                     pending: Mapping[str, int] | None = None) -> AttemptEnd:
        """How the attempt ended (with its attempt number); a Done job's outputs are collected
        here (from its work dir), within a budget that leaves out ``pending``, the output bytes
        (job id → bytes) this worker collected and has not recorded yet
        (:func:`~wmproxy.services.quota.output_budget`).

        Raises:
            SandboxError: the sandbox's file system is full (or the owner's quota there): the
                outputs stay in the work dir for a later try.
            SQLAlchemyError: the database failed (reading the perusal files).
        """
        return dataclasses.replace(self._end_of(job, outcome, pending), attempt=job.order.attempt)

    def _end_of(self, job: RunningJob, outcome: JobOutcome, pending: Mapping[str, int] | None) -> AttemptEnd:
        job_id = job.order.job_id
        if job.cancel_reason == "":
            return AttemptEnd(JobState.CANCELLED, output_bytes=self._output_left(job))
        if job.cancel_reason is not None:
            return AttemptEnd(JobState.ABORTED, reason=job.cancel_reason, retryable=False,
                              output_bytes=self._output_left(job))
        if outcome.state == JobState.CANCELLED:
            return AttemptEnd(JobState.ABORTED, reason="the job wrapper was stopped by a signal outside wmproxy",
                              payload_started=outcome.payload_started)
        if outcome.state != JobState.DONE:
            return AttemptEnd(JobState.ABORTED, reason=outcome.reason, payload_started=outcome.payload_started)
        if job.order.perusal_interval is not None:  # the last chunks; a failure other than an outage is logged
            files = perusal_lists(self.rt, [job_id]).get(job_id, [])
            try:
                self._sample(job, files)
            except (OSError, WMProxyError) as exc:
                if _storage_full(exc):
                    raise
                log.warning("job %s: the last perusal chunks were not kept: %s", job_id, log_text(exc))
        reasons = [outcome.reason] if outcome.reason else []
        if job.perusal_held is not None:
            reasons.append(f"file perusal stopped: {job.perusal_held}")
        output_bytes = 0
        if not job.order.description.output_sandbox:  # nothing to collect: nothing was ever collected either
            return AttemptEnd(JobState.DONE, exit_code=outcome.exit_code, reason="; ".join(reasons) or None,
                              payload_started=True)
        # At most the job's budget is copied (a sparse 10 TB file is not 10 TB of zeros); during a
        # database outage without the owner's quota (the end is kept for the database meanwhile).
        budget = quota.output_budget(self.rt, job_id, job.order.description.environment, pending)
        try:
            collected = self.rt.storage.collect_output_files(
                job.order.area.job_id, job.handle.work_dir, job.order.description.output_sandbox,
                None if budget is None else budget[0],
                max_files=self.rt.settings.limits.max_output_sandbox_files or OUTPUT_FILES_CEILING,
                max_name_bytes=self.rt.settings.limits.max_sandbox_name_bytes,
                targets=job.order.description.output_names)
            output_bytes = self.rt.storage.output_bytes(job.order.area.job_id)  # counted with the end
            reasons += [f"output sandbox file {name} not collected: {why}"
                        for name, why in collected.missing[:REASON_FILES_SHOWN]]
            if len(collected.missing) > REASON_FILES_SHOWN:
                reasons.append(f"and {len(collected.missing) - REASON_FILES_SHOWN} more output sandbox files "
                               "not collected")
            if collected.truncated and budget is not None:
                cut = ", ".join(f"{name} (kept {kept} of {size} bytes)"
                                for name, kept, size in collected.truncated[:REASON_FILES_SHOWN])
                if len(collected.truncated) > REASON_FILES_SHOWN:
                    cut += f" and {len(collected.truncated) - REASON_FILES_SHOWN} more files"
                log.warning("job %s: output sandbox truncated at %d bytes (%s): %s", job_id, budget[0], budget[1],
                            log_text(cut))  # names escaped already (shown_name); the log escapes what it logs
                reasons.append(f"output sandbox truncated at {budget[0]} bytes ({budget[1]}): {cut}")
        except WMProxyError as exc:
            if _storage_full(exc):
                raise
            reasons.append(f"output sandbox not collected: {exc}")
        return AttemptEnd(JobState.DONE, exit_code=outcome.exit_code, reason="; ".join(reasons) or None,
                          payload_started=True, output_bytes=output_bytes)

    def _output_left(self, job: RunningJob) -> int:
        """Bytes an end that collects nothing (a cancel, an end given up) finds in the job's
        ``output/``: what a collection that failed part-way (the sandbox's file system full)
        had copied, counted with the end so that the owner's usage stays what the areas hold
        (0 when nothing was copied; a failure to look counts 0, as a recount would correct)."""
        try:
            return self.rt.storage.output_bytes(job.order.area.job_id)
        except OSError as exc:
            log.warning("job %s: the output it leaves could not be counted: %s", job.order.job_id, exc)
            return 0

    def _release(self, backend: ExecutionBackend, handle: RunHandle) -> None:
        """Release the work dir through its backend; a failure is logged and leaves it for a later
        try (the purger's, or the next worker life's), never ends the worker."""
        try:
            backend.release(handle)
        except WMProxyError as exc:  # BackendError, or IdentityError from the work root's checks
            log.warning("could not remove the work directory %s: %s", handle.work_dir, exc)
        except Exception:  # whatever a job's tree does to the removal, the worker goes on
            log.exception("could not remove the work directory %s", handle.work_dir)

    # --- cancelling ----------------------------------------------------------------

    def _cancel(self, job_id: str, reason: str) -> None:
        job = self.running.get(job_id)
        if job is None or job.cancel_reason is not None:
            return
        job.cancel_reason = reason
        job.backend.cancel(job.handle)
        log.info("job %s: cancel sent to its wrapper", job_id)

    def _cancel_all(self) -> None:
        """Cancel every running job and wait for their wrappers (``--cancel-running-on-exit``)."""
        live = [job_id for job_id, job in self.running.items() if job.ended is None]  # an ended one keeps its end
        for job_id in live:
            self._cancel(job_id, "cancelled by the administrator at worker shutdown")
        deadline = time.monotonic() + self.settings.kill_grace + 60.0
        while any(job_id in self.running for job_id in live) and time.monotonic() < deadline:
            for job_id in live:
                if (job := self.running.get(job_id)) is not None:
                    job.backend.cancel(job.handle)
            self._reap()
            time.sleep(0.1)

    # --- perusal -------------------------------------------------------------------

    def _sample_perusal(self) -> None:
        """Copy what perused files gained into chunks, every PerusalTimeInterval seconds."""
        now = time.monotonic()
        due = [j for j in self.running.values()
               if j.order.perusal_interval is not None and j.next_sample <= now and j.ended is None]
        if not due:
            return
        lists = perusal_lists(self.rt, [j.order.job_id for j in due])
        for job in due:
            job.next_sample = now + float(job.order.perusal_interval or 0)
            try:
                self._sample(job, lists.get(job.order.job_id, []))
            except (OSError, WMProxyError) as exc:  # e.g. the sandbox full: the same bytes at the next sample
                log.warning("job %s: perusal sample not kept: %s", job.order.job_id, log_text(exc))

    def _sample(self, job: RunningJob, files: list[str]) -> None:
        """Copy the new bytes of each perused regular file (never a symlink or hard link,
        never outside the work dir: :func:`open_confined`; never the job's proxy:
        :func:`~wmproxy.domain.service_file`), each at most
        :data:`PERUSAL_READ_LIMIT`, all together at most the job's budget (read once a file has
        grown: :func:`~wmproxy.services.perusal.perusal_budget`); each chunk is counted in the
        owner's usage as it is written. Once the budget is used up the sample stops (logged once,
        named in the job's Done reason); the bytes not copied are taken by a later sample if
        room comes back (the owner's other jobs purged).

        Raises:
            QuotaExceededError, SandboxError, OSError: a chunk was not kept
                (:func:`~wmproxy.services.perusal.keep_perusal_chunk`); its bytes are sampled again.
            SQLAlchemyError: the database failed.
        """
        stamp = int(time.time())
        budget: PerusalBudget | None = None
        for name in files:
            if (why := service_file(name)) is not None:  # refused when asked for (_valid_name): never sampled
                log.warning("job %s: perusal file %s refused: %s", job.order.job_id, log_text(name), why)
                continue
            try:
                fd = open_confined(job.handle.work_dir, name)
            except ConfinementError as exc:
                if exc.reason != "not produced":
                    log.info("job %s: perusal file %s refused: %s", job.order.job_id, log_text(name), exc.reason)
                continue
            with os.fdopen(fd, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                offset = job.offsets.get(name, 0)
                if size <= offset:
                    continue
                if budget is None and (budget := perusal_budget(self.rt, job.order.job_id)) is None:
                    return  # purged: no area to write into
                want = min(size - offset, PERUSAL_READ_LIMIT)
                if budget.left is not None and budget.left < want:
                    self._perusal_held(job, budget)
                    want = budget.left
                if want <= 0:
                    return
                handle.seek(offset)
                data = handle.read(want)
            chunk_stamp = max(stamp, job.stamps.get(name, 0) + 1)
            keep_perusal_chunk(self.rt, budget.owner_dn, job.order.area.job_id, name, data, chunk_stamp)
            budget = budget.spent(len(data))
            job.stamps[name] = chunk_stamp
            job.offsets[name] = offset + len(data)

    @staticmethod
    def _perusal_held(job: RunningJob, budget: PerusalBudget) -> None:
        """Record (once per job) that ``budget`` held the job's perusal back."""
        if job.perusal_held is None:
            job.perusal_held = f"{budget.why} reached"
            log.warning("job %s: file perusal stopped, %s", job.order.job_id, job.perusal_held)


def end_retry_delay(failures: int) -> float:
    """Seconds before the next try at collecting an end that failed ``failures`` times (>= 1):
    :data:`END_RETRY_FIRST`, doubled per failure, at most :data:`END_RETRY_MAX`, however long
    the outage (the exponent is bounded: a float overflows past 2**1023)."""
    return min(END_RETRY_FIRST * 2.0 ** min(failures - 1, 64), END_RETRY_MAX)


#: Characters that mean something to ``/bin/sh`` in a word (expansion, quoting, globbing, tilde,
#: comment, operators, any white space but a blank): a JDL ``Arguments`` or ``Environment``
#: value holding one is evaluated by the wrapper's shell (:func:`needs_shell`).
_SHELL_SYNTAX = re.compile(r"""[$`\\"'*?\[\]~#;&|<>()\s]""")


def shell_fields(environment: Sequence[str], arguments: str) -> dict[str, Any]:
    """The :class:`JobSpec` fields of JDL ``Environment`` and ``Arguments``, which have the
    original job wrapper's shell meaning (``eval export <entry>`` for each entry in order, then
    ``eval "<exe>" <arguments>``): text with nothing for a shell to do (:func:`needs_shell`) is
    passed as it is (``environment``; ``arguments`` split at blanks), so no shell runs for it;
    the rest is left to the wrapper's ``/bin/sh`` (``shell_environment``: every entry, in
    order, once one of them needs it; ``shell_arguments``).

    Raises:
        BackendError: an entry without ``=`` (registration refuses it).
    """
    plain: dict[str, str] = {}
    for entry in environment:
        key, sep, value = entry.partition("=")
        if not sep:
            raise BackendError(f"Invalid Environment entry {entry!r}: expected NAME=value")
        plain[key] = value
    fields: dict[str, Any] = {"environment": plain}
    if any(needs_shell(value, blanks=True) for value in plain.values()):
        fields = {"environment": {}, "shell_environment": list(environment)}
    text = arguments or ""
    if needs_shell(text, blanks=False):
        fields["shell_arguments"] = text
    else:
        fields["arguments"] = text.split()
    return fields


def needs_shell(text: str, *, blanks: bool) -> bool:
    """Whether ``/bin/sh`` could read ``text`` otherwise than as it is (``blanks``: an
    ``Environment`` value, which a blank splits; else ``Arguments``, split at blanks anyway):
    a text without any of :data:`_SHELL_SYNTAX` is the same words to the shell as to
    ``str.split``, so it is passed without a shell."""
    if not blanks:
        text = text.replace(" ", "").replace("\t", "")
    return _SHELL_SYNTAX.search(text) is not None


def _split(text: str, what: str) -> list[str]:
    """JDL ``PrologueArguments``/``EpilogueArguments`` as words, read as a POSIX shell would
    (quotes and backslashes removed) but by no shell: ``$``, globs and ``~`` stay as written.
    gLite's wrapper never ``eval``ed them (``${__prologue} "${__prologue_arguments}"``: one
    argument); docs/execution.md, "PrologueArguments and EpilogueArguments: no shell"."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise BackendError(f"Cannot parse the job's {what} {text!r}: {exc}") from None


def _account(name: str | None) -> Account | None:
    """The account ``name`` (a job's ``jobs.local_account``), None for None.

    Raises:
        AccountRefusedError: it is one no job may run as (root, the worker's or the service's
            user or group: :func:`~wmproxy.execution.identity.check_account`).
        IdentityError: there is no such account.
    """
    if name is None:
        return None
    account = Account.from_name(name)
    identity.check_account(account)
    return account


def service_identities(settings: Settings) -> tuple[set[int], set[int]]:
    """The uids and gids owning the service's private files (the store key and the sandbox root,
    which ``wmproxy-admin init --user`` hands to the service user): no job may run as them
    (:func:`~wmproxy.execution.identity.refuse_identities`). A file that cannot be looked at
    adds nothing (the worker's start checks them)."""
    uids: set[int] = set()
    gids: set[int] = set()
    for path in (settings.security.store_key_file, settings.sandbox.root):
        try:
            st = os.stat(path)
        except OSError:
            continue
        uids.add(st.st_uid)
        gids.add(st.st_gid)
    return uids, gids


def _storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or the OSError it was raised from) says the file system is full or
    the quota reached: a later try can succeed."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _STORAGE_FULL


def worker_alive(pid: int, started_at: dt.datetime) -> bool:
    """Whether process ``pid`` on this host lives and can be the worker that registered at
    ``started_at`` (UTC): a process that started later (a reused pid, or any process after a
    reboot) is not. Without a readable ``/proc/<pid>/stat``, whether the pid exists."""
    ticks = start_time(pid)
    if ticks is None:
        return _pid_alive(pid)
    started = _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    return started <= started_at.timestamp() + 2.0  # btime is whole seconds


@functools.cache
def _boot_time() -> float:
    """The host's boot time (epoch seconds, ``btime`` of ``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
