"""How long a started job waits before the worker takes it, SQLite vs PostgreSQL (issue 14: a started
job begins without waiting for a poll tick).

Standalone, as root (it creates a throwaway mapped account): ``.venv/bin/python
benchmarks/execution_start_latency.py [--jobs 20] [--postgres-url URL]``.

For each database (a fresh SQLite file; a fresh PostgreSQL database created through
``--postgres-url``, the test suite's admin URL by default) an in-process execution worker
(local backend, mapping on, the default ``poll_interval`` of 1 s) runs in a thread, idle. Then,
``--jobs`` times: jobSubmit of a ``/bin/true`` job through the services, and the time from its
commit until the worker has claimed it (the job has left Waiting), read every 5 ms; the next job
is submitted once this one has ended, after a random pause, so submissions land at random
points of the worker's cycle. Before the jobs, the worker thread's CPU time over
``--idle`` seconds of idleness (``/proc/self/task/<tid>/schedstat``: its idle polls). Printed:
min / median / max of that latency per database, and the idle CPU, against the poll interval:
PostgreSQL wakes the worker by NOTIFY, SQLite by its inotify watch of the database's directory
(where that cannot be set up, the worker polls SQLite every 0.2 s).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa

from tests.accounts import local_accounts
from tests.conftest import POSTGRES_ADMIN_URL
from tests.support import delegate_in_process
from wmproxy.admin import initialise
from wmproxy.config import load_settings
from wmproxy.domain import FINAL_STATES, JobState, Principal
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

ROOT_MODE = 0o711  # the mapped account traverses the benchmark's root
DEADLINE = 120.0  # seconds a job may take to be claimed and to end


def thread_cpu(tid: int) -> float:
    """Seconds the thread ``tid`` of this process has run on a CPU."""
    return int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0]) / 1e9


def latencies(root: Path, url: str, jobs: int, account: str, idle: float) -> tuple[list[float], float]:
    """Seconds from each jobSubmit's commit until the worker claimed the job, and the worker
    thread's CPU milliseconds per second while idle for ``idle`` seconds before."""
    state = root / f"state-{uuid.uuid4().hex[:6]}"
    state.mkdir(mode=0o711)
    (state / "work").mkdir(mode=0o755)
    ca = create_ca(state / "certificates", key_path=state / "ca" / "ca-key.pem")
    cred = ca.issue_user("Bench", state / "user")
    proxy = state / "user" / "x509up"
    write_proxy(cred, proxy, lifetime=12 * 3600)
    dn = slash_dn(cred.cert.subject)
    gridmap = state / "grid-mapfile"
    gridmap.write_text(f'"{dn}" {account}\n')
    config = state / "wmproxy.conf"
    config.write_text(
        f"[database]\nurl = {url}\n"
        f"[security]\nca_dir = {state}/certificates\nstore_key_file = {state}/store.key\nauthorized_users = *\n"
        f"[service]\nhost = localhost\nport = 7443\n[sandbox]\nroot = {state}/sandbox\n"
        f"[execution]\nwork_dir = {state}/work\n[mapping]\nmode = gridmap\ngridmap_file = {gridmap}\n")
    settings = load_settings(config)
    initialise(settings)
    rt = Runtime.from_settings(settings)
    principal = Principal(dn=dn)
    delegation = delegate_in_process(rt, principal, proxy, "bench")
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(state / "work", background_removal=True)}, "bench")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    engine = sa.create_engine(url)
    query = sa.text("select state from jobs where id = :j")
    waiting, final = JobState.WAITING.value, {s.value for s in FINAL_STATES}
    found: list[float] = []
    rng = random.Random(7)  # noqa: S311 - pauses, not cryptography
    try:
        time.sleep(2.0)  # the worker registered, idle
        tid = thread.native_id or 0
        cpu_before = thread_cpu(tid)
        time.sleep(idle)
        idle_cpu = (thread_cpu(tid) - cpu_before) * 1000 / idle
        for _ in range(jobs):
            time.sleep(rng.uniform(0.2, 0.7))
            job_id = submit_job(rt, principal, '[ Executable = "/bin/true"; ]', delegation).job_id
            begin = time.monotonic()
            claimed = None
            while True:
                with engine.connect() as conn:
                    now_state = conn.execute(query, {"j": job_id}).scalar_one()
                if claimed is None and now_state != waiting:
                    claimed = time.monotonic() - begin
                if now_state in final:
                    break
                if time.monotonic() - begin > DEADLINE:
                    raise RuntimeError(f"job {job_id} still {now_state} after {DEADLINE:g} s")
                time.sleep(0.005)
            found.append(claimed if claimed is not None else 0.0)
    finally:
        stop.set()
        thread.join(timeout=60)
        engine.dispose()
        bind = rt.session_factory.kw.get("bind")
        if bind is not None:
            bind.dispose()
    return found, idle_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per database, default 20")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idleness measured, default 5")
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="an admin URL that may CREATE DATABASE")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("execution_start_latency.py must run as root: it creates a mapped account", file=sys.stderr)
        return 2
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"wmproxy_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    results: dict[str, tuple[list[float], float]] = {}
    with local_accounts({"usr": ["usr"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="wmproxy-bench-", dir="/var/tmp"))
        try:
            os.chmod(root, ROOT_MODE)
            results["SQLite"] = latencies(root, f"sqlite:///{root}/wmproxy.db", args.jobs,
                                                   accounts.name("usr"), args.idle)
            pg_url = args.postgres_url.rsplit("/", 1)[0] + f"/{name}"
            results["PostgreSQL (NOTIFY)"] = latencies(root, pg_url, args.jobs, accounts.name("usr"), args.idle)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(f"{args.jobs} jobs per database, one at a time at random moments, idle in-process worker, "
          f"poll_interval 1 s, {os.cpu_count()} cores")
    print("seconds from jobSubmit's commit until the worker claimed the job, min / median / max:")
    for label, (values, _) in results.items():
        print(f"  {label:22} {min(values):6.3f} / {statistics.median(values):6.3f} / {max(values):6.3f}")
    print(f"the idle worker thread's CPU over {args.idle:g} s (its idle polls), ms per second:")
    for label, (_, idle_cpu) in results.items():
        print(f"  {label:22} {idle_cpu:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
