"""Renewals per second of the renewal worker's code path vs a loop of ``myproxy-get-delegation -a``.

Standalone: ``.venv/bin/python benchmarks/renewal_worker_rate.py [-n 40] [--threads 1,8]``.
Generates a throwaway PKI, starts Debian's myproxy-server on loopback
(``tests.peers.myproxy_server``), stores one renewable credential per user with the real
``myproxy-init -x -R '<service DN>'`` (N users = N credentials), then fills a SQLite
database (Alembic migrations) with, per user, a delegation that is due for renewal, one
running job with its ``user.proxy`` file, and a renewal record.

Worker: one :meth:`RenewalWorker.step` over all N due credentials (claim, MyProxy exchange
with the host credential + proof of possession, verification, sealed store, push to the
job's proxy file, record), per thread count. Tool: the same N renewals with the Debian
client, one ``myproxy-get-delegation -a <proxy>`` process per credential, sequentially.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alembic import command
from alembic.config import Config

from tests.peers.myproxy_server import (
    MyProxyServer,
    have_myproxy,
    start_myproxy_server,
    store_renewable_credential,
)
from wmproxy.config import (
    DatabaseSettings,
    ExecutionSettings,
    RenewalSettings,
    SandboxSettings,
    SecuritySettings,
    Settings,
)
from wmproxy.domain import JobState, job_relative_dir, new_job_id, utcnow
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy
from wmproxy.security.proxy import credential_pem, make_proxy
from wmproxy.security.sealing import Sealer
from wmproxy.services.renewal import job_proxy_end
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job, ProxyRenewal

LIFETIME = 3600  # seconds asked per renewal
SHORT = 900  # seconds of the delegated proxies: below the threshold, so all are due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--credentials", type=int, default=40, help="credentials (users), default 40")
    parser.add_argument("--threads", default="1,8", help="worker thread counts to measure, default 1,8")
    args = parser.parse_args(argv)
    if not have_myproxy():
        print("myproxy-server / myproxy tools not installed (Debian packages myproxy-server, myproxy)",
              file=sys.stderr)
        return 2
    n = args.credentials
    with tempfile.TemporaryDirectory(prefix="renewal-worker-bench-") as tmp:
        root = Path(tmp)
        with renewable_users(root, n) as (server, users, rt):
            svc_cert, svc_key = rt.settings.security.host_cert, rt.settings.security.host_key
            rates = {}
            for threads in [int(t) for t in args.threads.split(",")]:
                delegation_files = seed(rt, users, root, server.port)
                worker = RenewalWorker(rt, f"bench-{threads}", threads)
                with ThreadPoolExecutor(threads) as pool:
                    start = time.perf_counter()
                    report = worker.step(pool)
                    elapsed = time.perf_counter() - start
                check(rt, report.renewed, report.pushed, n)
                rates[threads] = (n / elapsed, elapsed)

            env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "MYPROXY_"))}
            env.update(server.env(), X509_USER_CERT=str(svc_cert), X509_USER_KEY=str(svc_key))
            out = root / "renewed.pem"
            start = time.perf_counter()
            for user, proxy_file in zip(users, delegation_files, strict=True):
                subprocess.run(
                    ["myproxy-get-delegation", "-s", server.host, "-p", str(server.port),
                     "-l", slash_dn(user.cert.subject), "-a", str(proxy_file), "-t", str(LIFETIME // 3600),
                     "-o", str(out), "-q"],
                    env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True,
                )
            tool_s = time.perf_counter() - start
    print(f"{n} credentials due, myproxy-server on 127.0.0.1 (lifetime asked {LIFETIME} s), SQLite store")
    for threads, (rate, elapsed) in rates.items():
        print(f"renewal worker pass, {threads:2d} thread(s):      {rate:7.1f} renewals/s  "
              f"({elapsed / n * 1000:6.1f} ms each; claim, MyProxy, verify, seal, store, push, record)")
    print(f"myproxy-get-delegation -a loop (exec):  {n / tool_s:7.1f} renewals/s  ({tool_s / n * 1000:6.1f} ms each)")
    return 0


@contextlib.contextmanager
def renewable_users(root: Path, n: int, name: str = "Bench User") -> Iterator[tuple[MyProxyServer, list[Any], Runtime]]:
    """Under ``root``: a throwaway CA, the service's host credential, a myproxy-server on loopback
    (stopped after the yield) holding one renewable credential per user (``n`` users, stored with
    the real ``myproxy-init -x -R '<service DN>'``), and a runtime on a fresh SQLite store
    (:func:`runtime`) allowed to renew from that server. Yields (server, users, runtime)."""
    ca_dir = root / "certificates"
    ca = create_ca(ca_dir)
    svc_cert, svc_key = ca.issue_host("wms.localhost", root / "wms")
    svc_dn = slash_dn(load_pem_chain(svc_cert.read_bytes())[0].subject)
    server = start_myproxy_server(root / "myproxy", ca=ca, ca_dir=ca_dir, authorized_renewers=[svc_dn])
    try:
        users = []
        for i in range(n):
            user = ca.issue_user(f"{name} {i}")
            proxy = root / "users" / f"x509up_{i}"
            write_proxy(user, proxy, lifetime=12 * 3600)
            store_renewable_credential(server, proxy, svc_dn, lifetime_hours=24, proxy_lifetime_hours=2)
            users.append(user)
        yield server, users, runtime(root, ca_dir, svc_cert, svc_key, server.port)
    finally:
        server.stop()


def runtime(root: Path, ca_dir: Path, cert: Path, key: Path, port: int) -> Runtime:
    url = f"sqlite:///{root}/wmproxy.db"
    cfg = Config(str(REPO / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    Sealer.from_key_file(root / "store.key", create=True)
    settings = Settings(
        database=DatabaseSettings(url=url),
        security=SecuritySettings(ca_dir=str(ca_dir), host_cert=str(cert), host_key=str(key),
                                  store_key_file=str(root / "store.key")),
        sandbox=SandboxSettings(root=str(root / "sandbox")),
        execution=ExecutionSettings(work_dir=str(root / "work")),
        renewal=RenewalSettings(cycle=60, threshold=35 * 60, lifetime=LIFETIME, timeout=30,
                                myproxy_allowed_servers=f"localhost:{port}"),  # the benchmark's myproxy-server
    )
    return Runtime.from_settings(settings)


def seed(rt: Runtime, users: list, root: Path, port: int, delegation_id: str = "bench") -> list[Path]:
    """Per user: a due delegation ``delegation_id``, a running job with its proxy file, a renewal
    record (the jobs and records seeded before are removed; the delegations stay)."""
    now = utcnow()
    files = []
    with rt.uow() as uow:
        uow.session.query(ProxyRenewal).delete()
        uow.session.query(Job).delete()
        for i, user in enumerate(users):
            dn = slash_dn(user.cert.subject)
            proxy = make_proxy(user, lifetime=SHORT)
            pem = credential_pem(proxy)
            uow.delegations.put_proxy(dn, delegation_id, rt.sealer.seal(pem), proxy.cert.not_valid_before_utc,
                                      proxy.cert.not_valid_after_utc, (), now)
            job_id = new_job_id("localhost", 9000)
            rt.storage.create_job_area(job_id)
            copy = Path(rt.storage.job_area(job_id).proxy_file)  # the job's copy, where the push writes it
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(pem)
            uow.jobs.add(Job(id=job_id, owner_dn=dn, delegation_id=delegation_id, state=JobState.RUNNING.value,
                             jdl_original="[]", jdl_registered="[]",
                             sandbox_dir=job_relative_dir(job_id, rt.settings.sandbox.dir_name),
                             created_at=now, updated_at=now))
            uow.renewals.register(dn, delegation_id, f"localhost:{port}", now)
            path = root / "delegated" / f"proxy_{i}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(pem)
            files.append(path)
    return files


def check(rt: Runtime, renewed: int, pushed: int, n: int) -> None:
    assert renewed == n and pushed == n, (renewed, pushed)
    with rt.uow() as uow:
        for job in uow.session.query(Job).all():
            end = job_proxy_end(rt, job.id, job.owner_dn, utcnow())
            assert end is not None and (end - utcnow()).total_seconds() > SHORT + 60, end


if __name__ == "__main__":
    sys.exit(main())
