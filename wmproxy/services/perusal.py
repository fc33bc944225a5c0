"""File perusal: enableFilePerusal and getPerusalFiles (``wmproxy-behaviour.md`` §8).

The job must have ``PerusalFileEnable = true``. While it runs, the execution worker
copies what each listed file gained into chunks ``peek/<file>.<epoch seconds>`` every
``PerusalTimeInterval`` seconds (at least ``[jobs] min_perusal_interval``);
the owner's getPerusalFiles merges the chunks into ``peek/<file>-<first>-<last>`` and returns
their URIs (all merged files so far with ``allChunks``); a reader the job's ACL admits gets
the merged files so far and merges nothing (:func:`perusal_files`).

Every chunk counts in its owner's usage counter (``wmproxy-behaviour.md`` §4.4), in the
transaction that writes it (:func:`keep_perusal_chunk`), and within the job's
:func:`perusal_budget`; merging moves bytes without changing what ``peek/`` holds, and the
removal of the job area (jobPurge, the purger) takes them off with the rest of the area.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import classad2

from wmproxy.domain import JobState, Principal, service_file
from wmproxy.errors import InvalidArgumentError, OperationNotAllowedError, SandboxNameError
from wmproxy.jdl import parse_jdl
from wmproxy.sandbox.storage import check_perusal_name
from wmproxy.services.access import live_job
from wmproxy.services.quota import change_usage
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import file_uri, select_protocols
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def perusal_interval(rt: Runtime, ad: classad2.ClassAd) -> int | None:
    """Seconds between perusal samples of a job, or None when its JDL does not enable perusal.

    Registration accepts ``PerusalFileEnable`` only as a boolean and ``PerusalTimeInterval`` only
    as an integer from 0 (:func:`wmproxy.jdl.description.check_typed_attributes`); a job registered
    before that check with another type keeps the reading it had then (perusal off, the minimum).

    Args:
        ad: the job's registered JDL.
    """
    if ad.get("PerusalFileEnable") is not True:
        return None
    asked = ad.get("PerusalTimeInterval")
    asked = asked if isinstance(asked, int) else 0
    return max(asked, rt.settings.jobs.min_perusal_interval)


def _check(uow: UnitOfWork, rt: Runtime, job: Job) -> None:
    if uow.jobs.children(job.id):
        raise OperationNotAllowedError("Perusal service not available for dag or collection type")
    if perusal_interval(rt, parse_jdl(job.jdl_registered)) is None:
        raise OperationNotAllowedError("Perusal not enabled for this job")


#: Unicode categories refused in a perusal file name: controls (C0, DEL, C1: newline, CR, NUL,
#: ESC, NEL U+0085...), the line and paragraph separators U+2028 and U+2029 (``str.splitlines``
#: ends a line at each of them) and lone surrogates (not UTF-8). Format characters (Cf: a
#: zero-width joiner, a bidi mark) and the other spaces (Zs) are kept: they end no line, and a
#: job may write a file so named (a sandbox file name may hold them too).
REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _valid_name(name: str, max_bytes: int) -> str:
    """``name`` without surrounding blanks, if it can name one file of the job's work dir whose
    perusal parts the sandbox edge serves.

    Args:
        max_bytes: ``[limits] max_sandbox_name_bytes``, the longest name the edge serves.

    Raises:
        InvalidArgumentError: empty, ``.``, ``..``, a ``/``, or a character of
            :data:`REFUSED_CATEGORIES` (a control character, U+2028, U+2029): the names are
            stored one a line, so a line end would make one name many. Or what the service
            keeps in the work dir (:func:`~wmproxy.domain.service_file`): the job's proxy
            ``user.proxy``, whose chunks a reader the job's ACL admits could fetch. Or a name
            whose parts the edge could not serve (:func:`~wmproxy.sandbox.storage.check_perusal_name`:
            a ``\\``; longer than ``max_bytes`` once a merged part's ``-<first>-<last>`` is added).
    """
    name = name.strip()
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgumentError("Provided file name not valid")
    if (why := service_file(name)) is not None:
        raise InvalidArgumentError(f"Provided file name not valid: {name} is not perused, {why}")
    if not (name.isascii() and name.isprintable()) and any(
            unicodedata.category(c) in REFUSED_CATEGORIES for c in name):
        raise InvalidArgumentError("Provided file name not valid: control characters (newline, CR, NUL...) "
                                   "and line separators are not allowed")
    try:  # its chunks and merged files: a name the edge refuses could be sampled, never fetched
        check_perusal_name(name, max_bytes)
    except SandboxNameError as exc:
        raise InvalidArgumentError(f"Provided file name not valid: {exc.message}") from None
    return name


def stored_names(rt: Runtime, stored: str) -> list[str]:
    """The names a job's ``perusal_files`` column holds, valid ones only, each once, at most
    ``[jobs] max_perusal_files``: a value stored before names with a newline were refused may
    hold more, and names whose parts the sandbox edge cannot serve (:func:`_valid_name`; a
    getPerusalFiles for one says why). What the execution worker samples and the web monitor
    shows."""
    names: dict[str, None] = {}
    limit = rt.settings.limits.max_sandbox_name_bytes
    for line in stored.split("\n"):
        try:
            names.setdefault(_valid_name(line, limit))
        except InvalidArgumentError:
            continue
    return list(names)[: rt.settings.jobs.max_perusal_files]


def enable_file_perusal(rt: Runtime, principal: Principal, job_id: str, files: list[str]) -> None:
    """enableFilePerusal: the files to sample from now on; an empty list stops perusal.

    Raises:
        OperationNotAllowedError: perusal not enabled in the JDL, a compound job, or more
            than ``[jobs] max_perusal_files`` names.
        InvalidArgumentError: a name with ``/``, ``\\`` or a control character (a newline),
            empty, too long for its parts' names (``[limits] max_sandbox_name_bytes`` less 22
            bytes), or the job's proxy ``user.proxy`` (:func:`_valid_name`).
    """
    names = [_valid_name(f, rt.settings.limits.max_sandbox_name_bytes) for f in files]
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id)
        _check(uow, rt, job)
        if len(names) > rt.settings.jobs.max_perusal_files:
            raise OperationNotAllowedError("The maximum number of perusal files is reached")
        job.perusal_files = "\n".join(dict.fromkeys(names)) or None


def perusal_files(rt: Runtime, principal: Principal, job_id: str, file: str, all_chunks: bool,
                  protocol: str | None) -> list[str]:
    """getPerusalFiles: URIs of the newly merged parts of ``file`` (or of all parts).

    What is new is the owner's: only the owner's call merges the chunks written since its last
    call, and with ``allChunks`` false gets the parts merged now. A reader the job's ACL admits
    gets every part the owner's calls have merged so far, whatever ``allChunks`` says (as with
    true), and merges nothing: before, a reader's call merged the new chunks and took them from
    the owner's next call, which then found nothing new.

    Raises:
        InvalidArgumentError: empty or invalid file name, unavailable protocol.
        OperationNotAllowedError: perusal not enabled, or the job has not been started.
    """
    protocols = select_protocols(protocol, default="default")
    if not file:
        raise InvalidArgumentError("Provided file name not valid")
    name = _valid_name(file, rt.settings.limits.max_sandbox_name_bytes)
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        _check(uow, rt, job)
        if job.state == JobState.SUBMITTED.value:
            raise OperationNotAllowedError("the job is not started")
        area = rt.storage.job_area(job.id, job.parent_id)
        owner = job.owner_dn == principal.dn
    if not owner:
        names = rt.storage.merged_perusal_files(area.job_id, name)
    else:
        new = rt.storage.merge_perusal_chunks(area.job_id, name)
        names = rt.storage.merged_perusal_files(area.job_id, name) if all_chunks else new
    return [file_uri(area.peek_uri, n) for _ in protocols for n in names]


def perusal_lists(rt: Runtime, job_ids: list[str]) -> dict[str, list[str]]:
    """For the execution worker: ``{job id: files under perusal}`` for those with any (each name
    once, at most ``[jobs] max_perusal_files``, whatever was stored)."""
    if not job_ids:
        return {}
    with rt.uow() as uow:
        jobs = [uow.jobs.get(job_id) for job_id in job_ids]
        lists = {j.id: stored_names(rt, j.perusal_files) for j in jobs if j is not None and j.perusal_files}
    return {job_id: names for job_id, names in lists.items() if names}


@dataclass(frozen=True)
class PerusalBudget:
    """What a job's perusal may still write into the sandbox area (:func:`perusal_budget`).

    Attributes:
        owner_dn: the job's owner, whose usage counter the chunks go to.
        left: bytes left; None when nothing bounds them (quotas off and no output sandbox limit).
        why: what sets ``left`` ("the owner's disk quota", "the site's output sandbox limit"), ""
            when None.
    """

    owner_dn: str
    left: int | None
    why: str

    def spent(self, size: int) -> PerusalBudget:
        """The budget once ``size`` more bytes were written."""
        return self if self.left is None else PerusalBudget(self.owner_dn, max(0, self.left - size), self.why)


def perusal_budget(rt: Runtime, job_id: str) -> PerusalBudget | None:
    """What the perusal of ``job_id`` may still write: the smaller of what is left of its
    owner's ``[jobs] quota_hard_limit`` (quotas on; the counter holds the chunks written so far)
    and ``[limits] max_output_sandbox_size`` less what the job's ``peek/`` holds (a job's
    perusal copies its output files: it may hold as much as its output sandbox, no more); None
    for an unknown job (purged).

    Raises:
        SQLAlchemyError: the database failed.
    """
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        if job is None:
            return None
        owner_dn = job.owner_dn
        used = uow.usage.used(owner_dn)
    limits: list[tuple[int, str]] = []
    if (hard := rt.settings.jobs.quota_hard_limit) > 0:
        limits.append((max(0, hard - used), "the owner's disk quota"))
    if (site := rt.settings.limits.max_output_sandbox_size) > 0:
        limits.append((max(0, site - rt.storage.perusal_bytes(job_id)), "the site's output sandbox limit"))
    if not limits:
        return PerusalBudget(owner_dn, None, "")
    left, why = min(limits, key=lambda limit: limit[0])
    return PerusalBudget(owner_dn, left, why)


def keep_perusal_chunk(rt: Runtime, owner_dn: str, job_id: str, name: str, data: bytes, timestamp: int) -> None:
    """Write ``data`` as the chunk ``peek/<name>.<timestamp>`` of ``job_id`` (a node: its own
    ``peek/``) and add its bytes to ``owner_dn``'s usage counter in the same transaction
    (:func:`~wmproxy.services.quota.change_usage`): the counter row is locked first, as by the
    removal of the job area, so a chunk is either removed and taken off with the area or not
    written at all, and concurrent uploads of the owner are checked against the quota in turn.

    Args:
        data: the bytes, at most what :func:`perusal_budget` left.
        timestamp: epoch seconds, later than the file's previous chunk's.

    Raises:
        QuotaExceededError: quotas are on and the chunk would take the owner over the hard
            limit (something else took the room since :func:`perusal_budget`): nothing written.
        SandboxError: the job area does not exist (purged) or its ``peek/`` cannot be made.
        OSError: the chunk cannot be written (the file system full); nothing is left or counted.
        SQLAlchemyError: the database failed (nothing counted; the chunk is left only when the
            commit itself failed).
    """
    change_usage(rt, owner_dn, lambda: len(data), lambda: rt.storage.write_perusal_chunk(job_id, name, data, timestamp))
