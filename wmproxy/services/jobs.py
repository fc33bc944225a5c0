"""Operations on registered jobs: status, JDL, cancel, purge, output file list.

References: ``wmproxy-behaviour.md`` §10 (getJobStatus), §1.3 (getJDL), §3.6 (jobCancel),
§4.5 (getOutputFileList), §4.7 (jobPurge, with the WMS 3.3 state check).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from wmproxy.domain import ACTIVE_STATES, FINAL_STATES, JobState, Principal, utcnow
from wmproxy.errors import (
    DelegationNotFoundError,
    InvalidArgumentError,
    OperationNotAllowedError,
)
from wmproxy.security.proxy_info import ProxyInfo
from wmproxy.services.access import job_for, live_job
from wmproxy.services.compound import CANCEL_REQUESTED, end_unstarted, on_node_ended, refresh_parent
from wmproxy.services.delegation import describe_proxy
from wmproxy.services.quota import area_released, release_area, release_areas
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import file_uri, select_protocols
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import ExecutionRequest, Job

CANCELLED_BY_USER = "Cancelled by user"
#: Node ids per query when a compound job's nodes are read together.
_ID_BATCH = 500


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
    ``cancel`` request that the worker carries out (stopping the process).

    A compound job is cancelled as a whole (:func:`_cancel_compound`): each of its nodes
    that has not ended is cancelled ("Cancelled by user"), none is aborted as a dependency
    failure, and the compound job ends Cancelled. A node can also be cancelled alone: it
    ends Cancelled and the DAG rules then apply as to any node that did not succeed, so the
    nodes depending on it are aborted ("dependency <node> did not end successfully") and
    the compound job ends as its nodes say (Aborted, then); in a compound job never started,
    the cancel that leaves no node to run ends it so (Cancelled when every node was
    cancelled) and releases its areas, as a cancel of the whole job does. A cancel of the whole job is the
    user's decision about every node at once, so no node's end should be read as another's
    dependency failure; a cancel of one node is a decision about that node only, and its
    dependents cannot run without it.

    Raises:
        OperationNotAllowedError: the job has ended, or a cancel is already pending.
    """
    now = utcnow()
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)
        state = JobState(job.state)
        if state in FINAL_STATES:
            raise OperationNotAllowedError(f"job status ({state.value.upper()}) doesn't allow job cancel")
        # The nodes locked (after their compound job, the order of a worker's claim and ends):
        # a node a worker claims or ends meanwhile is read as the worker left it, never
        # overwritten Cancelled while the worker holds it.
        nodes = uow.jobs.children(job.id, for_update=True)
        if nodes:
            _cancel_compound(uow, rt, job, nodes, now)
            return
        _cancel_one(uow, rt, job, now)


def _cancel_compound(uow: UnitOfWork, rt: Runtime, parent: Job, nodes: Sequence[Job], now: dt.datetime) -> None:
    """Cancel the compound job ``parent`` (not ended) and its ``nodes``, as :func:`cancel_job` says.

    Every node that has not ended is cancelled first, none through
    :func:`~wmproxy.services.compound.on_node_ended`: a node cancelled before its
    dependents were reached would otherwise abort them, and the compound job would end
    Aborted or Cancelled depending on the order of its nodes. Nodes a worker holds get a
    ``cancel`` request; the compound job then stays as it is until they have ended, and
    its ``cancel_requested`` event makes it end Cancelled even when some nodes ended
    otherwise (:func:`~wmproxy.services.compound.refresh_parent`). A compound job never
    started is Cancelled at once and, as a simple job's cancel does, its area and its
    nodes' areas are removed and their bytes taken off the owner's quota usage.

    Raises:
        OperationNotAllowedError: a cancel of the whole job is already pending.
    """
    if uow.jobs.history(parent.id, kinds=(CANCEL_REQUESTED,)):
        raise OperationNotAllowedError("Cancel has already been requested")
    unfinished = [node for node in nodes if JobState(node.state) not in FINAL_STATES]
    ids = [node.id for node in unfinished]
    pending: dict[str, list[ExecutionRequest]] = {job_id: [] for job_id in ids}
    for start in range(0, len(ids), _ID_BATCH):  # the nodes' requests in a few queries, not one per node
        for command in ("start", "cancel"):
            for request in uow.queue.pending_commands(ids[start:start + _ID_BATCH], command):
                pending[request.job_id].append(request)
    for node in unfinished:
        _cancel_one(uow, rt, node, now, pending=pending[node.id], quiet=True, alone=False)
    if parent.state == JobState.SUBMITTED.value:  # no node was started: none is held
        uow.jobs.set_state(parent, JobState.CANCELLED.value, now, reason=CANCELLED_BY_USER)
        release_areas(uow, rt, parent.owner_dn, [*(node.id for node in nodes), parent.id])
        return
    uow.jobs.record_event(parent, CANCEL_REQUESTED, now, source="user", reason=CANCELLED_BY_USER)
    refresh_parent(uow, parent, now)


def _cancel_one(uow: UnitOfWork, rt: Runtime, job: Job, now: dt.datetime, *,
                pending: Sequence[ExecutionRequest] | None = None, quiet: bool = False, alone: bool = True) -> None:
    """Cancel one simple job or node (see :func:`cancel_job`); ``pending``: its pending
    requests when the caller has read them; ``quiet`` skips one whose cancel is already
    pending instead of refusing; ``alone`` False (a node of a compound job cancelled as a
    whole) leaves its dependents and its compound job to the caller."""
    state = JobState(job.state)
    if pending is None:
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
        if alone:
            on_node_ended(uow, job, now)
            if state == JobState.SUBMITTED and job.parent_id is not None:
                _end_unstarted_parent(uow, rt, job.parent_id, now)
        return
    if state not in ACTIVE_STATES:  # the callers pass no ended job
        raise OperationNotAllowedError(f"job status ({state.value.upper()}) doesn't allow job cancel")
    uow.jobs.record_event(job, CANCEL_REQUESTED, now, source="user", reason=CANCELLED_BY_USER)
    uow.queue.enqueue(job.id, "cancel", now)


def _end_unstarted_parent(uow: UnitOfWork, rt: Runtime, parent_id: str, now: dt.datetime) -> None:
    """After a node of a never-started compound job was cancelled alone: when no node is left
    to run, the compound job ends as its nodes say (Cancelled when all were cancelled) and, as
    :func:`_cancel_compound` does, its area and its nodes' are removed and their bytes taken
    off the owner's quota usage (it stayed Submitted, holding them, and could not be purged)."""
    parent = uow.jobs.get(parent_id, for_update=True)  # locked already, before the node
    if parent is not None and end_unstarted(uow, parent, now):
        release_areas(uow, rt, parent.owner_dn, [*(node.id for node in uow.jobs.children(parent.id)), parent.id])


def purge_job(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobPurge (§4.7): remove the job's area; the job becomes Cleared.

    Allowed, as in WMS 3.3, only for Done, Aborted and Cancelled jobs.

    Raises:
        OperationNotAllowedError: "Job current status doesn't allow purge operation".
        SandboxBusyError: (an OperationNotAllowedError, 1226) an area of the job is missing and
            another removal holds it aside (``.purging-*``, still deleting it or putting it
            back): the job is left as it was, to be purged again later; success means its files
            are gone (docs/keys-and-lifecycle.md).
    """
    now = utcnow()
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)
        if job.parent_id is not None:
            raise OperationNotAllowedError(f"the job is a DAG subjob. The parent is: {job.parent_id}")
        if job.state not in (JobState.DONE.value, JobState.ABORTED.value, JobState.CANCELLED.value):
            raise OperationNotAllowedError("Job current status doesn't allow purge operation")
        released = area_released(uow, job)  # cancelled before it started: its bytes left at the cancel
        uow.jobs.set_state(job, JobState.CLEARED.value, now, reason="user retrieved output sandbox")
        uow.jobs.record_event(job, "purged", now, source="user", reason="job area removed")
        children = uow.jobs.children(job.id)
        for child in children:
            uow.jobs.set_state(child, JobState.CLEARED.value, now, reason="user retrieved output sandbox")
        release_areas(uow, rt, job.owner_dn, [*(child.id for child in children), job.id],  # one lock, not one a node
                      cleared=released)


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
