"""What the execution worker does to jobs, one unit of work per step.

The worker (``wmproxy.execution.worker``) owns processes, timing and signals; these
functions own the state machine: Waiting → Ready (claimed) → Scheduled (work dir
prepared, recorded in ``backend_ref``) → Running (wrapper spawned) → Done (exit code) |
Aborted (reason) | Cancelled; and the bookkeeping that keeps a job from being lost or
run twice: worker heartbeats (``execution_workers``), the worker holding each job
(``jobs.worker``) and adoption of the jobs of dead workers (:func:`adopt_jobs`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass

import classad2

from wmproxy.domain import FINAL_STATES, JobState, utcnow
from wmproxy.errors import WMProxyError
from wmproxy.jdl import JobDescription, isb_file_names, parse_jdl, read_description
from wmproxy.sandbox.storage import JobArea
from wmproxy.services.compound import on_node_ended, refresh_parent
from wmproxy.services.jobs import CANCELLED_BY_USER
from wmproxy.services.perusal import perusal_interval
from wmproxy.services.runtime import Runtime
from wmproxy.store import JobLockedError, UnitOfWork
from wmproxy.store.schema import Job

#: States of a job a worker holds (``jobs.worker`` names it).
HELD_STATES = (JobState.READY, JobState.SCHEDULED, JobState.RUNNING)
_HELD = tuple(state.value for state in HELD_STATES)


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
            adopted job (its copy is already in place) or a destroyed delegation.
        perusal_interval: seconds between perusal samples, None without perusal.
        local_account: the Unix account decided at registration, None without mapping.
        prologue, epilogue: JDL ``Prologue``/``Epilogue``, None when absent.
        prologue_arguments, epilogue_arguments: JDL ``PrologueArguments``/
            ``EpilogueArguments`` as written (shell-split by the worker).
        state: the job's state when read (Ready for a claim; Scheduled or Running for
            an adopted job).
        backend_ref: the stored backend reference (adopted jobs), else None.
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


def _order(rt: Runtime, job: Job, proxy_pem: bytes) -> StartOrder:
    registered = parse_jdl(job.jdl_registered)
    area = rt.storage.job_area(job.id, job.parent_id)
    return StartOrder(
        job_id=job.id,
        description=read_description(registered),
        isb_files=isb_file_names(registered, area.input_uri),
        area=area,
        proxy_pem=proxy_pem,
        perusal_interval=perusal_interval(rt, registered),
        local_account=job.local_account,
        prologue=_text(registered, "Prologue"),
        prologue_arguments=_text(registered, "PrologueArguments") or "",
        epilogue=_text(registered, "Epilogue"),
        epilogue_arguments=_text(registered, "EpilogueArguments") or "",
        state=JobState(job.state),
        backend_ref=job.backend_ref,
    )


def _text(ad: classad2.ClassAd, name: str) -> str | None:
    value = ad.get(name)
    return value if isinstance(value, str) and value else None


def claim_next_start(rt: Runtime, worker: str) -> StartOrder | None:
    """Claim the oldest queued start request; the job becomes Ready, held by ``worker``.

    Returns None when nothing is queued, or when the claimed job was cancelled meanwhile.
    """
    now = utcnow()
    try:
        with rt.uow() as uow:
            request = uow.queue.claim_next(worker, now, command="start")
            if request is None:
                return None
            # The claimed request row is locked: never wait for the job's row while holding it
            # (a jobCancel locks the job, then completes its queued request). Lock the job
            # before completing the request: PostgreSQL checks the foreign key of a row
            # updated twice in one transaction, with a share lock on the job's row.
            job = uow.jobs.get(request.job_id, for_update=True, nowait=True)
            uow.queue.complete(request, now)
            if job is None or job.state != JobState.WAITING.value:
                return None
            delegation = uow.delegations.get(job.owner_dn, job.delegation_id)
            uow.jobs.set_state(job, JobState.READY.value, now)
            job.worker = worker
            job.backend_ref = None
            proxy_pem = rt.sealer.open(delegation.sealed_proxy) if delegation is not None else b""
            return _order(rt, job, proxy_pem)
    except JobLockedError:
        return None  # rolled back: the request stays queued for the next poll


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
        return _set_state(uow, job_id, state, utcnow(), reason=reason, exit_code=exit_code, backend_ref=backend_ref)


def _set_state(uow: UnitOfWork, job_id: str, state: JobState, now: dt.datetime, *, reason: str | None = None,
               exit_code: int | None = None, backend_ref: str | None = None) -> bool:
    job = uow.jobs.get(job_id, for_update=True)
    if job is None or JobState(job.state) in FINAL_STATES:
        return False
    uow.jobs.set_state(job, state.value, now, reason=reason, exit_code=exit_code)
    if backend_ref is not None:
        job.backend_ref = backend_ref
    if state in FINAL_STATES:
        on_node_ended(uow, job, now)
    elif job.parent_id is not None:
        parent = uow.jobs.get(job.parent_id)
        if parent is not None:
            refresh_parent(uow, parent, now)
    return True


def take_cancel_requests(rt: Runtime, job_ids: list[str]) -> list[str]:
    """Jobs among ``job_ids`` with a pending cancel request; the requests are marked done."""
    if not job_ids:
        return []
    now = utcnow()
    found: list[str] = []
    with rt.uow() as uow:
        for request in uow.queue.pending_commands(job_ids, "cancel"):
            uow.queue.complete(request, now)
            found.append(request.job_id)
    return found


def mark_cancelled(rt: Runtime, job_id: str) -> bool:
    """The job was cancelled by its owner (jobCancel); False if it had already ended."""
    return set_state(rt, job_id, JobState.CANCELLED, reason=CANCELLED_BY_USER)


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
        if not uow.workers.held_jobs(name, _HELD):
            uow.workers.remove(name, host, pid)


def adopt_jobs(rt: Runtime, name: str, host: str, known: Collection[str]) -> list[StartOrder]:
    """Take over the jobs of dead workers on ``host`` and return the held jobs to follow.

    In one transaction: every other worker on ``host`` whose heartbeat is older than
    ``[execution] heartbeat_lease`` is removed by compare-and-set and its held jobs
    become ``name``'s (several workers racing: exactly one wins each dead worker). Then
    every job ``name`` holds that is not in ``known`` (the jobs the calling process
    follows already; this includes its own previous life's jobs) is looked at:

    * Ready (claimed, no work dir recorded): back to Waiting with a new start request,
      exactly once (the job then belongs to no worker);
    * Scheduled or Running: returned, for the worker to follow through its backend
      reference (:func:`requeue_unstarted` if its wrapper never ran).

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
            uow.workers.take_over(dead, name, _HELD)
        for job in uow.workers.held_jobs(name, _HELD):
            if job.id in known:
                continue
            if job.state == JobState.READY.value:
                _requeue(uow, job, now, "claimed by a worker that stopped before preparing it")
            else:
                follow.append(_order(rt, job, b""))
    return follow


def requeue_unstarted(rt: Runtime, name: str, job_id: str, reason: str) -> bool:
    """Put a Ready or Scheduled job held by ``name`` whose wrapper never ran back in the
    queue (Waiting + a new start request), once: False if it is not held by ``name`` in
    one of those states any more."""
    now = utcnow()
    with rt.uow() as uow:
        job = uow.jobs.get(job_id, for_update=True)
        if job is None or job.worker != name or job.state not in (JobState.READY.value, JobState.SCHEDULED.value):
            return False
        _requeue(uow, job, now, reason)
        return True


def _requeue(uow: UnitOfWork, job: Job, now: dt.datetime, reason: str) -> None:
    uow.jobs.set_state(job, JobState.WAITING.value, now, reason=f"requeued: {reason}")
    job.worker = None
    job.backend_ref = None
    uow.queue.enqueue(job.id, "start", now)
