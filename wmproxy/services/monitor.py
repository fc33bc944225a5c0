"""What the web job monitor and the metrics show: read-only views of jobs.

Access follows the SOAP service (:mod:`wmproxy.services.access`): the job list and the
totals hold only the caller's own jobs; one job's page is shown to its owner and to the
readers its ACL names (as getJobStatus), and to nobody else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from wmproxy.domain import JobState, Principal
from wmproxy.errors import InvalidArgumentError
from wmproxy.sandbox.storage import served_name, shown_name
from wmproxy.services.access import job_for
from wmproxy.services.jobs import status_text
from wmproxy.services.perusal import stored_names
from wmproxy.services.runtime import Runtime
from wmproxy.services.uris import file_uri
from wmproxy.store import monitoring as queries
from wmproxy.store.schema import Job

#: Jobs on one page of the list, at most.
MAX_PAGE_SIZE = 200
#: Nodes of a compound job on one page of its job page's table.
NODES_PER_PAGE = 100
#: The largest DAG the monitor draws: with more nodes or more dependencies than these its
#: pages show a notice instead of the picture. ``[jobs] max_nodes`` is 10,000, and node lists
#: in ``dependencies`` make 100,000 dependencies out of a 41 KB JDL: every one an arrow, the
#: picture was 11 MB and about 60 MB of a worker's memory per view.
MAX_DRAWN_NODES = 500
MAX_DRAWN_EDGES = 2000
STATES = tuple(state.value for state in JobState)


@dataclass(frozen=True)
class SiteTotals:
    """The scrape-time metrics of the whole service."""

    jobs_by_state: dict[str, int]
    queue_depth: int
    renewals_ok: int
    renewals_failed: int
    purges: int


def site_totals(rt: Runtime) -> SiteTotals:
    """Jobs (and nodes) by state, pending execution requests, renewal results, purges (one per
    job jobPurge cleared whose row remains, its nodes not counted, plus the purger's tombstones,
    kept or deleted since); the renewal and purge totals never step down."""
    with rt.uow() as uow:
        ok, failed = queries.renewal_counts(uow.session)
        return SiteTotals(queries.jobs_by_state(uow.session), queries.queue_depth(uow.session), ok, failed,
                          queries.purge_count(uow.session))


@dataclass(frozen=True)
class JobRow:
    """One job of a list or one node of a compound job."""

    job_id: str
    name: str | None
    state: str
    status: str
    destination: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class JobPage:
    """One page of the caller's jobs, newest first; ``page`` counts from 1."""

    rows: list[JobRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class Event:
    state: str
    reason: str | None
    at: dt.datetime


@dataclass(frozen=True)
class OutputFile:
    """A file of the output sandbox: name, size in bytes, HTTPS URI of the sandbox edge (None:
    a name the edge does not serve, which a collection before it refused such names stored)."""

    name: str
    size: int
    uri: str | None


@dataclass(frozen=True)
class PerusalFile:
    """A file enabled for perusal and its parts merged so far (by getPerusalFiles), oldest first."""

    name: str
    parts: list[OutputFile]


@dataclass(frozen=True)
class Dag:
    """A compound job's DAG as the monitor shows it: how many nodes and dependencies it has,
    and, when it has at most :data:`MAX_DRAWN_NODES` and :data:`MAX_DRAWN_EDGES` (``drawn``),
    all its nodes and edges ``(node id, node it depends on)`` to draw; else none of them."""

    node_total: int
    edge_total: int
    nodes: list[JobRow]
    edges: list[tuple[str, str]]

    @property
    def drawn(self) -> bool:
        return 0 < self.node_total <= MAX_DRAWN_NODES and self.edge_total <= MAX_DRAWN_EDGES


@dataclass(frozen=True)
class JobDetail:
    """One job's page: its row, events oldest first, JDLs, output files, perusal files, and
    for a compound job its DAG and one page of its nodes (by name, :data:`NODES_PER_PAGE`;
    ``node_page`` counts from 1)."""

    job: JobRow
    owner_dn: str
    parent_id: str | None
    exit_code: int | None
    reason: str | None
    events: list[Event]
    jdl_original: str
    jdl_registered: str
    output_files: list[OutputFile]
    perusal_files: list[PerusalFile]
    dag: Dag | None = None
    nodes: list[JobRow] = field(default_factory=list)
    node_page: int = 1

    @property
    def node_pages(self) -> int:
        return max(1, -(-self.dag.node_total // NODES_PER_PAGE)) if self.dag else 1


def _row(job: Job) -> JobRow:
    return JobRow(job.id, job.node_name, job.state, status_text(job), job.destination, job.created_at,
                  job.updated_at)


def my_jobs(rt: Runtime, principal: Principal, *, state: str | None = None, since: dt.datetime | None = None,
            until: dt.datetime | None = None, page: int = 1, per_page: int = 25) -> JobPage:
    """The caller's top-level jobs, newest first, filtered by state and creation time.

    Args:
        state: a JobState name ("Running"...) or None for all.
        since, until: UTC creation time bounds (inclusive, exclusive), or None.
        page: from 1; per_page: 1..MAX_PAGE_SIZE.

    Raises:
        InvalidArgumentError: an unknown state, or a page or page size out of range.
    """
    if state is not None and state not in STATES:
        raise InvalidArgumentError(f"unknown job state {state[:40]!r}")
    if page < 1 or not 1 <= per_page <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page must be >= 1 and page size within 1..{MAX_PAGE_SIZE}")
    with rt.uow() as uow:
        total, jobs = queries.owner_jobs_page(uow.session, principal.dn, state=state, since=since, until=until,
                                              offset=(page - 1) * per_page, limit=per_page)
        return JobPage([_row(job) for job in jobs], total, page, per_page)


def my_totals(rt: Runtime, principal: Principal) -> dict[str, int]:
    """State → number of the caller's top-level jobs, every state present (0 when none)."""
    with rt.uow() as uow:
        counts = queries.jobs_by_state(uow.session, principal.dn)
    return {state: counts.get(state, 0) for state in STATES}


def job_detail(rt: Runtime, principal: Principal, job_id: str, *, node_page: int = 1) -> JobDetail:
    """One job as its owner or an ACL reader may see it; of a compound job's nodes, page
    ``node_page`` (from 1) of :data:`NODES_PER_PAGE`.

    Raises:
        InvalidArgumentError: malformed job id, or a page of nodes the job does not have.
        JobNotFoundError: no such job.
        AuthorizationError: the caller is neither the owner nor an ACL reader.
    """
    with rt.uow() as uow:
        job = job_for(uow, principal, job_id, access="read")
        events = [Event(e.state, e.reason, e.at) for e in uow.jobs.events(job.id)]
        dag = _dag(uow.session, job) if job.parent_id is None else None
        nodes: list[JobRow] = []
        if dag is not None:
            pages = max(1, -(-dag.node_total // NODES_PER_PAGE))
            if not 1 <= node_page <= pages:
                raise InvalidArgumentError(f"this job's nodes have pages 1..{pages}")
            first = (node_page - 1) * NODES_PER_PAGE
            nodes = dag.nodes[first:first + NODES_PER_PAGE] if dag.drawn else [
                _row(n) for n in queries.node_rows(uow.session, job.id, offset=first, limit=NODES_PER_PAGE)]
        outputs: list[OutputFile] = []
        if dag is None and job.state in (JobState.DONE.value, JobState.ABORTED.value) \
                and rt.storage.has_job_area(job.id):
            area = rt.storage.job_area(job.id, job.parent_id)
            # a name is shown escaped (the job chose it: bytes that are not UTF-8, control
            # characters); linked as stored only when the edge serves it (a collection before
            # stop 55 stored names it refuses: their link answered 400)
            outputs = [OutputFile(shown_name(name), size,
                                  file_uri(area.output_uri, name) if served_name(name) else None)
                       for name, size in rt.storage.output_files(job.id)]
        perusal = _perusal(rt, job)
        return JobDetail(_row(job), job.owner_dn, job.parent_id, job.exit_code, job.reason, events,
                         job.jdl_original, job.jdl_registered, outputs, perusal, dag, nodes, node_page)


def job_dag(rt: Runtime, principal: Principal, job_id: str) -> Dag | None:
    """The DAG of a job the caller may read (None for a simple job or a node).

    Raises:
        InvalidArgumentError, JobNotFoundError, AuthorizationError: as :func:`job_detail`.
    """
    with rt.uow() as uow:
        job = job_for(uow, principal, job_id, access="read")
        return _dag(uow.session, job) if job.parent_id is None else None


def _dag(session: Session, job: Job) -> Dag | None:
    """The job's DAG, None for a simple job; its nodes and edges loaded only when it is drawn
    (counted first: the memory of a view stays bounded, whatever the DAG's size)."""
    node_total, edge_total = queries.dag_size(session, job.id)
    if not node_total:
        return None
    dag = Dag(node_total, edge_total, [], [])
    if not dag.drawn:
        return dag
    return Dag(node_total, edge_total, [_row(n) for n in queries.node_rows(session, job.id)],
               queries.node_edges(session, job.id))


def _perusal(rt: Runtime, job: Job) -> list[PerusalFile]:
    """The job's perusal files with the parts already merged (read only: nothing is merged here):
    the names the worker samples (:func:`wmproxy.services.perusal.stored_names`: valid ones, each
    once, at most ``[jobs] max_perusal_files``, whatever an old row holds)."""
    names = stored_names(rt, job.perusal_files or "")
    if not names or not rt.storage.has_job_area(job.id) or not (rt.storage.job_dir(job.id) / "peek").is_dir():
        return [PerusalFile(name, []) for name in names]
    area = rt.storage.job_area(job.id, job.parent_id)
    peek = rt.storage.job_dir(job.id) / "peek"
    return [PerusalFile(name, [OutputFile(part, (peek / part).stat().st_size, file_uri(area.peek_uri, part))
                               for part in rt.storage.merged_perusal_files(job.id, name)]) for name in names]
