"""listJobs costs what its page costs (stop 51, helper listing-page), on SQLite and PostgreSQL:
of the candidates only what decides and orders is read (id, registration time, the ACL item of
shared jobs, the registered JDL only when user tags are asked for), and full rows are loaded for
the page alone; yet the pages are exactly those of the former listing, which loaded every job the
caller could see and filtered, sorted and sliced them in Python (spelled out here as
:func:`_old_page`).

Before, a user keeping 4,200 jobs paid 0.68 s for a page of one job.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from wmproxy.domain import JobState, Principal
from wmproxy.services.access import grants
from wmproxy.services.history import user_tags
from wmproxy.services.listing import JobFilter, list_jobs
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job, JobAclEntry, JobEvent

T0 = dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
VO = "/lpvo/Role=NULL/Capability=NULL"
READER = Principal("/CN=lp-reader", fqans=(VO,))
OTHER = "/CN=lp-other"


def _jdl(tags: dict[str, str]) -> str:
    inner = "; ".join(f'{name} = "{value}"' for name, value in tags.items())
    return f'[ Executable = "/bin/true"; UserTags = [ {inner} ]; ]' if tags else '[ Executable = "/bin/true"; ]'


def _add(rt: Runtime, job_id: str, owner: str, state: str, at: dt.datetime, *, tags: dict[str, str] | None = None,
         items: tuple[str, ...] = (), parent: str | None = None) -> None:
    with rt.uow() as uow:
        jdl = _jdl(tags or {})
        node_name = job_id.rsplit("-", 1)[1] if parent else None
        uow.jobs.add(Job(id=job_id, parent_id=parent, node_name=node_name, owner_dn=owner, delegation_id="d",
                         state=state, jdl_original=jdl, jdl_registered=jdl, sandbox_dir=job_id.rsplit("/", 1)[1],
                         created_at=at, updated_at=at))
        for item in items:
            uow.session.add(JobAclEntry(job_id=job_id, item=item))


def _event(job_id: str, kind: str, state: str, at: dt.datetime) -> JobEvent:
    return JobEvent(job_id=job_id, kind=kind, state=state, at=at, source="service")


@contextlib.contextmanager
def _loaded_jobs() -> Iterator[list[str]]:
    """The ids of the :class:`Job` rows loaded as ORM objects within the block, one per load."""
    loaded: list[str] = []

    def record(target: Job, context: object) -> None:
        loaded.append(target.id)

    sa.event.listen(Job, "load", record)
    try:
        yield loaded
    finally:
        sa.event.remove(Job, "load", record)


def _old_page(rt: Runtime, principal: Principal, flt: JobFilter) -> tuple[list[str], int]:
    """The former listJobs, spelled out: every top-level job the caller owns or whose ACL grants
    it, in one of ``states`` (any case), in none of ``exclude_states``, registered in
    ``[since, until]``, with all ``user_tags``; newest first (ties: greater id first); the
    ``offset``/``limit`` slice and how many matched."""
    def canonical(states: tuple[str, ...]) -> set[str]:
        return {s.value for s in JobState if s.value.lower() in {x.lower() for x in states}}

    with rt.uow() as uow:
        jobs = uow.session.scalars(sa.select(Job).where(Job.parent_id.is_(None))).all()
        items: dict[str, list[str]] = {}
        for job_id, item in uow.session.execute(sa.select(JobAclEntry.job_id, JobAclEntry.item)):
            items.setdefault(job_id, []).append(item)
        wanted, unwanted = canonical(flt.states), canonical(flt.exclude_states)
        matched = [
            j for j in jobs
            if (j.owner_dn == principal.dn or grants(items.get(j.id, []), principal))
            and (not wanted or j.state in wanted) and j.state not in unwanted
            and (flt.since is None or j.created_at >= flt.since) and (flt.until is None or j.created_at <= flt.until)
            and flt.user_tags.items() <= user_tags(j.jdl_registered).items()
        ]
        matched.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return [j.id for j in matched[flt.offset:flt.offset + flt.limit]], len(matched)


def _mix(rt: Runtime) -> None:
    """The reader's jobs and others' shared with it (by DN, by FQAN, with items that match a key
    but do not grant) or not, in several states, many registered at the same second (ids whose
    order differs between code points and a natural-language collation), with and without user
    tags, and nodes (never listed)."""
    names = ["a-b", "aa", "A_c", "Ab", "a_b", "b", "B-", "z9", "Z", "0x", "_q", "-q"]
    states = ["Running", "Done", "Waiting", "Aborted", "Submitted"]
    shares: list[tuple[str, ...]] = [(), (READER.dn,), ("/lpvo",), ("/lpvo/", "/lpvox"), (READER.dn + "/",),
                                     ("/lpvox",), ("/lpvo", READER.dn)]
    for n, (name, tie) in enumerate(itertools.product(names, range(3))):
        at = T0 + dt.timedelta(minutes=(n % 5) * 10)  # five registration times, many jobs each
        tags = {"run": "r1" if n % 3 else "r2", "kind": "k"} if n % 4 else {}
        job_id = f"https://h:9000/lp-{name}{tie}"
        if n % 2:
            _add(rt, job_id, READER.dn, states[n % 5], at, tags=tags)
        else:
            _add(rt, job_id, OTHER, states[n % 5], at, tags=tags, items=shares[n % len(shares)])
        if n % 7 == 0:
            _add(rt, job_id + "-node", READER.dn, "Running", at, parent=job_id)


FILTERS = [
    JobFilter(),
    JobFilter(states=("running", "DONE")),
    JobFilter(exclude_states=("done", "aborted")),
    JobFilter(since=T0 + dt.timedelta(minutes=10), until=T0 + dt.timedelta(minutes=30)),
    JobFilter(user_tags={"run": "r1"}),
    JobFilter(user_tags={"run": "r2", "kind": "k"}, states=("Running", "waiting", "submitted")),
    JobFilter(user_tags={"run": "none"}),
]


class TestSamePages:
    def test_every_page_is_the_former_listings(self, rt: Runtime) -> None:
        _mix(rt)
        compared = 0
        for flt, offset, limit in itertools.product(FILTERS, (0, 1, 3, 7, 19, 40), (1, 2, 5, 100)):
            paged = dataclasses.replace(flt, offset=offset, limit=limit)
            page = list_jobs(rt, READER, paged)
            expected, total = _old_page(rt, READER, paged)
            assert ([j.job_id for j in page.jobs], page.total) == (expected, total), paged
            compared += bool(expected)
        assert compared > 50
        # the mix has what it is meant to: ties, shared jobs, jobs hidden by their ACL
        everything = list_jobs(rt, READER, JobFilter(limit=1000))
        assert len({j.submitted for j in everything.jobs}) < everything.total
        assert {j.owner_dn for j in everything.jobs} == {READER.dn, OTHER}


class TestRowsLoaded:
    @pytest.mark.parametrize("flt", [JobFilter(limit=5), JobFilter(offset=3, limit=5),
                                     JobFilter(user_tags={"run": "r1"}, limit=5),
                                     JobFilter(states=("running",), limit=5)],
                             ids=["first", "offset", "user-tags", "states"])
    def test_only_the_page_is_loaded_as_jobs(self, rt: Runtime, request: pytest.FixtureRequest,
                                             flt: JobFilter) -> None:
        key = request.node.callspec.id
        vo = f"/lpmany{key}"
        owner = Principal(f"/CN=lp-many-{key}", fqans=(vo,))
        for n in range(60):  # 12 of them shared with the owner by another user
            _add(rt, f"https://h:9000/lp-many-{key}-{n:03d}", owner.dn if n % 5 else OTHER, "Running",
                 T0 + dt.timedelta(seconds=n // 4), tags={"run": "r1"}, items=(vo,))
        with _loaded_jobs() as loaded:
            page = list_jobs(rt, owner, flt)
        assert page.total == 60
        assert [j.job_id for j in page.jobs] == _old_page(rt, owner, flt)[0]
        assert sorted(loaded) == sorted(j.job_id for j in page.jobs), "rows loaded beyond the page"


@contextlib.contextmanager
def _statements(rt: Runtime) -> Iterator[list[str]]:
    """The statements the runtime's database runs within the block."""
    with rt.uow() as uow:
        engine = uow.session.get_bind()
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


class TestSummaries:
    def test_a_page_is_summarised_in_a_few_statements_as_job_by_job_before(self, rt: Runtime) -> None:
        owner = Principal("/CN=lp-summaries")
        for n in range(30):
            job_id = f"https://h:9000/lp-sum-{n:02d}"
            _add(rt, job_id, owner.dn, ["Running", "Done", "Waiting"][n % 3], T0 + dt.timedelta(seconds=n % 7))
            with rt.uow() as uow:  # state changes, a state entered twice (the later time wins), an action
                for minutes, kind, state in [(1, "registered", "Submitted"), (2, "enqueued", "Waiting"),
                                             (3, "running", "Running"), (4, "enqueued", "Waiting"),
                                             (5, "retry", "Waiting")][:n % 6]:
                    uow.session.add(_event(job_id, kind, state, T0 + dt.timedelta(minutes=minutes)))
            if n % 4 == 0:  # a compound job: its nodes' states counted, nodes never listed
                for m, state in enumerate(["Done", "Running", "Done", "Aborted"][:n % 5 + 1]):
                    _add(rt, f"{job_id}-{'zyxw'[m]}", owner.dn, state, T0, parent=job_id)
        flt = JobFilter(limit=30)
        with _statements(rt) as seen:
            page = list_jobs(rt, owner, flt)
        assert len(page.jobs) == page.total == 30
        assert len(seen) <= 8, seen  # not two a job
        with rt.uow() as uow:  # the former summaries, job by job
            for summary in page.jobs:
                job = uow.jobs.get(summary.job_id)
                assert job is not None
                assert summary.state_times == {e.state: e.at for e in uow.jobs.events(job.id)}
                nodes = collections.Counter(n.state for n in uow.jobs.children(job.id))
                assert list(summary.node_states.items()) == list(nodes.items())
        assert any(s.node_states for s in page.jobs) and any(len(s.state_times) >= 3 for s in page.jobs)
