"""Readiness of a service node: database reachable, schema current, a CA certificate in the CA
directory, CRLs fresh, the CA namespace policy files parsing, the host certificate readable and
within its validity, the host key readable and the certificate's, the policy file, the mapping
files and the CE catalogue (when set) readable, service port accepting connections.

Each check returns a :class:`Check`; ``/readyz`` answers 200 only when all pass (a warning
passes: an unparsable CA policy file refuses its CA's users only, on every node alike). The texts
name what failed and the fix, and hold no secret (no database URL, no key path contents).

:func:`read_ca_dir` is the one reading of the CA directory: the ``ca`` and ``crls`` checks
here (and ``ca_policy``) and ``wmproxy-admin check`` (``wmproxy.admintools.check_ca_dir``) both
judge what it finds.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import pwd
import re
import socket
import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from wmproxy.config import Settings, parse_host_port
from wmproxy.renewal.connect import connect_within, getaddrinfo_within
from wmproxy.security import ca_policy
from wmproxy.security.filemodes import FileModeError, check_host_key_mode
from wmproxy.services.storekey import account_name
from wmproxy.store.migrations import head_revision

#: A CA certificate (``<hash>.N``) and a CRL (``<hash>.rN``) of a grid CA directory, as OpenSSL's
#: ``capath`` lookup finds them (peers.md §2: the subject hash of ``openssl x509 -hash``).
_CA_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")
_CRL_NAME = re.compile(r"^[0-9a-f]{8}\.r[0-9]+$")
#: The statements of :func:`database_check`, built once: the engine compiles each once.
_SELECT_1 = text("SELECT 1")
_CURRENT_REVISION = text("select version_num from alembic_version")
#: A CA's namespace policy file (:mod:`wmproxy.security.ca_policy`), named by its subject hash.
_POLICY_NAME = re.compile(rf"^[0-9a-f]{{8}}\.(?:{ca_policy.NAMESPACES}|{ca_policy.SIGNING_POLICY})$")


@dataclass(frozen=True)
class Check:
    """One readiness check; ``warning`` (with ``ok``): a problem reported that does not take the
    node out of service (``/readyz`` shows ``WARN`` and still answers 200)."""

    name: str
    ok: bool
    detail: str
    warning: bool = False

    @property
    def state(self) -> str:
        """``ok``, ``WARN`` or ``FAIL``, as ``/readyz`` writes it."""
        return "FAIL" if not self.ok else "WARN" if self.warning else "ok"


def database_check(engine: Engine) -> tuple[Check, str | None]:
    """Can the database answer ``SELECT 1``? Also returns its Alembic revision (None if none).

    Two constant statements, compiled once per engine: no Alembic ``MigrationContext`` per probe
    (it logged two INFO lines and built a new ``alembic_version`` Table each time, a new entry of
    the engine's compiled cache per ``/readyz``). The database's tables are looked at only when
    the revision cannot be read (no ``alembic_version``: a database never migrated)."""
    try:
        with engine.connect() as conn:
            conn.execute(_SELECT_1)
            try:
                revision = conn.execute(_CURRENT_REVISION).scalar_one_or_none()
            except DBAPIError:
                conn.rollback()  # PostgreSQL: the failed statement aborted the transaction
                if inspect(conn).has_table("alembic_version"):
                    raise
                revision = None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; its class names why
        return Check("database", False, f"unreachable ({type(exc).__name__})"), None
    return Check("database", True, "reachable"), revision


@functools.cache
def shipped_head() -> str:
    """The Alembic head of the shipped migrations, read once per process (the code a running
    process has does not change: ``/readyz`` re-read every migration script each time)."""
    return head_revision()


def schema_check(revision: str | None, head: str | None) -> Check:
    if revision is None:
        return Check("schema", False, f"no schema (head {head}): run wmproxy-admin migrate")
    if revision != head:
        return Check("schema", False, f"at {revision}, head is {head}: run wmproxy-admin migrate")
    return Check("schema", True, f"at head {head}")


class StaleCrl(NamedTuple):
    """A CRL that fails client verification: unreadable (``error``), or past its nextUpdate."""

    name: str
    error: str | None
    next_update: dt.datetime | None


class BrokenPolicy(NamedTuple):
    """A CA namespace policy file that cannot be read or parsed: the certificates it would
    decide are refused (:mod:`wmproxy.security.ca_policy`)."""

    name: str
    error: str  # the parse error, "line N: ..." (or why it cannot be read)


@dataclass(frozen=True)
class CaDirectory:
    """What a grid CA directory holds for the service's TLS verification: the CA certificate
    and CRL files (names, sorted), the CRLs that are unreadable or expired, the namespace policy
    files (names, sorted) and those that cannot be read or parsed."""

    ca_files: tuple[str, ...]
    crl_files: tuple[str, ...]
    stale_crls: tuple[StaleCrl, ...]
    policy_files: tuple[str, ...] = ()
    broken_policies: tuple[BrokenPolicy, ...] = ()


def broken_policy_effect(namespace_mode: str) -> str:
    """What the service does with the certificates an unparsable policy file would decide, in
    ``namespace_mode`` (:func:`wmproxy.security.ca_policy.Policies.check`)."""
    if namespace_mode.startswith("eugridpma_and_globus"):
        return "the certificates of its CA are refused"
    return "the certificates of its CA are refused unless its other policy file decides"


def read_ca_dir(ca_dir: str | Path, now: dt.datetime, grace: float = 0.0, *, policies: bool = True) -> CaDirectory:
    """Read ``ca_dir``: its ``<hash>.N`` CA certificates, its ``<hash>.rN`` CRLs, and which of
    those are unreadable or past their nextUpdate (+ ``grace`` seconds) at ``now``; with
    ``policies``, its ``<hash>.namespaces`` and ``<hash>.signing_policy`` files and which of
    those cannot be read or parsed (parsed as the service parses them, once per file version:
    :func:`wmproxy.security.ca_policy.load_file`).

    Raises:
        OSError: the directory cannot be listed.
    """
    directory = Path(ca_dir)
    names = sorted(entry.name for entry in directory.iterdir())
    crls = tuple(n for n in names if _CRL_NAME.match(n))
    stale: list[StaleCrl] = []
    for name in crls:
        try:
            crl = x509.load_pem_x509_crl((directory / name).read_bytes())
        except (OSError, ValueError) as exc:
            stale.append(StaleCrl(name, str(exc), None))
            continue
        next_update = crl.next_update_utc
        if next_update is not None and next_update + dt.timedelta(seconds=grace) < now:
            stale.append(StaleCrl(name, None, next_update))
    policy_files: list[str] = []
    broken: list[BrokenPolicy] = []
    if policies:
        key = os.fspath(ca_dir)
        for name in (n for n in names if _POLICY_NAME.match(n)):
            try:
                st = (directory / name).stat()
            except FileNotFoundError:  # a dangling link: no file, as the service sees it
                continue
            policy_files.append(name)
            parsed = ca_policy.load_file(key, name, (st.st_mtime_ns, st.st_size))
            if parsed.error:
                broken.append(BrokenPolicy(name, parsed.problem))
        ca_policy.forget_others(key, policy_files)
    return CaDirectory(tuple(n for n in names if _CA_NAME.match(n)), crls, tuple(stale), tuple(policy_files),
                       tuple(broken))


def ca_checks(ca_dir: Path, now: dt.datetime, grace: float = 0.0) -> tuple[Check, Check]:
    """The ``ca`` check (the directory holds a ``<hash>.N`` CA certificate: without one every
    client's handshake fails) and the ``crls`` check (every CRL readable and not past its
    nextUpdate + ``grace`` s), from one reading of ``ca_dir``."""
    ca, crls, *_ = ca_dir_checks(ca_dir, now, grace, "ignore")
    return ca, crls


def ca_dir_checks(ca_dir: str | Path, now: dt.datetime, grace: float = 0.0,
                  namespace_mode: str = ca_policy.DEFAULT_MODE) -> list[Check]:
    """:func:`ca_checks`, then the ``ca_policy`` checks, from one reading of ``ca_dir``: one
    warning per namespace policy file that cannot be read or parsed (its name and the error; it
    refuses its CA's users only, so the node stays in service), else one that passes (none read
    with ``namespace_mode`` ``ignore``)."""
    try:
        found = read_ca_dir(ca_dir, now, grace, policies=namespace_mode != "ignore")
    except OSError as exc:
        unreadable = f"cannot read the CA directory {ca_dir} ({type(exc).__name__})"
        return [Check("ca", False, unreadable), Check("crls", False, unreadable), Check("ca_policy", False, unreadable)]
    return [*_ca_and_crls(ca_dir, found), *_ca_policy_checks(found, namespace_mode)]


def _ca_policy_checks(found: CaDirectory, namespace_mode: str) -> list[Check]:
    if namespace_mode == "ignore":
        return [Check("ca_policy", True, "not read ([security] namespace_mode ignore)")]
    if found.broken_policies:
        effect = broken_policy_effect(namespace_mode)
        return [Check("ca_policy", True, f"{policy.name} cannot be parsed ({policy.error}): {effect}; fix or "
                                         "remove it", warning=True) for policy in found.broken_policies]
    return [Check("ca_policy", True, f"{len(found.policy_files)} policy files parse")]


def _ca_and_crls(ca_dir: str | Path, found: CaDirectory) -> tuple[Check, Check]:
    if found.ca_files:
        ca = Check("ca", True, f"{len(found.ca_files)} CA certificates")
    else:
        ca = Check("ca", False, f"no CA certificate (<hash>.0) in {ca_dir}: every client handshake fails; "
                                "install the CA certificates")
    if found.stale_crls:
        stale = [f"{c.name} unreadable" if c.next_update is None
                 else f"{c.name} expired {c.next_update:%Y-%m-%dT%H:%M:%SZ}" for c in found.stale_crls[:10]]
        return ca, Check("crls", False, "; ".join(stale) + ": run fetch-crl")
    return ca, Check("crls", True, f"{len(found.crl_files)} CRLs current")


def host_cert_check(host_cert: str | Path, now: dt.datetime) -> Check:
    """The ``host_cert`` check: ``[security] host_cert`` reads as a PEM certificate (the first
    of the file) valid at ``now``. An expired one fails every client's TLS handshake and every
    MyProxy renewal, whatever else is up."""
    try:
        cert = x509.load_pem_x509_certificate(Path(host_cert).read_bytes())
    except (OSError, ValueError) as exc:
        return Check("host_cert", False, f"cannot read the host certificate {host_cert} ({type(exc).__name__})")
    if cert.not_valid_after_utc < now:
        return Check("host_cert", False, f"{host_cert} expired {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}: every "
                                         "client handshake fails; install a new host certificate and key")
    if cert.not_valid_before_utc > now:
        return Check("host_cert", False, f"{host_cert} not valid before "
                                         f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}: is the clock right?")
    return Check("host_cert", True, f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def _owner_and_mode(path: Path) -> str:
    info = path.stat()
    return f"it belongs to {account_name(info.st_uid)} with mode {stat.S_IMODE(info.st_mode):04o}"


def _may(info: os.stat_result, user: pwd.struct_passwd, groups: set[int], bit: int) -> bool:
    """Whether ``user`` (of ``groups``) has permission ``bit`` (4 read, 1 search) on ``info``
    by its mode bits (ACLs are not looked at)."""
    if user.pw_uid == 0:
        return True
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode >> 6 & bit)
    if info.st_gid in groups:
        return bool(info.st_mode >> 3 & bit)
    return bool(info.st_mode & bit)


def unreadable_file(path: str | Path, what: str, user: pwd.struct_passwd | None = None) -> str | None:
    """Why the file ``path`` (``what``: "host key", "[mapping] ban_file"...) cannot be read, by
    this process's user, or (``user``) by that account, judged from the modes and owners of the
    file and of the directories on its way; None when it can. The text names the file, and for a
    permission problem its owner and mode (never its content)."""
    file = Path(path)
    if user is None:
        try:
            with open(file, "rb"):
                return None
        except PermissionError:
            me = account_name(os.geteuid())
            try:
                return f"{what} {file} is not readable by user {me}: {_owner_and_mode(file)}"
            except OSError:
                return f"{what} {file} is not readable by user {me}: a directory on its path cannot be entered"
        except OSError as exc:
            return f"cannot read the {what} {file}: {exc.strerror or exc}"
    try:
        file = file.resolve(strict=True)
    except OSError as exc:
        return f"cannot read the {what} {file}: {exc.strerror or exc}"
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in reversed(file.parents):
        if not _may(directory.stat(), user, groups, 1):
            return (f"{what} {file} is not readable by the service user {user.pw_name}: it cannot enter "
                    f"{directory} ({_owner_and_mode(directory)})")
    if not _may(file.stat(), user, groups, 4):
        return (f"{what} {file} is not readable by the service user {user.pw_name}: {_owner_and_mode(file)}; "
                f"`chown {user.pw_name} {file}` (as root)")
    return None


def _no_passphrase() -> bytes:
    raise ValueError("it is encrypted (it has a passphrase): the service needs it unencrypted")


def load_host_pair(context: ssl.SSLContext, host_cert: str | Path, host_key: str | Path) -> None:
    """``context.load_cert_chain`` of the host certificate and key, never asking for a
    passphrase (OpenSSL would prompt on the terminal).

    Raises:
        OSError: a file cannot be read; ssl.SSLError: not PEM, or the key is not the certificate's.
        ValueError: the key is encrypted.
    """
    context.load_cert_chain(host_cert, host_key, password=_no_passphrase)


def host_pair_problem(host_cert: str | Path, host_key: str | Path, user: pwd.struct_passwd | None = None) -> str | None:
    """Why the host certificate and key cannot be the TLS server's pair, as the service loads
    them (:func:`load_host_pair`): a file that this process's user (or ``user``:
    :func:`unreadable_file`) cannot read, that is not PEM, an encrypted key, a key that does not
    match the certificate, a key that group or others may read (every process refuses to
    start then: :func:`wmproxy.security.filemodes.check_host_key_mode`); None when they load.
    The text names the file(s)."""
    for path, what in ((host_cert, "host certificate"), (host_key, "host key")):
        if (problem := unreadable_file(path, what, user)) is not None:
            return problem
    try:
        check_host_key_mode(host_key)
    except FileModeError as exc:
        return f"the host key {exc}"
    try:
        load_host_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), host_cert, host_key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"the host key {host_key} does not match the host certificate {host_cert}"
        return f"the host certificate {host_cert} and key {host_key} cannot be loaded (not PEM?): {exc}"
    except ValueError as exc:
        return f"the host key {host_key} cannot be loaded: {exc}"
    except OSError as exc:
        return f"the host certificate {host_cert} and key {host_key} cannot be loaded: {exc.strerror or exc}"
    return None


def host_key_check(host_cert: str | Path, host_key: str | Path) -> Check:
    """The ``host_key`` check: the host certificate and key load as a pair
    (:func:`host_pair_problem`), read as this process's user (``wmproxy-metrics`` runs as the
    service user): an unreadable or mismatched key fails every client's TLS handshake."""
    problem = host_pair_problem(host_cert, host_key)
    if problem is not None:
        return Check("host_key", False, f"{problem}: every client handshake fails")
    return Check("host_key", True, f"{host_key} is the host certificate's key")


def mapping_problems(settings: Settings, user: pwd.struct_passwd | None = None) -> list[str] | None:
    """With ``[mapping] mode = gridmap``, why submissions are refused whoever asks: a set mapping
    file (grid-mapfile, VOMS rules, ban list) that cannot be read (by ``user``:
    :func:`unreadable_file`) or parsed, or neither a grid-mapfile nor VOMS rules set. None
    with ``mode = none`` (nothing read); [] when fine."""
    from wmproxy.security.gridmap import MappingError, read_policy

    mapping = settings.mapping
    if mapping.mode != "gridmap":
        return None
    files = {"[mapping] gridmap_file": mapping.gridmap_file, "[mapping] voms_rules_file": mapping.voms_rules_file,
             "[mapping] ban_file": mapping.ban_file}
    problems = [problem for what, path in files.items()
                if path and (problem := unreadable_file(path, what, user)) is not None]
    if not mapping.gridmap_file and not mapping.voms_rules_file:
        problems.append("[mapping] mode = gridmap with neither gridmap_file nor voms_rules_file: every "
                        "submission is refused")
    if not problems:
        try:
            read_policy(mapping.gridmap_file, mapping.voms_rules_file, mapping.ban_file)
        except MappingError as exc:
            problems.append(str(exc))
    return problems


def catalogue_problem(settings: Settings, user: pwd.struct_passwd | None = None) -> str | None:
    """Why ``[jobs] ce_catalogue`` cannot be used for matching: unreadable (by ``user``:
    :func:`unreadable_file`), not ClassAds, a bad CE; None when fine or unset (the built-in CE)."""
    from wmproxy.errors import WMProxyError
    from wmproxy.services.matchmaking import ce_catalogue

    path = settings.jobs.ce_catalogue
    if not path:
        return None
    if (problem := unreadable_file(path, "[jobs] ce_catalogue", user)) is not None:
        return problem
    try:
        ce_catalogue(path)
    except WMProxyError as exc:
        return str(exc)
    return None


def configured_files_checks(settings: Settings) -> list[Check]:
    """The ``mapping`` check (with ``[mapping] mode = gridmap``: its files readable and parsed,
    :func:`mapping_problems`; a problem refuses every submission) and the ``ce_catalogue`` check
    (when one is set: :func:`catalogue_problem`; a problem leaves every started job waiting)."""
    checks = []
    problems = mapping_problems(settings)
    if problems:
        checks.append(Check("mapping", False, "; ".join(problems) + ": every submission is refused"))
    elif problems is not None:
        checks.append(Check("mapping", True, "the mapping files read"))
    if settings.jobs.ce_catalogue:
        problem = catalogue_problem(settings)
        checks.append(Check("ce_catalogue", True, f"{settings.jobs.ce_catalogue} reads") if problem is None
                      else Check("ce_catalogue", False, f"{problem}: started jobs stay waiting"))
    return checks


def policy_check(settings: Settings) -> Check | None:
    """The ``policy`` check: ``[security] policy_file`` reads and parses (a missing or
    unreadable one refuses every caller); None when no policy file is set."""
    from wmproxy.services.authz import policy_file_problem

    if not settings.security.policy_file:
        return None
    problem = policy_file_problem(settings)
    if problem is not None:
        return Check("policy", False, problem)
    return Check("policy", True, f"{settings.security.policy_file} reads")


def service_check(bind: str, timeout: float = 5.0) -> Check:
    """Does the service's ``[service] bind`` address accept a TCP connection (a wildcard
    address is tried on loopback)? No TLS handshake is made.

    The lookup of a bind given as a name and the connection share one deadline, ``timeout``
    seconds: the lookup runs as the renewal worker's do (:func:`wmproxy.renewal.connect.getaddrinfo_within`,
    a short-lived thread waited for until the deadline, at most
    :data:`~wmproxy.renewal.connect.MAX_PENDING_LOOKUPS` at once), so a resolver that does not
    answer fails the check instead of holding ``/readyz`` (glibc waits up to 30 s, more with
    several name servers). A literal address needs no resolver."""
    try:
        host, port = parse_host_port(bind, 7443)
    except ValueError:
        host, port = bind.rpartition(":")[0], int(bind.rpartition(":")[2] or 7443)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))  # noqa: S104
    deadline = time.monotonic() + timeout
    try:
        addresses = getaddrinfo_within(host, port, deadline, resolve=socket.getaddrinfo)
    except OSError as exc:  # LookupTimeoutError (a TimeoutError) included
        return Check("service", False, f"{host}:{port} cannot be looked up ({type(exc).__name__}: {exc}): "
                                       "is [service] bind's name known to this host's resolver?")
    try:
        with connect_within(addresses, deadline):
            pass
    except OSError as exc:
        return Check("service", False, f"{host}:{port} refuses connections ({type(exc).__name__}): is gunicorn up?")
    return Check("service", True, f"listening on {host}:{port}")


def readiness(settings: Settings, engine: Engine, now: dt.datetime | None = None) -> list[Check]:
    """All readiness checks of this node, in order: database, schema, CA certificates, CRLs,
    CA namespace policy files (one check per unparsable file), host certificate, host key, the
    policy file (when one is set), the mapping files (``[mapping] mode = gridmap``), the CE
    catalogue (when one is set), service port."""
    now = now or dt.datetime.now(dt.UTC)
    database, revision = database_check(engine)
    checks = [database]
    if database.ok:
        checks.append(schema_check(revision, shipped_head()))
    checks.extend(ca_dir_checks(settings.security.ca_dir, now, settings.metrics.crl_grace,
                                settings.security.namespace_mode))
    checks.append(host_cert_check(settings.security.host_cert, now))
    checks.append(host_key_check(settings.security.host_cert, settings.security.host_key))
    if (policy := policy_check(settings)) is not None:
        checks.append(policy)
    checks.extend(configured_files_checks(settings))
    checks.append(service_check(settings.service.bind))
    return checks
