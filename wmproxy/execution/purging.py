"""The purger as a periodic task of the execution worker (``[purge]``; the rules are in
``wmproxy.services.purge``). The worker runs it because it may remove job work dirs
(``identity.remove_work_dir``), which belong to the mapped accounts. With mapping on, the
same interval releases idle pool leases (``wmproxy.services.mapping.release_idle_leases``),
keeping the accounts that still run processes on the worker's host."""

from __future__ import annotations

import datetime as dt
import functools
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
    those of accounts with a process left on this host: a job's process that left its session
    survives the job, and the account's next user must not find it. Returns how many."""
    with rt.uow() as uow:
        return release_idle_leases(uow, rt, utcnow(), keep=accounts_with_processes())


def accounts_with_processes() -> set[str]:
    """Names of the accounts that own a process on this host now by any of its uids (real,
    effective, saved, file system), zombies included
    (:func:`wmproxy.execution.processes.uids_with_processes`): a process whose main thread has
    ended alone shows as a zombie while its other threads run, and a zombie that is really
    done keeps a lease only until it is reaped."""
    names = set()
    for uid in uids_with_processes():
        try:
            names.add(pwd.getpwuid(uid).pw_name)
        except KeyError:
            continue
    return names
