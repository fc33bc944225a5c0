"""Run jobs on the worker's own host, through the job wrapper, as their mapped accounts.

Each job gets ``<work root>/<to_filename(job id)>`` (:func:`identity.prepare_work_dir`),
its input sandbox copied in through descriptors (``O_EXCL | O_NOFOLLOW``), everything
handed to the account, the proxy copy ``user.proxy`` (0600, the account's), and the
wrapper's spec: sent with the zygote's request (:mod:`wmproxy.execution.zygote`), or written
to ``.wmproxy/job.marshal`` when the worker starts the wrapper itself
(:func:`identity.spawn_wrapper`). The wrapper leads its own session, so it survives the
worker: a worker that stops (SIGTERM drain) or dies leaves its jobs running, and the worker
that adopts them follows them here.

Backend reference (``jobs.backend_ref``): ``local:<host>:<wrapper pid>:<work dir name>``,
with ``-`` for the pid between :meth:`LocalExecutionBackend.prepare` and
:meth:`LocalExecutionBackend.spawn`. A pid is trusted only while that process leads its
own session, runs ``jobwrapper.py <work dir>`` (``/proc/<pid>/cmdline``) and runs as the
job's account (its real uid, ``/proc/<pid>/status``; the worker's own without mapping): the
command line guards against pid reuse, the uid against another account's process forging that
command line; a pid read from the work dir is never signalled.

With job cgroups (``cgroups``, ``[execution] cgroup_root``; :mod:`wmproxy.execution.cgroups`)
each job runs in ``<cgroup root>/<work root's directory>/<work dir name>``, which its wrapper
joins before it runs anything of the job, and everything in it is killed when the job is
released (after its end or its cancel) or cancelled past its grace: also the processes that
left the wrapper's session. Without, and for a job whose wrapper is not in its cgroup (started
while cgroups were off), what is left of the wrapper's session is killed (:func:`_kill_leftovers`).
A job the kernel's OOM killer took processes of (its cgroup's ``memory.events``, read by
:meth:`LocalExecutionBackend.poll` before the release removes it; e.g. past ``[execution]
max_job_memory``) says so: Aborted, unless its payload exited 0 or it was cancelled
(:func:`~wmproxy.execution.backends.out_of_memory`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import socket
import stat
import threading
import time
import weakref
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import ClassVar

from wmproxy.domain import JobState, reserved_input_file, to_filename
from wmproxy.errors import WMProxyError
from wmproxy.execution import identity, jobwrapper, processes
from wmproxy.execution.backends import BackendError, JobLaunch, JobOutcome, RunHandle, out_of_memory, outcome_of
from wmproxy.execution.cgroups import CgroupError, JobCgroups, is_process_of, own_tag
from wmproxy.execution.identity import PROXY_NAME, Account, IdentityError, WrapperStatus, WrapperStatusError
from wmproxy.execution.jobwrapper import STARTED_NAME, STATE_DIR, STATUS_NAME, WALL_TIME_EXCEEDED, JobSpec
from wmproxy.execution.zygote import Zygote, ZygoteError, ZygoteRefusedError, start_time
from wmproxy.sandbox.trees import advance
from wmproxy.security.chain import load_pem_chain

log = logging.getLogger(__name__)

SCHEME = "local"
WRAPPER_NAME = identity.WRAPPER_PATH.name
#: Seconds after the wrapper's own kill grace before a cancel kills the whole session.
CANCEL_MARGIN = 30.0
_COPY_CHUNK = 64 * 1024
#: Seconds an account's wrappers are started by the worker itself after its zygote failed.
ZYGOTE_RETRY = 60.0
#: Seconds without a job after which an account's zygote is closed and a new one started at
#: the account's next job. A pool account goes to another identity only after a much longer
#: idle time (``[mapping] lease_idle_time``), so a zygote never serves two grid users even if
#: a job of the first one took it over.
ZYGOTE_IDLE = 60.0
#: Emptied work dirs kept for an account's next jobs (``reuse_work_dirs``) at most.
MAX_SPARES = 32
#: Seconds without a job of an account after which its spare work dirs are removed.
SPARE_IDLE = 60.0
#: Seconds between two sweeps of the cgroup root for job cgroups without a work dir (:meth:`tidy`).
CGROUP_SWEEP = 60.0
#: Removals of large set-aside work dirs kept where they stopped at most (each holds up to 36
#: descriptors); the oldest past it walks down its tree again when its turn comes.
MAX_PAUSED = 8
#: Seconds after which the removal of a set-aside work dir that failed is tried again (:meth:`tidy`).
REMOVAL_RETRY = 300.0


class LocalExecutionBackend:
    """:class:`~wmproxy.execution.backends.ExecutionBackend` running the job wrapper on
    this host.

    Args:
        work_root: the work root (``[execution] work_dir``); see
            :func:`identity.prepare_work_dir` for the ownership it needs.
        host: this host's name, recorded in backend references.
        kill_grace: the wrapper's seconds between SIGTERM and SIGKILL of a cancelled job.
        python: the interpreter that runs the wrapper (default ``/usr/bin/python3``).
        background_removal: :meth:`release` sets the work dir aside with one rename and
            :meth:`tidy` removes it later (with whatever an earlier life set aside), so
            the worker does not wait for the filesystem while it starts and ends jobs;
            default: removed at once.
        zygotes: fork the wrappers from one long-lived process per account
            (:mod:`wmproxy.execution.zygote`) rather than start an interpreter per job;
            False starts each wrapper with :func:`identity.spawn_wrapper`.
        reuse_work_dirs: :meth:`release` empties a work dir of the usual layout and keeps
            it, with its ``.wmproxy`` and ``tmp/``, as a spare for the next job of the same
            account (:func:`identity.recycle_work_dir`, :func:`identity.reuse_work_dir`),
            rather than remove it and create a new one: three inodes fewer to create and
            remove per job. Spares are removed after :data:`SPARE_IDLE` seconds without a
            job of their account (:meth:`tidy`) and by :meth:`close`; what a worker that
            died left is set aside and removed by the next worker to start on the work root
            (another worker on the same root then prepares new dirs). Default: off.
        cgroups: put each job in a cgroup of its own below this checked root
            (:meth:`JobCgroups.check <wmproxy.execution.cgroups.JobCgroups.check>`), killed
            whole at release and at a cancel past its grace; :meth:`tidy` removes those whose
            work dir is gone (a job that ended while no worker followed it). None: off.
    """

    def __init__(self, work_root: Path, host: str | None = None, *, kill_grace: float = 10.0,
                 python: str | None = None, background_removal: bool = False, zygotes: bool = True,
                 reuse_work_dirs: bool = False, cgroups: JobCgroups | None = None) -> None:
        self.work_root = Path(os.path.abspath(work_root))
        self.host = host or socket.gethostname()
        self.kill_grace = kill_grace
        self.python = python
        self._remover = _Remover.of(self.work_root) if background_removal else None
        self.use_zygotes = zygotes
        self._zygotes: dict[tuple[int, int] | None, Zygote] = {}
        self._fallback_until: dict[tuple[int, int] | None, float] = {}
        self._last_used: dict[tuple[int, int] | None, float] = {}
        self._launched: dict[int, str | None] = {}  # id(handle) -> None: forked by a zygote, else why not
        self._max_processes: dict[str, int] = {}  # work dir name -> its spec's max_processes, until spawned
        self._max_memory: dict[str, int] = {}  # work dir name -> its memory.max below max_job_memory, until spawned
        self._unlimited_ces: set[str] = set()  # CEs whose memory limit was said to be dropped (said once each)
        self.reuse_work_dirs = reuse_work_dirs
        self._spares: dict[tuple[int, int] | None, list[str]] = {}  # by account (uid, gid), None: the worker's
        self._spares_used: dict[tuple[int, int] | None, float] = {}
        self.cgroups = None if cgroups is None else cgroups.for_work_root(self.work_root)
        cgroups = self.cgroups
        self._swept_at: float | None = None  # monotonic time of the last sweep of the cgroups; None: at the first tidy
        self._wrappers: dict[int, _Wrapper] = {}  # id(handle) -> how its wrapper ends, until its release
        weakref.finalize(self, _close_zygotes, self._zygotes, cgroups)

    # --- starting ------------------------------------------------------------------

    def prepare(self, launch: JobLaunch) -> RunHandle:
        """Create the job's work dir and fill it; nothing runs yet.

        A work dir left by an earlier attempt that never started the payload (a
        requeued job) is removed first; one holding ``started.json`` is refused, so a
        job never runs twice.

        The launch's ``wall_time`` goes into the wrapper's spec (:attr:`JobSpec.wall_time
        <wmproxy.execution.jobwrapper.JobSpec.wall_time>`): the wrapper stops the job once it has
        run that many seconds, and the job ends Aborted (:meth:`poll`). It lives in the wrapper,
        so a job adopted by another worker keeps it. With job cgroups, the spec's
        ``max_processes`` becomes the ``pids.max`` of the job's cgroup (where it has one).

        Returns:
            A handle whose reference has no pid yet.

        Raises:
            BackendError: the work root is unsafe, an input sandbox file is missing or a
                link, the proxy is unusable, the spec is invalid, or the account cannot
                be given the files. The work dir is removed again.
        """
        name = to_filename(launch.job_id)
        work_dir = self.work_root / name
        job_spec = launch.spec
        if launch.wall_time is not None and job_spec.wall_time is None:
            job_spec = JobSpec(**{**job_spec.as_dict(), "wall_time": launch.wall_time})
        if os.path.lexists(work_dir):
            if _ever_started(work_dir):
                raise BackendError(f"The job {launch.job_id} has already been started in {work_dir}")
            self._remove(name)
        try:
            if launch.proxy_pem:
                check_proxy_shape(launch.proxy_pem)  # never hand a broken credential to a job
            if not self._reuse_spare(name, launch.account):
                identity.prepare_work_dir(self.work_root, name, launch.account)
        except WMProxyError as exc:
            raise BackendError(str(exc)) from None
        try:
            _stage_in(launch.input_dir, work_dir, launch.isb_files, launch.account)
            if launch.proxy_pem and job_spec.proxy:  # not fsynced: a crash before the start means a new prepare
                identity.install_proxy(work_dir, launch.proxy_pem, launch.account, job_spec.proxy, sync=False,
                                       fresh=job_spec.proxy not in launch.isb_files)  # else it replaces the file
            if self.use_zygotes:  # handed to the wrapper through the zygote: no job.marshal (an inode)
                identity.check_spec(job_spec)
                spec: bytes | None = job_spec.to_bytes()
            else:
                identity.write_spec(work_dir, job_spec, launch.account, sync=False, fresh=True)
                spec = None
        except WMProxyError as exc:
            self._remove(name)
            raise BackendError(str(exc)) from None
        if job_spec.max_processes and self.cgroups is not None:
            self._max_processes[name] = job_spec.max_processes
        self._limit_memory_of(name, launch)
        return RunHandle(ref=self._ref(None, name, wall=job_spec.wall_time), work_dir=work_dir,
                         account=launch.account, spec=spec, wall_time=job_spec.wall_time)

    def _limit_memory_of(self, name: str, launch: JobLaunch) -> None:
        """Keep the memory limit of the job ``name`` for its cgroup when its CE states one below
        ``[execution] max_job_memory`` (its ``WMProxyMemoryMB``, :func:`job_memory_limit`). Without
        ``max_job_memory`` (and so without cgroups sure to have ``memory.max``) it is not applied:
        said once per CE, and the job runs without it, as before."""
        if not launch.memory_mb or launch.memory_mb <= 0:
            return
        if self.cgroups is None or self.cgroups.max_memory <= 0:
            if launch.ce_id not in self._unlimited_ces:
                self._unlimited_ces.add(launch.ce_id)
                log.warning("the CE %s states a memory limit of %d MiB per job (WMProxyMemoryMB), which applies to "
                            "local jobs only with [execution] max_job_memory (and job cgroups): its jobs run "
                            "without it", launch.ce_id or "(unknown)", launch.memory_mb)
            return
        limit = job_memory_limit(self.cgroups.max_memory, launch.memory_mb)
        if limit < self.cgroups.max_memory:
            self._max_memory[name] = limit

    def spawn(self, handle: RunHandle) -> RunHandle:
        """Start the wrapper of a prepared job as its account (unless :meth:`spawn_batch`
        already has): forked by the account's zygote, else started by the worker.

        Raises:
            BackendError: the wrapper cannot be started (e.g. a root worker without an
                account).
        """
        if id(handle) not in self._launched and handle.pid is None:
            self.spawn_batch([handle])
        if id(handle) in self._launched:
            refused = self._launched.pop(id(handle))
            if refused is not None:
                raise BackendError(refused)
            return handle  # the pid is None when the wrapper ended before it could be checked
        if handle.pid is None:
            try:
                if handle.spec is not None:  # no zygote took it: the wrapper reads it from the work dir
                    identity.write_spec_bytes(handle.work_dir, handle.spec, handle.account)
                    handle.spec = None
                procs = None
                if self.cgroups is not None:
                    self.cgroups.create(handle.work_dir.name, self._max_processes.pop(handle.work_dir.name, 0),
                                        self._max_memory.pop(handle.work_dir.name, None))
                    procs = self.cgroups.procs(handle.work_dir.name)
                process = identity.spawn_wrapper(handle.work_dir, handle.account, python=self.python,
                                                 cgroup_procs=procs)
            except (IdentityError, CgroupError) as exc:
                raise BackendError(str(exc)) from None
            handle.process = process
            handle.pid = process.pid
            handle.ref = self._ref(process.pid, handle.work_dir.name, wall=handle.wall_time)
        return handle

    def spawn_batch(self, handles: Sequence[RunHandle]) -> None:
        """Have each account's zygote (:mod:`wmproxy.execution.zygote`, started at its first
        job) fork the wrappers of these prepared jobs, one round trip per account; the
        handles then name the wrappers (pid and start time). A job the zygote refuses is
        refused by :meth:`spawn`; a zygote that fails is closed and its account's jobs are
        started by the worker itself (:meth:`spawn`) for :data:`ZYGOTE_RETRY` seconds,
        which is logged once. Each wrapper is held (:meth:`Zygote.request`'s ``hold``) until the
        worker has checked it, opened its pidfd (:class:`_Wrapper`: how it ends, which its job could
        otherwise hide by killing it at once) and, with job cgroups, put it in its job's cgroup; a
        held wrapper found gone is refused (it ran nothing). Never raises."""
        if not self.use_zygotes:
            return
        self._close_idle_zygotes()
        by_account: dict[Account | None, list[RunHandle]] = {}
        for handle in handles:
            if handle.pid is None:
                if self.cgroups is not None:
                    try:
                        self.cgroups.create(handle.work_dir.name, self._max_processes.pop(handle.work_dir.name, 0),
                                            self._max_memory.pop(handle.work_dir.name, None))
                    except CgroupError as exc:
                        self._launched[id(handle)] = str(exc)
                        continue
                by_account.setdefault(handle.account, []).append(handle)
        for account, group in by_account.items():
            launcher = self._zygote(account)
            if launcher is None:
                continue
            cgroups = self.cgroups
            try:  # held: nothing of a job runs before the worker has its wrapper's pidfd (and cgroup)
                results = launcher.request([str(h.work_dir) for h in group], [h.spec for h in group], hold=True)
            except ZygoteError as exc:
                self._zygote_lost(account, group, str(exc))
                continue
            forged = False
            go: list[int] = []
            drop: list[int] = []
            for handle, result in zip(group, results, strict=True):
                if isinstance(result, ZygoteRefusedError):
                    self._launched[id(handle)] = str(result)
                    continue
                # Never trust the zygote (it runs as the account) with a pid the worker may signal:
                # the pid must be its own child, leading its own session; the start time is read here.
                # The pidfd is opened first, so it is that child's (its exit status: _Wrapper.end).
                pidfd = processes.open_pidfd(result[0])
                started = _child_of(result[0], launcher.process.pid)
                if started is False:
                    _close(pidfd)
                    forged = True
                    self._launched[id(handle)] = "the wrapper fork server named a process that is not its child"
                    continue
                refused = self._hold_refusal(cgroups, handle, result[0], started)
                (drop if refused else go).append(result[0])
                if refused is not None or started is None:
                    _close(pidfd)
                    self._launched[id(handle)] = refused
                    continue
                self._launched[id(handle)] = None
                handle.spec = None  # the wrapper has it
                self._follow(handle, result[0], pidfd, started, forked=True)
                handle.pid = result[0]
                handle.ref = self._ref(result[0], handle.work_dir.name, started, handle.wall_time)
            self._let_go(account, group, launcher, go, drop)
            if forged:
                self._zygote_failed(account, "it named a process that is not its child")

    @staticmethod
    def _hold_refusal(cgroups: JobCgroups | None, handle: RunHandle, pid: int, started: int | None) -> str | None:
        """With job cgroups, put the held wrapper ``pid`` in its job's cgroup; None when it may run
        its job, else why not (the wrapper is then dropped: it exits running nothing). A held
        wrapper found gone was killed (by another process of the account) before it ran anything."""
        if started is None:
            return ("the job wrapper died before it joined the job's cgroup" if cgroups is not None
                    else "the job wrapper died before it was let run its job")
        if cgroups is not None:
            try:
                cgroups.add(handle.work_dir.name, pid)
            except CgroupError as exc:
                return str(exc)
        return None

    def _let_go(self, account: Account | None, group: Sequence[RunHandle], launcher: Zygote,
                go: list[int], drop: list[int]) -> None:
        """Let the held wrappers ``go`` run their jobs and ``drop`` exit. A zygote that does not
        take the word is closed, so they all exit running nothing: their jobs are refused."""
        try:
            launcher.release(go, drop)
        except ZygoteError as exc:
            self._zygote_failed(account, str(exc))
            for handle in group:
                if handle.pid in go:
                    self._launched[id(handle)] = f"the job wrapper was not let go: {exc}"
                    handle.pid = None
                    handle.ref = self._ref(None, handle.work_dir.name, wall=handle.wall_time)
                    followed = self._wrappers.pop(id(handle), None)
                    if followed is not None:
                        followed.close()

    def _zygote_lost(self, account: Account | None, group: Sequence[RunHandle], why: str) -> None:
        """The account's zygote failed while it had ``group``'s requests: closed (its account's
        wrappers started by the worker for a while), and the wrappers it may have forked
        before it failed found by their work dirs; a wrapper that ran its payload and ended
        meanwhile (:func:`_ever_started`) is taken as started, without pid (its status
        tells), never started a second time; the others are started by :meth:`spawn`."""
        self._zygote_failed(account, why)
        for handle in group:
            pid = _find_wrapper(handle.work_dir, handle.account)
            if pid is not None:
                handle.pid = pid
                handle.ref = self._ref(pid, handle.work_dir.name, start_time(pid), handle.wall_time)
                self._follow_running(handle, forked=True)
            elif _ever_started(handle.work_dir):
                self._launched[id(handle)] = None
                handle.spec = None

    def _zygote(self, account: Account | None) -> Zygote | None:
        """The account's running zygote, started if needed; None while it is in its
        fallback period or cannot be started."""
        key = _account_key(account)
        launcher = self._zygotes.get(key)
        if launcher is not None:
            if launcher.process.poll() is None:
                self._last_used[key] = time.monotonic()
                return launcher
            self._zygote_failed(account, f"it exited with status {launcher.process.returncode}")
            return None
        if time.monotonic() < self._fallback_until.get(key, 0.0):
            return None
        python = self.python or identity.SYSTEM_PYTHON
        try:
            procs = None
            if self.cgroups is not None:
                self.cgroups.create(zygote_cgroup(key))
                procs = self.cgroups.procs(zygote_cgroup(key))
            launcher = Zygote(identity.zygote_command(account, python=self.python, cgroup_procs=procs),
                              str(identity.WRAPPER_PATH), python)
        except (ZygoteError, IdentityError, CgroupError) as exc:
            self._zygote_failed(account, str(exc))
            return None
        self._zygotes[key] = launcher
        self._last_used[key] = time.monotonic()
        return launcher

    def _close_idle_zygotes(self) -> None:
        """Close the zygotes that forked nothing for :data:`ZYGOTE_IDLE` seconds."""
        now = time.monotonic()
        for key in [k for k, used in self._last_used.items() if now - used >= ZYGOTE_IDLE]:
            del self._last_used[key]
            launcher = self._zygotes.pop(key, None)
            if launcher is not None:
                _close_zygote(key, launcher, self.cgroups)

    def _zygote_failed(self, account: Account | None, why: str) -> None:
        key = _account_key(account)
        launcher = self._zygotes.pop(key, None)
        self._last_used.pop(key, None)
        if launcher is not None:
            _close_zygote(key, launcher, self.cgroups)
        first = self._fallback_until.get(key, 0.0) == 0.0
        self._fallback_until[key] = time.monotonic() + ZYGOTE_RETRY
        if first:
            log.warning("the wrapper fork server of %s failed (%s): the worker starts the wrappers itself "
                        "for %g s, then tries again; further failures are not logged",
                        "the worker's user" if account is None else account.name, why, ZYGOTE_RETRY)

    def close(self) -> None:
        """Stop the zygotes (their wrappers keep running) and remove the spare work dirs."""
        _close_zygotes(self._zygotes, self.cgroups)
        for followed in self._wrappers.values():
            followed.close()
        self._wrappers.clear()
        for key in list(self._spares):
            self._drop_spares(key, at_once=True)

    # --- spare work dirs (reuse_work_dirs) -----------------------------------------

    def _reuse_spare(self, name: str, account: Account | None) -> bool:
        """Make a spare of ``account`` the work dir ``name`` (checked empty and the account's
        there); False when there is none or it failed the check."""
        key = _account_key(account)
        spares = self._spares.get(key)
        if not spares:
            return False
        self._spares_used[key] = time.monotonic()
        try:
            return identity.reuse_work_dir(self.work_root, spares.pop(), name, account)
        except IdentityError as exc:  # it failed the check and could not be removed: set it aside
            log.warning("could not remove a spare work directory that failed its check: %s", exc)
            discarded = identity.discard_work_dir(self.work_root, name)
            if discarded is not None and self._remover is not None:
                self._remover.put(discarded)
            return False

    def _recycle(self, handle: RunHandle) -> bool:
        """Keep the released work dir as a spare of its account if it can be
        (:func:`identity.recycle_work_dir`); False: it is still there, to be removed."""
        if not self.reuse_work_dirs:
            return False
        account = handle.account
        key = _account_key(account)
        spares = self._spares.setdefault(key, [])
        if len(spares) >= MAX_SPARES:
            return False
        spare = identity.recycle_work_dir(self.work_root, handle.work_dir.name, account)
        if spare is None:
            return False
        spares.append(spare)
        self._spares_used[key] = time.monotonic()
        return True

    def _drop_idle_spares(self) -> None:
        now = time.monotonic()
        for key in [k for k, used in self._spares_used.items() if now - used >= SPARE_IDLE]:
            self._drop_spares(key)

    def _drop_spares(self, key: tuple[int, int] | None, *, at_once: bool = False) -> None:
        """Remove the spares of ``key``'s account: later (:meth:`tidy`) with
        ``background_removal`` unless ``at_once``, else now (a failure is logged)."""
        self._spares_used.pop(key, None)
        for spare in self._spares.pop(key, []):
            if self._remover is not None and not at_once:
                self._remover.put(spare)
                continue
            try:
                identity.remove_work_dir(self.work_root, spare)
            except IdentityError as exc:
                log.warning("could not remove the spare work directory %s: %s", spare, exc)
            except Exception:  # left to the next worker start, which discards spares
                log.exception("could not remove the spare work directory %s", spare)

    # --- following -----------------------------------------------------------------

    def poll(self, handle: RunHandle) -> JobOutcome | None:
        """None while the wrapper runs; then the outcome from ``status.json`` (see
        :func:`~wmproxy.execution.backends.outcome_of`). A status the worker cannot
        accept (forged, malformed) aborts the job with the reason. A job the wrapper stopped at
        its wall time (not cancelled) is Aborted with the wrapper's reason: a deep failure once
        the payload had started, as the Slurm backend reports Slurm's TIMEOUT, else shallow.

        The wrapper's clock is a backstop away from being the only one: a job whose wrapper still
        runs :data:`CANCEL_MARGIN` seconds after its wall time and kill grace (its job stopped it,
        ``SIGSTOP``: same uid) is killed by the worker (:meth:`_stop_overrun`) and Aborted with the
        same reason, as a deep failure, whatever its work dir says (the job can write there, and
        may have stopped its wrapper before it wrote ``started.json``: taken for a shallow failure,
        the job would be run again).

        A wrapper killed by a signal (its wait status: the worker's own child's, or, for one a zygote
        forked or the worker adopted, its pidfd's, :class:`_Wrapper`) is Aborted, "the job wrapper
        was killed by signal N", a deep failure once the payload had started, whatever its
        ``status.json`` says: the job runs as the wrapper's uid and may have written that file,
        then killed its wrapper to be recorded Done while it runs on. Such a wrapper's exit status
        is known once its zygote has reaped it (on Linux 6.15+, ``PIDFD_INFO_EXIT``): an ended
        wrapper not reaped yet is followed as running for at most :data:`REAP_WAIT` seconds (a
        zygote found stopped meanwhile is closed, so that init reaps it). Where the exit status
        cannot be known (an older kernel, a wrapper that ended while no worker followed it) the
        status file is taken as written, and :meth:`release` kills what is left of the job."""
        if self._running(handle):
            if handle.overrun or self._overran(handle):
                self._stop_overrun(handle)
            return None
        if handle.overrun:  # a deep failure whatever started.json says: the wrapper writes it after the
            # payload's start, which may have stopped it first (or removed the file): never run twice
            return JobOutcome(JobState.ABORTED, reason=f"{WALL_TIME_EXCEEDED} of {_seconds(handle.wall_time or 0)} s:"
                              " the worker killed the job, whose wrapper had not stopped it (deep failure)",
                              payload_started=True, recorded=False)
        status_code = self._wrapper_end(handle)
        if status_code is None and self._reaping(handle):
            return None  # its exit status comes with its reaping, in a moment
        if status_code is not None and os.WIFSIGNALED(status_code):
            # its status.json is not taken: the job (same uid) may have written it, then killed it
            started = self.started(handle)
            oom = self.cgroups.oom_killed(handle.work_dir.name) if self.cgroups is not None else None
            return JobOutcome(JobState.ABORTED, reason=(f"{oom}: " if oom else "") + "the job wrapper was killed by "
                              f"signal {os.WTERMSIG(status_code)} " + ("after the payload had started (deep failure)"
                                                                      if started else "before starting the payload"
                                                                      " (shallow failure)"),
                              payload_started=started, recorded=False)
        try:
            status: WrapperStatus | None = identity.read_status(handle.work_dir, handle.account)
        except WrapperStatusError as exc:
            return JobOutcome(JobState.ABORTED, reason=str(exc), payload_started=True)
        except IdentityError as exc:
            return JobOutcome(JobState.ABORTED, reason=f"the job's work directory is gone: {exc}", recorded=False)
        if (status is not None and status.cancelled_by is None and status.payload_started
                and (status.failure or "").startswith(WALL_TIME_EXCEEDED)):
            return JobOutcome(JobState.ABORTED, exit_code=status.shell_exit_code,
                              reason=f"{status.failure} (deep failure)", payload_started=True)
        outcome = outcome_of(status, (status is not None and status.payload_started) or self.started(handle))
        if self.cgroups is not None and (why := self.cgroups.oom_killed(handle.work_dir.name)) is not None:
            return out_of_memory(outcome, status, why)
        return outcome

    def _overran(self, handle: RunHandle) -> bool:
        """Whether the running wrapper of a job with a wall time (and not cancelled: a cancel
        escalates on its own) started more than its wall time, the kill grace and
        :data:`CANCEL_MARGIN` ago. The start is the wrapper process's, from ``/proc`` (the
        reference's for a wrapper forked by a zygote; else read once): the kernel's, which the
        job cannot change, unlike anything in its work dir."""
        if handle.wall_time is None or handle.cancel_sent_at is not None or handle.pid is None:
            return False
        if handle.wrapper_born is None:
            handle.wrapper_born = ref_start_time(handle.ref) or start_time(handle.pid)
            if handle.wrapper_born is None:
                return False
        return overdue(handle.wrapper_born, handle.wall_time + self.kill_grace + CANCEL_MARGIN)

    def _stop_overrun(self, handle: RunHandle) -> None:
        """Kill a job past its wall time whose wrapper did not stop it (:meth:`poll`), without
        waiting for the wrapper (a stopped one heeds no SIGTERM): its cgroup, else its wrapper,
        its session and their descendants (:func:`_kill_overrun`); what is left is killed again
        at the next poll and at the release."""
        if not handle.overrun:
            handle.overrun = True
            log.warning("the wrapper of the job in %s has not stopped it at its wall time of %s s: "
                        "killed by the worker", handle.work_dir.name, _seconds(handle.wall_time or 0))
        if self._in_cgroup(handle):
            self.cgroups.kill(handle.work_dir.name)  # type: ignore[union-attr]
        elif handle.pid is not None:
            _kill_overrun(handle.pid, os.getuid() if handle.account is None else handle.account.uid,
                          handle.wrapper_born)

    def started(self, handle: RunHandle) -> bool:
        """Whether ``started.json`` (or a status saying so) exists; an unreadable one counts
        as started, so the job is never run again."""
        try:
            return identity.payload_started(handle.work_dir, handle.account)
        except WrapperStatusError:
            return True
        except IdentityError:
            return False

    def cancel(self, handle: RunHandle) -> None:
        """SIGTERM the wrapper (it stops the job and records ``cancelled_by``); once its
        grace plus :data:`CANCEL_MARGIN` has passed, SIGKILL it, every process of its session and
        their descendants, and its own (the job's orphans it adopted; :func:`_kill_overrun`).
        A wrapper that has ended already: SIGKILL what is left of its session
        (:func:`_kill_leftovers`). With job cgroups, the job's cgroup is killed whole instead
        of the session."""
        if handle.pid is None:
            return
        if not self._running(handle):
            self._kill_leftovers(handle)
            return
        now = time.monotonic()
        if handle.cancel_sent_at is None:
            handle.cancel_sent_at = now
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGTERM)
        elif now - handle.cancel_sent_at > self.kill_grace + CANCEL_MARGIN:
            if self._in_cgroup(handle):
                self.cgroups.kill(handle.work_dir.name)  # type: ignore[union-attr]
            else:
                _kill_overrun(handle.pid, os.getuid() if handle.account is None else handle.account.uid,
                              ref_start_time(handle.ref) or handle.wrapper_born)

    def attach(self, ref: str, account: Account | None) -> RunHandle | None:
        """The handle of a job from its reference, for adoption: None unless the reference
        is ``local`` and names this host. A reference without pid (the worker died
        between committing Scheduled and Running) finds the wrapper, if one runs, by
        its command line and uid (:func:`is_wrapper`)."""
        parsed = parse_ref(ref)
        if parsed is None or parsed[0] != self.host:
            return None
        _host, pid, name = parsed
        work_dir = self.work_root / name
        wall = ref_wall_time(ref)
        forked = pid is not None and ref_start_time(ref) is not None  # by a zygote: non-dumpable
        if pid is None:
            pid = _find_wrapper(work_dir, account)
            ref = self._ref(pid, name, None if pid is None else start_time(pid), wall)
        else:
            ref = self._ref(pid, name, ref_start_time(ref), wall)
        handle = RunHandle(ref=ref, work_dir=work_dir, account=account, pid=pid, wall_time=wall)
        if pid is not None:
            self._follow_running(handle, forked=forked)
        return handle

    def release(self, handle: RunHandle) -> None:
        """Remove the job's proxy copy, then its work dir (never following links), so the
        proxy is gone even if the job left something the worker cannot remove. With
        ``reuse_work_dirs``, a work dir of the usual layout is emptied and kept as a spare of
        its account instead (:func:`identity.recycle_work_dir`).

        The wrapper kills what its job left in its session when the job ends. The worker takes
        that as done only when it knows the wrapper exited on its own (not by a signal) and could
        not be made to (forked by a zygote: non-dumpable, so the job cannot trace it), and the
        job was neither cancelled nor past its wall time: its exit status from its pidfd
        (:class:`_Wrapper`). Otherwise, whatever ``status.json`` says (the job may have written it
        and killed its wrapper), what is left of the wrapper's session and the descendants of its
        members are killed (:func:`_kill_leftovers`: one ``getsid`` per process of ``/proc``,
        about 0.1 ms with 190 processes, and the full pass only when the session has members),
        checked against pid reuse and the job's uid. A process that left the session (``setsid``)
        and whose parent is gone is out of reach without job cgroups. With job cgroups,
        everything left in the job's cgroup is killed and the cgroup removed, whatever the end
        (usually it is empty: one ``rmdir``; one still busy is left to :meth:`tidy`); a job
        without its cgroup (started while they were off) is treated as without them.

        Raises:
            BackendError: the directory could not be removed.
        """
        self._max_processes.pop(handle.work_dir.name, None)
        self._max_memory.pop(handle.work_dir.name, None)
        if self._in_cgroup(handle):
            self.cgroups.kill(handle.work_dir.name)  # type: ignore[union-attr]
        else:
            if not self._ended_cleanly(handle):
                self._kill_leftovers(handle)
            if self.cgroups is not None:
                self.cgroups.kill(handle.work_dir.name)  # an empty one its wrapper never joined
        followed = self._wrappers.pop(id(handle), None)
        if followed is not None:
            followed.close()
        with contextlib.suppress(OSError):
            os.unlink(handle.work_dir / PROXY_NAME)
        if self._recycle(handle):
            return
        if self._remover is None:
            self._remove(handle.work_dir.name)
            return
        try:
            discarded = identity.discard_work_dir(self.work_root, handle.work_dir.name)
        except IdentityError as exc:
            raise BackendError(str(exc)) from None
        if discarded is not None:
            self._remover.put(discarded)

    def tidy(self, budget: float | None = None) -> int:
        """Remove the work dirs :meth:`release` set aside (``background_removal``), all of
        them or, with ``budget``, for about that many seconds (at least one); the worker
        calls it when it is about to wait. Returns how many were pending.

        With job cgroups it first kills and removes again the cgroups a kill left busy
        (:meth:`JobCgroups.retry`, within ``budget``), and, every :data:`CGROUP_SWEEP` seconds
        (and at its first call), the cgroups of its work root's directory that are no longer
        wanted: a job's whose work dir is gone (a job that ended while no worker followed it and
        whose work dir was purged since), a zygote's whose worker process is gone, a probe whose
        worker is gone.

        It also closes the zygotes idle for :data:`ZYGOTE_IDLE` seconds (an idle worker kept
        them until its next spawn).

        Never raises (a directory that cannot be removed is logged and tried again
        :data:`REMOVAL_RETRY` seconds later)."""
        self._drop_idle_spares()
        try:
            self._close_idle_zygotes()
        except Exception as exc:  # noqa: BLE001 - a cgroup left busy: swept later, never the worker's end
            log.warning("idle zygotes could not all be closed: %s", exc)
        if self.cgroups is not None:
            if self.cgroups.pending:
                self.cgroups.retry(budget)
            if self._swept_at is None or time.monotonic() - self._swept_at >= CGROUP_SWEEP:
                self._swept_at = time.monotonic()
                self.cgroups.sweep(is_live=functools.partial(_cgroup_in_use, self.work_root))
        if self._remover is None:
            return 0
        pending = len(self._remover.pending)
        if pending or self._remover.failed:
            self._remover.run(budget)
        return pending

    # --- helpers -------------------------------------------------------------------

    def _ref(self, pid: int | None, name: str, started: int | None = None, wall: float | None = None) -> str:
        process = "-" if pid is None else str(pid) if started is None else f"{pid}@{started}"
        if wall is not None:
            process += f"+{_seconds(wall)}"
        return f"{SCHEME}:{self.host}:{process}:{name}"

    def _remove(self, name: str) -> None:
        try:
            identity.remove_work_dir(self.work_root, name)
        except IdentityError as exc:
            raise BackendError(str(exc)) from None

    def _in_cgroup(self, handle: RunHandle) -> bool:
        """Whether the job runs in its cgroup: job cgroups are on, its cgroup exists and, while
        its wrapper runs, holds it. A job started while they were off (by an earlier worker life)
        has none, and a wrapper that stopped itself would never be killed by a kill of its
        cgroup: such a job is killed by its session, as without cgroups."""
        cgroups = self.cgroups
        if cgroups is None or not cgroups.exists(handle.work_dir.name):
            return False
        if handle.pid is None or cgroups.holds(handle.work_dir.name, handle.pid):
            return True
        return not self._running(handle)  # read after: a wrapper that has just ended left its cgroup

    def _kill_leftovers(self, handle: RunHandle) -> None:
        """SIGKILL the processes left in the session of the job's wrapper once it has ended
        (with job cgroups: everything in the job's cgroup). The session is the wrapper's pid: the
        handle's, or, for a wrapper that had ended when the worker checked what its zygote
        answered, the one the zygote named (:func:`_kill_leftovers` checks it against reuse)."""
        followed = self._wrappers.get(id(handle))
        pid = handle.pid if handle.pid is not None or followed is None else followed.pid
        if self._in_cgroup(handle):
            self.cgroups.kill(handle.work_dir.name)  # type: ignore[union-attr]
        elif pid is not None and not self._running(handle):
            started = ref_start_time(handle.ref) if handle.pid is not None else None
            _kill_leftovers(pid, started, os.getuid() if handle.account is None else handle.account.uid)

    def _follow(self, handle: RunHandle, pid: int, pidfd: int | None, started: int | None, *,
                forked: bool) -> None:
        """Keep the wrapper ``pid`` of ``handle`` (its pidfd, opened while it was known to be that
        wrapper, and its start time) until the job's release (or the handle's end)."""
        self._wrappers[id(handle)] = _Wrapper(pid, pidfd, started, forked)
        weakref.finalize(handle, self._wrappers.pop, id(handle), None)

    def _follow_running(self, handle: RunHandle, *, forked: bool) -> None:
        """:meth:`_follow` the wrapper a handle names, when it runs: its pidfd is opened first,
        then the wrapper checked (:meth:`_running`), so the pidfd is that wrapper's."""
        if handle.pid is None:
            return
        pidfd = processes.open_pidfd(handle.pid)
        if pidfd is not None and self._running(handle):
            self._follow(handle, handle.pid, pidfd, ref_start_time(handle.ref) or start_time(handle.pid),
                         forked=forked)
        else:
            _close(pidfd)

    def _wrapper_end(self, handle: RunHandle) -> int | None:
        """The wait status of the job's ended wrapper (as ``os.waitpid`` gives it), None when it
        is not known (yet): the worker's own child's, else its pidfd's (:meth:`_Wrapper.end`)."""
        if handle.process is not None:
            code = handle.process.returncode
            return None if code is None else -code if code < 0 else code << 8
        followed = self._wrappers.get(id(handle))
        return None if followed is None else followed.end()

    def ends_at_reaping(self, handle: RunHandle) -> bool:
        """Whether the job's end is known only once its wrapper has been reaped by its parent (a
        wrapper that is not the worker's child, followed by a pidfd, on a kernel that gives the
        exit status of a reaped process): the worker waits for that reaping (the pidfd's
        ``POLLHUP``, :meth:`Wakeup.watch <wmproxy.execution.wakeup.Wakeup.watch>`), not for the
        exit, which leaves a zombie whose pidfd stays readable until then."""
        followed = self._wrappers.get(id(handle))
        return (followed is not None and followed.pidfd is not None and followed.started is not None
                and handle.process is None and processes.EXIT_STATUS_KNOWN)

    def _reaping(self, handle: RunHandle) -> bool:
        """Whether the job's wrapper has ended but is not reaped yet (a zombie of its start time),
        on a kernel that gives the exit status of a reaped process, for at most :data:`REAP_WAIT`
        seconds: its exit status comes with the reaping. A zombie whose zygote is stopped (a job
        of the account may stop it) is never reaped by it: that zygote is closed (killed), and
        init reaps the wrapper."""
        if not self.ends_at_reaping(handle):
            return False
        followed = self._wrappers[id(handle)]
        fields = _stat_fields(followed.pid)
        try:
            if fields is None or fields[0] not in (b"Z", b"X") or int(fields[19]) != followed.started:
                return False
            parent = int(fields[1])
        except (IndexError, ValueError):
            return False
        now = time.monotonic()
        if followed.reaping_since is None:
            followed.reaping_since = now
        elif now - followed.reaping_since > REAP_WAIT:
            log.warning("the ended job wrapper %d (%s) was not reaped within %g s: how it ended is not known, "
                        "its status file is taken as written", followed.pid, handle.work_dir.name, REAP_WAIT)
            followed.close()
            return False
        launcher = self._zygotes.get(_account_key(handle.account))
        if launcher is not None and launcher.process.pid == parent and _proc_state(parent) in ("T", "t"):
            self._zygote_failed(handle.account, "it is stopped, and does not reap its ended wrappers")
        return True

    def _ended_cleanly(self, handle: RunHandle) -> bool:
        """Whether the job's wrapper is known to have exited on its own, having killed what was
        left of its session (:meth:`release`): forked by a zygote (the job cannot trace it), its
        exit status known and not a signal's, the job neither cancelled nor past its wall time."""
        if handle.cancel_sent_at is not None or handle.overrun:
            return False
        followed = self._wrappers.get(id(handle))
        if followed is None or not followed.forked:
            return False
        status = followed.end()
        return status is not None and os.WIFEXITED(status)

    def _running(self, handle: RunHandle) -> bool:
        if handle.pid is None:
            return False
        if handle.process is not None:
            return handle.process.poll() is None
        started = ref_start_time(handle.ref)
        if started is not None:  # forked by a zygote: not our child
            return is_process(handle.pid, started)
        _reap_if_child(handle.pid)
        return is_wrapper(handle.pid, handle.work_dir, handle.account)


class _Wrapper:
    """A job's wrapper as the worker follows it to learn how it ended, though it is not the
    worker's child (a zygote forked it, or an earlier worker life started it): its pid (the id of
    its session), its start time when known, and a pidfd opened while it was known to be that
    wrapper, from which the kernel gives its wait status once it has been reaped by whoever is its
    parent (:func:`processes.exit_status`, Linux 6.15+). ``forked``: forked by a zygote, so
    non-dumpable from its start: a process of the job (same uid) may kill it but not trace it
    into exiting on its own."""

    __slots__ = ("forked", "pid", "pidfd", "reaping_since", "started", "status")

    def __init__(self, pid: int, pidfd: int | None, started: int | None, forked: bool) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.started = started
        self.forked = forked
        self.status: int | None = None
        self.reaping_since: float | None = None

    def end(self) -> int | None:
        """The wrapper's wait status once it is known, else None."""
        if self.status is None and self.pidfd is not None:
            self.status = processes.exit_status(self.pidfd)
        return self.status

    def close(self) -> None:
        _close(self.pidfd)
        self.pidfd = None

    def __del__(self) -> None:  # a handle dropped unreleased (its finalizer): its pidfd closed
        if self.pidfd is not None:
            with contextlib.suppress(Exception):  # also at the interpreter's exit
                os.close(self.pidfd)


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _account_key(account: Account | None) -> tuple[int, int] | None:
    """What the zygotes and spare work dirs are kept by: the account's (uid, gid), None for the
    worker's own user."""
    return None if account is None else (account.uid, account.gid)


def _close_zygotes(zygotes: dict[tuple[int, int] | None, Zygote], cgroups: JobCgroups | None) -> None:
    for key, launcher in zygotes.items():
        _close_zygote(key, launcher, cgroups)
    zygotes.clear()


def _close_zygote(key: tuple[int, int] | None, launcher: Zygote, cgroups: JobCgroups | None) -> None:
    """Close a zygote; with job cgroups, kill what is left in its cgroup and remove it (a process
    a job of the account forked from its zygote, which it may trace: same uid)."""
    with contextlib.suppress(OSError):
        launcher.close()
    if cgroups is not None:
        cgroups.kill(zygote_cgroup(key))


#: Name prefix of a zygote's cgroup in the work root's cgroup directory:
#: ``zygote.<worker pid>.<worker start time>.<uid>.<gid>`` (``...worker`` for the worker's own user).
ZYGOTE_CGROUP = "zygote."
_ZYGOTE_NAME = re.compile(r"zygote\.[0-9]+\.[0-9]+\.(?:worker|[0-9]+\.[0-9]+)")
#: The names :func:`~wmproxy.domain.to_filename` gives job work dirs.
_JOB_NAME = re.compile(r"(?!\.)(?:[A-Za-z0-9.\- ]|_[0-9a-f]{2})+")


def zygote_cgroup(key: tuple[int, int] | None) -> str:
    """The cgroup (in the work root's cgroup directory) of this worker process's zygote for
    ``key``'s account: a job's wrapper starts there and is moved into the job's, so a process
    forked from the zygote never runs outside the tree, and the common ancestor of the two is the
    cgroup root. The worker's start time in the name tells its cgroups from those of a later
    process that reuses its pid."""
    account = "worker" if key is None else f"{key[0]}.{key[1]}"
    return f"{ZYGOTE_CGROUP}{own_tag()}.{account}"


def _cgroup_in_use(work_root: Path, name: str) -> bool:
    """Whether the cgroup ``name`` of the work root's cgroup directory is still wanted: a job's
    whose work dir exists, a zygote's whose worker process lives, and any name of another shape
    (never made by this code: never touched)."""
    if name.startswith(ZYGOTE_CGROUP):
        return not _ZYGOTE_NAME.fullmatch(name) or is_process_of(name[len(ZYGOTE_CGROUP):])
    if _JOB_NAME.fullmatch(name):
        return os.path.lexists(work_root / name)
    return True


#: The process field of a local backend reference: ``-`` or the wrapper's pid with its start time
#: (``@``), then the job's wall time in seconds (``+``), each when known.
_PROCESS_FIELD = re.compile(r"(?:-|([0-9]+)(?:@([0-9]+))?)(?:\+([0-9]+(?:\.[0-9]+)?))?")


def _process_field(ref: str) -> re.Match[str] | None:
    parts = ref.split(":", 3)
    if len(parts) != 4 or parts[0] != SCHEME or not parts[3]:
        return None
    return _PROCESS_FIELD.fullmatch(parts[2])


def parse_ref(ref: str) -> tuple[str, int | None, str] | None:
    """``(host, wrapper pid or None, work dir name)`` of a local backend reference, None
    for another backend's or a malformed one.

    References: ``local:<host>:<pid>@<start time>:<work dir name>`` (the wrapper's pid and
    its start time, field 22 of ``/proc/<pid>/stat``, which together name one process
    whatever the pid's reuse), ``local:<host>:<pid>:<work dir name>`` (a wrapper recognised
    by its command line: the worker started it itself, or an older worker did) and
    ``local:<host>:-:<work dir name>`` (Scheduled, no wrapper known yet). A job with a wall
    time has it after the process, in seconds: ``local:<host>:<pid>@<start time>+<seconds>:...``
    (:func:`ref_wall_time`), so a worker that adopts the job enforces it too; an older worker
    refuses such a reference (it follows nothing rather than a wrong work dir)."""
    found = _process_field(ref)
    if found is None:
        return None
    host, _process, name = ref.split(":", 3)[1:]
    return host, None if found[1] is None else int(found[1]), name


def ref_start_time(ref: str) -> int | None:
    """The wrapper's start time a local backend reference records, None if it has none."""
    found = _process_field(ref)
    return None if found is None or found[2] is None else int(found[2])


def ref_wall_time(ref: str) -> float | None:
    """The job's wall time (seconds) a local backend reference records, None if it has none."""
    found = _process_field(ref)
    return None if found is None or found[3] is None else float(found[3])


def job_memory_limit(max_job_memory: int, memory_mb: int | None) -> int:
    """The ``memory.max`` (bytes) of a local job's cgroup: the lower of ``[execution]
    max_job_memory`` (bytes, 0: none) and its CE's ``WMProxyMemoryMB`` (``memory_mb`` MiB, None or
    not positive: none); 0 for no limit."""
    limits = [limit for limit in (max_job_memory, (memory_mb or 0) << 20) if limit > 0]
    return min(limits, default=0)


def _seconds(value: float) -> str:
    """``value`` seconds as the reference writes them: a decimal number, never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


class _Remover:
    """The work dirs set aside by :func:`identity.discard_work_dir`, removed when the worker
    has nothing else to do (:meth:`LocalExecutionBackend.tidy`); at start it also takes those
    a previous worker life left. One per work root and process (:meth:`of`), whatever the
    number of backends sharing the root.

    Not a thread: a thread removing directories while the worker's main thread claims and
    starts jobs made the two take the GIL from each other at every system call (about 40
    futex calls per job, issue 14)."""

    _by_root: ClassVar[dict[Path, _Remover]] = {}
    _lock = threading.Lock()

    @classmethod
    def of(cls, work_root: Path) -> _Remover:
        with cls._lock:
            if work_root not in cls._by_root:
                cls._by_root[work_root] = cls(work_root)
            return cls._by_root[work_root]

    def __init__(self, work_root: Path) -> None:
        self.work_root = work_root
        self.pending: list[str] = []
        self.failed: dict[str, float] = {}  # name: when its removal failed (time.monotonic)
        #: removals stopped at their budget's end, going on where they stopped (names in ``pending``)
        self.paused: dict[str, Generator[None, None, None]] = {}
        try:
            names = os.listdir(work_root)
        except OSError:
            return
        self.pending = [name for name in names if name.startswith(identity.DISCARDED_PREFIX)]
        for name in names:  # spares: taken with a rename first, so one another worker reuses is never removed
            if name.startswith(identity.SPARE_PREFIX):
                with contextlib.suppress(identity.IdentityError):
                    if (discarded := identity.discard_work_dir(work_root, name)) is not None:
                        self.pending.append(discarded)

    def put(self, name: str) -> None:
        """Queue ``name``, before the removals stopped part-way (a released work dir is not held
        behind a large one)."""
        self.pending.insert(next((i for i, queued in enumerate(self.pending) if queued in self.paused),
                                 len(self.pending)), name)

    def run(self, budget: float | None = None) -> None:
        """Remove the pending work dirs, oldest first: all of them, or while ``budget``
        seconds have not passed (a large one is left part-removed when the budget ends inside
        it, and goes on where it stopped when its turn comes again, after the others; each call
        removes something). One that cannot
        be removed, whatever the error, is logged and kept: pending again
        :data:`REMOVAL_RETRY` seconds later (and, as every discarded one, at the next worker
        start)."""
        now = time.monotonic()
        end = None if budget is None else now + budget
        for name in [name for name, at in self.failed.items() if now - at >= REMOVAL_RETRY]:
            del self.failed[name]
            self.pending.append(name)
        while self.pending:
            name = self.pending.pop(0)
            try:
                steps = self.paused.pop(name, None) or identity.work_dir_removal(self.work_root, name)
                if end is None:
                    for _ in steps:
                        pass
                elif not advance(steps, end):  # a large tree: kept where it stopped, behind the others
                    self._pause(name, steps)
                    return
            except IdentityError as exc:
                self.failed[name] = time.monotonic()
                log.warning("could not remove the discarded work directory %s: %s", name, exc)
            except Exception:  # tidy never raises: the worker goes on, the directory stays
                self.failed[name] = time.monotonic()
                log.exception("could not remove the discarded work directory %s", name)
            if end is not None and time.monotonic() >= end:
                return

    def _pause(self, name: str, steps: Generator[None, None, None]) -> None:
        """Keep ``steps`` of ``name`` for a later call, ``name`` queued last (the work dirs
        released since are not held behind a large one); past :data:`MAX_PAUSED` removals
        kept, the oldest is given up (its descriptors closed: it walks down again when its
        turn comes)."""
        self.paused[name] = steps
        self.pending.append(name)
        if len(self.paused) > MAX_PAUSED:
            self.paused.pop(next(iter(self.paused))).close()


def _ever_started(work_dir: Path) -> bool:
    """Whether a work dir left behind ever ran its payload: ``started.json`` is there (whatever
    it holds), or a ``status.json`` (the wrapper renames ``started.json`` to it at the end) that
    says so or cannot be read."""
    state = work_dir / STATE_DIR
    if os.path.lexists(state / STARTED_NAME):
        return True
    if not os.path.lexists(state / STATUS_NAME):
        return False
    try:
        status = identity.read_status(work_dir, None, any_owner=True)
    except (WrapperStatusError, IdentityError):
        return True
    return status is None or status.payload_started


def check_proxy_shape(proxy_pem: bytes) -> None:
    """Refuse a proxy copy that is not a grid proxy file: certificates that parse and a
    private key block.

    The key is not checked against the certificate again: that was done when the proxy
    was delegated (putProxy) or renewed, and the store keeps it sealed (authenticated
    encryption) since. Re-validating the RSA key with OpenSSL cost about 34 ms of worker
    CPU per job (issue 14).

    Raises:
        BackendError: no or unreadable certificate, or no private key block.
    """
    try:
        load_pem_chain(proxy_pem)
    except WMProxyError as exc:
        raise BackendError(f"The job's proxy is unusable: {exc}") from None
    if b"PRIVATE KEY-----" not in proxy_pem:
        raise BackendError("The job's proxy is unusable: it holds no private key")


def _stage_in(input_dir: Path, work_dir: Path, files: tuple[str, ...], account: identity.Account | None) -> None:
    """Copy input sandbox files into the fresh work dir through descriptors: the source
    must be a regular file (not a link) of the job area, the target is created
    ``O_EXCL | O_NOFOLLOW``, so nothing planted in the work dir is followed, and given to
    ``account`` through its own descriptor (``fchown``). The worker changes the owner of
    nothing else: the work dir is the account's already, and whatever a job of that account
    put there (a link, a directory swapped for one, a hard link to a file of the service)
    is never walked. A walk of the work dir by path that chowned every entry was raced by a
    job of the same account into chowning the store key and the database to it.

    ``input/`` is made by the first upload: without it nothing was uploaded, which is fine
    for an empty ``files`` and "input sandbox file <first> has not been uploaded" otherwise.
    A file named as what the service keeps in the work dir (``user.proxy``, ``.wmproxy``:
    :func:`~wmproxy.domain.reserved_input_file`) is refused before anything is copied."""
    if (reserved := reserved_input_file(files)) is not None:  # the worker refuses it first
        raise identity.IdentityError(reserved)
    if not files:  # nothing to copy: neither directory is opened (most such jobs have no input/:
        return  # a failed lookup and a FileNotFoundError a job, about 2 µs; docs/performance.md, stop 56)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        src_dir = os.open(input_dir, flags | os.O_DIRECTORY)
    except FileNotFoundError:
        raise identity.IdentityError(f"input sandbox file {files[0]} has not been uploaded") from None
    except OSError:
        raise identity.IdentityError(f"The input sandbox of the job ({input_dir}) does not exist") from None
    try:
        dst_dir = os.open(work_dir, flags | os.O_DIRECTORY)
        try:
            for name in files:
                if not name or "/" in name or "\x00" in name or name in (".", ".."):
                    raise identity.IdentityError(f"input sandbox file {name!r} has not been uploaded")
                try:
                    src = os.open(name, flags | os.O_NONBLOCK, dir_fd=src_dir)
                except (OSError, ValueError):
                    raise identity.IdentityError(f"input sandbox file {name} has not been uploaded") from None
                with os.fdopen(src, "rb") as reader:
                    if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                        raise identity.IdentityError(f"input sandbox file {name} has not been uploaded")
                    try:
                        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      0o600, dir_fd=dst_dir)
                    except OSError as exc:
                        raise identity.IdentityError(f"Cannot stage {name}: {exc.strerror}") from None
                    with os.fdopen(dst, "wb") as writer:
                        if account is not None:
                            try:
                                os.fchown(writer.fileno(), account.uid, account.gid)
                            except OSError as exc:
                                raise identity.IdentityError(
                                    f"Cannot hand {name} over to {account.name}: {exc.strerror}") from None
                        while chunk := reader.read(_COPY_CHUNK):
                            writer.write(chunk)
        finally:
            os.close(dst_dir)
    finally:
        os.close(src_dir)


def is_wrapper(pid: int, work_dir: Path, account: Account | None) -> bool:
    """True while ``pid`` is a live (not zombie) session leader running
    ``jobwrapper.py <work_dir>`` as ``account`` (its real uid; the worker's own for None).

    Any user can run a session leader with that command line: a process of another account
    naming a job's work dir, taken for its wrapper, would have the worker follow it (its exit
    ending the job and removing the work dir under the running payload) and signal it on a
    cancel instead of the wrapper."""
    try:
        if os.getsid(pid) != pid:
            return False
    except (ProcessLookupError, PermissionError):
        return False
    state = _proc_state(pid)
    if state is None or (state == "Z" and not _threads_run(pid)):
        return False
    expected = os.getuid() if account is None else account.uid
    return _runs_wrapper_for(_cmdline(pid), work_dir) and processes.real_uid(pid) == expected


def _child_of(pid: int, parent: int) -> int | bool | None:
    """The start time of ``pid`` if it is a child of ``parent`` leading its own session;
    None if it is gone (ended and reaped, or being reaped as it was read); False if it is
    another process (:func:`_child_in` on its ``/proc/<pid>/stat``).

    The kernel (``do_task_stat``) reads a task's state before its parent and session, and
    shows parent 0 (session 0 or -1) once the task's signal handlers are released: a quick
    wrapper reaped between the two reads shows the state it had (``Z``, even ``R``) with no
    parent. Such a stat is read a second time: the task is then gone or dead (``X``), while a
    live process without a parent (an init) shows the same again and is still refused."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    found = _child_in(fields, pid, parent)
    if found is False and fields[1:2] == [b"0"]:
        fields = _stat_fields(pid)
        found = None if fields is None else _child_in(fields, pid, parent)
    return found


def _child_in(fields: list[bytes], pid: int, parent: int) -> int | bool | None:
    """:func:`_child_of` on the ``/proc/<pid>/stat`` fields after the command name.

    A quick job's wrapper may be reaped by the zygote while its stat is read: the kernel then
    shows it dead (state ``X``), with neither parent nor session (both 0) for a moment. Taken
    for a forged pid, that aborted the job and closed the zygote (seen once in about 20,000
    ``/bin/true`` jobs); it is a wrapper that has ended: None adopts nothing, the pid is never
    signalled and the job's status file tells how it ended."""
    try:
        ppid, session, started = int(fields[1]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return False
    if ppid == parent and session == pid:
        return started
    if fields[0] == b"X":
        return None
    return False


def is_process(pid: int, started: int) -> bool:
    """True while ``pid`` is a live (not zombie) session leader that started at ``started``
    (clock ticks after boot, field 22 of ``/proc/<pid>/stat``): the wrapper a zygote forked,
    never a later process that reused its pid."""
    fields = _stat_fields(pid)
    try:
        return (fields is not None and (fields[0] != b"Z" or _threads_run(pid)) and int(fields[3]) == pid
                and int(fields[19]) == started)
    except (IndexError, ValueError):
        return False


def _threads_run(pid: int) -> bool:
    """Whether ``pid``, whose state reads ``Z``, still runs threads: its main thread ended alone
    (``SYS_exit``, which a job may make its own wrapper do by tracing it) while others go on."""
    return processes.real_uid(pid, live=True) is not None


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first), None if
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def _runs_wrapper_for(argv: list[str], work_dir: Path) -> bool:
    """``argv`` is ``... jobwrapper.py <work_dir>`` (any installed copy of the wrapper, so a
    job started before an upgrade is still recognised)."""
    return len(argv) >= 2 and argv[-1] == str(work_dir) and os.path.basename(argv[-2]) == WRAPPER_NAME


def _find_wrapper(work_dir: Path, account: Account | None) -> int | None:
    """The pid of the wrapper running in ``work_dir`` as ``account`` (:func:`is_wrapper`), if any."""
    for pid in processes.pids():
        if _runs_wrapper_for(_cmdline(pid), work_dir) and is_wrapper(pid, work_dir, account):
            return pid
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0] if fields else None


#: Passes over ``/proc`` at most in which :func:`_kill_leftovers` kills what is left of a session.
LEFTOVER_PASSES = 20
#: Seconds an ended wrapper not reaped yet is followed as running, for its exit status
#: (:meth:`LocalExecutionBackend.poll`).
REAP_WAIT = 10.0


def _kill_leftovers(sid: int, started: int | None, uid: int) -> None:
    """SIGKILL the processes left of the session ``sid`` of a wrapper that has ended (``sid`` is
    its pid; ``started`` its start time when known) that run as ``uid`` (the job's account).

    The kernel keeps a pid number from any new process while a process still has it as its
    session id, so while the session has members nobody else can hold the pid ``sid``: a live
    process with that pid (not the wrapper's zombie) means the session is empty and the pid was
    reused (its new owner may lead a session ``sid`` of its own), and nothing is killed. The
    uid check leaves alone the members of a later session ``sid`` of another account (one that
    took the pid after the job's session emptied and whose leader has ended too). A member born
    while ``/proc`` was read is found by the next pass, until a pass finds none alive. The
    descendants of the session's members that run as ``uid`` go with them, found in the same
    pass (before their parents die and they are handed to init): the commands the job's
    inspection agent starts in sessions of their own, which the agent stops itself when the
    wrapper ends normally."""
    fields = _stat_fields(sid)
    if fields is not None:
        try:
            if fields[0] not in (b"Z", b"X") or (started is not None and int(fields[19]) != started):
                return
        except (IndexError, ValueError):
            return
    if not processes.session_has_members(sid) and (fields is None or not _threads_run(sid)):
        return  # nothing left: found with one getsid per process, the full pass reads every stat file
    _kill_in_passes(sid, uid, leader=fields is not None, started=started)


def _kill_overrun(sid: int, uid: int, started: int | None) -> None:
    """SIGKILL the running wrapper ``sid`` (checked by the caller), the processes of its session
    and their descendants that run as ``uid``, and the wrapper's own descendants (the job's
    orphans it adopted, in its session or not) (:func:`_kill_in_passes`); ``started``: the
    wrapper's start time, checked again at each pass."""
    _kill_in_passes(sid, uid, leader=True, started=started)


def _kill_in_passes(sid: int, uid: int, *, leader: bool, started: int | None = None) -> None:
    """SIGKILL the processes of the session ``sid`` (with ``leader``, its leader ``sid`` too while
    it or its threads run as ``uid`` and, given ``started``, while it is the process that started
    then: a pid reused meanwhile by another process of the account is left alone, and then its
    own descendants) and their descendants that run as ``uid``, all found in one pass over
    ``/proc`` before any is killed (so none is handed to init first), in passes until one finds
    none alive (:data:`LEFTOVER_PASSES` at most). With ``leader``, the wrapper's descendants are
    killed first, the wrapper last (:func:`_kill_wrapper_last`)."""
    if leader:
        _kill_wrapper_last(sid, uid, started)
    for attempt in range(LEFTOVER_PASSES):
        if attempt:
            time.sleep(0.01)
        found = False
        # the leader too while its threads run (its main thread ended alone: it reads Z)
        first = [sid] if (leader and processes.real_uid(sid, live=True) == uid
                          and (started is None or start_time(sid) == started)) else []
        for pid in first + _session_and_descendants(sid, uid, leader=bool(first)):
            found = _kill_checked(pid, uid, started if pid == sid else None) or found
        if not found:
            return


def _kill_checked(pid: int, uid: int, started: int | None) -> bool:
    """SIGKILL ``pid`` if it runs as ``uid`` (and, given ``started``, started then), checked
    through :func:`_checked_pidfd`, the kill sent through its pidfd: a kill that succeeds proves
    the checks read that process, not a later user of its pid (by pid, after the same checks, on a
    kernel without pidfds). Whether it was killed."""
    matches, pidfd = _checked_pidfd(pid, uid, started)
    try:
        if not matches:
            return False
        if pidfd is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        _close(pidfd)
    return True


def _checked_pidfd(pid: int, uid: int, started: int | None) -> tuple[bool, int | None]:
    """A pidfd on ``pid`` (None on a kernel without pidfds or once ``pid`` is gone), opened before
    ``/proc`` is read, and whether ``pid`` then ran as ``uid`` (and, given ``started``, started
    then, in clock ticks after boot): while the pidfd is open, a signal sent through it reaches the
    process checked or none. The caller closes the pidfd."""
    pidfd = processes.open_pidfd(pid)
    return (processes.real_uid(pid, live=True) == uid and (started is None or start_time(pid) == started)), pidfd


#: Passes at most in which :func:`_kill_wrapper_last` kills a running wrapper's descendants.
DESCENDANT_PASSES = 200


def _kill_wrapper_last(sid: int, uid: int, started: int | None) -> None:
    """SIGKILL the running wrapper ``sid`` (if it runs as ``uid`` and, given ``started``, started
    then) after its descendants that run as ``uid``, found from the kernel's children lists.

    The wrapper, stopped first (``SIGSTOP``, through a pidfd opened before the checks, so the
    process checked is the one signalled), stays the subreaper of its job and reaps nothing: a
    process of the job whose parent ends goes to it, and its children only grow. Its descendants
    are killed top down (:func:`jobwrapper._kill_descendants_once`, through pidfds) in passes until
    one kills nothing and the wrapper's children are the same after it as before (a process that
    forked and exited during the pass was a zombie by its turn, and its child, adopted by the
    wrapper after the pass read its children, is found by the next pass): killing the wrapper first
    handed a chain of processes that fork their successor and exit to init, where only the
    wrapper's session was looked for. The wrapper is killed after :data:`DESCENDANT_PASSES` passes
    whatever they found (a process stuck in uninterruptible sleep). Without pidfds, nothing here:
    :func:`_kill_in_passes` kills the wrapper with what it finds of its descendants in one pass."""
    matches, pidfd = _checked_pidfd(sid, uid, started)
    if pidfd is None:
        return
    try:
        if not matches:
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        except OSError:  # reaped since the checks: another process may have the pid
            return
        for _ in range(DESCENDANT_PASSES):
            before = jobwrapper._children(sid, sid)
            if not jobwrapper._kill_descendants_once(sid, uid) and jobwrapper._children(sid, sid) == before:
                break
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


def overdue(born: int, allowed: float) -> bool:
    """Whether more than ``allowed`` seconds have passed since ``born`` (a process start time:
    clock ticks after boot, as ``/proc/<pid>/stat`` gives it, which counts from the same
    clock as ``CLOCK_BOOTTIME``)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - born / _CLOCK_TICKS > allowed


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _session_and_descendants(sid: int, uid: int, *, leader: bool = False) -> list[int]:
    """The live processes of session ``sid`` (its leader ``sid`` aside) and their descendants,
    those running as ``uid``, read from ``/proc`` in one pass. With ``leader`` (the running
    wrapper ``sid``, checked by the caller), the leader's descendants too: the orphans of the job
    it adopted (``PR_SET_CHILD_SUBREAPER``), also those that left its session (``setsid``), which
    go to init once it is killed."""
    parents: dict[int, int] = {}
    members: set[int] = set()
    for pid in processes.pids():
        fields = _stat_fields(pid)
        if fields is None or len(fields) < 4 or pid == sid:
            continue
        if fields[0] in (b"Z", b"X") and not _threads_run(pid):
            continue  # done (a main thread ended alone, other threads running, reads Z too)
        try:
            parents[pid] = int(fields[1])
            if int(fields[3]) == sid:
                members.add(pid)
        except ValueError:
            continue
    chosen = members | {sid} if leader else set(members)
    grown = True
    while grown:  # children of chosen processes, level by level
        grown = False
        for pid, parent in parents.items():
            if parent in chosen and pid not in chosen:
                chosen.add(pid)
                grown = True
    return [pid for pid in chosen if pid != sid and processes.real_uid(pid) == uid]


def _reap_if_child(pid: int) -> None:
    """Collect ``pid``'s exit status if it happens to be our child (a wrapper the same
    process spawned before it took itself for a new worker life); otherwise nothing."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
