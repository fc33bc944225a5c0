"""Lifecycle: the purger removes what the service no longer needs (the reference's
``glite-wms-purgeStorage.sh`` and its forced Sunday run, CREAM's purge of REGISTERED jobs,
the proxy cache purge).

One pass (:func:`purge`), with the ``[purge]`` policy (defaults from anchors.md §1.5):

* **jobs** (a compound job with its nodes), oldest first, read ``batch`` at a time until none
  is left or the pass has run ``pass_time`` (the clock is read after each job: then it is cut
  short, and the next pass, which the execution worker runs at once, goes on after the last job
  this one tried: ``resume_after``); a job whose removal fails is reported and the pass goes on
  past it. ``pass_time`` bounds this part, between jobs and inside the deletes of their areas:
  the transaction of the job being removed when it runs out is finished (a compound job with all
  its nodes' rows and areas, counted and moved aside, which are not split, or a crash would leave
  a job half removed), so the part runs over by at most that one transaction; the deletes of its
  areas after the commit stop inside an area (:func:`~wmproxy.sandbox.trees.remove_tree`
  ``deadline``), and what is left (``.purging-*``, its bytes off the counter) is the report's
  ``unfinished``, which the next pass (the execution worker's next cycle) finishes first. The
  settling of leftovers and the removal of work dirs stop at the same time, the same way. The
  other parts are not timed (the listing of the areas in a round's first pass and once an
  ``interval`` in a backlog, the orphan and work dir walks in the pass that ends the backlog,
  the credentials in every pass but one that only finishes another's: ``benchmarks/purge_orphan_walk.py``):
  ``final`` — Done, Aborted, Cancelled or Cleared and unchanged for ``final_age`` (7 days);
  ``registered`` — never started (Submitted: a jobRegister without jobStart, or an
  interrupted jobSubmit whose id the user never saw) for ``registered_age`` (2 days);
  ``forced`` — unchanged for ``forced_age`` (15 days; the reference's Sunday run, which counts
  from the job's last update too), whatever the state, except a job a
  worker is running (Waiting, Ready, Scheduled, Running: its worker owns its processes;
  it is purged once it has ended). Each removal deletes the sandbox area, the row, the
  nodes, events, queue entries and ACL, logs one line and leaves a tombstone
  (``purged_jobs``), so the job id answers JobUnknownFault "... or it has been purged";
* **work dirs** under ``[execution] work_dir`` whose job is gone, or ended ``final_age``
  ago (left by a crash), when the caller can remove them (the execution worker);
* **sandbox areas** moved aside by a removal whose process died before it was done
  (``.purging-*``, :func:`wmproxy.services.quota.release_area`): deleted when their job is
  gone or Cleared, else put back, but left to a removal that holds their lock (one that has
  committed and is deleting them; on a file system without ``flock``, one whose lock file changed
  within :data:`~wmproxy.sandbox.storage.UNLOCKED_RETIREMENT_AGE`), and the lock files no
  removal holds, in a round's first pass (and once an ``interval`` in a backlog that does
  not end); and job areas that
  no job has, unchanged for ``registered_age`` (left by a registration killed before its
  commit);
* **delegations** expired ``delegation_grace`` ago that no unfinished job uses, with their
  renewal records; renewal records whose delegation is gone (destroyed) that no unfinished
  job uses;
* **pending delegation requests** older than ``request_age``;
* **tombstones** older than ``tombstone_age`` (0: kept);
* **inspection requests** asked ``[inspection] retention`` ago
  (:func:`wmproxy.services.inspection.retention_cutoff`), oldest first, ``batch`` a statement,
  until fewer come back or the pass's time has run out (at least one statement a pass).

Several workers may run it at once: each job is removed under its row lock, and
removing what is already gone is not an error.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wmproxy.domain import ACTIVE_STATES, FINAL_STATES, JobState, job_fan_out, parse_job_id, to_filename, utcnow
from wmproxy.errors import InvalidArgumentError, SandboxError, WMProxyError
from wmproxy.sandbox.trees import RemovalPaused
from wmproxy.services.inspection import retention_cutoff
from wmproxy.services.quota import area_released, release_areas
from wmproxy.services.runtime import Runtime
from wmproxy.store.housekeeping import PurgeCandidate, SqlHousekeepingStore
from wmproxy.store.inspections import SqlInspectionStore

log = logging.getLogger(__name__)

#: Why each rule purges, as logged and kept in the tombstone.
RULE_REASONS = {
    "final": "ended more than {final_age} ago",
    "registered": "registered more than {registered_age} ago and never started",
    "forced": "unchanged for more than {forced_age} (forced purge)",
}


class RemoveWorkDir(Protocol):
    """Removes ``<work root>/<name>`` (the execution worker's ``identity.remove_work_dir``); with
    ``deadline`` (``time.monotonic()`` seconds) it stops once it passed, inside the tree, raising
    :class:`~wmproxy.sandbox.trees.RemovalPaused` (call it again to go on)."""

    def __call__(self, name: str, *, deadline: float | None = None) -> None: ...


_ESCAPE = re.compile(r"_([0-9a-f]{2})")


def job_id_of_work_dir(name: str) -> str:
    """The job id a work dir is named after (inverse of :func:`wmproxy.domain.to_filename`)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def _job_of_dir(name: str) -> str | None:
    """The job id a job area or work dir is named after; None when ``name`` is no job's."""
    job_id = job_id_of_work_dir(name)
    if to_filename(job_id) != name:
        return None
    try:
        parse_job_id(job_id)
    except InvalidArgumentError:
        return None
    return job_id


def _is_job_dir(name: str) -> bool:
    return _job_of_dir(name) is not None


def _span(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


@dataclass
class Unfinished:
    """What a pass's time (``pass_time``) ran out inside, or before, for the next pass to finish
    first (:func:`purge` ``unfinished``): ``areas``, sandbox areas aside (``.purging-*``: of a
    removal that committed, part deleted or whole, or leftovers the pass had no time to settle),
    settled as the round's first pass settles them (:func:`_settle_retired`); ``work_dirs``,
    names below the work root the pass found due (their job gone, or ended ``final_age`` ago).
    Lost with the worker (a restart): the next round's first pass and its last one find them."""

    areas: list[Path] = field(default_factory=list)
    work_dirs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.areas or self.work_dirs)


@dataclass
class PurgeReport:
    """What one pass removed (or, in a dry run, would remove); ``cut_short`` when its time
    (``pass_time``) ran out with jobs still due, and then ``resume_after``, where the next pass
    goes on (the last job tried: its last change and id), else None. ``settled_at``: when the
    sandbox areas were last listed and their leftovers settled (this pass's ``now`` when it did,
    else the ``settled_at`` it was given), for the next pass going on after it. ``unfinished``:
    what its time ran out inside (a sandbox area or work dir part removed) or before, for the
    next pass, which the execution worker then runs at its next cycle."""

    dry_run: bool
    jobs: list[PurgeCandidate] = field(default_factory=list)
    work_dirs: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    delegations: list[tuple[str, str]] = field(default_factory=list)
    renewals: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0
    tombstones: int = 0
    inspections: int = 0
    errors: list[str] = field(default_factory=list)
    cut_short: bool = False
    resume_after: tuple[dt.datetime, str] | None = None
    settled_at: dt.datetime | None = None
    unfinished: Unfinished = field(default_factory=Unfinished)

    @property
    def empty(self) -> bool:
        return not (self.jobs or self.work_dirs or self.areas or self.delegations or self.renewals or self.requests
                    or self.tombstones or self.inspections)


def purge(rt: Runtime, *, dry_run: bool = False, now: dt.datetime | None = None,
          remove_work_dir: RemoveWorkDir | None = None,
          resume_after: tuple[dt.datetime, str] | None = None,
          settled_at: dt.datetime | None = None, unfinished: Unfinished | None = None) -> PurgeReport:
    """One purge pass with ``rt.settings.purge`` (see the module doc).

    Args:
        rt: the process runtime.
        dry_run: only report what would go.
        now: the time to measure ages from (UTC; default now).
        remove_work_dir: removes ``<work root>/<name>`` (the execution worker's
            ``identity.remove_work_dir``); None leaves work dirs alone.
        resume_after: the ``resume_after`` of the previous pass, cut short: this one reads the
            jobs after it (those before wait for the pass after the one that ends the backlog).
            Starting again from the oldest, a pass cut short among jobs whose removal fails
            (or is slow) would stop there every time, the jobs after them never reached.
            Such a pass neither lists the sandbox areas nor settles their leftovers (the round's
            first pass did: at 100,000 areas the listing alone took about 2 s, in every pass of
            a backlog); the one that ends the backlog lists them for its orphan walk.
        settled_at: with ``resume_after``, the ``settled_at`` of the previous pass: a pass going
            on after one cut short lists the areas and settles their leftovers too when they
            were last settled ``[purge] interval`` or more before ``now`` (in a backlog that never
            ends no pass starts a round, and a leftover was never settled: an area put back
            never purged, one of a committed removal never deleted); None, never.
        unfinished: the ``unfinished`` of the previous pass, finished first, within this
            pass's time (a sandbox area of a committed removal stopped at the previous pass's
            end, inside: a compound job of 10,000 nodes of 10,000 files each took minutes).
            When the time runs out again, the rest is this pass's ``unfinished`` and the pass
            ends there (as the previous one, ``cut_short`` and ``resume_after``); when the
            previous pass had ended its round (``resume_after`` None) this one ends once they
            are done (the next round starts an ``interval`` later).

    Returns:
        The report; a failure on one item is in ``errors`` and the pass goes on.
    """
    policy = rt.settings.purge
    ends = time.monotonic() + policy.pass_time
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run)
    final_before = now - dt.timedelta(seconds=policy.final_age)
    areas = None
    report.settled_at = settled_at
    if unfinished and not dry_run:
        _finish(rt, report, unfinished, ends, remove_work_dir)
        if report.unfinished or resume_after is None:  # the time has run out, or the round had ended
            report.cut_short, report.resume_after = resume_after is not None, resume_after
            return report
    if resume_after is None or (  # a round's first pass; those going on after it list the areas once an interval
            settled_at is not None and (now - settled_at).total_seconds() >= policy.interval):
        areas = rt.storage.area_dirs()
        if not dry_run:  # first: a job whose area is put back may be due now
            _settle_retired_areas(rt, report, areas, ends)
        report.settled_at = now
    _purge_jobs(rt, report, now, final_before, ends, resume_after)
    if not report.cut_short:  # these wait for the pass that ends the backlog
        _purge_orphan_areas(rt, report, rt.storage.area_dirs() if areas is None else areas, now)
        if remove_work_dir is not None:
            _purge_work_dirs(rt, report, final_before, remove_work_dir, ends)
    _purge_credentials(rt, report, now)
    _purge_inspections(rt, report, now, ends)
    return report


def purge_until_done(rt: Runtime, *, dry_run: bool = False,
                     remove_work_dir: RemoveWorkDir | None = None) -> PurgeReport:
    """Purge passes (:func:`purge`, all measuring ages from the same time) until one is not cut
    short and leaves nothing unfinished, each going on after the last job the previous one tried
    and finishing what it left: ``wmproxy-admin purge``, which runs in no worker's cycle (one
    pass stopped after ``pass_time`` without saying so).

    Returns:
        The passes' reports together (``cut_short`` False); a dry run's credentials are those
        of its last pass (each pass lists them all again).
    """
    now = utcnow()
    total = purge(rt, dry_run=dry_run, now=now, remove_work_dir=remove_work_dir)
    while total.cut_short or total.unfinished:
        report = purge(rt, dry_run=dry_run, now=now, remove_work_dir=remove_work_dir,
                       resume_after=total.resume_after, settled_at=total.settled_at, unfinished=total.unfinished)
        total.jobs += report.jobs
        total.work_dirs += report.work_dirs
        total.areas += report.areas
        total.errors += report.errors
        if dry_run:
            total.delegations, total.renewals, total.requests = report.delegations, report.renewals, report.requests
            total.inspections = report.inspections
        else:
            total.delegations += report.delegations
            total.renewals += report.renewals
            total.requests += report.requests
            total.tombstones += report.tombstones
            total.inspections += report.inspections
        total.cut_short, total.resume_after = report.cut_short, report.resume_after
        total.settled_at, total.unfinished = report.settled_at, report.unfinished
    return total


def _purge_jobs(rt: Runtime, report: PurgeReport, now: dt.datetime, final_before: dt.datetime,
                ends: float, after: tuple[dt.datetime, str] | None) -> None:
    """Remove (or, in a dry run, list) the jobs due after ``after``, oldest first, until none
    is left or the monotonic clock has passed ``ends`` after a job (``report.cut_short``, with
    ``report.resume_after`` that job).

    The candidates are read ``batch`` at a time, each read after the last one tried (keyset
    on last change, id): a job whose removal fails (reported in ``errors``) or that changed
    since it was read is passed, so a job that fails at every pass holds up neither this
    pass nor the next ones (the next pass cut short goes on after it); each round of passes
    tries it again, once.
    """
    policy = rt.settings.purge
    reasons = {rule: text.format(final_age=_span(policy.final_age), registered_age=_span(policy.registered_age),
                                 forced_age=_span(policy.forced_age)) for rule, text in RULE_REASONS.items()}
    while True:
        with rt.uow() as uow:
            candidates = SqlHousekeepingStore(uow.session).purge_candidates(
                final_states=[s.value for s in FINAL_STATES], final_before=final_before,
                forced_before=now - dt.timedelta(seconds=policy.forced_age),
                forced_spared_states=[s.value for s in ACTIVE_STATES], registered_state=JobState.SUBMITTED.value,
                registered_before=now - dt.timedelta(seconds=policy.registered_age), limit=policy.batch,
                after=after)
        for n, candidate in enumerate(candidates, 1):
            if report.dry_run:
                report.jobs.append(candidate)
            else:
                try:
                    if _purge_job(rt, report, candidate, reasons[candidate.rule], now, ends):
                        report.jobs.append(candidate)
                except (WMProxyError, OSError) as exc:
                    report.errors.append(f"job {candidate.job_id}: {exc}")
                    log.warning("purge of job %s failed: %s", candidate.job_id, exc)
            # after each job: one batch of compound jobs takes many times pass_time
            if time.monotonic() >= ends and (n < len(candidates) or len(candidates) == policy.batch):
                report.cut_short = True
                report.resume_after = (candidate.updated_at, candidate.job_id)
                log.info("purge pass cut short after %s with jobs still due: the next pass goes on after job %s",
                         _span(policy.pass_time), candidate.job_id)
                return
        if len(candidates) < policy.batch:
            return
        after = (candidates[-1].updated_at, candidates[-1].job_id)


def _purge_job(rt: Runtime, report: PurgeReport, candidate: PurgeCandidate, reason: str, now: dt.datetime,
               ends: float) -> bool:
    """Remove one job (a compound job with its nodes) in one transaction; its areas are deleted
    after the commit until ``ends``, those left (the one the time ran out in, part deleted, and
    the next ones, whole) go to ``report.unfinished`` for the next pass."""
    with rt.uow() as uow:
        store = SqlHousekeepingStore(uow.session)
        job = store.lock_job(candidate.job_id)
        if job is None or job.state != candidate.state:  # gone, or changed since it was selected
            return False
        released = area_released(uow, job)
        ids = store.remove_job(job, f"{candidate.state}: {reason}", now)
        # the bytes leave the owner's counter in this transaction (a Cleared job's left it already,
        # and a job cancelled before it started)
        retirement = release_areas(uow, rt, candidate.owner_dn, ids, cleared=released, deadline=ends)
    report.unfinished.areas += retirement.left  # committed: the rows gone, so a pass deletes them
    log.info("purged job %s of %s (state %s, %s; %d node(s))", candidate.job_id, candidate.owner_dn,
             candidate.state, reason, len(ids) - 1)
    return True


def _settle_retired_areas(rt: Runtime, report: PurgeReport, areas: list[Path], ends: float) -> None:
    """Settle the areas a removal moved aside and left there (``.purging-*``: its process died,
    or its commit failed; :func:`wmproxy.services.quota.release_area`) until ``ends``
    (:func:`_settle_until`), then the lock files of the removals that died."""
    _settle_until(rt, report, [path for path in areas if _retired_job(rt, path) is not None], ends)
    rt.storage.sweep_retirement_locks()


def _retired_job(rt: Runtime, path: Path) -> str | None:
    """The job id of the retired area ``path``; None when it is none."""
    name = rt.storage.retired_job_dir(path.name)
    return None if name is None else _job_of_dir(name)


def _settle_until(rt: Runtime, report: PurgeReport, retired: list[Path], ends: float) -> None:
    """Settle the retired areas ``retired`` (:func:`_settle_retired`) until the monotonic clock
    has passed ``ends`` (the first one whatever the time, each delete stopped inside its tree
    then): the one it ran out in and those not reached go to ``report.unfinished``."""
    for n, path in enumerate(retired):
        job_id = _retired_job(rt, path)
        if job_id is None:
            continue
        if (n and time.monotonic() >= ends) or not _settle_retired(rt, report, path, job_id, ends):
            report.unfinished.areas += retired[n:]
            log.info("purge pass out of time with %d sandbox area(s) aside still to settle: the next pass goes on",
                     len(retired) - n)
            return


def _finish(rt: Runtime, report: PurgeReport, unfinished: Unfinished, ends: float,
            remove_work_dir: RemoveWorkDir | None) -> None:
    """Finish what the previous pass left (:class:`Unfinished`) until ``ends``; what is still
    left goes to ``report.unfinished``."""
    _settle_until(rt, report, unfinished.areas, ends)
    if remove_work_dir is not None and unfinished.work_dirs:
        if report.unfinished:
            report.unfinished.work_dirs += unfinished.work_dirs
        else:
            _remove_work_dirs(rt, report, unfinished.work_dirs, remove_work_dir, ends)


def _purge_orphan_areas(rt: Runtime, report: PurgeReport, areas: list[Path], now: dt.datetime) -> None:
    """Remove the job areas no job has, unchanged for ``registered_age`` (a registration
    killed before its commit made them; one in progress is younger)."""
    policy = rt.settings.purge
    before = (now - dt.timedelta(seconds=policy.registered_age)).timestamp()
    orphans: dict[str, Path] = {}
    for path in areas:  # each one's id parsed once: about 135 us an area before (benchmarks/purge_orphan_walk.py)
        job_id = _job_of_dir(path.name)
        if job_id is None or path.parent.name != job_fan_out(job_id):
            continue  # a retired area, or not in its own fan-out directory
        try:
            if os.lstat(path).st_mtime < before:
                orphans[job_id] = path
        except FileNotFoundError:  # removed since the listing
            continue
    ids = list(orphans)
    for start in range(0, len(ids), policy.batch):
        with rt.uow() as uow:
            known = SqlHousekeepingStore(uow.session).existing_jobs(ids[start:start + policy.batch])
        for job_id in ids[start:start + policy.batch]:
            if job_id in known:
                continue
            if not report.dry_run:
                try:
                    rt.storage.discard_area(orphans[job_id])
                except SandboxError as exc:
                    report.errors.append(f"area {orphans[job_id].name}: {exc}")
                    log.warning("purge of sandbox area %s failed: %s", orphans[job_id], exc)
                    continue
                log.info("purged sandbox area %s (no job has it: a registration that did not commit)",
                         orphans[job_id])
            report.areas.append(job_id)


def _settle_retired(rt: Runtime, report: PurgeReport, path: Path, job_id: str, ends: float) -> bool:
    """Delete the area moved aside at ``path`` when its job's removal committed (the row gone,
    Cleared, or cancelled before it started: :func:`~wmproxy.services.quota.area_released`),
    else put it back (:func:`wmproxy.services.quota.release_area`). The row is
    locked first, and a node's compound job before it (a removal of nodes locks their compound
    job, not always the ended nodes): a removal still in progress ends before, and settles its
    area itself. One that has committed (its row locks gone) and is still deleting its areas (or
    putting them back) holds the lock of its retirement: the area is its own to settle.

    The delete stops once the monotonic clock has passed ``ends``, inside the area (then False:
    the area stays aside, part deleted, for the next pass, which deletes it as its job's row is
    still gone, or its bytes off the counter; an area is put back only whole, its removal not
    committed); True otherwise."""
    try:
        with rt.uow() as uow:
            store = SqlHousekeepingStore(uow.session)
            job = uow.jobs.get(job_id)
            if job is not None and job.parent_id is not None:
                store.lock_job(job.parent_id)
            job = store.lock_job(job_id)
            if not os.path.lexists(path) or rt.storage.retirement_busy(path):  # the removal that moved it settles it
                return True
            if job is None or area_released(uow, job):
                try:
                    rt.storage.discard_area(path, deadline=ends)
                except RemovalPaused:
                    log.info("sandbox area %s left aside by a removal of job %s: part deleted, the next pass goes on",
                             path, job_id)
                    return False
                log.info("purged sandbox area %s left aside by an interrupted removal of job %s", path, job_id)
            else:
                rt.storage.restore_area(path)
                log.warning("job %s (%s): its sandbox area, left aside by a removal that did not commit, is back",
                            job_id, job.state)
    except SandboxError as exc:
        report.errors.append(f"area {path.name}: {exc}")
        log.warning("settling sandbox area %s failed: %s", path, exc)
    return True


def _purge_work_dirs(rt: Runtime, report: PurgeReport, final_before: dt.datetime,
                     remove_work_dir: RemoveWorkDir, ends: float) -> None:
    root = Path(rt.settings.execution.work_dir)
    try:
        names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return
    final = {s.value for s in FINAL_STATES}
    names = [name for name in names if _is_job_dir(name)]  # nothing else in the work root is the purger's
    with rt.uow() as uow:
        jobs = {name: uow.jobs.get(job_id_of_work_dir(name)) for name in names}
    due = {name: "job gone" if job is None else f"job {job.state}" for name, job in jobs.items()
           if job is None or (job.state in final and job.updated_at < final_before)}
    if report.dry_run:
        report.work_dirs += due
    else:
        _remove_work_dirs(rt, report, list(due), remove_work_dir, ends, due)


def _remove_work_dirs(rt: Runtime, report: PurgeReport, names: list[str], remove_work_dir: RemoveWorkDir,
                      ends: float, why: dict[str, str] | None = None) -> None:
    """Remove the work dirs ``names`` (due: ``why``, logged) until the monotonic clock has passed
    ``ends`` (the first one whatever the time, stopped inside its tree then): the one it ran out
    in and those not reached go to ``report.unfinished``."""
    root = Path(rt.settings.execution.work_dir)
    for n, name in enumerate(names):
        try:
            if n and time.monotonic() >= ends:
                raise RemovalPaused()
            remove_work_dir(name, deadline=ends)
        except RemovalPaused:
            report.unfinished.work_dirs += names[n:]
            log.info("purge pass out of time with %d work dir(s) still to remove: the next pass goes on",
                     len(names) - n)
            return
        except (WMProxyError, OSError) as exc:
            report.errors.append(f"work dir {name}: {exc}")
            log.warning("purge of work dir %s failed: %s", name, exc)
            continue
        report.work_dirs.append(name)
        log.info("purged work dir %s (%s)", root / name, (why or {}).get(name, "left by the previous pass"))


def _purge_credentials(rt: Runtime, report: PurgeReport, now: dt.datetime) -> None:
    policy = rt.settings.purge
    unfinished = [s.value for s in JobState if s not in FINAL_STATES]
    requests_before = now - dt.timedelta(seconds=policy.request_age)
    with rt.uow() as uow:
        store = SqlHousekeepingStore(uow.session)
        expired_before = now - dt.timedelta(seconds=policy.delegation_grace)
        report.delegations = store.unused_expired_delegations(expired_before, unfinished, limit=policy.batch)
        report.renewals = store.orphan_renewals(unfinished)
        if report.dry_run:
            report.requests = len(store.stale_requests(requests_before))
            return
        removed = []
        for dn, delegation_id in report.delegations:  # each one checked again: a putProxy may have renewed it
            if store.remove_delegation(dn, delegation_id, expired_before, unfinished):
                removed.append((dn, delegation_id))
                log.info("purged expired delegation %s of %s (and its renewal record)", delegation_id, dn)
        report.delegations = removed
        renewals = []
        for dn, delegation_id in report.renewals:  # each one checked again: a putProxy may have stored it again
            if store.remove_renewal(dn, delegation_id, unfinished):
                renewals.append((dn, delegation_id))
                log.info("purged renewal record of %s of %s (delegation gone, no unfinished job)", delegation_id, dn)
        report.renewals = renewals
        report.requests = store.remove_requests(requests_before)
        if report.requests:
            log.info("purged %d pending delegation request(s) older than %s", report.requests,
                     _span(policy.request_age))
        if policy.tombstone_age:
            report.tombstones = store.tombstones_before(now - dt.timedelta(seconds=policy.tombstone_age))


def _purge_inspections(rt: Runtime, report: PurgeReport, now: dt.datetime, ends: float) -> None:
    """Delete the inspection requests past ``[inspection] retention``, ``batch`` a transaction,
    oldest first, until a statement deletes fewer or the pass's time (``ends``) has run out;
    the next pass goes on. A dry run counts them."""
    before = retention_cutoff(rt.settings, now)
    batch = rt.settings.purge.batch
    while True:
        with rt.uow() as uow:
            store = SqlInspectionStore(uow.session)
            if report.dry_run:
                report.inspections = store.count_expired(before)
                return
            removed = store.remove_expired(before, batch)
        report.inspections += removed
        if removed < batch or time.monotonic() >= ends:
            break
    if report.inspections:
        log.info("purged %d inspection request(s) asked more than %s ago", report.inspections,
                 _span((now - before).total_seconds()))
