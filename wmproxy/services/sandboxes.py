"""Sandbox rules: URIs of job areas, transfer protocols, who may touch an area, size limits.

Implements ``wmproxy-behaviour.md`` §4.3 (getSandboxDestURI / getSandboxBulkDestURI),
§4.4 (MaxInputSandboxSize), the file-count limits of §3.2 step 8b (``maxInputSandboxFiles``,
``maxOutputSandboxFiles``; here ``[limits]``, checked at registration and upload), the
sandbox file names the service accepts, and the owner-only access of the per-job area. The bytes
live in ``wmproxy.sandbox.storage``; the HTTP edge is ``wmproxy.sandbox.http``.
"""

from __future__ import annotations

from collections.abc import Callable

from wmproxy.config import LimitsSettings
from wmproxy.domain import JobState, Principal
from wmproxy.errors import JobNotFoundError, OperationNotAllowedError, QuotaExceededError
from wmproxy.jdl import JobDescription, input_sandbox_files
from wmproxy.sandbox.storage import AreaTally, check_file_count, check_file_name
from wmproxy.services.access import job_for, live_job
from wmproxy.services.quota import change_usage, upload_room
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import select_protocols
from wmproxy.store.schema import Job


def dest_uris(rt: Runtime, principal: Principal, job_id: str, protocol: str | None) -> list[str]:
    """getSandboxDestURI: the URIs of the input sandbox the job reads, one per protocol: its
    ``input`` directory, for a node of a compound job its compound job's (:func:`_input_uri`).

    Raises:
        InvalidArgumentError: bad job id or protocol.
        JobNotFoundError: unknown or purged job.
        AuthorizationError: job of another user.
    """
    protocols = select_protocols(protocol)
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id)
        return [_input_uri(rt, job) for _ in protocols]


def bulk_dest_uris(rt: Runtime, principal: Principal, job_id: str, protocol: str | None) -> list[tuple[str, list[str]]]:
    """getSandboxBulkDestURI: ``(job id, URIs)`` for the job first, then each node; a node's
    URIs are those of the input it reads, its compound job's (the gLite UI uploads a DAG's
    files to them, ``wmproxy-behaviour.md`` §3.8)."""
    protocols = select_protocols(protocol)
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id)
        jobs = [job, *uow.jobs.children(job.id)]
        return [(j.id, [_input_uri(rt, j) for _ in protocols]) for j in jobs]


def _input_uri(rt: Runtime, job: Job) -> str:
    """URI of the ``input/`` that ``job`` reads its input sandbox from: its own, for a node of a
    compound job its parent's (§2.3, §4.1: the reference's node ``input/`` is a symbolic link to
    the parent's; here a node has no input area of its own, see :func:`authorize_area`)."""
    return rt.storage.job_area(job.id, job.parent_id).input_uri


def authorize_area(rt: Runtime, principal: Principal, job_rel_dir: str, method: str) -> str:
    """May ``principal`` use HTTP ``method`` on the job area ``job_rel_dir``? Returns the job's id.

    The owner may read and write; ACL items (§6.4) may read (GET, HEAD). Nothing may be
    written into the area of a node of a compound job: its input sandbox is its parent's
    ``input/`` (where the worker stages it from, and what getSandboxBulkDestURI gives for the
    node), and its own output is the worker's.

    Raises:
        JobNotFoundError: no job has this area (or it has been purged).
        AuthorizationError: the area belongs to another user.
        OperationNotAllowedError: uploads after the job has been started, or into a node's area
            (the message names the URI of the compound job's input sandbox).
    """
    with rt.uow() as uow:
        job = uow.jobs.by_sandbox_dir(job_rel_dir)
        if job is None or job.state == JobState.CLEARED.value:
            raise JobNotFoundError(job_rel_dir)
        job_for(uow, principal, job.id, access="read" if method in ("GET", "HEAD") else "write")
        if method in ("PUT", "DELETE", "MOVE"):
            _check_input_writable(rt, job)
        return job.id


def _check_input_writable(rt: Runtime, job: Job) -> None:
    """May the input area of ``job`` (found by its sandbox directory) change now?

    Raises:
        OperationNotAllowedError: ``job`` is a node of a compound job (its input is its
            parent's), or it has been started.
    """
    if job.parent_id is not None:
        raise OperationNotAllowedError(
            "a node of a compound job has no input sandbox of its own: upload its files to the"
            f" compound job's input sandbox, {rt.storage.job_area(job.parent_id).input_uri}")
    if job.state != JobState.SUBMITTED.value:
        raise OperationNotAllowedError("the input sandbox cannot change after the job has been started")


def input_room(rt: Runtime, job_rel_dir: str) -> int:
    """Bytes the job's input area may still take: MaxInputSandboxSize − what it holds,
    and no more than the owner's remaining hard quota when quotas are on."""
    with rt.uow() as uow:
        job = uow.jobs.by_sandbox_dir(job_rel_dir)
        if job is None:
            raise JobNotFoundError(job_rel_dir)
        job_id, owner = job.id, job.owner_dn
    room = max(0, rt.settings.service.max_input_sandbox_size - rt.storage.input_size(job_id))
    quota_room = upload_room(rt, owner)
    return room if quota_room is None else min(room, quota_room)


#: Files and directories a job's input area may hold when ``[limits] max_input_sandbox_files``
#: is 0 (no limit on the InputSandbox list): empty files and directories cost no bytes against
#: MaxInputSandboxSize or the quota, and a user PUT thousands of them into one job (inodes of the
#: sandbox's file system, a listing and a walk at each later upload growing with them).
INPUT_ENTRIES_CEILING = 10_000


def change_area_bytes(rt: Runtime, job_rel_dir: str, change: Callable[[], AreaTally],
                      apply: Callable[[], None]) -> None:
    """The sandbox edge's ``record_bytes``: ``apply()`` the upload, delete or move that changes
    the input area of ``job_rel_dir`` by ``change()`` (bytes and files), in the transaction that
    updates its owner's usage counter (:func:`wmproxy.services.quota.change_usage`).

    ``change()`` is called with the counter row locked, and so are the limits checked: a change
    that adds bytes or files is held against MaxInputSandboxSize and ``[limits]
    max_input_sandbox_files`` with what the area holds now, so that uploads of one job that were
    each in the limits when they started cannot go past them together. What the area holds is
    read under the job's own lock (:meth:`~wmproxy.sandbox.storage.FilesystemSandboxStorage.area_changes`,
    held until the change is committed), before the counter's transaction: on SQLite that
    transaction holds the database's write lock, which the walk of a large ``input/`` held
    for every user.

    The job's state is read under that lock too, which jobStart holds around its change of the
    state (:func:`wmproxy.services.submission.start_job`): an upload authorised while the job was
    Submitted and committing once it has been started is refused (its temporary file removed),
    and a jobStart that comes while a change commits waits for it. The file lock is taken before
    the database's, here and there.

    Raises:
        JobNotFoundError: no job has this area (or it has been purged).
        OperationNotAllowedError: the job has been started meanwhile.
        QuotaExceededError: the upload would take the input sandbox over MaxInputSandboxSize,
            or the owner over the hard quota.
        SandboxFileCountError: the upload would make the input sandbox hold more files than
            ``max_input_sandbox_files``.
        Whatever ``change()`` raises.
    """
    with rt.storage.area_changes(job_rel_dir):  # one change of this job at a time, and no jobStart
        with rt.uow() as uow:
            job = uow.jobs.by_sandbox_dir(job_rel_dir)
            if job is None or job.state == JobState.CLEARED.value:
                raise JobNotFoundError(job_rel_dir)
            _check_input_writable(rt, job)
            job_id, owner = job.id, job.owner_dn
        held = rt.storage.input_tally(job_id)  # its input/ walked before the counter's lock

        def delta() -> int:
            made = change()
            _check_input_limits(rt, held, made)
            return made.size

        change_usage(rt, owner, delta, apply)


def _check_input_limits(rt: Runtime, held: AreaTally, change: AreaTally) -> None:
    """Refuse ``change`` if it adds bytes or files to what the job's input area ``held`` (uploads
    in progress left out: each is checked when it commits) past its limits.

    Raises:
        QuotaExceededError: over MaxInputSandboxSize.
        SandboxFileCountError: over ``[limits] max_input_sandbox_files``, or with it at 0 over
            :data:`INPUT_ENTRIES_CEILING`.
    """
    max_size = rt.settings.service.max_input_sandbox_size
    max_files = rt.settings.limits.max_input_sandbox_files or INPUT_ENTRIES_CEILING
    if change.size <= 0 and change.files <= 0:
        return
    if change.size > 0 and held.size + change.size > max_size:
        raise QuotaExceededError(
            f"The upload exceeds the maximum input sandbox size of {max_size} bytes: the input sandbox"
            f" holds {held.size} bytes, {change.size} more asked"
        )
    if change.files > 0:
        check_file_count("input", held.files + change.files, max_files)


def check_sandbox_lists(limits: LimitsSettings, description: JobDescription) -> None:
    """The registration checks of one job's InputSandbox and OutputSandbox (one node of a
    compound job at a time).

    The entries are counted against ``max_input_sandbox_files``/``max_output_sandbox_files``
    (0 = no limit; with the input one at 0 the local InputSandbox files still against
    :data:`INPUT_ENTRIES_CEILING`, what the job's input area may hold); the file name of each
    local InputSandbox entry and every component of each OutputSandbox name must be a file name
    (:func:`wmproxy.sandbox.storage.check_file_name` with ``max_sandbox_name_bytes``).

    Raises:
        SandboxFileCountError: "The maximum number of input|output sandbox files is reached".
        SandboxNameError: a name with control characters, ``\\``, or too long.
    """
    check_file_count("input", len(description.input_sandbox), limits.max_input_sandbox_files)
    check_file_count("output", len(description.output_sandbox), limits.max_output_sandbox_files)
    local = input_sandbox_files(description)
    if not limits.max_input_sandbox_files:  # more than its input area may hold: never startable
        check_file_count("input", len(local), INPUT_ENTRIES_CEILING)
    for name in local:
        check_file_name(name, limits.max_sandbox_name_bytes, "InputSandbox file name")
    for entry in description.output_sandbox:
        for part in entry.split("/"):
            if part not in ("", "."):
                check_file_name(part, limits.max_sandbox_name_bytes, "OutputSandbox file name")


def check_new_input_file(rt: Runtime, job_rel_dir: str) -> None:
    """May one more file be created in the job's input area (``[limits]
    max_input_sandbox_files``, 0 = no limit)?

    Raises:
        JobNotFoundError: no job has this area.
        SandboxFileCountError: "The maximum number of input sandbox files is reached".
    """
    limit = rt.settings.limits.max_input_sandbox_files
    if limit <= 0:
        return
    with rt.uow() as uow:
        job = uow.jobs.by_sandbox_dir(job_rel_dir)
        if job is None:
            raise JobNotFoundError(job_rel_dir)
        job_id = job.id
    check_file_count("input", rt.storage.input_file_count(job_id) + 1, limit)
