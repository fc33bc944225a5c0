"""jobRegister, jobStart and jobSubmit (``wmproxy-behaviour.md`` §3.1-§3.4).

Registration parses and checks the JDL (with the sandbox file-count and file-name limits
of ``[limits]``), checks the delegated proxy (usable lifetime, not limited, its primary
FQAN the client's: WTS bug 54728) and takes its VOMS FQANs as they verify now, maps the
caller to its local account (stored with every job row and shown as ``LocalAccount`` in the
registered JDL), creates the job's directory in the sandbox area for jobRegister (only it:
``input/``, ``output/`` and ``peek/`` come with their first write; jobSubmit makes none, the
execution worker makes it when it claims the job: ``wmproxy.sandbox.storage``) and stores the
original and registered JDL, all or nothing: when anything fails, including the commit, the
area is removed again. Starting changes the state to Waiting and queues the execution request
in the same transaction.

A simple jobSubmit, once this process has read or stored the caller's delegated proxy, is
checked against that copy and written by one write that the store refuses unless it still
holds the same sealed proxy (``wmproxy.store.job_writes``; issue 14): on PostgreSQL one
statement with no transaction round trips. Anything that write cannot answer goes through the
unit of work as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import classad2

from wmproxy.domain import JobState, Principal, child_job_id, fqan_vo, new_job_id, utcnow
from wmproxy.errors import JobNotFoundError, OperationNotAllowedError, SandboxError, WMProxyError
from wmproxy.jdl import JobDescription, check_expressions, expand, jdl_lines, parse_jdl, registered_ad
from wmproxy.jdl.attributes import AdView, string_list
from wmproxy.jdl.compound import compound_kind
from wmproxy.jdl.description import describe_simple
from wmproxy.sandbox import zipped
from wmproxy.sandbox.storage import TMP_SUFFIX, JobArea, check_file_name
from wmproxy.services import history
from wmproxy.services.access import job_for
from wmproxy.services.compound import start_nodes
from wmproxy.services.delegation import (
    believed_fqans,
    check_fqan_match,
    check_usable,
    forget_proxy,
    recent_proxy,
    remember_proxy,
    resolve_delegation_id,
    usable_proxy,
)
from wmproxy.services.mapping import map_identity
from wmproxy.services.quota import change_usage, upload_room
from wmproxy.services.renewal import myproxy_server_for, register_for_renewal
from wmproxy.services.runtime import Runtime
from wmproxy.services.sandboxes import check_sandbox_lists
from wmproxy.store import UnitOfWork
from wmproxy.store.delegations import StoredProxy
from wmproxy.store.job_writes import JobWrites, job_writes
from wmproxy.store.schema import Job

#: Seconds a job's proxy must still be valid for jobStart (the reference's "≤ 1 minute" rule).
START_MIN_PROXY_LIFETIME = 60
#: Node rows of a compound job added and flushed together (see :func:`_register`).
NODE_BATCH = 500


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
        LimitedProxyError: the delegated proxy was signed by a limited proxy.
        FqanMismatchError: the client proxy's primary FQAN is not the delegated proxy's.
        JdlSyntaxError, JdlError, InvalidJdlAttributeError, InvalidArgumentError: bad JDL.
        SandboxFileCountError, SandboxNameError: an InputSandbox/OutputSandbox list over the
            ``[limits]`` file count, or a file name the service refuses.
        MappingError, MappingNotAllowedError: the caller cannot be mapped to a local
            account (``wmproxy.services.mapping.map_identity``; AuthorizationFault).
    """
    def work(uow: UnitOfWork, now: dt.datetime, created: list[str]) -> RegisteredJob:
        registered, job, _ = _register(uow, rt, principal, jdl, delegation_id, now, created)
        if not isinstance(job, Job):  # a simple job: its column values
            uow.jobs.insert(job, (JobState.SUBMITTED.value,))
        return registered

    return _atomically(rt, work)


def submit_job(rt: Runtime, principal: Principal, jdl: str, delegation_id: str | None) -> RegisteredJob:
    """jobSubmit: :func:`register_job` and :func:`start_job` in one transaction; no job
    directory is made (the execution worker makes it when it claims the job,
    ``wmproxy.services.execution``).

    A simple job, with no local account mapping, no MyProxy renewal to register and no MyProxy
    default configured, is checked against the stored proxy this process last read or stored
    for the caller's delegation id
    and written with one guarded write (:func:`_submit_guarded`); in every other case, and
    whenever the store holds another proxy by then, in a unit of work that reads the stored
    proxy first. Both check the same and raise the same faults (:func:`register_job`'s).
    """
    now = utcnow()
    renewal = rt.settings.renewal
    # No guarded write where it cannot apply: a mapping, a MyProxy server every job without
    # one of its own is renewed from, a JDL too long for one write.
    writes = job_writes(rt.session_factory)
    guarded = (rt.settings.mapping.mode == "none" and not renewal.myproxy_server.strip()
               and not renewal.myproxy_servers_by_vo and writes.may_take(jdl))
    parsed = None
    if guarded:
        try:
            done = _submit_guarded(rt, writes, principal, jdl, delegation_id, now)
        except _NeedsTransaction as needs:  # a compound job, a renewal: the JDL is parsed already
            done, parsed = None, needs.ad
        if done is not None:
            return done
    with rt.uow() as uow:  # nothing on disk to undo on a failure (see _atomically)
        # The row _register made is started as it is (not read back, its nodes not asked for).
        # No job directory is made: nothing may be uploaded into a started job, and the worker
        # that claims it makes the directory (issue 14: no mkdir here).
        registered, job, proxy = _register(uow, rt, principal, jdl, delegation_id, now, None, ad=parsed)
        if isinstance(job, Job):
            _start(uow, job, now, compound=True)
        else:
            # A simple job goes in once, already Waiting, with its two events (Submitted,
            # Waiting) and its start request: three INSERTs on SQLite, one statement on
            # PostgreSQL, no ORM object or flush (issue 14).
            job["state"], job["updated_at"] = JobState.WAITING.value, now
            uow.jobs.insert(job, _SUBMITTED_HISTORY, request="start")
    if guarded:
        remember_proxy(rt, principal.dn, proxy)
    return registered


#: A jobSubmit'd simple job's states: registered, then started.
_SUBMITTED_HISTORY = (JobState.SUBMITTED.value, JobState.WAITING.value)


class _NeedsTransaction(Exception):  # noqa: N818 - a signal between two functions, never raised out of this module
    """The job needs a unit of work: a compound job, or a MyProxy renewal to register. ``ad``
    is its JDL as parsed (not parsed again)."""

    def __init__(self, ad: classad2.ClassAd) -> None:
        super().__init__()
        self.ad = ad


def _submit_guarded(
    rt: Runtime, writes: JobWrites, principal: Principal, jdl: str, delegation_id: str | None, now: dt.datetime
) -> RegisteredJob | None:
    """jobSubmit of a simple job as one guarded write (issue 14): registered with the stored
    proxy this process last read or stored for (DN, delegation id) (``recent_proxy``), then
    written only if the store still holds that proxy
    (:meth:`wmproxy.store.job_writes.JobWrites.insert_started`: on PostgreSQL one statement and
    no transaction round trips).

    Returns None, having written nothing, when that does not apply or cannot answer: no proxy
    read yet, a JDL too large for one write, any fault (the proxy kept may be older than the
    store's: the unit of work reads the store and answers), or a store that holds another proxy
    now (it is forgotten). The caller then submits in a unit of work.

    Raises:
        _NeedsTransaction: a compound job or a renewal to register (nothing written).
    """
    try:
        resolved = resolve_delegation_id(principal, delegation_id)
    except WMProxyError:
        return None
    proxy = recent_proxy(rt, principal.dn, resolved)
    if proxy is None:
        return None
    try:
        registered, job, _ = _register(None, rt, principal, jdl, resolved, now, None, proxy=proxy)
    except WMProxyError:
        return None
    assert not isinstance(job, Job)  # noqa: S101 - _register raises _NeedsTransaction for a compound job
    job["state"], job["updated_at"] = JobState.WAITING.value, now
    if not writes.takes(job):
        return None
    if not writes.insert_started(
            job, _SUBMITTED_HISTORY, "start",
            owner_dn=principal.dn, delegation_id=resolved, sealed_proxy=proxy.sealed_proxy):
        forget_proxy(rt, principal.dn, resolved)
        return None
    return registered


def start_job(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobStart: queue a registered job for execution; allowed once, for the owner.

    Raises:
        InvalidArgumentError: malformed job id.
        JobNotFoundError: unknown or purged job.
        AuthorizationError: job of another user.
        OperationNotAllowedError: already started, ended, or a node of a compound job.
        ProxyExpiredError: the job's delegated proxy has expired.
        LimitedProxyError: the job's delegated proxy is now a limited one.
        FqanMismatchError: the caller's primary FQAN is not the job's delegated proxy's.

    The state changes under the job's input lock (``input_changes``, taken before the database's
    locks, as the sandbox edge does): an upload of the job's input sandbox commits before the
    start, or is refused after it (:func:`wmproxy.services.sandboxes.change_area_bytes`).
    """
    with rt.storage.input_changes(job_id):
        _extract_zipped_isb(rt, principal, job_id)
        with rt.uow() as uow:
            now = utcnow()  # once the lock is held: a commit of an upload may have held it
            job = job_for(uow, principal, job_id, for_update=True)
            if job.state == JobState.CLEARED.value:
                raise JobNotFoundError(job_id, rt.settings.service.endpoint)
            row = usable_proxy(uow, job.owner_dn, job.delegation_id, now, START_MIN_PROXY_LIFETIME)
            check_fqan_match(principal, believed_fqans(rt, row, now, "start jobs"))
            history.note_input_sandbox(uow, rt, job, now)
            _start(uow, job, now)


def _extract_zipped_isb(rt: Runtime, principal: Principal, job_id: str) -> None:
    """jobStart's ZippedISB step (``wmproxy-behaviour.md`` §3.2 step 8e): extract the archives
    the registered JDL's ``ZippedISB`` names from the job's ``input/`` into it, delete them and
    leave the marker ``<job dir>/.unzipok`` (:data:`~wmproxy.sandbox.zipped.MARKER`), so that a
    repeated jobStart does not extract again. Called with the job's input lock held (no upload
    commits meanwhile), before the job is started, for a Submitted job that is not a node, whose
    proxy is usable (checked here too: nothing is extracted for a start that would be refused).

    Members must be named ``<path>/<file>`` with ``path`` the job's ``JobIdStructType.path``
    (``SandboxDir/<2ch>/<encoded job id>/input``) or, for a compound job, one of its nodes' (the
    nodes read the compound job's ``input/``, where their files go). The extracted bytes count
    against MaxInputSandboxSize, ``[limits] max_input_sandbox_files`` and the owner's hard quota;
    the owner's usage counter gets the extracted bytes less the archives' in the transaction that
    deletes the archives (:func:`~wmproxy.services.quota.change_usage`). On any failure nothing is
    left of the extraction and the archives stay.

    Raises:
        ArchiveMemberError: a member the service refuses (:mod:`wmproxy.sandbox.zipped`; 1225).
        InvalidArgumentError: an archive missing or not a tar.gz archive.
        QuotaExceededError: over MaxInputSandboxSize or the hard quota.
        SandboxFileCountError: over ``max_input_sandbox_files``.
        SandboxError: the files cannot be written, or the marker cannot be made.
        As jobStart: the job's or its proxy's faults.
    """
    with rt.uow() as uow:
        job = job_for(uow, principal, job_id)
        if (job.state != JobState.SUBMITTED.value or job.parent_id is not None
                or "zippedisb" not in job.jdl_registered.lower()):
            return  # nothing to extract, or a start the next step refuses
        archives = list(dict.fromkeys(string_list(parse_jdl(job.jdl_registered), "ZippedISB")))
        if not archives:
            return
        now = utcnow()
        row = usable_proxy(uow, job.owner_dn, job.delegation_id, now, START_MIN_PROXY_LIFETIME)
        check_fqan_match(principal, believed_fqans(rt, row, now, "start jobs"))
        owner = job.owner_dn
        areas = [job.id, *(child.id for child in uow.jobs.children(job.id))]
    job_dir = rt.storage.job_dir(job_id)
    if os.path.lexists(job_dir / zipped.MARKER):
        return
    for name in archives:
        check_file_name(name, rt.settings.limits.max_sandbox_name_bytes, "ZippedISB file name")
    input_dir = rt.storage.job_area(job_id).input_text
    archive_bytes = 0
    for name in archives:
        with contextlib.suppress(OSError):
            st = os.lstat(os.path.join(input_dir, name))
            archive_bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
    held = rt.storage.input_tally(job_id)
    max_bytes = rt.settings.service.max_input_sandbox_size - (held.size - archive_bytes)
    room = upload_room(rt, owner)
    if room is not None:
        max_bytes = min(max_bytes, room + archive_bytes)
    file_limit = rt.settings.limits.max_input_sandbox_files
    held_files = held.files - len(archives)
    limits = zipped.ExtractLimits(
        max_bytes=max(0, max_bytes), max_entries=None if file_limit <= 0 else max(0, file_limit - held_files),
        file_limit=file_limit, held_files=held_files, max_name_bytes=rt.settings.limits.max_sandbox_name_bytes)
    prefixes = frozenset(tuple(f"{rt.storage.job_rel_dir(area)}/input".split("/")) for area in areas)
    made = zipped.extract_archives(input_dir, archives, prefixes, limits)
    moved: list[tuple[str, str]] = []
    marked = False

    def apply() -> None:  # in the counter's transaction: the archives out of the count, the marker
        nonlocal marked
        for name in archives:
            aside = f".{name[:100]}.{secrets.token_hex(4)}{TMP_SUFFIX}"  # not counted (is_temporary)
            os.rename(os.path.join(input_dir, name), os.path.join(input_dir, aside))
            moved.append((name, aside))
        os.close(os.open(job_dir / zipped.MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        marked = True

    try:
        change_usage(rt, owner, lambda: made.size - archive_bytes, apply)
    except BaseException as exc:
        if marked:
            with contextlib.suppress(OSError):
                os.unlink(job_dir / zipped.MARKER)
        for name, aside in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(os.path.join(input_dir, aside), os.path.join(input_dir, name))
        made.remove(input_dir)
        if isinstance(exc, OSError):
            raise SandboxError(f"Unable to finish the extraction of the ZippedISB archives: {exc.strerror}") from None
        raise
    for _name, aside in moved:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(input_dir, aside))


def _start(uow: UnitOfWork, job: Job, now: dt.datetime, *, compound: bool | None = None) -> None:
    """Start ``job``; ``compound`` says whether it has nodes (None: ask the store)."""
    if job.parent_id is not None:
        raise OperationNotAllowedError(f"the job is a DAG subjob. The parent is: {job.parent_id}")
    if compound is None:
        compound = bool(uow.jobs.children(job.id))
    if job.state in (JobState.ABORTED.value, JobState.CANCELLED.value):
        raise OperationNotAllowedError(f"job state ({job.state.upper()}) doesn't allow start operation")
    if job.state != JobState.SUBMITTED.value:
        raise OperationNotAllowedError("job started or start operation already in progress")
    uow.jobs.set_state(job, JobState.WAITING.value, now)
    if compound:
        start_nodes(uow, job, now)
    else:
        uow.jobs.flush()  # a just-added job goes in as Waiting, before the request that refers to it
        uow.queue.enqueue(job.id, "start", now)


def _register(
    uow: UnitOfWork | None,
    rt: Runtime,
    principal: Principal,
    jdl: str,
    delegation_id: str | None,
    now: dt.datetime,
    created: list[str] | None,
    *,
    proxy: StoredProxy | None = None,
    ad: classad2.ClassAd | None = None,
) -> tuple[RegisteredJob, Job | dict[str, Any], StoredProxy]:
    """Register the job (see :func:`register_job`); returns it, its (parent) row and the stored
    proxy it was checked against. The row is, for a compound job, the :class:`Job` added to
    the session, for a simple one its column values, left to the caller to insert
    (``SqlJobStore.insert``). The job directories made are appended to ``created``; with None
    none is made (jobSubmit). ``ad``: ``jdl`` parsed already (not modified).

    With no ``uow`` (:func:`_submit_guarded`): the job is checked against ``proxy`` (the store
    is not read), local account mapping must be off, and a job that would write to the store
    here (a compound job, a MyProxy renewal to register) raises :class:`_NeedsTransaction`
    before anything is written.
    """
    settings = rt.settings
    delegation_id = resolve_delegation_id(principal, delegation_id)
    min_lifetime = settings.security.min_proxy_lifetime
    if uow is None:
        assert proxy is not None and settings.mapping.mode == "none"  # noqa: S101 - _submit_guarded's call
        delegation = check_usable(proxy, now, min_lifetime)
    else:
        delegation = usable_proxy(uow, principal.dn, delegation_id, now, min_lifetime)
    fqans = believed_fqans(rt, delegation, now, "register jobs")
    check_fqan_match(principal, fqans)
    account = None if uow is None else map_identity(uow, rt, principal.dn, fqans, now)
    local_account = account.name if account is not None else None
    if ad is None:
        ad = parse_jdl(jdl)
    check_expressions(ad)  # before anything evaluates them (a collection node's InputSandbox, matching)
    vo = fqan_vo(fqans[0]) if fqans else None
    view = AdView(ad)  # the ad's readings below, its names read once (not modified until registered_ad's copy)
    simple = compound_kind(view) is None
    if uow is None and (not simple or myproxy_server_for(settings.renewal, view, vo) is not None):
        raise _NeedsTransaction(ad)  # before the JDL's work, which the unit of work does
    compound = None if simple else expand(ad, max_nodes=settings.jobs.max_nodes,
                                          max_bytes=settings.limits.max_request_bytes)  # validates every node
    description = describe_simple(view) if compound is None else compound.description
    for checked in [description] if compound is None else [node.description for node in compound.nodes]:
        check_sandbox_lists(settings.limits, checked)
    job_id = new_job_id(settings.service.host, settings.service.jobid_port)

    def create_area(this_id: str, parent_id: str | None = None) -> JobArea:
        if created is not None:
            rt.storage.create_job_area(this_id)
            created.append(this_id)
        return rt.storage.job_area(this_id, parent_id)

    def register(
        this_id: str,
        this_ad: classad2.ClassAd,
        area: JobArea,
        desc: JobDescription,
        nodes: list[tuple[str, classad2.ClassAd]] | None = None,
    ) -> tuple[classad2.ClassAd, str | None]:
        read = view if this_ad is ad else this_ad  # the simple job's ad: read already
        server = myproxy_server_for(settings.renewal, read, vo)
        registered = registered_ad(
            read,
            area,
            job_id=this_id,
            certificate_subject=principal.dn,
            proxy_vo=vo,
            proxy_fqan=fqans[0] if fqans else None,
            myproxy_server=server,
            description=desc,
            nodes=nodes or (),
            dependencies=compound.dependencies if compound is not None and nodes else (),
            local_account=local_account,
        )
        return registered, server

    def row(area: JobArea, original: classad2.ClassAd, registered: classad2.ClassAd,
            parent_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        return {
            "id": area.job_id,
            "parent_id": parent_id,
            "node_name": name,
            "owner_dn": principal.dn,
            "delegation_id": delegation_id,
            "state": JobState.SUBMITTED.value,
            "jdl_original": jdl_lines(original),
            "jdl_registered": jdl_lines(registered),
            "sandbox_dir": area.rel_dir,
            "local_account": local_account,
            "created_at": now,
            "updated_at": now,
        }

    parent_area = create_area(job_id)
    children: list[RegisteredJob] = []
    registered_nodes: list[tuple[str, classad2.ClassAd]] = []
    node_areas: list[JobArea] = []
    if compound is not None:
        ids: dict[str, str] = {}
        for node in compound.nodes:
            node_area = create_area(child_job_id(job_id, node.index), job_id)
            node_registered, _ = register(node_area.job_id, node.ad, node_area, node.description)
            registered_nodes.append((node.name, node_registered))
            node_areas.append(node_area)
            ids[node.name] = node_area.job_id
            children.append(RegisteredJob(job_id=node_area.job_id, name=node.name, path=f"{node_area.rel_dir}/input"))
    parent_ad = ad if compound is None else compound.parent_ad
    parent_registered, server = register(job_id, parent_ad, parent_area, description, registered_nodes)
    # A simple job's row is the caller's to insert, as column values (no ORM object, issue 14);
    # a compound job's is added here, as the nodes' rows refer to it.
    parent_values = row(parent_area, ad, parent_registered)
    parent_row: Job | dict[str, Any] = parent_values
    if compound is not None and uow is not None:  # (no uow: a simple job, see above)
        parent_row = Job(**parent_values)
        uow.jobs.add(parent_row)
        # The node rows (ORM objects and their JDL texts) are made and sent NODE_BATCH at a time
        # and dropped once flushed, so a 10,000-node request never holds them all (issue 14).
        for first in range(0, len(node_areas), NODE_BATCH):
            rows = [Job(**row(node_area, node.ad, node_registered, parent_id=job_id, name=node.name))
                    for node_area, node, (_, node_registered) in zip(
                        node_areas[first:first + NODE_BATCH], compound.nodes[first:first + NODE_BATCH],
                        registered_nodes[first:first + NODE_BATCH], strict=True)]
            uow.jobs.add_all(rows)
            rows = []
        for before, after in compound.dependencies:
            uow.jobs.add_dependency(ids[after], ids[before])
    if uow is not None:
        register_for_renewal(uow, principal.dn, delegation_id, server, now, named="MyProxyServer" in parent_ad,
                             settings=settings.renewal)
    registered_job = RegisteredJob(
        job_id=job_id, name=None, path=f"{parent_area.rel_dir}/input", children=tuple(children))
    return registered_job, parent_row, delegation


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
