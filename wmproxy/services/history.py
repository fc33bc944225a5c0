"""Job history (issue 12): what happened to a job, when (UTC), who reported it and why, and
the summary ``wmproxy status -v`` shows (destination, times, exit code, node counts).

The reference kept this in the L&B server (``glite-wms-job-logging-info``,
``glite-wms-job-status -v``; ``wmproxy-behaviour.md`` §11.2); here the events are the
``job_events`` rows every state change and notable action writes
(:meth:`wmproxy.store.jobs.SqlJobStore.set_state`, ``record_event``). The extension
operation ``getJobEvents`` (namespace ``http://wmproxy.org/namespaces/jobs-1``) serves
them to the owner and to the readers named in the job's ACL, also after a purge.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Collection, Sequence

from wmproxy.domain import JobEvent, JobHistory, JobState, JobSummary, Principal
from wmproxy.errors import InvalidArgumentError
from wmproxy.jdl.parse import parse_stored_jdl
from wmproxy.services.access import job_for
from wmproxy.services.jobs import status_text
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.jobs import EVENT_KINDS
from wmproxy.store.schema import Job
from wmproxy.store.schema import JobEvent as JobEventRow

#: How the worker names a declared output file it could not collect in a Done job's reason.
_NOT_COLLECTED = re.compile(r"output sandbox file (.+?) not collected: ([^;]+)")


#: States in which a worker holds a job (whose proxy a renewal rewrites).
_HELD = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)

def check_kinds(kinds: Sequence[str] | None) -> list[str] | None:
    """The event kinds asked for, None for all.

    Raises:
        InvalidArgumentError: a kind outside ``EVENT_KINDS`` (the message lists them).
    """
    if not kinds:
        return None
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown:
        raise InvalidArgumentError(f"Unknown event kind {unknown[0]!r}; known kinds: {', '.join(EVENT_KINDS)}")
    return list(kinds)


def check_period(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Raises: InvalidArgumentError: ``since`` after ``until``, or a naive time."""
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise InvalidArgumentError("Times must carry a time zone (UTC)")
    if since is not None and until is not None and since > until:
        raise InvalidArgumentError("The start of the period (from) is after its end (to)")


def job_history(
    rt: Runtime,
    principal: Principal,
    job_id: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    kinds: Sequence[str] | None = None,
) -> JobHistory:
    """getJobEvents: the job's summary and its events in ``[since, until]`` of ``kinds``.

    Purged (Cleared) jobs keep their history. Readers named in the job's ACL (or its
    compound job's) may read it, as getJobStatus.

    Args:
        job_id: the job (or node) id.
        since, until: inclusive bounds of the events' times (aware UTC), None = open.
        kinds: event kinds to keep (``wmproxy.store.jobs.EVENT_KINDS``), None/empty = all.

    Raises:
        InvalidArgumentError: malformed job id, unknown kind, ``since`` after ``until``.
        JobNotFoundError: no such job.
        AuthorizationError: neither the owner nor an ACL reader.
    """
    check_period(since, until)
    wanted = check_kinds(kinds)
    with rt.uow() as uow:
        job = job_for(uow, principal, job_id, access="read")
        events = uow.jobs.history(job.id, since=since, until=until, kinds=wanted)
        return JobHistory(summarise(uow, job), tuple(_record(e) for e in events))


def summarise(uow: UnitOfWork, job: Job) -> JobSummary:
    """The :class:`JobSummary` of a job read in ``uow``."""
    return summarise_many(uow, [job])[0]


def summarise_many(uow: UnitOfWork, jobs: Sequence[Job]) -> list[JobSummary]:
    """The :class:`JobSummary` of each of ``jobs`` (read in ``uow``), in their order: their
    state changes and their nodes' states read for all of them at once (a listJobs page)."""
    ids = [job.id for job in jobs]
    state_times = uow.jobs.state_times(ids)
    nodes = uow.jobs.node_states([job.id for job in jobs if job.parent_id is None])
    return [JobSummary(
        job_id=job.id,
        state=job.state,
        status=status_text(job),
        owner_dn=job.owner_dn,
        submitted=job.created_at,
        last_update=job.updated_at,
        parent_id=job.parent_id,
        node_name=job.node_name,
        exit_code=job.exit_code,
        reason=job.reason,
        destination=job.destination,
        user_tags=user_tags(job.jdl_registered),
        state_times=state_times[job.id],
        node_states=dict(Counter(nodes.get(job.id, ()))),
        missing_outputs=missing_outputs(job),
    ) for job in jobs]


def user_tags(jdl: str) -> dict[str, str]:
    """The JDL's ``UserTags`` ClassAd as ``name -> value text`` (strings unquoted); {} if none."""
    try:
        tags = parse_stored_jdl(jdl).get("UserTags")  # node names in it may be quoted
    except Exception:  # noqa: BLE001 - a stored JDL always parsed once; never fail a status on it
        return {}
    items = getattr(tags, "items", None)
    if items is None:
        return {}
    return {str(k): str(v) for k, v in items()}


def missing_outputs(job: Job) -> tuple[tuple[str, str], ...]:
    """``(file name, why)`` of the declared output files a Done job did not leave behind."""
    if job.state not in (JobState.DONE.value, JobState.CLEARED.value) or not job.reason:
        return ()
    return tuple((m.group(1), m.group(2).strip()) for m in _NOT_COLLECTED.finditer(job.reason))


def _record(event: JobEventRow) -> JobEvent:
    return JobEvent(event.at, event.kind, event.state, event.source, event.reason)


# --- recording notable actions (one call each from the services that do them) ---


def note_input_sandbox(uow: UnitOfWork, rt: Runtime, job: Job, now: dt.datetime) -> None:
    """At jobStart: record the input sandbox the user transferred (files, bytes), if any."""
    count = rt.storage.input_file_count(job.id) if rt.storage.has_job_area(job.id) else 0
    if count:
        size = rt.storage.input_size(job.id)
        uow.jobs.record_event(job, "sandbox_transferred", now, source="user",
                              reason=f"input sandbox transferred: {count} file(s), {size} bytes")


def note_renewal(uow: UnitOfWork, owner_dn: str, delegation_id: str, result: str, error: str | None,
                 now: dt.datetime, *, notes: Sequence[str] = (), kept: Collection[str] = ()) -> None:
    """After a renewal attempt of a delegation: ``proxy_renewed`` or ``renewal_failed`` on each
    of its jobs a worker holds; a failure repeated with the same text is recorded once, and a
    refusal (``refused``: the text is the MyProxy server's own) once until the result changes,
    whatever its text (red team: a server changing its text at each attempt made one event per
    job per attempt; the record's ``last_error`` has the latest).

    Args:
        notes: what the renewal could not do (VOMS attributes not refreshed, or not verifying),
            appended to the reason of ``proxy_renewed``: the owner reads them in the job's events.
        kept: jobs that did not get the renewed proxy (their event is
            :func:`note_proxy_kept`'s): no ``proxy_renewed`` for them.
    """
    jobs = uow.renewals.jobs_of(owner_dn, delegation_id, _HELD, jobs=uow.jobs)
    if result == "renewed":
        left_alone = set(kept)
        reason = "; ".join(["proxy renewed from MyProxy", *notes])
        for job in jobs:
            if job.id not in left_alone:
                uow.jobs.record_event(job, "proxy_renewed", now, source="renewal", reason=reason)
        return
    reason = f"proxy renewal {result}: {error}" if error else f"proxy renewal {result}"
    for job in jobs:
        last = uow.jobs.last_event(job.id, kinds=["proxy_renewed", "renewal_failed"])
        if last is None or not _same_failure(last.reason, reason, result):
            uow.jobs.record_event(job, "renewal_failed", now, source="renewal", reason=reason)


def _same_failure(last: str | None, reason: str, result: str) -> bool:
    """Whether the event reason ``last`` already tells the failure ``reason`` of ``result``."""
    if result == "refused":
        return (last or "").startswith("proxy renewal refused")
    return last == reason


def note_proxy_kept(uow: UnitOfWork, job: Job, reason: str, now: dt.datetime) -> None:
    """A held job that keeps its own proxy copy: the stored proxy was not written into it
    (``reason``, which names the stored proxy). ``renewal_failed``, recorded once per reason:
    the renewal worker finds the job again on every pass until the FQANs agree again."""
    if all(e.reason != reason for e in uow.jobs.history(job.id, kinds=["renewal_failed"])):
        uow.jobs.record_event(job, "renewal_failed", now, source="renewal", reason=reason)
