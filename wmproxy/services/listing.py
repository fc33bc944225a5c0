"""Job listing (issue 12): the caller's jobs and those shared with it through ACLs, filtered
and paged; what ``wmproxy status --all`` prints (``glite-wms-job-status --all``, with
``--status``, ``--exclude``, ``--from``, ``--to`` and ``--user-tag``; ``wmproxy-behaviour.md``
§11.2). Served by the extension operation ``listJobs``
(namespace ``http://wmproxy.org/namespaces/jobs-1``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from wmproxy.domain import JobPage, JobState, Principal
from wmproxy.errors import InvalidArgumentError
from wmproxy.services.access import grant_keys, grants
from wmproxy.services.history import check_period, summarise_many, user_tags
from wmproxy.services.runtime import Runtime

#: Most jobs one listJobs page holds.
MAX_PAGE = 1000


@dataclass(frozen=True)
class JobFilter:
    """What to list.

    Attributes:
        states: keep only jobs in one of these states (L&B names, ``Running``); empty = all.
        exclude_states: drop jobs in these states.
        since, until: registration time bounds, inclusive (aware UTC), None = open.
        user_tags: ``name -> value`` every listed job's JDL ``UserTags`` must hold.
        offset: jobs to skip (newest first); limit: most jobs returned (1..``MAX_PAGE``).
    """

    states: tuple[str, ...] = ()
    exclude_states: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    user_tags: dict[str, str] = field(default_factory=dict)
    offset: int = 0
    limit: int = 100


def _check_states(states: tuple[str, ...]) -> list[str]:
    known = {s.value.lower(): s.value for s in JobState}
    out = []
    for state in states:
        if state.lower() not in known:
            raise InvalidArgumentError(f"Unknown job state {state!r}; known states: {', '.join(known.values())}")
        out.append(known[state.lower()])
    return out


def check_filter(flt: JobFilter) -> None:
    """Raises: InvalidArgumentError: unknown state, bad period, offset < 0, limit outside 1..MAX_PAGE."""
    _check_states(flt.states)
    _check_states(flt.exclude_states)
    check_period(flt.since, flt.until)
    if flt.offset < 0:
        raise InvalidArgumentError("offset must be 0 or more")
    if not 1 <= flt.limit <= MAX_PAGE:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_PAGE}")


def list_jobs(rt: Runtime, principal: Principal, flt: JobFilter) -> JobPage:
    """listJobs: the caller's jobs and the jobs whose ACL names it (by DN or FQAN), newest
    first, nodes left out (they are listed with their compound job's summary).

    States are matched without regard to case (``running`` = ``Running``).

    Raises:
        InvalidArgumentError: see :func:`check_filter`.
    """
    check_filter(flt)
    with rt.uow() as uow:
        # Only what decides and orders is read of each candidate (its JDL only to match user
        # tags), and of the owner's jobs only the page's worth when no user tag is asked for:
        # the others are counted in SQL. Full rows are loaded for the page alone.
        found = uow.jobs.listing_candidates(
            principal.dn,
            acl_keys=grant_keys(principal),
            states=_check_states(flt.states) or None,
            exclude_states=_check_states(flt.exclude_states) or None,
            since=flt.since,
            until=flt.until,
            first=None if flt.user_tags else flt.offset + flt.limit,
            with_jdl=bool(flt.user_tags),
        )
        visible = {job.id: job for job in found.owned}
        for job, item in found.shared:
            if job.id not in visible and grants([item], principal):
                visible[job.id] = job
        jobs = sorted(visible.values(), key=lambda j: (j.created_at, j.id), reverse=True)
        if flt.user_tags:
            jobs = [j for j in jobs if flt.user_tags.items() <= user_tags(j.jdl_registered or "").items()]
        page = [j.id for j in jobs[flt.offset:flt.offset + flt.limit]]
        rows = uow.jobs.by_ids(page)
        unread = found.owned_total - len(found.owned)  # all older than the page (none with user tags)
        return JobPage(tuple(summarise_many(uow, [rows[i] for i in page if i in rows])), len(jobs) + unread)
