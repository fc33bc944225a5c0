"""Tables of the wmproxy database (the Alembic migrations in ``migrations/`` create them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class not_by_index(FunctionElement[Any]):  # noqa: N801 (an SQL construct, named as SQLAlchemy's are)
    """``not_by_index(column)``: the column, which SQLite's planner must not pick an index by
    (``+column`` there, the column itself elsewhere; SQLite's documented way, "Disqualifying
    WHERE clause terms using unary +").

    For a condition whose column leads a less selective index: without statistics SQLite
    takes any equality on an index's first column for a few rows, so ``job_id IN (...) AND
    done_at IS NULL`` walked ``ix_execution_requests_pending``, every pending request of
    the queue (0.3 ms a call with 3,000 queued, each worker cycle), instead of the few rows
    of ``ix_execution_requests_job_id``.
    """

    name = "not_by_index"
    inherit_cache = True


@compiles(not_by_index)
def _column_itself(element: not_by_index, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(not_by_index, "sqlite")
def _column_not_by_index(element: not_by_index, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


class DelegationRequest(Base):
    """A pending delegation: the server key waiting for its signed proxy (getProxyReq → putProxy)."""

    __tablename__ = "delegation_requests"
    __table_args__ = (UniqueConstraint("owner_dn", "delegation_id", name="uq_delegation_requests_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_dn: Mapped[str] = mapped_column(String(512))
    delegation_id: Mapped[str] = mapped_column(String(255))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    csr_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Delegation(Base):
    """A delegated proxy (cert, key, chain; sealed), scoped by (owner DN, delegation id)."""

    __tablename__ = "delegations"
    __table_args__ = (UniqueConstraint("owner_dn", "delegation_id", name="uq_delegations_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_dn: Mapped[str] = mapped_column(String(512))
    delegation_id: Mapped[str] = mapped_column(String(255))
    sealed_proxy: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    fqans: Mapped[str] = mapped_column(Text, default="")  # newline separated, primary first
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Job(Base):
    """One job (or node) with its JDLs and current state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the job id URL
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    node_name: Mapped[str | None] = mapped_column(String(255))
    owner_dn: Mapped[str] = mapped_column(String(512), index=True)
    delegation_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    jdl_original: Mapped[str] = mapped_column(Text)
    jdl_registered: Mapped[str] = mapped_column(Text)
    sandbox_dir: Mapped[str] = mapped_column(String(512), index=True)  # relative to the sandbox root
    backend_ref: Mapped[str | None] = mapped_column(String(255))  # e.g. "local:<host>:<wrapper pid>:<work dir>"
    worker: Mapped[str | None] = mapped_column(String(255))  # execution worker holding the job
    perusal_files: Mapped[str | None] = mapped_column(Text)  # enableFilePerusal list, newline separated
    local_account: Mapped[str | None] = mapped_column(String(64))  # mapped Unix account
    destination: Mapped[str | None] = mapped_column(String(255))  # GlueCEUniqueID of the CE last matched
    shallow_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # shallow resubmissions
    deep_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # deep resubmissions
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def attempt(self) -> int:
        """The number of the job's current attempt: 0 for its first run, n after n
        resubmissions, shallow or deep (derived, not a column)."""
        return self.shallow_retries + self.deep_retries


def _partial_index(name: str, *columns: Any) -> Index:
    """An index of the rows whose first column is not NULL, on SQLite and PostgreSQL alike.

    A job is inserted with no parent (unless it is a node), no worker and, without a mapping,
    no local account: those rows stay out of these b-trees, and a submission writes four of
    the table's b-trees instead of eight (migration 0012, issue 14). A query with ``column =
    value`` (or ``IN``) implies ``column IS NOT NULL``, so both databases use the index for
    it; nothing looks jobs up by ``IS NULL`` of these columns through an index.
    """
    where = columns[0].is_not(None)
    return Index(name, *columns, sqlite_where=where, postgresql_where=where)


#: A compound job's state is decided by "is a node in one of these states" (issue 14: no
#: load of every node at each node change). It also serves ``parent_id = ?`` alone (a
#: compound job's nodes): a separate index on ``parent_id`` would be its prefix.
_partial_index("ix_jobs_parent_state", Job.parent_id, Job.state)
#: The jobs a worker holds (adoption, a restarted worker's jobs).
_partial_index("ix_jobs_worker", Job.worker)
#: Whether an account has live jobs (the pool's idle leases).
_partial_index("ix_jobs_local_account", Job.local_account)

class JobEvent(Base):
    """State history of a job, oldest first (what L&B events were to the reference)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # What happened (``wmproxy.store.jobs.EVENT_KINDS``; rows older than 0008 are "state") and
    # who reported it (``EVENT_SOURCES``): service, worker, wrapper, renewal or user.
    kind: Mapped[str] = mapped_column(String(32), default="state", server_default="state")
    source: Mapped[str] = mapped_column(String(16), default="service", server_default="service")


class ExecutionRequest(Base):
    """The execution queue: a worker claims a row, acts on it and marks it done.

    ``command`` is ``start`` or ``cancel``. Written in the same transaction as the job's
    state change, so a started job is never lost and never queued twice. A start request
    nothing matched waits until ``not_before`` (the broker's match retry period); its
    ``created_at`` is when the job's current matching began (its expiry counts from it).
    """

    __tablename__ = "execution_requests"
    __table_args__ = (Index("ix_execution_requests_pending", "done_at", "claimed_by", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    command: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # not claimable before (UTC)


class CeState(Base):
    """The dynamic state of one CE of the catalogue (Glue attributes such as
    ``GlueCEStateFreeCPUs``, refreshed e.g. from Slurm), laid over its catalogue ad while
    fresher than ``[brokering] ce_state_max_age``.
    """

    __tablename__ = "ce_states"

    ce_id: Mapped[str] = mapped_column(String(255), primary_key=True)  # GlueCEUniqueID
    attributes: Mapped[str] = mapped_column(Text)  # JSON object: Glue attribute name -> int, float or string
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class JobAclEntry(Base):
    """One per-job ACL item (``wmproxy-behaviour.md`` §6.4): a DN or an FQAN with read access.

    The owner is implicit (``jobs.owner_dn``) and cannot be removed.
    """

    __tablename__ = "job_acl"
    __table_args__ = (UniqueConstraint("job_id", "item", name="uq_job_acl_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(String(512))  # config.ACL_ITEM_COLUMN_LENGTH


#: An ACL item without its trailing ``/``, as listJobs looks items up (an FQAN item ``/atlas``,
#: ``/atlas/`` and a caller's FQAN ``/atlas/uk`` all meet at ``/atlas``); written with a literal
#: ``'/'``, not a bound value, so that both databases see the expression of the index below.
ACL_TRIMMED_ITEM = func.rtrim(JobAclEntry.item, literal_column("'/'"))
#: The items that may grant a caller read access, found without reading the others (migration 0015).
Index("ix_job_acl_trimmed_item", ACL_TRIMMED_ITEM)


class JobDependency(Base):
    """DAG edge: ``job_id`` may run only after ``depends_on`` ended Done with exit code 0."""

    __tablename__ = "job_dependencies"
    __table_args__ = (UniqueConstraint("job_id", "depends_on", name="uq_job_dependency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    depends_on: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)


class ProxyRenewal(Base):
    """Renewal from MyProxy of one delegated proxy (owner DN, delegation id), shared by all
    the jobs that use it (``wmproxy.services.renewal``).

    ``claimed_by``/``claimed_until`` is the lease of the renewal worker holding the record
    during a MyProxy exchange; ``next_attempt_at`` keeps the workers to one attempt per cycle.
    The ``last_*`` columns and the counters are what operators and users see of the renewal.
    """

    __tablename__ = "proxy_renewals"
    __table_args__ = (UniqueConstraint("owner_dn", "delegation_id", name="uq_proxy_renewals_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_dn: Mapped[str] = mapped_column(String(512))
    delegation_id: Mapped[str] = mapped_column(String(255))
    myproxy_server: Mapped[str] = mapped_column(String(255))  # host:port
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # MyProxy exchanges tried (and refused not-allowed)
    renewals: Mapped[int] = mapped_column(Integer, default=0)  # of which gave a proxy
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # renewed, not-extended, unreachable, refused, failed, not-allowed
    last_result: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_renewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    notes: Mapped[str | None] = mapped_column(Text)  # e.g. expired VOMS attributes of the renewed proxy


class PoolLease(Base):
    """A pool account leased to one identity, the database form of a gridmapdir hard link.

    The identity is (pool, owner DN, group): ``group`` is the VOMS rule pattern the
    identity was mapped by, ``""`` for a grid-mapfile (DN) mapping. Both the account and
    the identity are unique, so one account never serves two identities and one identity
    holds at most one account of a pool, whichever worker or service node asks.
    """

    __tablename__ = "pool_leases"
    __table_args__ = (
        UniqueConstraint("account", name="uq_pool_leases_account"),
        UniqueConstraint("pool", "owner_dn", "group_name", name="uq_pool_leases_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str] = mapped_column(String(64))
    owner_dn: Mapped[str] = mapped_column(String(512))
    group_name: Mapped[str] = mapped_column(String(255))
    leased_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class ExecutionWorkerRow(Base):
    """A live (or dead) execution worker: its heartbeat tells the others whether its jobs
    need adopting (``wmproxy.services.execution.adopt_jobs``).

    ``name`` is stable across restarts (``wmproxy-worker --name``), so a restarted worker
    finds its previous life's jobs (``jobs.worker``); ``host``/``pid`` say where it runs.
    """

    __tablename__ = "execution_workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class ServiceMeta(Base):
    """Facts about the deployment every node must agree on, by name: ``store_key_fingerprint``
    (SHA-256 of the store key, hex; never the key) is written by ``wmproxy-admin init``,
    ``migrate`` and ``rotate-store-key``; ``removed_renewals``, ``removed_renewal_attempts`` and
    ``expired_tombstones`` (decimal integers) are the running totals of the rows the renewal
    worker and the purger deleted, for the metrics (``wmproxy.store.housekeeping``).
    """

    __tablename__ = "service_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PurgedJob(Base):
    """Tombstone of a job the purger removed (``wmproxy.services.purge``): who owned it, the
    state it was in and why it went. The job answers JobUnknownFault "... or it has been purged".
    """

    __tablename__ = "purged_jobs"

    job_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner_dn: Mapped[str] = mapped_column(String(512), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    purged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
