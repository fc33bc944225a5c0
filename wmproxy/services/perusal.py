"""File perusal: enableFilePerusal and getPerusalFiles (``wmproxy-behaviour.md`` §8).

The job must have ``PerusalFileEnable = true``. While it runs, the execution worker
copies what each listed file gained into chunks ``peek/<file>.<epoch seconds>`` every
``PerusalTimeInterval`` seconds (at least ``[jobs] min_perusal_interval``);
getPerusalFiles merges the chunks into ``peek/<file>-<first>-<last>`` and returns their
URIs (all merged files so far with ``allChunks``).
"""

from __future__ import annotations

import unicodedata

import classad2

from wmproxy.domain import JobState, Principal
from wmproxy.errors import InvalidArgumentError, OperationNotAllowedError
from wmproxy.jdl import parse_jdl
from wmproxy.services.access import live_job
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import file_uri, select_protocols
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def perusal_interval(rt: Runtime, ad: classad2.ClassAd) -> int | None:
    """Seconds between perusal samples of a job, or None when its JDL does not enable perusal.

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


def _valid_name(name: str) -> str:
    """``name`` without surrounding blanks, if it can name one file of the job's work dir.

    Raises:
        InvalidArgumentError: empty, ``.``, ``..``, a ``/``, or a character of
            :data:`REFUSED_CATEGORIES` (a control character, U+2028, U+2029): the names are
            stored one a line, so a line end would make one name many.
    """
    name = name.strip()
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgumentError("Provided file name not valid")
    if not (name.isascii() and name.isprintable()) and any(
            unicodedata.category(c) in REFUSED_CATEGORIES for c in name):
        raise InvalidArgumentError("Provided file name not valid: control characters (newline, CR, NUL...) "
                                   "and line separators are not allowed")
    return name


def stored_names(rt: Runtime, stored: str) -> list[str]:
    """The names a job's ``perusal_files`` column holds, valid ones only, each once, at most
    ``[jobs] max_perusal_files``: a value stored before names with a newline were refused may
    hold more. What the execution worker samples and the web monitor shows."""
    names: dict[str, None] = {}
    for line in stored.split("\n"):
        try:
            names.setdefault(_valid_name(line))
        except InvalidArgumentError:
            continue
    return list(names)[: rt.settings.jobs.max_perusal_files]


def enable_file_perusal(rt: Runtime, principal: Principal, job_id: str, files: list[str]) -> None:
    """enableFilePerusal: the files to sample from now on; an empty list stops perusal.

    Raises:
        OperationNotAllowedError: perusal not enabled in the JDL, a compound job, or more
            than ``[jobs] max_perusal_files`` names.
        InvalidArgumentError: a name with ``/`` or a control character (a newline), or empty.
    """
    names = [_valid_name(f) for f in files]
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id)
        _check(uow, rt, job)
        if len(names) > rt.settings.jobs.max_perusal_files:
            raise OperationNotAllowedError("The maximum number of perusal files is reached")
        job.perusal_files = "\n".join(dict.fromkeys(names)) or None


def perusal_files(rt: Runtime, principal: Principal, job_id: str, file: str, all_chunks: bool,
                  protocol: str | None) -> list[str]:
    """getPerusalFiles: URIs of the newly merged parts of ``file`` (or of all parts).

    Raises:
        InvalidArgumentError: empty or invalid file name, unavailable protocol.
        OperationNotAllowedError: perusal not enabled, or the job has not been started.
    """
    protocols = select_protocols(protocol, default="default")
    if not file:
        raise InvalidArgumentError("Provided file name not valid")
    name = _valid_name(file)
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        _check(uow, rt, job)
        if job.state == JobState.SUBMITTED.value:
            raise OperationNotAllowedError("the job is not started")
        area = rt.storage.job_area(job.id, job.parent_id)
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
