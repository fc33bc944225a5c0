"""Repository of jobs, their state history and the execution queue."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    TextClause,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    inspect,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from wmproxy.store import prepared
from wmproxy.store.retire import retire_after_bytes, retire_connection_after
from wmproxy.store.schema import (
    ACL_TRIMMED_ITEM,
    ExecutionRequest,
    Job,
    JobAclEntry,
    JobDependency,
    JobEvent,
    not_by_index,
)

#: PostgreSQL's SQLSTATE for a row lock refused under NOWAIT (lock_not_available).
_LOCK_NOT_AVAILABLE = "55P03"

#: The tables the Core INSERTs of :meth:`SqlJobStore.insert` and :meth:`SqlExecutionQueue.insert` write.
_JOBS = cast(Table, Job.__table__)
_EVENTS = cast(Table, JobEvent.__table__)
_REQUESTS = cast(Table, ExecutionRequest.__table__)
_ACL = cast(Table, JobAclEntry.__table__)
_DELETE_ACL_ITEM = delete(_ACL).where(_ACL.c.job_id == bindparam("job_id"), _ACL.c.item == bindparam("item"))
#: The attribute names a new job's INSERT takes from the row object.
_JOB_KEYS = tuple(c.key for c in _JOBS.columns)

#: A job's state change by :meth:`SqlJobStore.set_states` (executemany parameters ``b_<column>``):
#: ``exit_code`` and ``backend_ref`` stay as they are when the parameter is NULL.
_UPDATE_STATE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), reason=bindparam("b_reason"),
            exit_code=func.coalesce(bindparam("b_exit_code", type_=_JOBS.c.exit_code.type), _JOBS.c.exit_code),
            backend_ref=func.coalesce(bindparam("b_backend_ref", type_=_JOBS.c.backend_ref.type),
                                      _JOBS.c.backend_ref),
            updated_at=bindparam("b_updated_at", type_=_JOBS.c.updated_at.type))
)


_STATE_COLUMNS = (_JOBS.c.id, _JOBS.c.state, _JOBS.c.parent_id, _JOBS.c.shallow_retries, _JOBS.c.deep_retries)
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)


class _LockStatements(NamedTuple):
    """The statements that lock a set of jobs (the expanding parameter ``ids``), in the one
    order of :meth:`SqlJobStore.lock_all`: SQLite's one SELECT (``one_writer``); PostgreSQL's
    two levels, first the jobs that are not nodes and the nodes' compound jobs (``tops``),
    then the nodes (``nodes``), each ``ORDER BY id FOR UPDATE``."""

    one_writer: Select[Any]
    tops: Select[Any]
    nodes: Select[Any]


def _lock_statements(*what: Any, nowait: bool = False) -> _LockStatements:
    """:class:`_LockStatements` selecting ``what`` (the ORM entity, or columns), built once
    (an expanding ``ids`` parameter: no bound parameter built per id at each call);
    ``nowait``: PostgreSQL refuses a row another transaction holds instead of waiting."""
    wanted = _JOBS.c.id.in_(_IDS)
    is_node = _JOBS.c.parent_id.is_not(None)
    compound_jobs = select(_JOBS.c.parent_id).where(wanted, is_node)
    return _LockStatements(
        select(*what).where(wanted),
        select(*what).where(or_(and_(wanted, _JOBS.c.parent_id.is_(None)), _JOBS.c.id.in_(compound_jobs)))
        .order_by(_JOBS.c.id).with_for_update(nowait=nowait),
        select(*what).where(wanted, is_node).order_by(_JOBS.c.id).with_for_update(nowait=nowait),
    )


_LOCK_JOBS = _lock_statements(Job)  # lock_all
_LOCK_STATES = _lock_statements(*_STATE_COLUMNS)  # lock_states

#: What a claim reads of a job (:meth:`SqlJobStore.lock_claims`), as :class:`ClaimedJob`.
_CLAIM_COLUMNS = (_JOBS.c.id, _JOBS.c.state, _JOBS.c.parent_id, _JOBS.c.reason, _JOBS.c.jdl_registered,
                  _JOBS.c.owner_dn, _JOBS.c.delegation_id, _JOBS.c.local_account, _JOBS.c.shallow_retries,
                  _JOBS.c.deep_retries)
_LOCK_CLAIMS = _lock_statements(*_CLAIM_COLUMNS)
_LOCK_CLAIMS_NOWAIT = _lock_statements(*_CLAIM_COLUMNS, nowait=True)

#: A claimed job becoming Ready (:meth:`SqlJobStore.set_ready`, executemany parameters ``b_<column>``).
_UPDATE_READY = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), reason=bindparam("b_reason"), destination=bindparam("b_destination"),
            worker=bindparam("b_worker"), backend_ref=None,
            updated_at=bindparam("b_updated_at", type_=_JOBS.c.updated_at.type))
)


class ClaimedJob(NamedTuple):
    """What a claim reads of a job it locked (:meth:`SqlJobStore.lock_claims`)."""

    id: str
    state: str
    parent_id: str | None
    reason: str | None
    jdl_registered: str
    owner_dn: str
    delegation_id: str
    local_account: str | None
    shallow_retries: int
    deep_retries: int

    @property
    def attempt(self) -> int:
        """The job's current attempt, as :attr:`~wmproxy.store.schema.Job.attempt` counts it."""
        return self.shallow_retries + self.deep_retries


#: :meth:`SqlJobStore.count_at_ce_and_waiting`, built once (expanding parameters).
_COUNT_AT_CE_AND_WAITING = select(
    func.count().filter(_JOBS.c.state.in_(bindparam("states", expanding=True)),
                        _JOBS.c.destination == bindparam("destination", type_=_JOBS.c.destination.type)),
    func.count().filter(_JOBS.c.state.in_(bindparam("waiting", expanding=True))),
).where(_JOBS.c.state.in_(bindparam("either", expanding=True)))


class StateChange(NamedTuple):
    """One job's change for :meth:`SqlJobStore.set_states`.

    Attributes:
        job_id: the job.
        reason: its new reason (None clears it), also the state event's.
        exit_code: its exit code, None: unchanged.
        backend_ref: its backend reference, None: unchanged.
        submitted: also record the event "submitted to <backend_ref>" (kind
            ``backend_submitted``, source worker) after the state event.
    """

    job_id: str
    reason: str | None = None
    exit_code: int | None = None
    backend_ref: str | None = None
    submitted: bool = False


#: Who reports a job event.
EVENT_SOURCES = ("service", "worker", "wrapper", "renewal", "user")

#: The kind of event each state change records, and who reports it unless the caller says.
STATE_EVENTS: dict[str, tuple[str, str]] = {
    "Submitted": ("registered", "user"),
    "Waiting": ("enqueued", "service"),
    "Ready": ("matched", "worker"),
    "Scheduled": ("scheduled", "worker"),
    "Running": ("running", "worker"),
    "Done": ("done", "wrapper"),
    "Aborted": ("aborted", "worker"),
    "Cancelled": ("cancelled", "service"),
    "Cleared": ("cleared", "user"),
}

#: Every event kind: those of the state changes, then the notable actions that change no
#: state (``state`` = a row written before migration 0008).
EVENT_KINDS = (
    *(kind for kind, _ in STATE_EVENTS.values()),
    "sandbox_transferred", "backend_submitted", "retry", "cancel_requested",
    "proxy_renewed", "renewal_failed", "purged", "state",
)

#: Kinds of the events that change the job's state (``state``: rows from before migration 0008).
STATE_KINDS = (*(kind for kind, _ in STATE_EVENTS.values()), "state")


#: The columns a new job's events are inserted with.
_EVENT_COLUMNS = ("job_id", "state", "reason", "at", "kind", "source")


@functools.cache
def _events_insert(rows: int) -> TextClause:
    """The multi-row INSERT of ``rows`` events, parameters ``<column>_<row>``, as one textual
    statement per row count: SQLAlchemy compiles it once (a multi-row ``insert().values([...])``
    is never cached, so it was compiled on every call)."""
    values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _EVENT_COLUMNS) + ")" for i in range(rows))
    sql = f"INSERT INTO {_EVENTS.name} ({', '.join(_EVENT_COLUMNS)}) VALUES {values}"  # noqa: S608 - schema names, bound values
    return text(sql).bindparams(
        *(bindparam(f"{c}_{i}", type_=_EVENTS.c[c].type) for i in range(rows) for c in _EVENT_COLUMNS))


def _insert_events(conn: Connection, state: str, now: dt.datetime,
                   events: Sequence[tuple[str, str | None, str, str]]) -> None:
    """One multi-row INSERT of ``(job id, reason, kind, source)`` events, all with ``state`` at ``now``."""
    values: dict[str, Any] = {}
    for i, (job_id, reason, kind, source) in enumerate(events):
        values.update({f"job_id_{i}": job_id, f"state_{i}": state, f"reason_{i}": reason, f"at_{i}": now,
                       f"kind_{i}": kind, f"source_{i}": source})
    conn.execute(_events_insert(len(events)), values)


def started_insert(keys: tuple[str, ...], rows: int, where: str = "",
                   where_binds: Sequence[BindParameter[Any]] = ()) -> TextClause:
    """PostgreSQL: a new job's row (columns ``keys``), its ``rows`` events and its execution
    request with the queue's notification, as one statement of data-modifying CTEs (the
    foreign keys are checked at its end, when the job's row is there). The events and the
    request take the job's id from its INSERT's ``RETURNING``; with ``where`` (an SQL condition,
    its parameters ``where_binds``) the job's row is inserted only when it holds, and then
    nothing at all is. Parameters: the job's columns by name, the events' ``<column>_<row>``
    (``job_id_<row>`` not used), the request's ``request_command``. The statement returns one
    row (the notification's) when the job was written, none otherwise."""
    condition = f" WHERE {where}" if where else ""
    job = (f"INSERT INTO {_JOBS.name} ({', '.join(keys)}) "
           f"SELECT {', '.join(f':{k}' for k in keys)}{condition} RETURNING id")
    columns = _EVENT_COLUMNS[1:]
    event_rows = " UNION ALL ".join(
        "SELECT j.id, " + ", ".join(f":{c}_{i}" for c in columns) + " FROM j" for i in range(rows))  # noqa: S608 - bound values
    events = f"INSERT INTO {_EVENTS.name} ({', '.join(_EVENT_COLUMNS)}) {event_rows}"
    request = (f"INSERT INTO {_REQUESTS.name} (job_id, command, created_at) "  # noqa: S608 - schema names, bound values
               f"SELECT j.id, :request_command, :created_at FROM j RETURNING pg_notify('{QUEUE_CHANNEL}', '')")
    return text(f"WITH j AS ({job}), e AS ({events}) {request}").bindparams(
        *(bindparam(k, type_=_JOBS.c[k].type) for k in keys), *where_binds,
        *(bindparam(f"{c}_{i}", type_=_EVENTS.c[c].type) for i in range(rows) for c in columns),
        bindparam("request_command", type_=_REQUESTS.c.command.type))


def new_job_rows(job: Mapping[str, Any], history: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The INSERT parameters of a new job given by its column values (``id``, ``state``,
    ``created_at`` at least) and its ``history`` of states, oldest first: the job's values with
    the scalar defaults of the columns it leaves out (as Core's ``insert()`` adds them), and its
    events' ``<column>_<row>`` values for one multi-row INSERT, each at the job's ``created_at``,
    as :data:`STATE_EVENTS` says (the job's ``reason`` on the event of its current state).

    Raises:
        ValueError: ``history`` is empty or does not end with the job's state.
        KeyError: ``id``, ``state`` or ``created_at`` is missing.
    """
    values = dict(job)
    job_id, state, created_at, reason = values["id"], values["state"], values["created_at"], values.get("reason")
    if not history or history[-1] != state:
        raise ValueError(f"the history of a new job must end with its state {state!r}: {history!r}")
    for key, default in prepared.scalar_defaults(_JOBS).items():
        values.setdefault(key, default)
    # One multi-row VALUES statement (an executemany of two rows costs psycopg a pipeline),
    # its values straight from STATE_EVENTS, as _state_event would make them (no JobEvent objects).
    events: dict[str, Any] = {}
    for i, event_state in enumerate(history):
        kind, source = STATE_EVENTS.get(event_state, ("state", "service"))
        events.update({f"job_id_{i}": job_id, f"state_{i}": event_state, f"at_{i}": created_at,
                       f"reason_{i}": reason if event_state == state else None,
                       f"kind_{i}": kind, f"source_{i}": source})
    return values, events


def _state_event(job_id: str, state: str, reason: str | None, at: dt.datetime, source: str | None = None) -> JobEvent:
    kind, default_source = STATE_EVENTS.get(state, ("state", "service"))
    return JobEvent(job_id=job_id, state=state, reason=reason, at=at, kind=kind, source=source or default_source)


class ListingCandidate(NamedTuple):
    """A job listJobs may list (:meth:`SqlJobStore.listing_candidates`): what decides and orders."""

    id: str
    created_at: dt.datetime
    #: The registered JDL (its ``UserTags``), None unless asked for.
    jdl_registered: str | None = None


class ListingCandidates(NamedTuple):
    """:meth:`SqlJobStore.listing_candidates`: the owner's jobs read, ``(job, ACL item)`` of the
    others', and how many of the owner's jobs match (``owned`` may hold only the newest)."""

    owned: list[ListingCandidate]
    shared: list[tuple[ListingCandidate, str]]
    owned_total: int


class JobLockedError(Exception):
    """Another transaction holds the job's row or its compound job's (``get(..., nowait=True)``).
    The current transaction must be rolled back."""


class SqlJobStore:
    def __init__(self, session: Session) -> None:
        self.session = session
        # Rows this transaction holds locked: a second get(for_update=True) of one of them
        # (the worker's end path locks a job, then changes its state) costs no statement.
        self._locked: dict[str, Job] = {}
        self._serialised: bool | None = None

    def add(self, job: Job, *, flush: bool = True) -> None:
        """Add the job and its first event; ``flush=False`` leaves the INSERTs to the next flush."""
        self.session.add(job)
        self.session.add(_state_event(job.id, job.state, job.reason, job.created_at))
        retire_connection_after(self.session, (job,))  # a huge JDL: the pool's connection is not reused (issue 14)
        if flush:
            self.session.flush()

    def insert(self, job: Job | Mapping[str, Any], history: Sequence[str], *, request: str | None = None) -> None:
        """INSERT a new ``job`` at once, with one event per state of ``history`` (oldest first,
        each at the job's ``created_at``; its last is the job's ``state``), in two statements.

        ``job`` is a :class:`Job` outside the session or the job's column values by column key
        (``id``, ``state``, ``created_at`` at least; issue 14: a simple jobSubmit makes no ORM
        object). With ``request`` (a command such as "start"), the job's execution request due
        at once goes in as well, created at the job's ``created_at``, as
        :meth:`SqlExecutionQueue.insert` would add it: on PostgreSQL the job, its events and
        the request (with the queue's notification) are one statement, on SQLite three.

        Not the ORM's unit of work: the row stays outside the session (nothing of this
        transaction reads it back), the events go in one multi-row INSERT without fetching
        their ids, and each statement is compiled once per dialect and sent as the driver's
        SQL (:mod:`wmproxy.store.prepared`; on SQLite on the driver's own connection, which
        the engine's statement events do not see; PostgreSQL's one statement they see). Columns
        the values leave out get their defaults. Pending ORM changes of the session are
        flushed first.

        Raises:
            ValueError: ``history`` is empty or does not end with the job's state.
            KeyError: a value names no column of ``jobs``, or ``id``, ``state`` or
                ``created_at`` is missing.
        """
        if not isinstance(job, Mapping):
            attrs = job.__dict__
            job = {key: attrs[key] for key in _JOB_KEYS if key in attrs}
        values, events = new_job_rows(job, history)
        job_id, created_at = values["id"], values["created_at"]
        self.session.flush()  # these statements do not autoflush; nothing to do when nothing is pending
        # a huge JDL: the pool's connection is not reused (issue 14)
        jdl = len(values.get("jdl_original") or "") + len(values.get("jdl_registered") or "")
        retire_after_bytes(self.session, jdl)
        conn = self.session.connection()
        dialect, keys, rows = conn.dialect, tuple(values), len(history)
        if request is not None and dialect.name == "postgresql":
            prepared.statement(dialect, ("started", keys, rows), lambda: started_insert(keys, rows)).execute(
                conn, {**values, **events, "request_command": request})
            self.session.info[_NOTIFIED] = True  # the transaction's notification is sent
            return
        # No result is read: sent on the driver's connection (prepared.DriverStatement.send).
        prepared.statement(dialect, ("job", keys), lambda: prepared.row_insert(_JOBS, keys)).send(conn, values)
        prepared.statement(dialect, ("events", rows), lambda: _events_insert(rows)).send(conn, events)
        if request is not None:  # SQLite: no notification (SqlExecutionQueue.insert sends none there)
            request_keys = ("job_id", "command", "created_at")
            prepared.statement(dialect, "request", lambda: prepared.row_insert(_REQUESTS, request_keys)).send(
                conn, {"job_id": job_id, "command": request, "created_at": created_at})

    def flush(self) -> None:
        """Send the pending changes (e.g. jobs added with ``flush=False``) to the database."""
        self.session.flush()

    def add_all(self, jobs: Sequence[Job]) -> None:
        """Add many jobs (the nodes of a compound job) with one flush."""
        self.session.add_all(jobs)
        self.session.add_all(_state_event(j.id, j.state, j.reason, j.created_at) for j in jobs)
        retire_connection_after(self.session, jobs)  # a huge JDL: the pool's connection is not reused (issue 14)
        self.session.flush()

    def get(self, job_id: str, *, for_update: bool = False, nowait: bool = False) -> Job | None:
        """The job, None if unknown; ``for_update`` locks it until the transaction ends.

        One lock order everywhere: a node's compound job (its parent row) is locked before
        the node, because changing a node changes its parent's state and cancelling a
        compound job changes its nodes; so a worker, jobCancel and the renewal worker never
        deadlock on PostgreSQL (SQLite serialises writers anyway).

        Args:
            nowait: with ``for_update``, refuse instead of waiting for a lock another
                transaction holds (PostgreSQL ``NOWAIT``).

        Raises:
            JobLockedError: ``nowait`` and a row is locked; roll the transaction back.
        """
        if not for_update:
            if (held := self._held(job_id)) is not None:  # locked by this transaction: up to date
                return held
            return self.session.scalars(select(Job).where(Job.id == job_id)).one_or_none()
        if (held := self._held(job_id)) is not None:
            return held
        if self._one_writer():  # SQLite: the transaction holds the whole database, no row locks to order
            return self._lock(job_id, nowait)
        parent_id = self.session.scalar(select(Job.parent_id).where(Job.id == job_id))
        if parent_id is not None and self._held(parent_id) is None:
            self._lock(parent_id, nowait)
        return self._lock(job_id, nowait)

    def _one_writer(self) -> bool:
        """True on SQLite (``BEGIN IMMEDIATE``: one writing transaction at a time, ``FOR
        UPDATE`` is not rendered), where locking the parent first would only cost a query."""
        if self._serialised is None:
            self._serialised = self.session.get_bind().dialect.name == "sqlite"
        return self._serialised

    def _held(self, job_id: str) -> Job | None:
        """The job if this transaction locked it already and it is still in the session."""
        job = self._locked.get(job_id)
        if job is None or job not in self.session or inspect(job).deleted:
            return None
        return job

    def _lock(self, job_id: str, nowait: bool) -> Job | None:
        stmt = select(Job).where(Job.id == job_id).with_for_update(nowait=nowait)
        try:
            job = self.session.scalars(stmt).one_or_none()
            if job is not None:
                self._locked[job_id] = job
            return job
        except OperationalError as exc:
            if nowait and getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise JobLockedError(job_id) from exc
            raise

    def owned_by(self, owner_dn: str) -> Sequence[Job]:
        return self.session.scalars(select(Job).where(Job.owner_dn == owner_dn)).all()

    def by_sandbox_dir(self, sandbox_dir: str) -> Job | None:
        return self.session.scalars(select(Job).where(Job.sandbox_dir == sandbox_dir)).one_or_none()

    def owners(self) -> list[str]:
        """The distinct owner DNs of the jobs table."""
        return list(self.session.scalars(select(Job.owner_dn).distinct()))

    def children(self, parent_id: str, *, for_update: bool = False) -> Sequence[Job]:
        """The nodes of compound job ``parent_id`` by node name (none for a simple job).

        ``for_update`` locks them until the transaction ends, taken in the order of
        :meth:`lock_all` (by id, after their compound job, which the caller locks first), and
        returns their values as committed once the locks are held, also for nodes this session
        had read before: a worker's claim or end that held a node is seen, not overwritten.
        """
        stmt = select(Job).where(Job.parent_id == parent_id)
        if not for_update:
            return self.session.scalars(stmt.order_by(Job.node_name)).all()
        nodes = self.session.scalars(
            stmt.order_by(Job.id).with_for_update().execution_options(populate_existing=True)).all()
        for node in nodes:
            self._locked[node.id] = node
        return sorted(nodes, key=lambda node: node.node_name or "")

    def lock_all(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Lock several jobs for the transaction in at most two statements instead of one
        (or two) per job: the order of :meth:`get` holds for the whole set.

        SQLite (one writing transaction at a time): one ``SELECT ... WHERE id IN``. PostgreSQL:
        first the compound jobs of the nodes among ``job_ids`` together with the jobs that
        are not nodes, then the nodes, each statement ``ORDER BY id FOR UPDATE``; a node is
        only ever locked after its compound job (here as in :meth:`get`), so the order
        between the nodes of different compound jobs does not matter, and the rest follow
        the one order by id.

        Args:
            job_ids: the jobs to lock (repeats and unknown ids allowed); jobs this
                transaction holds already are not selected again.

        Returns:
            Job id → the locked job, for the ids that exist; :meth:`get` with
            ``for_update`` then returns them without a statement.
        """
        wanted = [job_id for job_id in dict.fromkeys(job_ids) if self._held(job_id) is None]
        if len(wanted) == 1:
            self.get(wanted[0], for_update=True)
        elif wanted:
            params = {"ids": wanted}
            if self._one_writer():
                rows = list(self.session.scalars(_LOCK_JOBS.one_writer, params))
            else:
                rows = [*self.session.scalars(_LOCK_JOBS.tops, params), *self.session.scalars(_LOCK_JOBS.nodes, params)]
            for row in rows:
                self._locked[row.id] = row
        return {job_id: held for job_id in job_ids if (held := self._held(job_id)) is not None}

    def lock_states(self, job_ids: Sequence[str]) -> dict[str, tuple[str, str | None, int]]:
        """Lock several jobs for the transaction as :meth:`lock_all` does (the same statements
        and lock order), reading only their state and compound job: Core rows, no ORM objects.

        Args:
            job_ids: the jobs to lock (repeats and unknown ids allowed).

        Returns:
            Job id → ``(state, parent id or None, attempt)``, for the ids that exist (the
            attempt: the job's shallow plus deep resubmissions so far). Changes to them
            go through :meth:`set_states` (or :meth:`get` with ``for_update``, which selects
            the row again: it is not held by :meth:`_held`).
        """
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        conn = self.session.connection()
        params = {"ids": wanted}
        if self._one_writer():
            rows = list(conn.execute(_LOCK_STATES.one_writer, params))
        else:
            rows = [*conn.execute(_LOCK_STATES.tops, params), *conn.execute(_LOCK_STATES.nodes, params)]
        keep = set(wanted)
        return {row[0]: (row[1], row[2], row[3] + row[4]) for row in rows if row[0] in keep}

    def set_states(self, state: str, now: dt.datetime, changes: Sequence[StateChange]) -> None:
        """:meth:`set_state` (and for each change with ``submitted``, :meth:`record_event` of a
        "backend_submitted" event "submitted to <backend_ref>") for several jobs this
        transaction locked (:meth:`lock_states`), as two Core statements whatever their number:
        one UPDATE sent as an executemany and one multi-row INSERT of the events, in the order
        of ``changes`` (each job's state event before its other one). The same rows as the ORM
        path; nothing is read back and no ORM object is changed: the caller holds none of these
        jobs in the session (pending ORM changes are flushed first).

        Args:
            state: the jobs' new state (the events' kind and source follow it, :data:`STATE_EVENTS`).
            now: when (aware, UTC): ``updated_at`` and the events' ``at``.
            changes: one per job; ``exit_code`` and ``backend_ref`` left unchanged when None.
        """
        if not changes:
            return
        self.session.flush()  # Core statements do not autoflush
        conn = self.session.connection()
        conn.execute(_UPDATE_STATE, [
            {"b_id": c.job_id, "b_state": state, "b_reason": c.reason, "b_exit_code": c.exit_code,
             "b_backend_ref": c.backend_ref, "b_updated_at": now} for c in changes])
        kind, source = STATE_EVENTS.get(state, ("state", "service"))
        events: list[tuple[str, str | None, str, str]] = []
        for c in changes:
            events.append((c.job_id, c.reason, kind, source))
            if c.submitted:
                events.append((c.job_id, f"submitted to {c.backend_ref}", "backend_submitted", "worker"))
        _insert_events(conn, state, now, events)

    def lock_claims(self, job_ids: Sequence[str], *, nowait: bool = False) -> dict[str, ClaimedJob]:
        """Lock several jobs for a claim as :meth:`lock_all` does (the same statements and lock
        order), reading what the claim needs of them (:class:`ClaimedJob`): Core rows, no ORM
        objects.

        Args:
            job_ids: the jobs to lock (repeats and unknown ids allowed).
            nowait: refuse instead of waiting for a row another transaction holds
                (PostgreSQL ``NOWAIT``).

        Returns:
            Job id → :class:`ClaimedJob`, for the ids that exist. Changes to them go through
            :meth:`set_ready`, :meth:`set_states` or :meth:`get` with ``for_update`` (which
            selects the row again).

        Raises:
            JobLockedError: ``nowait`` and a row is locked; roll the transaction (or savepoint) back.
        """
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        conn = self.session.connection()
        params = {"ids": wanted}
        statements = _LOCK_CLAIMS_NOWAIT if nowait else _LOCK_CLAIMS
        try:
            if self._one_writer():
                rows = list(conn.execute(statements.one_writer, params))
            else:
                rows = [*conn.execute(statements.tops, params), *conn.execute(statements.nodes, params)]
        except OperationalError as exc:
            if nowait and getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise JobLockedError(",".join(wanted)) from exc
            raise
        keep = set(wanted)
        return {row[0]: ClaimedJob(*row) for row in rows if row[0] in keep}

    def set_ready(self, now: dt.datetime, worker: str, claims: Sequence[tuple[str, str]]) -> None:
        """:meth:`set_state` Ready with the reason "matched to CE <ce id>", ``destination`` the CE,
        ``worker`` the claiming worker and no backend reference, for each ``(job id, CE id)`` of
        ``claims`` (jobs this transaction locked, :meth:`lock_claims`), as two Core statements
        whatever their number (an executemany UPDATE and one multi-row INSERT of the "matched"
        events, in the order of ``claims``): the rows the ORM path of a claim writes. Pending
        ORM changes are flushed first.
        """
        if not claims:
            return
        self.session.flush()  # Core statements do not autoflush
        conn = self.session.connection()
        state = "Ready"
        conn.execute(_UPDATE_READY, [
            {"b_id": job_id, "b_state": state, "b_reason": f"matched to CE {ce_id}", "b_destination": ce_id,
             "b_worker": worker, "b_updated_at": now} for job_id, ce_id in claims])
        kind, source = STATE_EVENTS[state]
        _insert_events(conn, state, now, [(job_id, f"matched to CE {ce_id}", kind, source) for job_id, ce_id in claims])

    def parents_of(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Job id → its compound job's id (None for a simple job or a compound job itself)."""
        rows = self.session.execute(select(Job.id, Job.parent_id).where(Job.id.in_(job_ids))).all()
        return {row[0]: row[1] for row in rows}

    def has_children_in(self, parent_id: str, states: Sequence[str]) -> bool:
        """Whether a node of ``parent_id`` is in one of ``states`` (one existence query on
        the ``(parent_id, state)`` index, whatever the number of nodes)."""
        stmt = select(Job.id).where(Job.parent_id == parent_id, Job.state.in_(states)).limit(1)
        return self.session.scalars(stmt).first() is not None

    def set_state(
        self,
        job: Job,
        state: str,
        now: dt.datetime,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        source: str | None = None,
    ) -> None:
        """Change the job's state and record the event, in the caller's transaction.

        The event's kind follows the state (:data:`STATE_EVENTS`); ``source`` (one of
        :data:`EVENT_SOURCES`) defaults to who usually reports that state.
        """
        job.state = state
        job.reason = reason
        if exit_code is not None:
            job.exit_code = exit_code
        job.updated_at = now
        self.session.add(_state_event(job.id, state, reason, now, source))

    def record_event(self, job: Job, kind: str, now: dt.datetime, *, source: str, reason: str | None = None) -> None:
        """Record a notable action on the job that changes no state (a retry, a cancel request,
        a renewed proxy, ...) in the caller's transaction, with the job's current state.

        Args:
            kind: one of :data:`EVENT_KINDS`.
            now: when it happened (aware, UTC).
            source: who reports it, one of :data:`EVENT_SOURCES`.
            reason: free text shown to the user (a CE id, a backend id, an error).

        Raises:
            ValueError: unknown ``kind`` or ``source``.
        """
        if kind not in EVENT_KINDS or source not in EVENT_SOURCES:
            raise ValueError(f"unknown job event kind {kind!r} or source {source!r}")
        self.session.add(JobEvent(job_id=job.id, state=job.state, reason=reason, at=now, kind=kind, source=source))

    def acl_items(self, job_id: str) -> list[str]:
        return list(
            self.session.scalars(select(JobAclEntry.item).where(JobAclEntry.job_id == job_id).order_by(JobAclEntry.id))
        )

    def add_acl_item(self, job_id: str, item: str) -> None:
        self.session.add(JobAclEntry(job_id=job_id, item=item))

    def remove_acl_item(self, job_id: str, item: str) -> bool:
        """Delete ``item`` from the ACL of ``job_id`` at once (one statement); False when the
        statement deleted no row: none there, or a concurrent transaction deleted it first."""
        result = self.session.connection().execute(_DELETE_ACL_ITEM, {"job_id": job_id, "item": item})
        return bool(result.rowcount)

    def add_dependency(self, job_id: str, depends_on: str) -> None:
        self.session.add(JobDependency(job_id=job_id, depends_on=depends_on))

    def dependencies(self, job_id: str) -> list[str]:
        return list(self.session.scalars(select(JobDependency.depends_on).where(JobDependency.job_id == job_id)))

    def nodes_with_dependencies(self, parent_id: str) -> set[str]:
        """Ids of the nodes of ``parent_id`` that wait for another node."""
        return set(
            self.session.scalars(
                select(JobDependency.job_id).join(Job, Job.id == JobDependency.job_id).where(Job.parent_id == parent_id)
            )
        )

    def dependents(self, job_id: str) -> list[str]:
        return list(self.session.scalars(select(JobDependency.job_id).where(JobDependency.depends_on == job_id)))

    def edges_to(self, job_ids: Sequence[str]) -> list[tuple[str, str]]:
        """The DAG edges ``(node, the node it depends on)`` into any of ``job_ids``: who waits
        for them, in the order of the edges' rows (one query on the ``depends_on`` index per
        :data:`_ID_BATCH` ids)."""
        edges: list[tuple[str, str]] = []
        for start in range(0, len(job_ids), _ID_BATCH):
            batch = list(job_ids[start:start + _ID_BATCH])
            edges += ((row[0], row[1]) for row in self.session.execute(
                select(JobDependency.job_id, JobDependency.depends_on)
                .where(JobDependency.depends_on.in_(batch)).order_by(JobDependency.id)))
        return edges

    def descendants(self, job_id: str, stop_at: Sequence[str] = ()) -> tuple[list[tuple[str, str]], dict[str, Job]]:
        """The DAG below node ``job_id``: the edges ``(node, the node it depends on)`` reachable
        from it downwards, and those nodes (``{id: Job}``).

        A node in one of the states ``stop_at`` (the final ones, for the abort of a failed node's
        descendants) is neither returned nor walked through: its own dependents are reached only
        through another path of nodes not in those states (a DAG node with several parents), if
        any. The state is read with the edges, in the same query: the end of a node whose
        dependents have all ended (a whole cancel of a long chain) costs one query, not one
        per level of the chain below it.

        Read one level at a time (one query on the ``depends_on`` index per level, for all the
        level's nodes at once) and the nodes loaded together at the end, :data:`_ID_BATCH` ids
        per query: no recursion in Python (a chain of ``[jobs] max_nodes`` nodes is as deep as
        it is long) and no recursive CTE (whose plan on PostgreSQL scanned the whole table
        at every level of a long chain)."""
        self.session.flush()  # the states changed in this session, before they are read in Core
        conn = self.session.connection()
        stop = set(stop_at)
        edges: list[tuple[str, str]] = []
        seen = {job_id}
        level = [job_id]
        while level:
            found: list[str] = []
            for start in range(0, len(level), _ID_BATCH):
                for node, depends_on, state in conn.execute(_DEPENDENTS_OF, {"ids": level[start:start + _ID_BATCH]}):
                    if state in stop:
                        continue
                    edges.append((node, depends_on))
                    if node not in seen:
                        seen.add(node)
                        found.append(node)
            level = found
        seen.discard(job_id)
        return edges, self.by_ids(sorted(seen))

    def of_owner(self, owner_dn: str, job_ids: Sequence[str]) -> list[str]:
        """The ids among ``job_ids`` of jobs of ``owner_dn`` (:data:`_ID_BATCH` ids per query)."""
        owned: list[str] = []
        for start in range(0, len(job_ids), _ID_BATCH):
            owned += self.session.scalars(select(Job.id).where(
                Job.id.in_(job_ids[start:start + _ID_BATCH]), Job.owner_dn == owner_dn))
        return owned

    def live_count(self, owner_dn: str, final_states: Sequence[str]) -> int:
        """How many jobs (not nodes) ``owner_dn`` has in no state of ``final_states``: one
        COUNT over the owner's rows, no row loaded (the ``[load] max_live_jobs`` check of
        every jobRegister and jobSubmit, issue 14)."""
        stmt = select(func.count()).select_from(Job).where(
            Job.owner_dn == owner_dn, Job.parent_id.is_(None), Job.state.not_in(final_states))
        return int(self.session.scalar(stmt) or 0)

    def count_at(self, states: Sequence[str], *, destination: str | None = None) -> int:
        """How many jobs are in one of ``states`` (and matched to CE ``destination``, if given)."""
        stmt = select(func.count()).select_from(Job).where(Job.state.in_(states))
        if destination is not None:
            stmt = stmt.where(Job.destination == destination)
        return int(self.session.scalar(stmt) or 0)

    def count_at_ce_and_waiting(self, states: Sequence[str], destination: str,
                                waiting: Sequence[str]) -> tuple[int, int]:
        """``(count_at(states, destination=destination), count_at(waiting))`` in one query
        (the built-in CE's running and waiting counts at each match)."""
        self.session.flush()  # a Core statement: no autoflush of the transaction's changes
        row = self.session.connection().execute(_COUNT_AT_CE_AND_WAITING, {
            "states": list(states), "destination": destination, "waiting": list(waiting),
            "either": [*states, *waiting]}).one()
        return int(row[0] or 0), int(row[1] or 0)

    def events(self, job_id: str) -> Sequence[JobEvent]:
        """The job's state history: its state changes, oldest first (no other action)."""
        return self.history(job_id, kinds=STATE_KINDS)

    def ever_enqueued(self, job_id: str) -> bool:
        """Whether the job was ever started: one of its state changes is to Waiting (kind
        ``enqueued``, or ``state`` for a row written before migration 0008, which kept no kind)."""
        started = (select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.kind.in_(STATE_KINDS),
                                             JobEvent.state == "Waiting").limit(1))
        return self.session.execute(started).first() is not None

    def history(
        self,
        job_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        kinds: Sequence[str] | None = None,
    ) -> Sequence[JobEvent]:
        """All the job's events (state changes and other actions), oldest first; only those at
        or after ``since``, at or before ``until`` and of one of ``kinds`` when given."""
        stmt = select(JobEvent).where(JobEvent.job_id == job_id)
        if since is not None:
            stmt = stmt.where(JobEvent.at >= since)
        if until is not None:
            stmt = stmt.where(JobEvent.at <= until)
        if kinds is not None:
            stmt = stmt.where(JobEvent.kind.in_(kinds))
        return self.session.scalars(stmt.order_by(JobEvent.id)).all()

    def last_event(self, job_id: str, kinds: Sequence[str]) -> JobEvent | None:
        """The job's latest event of one of ``kinds`` (None: none), read alone (a job's history
        of renewal attempts grows with each of them)."""
        return self.session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind.in_(kinds))
                                    .order_by(JobEvent.id.desc()).limit(1)).first()

    def listing_candidates(
        self,
        owner_dn: str,
        *,
        acl_keys: Collection[str],
        states: Sequence[str] | None = None,
        exclude_states: Sequence[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        first: int | None = None,
        with_jdl: bool = False,
    ) -> ListingCandidates:
        """Top-level jobs (no nodes) matching the filters, as :class:`ListingCandidate` (id,
        registration time, the registered JDL only ``with_jdl``), never as full rows: those
        ``owner_dn`` owns, and ``(candidate, ACL item)`` of the others for their items whose
        value without trailing ``/`` is one of ``acl_keys``
        (:func:`wmproxy.services.access.grant_keys`; the caller decides which of these items
        name it). Those items are found through the index ``ix_job_acl_trimmed_item``: the
        other users' ACL rows are not read. ``since``/``until`` bound the registration time
        (inclusive).

        With ``first``, of the owned jobs only the ``first`` newest are read, with all those
        registered at the same time as the last of them (ties: the caller orders them), and
        ``owned_total`` is counted in SQL; the others are all registered before every one read
        (listJobs' page, ``offset + limit``, costs what it holds, not what the owner keeps)."""
        where: list[ColumnElement[bool]] = [Job.parent_id.is_(None)]
        if states:
            where.append(Job.state.in_(states))
        if exclude_states:
            where.append(Job.state.not_in(exclude_states))
        if since is not None:
            where.append(Job.created_at >= since)
        if until is not None:
            where.append(Job.created_at <= until)
        columns = (Job.id, Job.created_at, Job.jdl_registered if with_jdl else null())
        mine = [*where, Job.owner_dn == owner_dn]
        cutoff = None
        if first is not None:
            cutoff = self.session.scalar(select(Job.created_at).where(*mine).order_by(Job.created_at.desc())
                                         .offset(first - 1).limit(1))
        owned_stmt = select(*columns).where(*mine)
        if cutoff is not None:
            owned_stmt = owned_stmt.where(Job.created_at >= cutoff)
        owned = [ListingCandidate(*row) for row in self.session.execute(owned_stmt)]
        total = len(owned)
        if cutoff is not None:
            total = int(self.session.scalar(select(func.count()).select_from(Job).where(*mine)) or 0)
        shared = self.session.execute(
            select(*columns, JobAclEntry.item).join(JobAclEntry, JobAclEntry.job_id == Job.id)
            .where(*where, ACL_TRIMMED_ITEM.in_(sorted(acl_keys)), Job.owner_dn != owner_dn))
        return ListingCandidates(owned, [(ListingCandidate(*row[:3]), row[3]) for row in shared], total)

    def by_ids(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs ``job_ids`` (those that exist) by id, full rows, :data:`_ID_BATCH` ids per query."""
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), _ID_BATCH):
            found.update((job.id, job) for job in self.session.scalars(
                select(Job).where(Job.id.in_(job_ids[start:start + _ID_BATCH]))))
        return found

    def state_times(self, job_ids: Sequence[str]) -> dict[str, dict[str, dt.datetime]]:
        """Of each job of ``job_ids``: when it entered each state, the last time (its state
        changes as :meth:`events` reads them, later ones winning), :data:`_ID_BATCH` ids per query."""
        times: dict[str, dict[str, dt.datetime]] = {job_id: {} for job_id in job_ids}
        for start in range(0, len(job_ids), _ID_BATCH):
            for job_id, state, at in self.session.execute(
                    select(JobEvent.job_id, JobEvent.state, JobEvent.at)
                    .where(JobEvent.job_id.in_(job_ids[start:start + _ID_BATCH]), JobEvent.kind.in_(STATE_KINDS))
                    .order_by(JobEvent.id)):
                times[job_id][state] = at
        return times

    def node_states(self, parent_ids: Sequence[str]) -> dict[str, list[str]]:
        """Of each compound job of ``parent_ids``: its nodes' states in :meth:`children`'s order
        (by node name), the nodes not loaded, :data:`_ID_BATCH` ids per query."""
        states: dict[str, list[str]] = {parent_id: [] for parent_id in parent_ids}
        for start in range(0, len(parent_ids), _ID_BATCH):
            for parent_id, state in self.session.execute(
                    select(Job.parent_id, Job.state).where(Job.parent_id.in_(parent_ids[start:start + _ID_BATCH]))
                    .order_by(Job.parent_id, Job.node_name)):
                states[cast(str, parent_id)].append(state)
        return states

    def delete(self, job: Job) -> None:
        self.session.delete(job)
        self.session.flush()


#: PostgreSQL channel notified in the transaction that queues a request (workers LISTEN on it).
QUEUE_CHANNEL = "wmproxy_execution_queue"
_NOTIFIED = "wmproxy.queue_notified"
#: PostgreSQL: an execution request's INSERT that also notifies :data:`QUEUE_CHANNEL`.
_INSERT_REQUEST = insert(_REQUESTS)
_INSERT_NOTIFYING = _INSERT_REQUEST.returning(func.pg_notify(QUEUE_CHANNEL, ""))


#: Ids per statement where a list of jobs may be long (a DAG's nodes): far below SQLite's
#: bound parameter limit.
_ID_BATCH = 500
#: The dependents of the nodes ``ids``, with their state (:meth:`SqlJobStore.descendants`).
_DEPENDENTS_OF = select(JobDependency.job_id, JobDependency.depends_on, _JOBS.c.state).join(
    _JOBS, _JOBS.c.id == JobDependency.job_id).where(JobDependency.depends_on.in_(_IDS))

_PENDING_COMMANDS = select(ExecutionRequest).where(
    ExecutionRequest.job_id.in_(_IDS),
    ExecutionRequest.command == bindparam("command", type_=_REQUESTS.c.command.type),
    not_by_index(ExecutionRequest.done_at).is_(None),  # by job_id's index, not every pending request
)


#: :meth:`SqlExecutionQueue.pending_for`: the pending requests of one job.
_PENDING_FOR = select(ExecutionRequest).where(
    ExecutionRequest.job_id == bindparam("job_id", type_=_REQUESTS.c.job_id.type),
    not_by_index(ExecutionRequest.done_at).is_(None),
)


#: :meth:`SqlExecutionQueue.pending_jobs`: the jobs with a pending request, oldest request first.
_PENDING_JOBS = select(_REQUESTS.c.job_id).where(
    _REQUESTS.c.job_id.in_(_IDS),
    _REQUESTS.c.command == bindparam("command", type_=_REQUESTS.c.command.type),
    not_by_index(_REQUESTS.c.done_at).is_(None),  # by job_id's index, not every pending request
).order_by(_REQUESTS.c.id)


def _claimable_rows(*, skip_locked: bool, skip_owners: bool = False) -> Select[Any]:
    """The oldest ``limit`` unclaimed ``command`` requests due at ``now`` (parameters), as
    :class:`ClaimedRequest` columns, built once; PostgreSQL's ``FOR UPDATE SKIP LOCKED`` with
    ``skip_locked``; with ``skip_owners`` none of a job whose owner is in ``owners`` (an
    expanding parameter: each request passed over costs one look-up of its job by id)."""
    r = _REQUESTS.c
    stmt = (
        select(r.id, r.job_id, r.created_at, r.not_before)
        .where(r.done_at.is_(None), r.claimed_by.is_(None), r.command == bindparam("command", type_=r.command.type),
               or_(r.not_before.is_(None), r.not_before <= bindparam("now", type_=r.not_before.type)))
        .order_by(r.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if skip_owners:
        stmt = stmt.where(~exists().where(_JOBS.c.id == r.job_id,
                                          _JOBS.c.owner_dn.in_(bindparam("owners", expanding=True))))
    return stmt.with_for_update(skip_locked=True) if skip_locked else stmt


_CLAIMABLE_ROWS = _claimable_rows(skip_locked=False)
_CLAIMABLE_ROWS_LOCKED = _claimable_rows(skip_locked=True)
#: The same, passing over the requests of some owners' jobs (:meth:`SqlExecutionQueue.claim_rows`'s ``skip_owners``).
_CLAIMABLE_ROWS_SKIPPING = _claimable_rows(skip_locked=False, skip_owners=True)
_CLAIMABLE_ROWS_LOCKED_SKIPPING = _claimable_rows(skip_locked=True, skip_owners=True)
#: The compare-and-set UPDATE of a claim (parameters ``ids``, ``worker``, ``now``); returns the ids won.
_CLAIM_ROWS = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id.in_(bindparam("ids", expanding=True)), _REQUESTS.c.claimed_by.is_(None))
    .values(claimed_by=bindparam("worker"), claimed_at=bindparam("now", type_=_REQUESTS.c.claimed_at.type))
    .returning(_REQUESTS.c.id)
)
#: A claimed request settled (:meth:`SqlExecutionQueue.settle`, executemany parameters ``b_<column>``).
_SETTLE = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id == bindparam("b_id"))
    .values(done_at=bindparam("b_done_at", type_=_REQUESTS.c.done_at.type),
            claimed_by=bindparam("b_claimed_by"),
            claimed_at=bindparam("b_claimed_at", type_=_REQUESTS.c.claimed_at.type),
            not_before=bindparam("b_not_before", type_=_REQUESTS.c.not_before.type))
)


class ClaimedRequest(NamedTuple):
    """A start (or other) request claimed by :meth:`SqlExecutionQueue.claim_rows`, as read
    before the claim: ``not_before`` is its due time (None: at once)."""

    id: int
    job_id: str
    created_at: dt.datetime
    not_before: dt.datetime | None


class RequestChange(NamedTuple):
    """What :meth:`SqlExecutionQueue.settle` writes to a claimed request: every column the ORM
    path may change (``complete``: ``done_at``; ``postpone``/``release``: unclaimed, due at
    ``not_before``)."""

    id: int
    done_at: dt.datetime | None
    claimed_by: str | None
    claimed_at: dt.datetime | None
    not_before: dt.datetime | None

    @classmethod
    def completed(cls, request: ClaimedRequest, worker: str, now: dt.datetime) -> RequestChange:
        """:meth:`SqlExecutionQueue.complete` of a request ``worker`` claimed at ``now``."""
        return cls(request.id, now, worker, now, request.not_before)

    @classmethod
    def postponed(cls, request: ClaimedRequest, not_before: dt.datetime | None) -> RequestChange:
        """:meth:`SqlExecutionQueue.postpone` to ``not_before`` (:meth:`SqlExecutionQueue.release`:
        the request's own ``not_before``)."""
        return cls(request.id, None, None, None, not_before)


class SqlExecutionQueue:
    """The execution requests table used as a work queue by the workers."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def enqueue(self, job_id: str, command: str, now: dt.datetime, *, not_before: dt.datetime | None = None) -> None:
        """Queue ``command`` for the job, claimable from ``not_before`` (default: at once).

        On PostgreSQL the transaction also notifies :data:`QUEUE_CHANNEL` (once per
        transaction; delivered at commit, dropped on rollback), so a listening worker
        starts the job without waiting for its next poll.
        """
        self.session.add(ExecutionRequest(job_id=job_id, command=command, created_at=now, not_before=not_before))
        if not_before is None:
            self._notify()

    def insert(self, job_id: str, command: str, now: dt.datetime) -> None:
        """:meth:`enqueue` for a job due at once, as one Core INSERT sent now (the request
        object is not kept in the session; the job's row must be in the database or pending
        in the session, which is flushed first)."""
        self.session.flush()
        values = {"job_id": job_id, "command": command, "created_at": now, "not_before": None}
        conn = self.session.connection()
        if not self.session.info.get(_NOTIFIED) and conn.dialect.name == "postgresql":
            # the transaction's one notification in the INSERT's own round trip (RETURNING)
            conn.execute(_INSERT_NOTIFYING, values)
            self.session.info[_NOTIFIED] = True
        else:
            conn.execute(_INSERT_REQUEST, values)

    def _notify(self) -> None:
        """PostgreSQL: notify :data:`QUEUE_CHANNEL` once per transaction (delivered at commit)."""
        if not self.session.info.get(_NOTIFIED) and self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": QUEUE_CHANNEL})
            self.session.info[_NOTIFIED] = True

    def claim_next(self, worker: str, now: dt.datetime, *, command: str) -> ExecutionRequest | None:
        """Claim the oldest unclaimed ``command`` request due at ``now`` (``not_before``
        unset or passed) for ``worker``; None when there is none (:meth:`claim_many` of one)."""
        claimed = self.claim_many(worker, now, command=command, limit=1)
        return claimed[0] if claimed else None

    def claim_many(self, worker: str, now: dt.datetime, *, command: str, limit: int) -> list[ExecutionRequest]:
        """:meth:`claim_rows` (the same two statements, the same requests claimed, oldest
        first; empty when there is none), the claimed requests read back as ORM objects for
        callers that settle them with :meth:`complete`, :meth:`postpone` or :meth:`release`
        in the same transaction. Pending ORM changes are flushed first."""
        self.session.flush()  # claim_rows' Core statements do not autoflush
        rows = self.claim_rows(worker, now, command=command, limit=limit)
        if not rows:
            return []
        loaded = {request.id: request for request in self.session.scalars(  # fresh even if loaded before
            select(ExecutionRequest).where(ExecutionRequest.id.in_([row.id for row in rows]))
            .execution_options(populate_existing=True))}
        return [loaded[row.id] for row in rows]

    def claim_rows(self, worker: str, now: dt.datetime, *, command: str, limit: int,
                   skip_owners: Collection[str] = ()) -> list[ClaimedRequest]:
        """Claim up to ``limit`` (>= 1) of the oldest unclaimed ``command`` requests due at
        ``now`` (``not_before`` unset or passed) for ``worker``, oldest first, in two Core
        statements built once, whatever their number: one SELECT, one UPDATE. Empty when
        there is none. The requests of jobs whose owner (DN) is in ``skip_owners`` are passed
        over, left as they are.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent workers never block
        on or take the same row. SQLite: the transaction began with ``BEGIN IMMEDIATE``
        (see ``engine.py``), which serialises writers, and the conditional UPDATE is a
        compare-and-set that only one worker can win (``RETURNING`` names the rows won).

        The claimed requests are settled with :meth:`settle` (each one: completed, postponed
        or released) in the same transaction."""
        conn = self.session.connection()
        locked = conn.dialect.name == "postgresql"
        parameters: dict[str, Any] = {"command": command, "now": now, "limit": limit}
        if skip_owners:
            stmt = _CLAIMABLE_ROWS_LOCKED_SKIPPING if locked else _CLAIMABLE_ROWS_SKIPPING
            parameters["owners"] = list(skip_owners)
        else:
            stmt = _CLAIMABLE_ROWS_LOCKED if locked else _CLAIMABLE_ROWS
        rows = [ClaimedRequest(*row) for row in conn.execute(stmt, parameters)]
        if not rows:
            return []
        won = set(conn.scalars(_CLAIM_ROWS, {"ids": [row.id for row in rows], "worker": worker, "now": now}))
        return [row for row in rows if row.id in won]

    def settle(self, changes: Sequence[RequestChange]) -> None:
        """Write the claimed requests' changes (:class:`RequestChange`) as one UPDATE sent as an
        executemany, whatever their number. Pending ORM changes are flushed first."""
        if not changes:
            return
        self.session.flush()  # Core statements do not autoflush
        self.session.connection().execute(_SETTLE, [
            {"b_id": c.id, "b_done_at": c.done_at, "b_claimed_by": c.claimed_by, "b_claimed_at": c.claimed_at,
             "b_not_before": c.not_before} for c in changes])

    def release(self, requests: Sequence[ExecutionRequest]) -> None:
        """Give requests this transaction claimed (:meth:`claim_many`) and did not act on back
        unchanged: unclaimed, due as before."""
        for request in requests:
            request.claimed_by = None
            request.claimed_at = None

    def complete(self, request: ExecutionRequest, now: dt.datetime) -> None:
        request.done_at = now

    def postpone(self, request: ExecutionRequest, not_before: dt.datetime) -> None:
        """Give a claimed request back, claimable again from ``not_before`` (its
        ``created_at`` and place in the queue are kept)."""
        request.claimed_by = None
        request.claimed_at = None
        request.not_before = not_before

    def pending_commands(self, job_ids: Sequence[str], command: str) -> Sequence[ExecutionRequest]:
        """The pending (not done) ``command`` requests of ``job_ids`` (one SELECT built once:
        the worker asks each cycle)."""
        return self.session.scalars(_PENDING_COMMANDS, {"ids": list(job_ids), "command": command}).all()

    def pending_jobs(self, job_ids: Sequence[str], command: str) -> list[str]:
        """The ids of the jobs among ``job_ids`` with a pending ``command`` request, by their
        oldest one, each once; the requests are left pending. One Core SELECT built once, no
        ORM object (the worker asks every few cycles)."""
        self.session.flush()  # Core statements do not autoflush
        rows = self.session.connection().execute(_PENDING_JOBS, {"ids": list(job_ids), "command": command})
        return list(dict.fromkeys(rows.scalars()))

    def pending_for(self, job_id: str) -> Sequence[ExecutionRequest]:
        return self.session.scalars(_PENDING_FOR, {"job_id": job_id}).all()
