"""The purger as a periodic task of the execution worker (``[purge]``; the rules are in
``wmproxy.services.purge``). The worker runs it because it may remove job work dirs
(``identity.remove_work_dir``), which belong to the mapped accounts. With mapping on, the
same interval releases idle pool leases (``wmproxy.services.mapping.release_idle_leases``),
keeping the accounts that still run processes or own leftovers (files in the shared temporary
directories, System V IPC objects) on the worker's host."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from wmproxy.domain import utcnow
from wmproxy.execution.identity import remove_work_dir
from wmproxy.execution.processes import uids_with_processes
from wmproxy.execution.worker import PeriodicTask
from wmproxy.services.mapping import release_idle_leases
from wmproxy.services.purge import Unfinished, purge
from wmproxy.services.runtime import Runtime

log = logging.getLogger(__name__)


def purge_tasks(rt: Runtime, *, clock: Callable[[], dt.datetime] = utcnow) -> list[PeriodicTask]:
    """``[PeriodicTask]`` purging, and releasing idle pool leases when jobs are mapped, every
    ``[purge] interval`` seconds; none when the purge is disabled. A purge pass cut short
    (``[purge] pass_time``) leaves its task due at once, the next pass going on after the last
    job it tried (``resume_after``); such a pass settles the sandbox areas' leftovers when the
    last pass that did is ``interval`` old (``settled_at``, kept here: in a backlog that never
    ends, no pass would). A pass whose time ran out inside a removal (a large sandbox area or
    work dir part removed) leaves its task due at once too, the next pass finishing it first
    (``unfinished``). ``clock``: each pass's ``now``."""
    policy = rt.settings.purge
    if not policy.enabled:
        return []
    remover = functools.partial(remove_work_dir, Path(rt.settings.execution.work_dir))

    resume_after: list[tuple[dt.datetime, str] | None] = [None]
    settled_at: list[dt.datetime | None] = [None]
    unfinished = [Unfinished()]

    def purge_pass() -> None:
        report = purge(rt, now=clock(), remove_work_dir=remover, resume_after=resume_after[0],
                       settled_at=settled_at[0], unfinished=unfinished[0])
        resume_after[0] = report.resume_after  # None after a pass that ended the backlog
        settled_at[0] = report.settled_at
        unfinished[0] = report.unfinished
        if report.cut_short or report.unfinished:  # jobs still due, or a removal to finish: the next cycle goes on
            task.due = 0.0

    task = PeriodicTask("purging old jobs and credentials", policy.interval, purge_pass)
    tasks = [task]
    if rt.settings.mapping.mode != "none":
        tasks.append(PeriodicTask("releasing idle pool leases", policy.interval, lambda: release_leases(rt)))
    return tasks


def release_leases(rt: Runtime) -> int:
    """Release the idle pool leases (:func:`~wmproxy.services.mapping.release_idle_leases`) but
    those of accounts with a process or a leftover on this host (:func:`accounts_with_leftovers`):
    a job's process that left its session survives the job, as do its files in ``/tmp`` or
    ``/dev/shm`` and its shared memory segments, and the account's next user must not find them.
    Returns how many."""
    with rt.uow() as uow:
        return release_idle_leases(uow, rt, utcnow(), keep=accounts_with_leftovers())


def accounts_with_processes() -> set[str]:
    """Names of the accounts that own a process on this host now by any of its uids (real,
    effective, saved, file system), zombies included
    (:func:`wmproxy.execution.processes.uids_with_processes`): a process whose main thread has
    ended alone shows as a zombie while its other threads run, and a zombie that is really
    done keeps a lease only until it is reaped."""
    return _names(uids_with_processes())


#: Directories every account may write in and that outlive a job: what an account owns at their
#: top (a file, a directory, a socket) keeps its pool lease (the site's tmpfiles / tmpwatch
#: clean-up then releases it).
SHARED_TEMPORARY_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")  # noqa: S108 - only read: who owns their entries
#: System V IPC tables (``/proc/sysvipc``): an object's owner and creator keep their leases.
_SYSVIPC = ("/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg")


def accounts_with_leftovers() -> set[str]:
    """Names of the accounts that own a process (:func:`accounts_with_processes`), an entry at
    the top of one of :data:`SHARED_TEMPORARY_DIRS` (the worker's view: its unit's private
    ``/tmp`` is its jobs' ``/tmp``) or a System V IPC object on this host: what a job of the
    account left there could be read, or used, by the account's next user. A directory that
    cannot be read is skipped (logged)."""
    uids = set(uids_with_processes())
    for directory in SHARED_TEMPORARY_DIRS:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        uids.add(entry.stat(follow_symlinks=False).st_uid)
                    except OSError:  # gone meanwhile
                        continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("pool leases: %s cannot be read for leftovers of the accounts: %s", directory, exc)
    for table in _SYSVIPC:
        uids.update(_ipc_owners(table))
    return _names(uids)


def _ipc_owners(table: str) -> set[int]:
    """The ``uid`` and ``cuid`` columns of a ``/proc/sysvipc`` table (named by its header line)."""
    try:
        with open(table) as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    if not lines:
        return set()
    header = lines[0].split()
    columns = [header.index(name) for name in ("uid", "cuid") if name in header]
    owners = set()
    for line in lines[1:]:
        fields = line.split()
        for column in columns:
            if column < len(fields) and fields[column].isascii() and fields[column].isdigit():
                owners.add(int(fields[column]))
    return owners


def _names(uids: set[int]) -> set[str]:
    names = set()
    for uid in uids:
        try:
            names.add(pwd.getpwuid(uid).pw_name)
        except KeyError:
            continue
    return names
