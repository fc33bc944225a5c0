"""One cgroup per job (``[execution] cgroup_root``), so that every process of a job, even one
that left its session (``setsid``) or was double-forked, is killed when the job ends, is
cancelled or is released.

The worker creates ``<cgroup_root>/<work dir name>`` (a directory owned by the worker, like
every file in it, so the job's account can write to none of them), puts the job's wrapper in
it before the wrapper runs anything of the job (the zygote's child waits for the worker's
word; a wrapper the worker starts itself writes itself into it before switching to the
account), and at the end kills everything in it and removes it (:meth:`JobCgroups.kill`).
Each zygote runs in ``<cgroup_root>/zygote.<worker pid>.<uid>.<gid>``, joined the same way
and killed whole when the zygote is closed: a process a job makes its zygote fork (it may
trace it: same uid) never runs outside the tree.
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

Costs per job: one ``mkdir``, one write of the wrapper's pid, one ``rmdir`` (the cgroup is
usually empty at release: the wrapper kills its session); the kill and its loop only when
something is left.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

from wmproxy.errors import WMProxyError

log = logging.getLogger(__name__)

#: Seconds :meth:`JobCgroups.kill` waits for a cgroup to empty before it gives up (logged; the
#: next :meth:`JobCgroups.sweep` tries again).
KILL_DEADLINE = 10.0
PROBE_PREFIX = ".probe."


class CgroupError(WMProxyError):
    """The cgroup root is unusable, or a job's cgroup could not be made or joined."""


class JobCgroups:
    """The job cgroups below ``root`` (:meth:`check` first).

    Args:
        root: a directory of a cgroup v2 hierarchy, or of a cgroup v1 ``freezer``
            hierarchy, owned by the worker's user and not writable by group or others.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = os.path.abspath(root)
        self.version = 0
        self.kill_file: str | None = None  # v2 cgroup.kill
        self.freeze_file = ""  # cgroup.freeze (v2) or freezer.state (v1)
        self._frozen = b""
        self._thawed = b""

    def check(self) -> None:
        """Find the hierarchy's kind and check that the worker can create, use and remove a
        cgroup below the root (a probe cgroup, removed again).

        Raises:
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
        probe = os.path.join(self.root, f"{PROBE_PREFIX}{secrets.token_hex(4)}")
        try:
            os.mkdir(probe, 0o755)
        except OSError as exc:
            raise CgroupError(f"cannot create a cgroup in {self.root}: {exc.strerror}") from None
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
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(probe)

    def path(self, name: str) -> str:
        """The cgroup directory of the job whose work dir is ``name``."""
        return os.path.join(self.root, name)

    def procs(self, name: str) -> str:
        """Its ``cgroup.procs`` (what a process is written to, to join it)."""
        return os.path.join(self.root, name, "cgroup.procs")

    def exists(self, name: str) -> bool:
        """Whether the cgroup ``name`` is there."""
        return os.path.isdir(self.path(name))

    def holds(self, name: str, pid: int) -> bool:
        """Whether the process ``pid`` is in the cgroup ``name`` (its ``cgroup.procs``)."""
        return pid in _members(self.path(name))

    def create(self, name: str) -> None:
        """Make the job's cgroup (mode 0755, the worker's: the job may write to none of its
        files); one left by an earlier attempt is emptied (:meth:`kill`) and reused.

        Raises:
            CgroupError: it cannot be made.
        """
        try:
            os.mkdir(self.path(name), 0o755)
        except FileExistsError:
            self.empty(name)
        except OSError as exc:
            raise CgroupError(f"cannot create the job's cgroup {self.path(name)}: {exc.strerror}") from None

    def add(self, name: str, pid: int) -> None:
        """Move ``pid`` into the job's cgroup.

        Raises:
            CgroupError: it could not be moved (gone, or not allowed).
        """
        try:
            fd = os.open(self.procs(name), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise CgroupError(f"cannot put the job's wrapper in its cgroup {self.path(name)}: "
                              f"{exc.strerror or exc}") from None

    def kill(self, name: str, *, deadline: float = KILL_DEADLINE) -> bool:
        """Kill every process of the job's cgroup and remove it. A cgroup already empty is
        just removed (one ``rmdir``); else it is killed (``cgroup.kill``, or frozen, each
        member SIGKILLed, thawed) until it is empty, for up to ``deadline`` seconds.

        Returns:
            True when the cgroup is gone (or was never there); False when it could not be
            emptied in time (logged; :meth:`sweep` tries again).
        """
        path = self.path(name)
        end = time.monotonic() + deadline
        pause = 0.001
        while True:
            try:
                os.rmdir(path)
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.warning("cannot remove the job cgroup %s: %s", path, exc.strerror or exc)
                    return False
            if time.monotonic() >= end:
                log.warning("the job cgroup %s still holds processes after %g s; it is killed again later",
                            path, deadline)
                return False
            self._kill_members(path)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def empty(self, name: str) -> None:
        """Kill what is in the job's cgroup but keep it (an earlier attempt's).

        Raises:
            CgroupError: it could not be emptied in time.
        """
        path = self.path(name)
        end = time.monotonic() + KILL_DEADLINE
        while _members(path):
            if time.monotonic() >= end:
                raise CgroupError(f"the job's cgroup {path} still holds processes of an earlier attempt")
            self._kill_members(path)
            time.sleep(0.01)

    def _kill_members(self, path: str) -> None:
        if self.kill_file is not None:
            with contextlib.suppress(OSError):
                _write(os.path.join(path, self.kill_file), b"1")
            return
        freeze = os.path.join(path, self.freeze_file)
        with contextlib.suppress(OSError):
            _write(freeze, self._frozen)  # no fork races the kills below
        for pid in _members(path):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            _write(freeze, self._thawed)  # a frozen process dies only once thawed

    def sweep(self, keep: set[str] | None = None, is_live: Callable[[str], bool] | None = None) -> int:
        """Kill and remove the job cgroups below the root whose name is not in ``keep`` and
        for which ``is_live(name)`` (if given) is false: those of jobs that ended while no
        worker followed them, and probes a killed worker left. Returns how many were removed.
        Never raises."""
        try:
            names = [entry.name for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False)]
        except OSError as exc:
            log.warning("cannot list the cgroup root %s: %s", self.root, exc.strerror or exc)
            return 0
        removed = 0
        for name in names:
            if keep is not None and name in keep:
                continue
            if is_live is not None and not name.startswith(PROBE_PREFIX) and is_live(name):
                continue
            if self.kill(name):
                removed += 1
        return removed


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


def check_root(root: Path | str) -> JobCgroups:
    """:class:`JobCgroups` of ``root``, checked (:meth:`JobCgroups.check`).

    Raises:
        CgroupError: why the root is unusable.
    """
    cgroups = JobCgroups(Path(root))
    cgroups.check()
    return cgroups
