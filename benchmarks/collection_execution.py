"""Per-node cost of executing a collection of trivial nodes, small vs large (issue 14: a 10,000-node
collection costs per node what a 100-node one does; no O(N²) in the parent's state).

Standalone, as root (it creates a throwaway mapped account): ``.venv/bin/python
benchmarks/collection_execution.py [--small 100] [--large 1000] [--windows 10] [--max-running 8]``.

A fresh SQLite state gets a ``--small``-node and a ``--large``-node collection of ``/bin/true``
nodes (jobRegister and jobStart through the services), and an in-process execution worker (local
backend, mapping on, the production settings otherwise) runs each collection until the parent
has ended Done. The worker runs in a thread of its own for the whole benchmark and one small
collection warms it up uncounted, so its start-up (registration, the account's zygote) is in no
figure (each small run used to pay it, which flattered large/small). The worker thread's CPU and
the wall time are sampled from the jobStart on, each time another 1/``windows`` of the nodes has
ended, giving per-node cost per window; the small collection is run ``windows`` times for as
many samples. CPU is the worker thread's own (not the sampler's, nor the background removal of
work dirs). Printed: per-node CPU and wall (ms) as
min/median/max over the windows for each size, and the ratios large/small of the medians
(1.0 = no growth with the collection's size). The large collection's last window is the one an
O(N²) parent refresh would hurt most, so its figure is printed too.

The default large size is 1,000, not 10,000: the trivial nodes run at about 10 per second on
the 2 loaded cores of the development machine, so 10,000 nodes take over 15 minutes; give
``--large 10000`` where there is time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_support import sqlite_reader, summary

from tests.accounts import local_accounts
from tests.support import delegate_in_process
from wmproxy.admin import initialise
from wmproxy.config import load_settings
from wmproxy.domain import FINAL_STATES, JobState, Principal
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job

FINAL = [s.value for s in FINAL_STATES]
ROOT_MODE = 0o711  # the mapped account traverses the benchmark's root
TIMEOUT = 7200.0  # seconds one collection may take at most


def collection(nodes: int) -> str:
    body = ",\n".join('  [ Executable = "/bin/true"; ]' for _ in range(nodes))
    return f'[ Type = "collection";\n  Nodes = {{\n{body}\n  }};\n]'


def run_collection(rt: Runtime, principal: Principal, delegation: str, worker_clock: int, nodes: int,
                   windows: int) -> tuple[list[float], list[float]]:
    """Run one collection on the worker already running (whose thread's CPU clock is
    ``worker_clock``) and wait for its parent to end; (CPU ms per node, wall ms per node) of
    each window of nodes, from the jobStart on."""
    parent = register_job(rt, principal, collection(nodes), delegation).job_id
    marks = [round(nodes * (i + 1) / windows) for i in range(windows)]
    progress: list[tuple[int, float, float]] = []  # (nodes ended, worker CPU, wall) at each mark
    begin = time.monotonic()
    start = (0, time.clock_gettime(worker_clock), begin)
    start_job(rt, principal, parent)
    with contextlib.closing(_reader(rt)) as conn:
        while True:
            ended = int(conn.execute(ENDED_NODES, (parent, *FINAL)).fetchone()[0])
            reached = None
            while marks and ended >= marks[0]:  # marks crossed in one poll make one window, not empty ones
                reached = marks.pop(0)
            if reached is not None:
                progress.append((reached, time.clock_gettime(worker_clock), time.monotonic()))
            if ended >= nodes:
                row = conn.execute("select state from jobs where id = ?", (parent,)).fetchone()
                if row is not None and row[0] in FINAL:
                    break
            if time.monotonic() - begin > TIMEOUT:
                raise RuntimeError(f"the {nodes}-node collection did not end within {TIMEOUT:.0f} s")
            time.sleep(0.05)
    with rt.uow() as uow:
        row = uow.jobs.get(parent)
        assert row is not None
        if row.state != JobState.DONE.value or row.exit_code != 0:
            raise RuntimeError(f"the collection ended {row.state} ({row.reason})")
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    previous = start
    for mark in progress:
        count = mark[0] - previous[0]
        if count > 0:
            cpu_ms.append((mark[1] - previous[1]) / count * 1000)
            wall_ms.append((mark[2] - previous[2]) / count * 1000)
        previous = mark
    return cpu_ms, wall_ms


class RunningWorker:
    """The execution worker running in a thread of its own for the whole benchmark, so that its
    start-up (registration, adoption, the account's zygote) is paid once, before the measured
    collections, not by each small one; :attr:`clock` is that thread's CPU clock."""

    def __init__(self, worker: ExecutionWorker) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=worker.run, args=(self.stop,), name="worker", daemon=True)
        self.thread.start()
        assert self.thread.ident is not None
        self.clock = time.pthread_getcpuclockid(self.thread.ident)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)


#: The sampler's count of a collection's ended nodes (the four states of FINAL).
ENDED_NODES = "select count(*) from jobs where parent_id = ? and state in (?, ?, ?, ?)"


def _reader(rt: Runtime) -> sqlite3.Connection:
    """The benchmark's database for the sampler (:func:`perf_support.sqlite_reader`): SQLAlchemy's
    session per look cost the process (and the worker thread's GIL) more than the sampling needs."""
    return sqlite_reader(rt.settings.database.url.removeprefix("sqlite:///"))


def mapped_site(root: Path, account: str, max_running: int, max_nodes: int) -> tuple[Runtime, Principal, str]:
    """In ``root`` (made traversable for ``account``): a throwaway CA, a user mapped to the local
    ``account`` (gridmap), a fresh SQLite state with the user's delegation ``bench``, and the
    configuration the execution worker reads ([execution] ``max_running``, [jobs] ``max_nodes``).
    Returns the runtime, the user and the delegation id."""
    os.chmod(root, ROOT_MODE)
    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    user = ca.issue_user("Bench", root / "user")
    proxy = root / "user" / "x509up"
    write_proxy(user, proxy, lifetime=12 * 3600)
    principal = Principal(dn=slash_dn(user.cert.subject))
    (root / "grid-mapfile").write_text(f'"{principal.dn}" {account}\n')
    (root / "work").mkdir(mode=0o755)
    sections = {
        "database": {"url": f"sqlite:///{root}/wmproxy.db"},
        "security": {"ca_dir": root / "certificates", "store_key_file": root / "store.key", "authorized_users": "*"},
        "service": {"host": "localhost", "port": 7443},
        "sandbox": {"root": root / "sandbox"},
        "execution": {"work_dir": root / "work", "max_running": max_running},
        "jobs": {"max_nodes": max_nodes},
        "mapping": {"mode": "gridmap", "gridmap_file": root / "grid-mapfile"},
    }
    config = root / "wmproxy.conf"
    config.write_text("".join(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
                              for name, keys in sections.items()))
    settings = load_settings(config)
    initialise(settings)
    rt = Runtime.from_settings(settings)
    return rt, principal, delegate_in_process(rt, principal, proxy, "bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100, help="nodes of the small collection, default 100")
    parser.add_argument("--large", type=int, default=1000, help="nodes of the large collection, default 1000")
    parser.add_argument("--windows", type=int, default=10, help="windows per collection, default 10")
    parser.add_argument("--max-running", type=int, default=8, help="[execution] max_running, default 8")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("collection_execution.py must run as root: it creates a mapped account (useradd)", file=sys.stderr)
        return 2
    with local_accounts({"usr": ["usr"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="wmproxy-bench-", dir="/var/tmp"))
        try:
            rt, principal, delegation = mapped_site(root, accounts.name("usr"), args.max_running,
                                                    max(args.large, args.small))
            worker = RunningWorker(ExecutionWorker(
                rt, {"local": LocalExecutionBackend(root / "work", background_removal=True)}, "bench"))
            try:
                run_collection(rt, principal, delegation, worker.clock, args.small, 1)  # warm-up, not counted
                small_cpu: list[float] = []
                small_wall: list[float] = []
                for _ in range(args.windows):
                    cpu, wall = run_collection(rt, principal, delegation, worker.clock, args.small, 1)
                    small_cpu += cpu
                    small_wall += wall
                large_cpu, large_wall = run_collection(rt, principal, delegation, worker.clock, args.large,
                                                       args.windows)
            finally:
                worker.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"collections of /bin/true nodes, SQLite, in-process worker (local backend, mapping on, "
          f"max_running {args.max_running}), {os.cpu_count()} cores")
    print("per node, ms, over the windows:")
    print(f"  {args.small:6d} nodes ({args.windows} runs): CPU {summary(small_cpu, 2)}   wall {summary(small_wall, 2)}")
    print(f"  {args.large:6d} nodes ({args.windows} windows): CPU {summary(large_cpu, 2)}   "
          f"wall {summary(large_wall, 2)}")
    print(f"  {args.large:6d} nodes, last window:   CPU {large_cpu[-1]:.2f}   wall {large_wall[-1]:.2f}")
    print(f"ratio large/small of the medians: CPU {statistics.median(large_cpu) / statistics.median(small_cpu):.2f}, "
          f"wall {statistics.median(large_wall) / statistics.median(small_wall):.2f} (target about 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
