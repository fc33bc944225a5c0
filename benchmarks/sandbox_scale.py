"""Issue 14, target 3: sandbox HEAD/GET/PUT and the quota check at 1,000,000 jobs against 1,000
jobs, also for a user owning 100,000 of them, side by side in one run.

Two deployments run at once on the same database kind: *small* holds 1,000 jobs, *large*
1,000,000 (``--jobs``), of which 100,000 (``--owned``) belong to the benchmark user. The
filler rows are bulk-inserted straight into the database (executemany on SQLite, COPY on
PostgreSQL); the user's own job, whose sandbox is used, is registered through SOAP on each.
Each round measures the median latency of ``--requests`` requests on one persistent HTTPS
connection to each deployment, interleaved one by one (small, large, small, ...): HEAD and GET of a 4 kB input file,
PUT of it (which checks the job's room and the user's quota) and getFreeQuota. Printed:
latency(large) / latency(small) and, on SQLite (where the database's work is done in the
gunicorn processes), the same ratio of server CPU seconds per request, which a loaded machine
disturbs less; min/median/max over rounds (target ≤ 1.2).

    .venv/bin/python benchmarks/sandbox_scale.py [--jobs 1000000] [--owned 100000] [--rounds 5]
        [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import WMPROXY_NS, Site, client_context, database, envelope, group_cpu, post, site

BATCH = 20_000
DATA = b"w" * 4096


def fill(url: str, total: int, owned: int, owner: str) -> None:
    """Bulk-insert ``total`` job rows, ``owned`` of them owned by ``owner``."""
    import sqlalchemy as sa

    now = dt.datetime.now(dt.UTC)
    engine = sa.create_engine(url)

    def rows(start: int, stop: int) -> Iterator[tuple[object, ...]]:
        for i in range(start, stop):
            token = uuid.uuid4().hex[:22]
            dn = owner if i < owned else f"/C=XX/O=Grid/CN=Filler {i % 5000}"
            yield (f"https://localhost:9000/{token}", dn, "filler", "Done", "[]", "[]",
                   f"SandboxDir/{token[:2]}/https_3a_2f_2flocalhost_3a9000_2f{token}", now, now, 0, 0)

    columns = ("id", "owner_dn", "delegation_id", "state", "jdl_original", "jdl_registered", "sandbox_dir",
               "created_at", "updated_at", "shallow_retries", "deep_retries")
    started = time.perf_counter()
    if url.startswith("postgresql"):
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows(0, total):
                    copy.write_row(row)
            raw.commit()
            cur.execute("ANALYZE jobs")
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            dbapi = conn.connection.driver_connection
            marks = ", ".join("?" * len(columns))
            for start in range(0, total, BATCH):
                dbapi.executemany(  # type: ignore[union-attr]
                    f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - fixed column names
                    [tuple(v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v for v in r)
                     for r in rows(start, min(total, start + BATCH))])
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"  filled {total} jobs in {time.perf_counter() - started:.0f} s", flush=True)


class Target:
    """One deployment with the user's job and a persistent connection."""

    def __init__(self, s: Site) -> None:
        from wmproxy.client import WMProxyClient

        self.site = s
        client = WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir))
        client.delegate("bench")
        job = client.job_register('[ Executable = "/bin/true"; Requirements = true; ]', "bench")
        uri = client.get_sandbox_dest_uri(job.id, "https")[0]
        self.path = uri.split(f":{s.port}", 1)[1] + "/data.bin"
        self.conn = http.client.HTTPSConnection("localhost", s.port, context=client_context(s.ca_dir, s.proxy))
        self.request("PUT", DATA)

    def reconnect(self) -> None:
        """A new connection, warmed up by one HEAD (the old one may have timed out)."""
        self.conn.close()
        self.conn = http.client.HTTPSConnection(
            "localhost", self.site.port, context=client_context(self.site.ca_dir, self.site.proxy))
        self.request("HEAD")

    def request(self, method: str, body: bytes | None = None) -> None:
        self.conn.request(method, self.path, body=body)
        response = self.conn.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {self.path}: HTTP {response.status}")

    def quota(self) -> None:
        post(self.conn, envelope(WMPROXY_NS, "getFreeQuota"))


OPERATIONS: dict[str, Callable[[Target], None]] = {
    "sandbox HEAD": lambda t: t.request("HEAD"),
    "sandbox GET": lambda t: t.request("GET"),
    "sandbox PUT (room and quota checked)": lambda t: t.request("PUT", DATA),
    "getFreeQuota": lambda t: t.quota(),
}


def latencies(
    small: Target, large: Target, operation: Callable[[Target], None], requests: int,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median latency (seconds) of ``operation`` on each target, requests interleaved one by one
    (small, large, small, ...) so that a change of the machine's load hits both alike; and the
    CPU seconds per request of each target's gunicorn (with SQLite, the database's work too)."""
    small.reconnect()
    large.reconnect()
    times: dict[int, list[float]] = {0: [], 1: []}
    cpu0 = [group_cpu(t.site.pgid) for t in (small, large)]
    for _ in range(requests):
        for index, target in enumerate((small, large)):
            t0 = time.perf_counter()
            operation(target)
            times[index].append(time.perf_counter() - t0)
    cpu = [(group_cpu(t.site.pgid) - before) / requests for t, before in zip((small, large), cpu0, strict=True)]
    return (statistics.median(times[0]), statistics.median(times[1])), (cpu[0], cpu[1])


@contextlib.contextmanager
def deployment(kind: str, jobs: int, owned: int) -> Iterator[Target]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with database(kind, root) as url, site(root, url) as s:
            from wmproxy.security.chain import identity_dn, load_pem_chain

            owner = identity_dn(load_pem_chain(s.proxy.read_bytes()))
            fill(url, jobs, owned, owner)
            yield Target(s)


def run(kind: str, jobs: int, owned: int, rounds: int, requests: int) -> None:
    small_jobs = 1000
    with deployment(kind, small_jobs, min(owned, small_jobs // 2)) as small, deployment(kind, jobs, owned) as large:
        ratios: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, operation in OPERATIONS.items():
                (a, b), (cpu_a, cpu_b) = latencies(small, large, operation, requests)
                ratios.setdefault(f"{name}, latency", []).append(b / a)
                if kind == "sqlite":  # the database works in the gunicorn processes: their CPU says it all
                    ratios.setdefault(f"{name}, server CPU", []).append(cpu_b / max(cpu_a, 1e-6))
                print(f"  [{kind}] {name}: {small_jobs} jobs {a * 1000:.2f} ms ({cpu_a * 1000:.2f} ms CPU), "
                      f"{jobs} jobs {b * 1000:.2f} ms ({cpu_b * 1000:.2f} ms CPU)", flush=True)
        for name, values in ratios.items():
            line = f"{name}: {jobs} jobs ({owned} the user's) / {small_jobs} jobs ({kind})"
            print(f"{line:<90} min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"
                  f"  (target <= 1.2: {'met' if statistics.median(values) <= 1.2 else 'NOT met'} at the median)",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--owned", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        run(kind, args.jobs, args.owned, args.rounds, args.requests)


if __name__ == "__main__":
    main()
