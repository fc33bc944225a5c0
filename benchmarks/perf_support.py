"""Shared harness of the issue-14 benchmarks: a throwaway PKI and deployment (gunicorn over TLS
with client authentication, SQLite or a fresh PostgreSQL database), persistent HTTPS clients in
separate processes, and side-by-side windows reported as ratios (min/median/max).

Absolute numbers move with the machine's load; each ratio compares figures measured in
adjacent windows of the same round, so the ratios move much less.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import os
import sqlite3
import ssl
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The checkout whose ``wmproxy`` and ``tests`` helpers are imported: this one, or the one
#: ``WMPROXY_BENCH_CHECKOUT`` names (a benchmark's ``--against`` runs another checkout's code).
REPO = Path(os.environ.get("WMPROXY_BENCH_CHECKOUT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(REPO))

from tests.conftest import _postgres_database
from tests.integration.service import BIN, Deployment, free_port, wait_for_tls, write_config
from wmproxy.security.pki import CertificateAuthority, create_ca, write_proxy

ENDPOINT_PATH = "/glite_wms_wmproxy_server"
WMPROXY_NS = "http://glite.org/wms/wmproxy"
#: Delegation ids a delegation benchmark's client (or window) uses in turn: the service keeps at
#: most ``[limits] max_delegations_per_user`` (1000) per DN (stop 49), so a client re-delegates
#: under the ids it used before, as a user's automatic delegation and ``-d <id>`` do (the first
#: use of each id stores a new delegation, later ones replace it).
DELEGATION_IDS = 200
DELEGATION2_NS = "http://www.gridsite.org/namespaces/delegation-2"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(namespace: str, operation: str, **parts: str) -> bytes:
    """An rpc/literal SOAP 1.1 request (unqualified parts), as the reference clients send."""
    from xml.sax.saxutils import escape

    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in parts.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" '
            f'xmlns:ns="{namespace}"><SOAP-ENV:Body><ns:{operation}>{inner}</ns:{operation}>'
            f"</SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


@dataclass
class Site:
    """A running deployment plus what clients need to reach it."""

    root: Path
    deployment: Deployment
    proxy: Path
    ca_dir: Path
    database_url: str

    @property
    def port(self) -> int:
        return self.deployment.port

    @property
    def pgid(self) -> int:
        """Process group of the service's gunicorn (master and workers)."""
        return self.deployment.processes[0].pid


@contextlib.contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root}/wmproxy.db"
    else:
        with contextlib.contextmanager(_postgres_database)() as url:  # the tests' fresh database
            yield url


#: CA certificates in an IGTF trust store as sites install it (``ca-policy-egi-core``: about a
#: hundred CAs, each a ``<hash>.0`` certificate and a ``<hash>.r0`` CRL beside its signing policy
#: and namespaces files).
IGTF_CAS = 100


def add_trust_anchors(directory: Path, count: int) -> None:
    """Write ``count`` more CAs into the grid CA directory ``directory``, as an IGTF trust store
    holds them: for each, ``<hash>.0`` (a self-signed CA certificate), ``<hash>.r0`` (its empty
    CRL), ``<hash>.signing_policy`` and ``<hash>.namespaces``, and under the old-style hash
    (OpenSSL's ``-subject_hash_old``) ``<old>.0`` a link to the certificate, as the IGTF packages
    install it, and ``<old>.r0`` a copy of the CRL, as fetch-crl writes it; the policy files
    confine each to ``/C=ZZ/O=Trust Store Filler/...``, as IGTF's do. One RSA key signs them
    all (what a verification costs does not depend on it; making a hundred keys would)."""
    import datetime as dt
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    for number in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "ZZ"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trust Store Filler"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"Filler CA {number}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(number + 1).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now - dt.timedelta(hours=1))
               .next_update(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
        digest = f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"
        (directory / f"{digest}.0").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{digest}.r0").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        old_style = f"{int.from_bytes(hashlib.md5(name.public_bytes()).digest()[:4], 'little'):08x}"  # noqa: S324
        (directory / f"{old_style}.0").symlink_to(f"{digest}.0")
        (directory / f"{old_style}.r0").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        issuer = f"/C=ZZ/O=Trust Store Filler/CN=Filler CA {number}"
        (directory / f"{digest}.signing_policy").write_text(
            f"access_id_CA X509 '{issuer}'\npos_rights globus CA:sign\n"
            "cond_subjects globus '\"/C=ZZ/O=Trust Store Filler/*\"'\n")
        (directory / f"{digest}.namespaces").write_text(
            f'TO Issuer "{issuer}" \\\n  PERMIT Subject "/C=ZZ/O=Trust Store Filler/.*"\n')


@contextlib.contextmanager
def site(root: Path, database_url: str, *, extra: str = "", max_isb: int = 1_000_000,
         env: dict[str, str] | None = None, cas: int = 0, voms: bool = False) -> Iterator[Site]:
    """PKI, configuration (``extra`` appended: more sections; ``env``: ``WMPROXY_*`` overrides),
    ``wmproxy-admin init`` and gunicorn; stopped afterwards. ``cas``: more CAs in the CA
    directory (:func:`add_trust_anchors`). ``voms``: the user's proxy carries a VOMS AC of VO
    atlas (three FQANs, made by the real ``voms-proxy-fake``, as a grid user's
    ``voms-proxy-init`` proxy), and the service's vomsdir trusts its server."""
    ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
    add_trust_anchors(root / "certificates", cas)
    host_cert, host_key = ca.issue_host("localhost", root / "host")
    user = ca.issue_user("Bench User", root / "user")
    proxy = root / "user" / "x509up"
    if voms:
        voms_proxy(ca, root, proxy)
    else:
        write_proxy(user, proxy, lifetime=3600 * 12)
    port = free_port()
    config = root / "wmproxy.conf"
    write_config(config, db_url=database_url, ca_dir=root / "certificates", host_cert=host_cert,
                 host_key=host_key, state=root, port=port, max_isb=max_isb, extra=extra)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    environment.update(env or {})
    environment["WMPROXY_CONFIG"] = str(config)
    dep = Deployment(config=config, state=root, port=port, env=environment)
    init = dep.run(str(BIN / "wmproxy-admin"), "init")
    if init.returncode != 0:
        raise SystemExit(f"wmproxy-admin init failed: {init.stderr}")
    dep.start_gunicorn()
    try:
        yield Site(root, dep, proxy, root / "certificates", database_url)
    finally:
        dep.stop()


def voms_proxy(ca: CertificateAuthority, root: Path, out: Path) -> None:
    """A VOMS proxy of the user under ``root / "user"`` at ``out`` (12 h), its AC signed by a
    ``voms.localhost`` server that ``root / "vomsdir"`` (the service's) trusts."""
    import shutil

    from tests.voms_support import run_voms_proxy_fake, voms_server_of

    binary = shutil.which("voms-proxy-fake")
    if binary is None:
        raise SystemExit("--voms needs voms-proxy-fake (Debian voms-clients; scripts/setup-system.sh installs it)")
    server = voms_server_of(ca, root)
    made = run_voms_proxy_fake(binary, root / "user", root / "certificates", server, out, hours=12)
    if made.returncode != 0:
        raise SystemExit(f"voms-proxy-fake failed: {made.stderr}")


def start_other_app(s: Site, app: str, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Another gunicorn with the deployment's own configuration (same TLS settings, workers,
    threads) serving the WSGI ``app`` on a new port; stopped with the deployment. Returns
    ``(port, process group id)``."""
    port = free_port()
    dep = s.deployment
    saved = dict(dep.env)
    dep.env.update(env or {})
    dep.env["WMPROXY_SERVICE_BIND"] = f"127.0.0.1:{port}"
    try:
        proc = dep.start([str(BIN / "gunicorn"), "-c", str(REPO / "deploy" / "gunicorn.conf.py"), app],
                         f"gunicorn-{port}.log")
    finally:
        dep.env.clear()
        dep.env.update(saved)
    wait_for_tls(port)
    return port, proc.pid


def sqlite_reader(path: str) -> sqlite3.Connection:
    """A plain read-only ``sqlite3`` connection to the database file ``path``, in autocommit
    (each query sees the latest commits), usable from any thread: for a benchmark's wait or
    sampling loop, which SQLAlchemy (a session or pooled connection per look) made cost a
    share of the CPU being measured."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)


def client_context(ca_dir: Path, proxy: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(capath=str(ca_dir))
    ctx.load_cert_chain(str(proxy))
    return ctx


def post(conn: http.client.HTTPSConnection, body: bytes) -> bytes:
    conn.request("POST", ENDPOINT_PATH, body=body, headers={"Content-Type": "text/xml; charset=utf-8",
                                                            "SOAPAction": '""'})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return data


# --- windows of load from client processes ----------------------------------------------------

Action = Callable[[http.client.HTTPSConnection, int], None]
"""``action(connection, i)``: one operation (the i-th of this client in this window)."""


@dataclass(frozen=True)
class Job:
    port: int
    ca_dir: str
    proxy: str
    seconds: float
    action: Action
    client: int


def _client(job: Job) -> tuple[int, float]:
    ctx = client_context(Path(job.ca_dir), Path(job.proxy))
    conn = http.client.HTTPSConnection("localhost", job.port, context=ctx, timeout=120)
    job.action(conn, -1 - job.client)  # connect and warm up outside the window
    count = 0
    start = time.perf_counter()
    end = start + job.seconds
    while True:
        job.action(conn, job.client * 1_000_000 + count)
        count += 1
        now = time.perf_counter()
        if now >= end:
            break
    conn.close()
    return count, now - start


_pools: dict[str, multiprocessing.pool.Pool] = {}


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command (state, ppid, pgrp, ..., utime at 11,
    stime at 12), or None for a process gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_seconds(fields: list[str]) -> float:
    """User + system CPU seconds of :func:`_stat`'s ``fields``."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``
    (a gunicorn master started in its own session, and its workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None and int(fields[2]) == pgid:
            total += _cpu_seconds(fields)
    return total


def pids_cpu(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each live process of ``pids`` (gone ones left out)."""
    return {pid: _cpu_seconds(fields) for pid in pids if (fields := _stat(pid)) is not None}


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes of ``after`` used since ``before`` (:func:`pids_cpu` readings): a
    process started since counts whole, one gone since is left out."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def database_backends(url: str) -> Callable[[], list[int]] | None:
    """For a PostgreSQL ``url``: a function listing the pids of the server processes serving that
    database (``pg_stat_activity``, the asking connection left out), whose CPU is the database's
    share of a window's work (outside the service's process group). None for SQLite (in process)."""
    if not url.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def pids() -> list[int]:
        with engine.connect() as conn:
            return [int(pid) for pid in conn.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalars()]
    return pids


@dataclass(frozen=True)
class Window:
    """One window: operations per second, server CPU seconds per operation, and (PostgreSQL) the
    database server's CPU seconds per operation for this database's connections."""

    rate: float
    cpu_per_op: float
    db_cpu_per_op: float = 0.0


def rate(port: int, s: Site, action: Action, clients: int, seconds: float, pgid: int | None = None) -> Window:
    """``clients`` persistent connections (one process each) doing ``action`` for ``seconds``;
    with ``pgid``, the CPU the server's process group spent meanwhile is divided by the operations."""
    if "clients" not in _pools:
        _pools["clients"] = multiprocessing.get_context("fork").Pool(4)
    jobs = [Job(port, str(s.ca_dir), str(s.proxy), seconds, action, c) for c in range(clients)]
    before = group_cpu(pgid) if pgid else 0.0
    results = _pools["clients"].map(_client, jobs)
    used = group_cpu(pgid) - before if pgid else 0.0
    operations = sum(count for count, _ in results)
    return Window(sum(count / elapsed for count, elapsed in results), used / max(operations, 1))


def close_clients() -> None:
    """Stop the client processes (their state belongs to one deployment: call at its end)."""
    pool = _pools.pop("clients", None)
    if pool is not None:
        pool.terminate()
        pool.join()


def summary(values: Sequence[float], digits: int = 3) -> str:
    """``min … median … max …`` of ``values`` with ``digits`` decimals."""
    return (f"min {min(values):.{digits}f}  median {statistics.median(values):.{digits}f}  "
            f"max {max(values):.{digits}f}")


def report(name: str, values: Sequence[float], target: float | None = None) -> None:
    """Print one ratio line: ``name  min … median … max …  (target ≥ x: met|NOT met)``."""
    verdict = ""
    if target is not None:
        verdict = f"  (target >= {target}: {'met' if statistics.median(values) >= target else 'NOT met'} at the median)"
    print(f"{name:<58} {summary(values)}{verdict}", flush=True)
