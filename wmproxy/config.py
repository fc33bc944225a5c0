"""Settings: one frozen object per area, read once per process.

Sources, later wins: built-in defaults, an INI file (``WMPROXY_CONFIG`` or the
``config_file`` argument; sections ``[database]``, ``[security]``, ``[service]``,
``[sandbox]``, ``[execution]``, ``[jobs]``, ``[renewal]``, ``[mapping]``, ``[limits]``,
``[load]``, ``[brokering]``, ``[slurm]``), then environment variables ``WMPROXY_<AREA>_<KEY>``
(e.g. ``WMPROXY_DATABASE_URL``). Every entrypoint builds settings once with
:func:`load_settings` and passes them down; nothing below an edge reads ``os.environ``.

Strict: an unknown section, key or ``WMPROXY_<SECTION>_<KEY>`` variable is an error naming
it, values are converted and range-checked at start (each dataclass's ``__post_init__``),
and the file is read literally (no ``%`` interpolation). A new area is a frozen dataclass
with an ``Attributes:`` docstring plus a field of :class:`Settings`; loading, checking and
the reference (``docs/configuration.md``, :mod:`wmproxy.config_reference`) follow from it.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import ipaddress
import math
import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is missing or cannot be converted."""


#: ``[security] namespace_mode`` values (:mod:`wmproxy.security.ca_policy`, CANL's namespace
#: checking modes of the same names).
NAMESPACE_MODES = ("eugridpma_globus", "eugridpma_globus_require", "eugridpma_and_globus",
                   "eugridpma_and_globus_require", "ignore")


#: The longest duration a setting may give, in seconds (100 years): ages, periods and timeouts
#: are added to or taken from the current time, and a datetime ends at the year 9999 (an age of
#: 10^11 s made every purge pass fail with OverflowError).
MAX_DURATION = 100 * 365 * 86400
#: The largest count a setting may give that is sent to the database as a row count (a
#: ``LIMIT``): PostgreSQL's ``integer``.
MAX_ROW_COUNT = 2**31 - 1
#: The largest integer any setting may give: SQLite's ``INTEGER`` and PostgreSQL's ``bigint``
#: (a larger one cannot be sent to the database at all).
MAX_SETTING_INT = 2**63 - 1

#: The settings that are durations (seconds), per section: each is at most :data:`MAX_DURATION`.
DURATIONS: dict[str, tuple[str, ...]] = {
    "database": ("ping_after_idle",),
    "security": ("min_proxy_lifetime",),
    "execution": ("poll_interval", "heartbeat_lease", "kill_grace"),
    "jobs": ("min_perusal_interval",),
    "renewal": ("cycle", "threshold", "lifetime", "timeout", "voms_lifetime"),
    "mapping": ("lease_idle_time",),
    "load": ("sample_interval", "handshake_timeout", "io_timeout"),
    "brokering": ("match_retry_period", "expiry_period", "ce_state_max_age", "cycle_match_cpu", "owner_match_cpu"),
    "slurm": ("refresh_interval", "max_pending", "default_wall_time", "submit_settle"),
    "purge": ("interval", "final_age", "forced_age", "registered_age", "request_age", "delegation_grace",
              "tombstone_age", "pass_time"),
    "inspection": ("time_limit", "pickup_timeout", "agent_delay", "retention"),
    "metrics": ("crl_grace", "sandbox_scan_interval", "timeout"),
}


def _check_durations(section: str, area: object) -> None:
    """Refuse a duration of ``area`` (``[section]``, :data:`DURATIONS`) over :data:`MAX_DURATION`.

    Raises:
        ConfigError: naming the key, its value and the bound.
    """
    for name in DURATIONS[section]:
        value = getattr(area, name)
        if value > MAX_DURATION:
            raise ConfigError(f"[{section}] {name} = {value:g}: at most {MAX_DURATION} seconds (100 years)")


@dataclass(frozen=True)
class DatabaseSettings:
    """The job store (``[database]`` section).

    Attributes:
        url: SQLAlchemy URL: an SQLite file (``sqlite:////var/lib/wmproxy/wmproxy.db``, one
            node only) or PostgreSQL in production (``postgresql+psycopg://user:pass@host/db``;
            ``postgresql://`` and ``postgres://`` are taken as ``postgresql+psycopg://``, the
            driver installed; another scheme is refused at start;
            ``%`` is taken literally, so a password may be percent-encoded, e.g. ``%40``). A
            file holding a password (in the user part, or a ``password`` or ``sslpassword``
            query parameter, which libpq uses too) must not be readable by others (0640 at
            most: every process refuses it); messages show the URL with them as ``***``.
            The default, ``sqlite:///wmproxy.db``, is relative to the working directory:
            set it in every deployment.
        ping_after_idle: seconds a pooled PostgreSQL connection may stay unused before its
            next use is preceded by a ``SELECT 1`` (a connection the server or a firewall
            closed meanwhile is then replaced instead of failing the request); connections
            used more recently are handed out without the round trip. 0 = ping on every use.
    """

    url: str = "sqlite:///wmproxy.db"
    ping_after_idle: float = 5.0

    def __post_init__(self) -> None:
        _check_durations("database", self)
        object.__setattr__(self, "url", database_url(self.url))
        if not 0 <= self.ping_after_idle < float("inf"):
            raise ConfigError("[database] ping_after_idle: seconds, 0 or more")


#: ``[database] url`` schemes wmproxy runs with (the drivers it installs: sqlite3, psycopg 3).
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
#: Schemes taken as PostgreSQL through psycopg 3, the driver wmproxy installs (SQLAlchemy's own
#: default for them, psycopg2, is not installed; Heroku-style URLs say ``postgres``).
POSTGRESQL_ALIASES = ("postgresql", "postgres")


def database_url(url: str) -> str:
    """``url`` with ``postgresql://`` and ``postgres://`` turned into ``postgresql+psycopg://``
    (only the scheme is rewritten); every other accepted URL unchanged.

    Raises:
        ConfigError: a scheme of another database or driver (``mysql://``, ``postgresql+psycopg2://``)
            or no ``scheme://`` at all; the message names the scheme, never the rest of the URL
            (it may hold a password).
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in POSTGRESQL_ALIASES:
        return f"postgresql+psycopg://{rest}"
    if sep and scheme.lower() in DATABASE_SCHEMES:
        return url
    given = f"the scheme {scheme!r}" if sep and "@" not in scheme else "a value that is not a URL"
    raise ConfigError(f"[database] url: {given} is not supported: use sqlite:////path/to/wmproxy.db or "
                      "postgresql+psycopg://user:password@host/database (postgresql:// and postgres:// are taken "
                      "as postgresql+psycopg://)")

#: Query parameters of a ``[database] url`` that hold a secret: libpq takes ``password`` as the
#: password (beside the one of the user part) and ``sslpassword`` as the client key's passphrase.
#: (``passfile`` only names a file, which libpq ignores when group or others may read it.)
SECRET_URL_PARAMETERS = ("password", "sslpassword")


def _secret_parameters(url: str) -> tuple[Any, list[str]]:
    """SQLAlchemy's parse of ``url`` (what the engine connects with; imported here, only the
    server stack reads ``[database]``) and the names of its :data:`SECRET_URL_PARAMETERS`
    query parameters; ``(None, [])`` for a value it cannot parse."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None, []
    return parsed, [name for name in parsed.query if name.lower() in SECRET_URL_PARAMETERS]


def database_url_secret(url: str) -> bool:
    """Whether ``url`` holds a secret: a password in its user part or a :data:`SECRET_URL_PARAMETERS`
    query parameter (``postgresql+psycopg://wmproxy@host/db?password=...``: libpq uses it)."""
    parsed, secret = _secret_parameters(url)
    try:
        password = urlsplit(url).password  # also where SQLAlchemy cuts the user part elsewhere
    except ValueError:
        password = None
    return bool(secret) or bool(password) or bool(parsed is not None and parsed.password)


def shown_database_url(url: str) -> str:
    """``url`` as a message or a command may show it: the password of the user part and the
    values of the :data:`SECRET_URL_PARAMETERS` query parameters replaced by ``***``; only the
    scheme of a value SQLAlchemy cannot parse. Every place that prints a database URL uses it."""
    parsed, secret = _secret_parameters(url)
    if parsed is None:
        return f"{url.partition('://')[0]}://***"
    shown = str(parsed.difference_update_query(secret).render_as_string(hide_password=True))
    if secret:
        shown += ("&" if parsed.query.keys() - set(secret) else "?") + "&".join(f"{name}=***" for name in secret)
    return shown


#: Bounds of ``[security] delegation_key_bits``. The minimum is the CLI's
#: (``wmproxy.security.proxy.MIN_REQUEST_RSA_BITS``, which refuses to sign a request for a
#: smaller RSA key): a site configuring less would make every CLI delegation fail.
MIN_DELEGATION_KEY_BITS = 2048
MAX_DELEGATION_KEY_BITS = 16384


@dataclass(frozen=True)
class SecuritySettings:
    """X.509 material of the service.

    Attributes:
        ca_dir: grid CA directory (``<hash>.0`` certificates, ``<hash>.r0`` CRLs, and the CA
            namespace policies ``<hash>.namespaces`` and ``<hash>.signing_policy``, found under
            the new- and the old-style subject hash and enforced as ``namespace_mode`` says). A
            file added, removed or renamed in (as fetch-crl writes) is seen by the next
            verification; one rewritten in place by the next verification through its CA, by
            others within 1 s.
        vomsdir: VOMS trust anchors (``<vo>/<host>.lsc``) used to verify VOMS ACs.
        host_cert, host_key: PEM files of the service's host credential.
        authorized_users: who may use the service: comma-separated DN globs, FQAN
            globs (first FQAN) or ``*`` for every authenticated caller
            (``wmproxy.services.authz``).
        policy_file: the service policy, ``allow``/``deny`` lines of DN or FQAN globs
            (``docs/load.md``, ``wmproxy.services.authz``), read again whenever its
            modification time changes; a caller must pass both it and
            ``authorized_users``; "" = no policy file. Missing or unreadable: everyone
            is refused (the reference's "gacl file not found").
        store_key_file: file holding the store key (32 random bytes, URL-safe base64) that seals stored proxies
            (created with mode 0600 by ``wmproxy-admin init`` if missing).
        min_proxy_lifetime: seconds a delegated proxy must still be valid to register a job
            (0 or more).
        delegation_key_bits: RSA key size of the server-side delegation key, 2048-16384 bits
            (2048 is the reference's size; NIST SP 800-131A disallows 1024-bit RSA, the
            ``wmproxy`` CLI refuses to sign a request for a key under 2048 bits, and OpenSSL 3
            at its default security level refuses a certificate with one; OpenSSL uses no key
            over 16384). A proxy renewed from MyProxy gets this size, or its stored proxy's
            if larger (so a 1024-bit proxy stored before the minimum was raised is renewed
            into a key of this size).
        delegation_key_pool: server keys (with their CSRs) kept ready, sealed, in the
            database and topped up in the background, so getProxyReq does not generate
            an RSA key while the client waits; 0 = generate each key on the request path.
        namespace_mode: how the namespace policies of ``ca_dir`` (``<hash>.namespaces``,
            EUGridPMA/IGTF; ``<hash>.signing_policy``, Globus) confine what each CA may certify
            (``docs/operations.md``, "CA namespace policies"): ``eugridpma_globus`` (CANL's
            default: the namespaces file if it names the issuing CA, else its signing policy;
            a CA with neither is not restricted), ``eugridpma_globus_require`` (the same; a CA
            with neither is refused), ``eugridpma_and_globus`` (both files enforced where they
            name the CA), ``eugridpma_and_globus_require``, or ``ignore`` (no check: any trusted
            CA may issue any DN, as before this check; not advised).

    Raises:
        ConfigError: a negative ``min_proxy_lifetime`` or ``delegation_key_pool``, a key size
            outside 2048-16384 bits, an unknown ``namespace_mode``.
    """

    ca_dir: str = "/etc/grid-security/certificates"
    vomsdir: str = "/etc/grid-security/vomsdir"
    host_cert: str = "/etc/grid-security/hostcert.pem"
    host_key: str = "/etc/grid-security/hostkey.pem"
    store_key_file: str = "/var/lib/wmproxy/store.key"
    authorized_users: str = "*"
    policy_file: str = ""
    min_proxy_lifetime: int = 20 * 60
    delegation_key_bits: int = 2048
    delegation_key_pool: int = 16
    namespace_mode: str = "eugridpma_globus"

    def __post_init__(self) -> None:
        _check_durations("security", self)
        if not MIN_DELEGATION_KEY_BITS <= self.delegation_key_bits <= MAX_DELEGATION_KEY_BITS:
            raise ConfigError(
                f"[security] delegation_key_bits: {self.delegation_key_bits} is outside"
                f" {MIN_DELEGATION_KEY_BITS}-{MAX_DELEGATION_KEY_BITS} bits (RSA keys under"
                f" {MIN_DELEGATION_KEY_BITS} bits are refused by the wmproxy CLI and by OpenSSL 3)")
        if self.namespace_mode not in NAMESPACE_MODES:
            raise ConfigError(f"[security] namespace_mode: one of {', '.join(NAMESPACE_MODES)}")
        for name in ("min_proxy_lifetime", "delegation_key_pool"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[security] {name}: must not be negative")


@dataclass(frozen=True)
class ServiceSettings:
    """The SOAP service and what it tells clients about itself (``[service]`` section).

    Attributes:
        host: host name used in job ids and sandbox URIs (default: this machine's FQDN).
        port: HTTPS port of the service, used in sandbox URIs (1-65535).
        bind: gunicorn listen address, ``host:port`` (``[address]:port`` for IPv6).
        workers: gunicorn worker processes.
        threads: request threads per gunicorn worker process.
        jobid_port: port part of job ids (the L&B port in the reference, 9000).
        endpoint_path: URL path of the one SOAP endpoint.
        version: returned by getVersion; clients compare it with 2.2.0/2.9.0/3.0.0.
        max_input_sandbox_size: bytes, returned by getMaxInputSandboxSize and enforced on
            upload (0 or more).
        default_protocol: sandbox transfer protocol; only ``https`` is offered
            (``wmproxy.services.uris``).
        drain_file: while this file exists, new jobs are refused (empty = no drain switch).
        graceful_timeout: seconds a gunicorn worker has, when the service stops or restarts
            (SIGTERM), to finish the requests in flight before it is killed, 1-3600. Requests
            held open to wait (inspection long-polls) are answered at once when the stop begins.
            Keep ``TimeoutStopSec`` of ``wmproxy.service`` (90 s as shipped) above it.

    Raises:
        ConfigError: a port outside 1-65535, a ``bind`` that is not ``host:port``, fewer than
            one worker or thread, a negative ``max_input_sandbox_size``, a protocol other than
            https, a graceful timeout outside 1-3600 seconds.
    """

    host: str = field(default_factory=socket.getfqdn)
    port: int = 7443
    bind: str = "0.0.0.0:7443"
    workers: int = 2
    threads: int = 4
    jobid_port: int = 9000
    endpoint_path: str = "/glite_wms_wmproxy_server"
    version: str = "3.5.0"
    max_input_sandbox_size: int = 10_000_000
    default_protocol: str = "https"
    drain_file: str = ""
    graceful_timeout: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.graceful_timeout <= 3600:
            raise ConfigError("[service] graceful_timeout: 1-3600 seconds")
        for name in ("port", "jobid_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ConfigError(f"[service] {name}: a TCP port, 1-65535")
        if min(self.workers, self.threads) < 1:
            raise ConfigError("[service] workers and threads: must be at least 1")
        try:
            parse_bind(self.bind)
        except ValueError as exc:
            raise ConfigError(f"[service] bind: {exc}") from exc
        if self.max_input_sandbox_size < 0:
            raise ConfigError("[service] max_input_sandbox_size: must not be negative")
        if self.default_protocol != "https":
            raise ConfigError(f"[service] default_protocol: only https is offered, not {self.default_protocol!r}")

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}{self.endpoint_path}"


@dataclass(frozen=True)
class SandboxSettings:
    """Job sandboxes (``[sandbox]`` section).

    Attributes:
        root: document root of the sandbox area; job areas live under ``<root>/<dir_name>``.
            Several service nodes share it (one network file system).
        dir_name: directory below ``root`` holding the job areas (the reference's SandboxDir).
    """

    root: str = "/var/lib/wmproxy/sandbox"
    dir_name: str = "SandboxDir"


@dataclass(frozen=True)
class ExecutionSettings:
    """Execution worker settings (``[execution]`` section).

    Attributes:
        work_dir: the work root: one directory per job below it, for every backend (with
            the ``slurm`` backend it must be on the filesystem the Slurm nodes share, at the
            same path). Must be a real directory owned by the worker's user and not
            writable by group or others (``wmproxy.execution.identity.prepare_work_dir``);
            mapped accounts need search permission on it and its parents.
        poll_interval: seconds between queue polls while jobs run. An idle worker is woken
            by a queued job (PostgreSQL NOTIFY, or on an SQLite file an inotify watch of its
            directory) and polls every ``poll_interval`` as well; without either it polls
            five times as often.
        max_running: jobs one worker runs at once on the ``local`` backend (Slurm jobs
            count against ``[slurm] max_submitted`` instead).
        backend: the backends this worker runs, comma-separated: ``local`` (processes on
            this host) and ``slurm`` (the ``[slurm]`` cluster), both through the job wrapper;
            a job goes to the backend of the CE it was matched to.
        heartbeat_lease: seconds after its last heartbeat a worker counts as dead and
            its jobs are adopted by another worker (or by itself when restarted
            under the same name); it heartbeats every ``heartbeat_lease / 4``.
        kill_grace: seconds between the SIGTERM and the SIGKILL the job wrapper sends
            a cancelled job's processes.
        cgroup_root: a directory of a cgroup hierarchy below which the ``local`` backend
            puts each job in a cgroup of its own (in a directory of its work root's, so workers
            of several work roots may share it), so that every process of the job, even one
            that left its session (``setsid``) or was double-forked, is killed when the job
            ends, is cancelled or is released; empty = off (what is left of the wrapper's
            session is killed, a process that called ``setsid`` survives). cgroup v2 (a
            delegated subtree, e.g. the worker unit's own cgroup with systemd
            ``Delegate=yes``) or the cgroup v1 ``freezer`` hierarchy (a worker running as root
            only). The directory must be owned by the worker's user and not writable by group
            or others; the worker checks it at start (creating a probe cgroup, moving a child
            process into it, removing it) and refuses to start if it is unusable. Slurm jobs
            are left to Slurm's own process tracking (``ProctrackType``). See
            ``docs/execution.md``.
        max_job_processes: processes (threads count) a ``local`` job may have, so that a fork
            loop in one job cannot take the tasks the worker, the zygotes and other users' jobs
            need; 0 = no limit. Applied by the job wrapper as ``RLIMIT_NPROC`` before anything of
            the job runs: the kernel counts every process of the job's real uid on the host, so
            the limit is shared by all the jobs of one pool account on this host (and its
            zygote's and wrappers' processes). With ``cgroup_root`` on cgroup v2 (the ``pids``
            controller enabled for it) it is also each job's ``pids.max``. Keep the worker
            unit's ``TasksMax`` above ``max_running`` times this (``docs/execution.md``). Slurm
            jobs are left to Slurm.
        max_job_memory: bytes of memory a ``local`` job may use (its processes' resident memory
            and the page cache and kernel memory charged to them; its job wrapper, about 12 MB,
            counts), so that one job cannot make the kernel's OOM killer kill the service, the
            database or other users' jobs; 0 = no limit (the default: a limit needs job cgroups,
            which are off by default). It is each job's cgroup's ``memory.max`` (and its zygote's),
            with ``memory.swap.max`` 0 (a job's memory is never swapped out, else swap would
            extend the limit), so it needs ``cgroup_root`` on cgroup v2 with the ``memory``
            controller enabled for the root's children: the worker refuses to start when it is set
            and they cannot have it. A job the kernel killed processes of for lack of memory ends
            Aborted, "the job exceeded its memory limit of ...", a deep failure (a payload that
            exited 0 all the same ends Done, with that reason). A local CE whose catalogue entry
            states a lower ``WMProxyMemoryMB`` gives its jobs that lower limit (applied only when
            this is set). Slurm jobs are left to Slurm (``[slurm] default_memory_mb``).

    Raises:
        ConfigError: a non-positive lease or poll interval, a negative grace, process or memory
            limit, or ``max_running`` below 1.
    """

    work_dir: str = "/var/lib/wmproxy/work"
    poll_interval: float = 1.0
    max_running: int = 4
    backend: str = "local"
    heartbeat_lease: float = 60.0
    kill_grace: float = 10.0
    cgroup_root: str = ""
    max_job_processes: int = 4096
    max_job_memory: int = 0

    def __post_init__(self) -> None:
        _check_durations("execution", self)
        if self.heartbeat_lease <= 0 or self.poll_interval <= 0:
            raise ConfigError("[execution] heartbeat_lease and poll_interval: must be positive")
        if self.kill_grace < 0 or self.max_running < 1:
            raise ConfigError("[execution] kill_grace must not be negative, max_running must be at least 1")
        if self.max_job_processes < 0:
            raise ConfigError("[execution] max_job_processes must not be negative (0: no limit)")
        if self.max_job_memory < 0:
            raise ConfigError("[execution] max_job_memory must not be negative (0: no limit)")


@dataclass(frozen=True)
class JobsSettings:
    """Limits on what users may ask of jobs (``[jobs]`` section).

    Attributes:
        quota_soft_limit, quota_hard_limit: per-user sandbox bytes (getTotalQuota);
            a hard limit of 0 = quotas off, and getTotalQuota and getFreeQuota answer
            (-1, -1), "no quota", as the reference did (gLite clients then check the input
            sandbox against getMaxInputSandboxSize alone). A soft limit without a hard one
            leaves quotas off (only the hard limit is enforced). With both set, the soft
            limit may not exceed the hard one; a soft limit of 0 is the hard one.
        max_perusal_files: files one job may have under perusal (MaxPerusalFiles, 15).
        min_perusal_interval: seconds, lower bound of PerusalTimeInterval (1000).
        max_nodes: nodes one compound job may have (at least 1). A DAG may also give at most
            max(10 × max_nodes, 100,000) dependency pairs, counted as written (``{ {a, b},
            {c, d} }`` is four; ``wmproxy.jdl.compound.max_dependencies``).
        ce_catalogue: file of CE ClassAds, one per CE, the brokering target of jobStart
            and jobListMatch (``docs/brokering.md``); empty = the one built-in local CE.

    Raises:
        ConfigError: a negative quota, perusal file count or interval, a soft quota over
            the hard one, or ``max_nodes`` below 1.
    """

    quota_soft_limit: int = 0
    quota_hard_limit: int = 0
    max_perusal_files: int = 15
    min_perusal_interval: int = 1000
    max_nodes: int = 10_000
    ce_catalogue: str = ""

    def __post_init__(self) -> None:
        _check_durations("jobs", self)
        for name in ("quota_soft_limit", "quota_hard_limit", "max_perusal_files", "min_perusal_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[jobs] {name}: must not be negative")
        if self.quota_hard_limit > 0 and self.quota_soft_limit > self.quota_hard_limit:
            raise ConfigError("[jobs] quota_soft_limit: must not exceed quota_hard_limit")
        if self.max_nodes < 1:
            raise ConfigError("[jobs] max_nodes: must be at least 1")


#: MyProxy's port when a ``host[:port]`` names none.
DEFAULT_MYPROXY_PORT = 7512
#: ``wmproxy-metrics``'s port when ``[metrics] bind`` names none.
DEFAULT_METRICS_PORT = 9464
#: Characters the database keeps of one ACL item (``job_acl.item``, :mod:`wmproxy.store.schema`):
#: the most ``[limits] max_acl_item_length`` may be.
ACL_ITEM_COLUMN_LENGTH = 512

_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def parse_host_port(value: str, default_port: int = DEFAULT_MYPROXY_PORT) -> tuple[str, int]:
    """``"host[:port]"`` → ``(host, port)``; surrounding blanks are ignored.

    Raises:
        ValueError: not a DNS host name with an optional port in 1-65535.
    """
    host, sep, port_text = value.strip().rpartition(":")
    if not sep:
        host, port_text = value.strip(), str(default_port)
    if not host or not _HOST.match(host) or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r} is not host[:port]")
    return host, int(port_text)


def parse_bind(value: str) -> tuple[str, int]:
    """A gunicorn listen address ``host:port`` or ``[IPv6 address]:port`` → ``(host, port)``
    (the address without brackets); the port is required.

    Raises:
        ValueError: not a DNS host name, IPv4 address or bracketed IPv6 address with a port
            in 1-65535.
    """
    host, sep, port_text = value.strip().rpartition(":")
    if sep and host.startswith("[") and host.endswith("]"):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            address = None
        if address is not None and port_text.isdigit() and 0 < int(port_text) < 65536:
            return host[1:-1], int(port_text)
    elif sep:
        try:
            return parse_host_port(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not host:port")


def parse_vo_servers(text: str, where: str = "[renewal] myproxy_servers_by_vo") -> Mapping[str, str]:
    """``"atlas=myproxy.cern.ch, cms=host:7512, dteam="`` → ``{vo: "host[:port]"}`` (read-only).

    An empty server means "no renewal" for the VO. Blank items are skipped.

    Raises:
        ConfigError: an item without ``=`` or without a VO name, a VO named twice, or a
            server that is not ``host[:port]`` (``where`` names the setting).
    """
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        vo, sep, server = (part.strip() for part in item.partition("="))
        if not sep:
            raise ConfigError(f"{where}: {item.strip()!r} is not vo=host[:port]")
        pairs.append((vo, server))
    if len({vo for vo, _ in pairs}) != len(pairs):
        raise ConfigError(f"{where}: a VO is named twice in {text!r}")
    return checked_vo_servers(dict(pairs), where)


def checked_vo_servers(by_vo: Mapping[str, str], where: str = "[renewal] myproxy_servers_by_vo") -> Mapping[str, str]:
    """``by_vo`` validated and frozen: VO names non-empty, servers ``host[:port]`` or "".

    Raises:
        ConfigError: an empty VO name or a server that is not ``host[:port]``.
    """
    result: dict[str, str] = {}
    for raw_vo, raw_server in by_vo.items():
        vo, server = raw_vo.strip(), raw_server.strip()
        if not vo:
            raise ConfigError(f"{where}: a per-VO server without a VO name")
        if server:
            try:
                parse_host_port(server)
            except ValueError as exc:
                raise ConfigError(f"{where}: VO {vo}: {exc}") from exc
        result[vo] = server
    return MappingProxyType(result)


def canonical_host(host: str) -> str:
    """A host name as MyProxy servers are compared: lower-cased, without a trailing dot."""
    return host.rstrip(".").lower()


def parse_server_patterns(text: str, where: str = "[renewal] myproxy_allowed_servers") -> tuple[tuple[str, int], ...]:
    """``"myproxy.cern.ch, *.example.org:7600, *"`` → ``(("myproxy.cern.ch", 7512),
    ("*.example.org", 7600), ("*", 0))``: the MyProxy servers a JDL may name.

    An item is ``host[:port]`` (the port defaults to 7512), ``*.domain[:port]`` (any host
    under the domain, not the domain itself) or ``*`` alone (any host and port; port 0).
    Host names are lower-cased, without a trailing dot. Blank items are skipped.

    Raises:
        ConfigError: an item that is none of these (``where`` names the setting).
    """
    patterns: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            patterns.append(("*", 0))
            continue
        wildcard = item.startswith("*.")
        try:
            host, port = parse_host_port(item[2:] if wildcard else item)
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not host[:port], *.domain[:port] or *") from None
        host = canonical_host(host)
        patterns.append((f"*.{host}" if wildcard else host, port))
    return tuple(patterns)


@dataclass(frozen=True)
class RenewalSettings:
    """Proxy renewal from MyProxy (``[renewal]`` section; anchors.md §2 for the defaults).

    Attributes:
        myproxy_server: default ``host[:port]`` for jobs whose JDL names none (the
            analogue of ``MYPROXY_SERVER``); empty = no default.
        myproxy_servers_by_vo: per-VO defaults, ``{vo: "host[:port]"}`` ("" = no renewal
            for that VO). Configured as ``"atlas=myproxy.cern.ch, cms=host:7512"``; a
            string given here is parsed once (:func:`parse_vo_servers`).
        myproxy_allowed_servers: the MyProxy servers a JDL's ``MyProxyServer`` may name
            besides ``myproxy_server`` and the ``myproxy_servers_by_vo`` values (always
            allowed), comma-separated: ``host[:port]`` (that port only, 7512 when none is
            given), ``*.domain[:port]`` (any host under the domain) or ``*`` (any host and
            port, as the original WMProxy). Empty, the default, allows only the configured
            defaults. A job naming another server is refused at registration (GenericFault
            1220); the renewal worker does not connect to the server of an existing record
            that is no longer allowed (result ``not-allowed``). A server allowed only through
            a wildcard is reached at public unicast addresses only (list it as
            ``host[:port]`` to reach it on a loopback or private address), and a failed
            connection to it reads the same to the user (the log has the reason).
        cycle: seconds between renewal passes (more than 0).
        threshold: seconds of remaining life below which a proxy is renewed (30 min + 5 min
            skew; 0 or more).
        lifetime: seconds of life asked of MyProxy (10 hours); more than ``threshold``, or
            every renewed proxy would be due again at once.
        timeout: seconds one MyProxy exchange may take (more than 0), the lookup of the
            server's name included; each VOMS server asked for a refresh gets as long again.
        voms_refresh: after a renewal, ask a VOMS server for new VOMS attributes of the
            delegated FQANs and put them in the renewed proxy (anchors.md §2.2 "VOMS
            refresh"), as the gLite proxy renewal daemon did; off, a renewed proxy carries
            what MyProxy gave (usually no AC).
        vomses: file or directory of ``vomses`` lines (``wmproxy.security.vomses``): the
            VOMS servers asked after the one named in the old AC; missing = none.
        voms_lifetime: seconds of AC validity asked of the VOMS server (12 h, as the
            reference; the server may grant less, and the proxy's own end bounds it).

    Raises:
        ConfigError: a bad ``myproxy_server``, per-VO entry or ``myproxy_allowed_servers``
            item, a ``cycle`` or ``timeout`` not above 0, a negative ``threshold``, a
            ``lifetime`` not above ``threshold``, a ``voms_lifetime`` not above 0 (at
            construction, i.e. at start).
    """

    myproxy_server: str = ""
    myproxy_servers_by_vo: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    myproxy_allowed_servers: str = ""
    cycle: float = 300.0
    threshold: int = 35 * 60
    lifetime: int = 10 * 3600
    timeout: float = 30.0
    voms_refresh: bool = True
    vomses: str = "/etc/vomses"
    voms_lifetime: int = 12 * 3600

    def __post_init__(self) -> None:
        _check_durations("renewal", self)
        by_vo: Mapping[str, str] | str = self.myproxy_servers_by_vo
        parsed = parse_vo_servers(by_vo) if isinstance(by_vo, str) else checked_vo_servers(by_vo)
        object.__setattr__(self, "myproxy_servers_by_vo", parsed)
        object.__setattr__(self, "myproxy_server", self.myproxy_server.strip())
        if self.myproxy_server:
            try:
                parse_host_port(self.myproxy_server)
            except ValueError as exc:
                raise ConfigError(f"[renewal] myproxy_server: {exc}") from exc
        parse_server_patterns(self.myproxy_allowed_servers)
        for name in ("cycle", "timeout", "voms_lifetime"):
            if not getattr(self, name) > 0:  # NaN too
                raise ConfigError(f"[renewal] {name}: must be positive")
        if not self.threshold >= 0:
            raise ConfigError("[renewal] threshold: must not be negative")
        if not self.lifetime > self.threshold:
            raise ConfigError(f"[renewal] lifetime: must be more than threshold ({self.threshold} s), or every "
                              "renewed proxy is due again at once")

    @functools.cached_property
    def allowed_server_patterns(self) -> tuple[tuple[str, int], ...]:
        """``myproxy_allowed_servers`` parsed (:func:`parse_server_patterns`), once."""
        return parse_server_patterns(self.myproxy_allowed_servers)

    @functools.cached_property
    def default_servers(self) -> frozenset[tuple[str, int]]:
        """``(canonical host, port)`` of ``myproxy_server`` and the ``myproxy_servers_by_vo``
        values that are set, parsed once."""
        servers = (self.myproxy_server, *self.myproxy_servers_by_vo.values())
        return frozenset((canonical_host(host), port) for host, port in map(parse_host_port, filter(None, servers)))


@dataclass(frozen=True)
class MappingSettings:
    """Mapping of grid identities to local accounts, the LCMAPS analogue (``[mapping]``
    section; ``docs/mapping.md``, ``wmproxy.security.gridmap`` for the file formats).

    Attributes:
        mode: ``none`` (jobs are not mapped; the default) or ``gridmap`` (every
            jobRegister/jobSubmit is mapped, or refused with AuthorizationFault).
        gridmap_file: grid-mapfile, ``"<DN>" account`` or ``"<DN>" .pool`` lines.
        voms_rules_file: VOMS rules, ``"<FQAN pattern>" account`` or ``.pool`` lines,
            matched on the caller's first FQAN, first matching rule wins.
        ban_file: banned DNs and FQANs, one quoted pattern a line.
        lease_idle_time: seconds a pool lease is kept after its last use once its
            account has no live job (7 days, as a gridmapdir cleanup).
    """

    mode: str = "none"
    gridmap_file: str = ""
    voms_rules_file: str = ""
    ban_file: str = ""
    lease_idle_time: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        _check_durations("mapping", self)
        if self.mode not in ("none", "gridmap"):
            raise ConfigError(f"[mapping] mode: expected none or gridmap, not {self.mode!r}")
        if self.lease_idle_time < 0:
            raise ConfigError("[mapping] lease_idle_time: must not be negative")


@dataclass(frozen=True)
class LimitsSettings:
    """What one request, proxy or sandbox may hold (``[limits]`` section); anything over a
    limit is refused with a typed fault before it is stored, but a job's output sandbox, which
    is truncated (``max_output_sandbox_size``).

    Attributes:
        max_proxy_chain_depth: certificates below the end-entity certificate a client or
            delegated proxy chain may have (proxies of proxies); 10. A proxy renewed from
            MyProxy (or by a VOMS refresh) is held to it too, and a running job's own proxy
            copy deeper than it counts as not valid (it is replaced by the stored proxy).
        max_request_bytes: bytes of one SOAP request (16 MiB, the documented JDL limit), and of
            the JDL of a compound job's nodes together once expanded (what each inherits and
            its ``_PARAM_`` value included), estimated from the request before any node is made.
        max_xml_depth: element nesting depth of one SOAP request.
        max_xml_elements: elements in one SOAP request.
        max_xml_attributes: attributes on one element.
        max_input_sandbox_files, max_output_sandbox_files: files one job may list in its
            InputSandbox/OutputSandbox (the reference's maxInputSandboxFiles /
            maxOutputSandboxFiles; 0 = no limit). ``max_output_sandbox_files`` also bounds the
            files the execution worker collects for a job, its wildcards' matches included; with
            0 it collects at most 10,000 (``OUTPUT_FILES_CEILING`` of
            :mod:`wmproxy.execution.worker`): the worker copies them in its cycle, between other
            jobs' starts and ends, and a job that made 200,000 files for ``*.o`` held it for
            37 s. Each file over the limit is "not collected". With ``max_input_sandbox_files``
            at 0 a job's input area still holds at most 10,000 files and directories
            (``INPUT_ENTRIES_CEILING`` of :mod:`wmproxy.services.sandboxes`): empty ones cost no
            bytes against MaxInputSandboxSize or the quota.
        max_sandbox_name_bytes: bytes of one sandbox file name (255, a file name's limit),
            checked wherever a name is created: the edge's uploads (a PUT, a MOVE's
            destination), the input and output sandbox names of a JDL, the output sandbox's
            collection, perusal file names (22 bytes less: the ``-<first>-<last>`` of a merged
            part). Files stored under longer names before a site lowered it are still listed
            and served.
        max_pending_delegation_requests: pending delegation requests (getProxyReq,
            getNewProxyReq, renewProxyReq without their putProxy yet) one DN keeps; beyond
            them its oldest are dropped (a putProxy for one is refused as for any unknown
            request), looked at every ``TRIM_EVERY`` (32) requests of the DN in a process, so it
            may hold that many more for a while. Each keeps a sealed 2048-bit key for ``[purge]
            request_age`` (a day): without a bound a user asking with new ids and never answering
            filled the table. 0 = no limit.
        max_delegations_per_user: delegated proxies (delegation ids) one DN may have stored;
            1000. A putProxy storing a new id beyond them is refused (DelegationException on
            the delegation ports, AuthorizationFault 1215 on the WMProxy port) and its request
            stays pending; replacing a stored id is always allowed. Counted in the transaction
            of the insert. Expired proxies count until ``[purge]`` removes them
            (``delegation_grace`` after their end, when no unfinished job uses them). The
            reference set no bound, and each row holds a sealed key: a user delegating under
            new ids forever filled the table. A user's automatic delegations (an empty id)
            share one id per DN and FQANs, so 1000 leaves room for ids per job. At least 1.
        max_output_sandbox_size: bytes the execution worker collects into one job's output
            sandbox; 100 MB (the reference's ``WorkloadManager.MaxOutputSandboxSize`` defaults
            to -1, no limit: 0 here, which leaves the sandbox's disk to one job's output when
            quotas are off; larger outputs belong on grid storage). A job's budget is the
            smallest of this, what is left of its owner's ``[jobs] quota_hard_limit`` when quotas are on, and a positive
            ``GLITE_LOCAL_MAX_OSB_SIZE`` (bytes) in the JDL ``Environment``; files are copied in
            OutputSandbox order, each at most its size when the copy began, and one over what
            is left of the budget is truncated to it (the job is still Done; its reason names
            the files truncated). With 0 and quotas off nothing bounds it: a job's sparse
            ``truncate -s 10T out`` then becomes 10 TB in the sandbox area. The chunks file
            perusal copies into the job's ``peek/`` count against this too (and the quota);
            sampling stops writing once they reach it.
        max_acl_items: ACL items (DNs, FQANs) one job or node may hold besides its owner; 100.
            addACLItems that would bring it over is refused whole (OperationNotAllowedFault
            1226). The reference set no bound: a user flooding his own jobs' ACLs with tens of
            thousands of items made every other user's listJobs slower. Granting a group goes
            through one FQAN item.
        max_acl_item_length: characters of one ACL item (512, the stored column's width, also
            the most it may be); a longer one is refused (InvalidArgumentFault).
    """

    max_proxy_chain_depth: int = 10
    max_request_bytes: int = 16 * 1024 * 1024
    max_xml_depth: int = 64
    max_xml_elements: int = 200_000
    max_xml_attributes: int = 64
    max_input_sandbox_files: int = 0
    max_output_sandbox_files: int = 0
    max_sandbox_name_bytes: int = 255
    max_pending_delegation_requests: int = 100
    max_delegations_per_user: int = 1000
    max_output_sandbox_size: int = 100_000_000
    max_acl_items: int = 100
    max_acl_item_length: int = ACL_ITEM_COLUMN_LENGTH

    def __post_init__(self) -> None:
        for name in ("max_proxy_chain_depth", "max_request_bytes", "max_xml_depth", "max_xml_elements",
                     "max_xml_attributes", "max_sandbox_name_bytes", "max_acl_items", "max_acl_item_length",
                     "max_delegations_per_user"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[limits] {name}: must be at least 1")
        if self.max_acl_item_length > ACL_ITEM_COLUMN_LENGTH:
            raise ConfigError(f"[limits] max_acl_item_length: must be at most {ACL_ITEM_COLUMN_LENGTH} "
                              "(the width of the stored item)")
        for name in ("max_input_sandbox_files", "max_output_sandbox_files", "max_output_sandbox_size",
                     "max_pending_delegation_requests"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[limits] {name}: must not be negative (0 = no limit)")


@dataclass(frozen=True)
class LoadSettings:
    """The load limiter and the slow-client defence (``[load]`` section; anchors.md §1.3
    for the reference's load monitor, ``docs/load.md``). Over any threshold, new work
    (jobRegister, jobSubmit, jobListMatch and their JSDL forms; not jobStart, reference bug
    #40370) is refused with ServerOverloadedFault "System load is too high: ..." naming the
    threshold and the measured value; every other operation keeps working. 0 turns a
    threshold off; all are off by default (the reference's built-in values are in
    ``deploy/wmproxy.conf.example``).

    Attributes:
        load1: 1-minute load average at or above which new work is refused (reference 10).
        load5: 5-minute load average at or above which new work is refused while the
            load rises (load1 > load5) (reference 10).
        load15: 15-minute load average at or above which new work is refused while the
            load rises (load1 > load15 and load5 > load15) (reference 10).
        memory_usage: percent of memory in use (MemTotal - MemAvailable) at or above
            which new work is refused (reference 95).
        swap_usage: percent of swap in use at or above which new work is refused (95).
        disk_usage: percent of the sandbox area's file system in use at or above which
            new work is refused (95), as df's Use% counts it: used / (used + available to
            unprivileged users), the blocks reserved for root left out (with used / total
            an ext4 file system with its 5 % reserve refused nothing before it was full).
        free_fds: free file descriptors at or below which new work is refused (reference
            fdnum, 500): the fewer of the host's (fs.file-max minus those allocated, what the
            reference counts) and the worker's own (its open-files limit minus those it holds;
            the service raises its soft limit to the hard one at start, the unit sets
            LimitNOFILE=65536).
        queued_jobs: jobs started and waiting for a worker (Waiting, Ready) above which
            new work is refused (reference jdnum, 500).
        max_live_jobs: jobs (not nodes) one user (DN) may have that are not final;
            registering or submitting another is refused.
        max_jobs_per_submission: nodes one jobRegister/jobSubmit may create (a
            collection, DAG or parametric job); more is refused.
        sample_interval: seconds a sample of the system values (and of the queued jobs)
            is reused, so a check costs little.
        handshake_timeout: seconds a client has to complete the TLS handshake; the
            handshake runs off the request threads (``wmproxy.soap.tls_worker``), a client
            still in it after this is disconnected.
        io_timeout: seconds a request thread waits for a client past its handshake to
            make progress (``wmproxy.soap.tls_worker``); each read of its request (headers,
            body) and each write of its response must move some bytes within this, else the
            request is abandoned (an upload's partial file removed, nothing committed) and the
            connection closed, so stalled clients cannot hold the request threads. A client
            that keeps making progress, however slowly, is never cut.

    Raises:
        ConfigError: a negative threshold or cap, a percentage over 100, or a
            non-positive sample interval, handshake timeout or I/O timeout.
    """

    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    memory_usage: float = 0.0
    swap_usage: float = 0.0
    disk_usage: float = 0.0
    free_fds: int = 0
    queued_jobs: int = 0
    max_live_jobs: int = 0
    max_jobs_per_submission: int = 0
    sample_interval: float = 5.0
    handshake_timeout: float = 10.0
    io_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_durations("load", self)
        thresholds = ("load1", "load5", "load15", "memory_usage", "swap_usage", "disk_usage", "free_fds",
                      "queued_jobs", "max_live_jobs", "max_jobs_per_submission")
        for name in thresholds:
            if getattr(self, name) < 0:
                raise ConfigError(f"[load] {name}: must not be negative (0 = off)")
        for name in ("memory_usage", "swap_usage", "disk_usage"):
            if getattr(self, name) > 100:
                raise ConfigError(f"[load] {name}: a percentage, at most 100")
        for name in ("sample_interval", "handshake_timeout", "io_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[load] {name}: must be positive")


@dataclass(frozen=True)
class BrokeringSettings:
    """Matching of started jobs to CEs and their resubmission (``[brokering]`` section;
    the reference's ``WorkloadManager`` keys, anchors.md §1.2 for the defaults).

    Attributes:
        match_retry_period: seconds a job nothing matches waits before it is matched
            again (MatchRetryPeriod, 300).
        expiry_period: seconds after its start (or its last resubmission) a job without
            ``ExpiryTime`` may wait for a match before it is Aborted "request expired"
            (ExpiryPeriod, 7200).
        max_retry_count: site cap on deep resubmissions (MaxRetryCount, 10).
        max_shallow_retry_count: site cap on shallow resubmissions (10).
        ce_state_max_age: seconds a dynamic CE state (``ce_states``, e.g. refreshed
            from Slurm) is laid over the catalogue; older states are ignored.
        fuzzy_factor: steepness of the ``FuzzyRank`` selection (the reference's
            stochastic selector, 1.0).
        cycle_match_cpu: thread CPU seconds of matchmaking (jobs' ``Requirements`` and
            ``Rank`` evaluated against the CEs) one claim batch of an execution worker may
            spend; once spent, the batch's further requests are given back unchanged for the
            next cycle (3, about one job's budget; 0 = no bound).
        owner_match_cpu: thread CPU seconds of matchmaking the jobs of one owner (DN) may
            spend on one execution worker per ``match_retry_period``; further jobs of an
            owner past it wait, not evaluated, while other owners' jobs are due, until it frees
            (3; 0 = no bound).

    Raises:
        ConfigError: a non-positive period or age, a negative cap, fuzzy factor or CPU
            bound, a CPU bound that is not finite.
    """

    match_retry_period: float = 300.0
    expiry_period: float = 7200.0
    max_retry_count: int = 10
    max_shallow_retry_count: int = 10
    ce_state_max_age: float = 600.0
    fuzzy_factor: float = 1.0
    cycle_match_cpu: float = 3.0
    owner_match_cpu: float = 3.0

    def __post_init__(self) -> None:
        if min(self.match_retry_period, self.expiry_period, self.ce_state_max_age) <= 0:
            raise ConfigError("[brokering] match_retry_period, expiry_period and ce_state_max_age: must be positive")
        if min(self.max_retry_count, self.max_shallow_retry_count) < 0 or self.fuzzy_factor < 0:
            raise ConfigError("[brokering] max_retry_count, max_shallow_retry_count and fuzzy_factor: "
                              "must not be negative")
        if not all(0 <= value < math.inf for value in (self.cycle_match_cpu, self.owner_match_cpu)):
            raise ConfigError("[brokering] cycle_match_cpu and owner_match_cpu: must be a number of seconds, "
                              "0 or more (0: no bound)")
        _check_durations("brokering", self)  # after the check that names infinity and NaN as no number


@dataclass(frozen=True)
class SlurmSettings:
    """The Slurm cluster behind the CEs whose ``WMProxyBackend`` is ``"slurm"``
    (``[slurm]`` section; each such CE names one ``SlurmPartition``).

    Attributes:
        conf: path of ``slurm.conf`` (``SLURM_CONF``); "" = Slurm's default.
        bin_dir: directory of ``sbatch``, ``squeue``, ``scancel``, ...; "" = ``PATH``.
        refresh_interval: seconds between two refreshes of the Slurm CEs' dynamic
            state (``sinfo``/``squeue``).
        max_pending: seconds a job may stay pending in Slurm for a reason that means it
            cannot run there (partition down or inactive, required nodes down, limits
            beyond the partition's, held by an administrator) before it is taken back and
            counted a shallow failure (the reference's MaximumTimeAllowedForCondorMatch,
            1800); a job waiting its turn (Resources, Priority) is never taken back.
        default_wall_time: seconds of wall time asked for a job whose CE publishes no
            ``GlueCEPolicyMaxWallClockTime``; 0 = none (the partition's limit).
        default_memory_mb: MB of memory asked for a job whose CE names none; 0 = none.
        python: the interpreter that runs the job wrapper on the Slurm nodes.
        max_submitted: Slurm jobs (pending or running) one worker follows at once,
            apart from its local jobs (``[execution] max_running``).
        max_array: jobs one Slurm job array carries at most (the jobs of one worker cycle
            sharing account, partition and limits go to Slurm in one ``sbatch --array``);
            1 = one ``sbatch`` per job. Keep it below the cluster's ``MaxArraySize``.
        submit_settle: seconds during which slurmctld may still create a job whose sbatch
            lost its answer (a timeout, Slurm's "Socket timed out on send/recv operation",
            a worker that died during its sbatch): the job is looked for in Slurm that long
            before it counts as never submitted and is submitted again. At least munge's
            credential lifetime (``munged --ttl``, 300 s by default; slurmctld refuses an
            older request).

    Raises:
        ConfigError: a non-positive interval, or a negative wait, wall time, memory or
            settle time, or ``max_submitted`` or ``max_array`` below 1.
    """

    conf: str = ""
    bin_dir: str = ""
    refresh_interval: float = 60.0
    max_pending: float = 1800.0
    default_wall_time: int = 0
    default_memory_mb: int = 0
    python: str = "/usr/bin/python3"
    max_submitted: int = 1000
    max_array: int = 1000
    submit_settle: float = 330.0

    def __post_init__(self) -> None:
        _check_durations("slurm", self)
        if self.refresh_interval <= 0:
            raise ConfigError("[slurm] refresh_interval: must be positive")
        if self.max_submitted < 1:
            raise ConfigError("[slurm] max_submitted: must be at least 1")
        if self.max_array < 1:
            raise ConfigError("[slurm] max_array: must be at least 1")
        if min(self.max_pending, self.default_wall_time, self.default_memory_mb, self.submit_settle) < 0:
            raise ConfigError("[slurm] max_pending, default_wall_time, default_memory_mb and submit_settle: must not "
                              "be negative")


@dataclass(frozen=True)
class PurgeSettings:
    """Lifecycle of jobs and credentials (``[purge]``; ``wmproxy.services.purge``), with the
    reference's policy as defaults (anchors.md §1.5, row 7 and 17).

    Attributes:
        enabled: the execution workers run the purger every ``interval``.
        interval: seconds between two purge passes (the reference: every 6 h).
        final_age: seconds after its last state change that a Done, Aborted, Cancelled
            or Cleared job is purged (the reference: 604800, 7 days); must be positive (0
            would purge a job's output the moment it ends).
        forced_age: seconds after its last state change that a job is purged whatever its
            state, except a job a worker holds (Waiting, Ready, Scheduled, Running): the
            reference's Sunday forced purge, which skipped the state check but, as the 7-day
            run, measured from the job's last update (1296000, 15 days); must be positive.
            With the defaults ``final_age`` and ``registered_age`` take such jobs first; it
            matters when they are set above it.
        registered_age: seconds after its registration that a job never started
            (Submitted: registered, or an interrupted jobSubmit) expires and is purged
            (CREAM: REGISTERED after 2 days, 172800); must be positive (0 would purge a job
            the moment it is registered). To keep jobs longer set a larger age; to stop
            purging altogether set ``enabled = false``.
        request_age: seconds a pending delegation request (getProxyReq without putProxy)
            is kept (86400).
        delegation_grace: seconds after its expiry that a delegated proxy no live job
            uses is removed, with its renewal record (0).
        tombstone_age: seconds a purged job's tombstone is kept (so it answers "... or it
            has been purged"); 0 = forever (default 90 days).
        batch: jobs read per query of a pass (a pass reads on while full batches come back).
        pass_time: seconds a pass goes on reading jobs to remove and deleting their sandbox
            areas; when they run out with jobs still due (the clock is read after each job) the
            pass is cut short and the execution worker runs the next one at its next cycle,
            going on after the last job tried (the pass runs inside the worker's cycle: a long
            one would hold its jobs). The transaction of the job being removed when they run out
            is finished first (a compound job with all its nodes: its rows, and its areas
            counted and moved aside), so the removals run over by at most one job's transaction;
            the deletes of the areas stop inside an area when they run out, and the next pass,
            at the worker's next cycle, finishes them first (as the leftovers settled and the
            work dirs removed); the walks of the sandbox areas and work dirs, once per round of
            passes, are not counted (docs/keys-and-lifecycle.md).

    Raises:
        ConfigError: a non-positive interval, batch, pass_time, final_age, forced_age or
            registered_age, or a negative age; an age, interval or pass_time over 100 years
            (:data:`MAX_DURATION`), a batch over 2^31 - 1.
    """

    enabled: bool = True
    interval: float = 21600.0
    final_age: float = 604800.0
    forced_age: float = 1296000.0
    registered_age: float = 172800.0
    request_age: float = 86400.0
    delegation_grace: float = 0.0
    tombstone_age: float = 7776000.0
    batch: int = 500
    pass_time: float = 5.0

    def __post_init__(self) -> None:
        _check_durations("purge", self)
        if self.interval <= 0 or self.batch <= 0 or self.pass_time <= 0:
            raise ConfigError("[purge] interval, batch and pass_time: must be positive")
        if self.batch > MAX_ROW_COUNT:
            raise ConfigError(f"[purge] batch = {self.batch}: at most {MAX_ROW_COUNT} (jobs read per query)")
        for name in ("final_age", "forced_age", "registered_age"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[purge] {name} = {getattr(self, name):g}: must be positive (seconds); 0 would "
                                  "purge jobs at once, not keep them: set a larger age, or enabled = false to "
                                  "stop purging")
        if min(self.final_age, self.forced_age, self.registered_age, self.request_age, self.delegation_grace,
               self.tombstone_age) < 0:
            raise ConfigError("[purge] ages: must not be negative")


@dataclass(frozen=True)
class InspectionSettings:
    """Live inspection of running jobs (``[inspection]`` section; ``docs/inspection.md``).

    Attributes:
        mode: ``off`` (refused), ``allow-list`` (only ``allowed_commands``) or ``any``.
        allowed_commands: comma-separated program names (no ``/``) a user may run in a
            job with ``mode = allow-list``; matched against the command's first word.
        time_limit: seconds one inspection command may run at most (the user may ask less).
        output_cap: bytes of a command's output (stdout and stderr merged) kept at most.
        pickup_timeout: seconds a request may wait for the job's agent to take it before
            it fails ("the job did not pick up the request").
        agent_delay: seconds a job must still be running, after its wrapper started, before
            the wrapper starts the job's agent; 0 starts it at once. A job that ends sooner,
            which nobody could inspect anyway, pays no agent (a Python start with ``ssl``).
        retention: seconds a request is kept after it was asked (its result read with
            getInspectionResult meanwhile); then the purger deletes it (``[purge]``, ``batch`` rows
            a statement within the pass's time), and so does an ask that finds a cap below
            reached. Never less than ``pickup_timeout + time_limit + 30``, the longest a request
            can still be answered. The job event each request left stays with the job.
        max_requests_per_job: requests one job keeps (asked within ``retention``, any state);
            one more is refused with ServerOverloadedFault until the oldest expire: this bounds
            the rows and the job events (``inspection: <command>``) one job gains, 100 an hour
            by default. Asking an ended job stores nothing and is not counted.
        max_requests_per_user: requests one DN keeps over all its jobs, refused the same way.

    Raises:
        ConfigError: an unknown mode, a non-positive limit, cap, timeout or retention, a
            negative agent delay, or a command name with ``/``.
    """

    mode: str = "allow-list"
    allowed_commands: str = "ps,ls,tail,head,cat,df,du,free,uptime,pwd,wc,pstree"
    time_limit: float = 30.0
    output_cap: int = 64 * 1024
    pickup_timeout: float = 60.0
    agent_delay: float = 2.0
    retention: float = 3600.0
    max_requests_per_job: int = 100
    max_requests_per_user: int = 500

    def __post_init__(self) -> None:
        _check_durations("inspection", self)
        if self.mode not in ("off", "allow-list", "any"):
            raise ConfigError(f"[inspection] mode: expected off, allow-list or any, not {self.mode!r}")
        if min(self.time_limit, self.output_cap, self.pickup_timeout, self.retention, self.max_requests_per_job,
               self.max_requests_per_user) <= 0:
            raise ConfigError("[inspection] time_limit, output_cap, pickup_timeout, retention, max_requests_per_job "
                              "and max_requests_per_user: must be positive")
        if not self.agent_delay >= 0:  # NaN too
            raise ConfigError("[inspection] agent_delay: must be 0 or more seconds")
        if any("/" in name for name in self.commands):
            raise ConfigError("[inspection] allowed_commands: program names, without /")

    @property
    def commands(self) -> frozenset[str]:
        """``allowed_commands`` as a set of names."""
        return frozenset(name.strip() for name in self.allowed_commands.split(",") if name.strip())


@dataclass(frozen=True)
class MetricsSettings:
    """Health and Prometheus metrics (``[metrics]``; ``wmproxy.monitoring``).

    Attributes:
        bind: ``host[:port]`` of the plain-HTTP listener of ``wmproxy-metrics`` (``/metrics``,
            ``/healthz``, ``/readyz``), port 9464 when none is given; keep it on loopback or
            a management network. Every local process can connect to it, grid jobs of the local
            backend too (``token_file``, docs/monitoring.md).
        token_file: a file (the service user's, 0600: one that group or others can read is
            refused) whose first line is a bearer token:
            ``/metrics`` and ``/readyz`` then answer only requests with ``Authorization: Bearer
            <token>`` (Prometheus: ``authorization: {credentials_file: ...}``), others get 401;
            ``/healthz`` needs none. "" = no token asked. ``/readyz`` shows its checks' details
            (file paths among them) only to a request with the token.
        max_connections: connections served at once (a pool of that many threads); when all are
            taken the one still waiting for its request longest is closed for a newcomer, and with
            none waiting the newcomer is closed at once.
        timeout: seconds each read or write of a connection may take before it is closed.
        dir: directory where the service processes keep their request counters
            (prometheus_client multiprocess mode), read by ``wmproxy-metrics``; "" =
            ``metrics`` next to the sandbox root. Best on a tmpfs cleared at boot.
        crl_grace: seconds a CRL may be past its nextUpdate before ``/readyz`` fails (0 or more).
        sandbox_scan_interval: seconds between two walks of the sandbox area for
            ``wmproxy_sandbox_bytes`` (scrapes in between get the last value); 0 = every scrape.

    Raises:
        ConfigError: a ``bind`` that is not ``host[:port]``, a negative grace or interval, a
            non-positive ``max_connections`` or ``timeout``.
    """

    bind: str = "127.0.0.1:9464"
    dir: str = ""
    crl_grace: float = 0.0
    sandbox_scan_interval: float = 300.0
    token_file: str = ""
    max_connections: int = 16
    timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_durations("metrics", self)
        try:
            parse_host_port(self.bind, DEFAULT_METRICS_PORT)
        except ValueError as exc:
            raise ConfigError(f"[metrics] bind: {exc}") from exc
        for name in ("crl_grace", "sandbox_scan_interval"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ConfigError(f"[metrics] {name}: must not be negative")
        if self.max_connections < 1 or not self.timeout > 0:
            raise ConfigError("[metrics] max_connections and timeout: must be positive")


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    renewal: RenewalSettings = field(default_factory=RenewalSettings)
    mapping: MappingSettings = field(default_factory=MappingSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    brokering: BrokeringSettings = field(default_factory=BrokeringSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    purge: PurgeSettings = field(default_factory=PurgeSettings)
    inspection: InspectionSettings = field(default_factory=InspectionSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    #: The INI file the settings were read from (None: none; not a section).
    config_file: str | None = field(default=None, compare=False)


def no_config_note(settings: Settings) -> str:
    """`` (no configuration file was read: ...)`` when ``settings`` come from the defaults and
    the environment only (e.g. ``WMPROXY_CONFIG`` lost under sudo), else the empty string: for
    a message whose value may be a default that no file changed."""
    if settings.config_file is not None:
        return ""
    return ("; no configuration file was read (neither --config nor WMPROXY_CONFIG was given, so the built-in "
            "defaults applied; the units read /etc/wmproxy/wmproxy.conf: run with "
            "WMPROXY_CONFIG=/etc/wmproxy/wmproxy.conf, which sudo does not pass on)")


#: ``WMPROXY_*`` variables that are not settings: the configuration file's path.
NOT_SETTINGS = frozenset({"WMPROXY_CONFIG"})


def _convert(value: str, target: Any, where: str) -> Any:
    """``value`` (text from the file or the environment) as the field type ``target``.

    Raises:
        ConfigError: not an integer (of at most :data:`MAX_SETTING_INT`), a finite number or a
            boolean where one is expected.
    """
    if target == "Mapping[str, str]":
        return parse_vo_servers(value, where)
    try:
        if target is int or target == "int":
            integer = int(value)
            if abs(integer) <= MAX_SETTING_INT:
                return integer
            raise OverflowError(value)  # no integer setting is meant to be that large (nor can go to the database)
        if target is float or target == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if target is bool or target == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except OverflowError:
        raise ConfigError(f"{where}: {value!r} is out of range: at most {MAX_SETTING_INT}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot convert {value!r} to {target}") from exc
    return value


def areas() -> dict[str, type[Any]]:
    """``{section name: settings dataclass}`` of every area of :class:`Settings`, in order."""
    return {area.name: area.default_factory for area in dataclasses.fields(Settings)  # type: ignore[misc]
            if area.default_factory is not dataclasses.MISSING}


def keys(area: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    """``{key: field}`` of one area's dataclass."""
    return {f.name: f for f in dataclasses.fields(area)}


def env_name(section: str, key: str) -> str:
    """``("database", "url")`` → ``WMPROXY_DATABASE_URL``."""
    return f"WMPROXY_{section.upper()}_{key.upper()}"


def _check_password_exposure(path: Path, parser: configparser.ConfigParser) -> None:
    """Refuse a configuration file whose ``[database] url`` holds a password (in its user part
    or as a query parameter: :func:`database_url_secret`) while every local user may read the
    file: a job running as a pool account would get the database (every job, delegation, lease
    and ACL) with it.

    Raises:
        ConfigError: the file is readable by others (the message names the file and the fixes).
    """
    if not parser.has_option("database", "url") or not database_url_secret(parser.get("database", "url")):
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    if mode & 0o007:
        raise ConfigError(
            f"{path} holds the database password ([database] url) and every local user, jobs included, may read it "
            f"(mode {mode:04o}). Fix: chmod 640 {path} with the service user's group (chgrp), or give the URL in "
            f"{env_name('database', 'url')} from a file only the service reads (systemd EnvironmentFile)")


def _read_file(config_file: str | os.PathLike[str]) -> configparser.ConfigParser:
    """The INI file, parsed literally (no ``%`` interpolation) and checked against the areas.

    Raises:
        ConfigError: missing or unreadable, not INI, keys outside a section or in
            ``[DEFAULT]``, an unknown section or key (all named, with the file).
    """
    path = Path(config_file)
    parser = configparser.ConfigParser(interpolation=None, default_section="\0no default section")
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    known = areas()
    unknown_sections = [name for name in parser.sections() if name not in known]
    if unknown_sections:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(f'[{n}]' for n in unknown_sections)}; "
                          f"known: {', '.join(known)}")
    unknown_keys = [f"[{section}] {key}" for section in parser.sections()
                    for key in parser.options(section) if key not in keys(known[section])]
    if unknown_keys:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown_keys)} (docs/configuration.md)")
    return parser


def _check_environment(env: Mapping[str, str]) -> None:
    """Every ``WMPROXY_<SECTION>_<KEY>`` whose section is known names a known key.

    Variables whose prefix names no section (e.g. the CLI's ``WMPROXY_ENDPOINT``) are
    not settings and are left alone.

    Raises:
        ConfigError: naming the unknown variables.
    """
    known = areas()
    # Longest section first, so a section whose name starts another's is matched whole.
    prefixes = sorted(((f"WMPROXY_{name.upper()}_", name) for name in known), key=lambda p: -len(p[0]))
    unknown = []
    for variable in sorted(env):
        if variable in NOT_SETTINGS:
            continue
        for prefix, section in prefixes:
            if variable.startswith(prefix):
                if variable[len(prefix):].lower() not in keys(known[section]):
                    unknown.append(variable)
                break
    if unknown:
        raise ConfigError(f"unknown setting(s) in the environment: {', '.join(unknown)} (docs/configuration.md)")


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, an INI file and ``WMPROXY_*`` variables.

    Args:
        config_file: INI file; default ``$WMPROXY_CONFIG``; none = defaults and environment.
        environ: the environment (default ``os.environ``).

    The file is read literally (``%`` is not special, so percent-encoded URLs work);
    an environment variable ``WMPROXY_<SECTION>_<KEY>`` overrides the file's key.

    Raises:
        ConfigError: the file is missing or unreadable; an unknown section, key or
            ``WMPROXY_<SECTION>_<KEY>`` variable (named); a value that cannot be converted
            or is out of range (named as ``<file>: [section] key`` or by its variable; a range
            that spans keys names the file and the variables that set them); the file
            holds a database password (``[database] url``) and is readable by others.
    """
    env = os.environ if environ is None else environ
    config_file = config_file or env.get("WMPROXY_CONFIG")
    parser = _read_file(config_file) if config_file else None
    _check_environment(env)
    if parser is not None and config_file and env_name("database", "url") not in env:
        _check_password_exposure(Path(config_file), parser)
    built: dict[str, Any] = {}
    for section, cls in areas().items():
        values: dict[str, Any] = {}
        sources: dict[str, None] = {}  # where the area's values came from, in order, once each
        for name, f in keys(cls).items():
            where = env_name(section, name)
            raw = env.get(where)
            if raw is None and parser is not None and parser.has_option(section, name):
                raw = parser.get(section, name)
                where = f"{config_file}: [{section}] {name}"
                sources[str(config_file)] = None
            elif raw is not None:
                sources[where] = None
            if raw is not None:
                values[name] = _convert(raw, f.type, where)
        try:
            built[section] = cls(**values)
        except ConfigError as exc:
            if not sources:
                raise
            raise ConfigError(f"{exc} (set in {', '.join(sources)})") from exc
    return Settings(**built, config_file=str(config_file) if config_file else None)
