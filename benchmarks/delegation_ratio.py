"""Issue 14, the delegation figure alone: delegation (delegation-2 getProxyReq + signing the CSR
with the client's proxy + putProxy) against WMProxy getVersion, side by side in one run.

The same windows as ``soap_ratios.py`` (which measures it together with the other SOAP
figures), without the trivial WSGI app and jobSubmit windows: for each database and each
client count (1, 4 persistent HTTPS connections, one process each) every round measures
getVersion then delegation, after topping up the service's key pool. Printed, min/median/max
over rounds: delegation/getVersion as operations per second, and as the inverse ratio of the
server's CPU seconds per operation (user + system of the gunicorn process group).

    .venv/bin/python benchmarks/delegation_ratio.py [--rounds 5] [--seconds 2] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import close_clients, database, rate, report, site
from soap_ratios import POOL, delegate, get_version, wait_pool_full


def run(kind: str, rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with database(kind, root) as url, site(root, url, env={"WMPROXY_SECURITY_DELEGATION_KEY_POOL": str(POOL)}) as s:
            os.environ["WMPROXY_BENCH_PROXY"] = str(s.proxy)
            from wmproxy.client import WMProxyClient

            # The first request loads the application, which starts the pool's filler.
            WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir)).delegate("bench")
            for clients in (1, 4):
                throughput: list[float] = []
                cpu: list[float] = []
                for _ in range(rounds):
                    wait_pool_full(s)
                    g = rate(s.port, s, get_version, clients, seconds, s.pgid)
                    wait_pool_full(s)
                    d = rate(s.port, s, delegate, clients, 1.0, s.pgid)
                    throughput.append(d.rate / g.rate)
                    cpu.append(g.cpu_per_op / d.cpu_per_op)
                    print(f"  [{kind}, {clients} client(s)] per second: getVersion {g.rate:.0f}, delegation "
                          f"{d.rate:.1f}; server CPU ms per operation: {g.cpu_per_op * 1000:.2f}, "
                          f"{d.cpu_per_op * 1000:.2f}", flush=True)
                report(f"delegation / getVersion, throughput ({kind}, {clients} client(s))", throughput, 0.3)
                report(f"delegation / getVersion, server CPU ({kind}, {clients} client(s))", cpu, 0.3)
            close_clients()  # they hold this deployment's credential


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        run(kind, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
