"""One cgroup per job (``[execution] cgroup_root``), so that every process of a job, even one
that left its session (``setsid``) or was double-forked, is killed when the job ends, is
cancelled or is released.

Each work root has a directory of its own below the root, ``<cgroup_root>/wmproxy-<hash>``
(:func:`base_name`: the first 12 hex digits of the SHA-256 of the resolved work root), so
workers of different work roots can share one cgroup root, and nothing else below the root
(another program's cgroups, systemd's ``.control``) is ever touched. The worker creates
``<base>/<work dir name>`` (a directory owned by the worker, like every file in it, so the
job's account can write to none of them), puts the job's wrapper in it before the wrapper runs
anything of the job (the zygote's child waits for the worker's word; a wrapper the worker starts
itself writes itself into it before switching to the account), and at the end kills everything
in it and removes it (:meth:`JobCgroups.kill`). Each zygote runs in
``<base>/zygote.<worker pid>.<worker start time>.<uid>.<gid>``, joined the same way and killed
whole when the zygote is closed: a process a job makes its zygote fork (it may trace it: same
uid) never runs outside the tree.

The kill never waits for the processes to go: it writes ``cgroup.kill`` (or freezes, SIGKILLs
and thaws) and tries ``rmdir`` for a few milliseconds; a cgroup still busy (a member in
uninterruptible sleep on a hung mount never leaves) is kept in :attr:`JobCgroups.pending`,
killed and removed again by :meth:`JobCgroups.retry` (the worker's tidy, within its budget).
A process can leave a cgroup only by a write to a ``cgroup.procs`` file, which the account
may not do, and its children are born in it.

Two kinds of hierarchy work:

* cgroup v2 (a normal Debian/systemd host): the whole cgroup is killed with one write of
  ``1`` to its ``cgroup.kill`` (Linux 5.14), which the kernel applies to processes being
  forked as well; without ``cgroup.kill`` it is frozen (``cgroup.freeze``), its members
  SIGKILLed and thawed. Moving the wrapper from its zygote's cgroup into its job's needs write
  access to ``cgroup.procs`` of their common ancestor, the root: the worker's;
* cgroup v1, the ``freezer`` controller's hierarchy: frozen (``freezer.state``), members
  SIGKILLed, thawed. v1 lets only a process of euid 0 move another uid's process, so it
  needs a worker running as root.

With ``[execution] max_job_memory`` (:attr:`JobCgroups.max_memory`) every cgroup the worker
makes (a job's, a zygote's) gets it as its ``memory.max``, and ``memory.swap.max`` 0 where the
kernel accounts swap (a limit that swap extends is none): cgroup v2 only, with the ``memory``
controller given to the root's children; :meth:`JobCgroups.check` refuses a root without it.
A job some of whose processes the kernel's OOM killer killed is told by the ``oom_kill`` count
of its ``memory.events`` (:meth:`JobCgroups.oom_killed`), read once its wrapper has ended.

Costs per job: one ``mkdir``, one write of the wrapper's pid, one ``rmdir`` (the cgroup is
usually empty at release: the wrapper kills its session); the kill and its loop only when
something is left. With a memory limit, two writes more at the creation and one read of
``memory.events`` at the end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from wmproxy.errors import WMProxyError
from wmproxy.execution.zygote import start_time

log = logging.getLogger(__name__)

#: Seconds between the ``rmdir`` attempts of :meth:`JobCgroups.kill` after its kill (7.5 ms in
#: all); a cgroup still busy then is handed to :meth:`JobCgroups.retry`.
KILL_PAUSES = (0.0005, 0.001, 0.002, 0.004)
#: Name prefix of a probe cgroup of :meth:`JobCgroups.check`: ``.probe.<pid>.<start time>.<random>``.
PROBE_PREFIX = ".probe."
_PROBE_NAME = re.compile(r"\.probe\.[0-9]+\.[0-9]+\.[0-9a-f]{8}")
#: Name prefix of a work root's directory below the cgroup root (:func:`base_name`).
BASE_PREFIX = "wmproxy-"


class CgroupError(WMProxyError):
    """The cgroup root is unusable, or a job's cgroup could not be made or joined."""


class MemoryLimitError(CgroupError):
    """A memory limit is asked for (:attr:`JobCgroups.max_memory`) but the cgroups below the root
    cannot have one (no cgroup v2 ``memory`` controller for them)."""


class JobCgroups:
    """The job cgroups below ``root`` (:meth:`check` first).

    Args:
        root: a directory of a cgroup v2 hierarchy, or of a cgroup v1 ``freezer``
            hierarchy, owned by the worker's user and not writable by group or others.
        work_root: the work root whose jobs these are: their cgroups are in its directory
            ``<root>/<base_name(work_root)>`` (:attr:`base`); None: directly in ``root`` (only
            for :meth:`check`; a backend takes its own with :meth:`for_work_root`).
        max_memory: bytes; every cgroup :meth:`create` makes gets it as its ``memory.max`` (and
            ``memory.swap.max`` 0 where there is one); 0: no limit. :meth:`check` refuses a
            root whose cgroups could not have it.
    """

    def __init__(self, root: Path | str, work_root: Path | str | None = None, max_memory: int = 0) -> None:
        self.root = os.path.abspath(root)
        self.base = self.root if work_root is None else os.path.join(self.root, base_name(work_root))
        self.max_memory = max_memory
        #: The cgroups (names below :attr:`base`) killed but still busy, for :meth:`retry`.
        self.pending: set[str] = set()
        #: The ``oom_kill`` counts of reused cgroups at their reuse (:meth:`create`), by name.
        self._oom_base: dict[str, int] = {}
        #: When :meth:`retry` last tried each pending cgroup (monotonic seconds): the longest
        #: waiting goes first, so a few that never empty cannot starve the others.
        self._tried: dict[str, float] = {}
        self.version = 0
        self.kill_file: str | None = None  # v2 cgroup.kill
        self.freeze_file = ""  # cgroup.freeze (v2) or freezer.state (v1)
        self._frozen = b""
        self._thawed = b""

    def check(self) -> None:
        """Find the hierarchy's kind and check that the worker can create, use and remove a
        cgroup below the root (a probe cgroup in :attr:`base`, removed again), and move a child
        process of its own into it, as it moves a zygote or a wrapper it starts itself
        (``/bin/sh -c 'echo 0 > <probe>/cgroup.procs'``, which needs write access to the
        ``cgroup.procs`` of the common ancestor of the worker's cgroup and the probe). With
        :attr:`max_memory`, the probe must have a ``memory.max`` (cgroup v2, the ``memory``
        controller enabled for the root's children and, by the worker, for its work root's
        directory).

        Raises:
            MemoryLimitError: :attr:`max_memory` is set and the probe has no ``memory.max``.
            CgroupError: why the root is unusable.
        """
        try:
            st = os.lstat(self.root)
        except OSError as exc:
            raise CgroupError(f"the cgroup root {self.root} is not usable: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode) or not os.path.exists(os.path.join(self.root, "cgroup.procs")):
            raise CgroupError(f"the cgroup root {self.root} is not a directory of a cgroup hierarchy")
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CgroupError(f"the cgroup root {self.root} must be owned by the worker's user and not "
                              "writable by group or others")
        probe = os.path.join(self.base, f"{PROBE_PREFIX}{own_tag()}.{secrets.token_hex(4)}")
        if self.base != self.root and os.path.isdir(self.base):
            _enable_controllers(self.base, memory=self.max_memory > 0)  # made without these
        try:
            self._mkdir(probe)
        except OSError as exc:
            raise CgroupError(f"cannot create a cgroup in {self.base}: {exc.strerror}") from None
        try:
            if os.path.exists(os.path.join(probe, "cgroup.kill")):
                self.version, self.kill_file = 2, "cgroup.kill"
                self.freeze_file, self._frozen, self._thawed = "cgroup.freeze", b"1", b"0"
            elif os.path.exists(os.path.join(probe, "cgroup.freeze")):
                self.version, self.freeze_file, self._frozen, self._thawed = 2, "cgroup.freeze", b"1", b"0"
            elif os.path.exists(os.path.join(probe, "freezer.state")):
                self.version, self.freeze_file, self._frozen, self._thawed = 1, "freezer.state", b"FROZEN", b"THAWED"
                if os.geteuid() != 0:
                    raise CgroupError(f"the cgroup root {self.root} is in a cgroup v1 hierarchy, where only a "
                                      "worker running as root may move a job's wrapper: use cgroup v2")
            else:
                raise CgroupError(f"the cgroup root {self.root} is neither in a cgroup v2 hierarchy nor in "
                                  "the cgroup v1 freezer hierarchy: jobs could not be stopped")
            for name in (self.kill_file or self.freeze_file, "cgroup.procs"):
                if not os.access(os.path.join(probe, name), os.W_OK):
                    raise CgroupError(f"the worker cannot write {name} of a cgroup in {self.root}")
            _move_a_child(probe, self.root)
            if self.max_memory:
                self._check_memory(probe)
        finally:
            self._remove_probe(probe)

    def _check_memory(self, probe: str) -> None:
        """Refuse a probe without ``memory.max``, saying what the root lacks; warn when the
        kernel does not account swap (no ``memory.swap.max``) and swap is on.

        Raises:
            MemoryLimitError: no ``memory.max``.
        """
        if os.path.exists(os.path.join(probe, "memory.max")):
            if not os.path.exists(os.path.join(probe, "memory.swap.max")) and _swap_on():
                log.warning("the kernel does not account the swap of cgroups (no memory.swap.max): a job's "
                            "memory beyond [execution] max_job_memory may go to swap")
            return
        if self.version != 2:
            why = "it is in a cgroup v1 hierarchy; a job's memory can be limited on cgroup v2 only"
        elif "memory" not in _words(os.path.join(self.root, "cgroup.controllers")):
            why = ("the memory controller is not delegated to it (not in its cgroup.controllers): with systemd, "
                   "Delegate=yes (or Delegate=memory pids) on the worker's unit")
        else:
            why = (f"the memory controller is not enabled for its children: write +memory to "
                   f"{os.path.join(self.root, 'cgroup.subtree_control')} (cgroup v2 allows it only while no "
                   "process is in the root itself: run the worker in a child cgroup, e.g. systemd "
                   "DelegateSubgroup=)")
        raise MemoryLimitError(f"a job's memory cannot be limited in the cgroup root {self.root}: {why}; "
                               "else set [execution] max_job_memory = 0 (no limit)")

    def _remove_probe(self, probe: str) -> None:
        """Remove the probe (its process has been reaped); one still busy is left to :meth:`retry`."""
        self._thaw(probe)
        self.kill(os.path.basename(probe))

    def for_work_root(self, work_root: Path | str) -> JobCgroups:
        """These cgroups (checked) for the jobs of ``work_root``: in its own directory
        ``<root>/<base_name(work_root)>``, made at the first :meth:`create`."""
        other = JobCgroups(self.root, work_root)
        if other.base == self.base:
            return self
        other.max_memory = self.max_memory
        other.version, other.kill_file, other.freeze_file = self.version, self.kill_file, self.freeze_file
        other._frozen, other._thawed = self._frozen, self._thawed
        return other

    def _mkdir(self, path: str) -> None:
        """``mkdir`` (0755), making :attr:`base` first if it is missing (on cgroup v2 with the
        ``pids`` controller given to its children where the root's children have it, for
        :meth:`create`'s ``max_processes``, and the ``memory`` one with :attr:`max_memory`)."""
        try:
            os.mkdir(path, 0o755)
        except FileNotFoundError:
            if self.base == self.root:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.base, 0o755)
            _enable_controllers(self.base, memory=self.max_memory > 0)
            os.mkdir(path, 0o755)

    def path(self, name: str) -> str:
        """The cgroup directory of the job whose work dir is ``name``."""
        return os.path.join(self.base, name)

    def procs(self, name: str) -> str:
        """Its ``cgroup.procs`` (what a process is written to, to join it)."""
        return os.path.join(self.base, name, "cgroup.procs")

    def exists(self, name: str) -> bool:
        """Whether the cgroup ``name`` is there."""
        return os.path.isdir(self.path(name))

    def holds(self, name: str, pid: int) -> bool:
        """Whether the process ``pid`` is in the cgroup ``name`` (its ``cgroup.procs``)."""
        return pid in _members(self.path(name))

    def create(self, name: str, max_processes: int = 0, max_memory: int | None = None) -> None:
        """Make the job's cgroup (mode 0755, the worker's: the job may write to none of its
        files). One left by an earlier attempt (the same work dir name: a job run again, or
        prepared again after a requeue; or a zygote cgroup of an earlier zygote of this process)
        is thawed, emptied, removed and made anew (no longer retried by :meth:`retry`), so that
        its counters start from zero: the ``oom_kill`` of its ``memory.events`` would otherwise
        say that this run lost a process to the OOM killer when an earlier one did. One that
        cannot be removed (still busy) is reused, its ``oom_kill`` count recorded so that
        :meth:`oom_killed` counts only what comes after.
        ``max_processes``: its ``pids.max`` (processes and threads in it at most), where it has
        one (cgroup v2 with the ``pids`` controller enabled for the work root's directory; a
        failure to write it is logged); 0: not set. ``max_memory`` (bytes; None:
        :attr:`max_memory`, the one :meth:`check` made sure the cgroups can have; a job's own, its
        CE's, is never above it): its ``memory.max``, and ``memory.swap.max`` 0 where there is
        one.

        Raises:
            CgroupError: it cannot be made, the one there could not be emptied at once, or its
                memory limit could not be set (the job would run without it).
        """
        was_pending = name in self.pending
        self.pending.discard(name)
        self._oom_base.pop(name, None)
        path = self.path(name)
        try:
            self._mkdir(path)
        except FileExistsError:
            try:
                self.empty(name)
            except CgroupError:
                if was_pending:  # still busy: tidy keeps trying
                    self.pending.add(name)
                raise
            self._renew(name)
        except OSError as exc:
            raise CgroupError(f"cannot create the job's cgroup {path}: {exc.strerror}") from None
        if max_processes > 0:
            limit = os.path.join(path, "pids.max")
            try:
                _write(limit, str(max_processes).encode())
            except FileNotFoundError:
                pass  # no pids controller here: the wrapper's RLIMIT_NPROC only
            except OSError as exc:
                log.warning("cannot limit the processes of the cgroup %s: %s", path, exc.strerror)
        memory = self.max_memory if max_memory is None else max_memory
        if memory > 0:
            self._limit_memory(path, memory)

    def _renew(self, name: str) -> None:
        """Remove the emptied cgroup ``name`` and make it again (fresh counters); one that cannot
        be removed now is kept, its ``oom_kill`` count taken as this run's zero.

        Raises:
            CgroupError: it was removed but cannot be made again.
        """
        path = self.path(name)
        if not _remove(path):
            self._oom_base[name] = _oom_kills(path)
            return
        try:
            self._mkdir(path)
        except OSError as exc:
            raise CgroupError(f"cannot create the job's cgroup {path}: {exc.strerror}") from None

    def _limit_memory(self, path: str, memory: int) -> None:
        """Write ``memory`` (bytes) to the ``memory.max`` of the cgroup ``path`` and 0 to its
        ``memory.swap.max`` (where the kernel accounts swap).

        Raises:
            CgroupError: either write failed.
        """
        try:
            _write(os.path.join(path, "memory.max"), str(memory).encode())
            with contextlib.suppress(FileNotFoundError):
                _write(os.path.join(path, "memory.swap.max"), b"0")
        except OSError as exc:
            raise CgroupError(f"cannot limit the memory of the job's cgroup {path} ([execution] "
                              f"max_job_memory): {exc.strerror or exc}") from None

    def oom_killed(self, name: str) -> str | None:
        """Why the cgroup ``name`` lost processes to the kernel's OOM killer (the ``oom_kill``
        count of its ``memory.events``, which the kernel keeps, less the count it had when this
        run reused it: :meth:`create`), a sentence for the job's reason; None when it lost none,
        or has no such file (no memory controller, gone). The limit named is the cgroup's own
        ``memory.max`` (a job's may be below :attr:`max_memory`: its CE's)."""
        path = self.path(name)
        kills = _oom_kills(path) - self._oom_base.get(name, 0)
        if kills <= 0:
            return None
        what = f"{kills} of its processes" if kills > 1 else "one of its processes"
        limit = _memory_max(path)
        if limit is not None:
            return f"the job exceeded its memory limit of {_size(limit)}: the kernel killed {what} (out of memory)"
        return f"the kernel killed {what} for lack of memory (out of memory)"

    def add(self, name: str, pid: int) -> None:
        """Move ``pid`` into the job's cgroup.

        Raises:
            CgroupError: it could not be moved (gone, or not allowed).
        """
        try:
            _write(self.procs(name), str(pid).encode())
        except OSError as exc:
            raise CgroupError(f"cannot put the job's wrapper in its cgroup {self.path(name)}: "
                              f"{exc.strerror or exc}") from None

    def kill(self, name: str) -> bool:
        """Kill every process of the cgroup ``name`` and remove it, without waiting for the
        processes to go: an empty cgroup is just removed (one ``rmdir``); else it is killed
        (``cgroup.kill``, or frozen, each member SIGKILLed, thawed) and ``rmdir`` tried for a
        few milliseconds (:data:`KILL_PAUSES`); one still busy is kept in :attr:`pending` for
        :meth:`retry`.

        Returns:
            True when the cgroup is gone (or was never there); False when it is left to
            :meth:`retry`.
        """
        if self._kill_once(name, KILL_PAUSES):
            self.pending.discard(name)
            self._oom_base.pop(name, None)
            return True
        self.pending.add(name)
        return False

    def retry(self, budget: float | None = None) -> int:
        """Kill and remove again the cgroups :meth:`kill` left busy: all of them once, or while
        ``budget`` seconds have not passed (at least one). Returns how many are still busy."""
        end = None if budget is None else time.monotonic() + budget
        for name in sorted(self.pending, key=lambda name: self._tried.get(name, 0.0)):
            self._tried[name] = time.monotonic()
            if self._kill_once(name, (), warn=False):
                self.pending.discard(name)
                self._tried.pop(name, None)
            if end is not None and time.monotonic() >= end:
                break
        for name in set(self._tried) - self.pending:
            del self._tried[name]
        return len(self.pending)

    def _kill_once(self, name: str, pauses: tuple[float, ...], *, warn: bool = True) -> bool:
        """One kill of the cgroup ``name`` and its removal, tried again after each of ``pauses``;
        a cgroup still busy is logged when ``warn`` (the first kill, not each retry)."""
        path = self.path(name)
        if _remove(path):
            return True
        self._kill_members(path)
        for pause in pauses:
            if _remove(path):
                return True
            time.sleep(pause)
        if _remove(path):
            return True
        if warn:
            log.warning("the cgroup %s still holds processes (or cannot be removed); it is killed again later",
                        path)
        return False

    def empty(self, name: str) -> None:
        """Thaw the cgroup ``name`` (one a worker left frozen between a freeze and its thaw)
        and kill what is in it, but keep it (an earlier attempt's).

        Raises:
            CgroupError: it still holds processes a few milliseconds after the kill.
        """
        path = self.path(name)
        self._thaw(path)
        if not _members(path):
            return
        self._kill_members(path)
        for pause in KILL_PAUSES:
            time.sleep(pause)
            if not _members(path):
                return
        raise CgroupError(f"the job's cgroup {path} still holds processes of an earlier attempt")

    def _thaw(self, path: str) -> None:
        with contextlib.suppress(OSError):
            _write(os.path.join(path, self.freeze_file), self._thawed)

    def _kill_members(self, path: str) -> None:
        if self.kill_file is not None:
            with contextlib.suppress(OSError):
                _write(os.path.join(path, self.kill_file), b"1")
            return
        freeze = os.path.join(path, self.freeze_file)
        try:
            with contextlib.suppress(OSError):
                _write(freeze, self._frozen)  # no fork races the kills below
            for pid in _members(path):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self._thaw(path)  # a frozen process dies only once thawed; never left frozen

    def sweep(self, is_live: Callable[[str], bool]) -> int:
        """Kill and remove the cgroups in :attr:`base` that are no longer wanted: a probe whose
        process is gone, and any other name for which ``is_live(name)`` is false (the caller
        answers true for every name it did not make). Never anything outside :attr:`base`.
        Returns how many were removed. Never raises."""
        try:
            names = [entry.name for entry in os.scandir(self.base) if entry.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot list the cgroups of %s: %s", self.base, exc.strerror or exc)
            return 0
        removed = 0
        for name in names:
            if name in self.pending:
                continue  # retry() has it
            if name.startswith(PROBE_PREFIX):
                if not _PROBE_NAME.fullmatch(name) or is_process_of(name[len(PROBE_PREFIX):]):
                    continue
            elif is_live(name):
                continue
            if self.kill(name):
                removed += 1
        return removed


def base_name(work_root: Path | str) -> str:
    """The name of ``work_root``'s directory below the cgroup root: ``wmproxy-`` and the first 12
    hex digits of the SHA-256 of the resolved path."""
    resolved = os.path.realpath(work_root)
    return BASE_PREFIX + hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]


def own_tag() -> str:
    """``<pid>.<start time>`` of this process: a name part no later process of the same pid has."""
    pid = os.getpid()
    return f"{pid}.{start_time(pid) or 0}"


def is_process_of(tag: str) -> bool:
    """Whether the process a name part ``<pid>.<start time>[.anything]`` (:func:`own_tag`) names
    still runs: its pid exists and started at that time (a reused pid does not)."""
    parts = tag.split(".", 2)
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return False
    return start_time(int(parts[0])) == int(parts[1])


def _remove(path: str) -> bool:
    """``rmdir`` the cgroup ``path``: True when it is gone (or was not there)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            log.warning("cannot remove the cgroup %s: %s", path, exc.strerror or exc)
        return False
    return True


def _move_a_child(probe: str, root: str) -> None:
    """Have a child of the worker move itself into the cgroup ``probe`` as a zygote or a wrapper
    the worker starts does (:data:`wmproxy.execution.identity._JOIN`).

    Raises:
        CgroupError: it could not.
    """
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["/bin/sh", "-c", 'echo 0 > "$0"', os.path.join(probe, "cgroup.procs")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CgroupError(f"cannot start /bin/sh to check that the worker can move a process into a "
                          f"cgroup in {root}: {exc}") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise CgroupError(f"the worker cannot move a process of its own into a cgroup in {root} "
                          f"({why[-1] if why else f'status {done.returncode}'}): the root must be in the "
                          "worker's delegated cgroup (systemd Delegate=yes), or the worker needs "
                          "CAP_DAC_OVERRIDE (cgroup v2; root for v1)")


def _enable_controllers(base: str, *, memory: bool) -> None:
    """Give the ``pids`` controller, and with ``memory`` the ``memory`` one, to the children of
    ``base`` (a work root's directory), each where the root's children have it (one write each:
    a write naming an unavailable controller changes nothing); on v1 neither exists, which is no
    error. Without a memory limit the memory controller stays off: each job's cgroup would cost
    a memory cgroup (and leave a dying one behind while its page cache lasts) for nothing."""
    for controller in (b"+pids", b"+memory") if memory else (b"+pids",):
        with contextlib.suppress(OSError):
            _write(os.path.join(base, "cgroup.subtree_control"), controller)


def _words(path: str) -> list[str]:
    """The words of the file ``path``, [] when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def _swap_on() -> bool:
    """Whether a swap area is in use (``/proc/swaps`` lists one below its heading)."""
    try:
        with open("/proc/swaps") as f:
            return len(f.read().splitlines()) > 1
    except OSError:
        return False


def _size(size: int) -> str:
    """``size`` bytes as a person reads it: whole GiB or MiB where it is one, else bytes."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB")):
        if size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def _oom_kills(path: str) -> int:
    """The ``oom_kill`` count of the ``memory.events`` of the cgroup ``path`` (a file of
    ``<key> <count>`` lines), 0 without one (no memory controller, gone)."""
    try:
        with open(os.path.join(path, "memory.events"), "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for line in lines:
        key, _, count = line.partition(b" ")
        if key == b"oom_kill" and count.strip().isdigit():
            return int(count)
    return 0


def _memory_max(path: str) -> int | None:
    """The ``memory.max`` of the cgroup ``path`` in bytes, None when it has none (``max``, or no
    such file)."""
    try:
        with open(os.path.join(path, "memory.max"), "rb") as f:
            value = f.read().strip()
    except OSError:
        return None
    return int(value) if value.isdigit() else None


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _members(path: str) -> list[int]:
    """The pids in the cgroup ``path`` (its ``cgroup.procs``), [] when it is gone."""
    try:
        with open(os.path.join(path, "cgroup.procs"), "rb") as f:
            return [int(line) for line in f.read().split()]
    except (OSError, ValueError):
        return []


def check_root(root: Path | str, work_root: Path | str | None = None, max_memory: int = 0) -> JobCgroups:
    """:class:`JobCgroups` of ``root`` (for ``work_root``'s jobs, with ``max_memory``), checked
    (:meth:`JobCgroups.check`).

    Raises:
        MemoryLimitError: ``max_memory`` is set and the cgroups could not have it.
        CgroupError: why the root is unusable.
    """
    cgroups = JobCgroups(Path(root), work_root, max_memory)
    cgroups.check()
    return cgroups
