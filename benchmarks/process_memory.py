"""Stop 52: does each long-lived process's memory stop growing once its per-process caches are full?

Four parts, the first three in this process (so that ``tracemalloc`` sees what the code keeps),
each driven well past the caps of the caches it fills (256 entries for the chain caches of
:mod:`wmproxy.security`, 1,024 for the SOAP principal cache):

* ``renewal``: the renewal worker (:class:`~wmproxy.renewal.worker.RenewalWorker`) against a
  real Debian ``myproxy-server`` on loopback (``tests.peers.myproxy_server``): ``--users``
  credentials stored with ``myproxy-init``, then ``--rounds`` passes, each renewing every user's
  credential under a new delegation id (a new delegation, a new delegated proxy, a new job and
  its proxy file per renewal: ``users x rounds`` distinct delegations and chains);
* ``execution``: the execution worker (:class:`~wmproxy.execution.worker.ExecutionWorker` with
  the local backend, as ``wmproxy-execution`` builds it) running ``--jobs`` trivial jobs
  (``/bin/true``) registered and started in batches of 50;
* ``soap``: the SOAP application (:class:`~wmproxy.soap.app.WMProxyApplication`, with the real
  TLS authentication reading each caller's chain from a stand-in socket) serving ``--callers``
  distinct callers (DNs) six requests each: getProxyReq + putProxy, jobSubmit, getJobStatus,
  getDelegatedProxyInfo, getVersion;
* ``gunicorn``: the same callers over TLS to a real deployment's one gunicorn worker (its RSS
  printed); ``--reuse N`` takes N callers in turn instead of a new one each time; ``--heaptrack DIR``
  attaches heaptrack (``worker_heaptrack.py``) to the worker at the first point after warm-up and
  prints, at the end, what the worker allocated since and still held (by C call site).

At ``--points`` evenly spaced points (and one after a short warm-up) it prints the process's RSS
(``/proc/<pid>/status`` VmRSS, with its growth per operation since the point before) and, with
``--trace``, ``tracemalloc``'s traced total, with the sizes of the caches it knows
(:func:`cache_sizes`; for the execution worker also the sizes of its and its backend's dicts,
lists and sets); at the end, with ``--trace``, the allocation sites that grew most between the
first point after warm-up and the last. Growth that stops once the caches are full is the
plateau. With ``--trace`` the RSS includes tracemalloc's own bookkeeping (about 100 bytes a live
block, outside the traced total): read RSS from a run without it.

The execution part must run as root (a mapped account is created, as in
``collection_execution.py``); the renewal part needs Debian's ``myproxy-server`` and ``myproxy``.

    .venv/bin/python benchmarks/process_memory.py [--parts renewal,execution,soap,gunicorn] [--trace]
        [--users 64] [--rounds 10] [--jobs 3000] [--callers 1500] [--reuse N] [--points 6]
        [--database sqlite|postgresql] [--heaptrack DIR [--leaks 15]]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import linecache
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


def cache_sizes() -> dict[str, str]:
    """``len / cap`` of the per-process caches of this process that grow with traffic."""
    from wmproxy.security import ca_policy, chain, delegation, pci, voms
    from wmproxy.services import delegation as delegation_service
    from wmproxy.services.renewal import jobfiles
    from wmproxy.soap import auth

    caches: dict[str, Any] = {
        "chain._pem_certificates": chain._pem_certificates,
        "chain._encodings": chain._encodings,
        "chain._chain_facts": chain._chain_facts,
        "chain._openssl_certs": chain._openssl_certs,
        "chain._verified_issuers": chain._verified_issuers,
        "chain._verified_chains": chain._verified_chains,
        "delegation._safe_subjects": delegation._safe_subjects,
        "voms._decoded": voms._decoded,
        "ca_policy._logged": ca_policy._logged,
        "services.delegation._STORED_CHAINS": delegation_service._STORED_CHAINS,
        "services.renewal.jobfiles._checked": jobfiles._checked,
        "soap.auth._cache": auth._cache._items,
    }
    out = {name: f"{len(c)}/{int(c.maxsize)}" for name, c in caches.items()}
    info = pci.decode_pci.cache_info()
    out["pci.decode_pci"] = f"{info.currsize}/{info.maxsize}"
    for name, kept in (("services.delegation._RECENT", delegation_service._RECENT),
                       ("services.delegation._PENDING", delegation_service._PENDING)):
        out[name] = "+".join(f"{len(c)}/{int(c.maxsize)}" for c in kept.values()) or "0"
    out["services.delegation._since_look"] = f"{len(delegation_service._since_look)}/{delegation_service._LOOKED_DNS}"
    return out


class Meter:
    """Prints RSS (and the traced total) at points; keeps the snapshots for :meth:`growth`."""

    def __init__(self, part: str, trace: bool, pid: int | str = "self") -> None:
        self.part = part
        self.trace = trace
        self.pid = pid  # whose RSS (tracemalloc: this process's)
        #: the snapshots of the second point (the first after warm-up) and the last, dumped to
        #: files: kept in memory, their traces would count in the traced total and the RSS
        self.snapshots: list[Path] = []
        self._dir = tempfile.TemporaryDirectory(prefix="process-memory-snapshots-")
        self._taken = 0
        self.last: tuple[int, float] | None = None  # (operations, RSS) at the point before

    def point(self, done: int, what: str, extra: Callable[[], dict[str, str]] | None = None) -> None:
        gc.collect()
        rss = rss_mb(self.pid)
        line = f"  [{self.part}] {done:6d} {what}: RSS {rss:7.1f} MB"
        if self.trace:
            traced = tracemalloc.get_traced_memory()[0] / 2**20
            line += f", traced {traced:7.2f} MB"
            self._taken += 1
            dump = Path(self._dir.name) / f"{self._taken}.snapshot"
            tracemalloc.take_snapshot().dump(str(dump))
            if len(self.snapshots) == 3:
                self.snapshots.pop().unlink()
            self.snapshots.append(dump)
        if self.last is not None and done > self.last[0]:
            per = (rss - self.last[1]) * 1024 / (done - self.last[0])
            line += f", {per:+.2f} KB per {what.rstrip('s')} since the point before"
        self.last = (done, rss)
        print(line, flush=True)
        sizes = (extra or cache_sizes)()
        print("      " + ", ".join(f"{k} {v}" for k, v in sizes.items()), flush=True)

    def growth(self, top: int = 12) -> None:
        if len(self.snapshots) < 3:
            return
        # from the second point (the first after warm-up) to the last
        ignored = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)]
        second, last = (tracemalloc.Snapshot.load(str(self.snapshots[i])).filter_traces(ignored) for i in (1, -1))
        stats = last.compare_to(second, "lineno")
        print(f"  [{self.part}] allocation sites that grew most from the second point to the last:")
        for stat in stats[:top]:
            print(f"      {stat.size_diff / 1024:+9.1f} KB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
        self._dir.cleanup()


def points(total: int, count: int) -> list[int]:
    return sorted({max(1, round(total * (i + 1) / count)) for i in range(count)})


# --- renewal ---


def renewal(args: argparse.Namespace, trace: bool) -> None:
    from renewal_worker_rate import renewable_users, seed

    from tests.peers.myproxy_server import have_myproxy
    from wmproxy.renewal.worker import RenewalWorker

    if not have_myproxy():
        raise SystemExit("myproxy-server / myproxy tools not installed (Debian packages myproxy-server, myproxy)")
    meter = Meter("renewal", trace)
    with tempfile.TemporaryDirectory(prefix="process-memory-renewal-") as tmp, \
            renewable_users(Path(tmp), args.users, "Memory User") as (server, users, rt):
        worker = RenewalWorker(rt, "memory", 1)
        wanted = set(points(args.rounds, args.points))
        renewed = 0
        for r in range(args.rounds):
            seed(rt, users, Path(tmp), server.port, f"round-{r}")  # a new delegation per user and round
            report = worker.step()
            assert report.renewed == len(users) and report.pushed == len(users), report
            renewed += report.renewed
            if r + 1 in wanted or r == 0:
                meter.point(renewed, "renewals")
    meter.growth()


# --- execution ---



def container_sizes(*objects: Any) -> dict[str, str]:
    """The sizes of the dicts, lists, sets and deques held in the attributes of ``objects``."""
    out = {}
    for obj in objects:
        for name, value in vars(obj).items():
            if isinstance(value, dict | list | set | deque) and not name.startswith("__"):
                out[f"{type(obj).__name__}.{name}"] = str(len(value))
    return out


def compiled_cache_size(rt: Any) -> str:
    """``len / cap`` of SQLAlchemy's compiled statement cache of the runtime's engine."""
    cache = rt.session_factory.kw["bind"]._compiled_cache
    return f"{len(cache)}/{cache.capacity}"


def execution(args: argparse.Namespace, trace: bool) -> None:
    import os
    import shutil

    from collection_execution import RunningWorker, mapped_site
    from perf_support import sqlite_reader

    from tests.accounts import local_accounts
    from wmproxy.domain import FINAL_STATES
    from wmproxy.execution.__main__ import build_backends, ce_refreshers
    from wmproxy.execution.purging import purge_tasks
    from wmproxy.execution.worker import ExecutionWorker
    from wmproxy.services.submission import register_job, start_job

    if os.geteuid() != 0:
        raise SystemExit("the execution part must run as root: it creates a mapped account (useradd)")
    meter = Meter("execution", trace)
    final = [s.value for s in FINAL_STATES]
    with local_accounts({"usr": ["usr"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="process-memory-execution-", dir="/var/tmp"))
        try:
            rt, principal, delegation = mapped_site(root, accounts.name("usr"), 8, 100)
            backends = build_backends(rt.settings, ["local"])
            worker = ExecutionWorker(rt, backends, "memory",
                                     periodic=[*ce_refreshers(rt, backends), *purge_tasks(rt)])
            running = RunningWorker(worker)  # the worker's loop in a thread of its own
            reader = sqlite_reader(f"{root}/wmproxy.db")
            wanted = points(args.jobs, args.points)
            batch = 50
            submitted = 0
            try:
                while submitted < args.jobs:
                    ids = []
                    for _ in range(min(batch, args.jobs - submitted)):
                        job = register_job(rt, principal, '[ Executable = "/bin/true"; ]', delegation)
                        start_job(rt, principal, job.job_id)
                        ids.append(job.job_id)
                    submitted += len(ids)
                    _wait_ended(reader, ids, final)
                    if submitted >= wanted[0] or submitted == batch:
                        while wanted and submitted >= wanted[0]:
                            wanted.pop(0)
                        meter.point(submitted, "jobs", lambda: {
                            **container_sizes(worker, worker.wakeup, *worker.backends.values()),
                            "sqlalchemy compiled cache": compiled_cache_size(rt), **cache_sizes()})
            finally:
                running.close()
                reader.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    meter.growth()


def _wait_ended(reader: Any, ids: list[str], final: list[str]) -> None:
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        states = [reader.execute("select state from jobs where id = ?", (job_id,)).fetchone() for job_id in ids]
        if all(row is not None and row[0] in final for row in states):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{len(ids)} jobs did not end within 1800 s")


# --- soap ---


class _VerifiedChain:
    """What :func:`wmproxy.soap.auth.verified_chain_der` reads of a TLS connection: its
    verified chain (``_sslobj.get_verified_chain()``), here a caller's DER certificates."""

    class _Der:
        def __init__(self, der: bytes) -> None:
            self.der = der

        def public_bytes(self, _encoding: int) -> bytes:
            return self.der

    def __init__(self, ders: list[bytes]) -> None:
        self.certs = [self._Der(d) for d in ders]

    def get_verified_chain(self) -> list[Any]:
        return self.certs


def tls_socket(ders: list[bytes]) -> Any:
    """An unconnected :class:`ssl.SSLSocket` whose verified chain is ``ders`` (leaf first): what
    gunicorn puts in ``environ["gunicorn.socket"]`` after a handshake, for the real
    :func:`~wmproxy.soap.auth.tls_principal`."""
    import ssl

    sock = ssl.SSLSocket.__new__(ssl.SSLSocket)
    sock._sslobj = _VerifiedChain(ders)  # type: ignore[attr-defined]
    return sock


def soap(args: argparse.Namespace, trace: bool) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding
    from perf_support import database
    from soap_inprocess import in_process_runtime, post_to

    from tests import key_support
    from wmproxy.security.pki import create_ca
    from wmproxy.security.proxy import make_proxy
    from wmproxy.soap.app import WMProxyApplication

    key_support.install()  # distinct RSA keys made fast, for the callers and the service's requests
    meter = Meter("soap", trace)
    with tempfile.TemporaryDirectory(prefix="process-memory-soap-") as tmp, \
            database(args.database, Path(tmp)) as url:
        root = Path(tmp)
        ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
        ca_der = ca.cert.public_bytes(Encoding.DER)
        rt = in_process_runtime(root, url, key_pool=0)
        app = WMProxyApplication(rt)  # the caller authenticated by its TLS chain (tls_socket)
        path = rt.settings.service.endpoint_path
        wanted = points(args.callers, args.points)
        done = 0
        for i in range(args.callers):
            user = ca.issue_user(f"Memory Caller {i}")
            proxy = make_proxy(user, lifetime=12 * 3600)
            sock = tls_socket([proxy.cert.public_bytes(Encoding.DER), user.cert.public_bytes(Encoding.DER), ca_der])
            environ = {"gunicorn.socket": sock}
            done += caller_requests(functools.partial(post_to, app, path, **environ), proxy)
            if i + 1 == 20 or i + 1 in wanted:  # after 120 requests: warmed up
                meter.point(done, "requests")
    meter.growth()


def caller_requests(post: Callable[[bytes], bytes], proxy: Any) -> int:
    """A new caller's requests (``post`` sends one and returns the reply; ``proxy``, the caller's
    credential, signs the delegation): delegation-2 getProxyReq + putProxy, jobSubmit,
    getJobStatus, getDelegatedProxyInfo, getVersion. Returns their count."""
    from lxml import etree
    from perf_support import DELEGATION2_NS, WMPROXY_NS, envelope

    from wmproxy.security.proxy import sign_proxy_request

    def send(operation: str, namespace: str = WMPROXY_NS, **parts: str) -> Any:
        reply = post(envelope(namespace, operation, **parts))
        root = etree.fromstring(reply)
        assert not root.xpath("//*[local-name()='Fault']"), reply[:600]
        return root

    csr = send("getProxyReq", DELEGATION2_NS, delegationID="memory").findtext(".//getProxyReqReturn")
    signed = sign_proxy_request(csr.encode(), proxy, lifetime=6 * 3600)
    send("putProxy", DELEGATION2_NS, delegationID="memory", proxy=signed.decode())
    job = send("jobSubmit", jdl='[ Executable = "/bin/true"; Requirements = true; ]',
               delegationId="memory").findtext(".//id")
    send("getJobStatus", jobId=job)
    send("getDelegatedProxyInfo", delegationID="memory")
    send("getVersion")
    return 6


def gunicorn(args: argparse.Namespace, trace: bool) -> None:
    """:func:`soap`'s callers over TLS to a real deployment (``perf_support.site``: gunicorn with
    one worker, each caller a new connection with its own proxy); the worker's RSS is printed."""
    import http.client

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_certificate
    from perf_support import client_context, database, post, site
    from worker_memory import worker_pid

    from tests import key_support
    from wmproxy.security.pki import CertificateAuthority, write_proxy

    key_support.install()  # distinct RSA keys made fast, for the callers
    with tempfile.TemporaryDirectory(prefix="process-memory-gunicorn-") as tmp, \
            database(args.database, Path(tmp)) as url, \
            site(Path(tmp), url, env={"WMPROXY_SERVICE_WORKERS": "1", "WMPROXY_SECURITY_AUTHORIZED_USERS": "*"}) as s:
        root = Path(tmp)
        ca_file = next(p for p in s.ca_dir.glob("*.0") if not p.is_symlink())
        key = serialization.load_pem_private_key((root / "ca" / "key.pem").read_bytes(), None)
        ca = CertificateAuthority(load_pem_x509_certificate(ca_file.read_bytes()), key, s.ca_dir)  # type: ignore[arg-type]
        meter = Meter("gunicorn", False, worker_pid(s))
        wanted = points(args.callers, args.points)
        done = 0
        made: dict[int, tuple[Path, Any]] = {}  # with --reuse, the callers made so far
        tracker: tuple[Any, Path] | None = None
        for i in range(args.callers):
            n = i % args.reuse if args.reuse else i
            path = root / "callers" / f"x509up_{n}"
            if n not in made:
                made[n] = path, write_proxy(ca.issue_user(f"Memory Caller {n}"), path, lifetime=12 * 3600)
            conn = http.client.HTTPSConnection("localhost", s.port, context=client_context(s.ca_dir, path), timeout=120)
            try:
                done += caller_requests(functools.partial(post, conn), made[n][1])
            finally:
                conn.close()
            if not args.reuse:
                del made[n]
                path.unlink()
            if i + 1 == 20 or i + 1 in wanted:
                meter.point(done, "requests", dict)
                if args.heaptrack is not None and tracker is None:  # from the first point after warm-up
                    from worker_heaptrack import attach

                    args.heaptrack.mkdir(parents=True, exist_ok=True)
                    tracker = attach(meter.pid, args.heaptrack.resolve())
        if tracker is not None:
            from worker_heaptrack import leak_report

            os.kill(int(meter.pid), signal.SIGKILL)  # heaptrack's "leaked": allocated since the attach, still held
            tracker[0].wait(timeout=600)
            print(leak_report(tracker[1], args.leaks))

PARTS: dict[str, Callable[[argparse.Namespace, bool], None]] = {
    "renewal": renewal, "execution": execution, "soap": soap, "gunicorn": gunicorn}


@contextlib.contextmanager
def traced(on: bool) -> Iterator[None]:
    if on:
        tracemalloc.start(1)
    try:
        yield
    finally:
        if on:
            tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--trace", action="store_true", help="also tracemalloc's totals and growing sites")
    parser.add_argument("--users", type=int, default=64, help="renewal: credentials renewed per pass")
    parser.add_argument("--rounds", type=int, default=10, help="renewal: passes (a new delegation each)")
    parser.add_argument("--jobs", type=int, default=3000, help="execution: trivial jobs")
    parser.add_argument("--callers", type=int, default=1500, help="soap: distinct callers (6 requests each)")
    parser.add_argument("--reuse", type=int, default=0,
                        help="gunicorn: the callers are these many, taken in turn (default: each a new one)")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"),
                        help="soap, gunicorn: the store")
    parser.add_argument("--heaptrack", type=Path, default=None,
                        help="gunicorn: heaptrack the worker from the first point after warm-up (data in this "
                             "directory) and print what it allocated since and still held when killed at the end")
    parser.add_argument("--leaks", type=int, default=15, help="--heaptrack: call sites printed")
    parser.add_argument("--points", type=int, default=6)
    args = parser.parse_args()
    for part in args.parts.split(","):
        started = time.monotonic()
        with traced(args.trace):
            PARTS[part](args, args.trace)
        print(f"  [{part}] {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
