"""What the execution worker does to jobs, one unit of work per step.

The worker (``wmproxy.execution.worker``) owns processes, timing and signals; these
functions own the state machine: Waiting → Ready (claimed and matched to a CE, stored in
``jobs.destination``) → Scheduled (work dir prepared, recorded in ``backend_ref``) →
Running (wrapper spawned) → Done (exit code) | Aborted (reason) | Cancelled, or back to
Waiting for a resubmission (:mod:`wmproxy.services.retries`); and the bookkeeping that
keeps a job from being lost or run twice: worker heartbeats (``execution_workers``), the
worker holding each job (``jobs.worker``) and adoption of the jobs of dead workers
(:func:`adopt_jobs`). Matching itself is :mod:`wmproxy.services.brokering`.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import classad2
from sqlalchemy.exc import SQLAlchemyError

from wmproxy.domain import FINAL_STATES, JobState, utcnow
from wmproxy.errors import JdlExpressionError, SandboxError, WMProxyError
from wmproxy.jdl import JobDescription, check_expressions, isb_file_names, parse_jdl, read_description
from wmproxy.jdl.glite_functions import GliteCalls
from wmproxy.sandbox.storage import JobArea
from wmproxy.services.broker_shares import MatchCycle, OwnerShares
from wmproxy.services.brokering import (
    NO_MATCH,
    REQUEST_EXPIRED,
    Destination,
    choose_ce,
    deadline,
    destination_of,
)
from wmproxy.services.compound import on_node_ended, refresh_parent, refresh_parents
from wmproxy.services.jobs import CANCELLED_BY_USER
from wmproxy.services.matchmaking import SiteView, ce_view, matching_ad, no_match_cause
from wmproxy.services.perusal import perusal_interval
from wmproxy.services.runtime import Runtime
from wmproxy.store import JobLockedError, UnitOfWork, database_reason
from wmproxy.store.jobs import ClaimedJob, ClaimedRequest, RequestChange, StateChange
from wmproxy.store.schema import ExecutionRequest, Job

log = logging.getLogger(__name__)

#: Start requests one :func:`claim_next_start` call looks at before it gives up (each
#: in its own transaction): requests that cannot run yet do not stall the worker.
CLAIM_BATCH = 20
#: Poll intervals a job waits when the claiming worker lacks its CE's backend, so that
#: a worker that has it can take it first.
BACKEND_WAIT_POLLS = 5
#: The reason of a claimed job left Waiting because its job directory cannot be made (the
#: sandbox's file system full, say); the error follows.
NO_JOB_DIRECTORY = "the job directory cannot be made"
#: Why a started job whose delegation was destroyed waits (until it expires).
NO_DELEGATION = ("waiting for a delegated proxy: delegation {delegation_id} was destroyed "
                 "(delegate again under this id, or the job expires)")
#: Why a claimed job ends when its claim fails with an error nothing expected (a bug its JDL
#: triggers, say); the error's type follows, its traceback is in the worker's log.
CLAIM_FAILED = "the job cannot be started: the service failed on it"
#: Errors a claim lets through, rolling back its transaction (or savepoint): the database's,
#: the file system's and the service's own (an unreadable CE catalogue), the site's not one job's.
_CLAIM_ERRORS = (SQLAlchemyError, OSError, WMProxyError, MemoryError)
_T = TypeVar("_T")
_RNG = random.Random()  # noqa: S311 - brokering choices, not cryptography

#: States of a job a worker holds (``jobs.worker`` names it).
HELD_STATES = (JobState.READY, JobState.SCHEDULED, JobState.RUNNING)
_HELD = tuple(state.value for state in HELD_STATES)
#: Ended jobs a worker still holds while a ``cancel`` request for them is pending: aborted
#: (proxy expiry, a failed dependency) or ended while their process was still to be stopped.
_STOPPING = tuple(state.value for state in FINAL_STATES)


class WorkerNameInUseError(WMProxyError):
    """Another live worker process is registered under the same name."""


@dataclass(frozen=True)
class StartOrder:
    """A job a worker holds, read from its registered JDL and its job area.

    Attributes:
        job_id: the job.
        description: the registered JDL's typed fields (``Executable``, ``Arguments``,
            ``Std*``, ``Environment`` with the server's additions, ``OutputSandbox``).
        isb_files: file names to copy from ``area.input_dir`` into the work directory
            (the registered ``InputSandbox`` entries below ``area.input_uri``).
        area: where the job's files are (a node's input is its parent's).
        proxy_pem: the delegated proxy (PEM) for the job's proxy copy; ``b""`` for an
            adopted job (its copy is already in place).
        perusal_interval: seconds between perusal samples, None without perusal.
        local_account: the Unix account decided at registration, None without mapping.
        prologue, epilogue: JDL ``Prologue``/``Epilogue``, None when absent.
        prologue_arguments, epilogue_arguments: JDL ``PrologueArguments``/
            ``EpilogueArguments`` as written (shell-split by the worker).
        state: the job's state when read (Ready for a claim; Scheduled or Running for
            an adopted job).
        backend_ref: the stored backend reference (adopted jobs), else None.
        ce_id: the CE the job was matched to (``jobs.destination``), "" if none.
        backend: the backend kind that runs it, ``"local"`` or ``"slurm"`` (for an
            adopted job: the kind its ``backend_ref`` names).
        queue, wall_time, memory_mb: the batch queue, wall-time limit (seconds) and
            memory (MB) of the CE (:class:`~wmproxy.services.brokering.Destination`);
            None for an adopted job.
        attempt: 0 for the first run, n for the n-th resubmission (shallow or deep).
    """

    job_id: str
    description: JobDescription
    isb_files: tuple[str, ...]
    area: JobArea
    proxy_pem: bytes
    perusal_interval: int | None = None
    local_account: str | None = None
    prologue: str | None = None
    prologue_arguments: str = ""
    epilogue: str | None = None
    epilogue_arguments: str = ""
    state: JobState = JobState.READY
    backend_ref: str | None = None
    ce_id: str = ""
    backend: str = "local"
    queue: str | None = None
    wall_time: int | None = None
    memory_mb: int | None = None
    attempt: int = 0


def _backend_kind(backend_ref: str | None) -> str:
    """The backend kind a stored backend reference names (``local:...``, ``slurm:...``); ``local``
    for none."""
    return backend_ref.split(":", 1)[0] if backend_ref else "local"


def _order(rt: Runtime, job: Job, proxy_pem: bytes) -> StartOrder:
    """The order of a job a worker holds (adoption: its destination and backend from the row)."""
    kind = _backend_kind(job.backend_ref)
    return _start_order(rt, job.id, job.parent_id, job.local_account, job.attempt,
                        JobState(job.state), job.backend_ref, proxy_pem,
                        Destination(ce_id=job.destination or "", backend=kind), parse_jdl(job.jdl_registered))


def _start_order(rt: Runtime, job_id: str, parent_id: str | None, local_account: str | None, attempt: int,
                 state: JobState, backend_ref: str | None, proxy_pem: bytes, destination: Destination,
                 registered: classad2.ClassAd) -> StartOrder:
    area = rt.storage.job_area(job_id, parent_id)
    return StartOrder(
        job_id=job_id,
        description=read_description(registered),
        isb_files=isb_file_names(registered, area.input_uri),
        area=area,
        proxy_pem=proxy_pem,
        perusal_interval=perusal_interval(rt, registered),
        local_account=local_account,
        prologue=_text(registered, "Prologue"),
        prologue_arguments=_text(registered, "PrologueArguments") or "",
        epilogue=_text(registered, "Epilogue"),
        epilogue_arguments=_text(registered, "EpilogueArguments") or "",
        state=state,
        backend_ref=backend_ref,
        ce_id=destination.ce_id,
        backend=destination.backend,
        queue=destination.queue,
        wall_time=destination.wall_time,
        memory_mb=destination.memory_mb,
        attempt=attempt,
    )


def _text(ad: classad2.ClassAd, name: str) -> str | None:
    value = ad.get(name)
    return value if isinstance(value, str) and value else None


def claim_next_start(rt: Runtime, worker: str, *, backends: Collection[str] | None = None,
                     full: Collection[str] = (), rng: random.Random | None = None,
                     now: dt.datetime | None = None, shares: OwnerShares | None = None) -> StartOrder | None:
    """Claim the oldest due start request and match its job to a CE; the job becomes
    Ready, held by ``worker``, with its destination stored and an event "matched to CE <id>".

    Each request is one transaction. A request whose job cannot run now does not make
    the call return: up to :data:`CLAIM_BATCH` requests are looked at. Such a job is

    * past its expiry (:func:`brokering.deadline`): Aborted "request expired";
    * with expressions that could cost far more to evaluate than the JDL is long
      (:func:`wmproxy.jdl.check_expressions`: a job registered before that bound), or a
      ``Requirements`` or ``Rank`` classad2 cannot evaluate
      (:class:`~wmproxy.errors.JdlExpressionError`): Aborted with that error as its reason,
      for good (the same JDL fails the same way again); the other requests go on;
    * matched by no CE: left Waiting with the reason "BrokerHelper: no compatible
      resources", its request due again after ``[brokering] match_retry_period`` (or at
      its expiry, if sooner);
    * matched to a CE whose backend is not in ``backends``: left Waiting, its request due
      again after :data:`BACKEND_WAIT_POLLS` poll intervals, for a worker that has it;
    * matched to a CE whose backend is in ``full`` (the worker runs it but is at its
      limit for it): given back unchanged, due again after one poll interval;
    * sent with jobSubmit and its job directory cannot be made (the sandbox's file system
      full, say): left Waiting with the reason :data:`NO_JOB_DIRECTORY` and the error, due
      again after ``[brokering] match_retry_period`` (or at its expiry, if sooner).
    * one whose claim fails with an error nothing expected (:func:`_claim_guarded`): its
      transaction rolled back, then Aborted alone in a transaction of its own with
      :data:`CLAIM_FAILED` and the error's type, the traceback logged (if that fails too,
      its request is postponed by ``[brokering] match_retry_period``); the other requests
      go on;
    * of an owner whose jobs spent their share of matchmaking time (``shares``,
      :class:`~wmproxy.services.broker_shares.OwnerShares`), while another owner's request is
      due: not claimed (the query passes their requests over) or, claimed before the share ran
      out, given back as it was; the job stays Waiting, not evaluated (its expiry, too, is seen
      when it is claimed again: once the share frees, or no other owner's request is due).

    The call's matchmaking stops once it spent ``[brokering] cycle_match_cpu`` seconds of CPU
    (:class:`~wmproxy.services.broker_shares.MatchCycle`, checked between requests): it
    returns None, the requests not reached stay queued unchanged.

    A claimed job's directory is made here if it has none yet (a job sent with jobSubmit).

    Args:
        worker: the claiming worker's name.
        backends: the backend kinds the worker can take a job for now (None: every kind).
        full: the backend kinds the worker runs but has no room for now.
        rng: random source of the CE choice (ties, ``FuzzyRank``); default a shared one.
        now: the current time (UTC), default now.
        shares: the calling worker's matchmaking time per owner, kept across its calls; None:
            new ones for this call only.

    Returns:
        The order of the claimed job, or None when no due request can run now, or the
        claimed job was cancelled meanwhile.

    Raises:
        SandboxError: the CE catalogue cannot be read (the request stays queued).
    """
    now = now or utcnow()
    cycle = MatchCycle.of(rt.settings.brokering, shares)
    for _ in range(CLAIM_BATCH):
        if cycle.spent_out():
            _log_spent_out(cycle)
            return None
        try:
            with rt.uow() as uow:
                one = _claim_one(uow, worker, now, cycle)
                if one is None:
                    return None
                request, job = one
                writes = _ClaimWrites(worker, now)
                order = _claim_guarded(rt, uow, request, job, backends, full, rng or _RNG, {},
                                       SiteView(rt, uow, now), writes, cycle)
                writes.flush(uow)
        except JobLockedError:
            return None  # rolled back: the request stays queued for the next poll
        except _ClaimFailedError as failure:  # rolled back: the job ends alone, the next request is looked at
            _end_failed_claim(rt, worker, now, failure)
            continue
        if order is not None:
            return order
    return None


def claim_starts(rt: Runtime, worker: str, room: Mapping[str, int], *, limit: int,
                 rng: random.Random | None = None, now: dt.datetime | None = None,
                 shares: OwnerShares | None = None) -> list[StartOrder]:
    """:func:`claim_next_start` for up to ``limit`` jobs in one transaction (one commit for
    the jobs a worker cycle takes), oldest request first.

    Each request is handled as :func:`claim_next_start` handles it (expired, its expressions
    not evaluable, unmatched, waiting for another worker's backend, postponed while its backend is full, its job
    directory made or left Waiting without one, its owner past their share of matchmaking
    time). At most ``limit`` + :data:`CLAIM_BATCH` requests are looked at, and the batch ends
    once its matchmaking spent ``[brokering] cycle_match_cpu`` seconds of CPU
    (:class:`~wmproxy.services.broker_shares.MatchCycle`, checked between requests: one job's
    budget past it at most): the requests not reached stay queued unchanged (those it claimed
    are given back, due as before), for the worker's next cycle or another worker; they are
    not failed matches. The delegation of the jobs of one
    owner and delegation id is read and its proxy unsealed once per batch, not per job.

    Args:
        worker: the claiming worker's name.
        room: free slots per backend kind the worker runs (``{"local": 3, "slurm": 0}``);
            a job matched to a kind whose slots the batch has used up is given back,
            due again after one poll interval; a kind not in ``room`` is another worker's.
        limit: jobs to claim at most (>= 0).
        rng: random source of the CE choice; default a shared one.
        now: the current time (UTC), default now.
        shares: the calling worker's matchmaking time per owner, kept across its cycles
            (:class:`~wmproxy.services.broker_shares.OwnerShares`); None: new ones for this
            batch only.

    Returns:
        The orders of the claimed jobs, in claim order (may be empty). The statements are
        Core ones built once, no ORM objects: the requests claimed
        (:meth:`~wmproxy.store.jobs.SqlExecutionQueue.claim_rows`), their jobs locked and read
        (:meth:`~wmproxy.store.jobs.SqlJobStore.lock_claims`), and at the end of the
        transaction the requests' changes in one executemany UPDATE, the Ready jobs in one
        UPDATE and one events INSERT (the rows the ORM path wrote; an expired job is aborted
        through :func:`change_state`). On SQLite the
        requests are claimed together, as many as the worker can still take (two
        statements; again while some yield no job), and their jobs read in one statement.
        On PostgreSQL each request
        is claimed and handled in a savepoint: a job locked by another transaction
        (``NOWAIT``) ends the batch, keeping the jobs claimed before it; its request stays
        queued. (A request claimed ahead of its job's lock could not be given back there:
        updating it again makes PostgreSQL check its foreign key with a share lock on the
        job's row, which the other transaction holds.)

    Raises:
        SandboxError: the CE catalogue cannot be read (the batch is rolled back, every
            request stays queued).
    """
    now = now or utcnow()
    if limit <= 0 or not any(n > 0 for n in room.values()):
        return []
    cycle = MatchCycle.of(rt.settings.brokering, shares)  # kept when the batch is made again: the CPU was spent
    for _ in range(CLAIM_BATCH):
        try:
            with rt.uow() as uow:
                writes = _ClaimWrites(worker, now)
                orders = _claim_batch(rt, uow, worker, dict(room), limit, rng or _RNG, now, writes, cycle)
                writes.flush(uow)
        except _ClaimFailedError as failure:  # the batch rolled back: the job ends alone, the batch again
            _end_failed_claim(rt, worker, now, failure)
            continue
        return orders
    return []


def _claim_batch(rt: Runtime, uow: UnitOfWork, worker: str, left: dict[str, int], limit: int, rng: random.Random,
                 now: dt.datetime, writes: _ClaimWrites, cycle: MatchCycle) -> list[StartOrder]:
    """:func:`claim_starts` in its transaction; the changes are collected in ``writes``."""
    orders: list[StartOrder] = []
    credentials: dict[tuple[str, str | None], _Credential] = {}  # the batch's delegations, looked up once
    looked = 0
    site: SiteView | None = None  # the site's CEs, read once at the batch's first request
    savepoints = uow.session.get_bind().dialect.name == "postgresql"
    while looked < limit + CLAIM_BATCH:
        # Claim at most what the worker can still take: a request that yields no job
        # (expired, unmatched, postponed) makes the loop claim again.
        want = min(limit - len(orders), sum(n for n in left.values() if n > 0), limit + CLAIM_BATCH - looked)
        if want <= 0:
            break
        if cycle.spent_out():  # the batch's matchmaking time: the requests not claimed wait for the next cycle
            _log_spent_out(cycle)
            break
        if savepoints:  # PostgreSQL: one request per savepoint, claimed inside it (see claim_starts)
            try:
                with uow.session.begin_nested():
                    looked += 1
                    one = _claim_one(uow, worker, now, cycle)
                    if one is None:
                        break
                    request, job = one
                    site = site or SiteView(rt, uow, now)
                    backends, full = _kinds(left)
                    order = _claim_guarded(rt, uow, request, job, backends, full, rng, credentials, site, writes,
                                           cycle)
            except JobLockedError:  # the savepoint rolled back: the request stays queued for the next poll
                break
            if order is not None:
                orders.append(order)
                left[order.backend] -= 1
            continue
        # SQLite (one writer, no row locks): the requests and their jobs in one statement each.
        writes.flush(uow)  # what an earlier round decided, before the queue is read again
        requests = _claim_rows(uow, worker, now, want, cycle)
        if not requests:
            break
        jobs = uow.jobs.lock_claims([request.job_id for request in requests])
        site = site or SiteView(rt, uow, now)
        for index, request in enumerate(requests):
            backends, full = _kinds(left)
            spent = cycle.spent_out()  # the batch's matchmaking time: the rest are given back, due as before
            if len(orders) >= limit or not backends or spent:  # (the first two defensive: want never claims more)
                writes.requests.extend(RequestChange.postponed(r, r.not_before) for r in requests[index:])
                if spent:
                    _log_spent_out(cycle)
                return orders
            looked += 1
            order = _claim_guarded(rt, uow, request, jobs.get(request.job_id), backends, full, rng, credentials, site,
                                   writes, cycle)
            if order is not None:
                orders.append(order)
                left[order.backend] -= 1
    return orders


def _log_spent_out(cycle: MatchCycle) -> None:
    log.info("this cycle's matchmaking took %.2f s of CPU ([brokering] cycle_match_cpu %g s): the start requests "
             "not reached wait for the next cycle", cycle.spent, cycle.limit)


def _claim_rows(uow: UnitOfWork, worker: str, now: dt.datetime, limit: int, cycle: MatchCycle) -> list[ClaimedRequest]:
    """Up to ``limit`` of the oldest start requests due, claimed: first passing over those of
    the owners past their share of matchmaking time (:meth:`OwnerShares.held`); when no other
    owner's request is due, theirs after all, and the rest of the batch does not hold them back
    (``cycle.others_waiting`` False): the worker never idles while requests are due."""
    held = cycle.shares.held(now) if cycle.others_waiting else ()
    claimed = uow.queue.claim_rows(worker, now, command="start", limit=limit, skip_owners=held)
    if not claimed and held:  # nobody else waits: the held owners' jobs are matched
        cycle.others_waiting = False
        claimed = uow.queue.claim_rows(worker, now, command="start", limit=limit)
    return claimed


def _claim_one(uow: UnitOfWork, worker: str, now: dt.datetime,
               cycle: MatchCycle) -> tuple[ClaimedRequest, ClaimedJob | None] | None:
    """The oldest start request due (:func:`_claim_rows`), claimed, and its job locked at once
    (None: no request).

    Raises:
        JobLockedError: PostgreSQL: another transaction holds the job (``NOWAIT``): the
            caller rolls the claim back, the request stays queued.
    """
    claimed = _claim_rows(uow, worker, now, 1, cycle)
    if not claimed:
        return None
    request = claimed[0]
    return request, uow.jobs.lock_claims([request.job_id], nowait=True).get(request.job_id)


class _ClaimWrites:
    """What a claim transaction changes, collected and written together at its end (:meth:`flush`):
    the requests as one executemany UPDATE (:meth:`~wmproxy.store.jobs.SqlExecutionQueue.settle`),
    the Ready jobs as one UPDATE and one events INSERT (:meth:`~wmproxy.store.jobs.SqlJobStore.set_ready`),
    the jobs left Waiting with a new reason likewise (:meth:`~wmproxy.store.jobs.SqlJobStore.set_states`)."""

    def __init__(self, worker: str, now: dt.datetime) -> None:
        self.worker = worker
        self.now = now
        self.requests: list[RequestChange] = []
        self.ready: list[tuple[str, str]] = []  # (job id, CE id)
        self.waiting: list[StateChange] = []

    def flush(self, uow: UnitOfWork) -> None:
        uow.queue.settle(self.requests)
        uow.jobs.set_ready(self.now, self.worker, self.ready)
        uow.jobs.set_states(JobState.WAITING.value, self.now, self.waiting)
        self.requests, self.ready, self.waiting = [], [], []


def _kinds(left: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """The backend kinds with room left and those without."""
    return [kind for kind, n in left.items() if n > 0], [kind for kind, n in left.items() if n <= 0]


class _Credential(NamedTuple):
    """A delegation's FQANs and its unsealed proxy (PEM, ``b""`` when the delegation is gone)."""

    fqans: list[str]
    proxy_pem: bytes


class _ClaimFailedError(Exception):
    """A claim failed with an error nothing expected (:func:`_claim_guarded`): the claim's
    transaction rolls back, then :func:`_end_failed_claim` ends the job alone."""

    def __init__(self, request: ClaimedRequest, job_id: str, error: Exception) -> None:
        super().__init__(f"job {job_id}: the claim failed: {type(error).__name__}: {error}")
        self.request = request
        self.job_id = job_id
        self.error = error


def _claim_guarded(rt: Runtime, uow: UnitOfWork, request: ClaimedRequest, job: ClaimedJob | None,
                   backends: Collection[str] | None, full: Collection[str], rng: random.Random,
                   credentials: dict[tuple[str, str | None], _Credential], site: SiteView,
                   writes: _ClaimWrites, cycle: MatchCycle) -> StartOrder | None:
    """:func:`_claim`, where an error nothing expected (not one of :data:`_CLAIM_ERRORS`)
    becomes :class:`_ClaimFailedError`: the caller's transaction rolls back whole (what
    :func:`_claim` wrote of the job, possibly half of a :func:`change_state`, goes with it),
    :func:`_end_failed_claim` ends this job alone in a transaction of its own, and the claim
    goes on. Let through as it was, the error rolled back the claim with its request, which
    stayed the oldest due and failed every later claim (no job of the site started); caught
    and the job aborted in the same transaction, the part of the failed claim already written
    stayed (a node Aborted whose compound parent was never refreshed: Waiting for ever).

    Nothing is added per job on the common path (no savepoint): only a failed claim costs a
    second transaction, and the batch's claims are made again."""
    try:
        return _claim(rt, uow, request, job, backends, full, rng, credentials, site, writes, cycle)
    except _CLAIM_ERRORS:
        raise
    except Exception as exc:
        if job is None:
            raise
        log.exception("job %s: the claim failed; the job is aborted", job.id)
        raise _ClaimFailedError(request, job.id, exc) from exc


def _end_failed_claim(rt: Runtime, worker: str, now: dt.datetime, failure: _ClaimFailedError) -> None:
    """The job whose claim failed (:class:`_ClaimFailedError`, its transaction rolled back)
    ends alone: Aborted with :data:`CLAIM_FAILED` and the error's type, through
    :func:`change_state` (its parent and dependents follow), its request done.

    Done only while the request is still due and unclaimed (another worker may have taken it
    meanwhile) and the job still Waiting (else the request is just done). If that fails with
    an error nothing expected too (the bug in the abort's own path), the request is postponed
    by ``[brokering] match_retry_period`` in another transaction, the job's reason telling why,
    both errors logged: the queue goes on either way. Errors of :data:`_CLAIM_ERRORS` are let
    through (the database's, as a claim's)."""
    request, job_id = failure.request, failure.job_id
    reason = f"{CLAIM_FAILED} ({type(failure.error).__name__})"
    try:
        with rt.uow() as uow:
            job = uow.jobs.lock_claims([job_id]).get(job_id)  # the job first, then its request, as cancels do
            pending = _failed_request(uow, request)
            if pending is None:
                return
            pending.claimed_by, pending.claimed_at = worker, now
            uow.queue.complete(pending, now)
            if job is not None and job.state == JobState.WAITING.value:
                change_state(uow, job_id, JobState.ABORTED, now, reason=reason)
                log.info("job %s: aborted: %s", job_id, reason)
        return
    except _CLAIM_ERRORS:
        raise
    except Exception:
        log.exception("job %s: its abort after a failed claim failed too; its request is postponed", job_id)
    retry = rt.settings.brokering.match_retry_period
    with rt.uow() as uow:
        job = uow.jobs.lock_claims([job_id]).get(job_id)
        pending = _failed_request(uow, request)
        if pending is None:
            return
        uow.queue.postpone(pending, now + dt.timedelta(seconds=retry))
        if job is not None and job.state == JobState.WAITING.value:
            uow.jobs.set_states(JobState.WAITING.value, now, [StateChange(
                job_id, reason=f"{reason}; its abort failed too: the start is tried again in {retry:g} s")])


def _failed_request(uow: UnitOfWork, request: ClaimedRequest) -> ExecutionRequest | None:
    """The request of a failed claim, locked, if it is still due and nobody claimed it since."""
    row = uow.session.get(ExecutionRequest, request.id, with_for_update=True)
    return row if row is not None and row.done_at is None and row.claimed_by is None else None


def _claim(rt: Runtime, uow: UnitOfWork, request: ClaimedRequest, job: ClaimedJob | None,
           backends: Collection[str] | None, full: Collection[str], rng: random.Random,
           credentials: dict[tuple[str, str | None], _Credential], site: SiteView,
           writes: _ClaimWrites, cycle: MatchCycle) -> StartOrder | None:
    # The caller locked the job (``lock_claims``) before any further change to the claimed
    # request: PostgreSQL checks the foreign key of a row updated twice in one transaction,
    # with a share lock on the job's row. The request and job changes go to ``writes``.
    now, worker = writes.now, writes.worker
    if job is None or job.state != JobState.WAITING.value:
        writes.requests.append(RequestChange.completed(request, worker, now))
        return None
    settings = rt.settings
    try:
        registered = parse_jdl(job.jdl_registered)
    except WMProxyError as exc:  # stored before a rule the JDL breaks (a quoted name): it alone ends
        _abort(uow, writes, site, job.id, request, f"the registered JDL cannot be read: {exc.message}")
        return None
    expires = deadline(registered, request.created_at, settings)
    if now >= expires:
        _abort(uow, writes, site, job.id, request, REQUEST_EXPIRED)
        return None
    key = (job.owner_dn, job.delegation_id)
    if key not in credentials:  # one look-up and one unsealing per delegation and claim batch
        delegation = uow.delegations.stored_proxy(job.owner_dn, job.delegation_id)  # Core, no ORM object
        credentials[key] = _Credential(
            [f for f in delegation.fqans.split("\n") if f] if delegation is not None else [],
            rt.sealer.open(delegation.sealed_proxy) if delegation is not None else b"")
    fqans, proxy_pem = credentials[key]
    if not proxy_pem:  # destroyed since jobStart: it waits for a proxy delegated again under the id
        _wait(writes, job, request, settings.brokering.match_retry_period, expires,
              NO_DELEGATION.format(delegation_id=job.delegation_id))
        return None
    fqan = fqans[0] if fqans else None
    job_ad = matching_ad(registered, job.owner_dn, fqan)
    shares = cycle.shares
    within = shares.free_at(job.owner_dn, now) is None  # the owner's jobs are within their share
    if cycle.others_waiting and not within:
        # Its owner's jobs spent their share of matchmaking time (a job of this batch took the
        # rest): given back as it was, not evaluated, not a failed match. The next claims pass
        # the owner's requests over (_claim_rows) while other owners' are due.
        writes.requests.append(RequestChange.postponed(request, request.not_before))
        return None
    try:
        check_expressions(job_ad)  # registered before the bound, or a node's inherited expressions
        calls = GliteCalls(job_ad, job_id=job.id)  # one budget for the claim, the reason below included
        try:
            chosen = choose_ce(job_ad, _tried_in_turn(site.ces(), request, rng), rng,
                               fuzzy_factor=settings.brokering.fuzzy_factor, for_ces=ce_view(job_ad, fqan),
                               calls=calls)
        finally:  # the batch's and the owner's matchmaking time, whatever the match gave
            cycle.charge(job.owner_dn, now, calls.budget.spent)
            if within and (free := shares.free_at(job.owner_dn, now)) is not None:  # this job took the rest
                log.warning("owner %s: the matchmaking of their jobs took %.2f s of CPU in the last %g s on this "
                            "worker ([brokering] owner_match_cpu %g s): until %s their further jobs wait, not "
                            "evaluated, while other owners' jobs are due", job.owner_dn,
                            shares.spent(job.owner_dn, now), shares.window.total_seconds(), shares.allowance,
                            free.isoformat())
    except JdlExpressionError as exc:  # this job's own expressions: it alone ends, the batch goes on
        _abort(uow, writes, site, job.id, request, exc.message)
        return None
    if chosen is None:
        submit_to = job_ad.get("SubmitTo")
        reason = NO_MATCH
        if isinstance(submit_to, str):
            known = any(ce.get("GlueCEUniqueID") == submit_to for ce in site.ces())
            reason += (f" (the CE SubmitTo names refuses the job: its Requirements are not met: {submit_to})"
                       if known else f" (SubmitTo names no CE of this site: {submit_to})")
        elif (cause := no_match_cause(calls)) is not None:
            reason += f" ({cause})"
        _wait(writes, job, request, settings.brokering.match_retry_period, expires, reason)
        return None
    destination = destination_of(chosen.ce, settings)
    if destination.backend in full:  # this worker runs it, but is at its limit: ask again soon
        writes.requests.append(RequestChange.postponed(
            request, now + dt.timedelta(seconds=settings.execution.poll_interval)))
        return None
    if backends is not None and destination.backend not in backends:
        log.warning("job %s matched to CE %s, whose %s backend worker %s does not run: left for another worker",
                    job.id, destination.ce_id, destination.backend, worker)
        _wait(writes, job, request, BACKEND_WAIT_POLLS * settings.execution.poll_interval, expires,
              f"matched to CE {destination.ce_id}: waiting for a worker with its {destination.backend} backend")
        return None
    try:
        # A job sent with jobSubmit has no job directory yet (jobRegister made its own): made
        # here, while its row is locked and Waiting, so no removal of its area can come in
        # between (wmproxy.sandbox.storage). Without it the job waits as an unmatched one does
        # (not every poll: such requests, the oldest due, would fill every claim batch).
        rt.storage.create_job_area(job.id, hand_over=True)
    except SandboxError as exc:
        log.warning("job %s: %s", job.id, exc)
        # The job's status shows the cause, not the server's paths (those are in the log line).
        cause = exc.__cause__.strerror if isinstance(exc.__cause__, OSError) and exc.__cause__.strerror else None
        _wait(writes, job, request, settings.brokering.match_retry_period, expires,
              f"{NO_JOB_DIRECTORY}: {cause}" if cause else NO_JOB_DIRECTORY)
        return None
    try:
        order = _start_order(rt, job.id, job.parent_id, job.local_account, job.attempt,
                             JobState.READY, None, proxy_pem, destination, registered)
    except WMProxyError as exc:  # its description cannot be read: it alone ends, the batch goes on
        _abort(uow, writes, site, job.id, request, f"the job cannot be started: {exc.message}")
        return None
    writes.requests.append(RequestChange.completed(request, worker, now))
    writes.ready.append((job.id, destination.ce_id))
    site.claimed(destination.ce_id)
    return order


def _tried_in_turn(ces: tuple[classad2.ClassAd, ...], request: ClaimedRequest,
                   rng: random.Random) -> Sequence[classad2.ClassAd]:
    """The CEs in the order a claim tries them: the catalogue's at a job's first claim; from a
    CE drawn at random on (then round to the first) when its start request was given back
    before (``not_before`` set: unmatched, waiting, postponed). The CEs that match and their
    ranks do not depend on the order, but a pass that the job's budget cuts short tries only
    the first CEs (:func:`~wmproxy.services.matchmaking.matches`): so over its retries such a
    job reaches every CE, not always the same first few."""
    if request.not_before is None or len(ces) < 2:
        return ces
    start = rng.randrange(len(ces))
    return ces[start:] + ces[:start]


def _abort(uow: UnitOfWork, writes: _ClaimWrites, site: SiteView, job_id: str, request: ClaimedRequest,
           reason: str) -> None:
    """The claimed Waiting job ends Aborted with ``reason``; its request is done."""
    writes.requests.append(RequestChange.completed(request, writes.worker, writes.now))
    change_state(uow, job_id, JobState.ABORTED, writes.now, reason=reason)
    site.ended_waiting()
    log.info("job %s: aborted: %s", job_id, reason)


def _wait(writes: _ClaimWrites, job: ClaimedJob, request: ClaimedRequest, seconds: float,
          expires: dt.datetime, reason: str) -> None:
    """The job stays Waiting (one event per new reason); its request is due again ``seconds``
    from the claim's time, or at the job's expiry (``expires``, UTC) if sooner."""
    writes.requests.append(RequestChange.postponed(request, min(writes.now + dt.timedelta(seconds=seconds), expires)))
    if job.reason != reason:
        writes.waiting.append(StateChange(job.id, reason=reason))


def set_state(
    rt: Runtime,
    job_id: str,
    state: JobState,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    backend_ref: str | None = None,
) -> bool:
    """Move a job to ``state`` unless it has already ended. Returns whether it moved.

    ``backend_ref`` (when given) is recorded in the same transaction, so a Scheduled job
    always names its work dir before its wrapper is spawned.
    """
    with rt.uow() as uow:
        return change_state(uow, job_id, state, utcnow(), reason=reason, exit_code=exit_code, backend_ref=backend_ref)


def in_lock_order(rt: Runtime, pairs: Sequence[tuple[str, _T]]) -> list[tuple[str, _T]]:
    """``(job id, anything)`` pairs sorted in the order one transaction locks several jobs
    in: by compound job (a node's parent is locked before the node,
    :meth:`~wmproxy.store.jobs.SqlJobStore.get`), then by id; two transactions following
    it never wait for each other in a cycle."""
    with rt.uow() as uow:
        return lock_order(uow, pairs)


def lock_order(uow: UnitOfWork, pairs: Sequence[tuple[str, _T]]) -> list[tuple[str, _T]]:
    """:func:`in_lock_order` inside the caller's transaction (one query, no lock taken)."""
    if len(pairs) < 2:
        return list(pairs)
    parents = uow.jobs.parents_of([job_id for job_id, _ in pairs])
    return sorted(pairs, key=lambda pair: (parents.get(pair[0]) or pair[0], pair[0]))


def mark_running(rt: Runtime, started: Sequence[tuple[str, str]]) -> None:
    """Record jobs whose wrappers run as Running with their backend reference (``(job id,
    reference)`` pairs), in one transaction: one commit for a cycle's starts. A job that
    ended meanwhile (cancelled) is left alone, as :func:`set_state` does.

    Jobs are locked together first, in one global order (a node's compound job first, as
    :meth:`~wmproxy.store.jobs.SqlJobStore.get`, then by id; two statements at most:
    :meth:`~wmproxy.store.jobs.SqlJobStore.lock_all`), so two workers doing this never
    deadlock. Should the transaction fail anyway, each job is recorded on its own.
    """
    now = utcnow()
    ordered = list(started)
    try:
        with rt.uow() as uow:
            _change_states(uow, JobState.RUNNING, now, ordered)
    except SQLAlchemyError as exc:
        log.warning("recording %d started jobs at once failed (%s); one by one", len(ordered), database_reason(exc))
        for job_id, ref in ordered:
            set_state(rt, job_id, JobState.RUNNING, backend_ref=ref)


def record_references(rt: Runtime, changed: Sequence[tuple[str, str, str]]) -> set[str]:
    """Record the backend references a worker's backend resolved after they were recorded
    (``(job id, recorded reference, resolved reference)``: a Slurm job id found after its
    sbatch lost its answer, ``slurm:<cluster>:-:<dir>`` → ``slurm:<cluster>:<id>:<dir>``), in
    one transaction, each only where the job is still Scheduled or Running with the recorded
    reference (a job that ended or moved on meanwhile is left alone). No state changes, no
    event.

    Returns:
        The ids of the jobs whose reference was recorded.
    """
    done: set[str] = set()
    with rt.uow() as uow:
        for job_id, recorded, resolved in changed:
            job = uow.jobs.get(job_id, for_update=True)
            if (job is None or job.state not in (JobState.SCHEDULED.value, JobState.RUNNING.value)
                    or job.backend_ref != recorded):
                continue
            job.backend_ref = resolved
            done.add(job_id)
    return done


def mark_scheduled(rt: Runtime, prepared: Sequence[tuple[str, str]]) -> set[str]:
    """Record prepared jobs as Scheduled with their backend reference (``(job id,
    reference)`` pairs) and the event "submitted to <reference>", in one transaction, before
    their wrappers are spawned (a crash after it: adoption finds the reference). Locks as
    :func:`mark_running`, falling back to one job per transaction should it fail.

    Returns:
        The ids of the jobs recorded; a job that ended meanwhile (cancelled) is left alone
        and must not be spawned.
    """
    now = utcnow()
    done: set[str] = set()
    ordered = list(prepared)
    try:
        with rt.uow() as uow:
            done = _change_states(uow, JobState.SCHEDULED, now, ordered)
    except SQLAlchemyError as exc:
        log.warning("recording %d scheduled jobs at once failed (%s); one by one", len(ordered), database_reason(exc))
        done = {job_id for job_id, ref in ordered if set_state(rt, job_id, JobState.SCHEDULED, backend_ref=ref)}
    return done


def _change_states(uow: UnitOfWork, state: JobState, now: dt.datetime, refs: Sequence[tuple[str, str]]) -> set[str]:
    """:func:`change_state` with ``backend_ref`` for each ``(job id, reference)`` of ``refs``
    (Scheduled or Running), the jobs locked together first (:meth:`~wmproxy.store.jobs.
    SqlJobStore.lock_states`: the order of ``lock_all``, which locks the nodes' compound jobs
    too). The jobs' changes go in two Core statements (:meth:`~wmproxy.store.jobs.SqlJobStore.
    set_states`: the same rows as :func:`change_state` writes, without the ORM's unit of work);
    then each compound job of the nodes among them follows once (:func:`~wmproxy.services.
    compound.refresh_parents`: what :func:`change_state` does node by node, which leaves the
    same state and event). Returns the ids changed (a job that ended meanwhile is left alone)."""
    found = uow.jobs.lock_states([job_id for job_id, _ in refs])
    changes: list[StateChange] = []
    parents: list[str] = []
    for job_id, ref in refs:
        row = found.get(job_id)
        if row is None or JobState(row[0]) in FINAL_STATES:
            continue
        changes.append(StateChange(job_id, backend_ref=ref, submitted=state == JobState.SCHEDULED))
        if row[1] is not None:
            parents.append(row[1])
    uow.jobs.set_states(state.value, now, changes)
    refresh_parents(uow, parents, now)
    return {change.job_id for change in changes}


def change_state(uow: UnitOfWork, job_id: str, state: JobState, now: dt.datetime, *, reason: str | None = None,
                 exit_code: int | None = None, backend_ref: str | None = None) -> bool:
    """:func:`set_state` in the caller's unit of work: the event, then the DAG's dependents
    (a node that ended) or the parent's state (a node that moved on)."""
    job = uow.jobs.get(job_id, for_update=True)
    if job is None or JobState(job.state) in FINAL_STATES:
        return False
    uow.jobs.set_state(job, state.value, now, reason=reason, exit_code=exit_code)
    if backend_ref is not None:
        job.backend_ref = backend_ref
    if backend_ref is not None and state == JobState.SCHEDULED:
        uow.jobs.record_event(job, "backend_submitted", now, source="worker", reason=f"submitted to {backend_ref}")
    if state in FINAL_STATES:
        on_node_ended(uow, job, now)
    elif job.parent_id is not None:
        parent = uow.jobs.get(job.parent_id)
        if parent is not None:
            refresh_parent(uow, parent, now)
    return True


def cancel_requests(rt: Runtime, job_ids: list[str]) -> list[str]:
    """Jobs among ``job_ids`` with a pending cancel request. The requests stay pending: one is
    done when the end of the attempt it stops is recorded (:func:`~wmproxy.services.retries.
    end_attempt`), so a worker that dies after sending the cancel leaves it for the worker that
    adopts the job (it sends it again and the end is Cancelled, whatever the job's end says),
    and a worker acts once on each (it asks again every few cycles)."""
    if not job_ids:
        return []
    with rt.uow() as uow:  # one Core statement, no ORM objects
        return uow.queue.pending_jobs(job_ids, "cancel")


# --- heartbeats and adoption -------------------------------------------------------


def register_worker(rt: Runtime, name: str, host: str, pid: int, alive: Callable[[int], bool]) -> None:
    """Record worker ``name`` as running on ``host`` as ``pid`` (its heartbeat starts now).

    A previous row of the same name is its previous life: its jobs stay with the name
    and :func:`adopt_jobs` picks them up.

    Args:
        alive: tells whether a pid on this host is a running process.

    Raises:
        WorkerNameInUseError: the name is registered by another process that still
            heartbeats (within ``[execution] heartbeat_lease``) and is either on another
            host or alive here.
    """
    now = utcnow()
    lease = dt.timedelta(seconds=rt.settings.execution.heartbeat_lease)
    with rt.uow() as uow:
        previous = uow.workers.get(name, for_update=True)
        if (previous is not None and previous.heartbeat_at > now - lease
                and (previous.host, previous.pid) != (host, pid)
                and (previous.host != host or alive(previous.pid))):
            raise WorkerNameInUseError(
                f"another execution worker named {name!r} is running ({previous.host}, pid {previous.pid})")
        uow.workers.register(name, host, pid, now)


def heartbeat(rt: Runtime, name: str, host: str, pid: int) -> bool:
    """Refresh the worker's heartbeat; False when it was taken for dead meanwhile (its
    row is gone or another process registered the name): its jobs are not its own now."""
    with rt.uow() as uow:
        return uow.workers.heartbeat(name, host, pid, utcnow())


def unregister_worker(rt: Runtime, name: str, host: str, pid: int) -> None:
    """Remove the worker's row at a clean exit (only when it holds no job any more)."""
    with rt.uow() as uow:
        if not uow.workers.held_jobs(name, _HELD, stopping=_STOPPING):
            uow.workers.remove(name, host, pid)


def adopt_jobs(rt: Runtime, name: str, host: str, known: Collection[str],
               alive: Callable[[int, dt.datetime], bool] | None = None,
               backend_kinds: Collection[str] | None = None) -> list[StartOrder]:
    """Take over the jobs of dead workers on ``host`` and return the held jobs to follow.

    With ``backend_kinds`` (the backends the worker has: ``local``, ``slurm``), a dead
    worker's Scheduled and Running jobs of another backend are not taken: they stay the dead
    worker's, whose row is kept for a worker that has their backend (before, a Slurm-only
    worker took a dead worker's local jobs and could not follow them: they stayed Running).

    In one transaction: every other worker on ``host`` whose heartbeat is older than
    ``[execution] heartbeat_lease`` and whose process is gone (``alive(pid, started_at)``
    False: no such process, or one started after the worker registered; a
    worker that lives but cannot heartbeat, e.g. through a database outage, keeps its jobs
    and the ends it holds in memory) is removed by compare-and-set and its held jobs
    become ``name``'s (several workers racing: exactly one wins each dead worker). Then
    every job ``name`` holds that is not in ``known`` (the jobs the calling process
    follows already; this includes its own previous life's jobs) is looked at:

    * Ready (claimed, no work dir recorded): back to Waiting with a new start request,
      exactly once (the job then belongs to no worker);
    * Scheduled or Running: returned, for the worker to follow through its backend
      reference (:func:`requeue_unstarted` if its wrapper never ran);
    * ended (Aborted by proxy expiry or a failed dependency, say) with a pending ``cancel``
      request: returned too, for the worker to stop its process, which runs on otherwise.

    Jobs on other hosts are never adopted here: a local job can only be followed on
    its own host.

    Returns:
        Orders of the Scheduled and Running jobs to follow (``proxy_pem`` empty).
    """
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=rt.settings.execution.heartbeat_lease)
    follow: list[StartOrder] = []
    with rt.uow() as uow:
        for dead in uow.workers.stale(host, cutoff, exclude=name):
            if alive is not None and alive(dead.pid, dead.started_at):
                log.warning("execution worker %s on this host has not heartbeat since %s but its process %d lives:"
                            " its jobs are left to it", dead.name, dead.heartbeat_at.isoformat(), dead.pid)
                continue
            moved = uow.workers.take_over(dead, name, _HELD, backend_kinds=backend_kinds,
                                          any_backend=(JobState.READY.value,), stopping=_STOPPING)
            if moved is not None and backend_kinds is not None and uow.workers.get(dead.name) is not None:
                log.warning("execution worker %s on this host is gone; worker %s lacks the backend of some of its "
                            "jobs (it has %s): they wait for a worker that has it", dead.name, name,
                            ", ".join(sorted(backend_kinds)))
        for job in uow.workers.held_jobs(name, _HELD, stopping=_STOPPING):
            if job.id in known:
                continue
            if job.state == JobState.READY.value:
                _requeue(uow, job, now, "claimed by a worker that stopped before preparing it")
            else:
                follow.append(_order(rt, job, b""))
    return follow


class InFlight(NamedTuple):
    """A job whose current attempt's end is not recorded yet (Scheduled or Running)."""

    attempt: int  # shallow plus deep retries
    worker: str | None  # the worker that holds it
    backend: str  # the kind its backend_ref names
    backend_ref: str | None
    local_account: str | None


def attempts_in_flight(rt: Runtime, job_ids: Collection[str]) -> dict[str, InFlight]:
    """Those of ``job_ids`` that are still Scheduled or Running, by job id."""
    in_flight = {JobState.SCHEDULED.value, JobState.RUNNING.value}
    with rt.uow() as uow:
        jobs = [uow.jobs.get(job_id) for job_id in job_ids]
        return {job.id: InFlight(job.attempt, job.worker, _backend_kind(job.backend_ref),
                                 job.backend_ref, job.local_account)
                for job in jobs if job is not None and job.state in in_flight}


def requeue_unstarted(rt: Runtime, name: str, job_id: str, reason: str) -> bool:
    """Put a Ready or Scheduled job held by ``name`` whose wrapper never ran back in the
    queue (Waiting + a new start request), once: False if it is not held by ``name`` in
    one of those states any more. An ended job ``name`` holds (adopted to be stopped) has its
    pending cancel requests done instead: its wrapper never ran, there is nothing to stop."""
    now = utcnow()
    with rt.uow() as uow:
        job = uow.jobs.get(job_id, for_update=True)
        if job is None or job.worker != name:
            return False
        if JobState(job.state) in FINAL_STATES:
            _complete_cancels(uow, job_id, now)  # ended, its wrapper never ran: nothing to stop
            return False
        if job.state not in (JobState.READY.value, JobState.SCHEDULED.value):
            return False
        _requeue(uow, job, now, reason)
        return True


def _requeue(uow: UnitOfWork, job: Job, now: dt.datetime, reason: str) -> None:
    """Back to Waiting with a new start request; a job with a pending cancel request (the user
    cancelled it while a worker held it, before its wrapper ran) ends Cancelled by user instead:
    requeued, the next worker would start it before it saw the cancel."""
    job.worker = None
    job.backend_ref = None
    if _complete_cancels(uow, job.id, now):
        change_state(uow, job.id, JobState.CANCELLED, now, reason=CANCELLED_BY_USER)
        return
    uow.jobs.set_state(job, JobState.WAITING.value, now, reason=f"requeued: {reason}")
    uow.queue.enqueue(job.id, "start", now)


def _complete_cancels(uow: UnitOfWork, job_id: str, now: dt.datetime) -> bool:
    """Mark the job's pending ``cancel`` requests done at ``now``; True when it had one."""
    cancels = uow.queue.pending_commands([job_id], "cancel")
    for request in cancels:
        uow.queue.complete(request, now)
    return bool(cancels)
