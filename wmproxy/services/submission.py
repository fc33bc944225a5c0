"""jobRegister, jobStart and jobSubmit (``wmproxy-behaviour.md`` §3.1-§3.4).

Registration parses and checks the JDL, checks the delegated proxy, creates the job's
sandbox area and stores the original and registered JDL, all or nothing: when anything
fails, including the commit, the area is removed again. Starting changes the state to
Waiting and queues the execution request in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from wmproxy.domain import JobState, Principal, child_job_id, job_relative_dir, new_job_id, utcnow
from wmproxy.errors import JobNotFoundError, OperationNotAllowedError
from wmproxy.jdl import CompoundJob, JobDescription, describe, expand, jdl_lines, parse_jdl, registered_ad
from wmproxy.jdl.description import string_list
from wmproxy.services.compound import start_nodes
from wmproxy.services.delegation import resolve_delegation_id, usable_proxy
from wmproxy.services.renewal import choose_myproxy_server, register_for_renewal
from wmproxy.services.access import job_for
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import job_base_uri
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

#: Seconds a job's proxy must still be valid for jobStart (the reference's "≤ 1 minute" rule).
START_MIN_PROXY_LIFETIME = 60


@dataclass(frozen=True)
class RegisteredJob:
    """What jobRegister returns (JobIdStructType): id, node name, relative ISB path, nodes."""

    job_id: str
    name: str | None
    path: str
    children: tuple[RegisteredJob, ...] = field(default_factory=tuple)


def register_job(rt: Runtime, principal: Principal, jdl: str, delegation_id: str | None) -> RegisteredJob:
    """jobRegister: register a job described by ``jdl`` with the proxy of ``delegation_id``.

    Args:
        jdl: JDL text (a ClassAd, brackets optional).
        delegation_id: id of the caller's delegated proxy; empty = the default id.

    Raises:
        InvalidDelegationIdError, DelegationNotFoundError: no usable delegation.
        ProxyExpiredError: the delegated proxy has expired or has less than
            ``security.min_proxy_lifetime`` seconds (default 20 minutes) left.
        JdlSyntaxError, JdlError, InvalidJdlAttributeError, InvalidArgumentError: bad JDL.
    """
    return _atomically(rt, lambda uow, now, created: _register(uow, rt, principal, jdl, delegation_id, now, created))


def submit_job(rt: Runtime, principal: Principal, jdl: str, delegation_id: str | None) -> RegisteredJob:
    """jobSubmit: :func:`register_job` and :func:`start_job` in one transaction."""

    def work(uow: UnitOfWork, now: dt.datetime, created: list[str]) -> RegisteredJob:
        registered = _register(uow, rt, principal, jdl, delegation_id, now, created)
        job = uow.jobs.get(registered.job_id)
        assert job is not None
        _start(uow, job, now)
        return registered

    return _atomically(rt, work)


def start_job(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobStart: queue a registered job for execution; allowed once, for the owner.

    Raises:
        InvalidArgumentError: malformed job id.
        JobNotFoundError: unknown or purged job.
        AuthorizationError: job of another user.
        OperationNotAllowedError: already started, ended, or a node of a compound job.
        ProxyExpiredError: the job's delegated proxy has expired.
    """
    now = utcnow()
    with rt.uow() as uow:
        job = job_for(uow, principal, job_id, for_update=True)
        if job.state == JobState.CLEARED.value:
            raise JobNotFoundError(job_id, rt.settings.service.endpoint)
        usable_proxy(uow, job.owner_dn, job.delegation_id, now, START_MIN_PROXY_LIFETIME)
        _start(uow, job, now)


def _start(uow: UnitOfWork, job: Job, now: dt.datetime) -> None:
    if job.parent_id is not None:
        raise OperationNotAllowedError(f"the job is a DAG subjob. The parent is: {job.parent_id}")
    compound = bool(uow.jobs.children(job.id))
    if job.state in (JobState.ABORTED.value, JobState.CANCELLED.value):
        raise OperationNotAllowedError(f"job state ({job.state.upper()}) doesn't allow start operation")
    if job.state != JobState.SUBMITTED.value:
        raise OperationNotAllowedError("job started or start operation already in progress")
    uow.jobs.set_state(job, JobState.WAITING.value, now)
    if compound:
        start_nodes(uow, job, now)
    else:
        uow.queue.enqueue(job.id, "start", now)


def _register(
    uow: UnitOfWork,
    rt: Runtime,
    principal: Principal,
    jdl: str,
    delegation_id: str | None,
    now: dt.datetime,
    created: list[str],
) -> RegisteredJob:
    settings = rt.settings
    delegation_id = resolve_delegation_id(principal, delegation_id)
    delegation = usable_proxy(uow, principal.dn, delegation_id, now, settings.security.min_proxy_lifetime)
    ad = parse_jdl(jdl)
    compound = expand(ad, max_nodes=settings.jobs.max_nodes)  # validates every node
    description = describe(ad) if compound is None else _parent_description(compound)
    fqans = tuple(f for f in delegation.fqans.split("\n") if f)
    vo = fqans[0].lstrip("/").split("/", 1)[0] if fqans else None
    job_id = new_job_id(settings.service.host, settings.service.jobid_port)

    def area(this_id: str) -> str:
        rt.storage.create_job_area(this_id)
        created.append(this_id)
        return job_relative_dir(this_id, settings.sandbox.dir_name)

    def register(this_id: str, this_ad, isb_base: str, rel_dir: str, desc=None):  # type: ignore[no-untyped-def]
        registered = registered_ad(
            this_ad,
            job_id=this_id,
            certificate_subject=principal.dn,
            proxy_vo=vo,
            proxy_fqan=fqans[0] if fqans else None,
            isb_base_uri=isb_base,
            job_dir=str(rt.storage.job_dir(this_id)),
            description=desc,
        )
        registered["WMPInputSandboxBaseURI"] = job_base_uri(settings, this_id)
        return registered

    def row(this_id: str, original, registered, rel_dir: str, parent_id=None, name=None) -> Job:  # type: ignore[no-untyped-def]
        return Job(
            id=this_id,
            parent_id=parent_id,
            node_name=name,
            owner_dn=principal.dn,
            delegation_id=delegation_id,
            state=JobState.SUBMITTED.value,
            jdl_original=jdl_lines(original),
            jdl_registered=jdl_lines(registered),
            sandbox_dir=rel_dir,
            created_at=now,
            updated_at=now,
        )

    rel_dir = area(job_id)
    parent_base = job_base_uri(settings, job_id)
    parent_ad = ad if compound is None else compound.parent_ad
    parent_registered = register(job_id, parent_ad, parent_base, rel_dir, description)
    server = choose_myproxy_server(rt, parent_registered, vo)
    uow.jobs.add(row(job_id, ad, parent_registered, rel_dir))
    children: list[RegisteredJob] = []
    if compound is not None:
        ids: dict[str, str] = {}
        rows = []
        for node in compound.nodes:
            node_id = child_job_id(job_id, node.index)
            node_dir = area(node_id)
            node_registered = register(node_id, node.ad, parent_base, node_dir, node.description)
            choose_myproxy_server(rt, node_registered, vo)
            rows.append(row(node_id, node.ad, node_registered, node_dir, parent_id=job_id, name=node.name))
            ids[node.name] = node_id
            children.append(RegisteredJob(job_id=node_id, name=node.name, path=f"{node_dir}/input"))
        uow.jobs.add_all(rows)
        for before, after in compound.dependencies:
            uow.jobs.add_dependency(ids[after], ids[before])
    register_for_renewal(uow, rt, principal.dn, delegation_id, server, now)
    return RegisteredJob(job_id=job_id, name=None, path=f"{rel_dir}/input", children=tuple(children))


def _parent_description(compound: CompoundJob) -> JobDescription:
    """The DAG-level ad's description: what the parent itself carries (no executable)."""
    ad = compound.parent_ad
    vo = ad.get("VirtualOrganisation")
    return JobDescription(
        type="dag",
        input_sandbox=tuple(string_list(ad, "InputSandbox")),
        output_sandbox=tuple(string_list(ad, "OutputSandbox")),
        environment=tuple(string_list(ad, "Environment")),
        virtual_organisation=vo if isinstance(vo, str) and vo else None,
        nodes=tuple(node.name for node in compound.nodes),
    )


def _atomically(rt: Runtime, work: Callable[[UnitOfWork, dt.datetime, list[str]], RegisteredJob]) -> RegisteredJob:
    """Run ``work(uow, now, created)`` in one unit of work; on any failure remove the
    job areas it created, so that nothing is left half-written."""
    created: list[str] = []
    try:
        with rt.uow() as uow:
            return work(uow, utcnow(), created)
    except BaseException:
        for job_id in created:
            rt.storage.remove_job_area(job_id)
        raise
