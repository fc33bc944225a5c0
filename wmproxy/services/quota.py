"""getTotalQuota and getFreeQuota: per-user limits on sandbox bytes (``wmproxy-behaviour.md`` §4.4).

The reference asked the Linux disk quota of the mapped user's home; this service keeps
its own per-user limits on the bytes a user's job areas hold (``[jobs] quota_soft_limit``
and ``quota_hard_limit``). Uploads beyond the hard limit are refused (HTTP 413).

Quotas are off when ``quota_hard_limit`` is 0 (the default): both operations then answer
:data:`NO_QUOTA`, ``(-1, -1)``, what the reference answered when it found no quota system,
user or device; it never produced GetQuotaManagementFault (§4.4). The gLite UI takes a limit
≤ 0 for "no quota" and checks the input sandbox against getMaxInputSandboxSize alone. A soft
limit without a hard one leaves quotas off too: the service enforces only the hard limit, and
a soft limit it would not enforce is not announced to clients.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from sqlalchemy.exc import SQLAlchemyError

from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import QuotaExceededError, SandboxError
from wmproxy.sandbox.storage import Retirement
from wmproxy.sandbox.trees import RemovalPaused
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork, database_reason
from wmproxy.store.schema import Job

log = logging.getLogger(__name__)

#: JDL ``Environment`` variable with a job's own output sandbox limit in bytes (the reference's
#: JobWrapper read it; a value that is not a positive integer sets none).
JOB_OSB_LIMIT = "GLITE_LOCAL_MAX_OSB_SIZE"


#: ``(soft, hard)`` of getTotalQuota and getFreeQuota when quotas are off (§4.4).
NO_QUOTA = (-1, -1)


def _limits(rt: Runtime) -> tuple[int, int] | None:
    """``(soft, hard)`` in bytes (a soft limit of 0 is the hard one); None when quotas are off."""
    jobs = rt.settings.jobs
    if jobs.quota_hard_limit <= 0:
        return None
    return jobs.quota_soft_limit or jobs.quota_hard_limit, jobs.quota_hard_limit


def used_bytes(rt: Runtime, owner_dn: str) -> int:
    """Bytes held by the sandbox areas of ``owner_dn``'s jobs: the usage counter, kept by
    every change of those bytes (:func:`change_usage`, :func:`count_output`,
    :func:`release_area`), one row read whatever the number of jobs."""
    with rt.uow() as uow:
        return uow.usage.used(owner_dn)


def change_usage(rt: Runtime, owner_dn: str, delta: Callable[[], int], apply: Callable[[], None]) -> None:
    """Run ``apply()`` (the rename or unlink that changes ``owner_dn``'s bytes by ``delta()``)
    in the transaction that adds ``delta()`` to the usage counter. The counter row is locked
    first, and ``delta()`` is called once it is: it reads the sizes on disk (of the file an
    upload replaces, or a delete removes) while no other change of the user's bytes can run, so
    concurrent changes of one file never count the same bytes twice, and concurrent uploads of
    one user are checked against the quota in turn.

    Raises:
        QuotaExceededError: quotas are on and ``delta()`` > 0 would take the user over the
            hard limit (nothing is applied).
        Whatever ``delta()`` or ``apply()`` raises (nothing is counted).
    """
    hard = rt.settings.jobs.quota_hard_limit
    with rt.uow() as uow:
        used = uow.usage.used(owner_dn, for_update=True)
        change = delta()
        if change > 0 and hard > 0 and used + change > hard:
            raise QuotaExceededError(
                f"The upload exceeds the user's disk quota: {used} of {hard} bytes used, {change} more asked"
            )
        uow.usage.add(owner_dn, change, utcnow())
        apply()


def count_output(rt: Runtime, job_id: str) -> None:
    """Add the bytes of a job's collected output sandbox to its owner's counter (once, when
    the execution worker has collected it); an unknown job is ignored."""
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        if job is not None:
            uow.usage.add(job.owner_dn, rt.storage.output_bytes(job_id), utcnow())


def output_budget(rt: Runtime, job_id: str, environment: Iterable[str],
                  pending: Mapping[str, int] | None = None) -> tuple[int, str] | None:
    """Bytes the execution worker may collect into ``job_id``'s output sandbox, and what sets
    them: the smallest of ``[limits] max_output_sandbox_size``, what is left of the owner's
    ``[jobs] quota_hard_limit`` (quotas on; the job's input is counted already, its output not
    yet) and :data:`JOB_OSB_LIMIT` in the job's ``environment`` (JDL ``Environment`` entries,
    ``NAME=value``); None when none applies. A job can only lower its budget.

    The owner's counter grows only when an end is recorded (:func:`~wmproxy.services.retries.end_attempts`,
    with :attr:`~wmproxy.services.retries.AttemptEnd.output_bytes`), after the worker has
    collected the outputs of all the jobs ending in its cycle. ``pending`` (job id → bytes) is
    what the calling worker has collected and not yet recorded (earlier in the cycle, or ends
    it still holds, unrecorded); those of jobs of the same owner are taken off the remainder
    too (one more query, only when ``pending`` names other jobs), so N jobs of one owner ending
    in one cycle of one worker share the remainder instead of each getting all of it.

    Nothing is reserved in the database: two workers ending jobs of the same owner at the same
    moment each read the counter before the other's end is recorded, so together they can
    still pass the hard quota, by at most one budget (what is left) per other worker ending a job
    of that owner at that moment. Recorded ends count their bytes, so the next budget is
    smaller by all of them (0 once the quota is passed).

    When the database fails (an outage), the owner's quota is left out (logged): the end must
    not wait for the database, whose outage the ends journal bridges; the recorded end counts
    the bytes, so the quota is passed by at most this one budget.
    """
    limits: list[tuple[int, str]] = []
    if (site := rt.settings.limits.max_output_sandbox_size) > 0:
        limits.append((site, "the site's output sandbox limit"))
    for entry in environment:
        name, sep, value = entry.partition("=")
        if sep and name == JOB_OSB_LIMIT:
            try:
                own = int(value.strip())
            except ValueError:
                log.info("job %s: %s=%r is not a number of bytes: ignored", job_id, JOB_OSB_LIMIT, value[:40])
                continue
            if own > 0:
                limits.append((own, f"the job's {JOB_OSB_LIMIT}"))
    hard = rt.settings.jobs.quota_hard_limit
    if hard > 0:
        try:
            with rt.uow() as uow:
                job = uow.jobs.get(job_id)
                used = 0
                if job is not None:
                    used = uow.usage.used(job.owner_dn)
                    others = {other: n for other, n in (pending or {}).items() if other != job_id and n > 0}
                    if others:
                        used += sum(others[other] for other in uow.jobs.of_owner(job.owner_dn, list(others)))
        except SQLAlchemyError as exc:
            # An outage must not hold the job's end: its outputs are collected and the end kept
            # for the database (the ends journal), within the limits that need no database.
            log.warning("job %s: the owner's disk quota left out of its output budget, the database failed (%s)",
                        job_id, database_reason(exc))
        else:
            limits.append((max(0, hard - used), "the owner's disk quota"))
    return min(limits, key=lambda limit: limit[0]) if limits else None


def release_area(uow: UnitOfWork, rt: Runtime, owner_dn: str, job_id: str) -> None:
    """Remove a job area with ``uow``'s transaction and take its bytes off ``owner_dn``'s counter.

    The counter row is locked first, as the sandbox edge locks it around each upload's commit:
    an upload renamed into place between the area's count and its removal would otherwise stay
    on the counter for good (PostgreSQL; SQLite's write lock orders the two anyway).

    In the transaction the area is only moved aside
    (:meth:`~wmproxy.sandbox.storage.FilesystemSandboxStorage.retire_job_area`): it is deleted
    once the transaction has committed, and put back when the transaction ends in an exception
    (before the rollback lets the counter row go). The counter row's lock orders the move after
    an upload's commit, which renames its file into place in the counter's transaction; an
    upload still streaming writes into the moved area, and its rename into place then fails.
    A process killed in between (or a commit that failed) leaves it aside, for the purger's next
    pass (:mod:`wmproxy.services.purge`, first thing): deleted when the job's row is gone or its
    bytes are off the counter already (:func:`area_released`), else put back. Deleted before the
    commit, a process killed before the commit left the row and the bytes on the counter, and the
    next removal found no files to take off it."""
    release_areas(uow, rt, owner_dn, [job_id])


def release_areas(uow: UnitOfWork, rt: Runtime, owner_dn: str, job_ids: Sequence[str], *,
                  cleared: bool = False, deadline: float | None = None) -> Retirement:
    """:func:`release_area` of several jobs of ``owner_dn`` (a compound job and its nodes):
    the counter row locked once and their bytes taken off it together.

    The areas are moved aside as one :class:`~wmproxy.sandbox.storage.Retirement`, whose lock
    (one file, one descriptor, however many areas) is held from before the first move until
    every area is deleted or back: the row locks go at the commit, before the deletes, and a
    purge pass starting then took the areas still aside for leftovers (a cancelled job's put
    back, half deleted, its bytes already off the counter). Remove a compound job's areas with
    one call, not one per node: each call holds a descriptor until the transaction has ended.

    The jobs' rows are locked by the caller. An area found aside instead of in place, by a
    removal that did not commit, is counted and released
    (:meth:`~wmproxy.sandbox.storage.FilesystemSandboxStorage.retire_job_area` ``left_aside``),
    unless ``cleared``: the jobs' bytes are off the counter already (:func:`area_released`), and
    an area found aside is a committed removal's leftover.

    ``deadline`` (``time.monotonic()`` seconds; the purge pass's end) bounds the deletes after the
    commit: once it has passed they stop, inside an area, and the areas not yet deleted (the one
    it was in, part deleted, and those after it) stay aside, in the returned retirement's
    ``left``, for the purger's next passes to finish
    (:func:`wmproxy.services.purge.purge` ``unfinished``). They are a committed removal's
    leftovers, whose bytes are off the counter: a pass deletes them (their job is gone or
    :func:`area_released`), never puts them back. None (a request thread: jobPurge, jobCancel)
    deletes them all.

    Returns:
        The removal's retirement: its ``left`` is filled once the transaction has committed."""
    uow.usage.used(owner_dn, for_update=True)
    retirement = Retirement()
    uow.on_outcome(functools.partial(_discard, rt, retirement, deadline),
                   functools.partial(_restore, rt, retirement),
                   functools.partial(rt.storage.end_retirement, retirement))
    freed = 0
    for job_id in job_ids:
        freed += rt.storage.retire_job_area(job_id, retirement, left_aside=not cleared)[0]
    uow.usage.add(owner_dn, -freed, utcnow())
    return retirement


def area_released(uow: UnitOfWork, job: Job) -> bool:
    """Whether the bytes of ``job``'s area (a job, or a node of a compound job) are off its owner's
    counter already: the job is Cleared (purged), or its owner (the job, or its compound job) ended
    without ever being started, which released the areas (:mod:`wmproxy.services.jobs`): a simple
    job Cancelled while Submitted, a compound job Cancelled as a whole while Submitted, or ended
    (Cancelled or Aborted, ``end_unstarted``) when its last node was cancelled alone (its
    dependants Aborted below it). An area of such a job found aside (``.purging-*``) is the
    leftover of a removal that committed: deleted, never counted again. Reads the history of the
    owner for its start: a state change to Waiting
    (:meth:`~wmproxy.store.jobs.SqlJobStore.ever_enqueued`; an ``enqueued`` event, or a ``state``
    one for a job whose history was written before migration 0008: the ``enqueued`` kind alone
    took such a job, started and cancelled, for never started).

    Aborted counts for a compound job only: no path aborts a never-started simple job, and one
    that did would not release its area. A compound job never started that ended Aborted was
    taken for unreleased: a leftover of its committed removal was put back and taken off the
    counter a second time by its purge."""
    if job.state == JobState.CLEARED.value:
        return True
    ended = (JobState.CANCELLED.value, JobState.ABORTED.value)
    if job.state not in ended:
        return False
    owner = job if job.parent_id is None else uow.jobs.get(job.parent_id)
    if owner is None or owner.state not in ended or uow.jobs.ever_enqueued(owner.id):
        return False
    return owner.state == JobState.CANCELLED.value or owner is not job or uow.jobs.has_children_in(owner.id, ended)


def _discard(rt: Runtime, retirement: Retirement, deadline: float | None) -> None:
    for n, retired in enumerate(retirement.areas):
        rt.storage.touch_retirement(retirement)  # alive: without flock, a pass reads it
        try:
            rt.storage.discard_area(retired, retirement=retirement, deadline=deadline)
        except RemovalPaused:  # the rest is the purger's next passes' (the caller's report)
            retirement.left = retirement.areas[n:]
            log.info("sandbox area %s part deleted at the end of the pass's time, %d area(s) left aside for the "
                     "next passes", retired, len(retirement.left))
            return
        except SandboxError as exc:  # the transaction has committed: the purger's next pass deletes it
            log.warning("%s", exc)


def _restore(rt: Runtime, retirement: Retirement) -> None:
    for retired in reversed(retirement.areas):
        rt.storage.touch_retirement(retirement)
        try:
            rt.storage.restore_area(retired)
        except SandboxError as exc:  # the purger's next pass tries again
            log.warning("%s", exc)


def recount_usage(rt: Runtime, owner_dn: str | None = None) -> dict[str, int]:
    """Recount the usage counters from the disk: walk the job areas of every live (not
    Cleared) job of ``owner_dn`` (default: of every owner with jobs or a counter) and set
    the counter to what they hold. For ``wmproxy-admin`` after a crash or a manual change
    in the sandbox area; each owner's row is locked while it is counted.

    Returns ``{owner DN: bytes}`` of the owners recounted.
    """
    with rt.uow() as uow:
        owners = [owner_dn] if owner_dn is not None else sorted(set(uow.jobs.owners()) | set(uow.usage.owners()))
    counted: dict[str, int] = {}
    for owner in owners:
        with rt.uow() as uow:
            uow.usage.used(owner, for_update=True)
            job_ids = [job.id for job in uow.jobs.owned_by(owner) if job.state != JobState.CLEARED.value]
            total = sum(rt.storage.counted_bytes(job_id) for job_id in job_ids)
            uow.usage.set(owner, total, utcnow())
            counted[owner] = total
    return counted


def total_quota(rt: Runtime, principal: Principal) -> tuple[int, int]:
    """getTotalQuota: ``(soft, hard)`` limits in bytes; :data:`NO_QUOTA` when quotas are off."""
    limits = _limits(rt)
    return NO_QUOTA if limits is None else limits


def free_quota(rt: Runtime, principal: Principal) -> tuple[int, int]:
    """getFreeQuota: ``(soft − used, hard − used)`` in bytes (negative when over the soft limit);
    :data:`NO_QUOTA` when quotas are off (the usage counter is not read)."""
    limits = _limits(rt)
    if limits is None:
        return NO_QUOTA
    soft, hard = limits
    used = used_bytes(rt, principal.dn)
    return soft - used, hard - used


def upload_room(rt: Runtime, owner_dn: str) -> int | None:
    """Bytes ``owner_dn`` may still upload under the hard quota; None when quotas are off."""
    if rt.settings.jobs.quota_hard_limit <= 0:
        return None
    return max(0, rt.settings.jobs.quota_hard_limit - used_bytes(rt, owner_dn))
