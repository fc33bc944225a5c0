"""How a job's attempt ends: Done, Cancelled, Aborted, or resubmitted (shallow or deep
retry), with the reference Workload Manager's semantics and wording (``docs/brokering.md``).

* Done: the payload ran and the job ended normally; its own non-zero exit code is Done
  (Exit Code N) and never retried.
* Cancelled by its owner (a cancel request, pending until the attempt's end is recorded):
  never retried.
* A **shallow** failure (the payload never started: the wrapper failed before it, the
  prologue failed, staging failed, the backend refused or never scheduled the job) is
  resubmitted while the job's shallow resubmissions are fewer than its
  ``ShallowRetryCount`` and than ``[brokering] max_shallow_retry_count``;
  ``ShallowRetryCount = -1`` turns shallow resubmission off (such failures count deep).
* A **deep** failure (the payload started, but the job failed for a reason outside it:
  the wrapper died, the node was lost, the batch system killed it, the epilogue failed)
  likewise with ``RetryCount`` and ``[brokering] max_retry_count``.
* When the count is reached the job is Aborted "hit job retry count (N)" / "hit job
  shallow retry count (N)" (N: the job's count), or "hit max retry count (N)" / "hit max
  shallow retry count (N)" when the site's cap is the lower one. A job that allowed no
  resubmission at all (count 0 or absent) is Aborted with the failure's own reason.

Each resubmission is an event: state Waiting, reason "<kind> resubmission <n> of
<limit> (attempt <a>): <cause>"; the counters are ``jobs.shallow_retries`` and
``jobs.deep_retries``; the job goes back through matching with a new start request.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import classad2
from sqlalchemy.exc import DataError, SQLAlchemyError

from wmproxy.config import BrokeringSettings
from wmproxy.domain import FINAL_STATES, JobState, utcnow
from wmproxy.jdl import parse_jdl
from wmproxy.jdl.attributes import is_number
from wmproxy.services.compound import on_nodes_succeeded, refresh_parent
from wmproxy.services.execution import change_state
from wmproxy.services.jobs import CANCELLED_BY_USER
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork, database_reason
from wmproxy.store.jobs import StateChange
from wmproxy.store.schema import ExecutionRequest, Job
from wmproxy.text import log_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt of a job ended, as its worker saw it.

    Attributes:
        state: Done (the payload ran and ended), Cancelled (by the job's owner) or
            Aborted (a failure: see ``payload_started``).
        exit_code: the payload's exit code (Done).
        reason: a sentence for the status (Done: notes such as uncollected outputs;
            Aborted: the failure).
        payload_started: whether the payload was executed: a deep failure if so,
            else a shallow one.
        retryable: False for an abort that must not be retried (an administrator's
            cancel).
        output_bytes: bytes of output sandbox the worker collected into the job area for
            this attempt, added to the owner's usage counter in the same transaction
            (whatever the job's state, once: see ``attempt``;
            :func:`wmproxy.services.quota.count_output` did it in a transaction of its own).
        attempt: the attempt this end is of (0 for the first run, n for the n-th
            resubmission: :attr:`~wmproxy.services.execution.StartOrder.attempt`); an end
            recorded again once its job was resubmitted (its first recording's outcome
            unknown to the worker) is ignored. None: the job's current attempt. Any end
            recorded again once its job has ended is ignored too (its bytes counted once): an
            ended job with no pending ``cancel`` request is held by no worker (a job a worker
            holds that ends otherwise, aborted for proxy expiry say, gets one, done by its end,
            which still counts its bytes); and any end of a purged (Cleared) job.
    """

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    payload_started: bool = False
    retryable: bool = True
    output_bytes: int = 0
    attempt: int | None = None


#: What the database (or its driver, before a statement is sent) raises for the values of one
#: end, not for an outage: a number it cannot store (``OverflowError`` on SQLite, a
#: ``DataError`` on PostgreSQL), text it cannot encode (a lone surrogate: ``UnicodeEncodeError``)
#: or take (a NUL: ``ValueError`` or ``DataError``). Such an end would fail the same way at every
#: try: :func:`end_attempts` records its job Aborted with :data:`END_REFUSED` instead.
#: ``IntegrityError`` is not one: the values of an end break no constraint (its rows and events
#: are the store's own), so it tells of a concurrent writer or a defect, which an Aborted end
#: would meet too; it stays an error kept and tried again, as an outage
#: (``OperationalError``, a lost connection) does.
VALUES_REFUSED: tuple[type[Exception], ...] = (ValueError, OverflowError, UnicodeError, DataError)
#: What makes :func:`end_attempts` record the ends one by one: a database error, or values refused.
_BATCH_FAILED: tuple[type[Exception], ...] = (SQLAlchemyError, *VALUES_REFUSED)
#: The reason of a job whose end the database refused (:data:`VALUES_REFUSED`).
END_REFUSED = "the job's end could not be recorded: the database refused its values"


class EndsNotRecordedError(Exception):
    """:func:`end_attempts` could record only some of the ends: the database failed for the
    others, each on its own too.

    Attributes:
        states: the new state of each job whose end was recorded, by job id (as
            :func:`end_attempt` returns it).
        failed: the ids of the jobs whose end was not recorded, in the order given.
        cause: the last database error.
    """

    def __init__(self, states: dict[str, JobState | None], failed: list[str], cause: SQLAlchemyError) -> None:
        super().__init__(f"{len(failed)} end(s) not recorded: {cause.__class__.__name__}")
        self.states = states
        self.failed = failed
        self.cause = cause


@dataclass(frozen=True)
class Verdict:
    """What happens after a failure: a resubmission (``resubmit``) with the event's
    reason, or the job's final abort reason."""

    resubmit: bool
    reason: str


def verdict(job_ad: classad2.ClassAd, payload_started: bool, shallow_done: int, deep_done: int, cause: str,
            settings: BrokeringSettings) -> tuple[str, Verdict]:
    """Classify a failure and decide on it (the reference's ``check_shallow_count`` /
    ``check_deep_count``; the effective limit is ``max(0, min(job count, site cap))``).

    Args:
        job_ad: the registered JDL (``RetryCount``, ``ShallowRetryCount``).
        payload_started: whether the payload ran.
        shallow_done, deep_done: resubmissions made so far of each kind.
        cause: the failure's reason.
        settings: the site caps.

    Returns:
        ``("shallow" | "deep", Verdict)``.
    """
    shallow_count = _count(job_ad, "ShallowRetryCount")
    kind = "deep" if payload_started or shallow_count == -1 else "shallow"
    if kind == "shallow":
        done, job_limit, site_limit, label = shallow_done, shallow_count, settings.max_shallow_retry_count, "shallow "
    else:
        done, job_limit, site_limit, label = deep_done, _count(job_ad, "RetryCount"), settings.max_retry_count, ""
    job_limit = max(job_limit, 0)
    if done >= job_limit:
        return kind, Verdict(False, cause if job_limit == 0 else f"hit job {label}retry count ({job_limit})")
    if done >= site_limit:
        return kind, Verdict(False, f"hit max {label}retry count ({site_limit})")
    attempt = shallow_done + deep_done + 2  # the 1-based number of the attempt about to run
    limit = min(job_limit, site_limit)
    return kind, Verdict(True, f"{kind} resubmission {done + 1} of {limit} (attempt {attempt}): {cause}")


def _count(ad: classad2.ClassAd, name: str) -> int:
    """The job's ``name`` count: 0 unless an integer literal (registration refuses anything
    else; a job registered before that check with ``undefined``/``error``, which classad2
    gives as ints, or a string or real count allows no resubmission)."""
    value = ad.get(name)
    return value if is_number(value) and isinstance(value, int) else 0


def end_attempt(rt: Runtime, job_id: str, end: AttemptEnd, now: dt.datetime | None = None) -> JobState | None:
    """Record how an attempt ended and decide what follows (see the module doc).

    The worker calls this after releasing the attempt's work dir, so a resubmitted job
    can be claimed (and prepared) again at once.

    Args:
        job_id: the job (or node).
        end: how the attempt ended.
        now: the current time (UTC), default now.

    Returns:
        The job's new state (Waiting when resubmitted), None when it had already ended.
    """
    now = now or utcnow()
    with rt.uow() as uow:
        return _end_in(uow, rt, job_id, end, now)


def end_attempts(rt: Runtime, ends: Sequence[tuple[str, AttemptEnd]], now: dt.datetime | None = None, *,
                 before_one_by_one: Callable[[], object] | None = None) -> list[JobState | None]:
    """:func:`end_attempt` for several jobs in one transaction (one commit for the jobs a
    worker cycle found ended), in the order given.

    Jobs are locked together first, in one global order (a node's compound job first, then
    by id: :meth:`~wmproxy.store.jobs.SqlJobStore.lock_all`), so two workers doing this never
    deadlock; should the transaction fail anyway, each job is recorded on its own, after
    ``before_one_by_one()`` (the worker journals the ends there: each of those records may wait
    for the database's busy or lock timeout).

    An end the database refuses for its own values (:data:`VALUES_REFUSED`: the job's text or
    numbers, which a job can forge) is recorded instead as its job Aborted with
    :data:`END_REFUSED`, not retried; should even that be refused, it is dropped (an error
    logged with the job id): it never stops the others, nor is it kept to fail at every cycle.

    Returns:
        Each job's new state, as :func:`end_attempt` returns it.

    Raises:
        EndsNotRecordedError: recording one by one failed for some jobs (the others are recorded).
        SQLAlchemyError: the database failed before any end was recorded.
    """
    now = now or utcnow()
    states: dict[str, JobState | None] = {}
    ordered = list(ends)
    try:
        with rt.uow() as uow:
            found = uow.jobs.lock_states([job_id for job_id, _end in ordered])  # so that one query finds their cancels
            cancels: dict[str, list[ExecutionRequest]] = {job_id: [] for job_id, _end in ordered}
            for request in uow.queue.pending_commands(list(cancels), "cancel"):
                cancels[request.job_id].append(request)
            # A job Done with no cancel pending and no output to count, a simple job or a node that
            # succeeded (exit code 0): its row and event in the cycle's two Core statements
            # (SqlJobStore.set_states, what change_state writes), then the nodes' dependents and
            # compound jobs once for the batch (what change_state's on_node_ended does node by node).
            quick: dict[str, StateChange] = {}  # a job given twice: its first end (the second is recorded already)
            for job_id, end in ordered:
                if (job_id not in quick and (row := found.get(job_id)) is not None and end.state == JobState.DONE
                        and (row[1] is None or end.exit_code == 0)
                        and JobState(row[0]) not in FINAL_STATES and not cancels[job_id] and not end.output_bytes
                        and end.attempt in (None, row[2])):  # else _end_in ignores it: recorded already
                    quick[job_id] = StateChange(job_id, reason=end.reason, exit_code=end.exit_code)
            done = list(quick.values())
            uow.jobs.set_states(JobState.DONE.value, now, done)
            on_nodes_succeeded(uow, [(change.job_id, parent) for change in done
                                     if (parent := found[change.job_id][1]) is not None], now)
            states = {job_id: None for job_id, _end in ordered if job_id not in found}  # unknown: nothing to record
            states.update((change.job_id, JobState.DONE) for change in done)
            rest = [(job_id, end) for job_id, end in ordered if job_id not in states]
            uow.jobs.lock_all([job_id for job_id, _end in rest])  # ORM rows of the others, in one statement or two
            for job_id, end in rest:
                states[job_id] = _end_in(uow, rt, job_id, end, now, cancels[job_id])
    except _BATCH_FAILED as exc:
        log.warning("recording %d ended attempts at once failed (%s); one by one", len(ordered), _failure(exc))
        if before_one_by_one is not None:
            before_one_by_one()
        states, failed = {}, []
        cause: SQLAlchemyError | None = None
        for job_id, end in ordered:
            try:
                try:
                    states[job_id] = end_attempt(rt, job_id, end, now)
                except VALUES_REFUSED as refused:
                    states[job_id] = _end_refused(rt, job_id, end, now, refused)
            except SQLAlchemyError as one:
                failed.append(job_id)
                cause = one
        if failed and cause is not None:
            if len(failed) == len(ordered):
                raise cause from None
            raise EndsNotRecordedError(states, failed, cause) from cause
    return [states[job_id] for job_id, _ in ends]


def _failure(exc: BaseException) -> str:
    """A log line's account of a failed record: :func:`~wmproxy.store.database_reason` for a
    database error, else the error's class and message (escaped, cut: it may quote the job's text)."""
    if isinstance(exc, SQLAlchemyError):
        return log_text(database_reason(exc))
    return f"{exc.__class__.__name__}: {log_text(exc)[:200]}"


def _end_refused(rt: Runtime, job_id: str, end: AttemptEnd, now: dt.datetime, exc: Exception) -> JobState | None:
    """Record the job of an end whose values the database refused (``exc``, one of
    :data:`VALUES_REFUSED`) as Aborted with :data:`END_REFUSED`, not retried; None (the end
    dropped, logged) when that is refused too.

    Raises:
        SQLAlchemyError: the database failed otherwise (an outage): the end is kept, as any.
    """
    log.error("job %s: the database refused the values of its end (%s); it is recorded Aborted", job_id,
              _failure(exc))
    aborted = AttemptEnd(JobState.ABORTED, reason=END_REFUSED, payload_started=end.payload_started, retryable=False,
                         output_bytes=end.output_bytes, attempt=end.attempt)
    try:
        return end_attempt(rt, job_id, aborted, now)
    except VALUES_REFUSED as again:
        log.error("job %s: its end is dropped: the database refused even its Aborted end (%s)", job_id,
                  _failure(again))
        return None


def _end_in(uow: UnitOfWork, rt: Runtime, job_id: str, end: AttemptEnd, now: dt.datetime,
            cancels: list[ExecutionRequest] | None = None) -> JobState | None:
    """Record one end in ``uow``; ``cancels``: the job's pending cancel requests when the
    caller read them (the job locked), else they are read here.

    The pending cancel requests of the job's current attempt are done here, whatever the end
    (the worker leaves them pending while it stops the job: one that dies meanwhile leaves them
    to the worker that adopts the job); with one, an end other than Done is Cancelled by user
    (the worker that adopted the job may have read the cancel's signal as a failure)."""
    job = uow.jobs.get(job_id, for_update=True)
    if job is None:
        return None
    if end.attempt is not None and job.attempt != end.attempt:
        log.info("job %s: the end of attempt %d was recorded already", job_id, end.attempt)
        return None  # a pending cancel is the current attempt's
    if cancels is None:
        cancels = list(uow.queue.pending_commands([job_id], "cancel"))
    for request in cancels:  # the attempt ended: nothing left to stop (an Aborted job's cancel too)
        uow.queue.complete(request, now)
    if job.state == JobState.CLEARED.value:  # purged: its job area, and what it counted, are gone
        log.info("job %s: purged before the end of its attempt was recorded", job_id)
        return None
    if JobState(job.state) in FINAL_STATES and not cancels:  # no worker holds it: this end was recorded already
        log.info("job %s: its end was recorded already", job_id)  # (its commit's outcome was lost): counted once
        return None
    if end.output_bytes:  # collected whatever happens next: counted
        uow.usage.add(job.owner_dn, end.output_bytes, now)
    if JobState(job.state) in FINAL_STATES:
        return None
    if end.state == JobState.CANCELLED or (cancels and end.state != JobState.DONE):
        change_state(uow, job_id, JobState.CANCELLED, now, reason=CANCELLED_BY_USER)
        return JobState.CANCELLED
    if end.state == JobState.DONE:
        change_state(uow, job_id, JobState.DONE, now, reason=end.reason, exit_code=end.exit_code)
        return JobState.DONE
    cause = end.reason or "the job failed"
    if not end.retryable:
        change_state(uow, job_id, JobState.ABORTED, now, reason=cause)
        return JobState.ABORTED
    kind, decision = verdict(parse_jdl(job.jdl_registered), end.payload_started, job.shallow_retries,
                             job.deep_retries, cause, rt.settings.brokering)
    if not decision.resubmit:
        log.info("job %s aborted after a %s failure: %s", job_id, kind, log_text(decision.reason))  # the job's text
        change_state(uow, job_id, JobState.ABORTED, now, reason=decision.reason)
        return JobState.ABORTED
    _resubmit(uow, job, kind, decision.reason, now)
    log.info("job %s: %s", job_id, log_text(decision.reason))
    return JobState.WAITING


def _resubmit(uow: UnitOfWork, job: Job, kind: str, reason: str, now: dt.datetime) -> None:
    """Back to Waiting with a new start request: the job is matched again."""
    if kind == "shallow":
        job.shallow_retries += 1
    else:
        job.deep_retries += 1
    job.worker = None
    job.backend_ref = None
    uow.jobs.record_event(job, "retry", now, source="worker", reason=f"{kind} resubmission: {reason}")
    uow.jobs.set_state(job, JobState.WAITING.value, now, reason=reason)
    uow.queue.enqueue(job.id, "start", now)
    if job.parent_id is not None and (parent := uow.jobs.get(job.parent_id)) is not None:
        refresh_parent(uow, parent, now)
