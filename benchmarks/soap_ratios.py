"""Issue 14, targets 1 and 2: the SOAP operations against each other and against a trivial WSGI
app, side by side in one run.

For each database (SQLite, PostgreSQL) and each client count (1, 4 persistent HTTPS connections
with a proxy, one process each), every round measures four adjacent windows:

* a trivial WSGI app returning the service's getVersion reply, under gunicorn with the
  service's own configuration (TLS, client certificates, proxies, CRL checks, workers, threads);
* WMProxy getVersion;
* WMProxy jobSubmit of a one-line JDL (no execution worker runs: the service's cost only);
* delegation: delegation-2 getProxyReq + signing the CSR with the client's proxy + putProxy.

Before every window the service's pool of delegation keys is topped up
(``[security] delegation_key_pool``, here 128), so no window shares the CPU with the
background key generation; the delegation window runs 1 s so its requests are served from
the pool. Printed: getVersion/trivial, jobSubmit/getVersion and delegation/getVersion, each
twice: as operations per second (one delegation = getProxyReq + putProxy), and as the
inverse ratio of the server's CPU seconds per operation (user + system of the gunicorn
process group, from /proc), which a loaded machine disturbs much less; min/median/max over
rounds.

With ``--only delegation`` a round measures the getVersion and delegation windows alone (no
trivial app, no jobSubmit): the delegation figure in less time.

    .venv/bin/python benchmarks/soap_ratios.py [--rounds 5] [--seconds 2] [--databases sqlite,postgresql]
        [--only delegation]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import (
    DELEGATION2_NS,
    WMPROXY_NS,
    Site,
    Window,
    close_clients,
    database,
    envelope,
    post,
    rate,
    report,
    site,
    start_other_app,
)

POOL = 128
GET_VERSION = envelope(WMPROXY_NS, "getVersion")
SUBMIT = envelope(WMPROXY_NS, "jobSubmit", jdl='[ Executable = "/bin/true"; Requirements = true; ]',
                  delegationId="bench")
_credential: list[object] = []


def get_version(conn: http.client.HTTPSConnection, i: int) -> None:
    post(conn, GET_VERSION)


def job_submit(conn: http.client.HTTPSConnection, i: int) -> None:
    post(conn, SUBMIT)


def delegate(conn: http.client.HTTPSConnection, i: int) -> None:
    from lxml import etree

    from wmproxy.security.proxy import load_credential, sign_proxy_request

    if not _credential:
        _credential.append(load_credential(Path(os.environ["WMPROXY_BENCH_PROXY"])))
    delegation_id = f"b{os.getpid()}x{i}".replace("-", "m")
    reply = post(conn, envelope(DELEGATION2_NS, "getProxyReq", delegationID=delegation_id))
    csr = etree.fromstring(reply).findtext(".//getProxyReqReturn")
    assert csr, reply[:300]
    signed = sign_proxy_request(csr.encode(), _credential[0], lifetime=3600)  # type: ignore[arg-type]
    post(conn, envelope(DELEGATION2_NS, "putProxy", delegationID=delegation_id, proxy=signed.decode()))


def pool_size(s: Site) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(s.database_url.replace("sqlite:", "sqlite:", 1))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM delegation_key_pool")).scalar() or 0)
    finally:
        engine.dispose()


def wait_pool_full(s: Site, deadline: float = 600.0) -> None:
    end = time.monotonic() + deadline
    while pool_size(s) < POOL:
        if time.monotonic() > end:
            raise SystemExit("the delegation key pool did not fill up")
        time.sleep(0.5)
    time.sleep(0.5)  # the filler goes back to sleep


def run(kind: str, rounds: int, seconds: float, only_delegation: bool = False) -> None:
    """Every figure, or with ``only_delegation`` the getVersion and delegation windows alone."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with database(kind, root) as url, site(root, url, env={"WMPROXY_SECURITY_DELEGATION_KEY_POOL": str(POOL)}) as s:
            os.environ["WMPROXY_BENCH_PROXY"] = str(s.proxy)
            from wmproxy.client import WMProxyClient

            # The first request loads the application, which starts the pool's filler.
            WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir)).delegate("bench")
            if not only_delegation:
                ctx_conn = http.client.HTTPSConnection(
                    "localhost", s.port, context=__import__("perf_support").client_context(s.ca_dir, s.proxy))
                reply = root / "getVersion.reply"
                reply.write_bytes(post(ctx_conn, GET_VERSION))
                ctx_conn.close()
                trivial, trivial_pgid = start_other_app(
                    s, "benchmarks.trivial_wsgi:application", {"WMPROXY_BENCH_REPLY": str(reply)})
            for clients in (1, 4):
                ratios: dict[str, list[float]] = {}
                for _ in range(rounds):
                    windows: dict[str, Window] = {}
                    if not only_delegation:
                        wait_pool_full(s)
                        windows["trivial"] = rate(trivial, s, get_version, clients, seconds, trivial_pgid)
                    wait_pool_full(s)
                    windows["getVersion"] = rate(s.port, s, get_version, clients, seconds, s.pgid)
                    if not only_delegation:
                        wait_pool_full(s)
                        windows["jobSubmit"] = rate(s.port, s, job_submit, clients, seconds, s.pgid)
                    wait_pool_full(s)
                    windows["delegation"] = rate(s.port, s, delegate, clients, 1.0, s.pgid)
                    # (figure, numerator, denominator): each as throughput and as inverse server CPU
                    for name, top, base in (("getVersion / trivial WSGI", "getVersion", "trivial"),
                                            ("jobSubmit / getVersion", "jobSubmit", "getVersion"),
                                            ("delegation / getVersion", "delegation", "getVersion")):
                        if top in windows and base in windows:
                            w, b = windows[top], windows[base]
                            ratios.setdefault(f"{name}, throughput", []).append(w.rate / b.rate)
                            ratios.setdefault(f"{name}, server CPU", []).append(b.cpu_per_op / w.cpu_per_op)
                    print(f"  [{kind}, {clients} client(s)] per second: "
                          + ", ".join(f"{n} {w.rate:.1f}" for n, w in windows.items())
                          + "; server CPU ms per operation: "
                          + ", ".join(f"{w.cpu_per_op * 1000:.2f}" for w in windows.values()), flush=True)
                for name, values in ratios.items():
                    target = 0.6 if name.startswith("getVersion") else 0.5 if name.startswith("jobSubmit") else 0.3
                    report(f"{name} ({kind}, {clients} client(s))", values, target)
            close_clients()  # they hold this deployment's credential

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--only", choices=["delegation"], help="measure only delegation against getVersion")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        run(kind, args.rounds, args.seconds, only_delegation=args.only == "delegation")


if __name__ == "__main__":
    main()
