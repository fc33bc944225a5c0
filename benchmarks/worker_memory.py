"""Issue 14, target 4: a gunicorn worker's resident memory after a 10,000-node request against
its idle size.

Starts the deployment (SQLite or PostgreSQL) with one gunicorn worker and warms it up with
small requests of every operation the measurement uses: getVersion, getJobStatus, the
jobRegister of a simple job and of a ``--warm-nodes``-node collection (the big request's own
operation, so the modules, compiled SQL and parser state it needs once per process are already
there). Its RSS then (``/proc/<pid>/status`` VmRSS) is the idle size. Then it registers a
collection of ``--nodes`` nodes, reads the peak (VmHWM) and, after a few small requests again,
the RSS. Repeated ``--rounds`` times in the same worker; the idle size is the one measured before
the first big request. Printed: RSS after − idle in MB per round (target ≤ 20 MB) and the peak.
``--env NAME=VALUE`` sets an environment variable of the service (e.g. ``PYTHONMALLOC=malloc``)
to compare allocator settings: the service runs with ``PYTHONMALLOC=malloc`` (its gunicorn
master re-executes itself so, ``wmproxy.allocator``) unless ``--env PYTHONMALLOC=pymalloc``.

    .venv/bin/python benchmarks/worker_memory.py [--nodes 10000] [--rounds 3] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collection_1000 import collection
from perf_support import Site, database, site


def worker_pid(s: Site) -> int:
    out = subprocess.run(["pgrep", "-g", str(s.pgid)], capture_output=True, text=True, check=True).stdout.split()
    workers = [int(p) for p in out if int(p) != s.pgid]
    if len(workers) != 1:
        raise SystemExit(f"expected one gunicorn worker, found {workers}")
    return workers[0]


def memory(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/<pid>/status in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def small_requests(client: object, job_id: str) -> None:
    for _ in range(5):
        client.get_version()  # type: ignore[attr-defined]
        client.get_job_status(job_id)  # type: ignore[attr-defined]


@contextlib.contextmanager
def warm_worker(kind: str, nodes: int, warm_nodes: int, extra_env: dict[str, str]) -> Iterator[tuple[Any, str, int]]:
    """A deployment on ``kind`` with one gunicorn worker warmed up as the module says: yields the
    client, the simple job's id (for :func:`small_requests`) and the worker's pid."""
    from wmproxy.client import WMProxyClient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {"WMPROXY_SERVICE_WORKERS": "1", "WMPROXY_JOBS_MAX_NODES": str(max(nodes, 10000)),
               "WMPROXY_LIMITS_MAX_REQUEST_BYTES": str(64 * 1024 * 1024), **extra_env}
        with database(kind, root) as url, site(root, url, env=env) as s:
            client = WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir), timeout=1800)
            client.delegate("bench")
            simple = client.job_register('[ Executable = "/bin/true"; Requirements = true; ]', "bench")
            for _ in range(3):
                small_requests(client, simple.id)
                client.job_register(collection(warm_nodes), "bench")
            small_requests(client, simple.id)
            yield client, simple.id, worker_pid(s)


def run(kind: str, nodes: int, rounds: int, warm_nodes: int, extra_env: dict[str, str]) -> None:
    with warm_worker(kind, nodes, warm_nodes, extra_env) as (client, simple_id, pid):
        jdl = collection(nodes)
        growth = []
        idle = memory(pid)
        for r in range(rounds):
            job = client.job_register(jdl, "bench")
            assert len(job.children) == nodes
            peak = memory(pid, "VmHWM")
            small_requests(client, simple_id)
            after = memory(pid)
            growth.append(after - idle)
            print(f"  [{kind}] round {r + 1}: idle {idle:.1f} MB, peak {peak:.1f} MB, after {after:.1f} MB "
                  f"(+{after - idle:.1f} MB)", flush=True)
        verdict = "met" if max(growth) <= 20 else "NOT met"
        print(f"{'RSS after a ' + str(nodes) + '-node jobRegister - idle RSS (' + kind + '), MB':<64} "
              f"min {min(growth):.1f}  median {statistics.median(growth):.1f}  max {max(growth):.1f}"
              f"  (target <= 20 MB: {verdict} for every round)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--warm-nodes", type=int, default=20, help="nodes of the warm-up collections")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the service (repeatable)")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    for kind in args.databases.split(","):
        run(kind, args.nodes, args.rounds, args.warm_nodes, extra_env)


if __name__ == "__main__":
    main()
