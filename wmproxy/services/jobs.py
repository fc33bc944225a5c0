"""Operations on registered jobs: status, JDL, cancel, purge, output file list.

References: ``wmproxy-behaviour.md`` §10 (getJobStatus), §1.3 (getJDL), §3.6 (jobCancel),
§4.5 (getOutputFileList), §4.7 (jobPurge, with the WMS 3.3 state check).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from wmproxy.domain import ACTIVE_STATES, FINAL_STATES, JobState, Principal, utcnow
from wmproxy.errors import (
    DelegationNotFoundError,
    InvalidArgumentError,
    OperationNotAllowedError,
)
from wmproxy.security.proxy_info import ProxyInfo
from wmproxy.services.access import job_for, live_job
from wmproxy.services.compound import on_node_ended, refresh_parent
from wmproxy.services.delegation import describe_proxy
from wmproxy.services.quota import release_area
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import file_uri, select_protocols
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

CANCELLED_BY_USER = "Cancelled by user"


@dataclass(frozen=True)
class JobStatus:
    """getJobStatus result: ``status`` is the state name, followed for ended jobs by a
    parenthesised detail: ``Done (Exit Code 0)``, ``Aborted (<reason>)``,
    ``Cancelled (Cancelled by user)``. ``state``, ``exit_code`` and ``reason`` are the parts;
    ``destination`` is the CE the job was last matched to (``GlueCEUniqueID``), if any."""

    job_id: str
    status: str
    state: str
    exit_code: int | None = None
    reason: str | None = None
    children: tuple[JobStatus, ...] = field(default_factory=tuple)
    destination: str | None = None


def status_text(job: Job) -> str:
    if job.state == JobState.DONE.value:
        return f"Done (Exit Code {job.exit_code})"
    if job.state in (JobState.ABORTED.value, JobState.CANCELLED.value) and job.reason:
        return f"{job.state} ({job.reason})"
    return job.state


def _status(uow: UnitOfWork, job: Job) -> JobStatus:
    """The job's status and, for a compound job, its nodes' (nodes have no nodes: one query)."""
    nodes = uow.jobs.children(job.id) if job.parent_id is None else ()
    children = tuple(JobStatus(n.id, status_text(n), n.state, n.exit_code, n.reason, destination=n.destination)
                     for n in nodes)
    return JobStatus(job.id, status_text(job), job.state, job.exit_code, job.reason, children, job.destination)


def job_status(rt: Runtime, principal: Principal, job_id: str) -> JobStatus:
    """getJobStatus: the job's state and, for compound jobs, each node's.

    Raises:
        InvalidArgumentError, JobNotFoundError, AuthorizationError: see :func:`access.job_for`.
    """
    with rt.uow() as uow:
        return _status(uow, job_for(uow, principal, job_id, access="read"))


def get_jdl(rt: Runtime, principal: Principal, job_id: str, kind: str) -> str:
    """getJDL: the JDL as the user sent it (``ORIGINAL``) or as registered (``REGISTERED``).

    Raises:
        InvalidArgumentError: ``kind`` is neither ORIGINAL nor REGISTERED.
    """
    if kind not in ("ORIGINAL", "REGISTERED"):
        raise InvalidArgumentError(f"Invalid Argument: JDL type {kind!r}")
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        return job.jdl_original if kind == "ORIGINAL" else job.jdl_registered


def job_proxy_info(rt: Runtime, principal: Principal, job_id: str) -> ProxyInfo:
    """getJobProxyInfo (§5.5): the proxy the job runs with.

    Raises:
        InvalidArgumentError: empty id ("Provided Job Id not valid").
        DelegationNotFoundError: the job's delegation has been destroyed.
    """
    if not job_id:
        raise InvalidArgumentError("Provided Job Id not valid")
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        delegation = uow.delegations.get(job.owner_dn, job.delegation_id)
        if delegation is None:
            raise DelegationNotFoundError("Unable to get the job's delegated Proxy")
        pem = rt.sealer.open(delegation.sealed_proxy)
    return describe_proxy(rt, pem)


def cancel_job(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobCancel (§3.6).

    A registered job that was never started is cancelled at once and its area removed;
    a queued job is cancelled before a worker takes it; a job a worker holds gets a
    ``cancel`` request that the worker carries out (stopping the process). Cancelling
    a compound job cancels all its nodes; a node can be cancelled alone, and then the
    DAG nodes depending on it are aborted.

    Raises:
        OperationNotAllowedError: the job has ended, or a cancel is already pending.
    """
    now = utcnow()
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)
        state = JobState(job.state)
        if state in FINAL_STATES:
            raise OperationNotAllowedError(f"job status ({state.value.upper()}) doesn't allow job cancel")
        nodes = uow.jobs.children(job.id)
        if nodes:
            for node in nodes:
                if JobState(node.state) not in FINAL_STATES:
                    _cancel_one(uow, rt, node, now, quiet=True)
            if state == JobState.SUBMITTED:
                uow.jobs.set_state(job, JobState.CANCELLED.value, now, reason=CANCELLED_BY_USER)
            else:
                refresh_parent(uow, job, now)
            return
        _cancel_one(uow, rt, job, now)


def _cancel_one(uow: UnitOfWork, rt: Runtime, job: Job, now: dt.datetime, *, quiet: bool = False) -> None:
    """Cancel one simple job or node (see :func:`cancel_job`); ``quiet`` skips one whose
    cancel is already pending instead of refusing."""
    state = JobState(job.state)
    pending = uow.queue.pending_for(job.id)
    if any(r.command == "cancel" for r in pending):
        if quiet:
            return
        raise OperationNotAllowedError("Cancel has already been requested")
    if state in (JobState.SUBMITTED, JobState.WAITING):  # no worker holds it yet
        for request in pending:
            uow.queue.complete(request, now)
        uow.jobs.set_state(job, JobState.CANCELLED.value, now, reason=CANCELLED_BY_USER)
        if state == JobState.SUBMITTED and job.parent_id is None:
            release_area(uow, rt, job.owner_dn, job.id)
        on_node_ended(uow, job, now)
        return
    if state not in ACTIVE_STATES:  # the callers pass no ended job
        raise OperationNotAllowedError(f"job status ({state.value.upper()}) doesn't allow job cancel")
    uow.jobs.record_event(job, "cancel_requested", now, source="user", reason=CANCELLED_BY_USER)
    uow.queue.enqueue(job.id, "cancel", now)


def purge_job(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobPurge (§4.7): remove the job's area; the job becomes Cleared.

    Allowed, as in WMS 3.3, only for Done, Aborted and Cancelled jobs.

    Raises:
        OperationNotAllowedError: "Job current status doesn't allow purge operation".
    """
    now = utcnow()
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)
        if job.parent_id is not None:
            raise OperationNotAllowedError(f"the job is a DAG subjob. The parent is: {job.parent_id}")
        if job.state not in (JobState.DONE.value, JobState.ABORTED.value, JobState.CANCELLED.value):
            raise OperationNotAllowedError("Job current status doesn't allow purge operation")
        uow.jobs.set_state(job, JobState.CLEARED.value, now, reason="user retrieved output sandbox")
        uow.jobs.record_event(job, "purged", now, source="user", reason="job area removed")
        for child in uow.jobs.children(job.id):
            uow.jobs.set_state(child, JobState.CLEARED.value, now, reason="user retrieved output sandbox")
            release_area(uow, rt, child.owner_dn, child.id)
        release_area(uow, rt, job.owner_dn, job.id)


def output_files(rt: Runtime, principal: Principal, job_id: str, protocol: str | None) -> list[tuple[str, int]]:
    """getOutputFileList (§4.5): ``(URI, size in bytes)`` of each file in the job's output area.

    Raises:
        InvalidArgumentError: protocol not available.
        OperationNotAllowedError: the job is neither Done nor Aborted.
    """
    protocols = select_protocols(protocol, default="default")
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        if uow.jobs.children(job.id):
            raise OperationNotAllowedError("getOutputFileList operation not allowed for dag or collection type")
        if job.state not in (JobState.DONE.value, JobState.ABORTED.value):
            raise OperationNotAllowedError("Job current status doesn't allow getOutputFileList operation")
        area = rt.storage.job_area(job.id, job.parent_id)
        files = rt.storage.output_files(job.id)
        return [(file_uri(area.output_uri, name), size) for _ in protocols for name, size in files]
