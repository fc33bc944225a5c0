"""What the execution worker does to jobs, one unit of work per step.

The worker (``wmproxy.execution.worker``) owns processes, timing and signals; these
functions own the state machine: Waiting → Ready (claimed) → Scheduled (staged) →
Running → Done (exit code) | Aborted (reason) | Cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from wmproxy.domain import FINAL_STATES, JobState, utcnow
from wmproxy.jdl import JobDescription, isb_file_names, parse_jdl, read_description
from wmproxy.sandbox.storage import JobArea
from wmproxy.services.compound import on_node_ended, refresh_parent
from wmproxy.services.jobs import CANCELLED_BY_USER
from wmproxy.services.perusal import perusal_interval
from wmproxy.services.runtime import Runtime


@dataclass(frozen=True)
class StartOrder:
    """A job a worker has claimed, read from its registered JDL and its job area.

    Attributes:
        job_id: the job.
        description: the registered JDL's typed fields (``Executable``, ``Arguments``,
            ``Std*``, ``Environment`` with the server's additions, ``OutputSandbox``).
        isb_files: file names to copy from ``area.input_dir`` into the work directory
            (the registered ``InputSandbox`` entries below ``area.input_uri``).
        area: where the job's files are (a node's input is its parent's).
        proxy_pem: the delegated proxy (PEM), for ``area.proxy_file``.
        perusal_interval: seconds between perusal samples, None without perusal.
    """

    job_id: str
    description: JobDescription
    isb_files: tuple[str, ...]
    area: JobArea
    proxy_pem: bytes
    perusal_interval: int | None = None


def claim_next_start(rt: Runtime, worker: str) -> StartOrder | None:
    """Claim the oldest queued start request; the job becomes Ready.

    Returns None when nothing is queued, or when the claimed job was cancelled meanwhile.
    """
    now = utcnow()
    with rt.uow() as uow:
        request = uow.queue.claim_next(worker, now, command="start")
        if request is None:
            return None
        uow.queue.complete(request, now)
        job = uow.jobs.get(request.job_id, for_update=True)
        if job is None or job.state != JobState.WAITING.value:
            return None
        delegation = uow.delegations.get(job.owner_dn, job.delegation_id)
        uow.jobs.set_state(job, JobState.READY.value, now)
        job.backend_ref = f"worker:{worker}"
        registered = parse_jdl(job.jdl_registered)
        area = rt.storage.job_area(job.id, job.parent_id)
        proxy_pem = rt.sealer.open(delegation.sealed_proxy) if delegation is not None else b""
        return StartOrder(
            job_id=job.id,
            description=read_description(registered),
            isb_files=isb_file_names(registered, area.input_uri),
            area=area,
            proxy_pem=proxy_pem,
            perusal_interval=perusal_interval(rt, registered),
        )


def set_state(
    rt: Runtime,
    job_id: str,
    state: JobState,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    backend_ref: str | None = None,
) -> bool:
    """Move a job to ``state`` unless it has already ended. Returns whether it moved."""
    now = utcnow()
    with rt.uow() as uow:
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
    return set_state(rt, job_id, JobState.CANCELLED, reason=CANCELLED_BY_USER)
