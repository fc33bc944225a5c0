"""Issue 14: which C allocations a gunicorn worker still holds after a 10,000-node jobRegister.

The deployment and warm-up of ``worker_memory.py`` (one worker, SQLite or PostgreSQL); then
``heaptrack -p`` (Debian package ``heaptrack``) is attached to the idle worker, the worker serves
``--rounds`` big jobRegisters, each followed by small requests, and is killed (SIGKILL) where
``worker_memory.py`` reads its RSS. What the worker allocated after the attach and had not freed
when it was killed is heaptrack's "leaked" memory: the state kept across requests. Printed: the
worker's RSS growth and heaptrack's leak report (biggest first, ``--leaks`` call sites); the data
file stays in ``--out``.

    .venv/bin/python benchmarks/worker_heaptrack.py [--database sqlite] [--nodes 10000] [--rounds 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collection_1000 import collection
from worker_memory import memory, small_requests, warm_worker


def _data_file(log: Path) -> Path | None:
    """The data file heaptrack names in its output (it is named after heaptrack's pid, not the worker's)."""
    found = re.search(r'heaptrack output will be written to "([^"]+)"', log.read_text())
    return Path(found.group(1)) if found else None


def attach(pid: int, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``heaptrack -p pid`` writing into ``out``, once it is recording."""
    log = out / f"heaptrack-{pid}.log"
    proc = subprocess.Popen(["heaptrack", "-p", str(pid)], cwd=out, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "injection finished" in log.read_text():
            time.sleep(5)  # the injection runs gdb; let the preload library start recording
            return proc, log
        if proc.poll() is not None:
            raise SystemExit(f"heaptrack -p {pid} failed:\n{log.read_text()}")
        time.sleep(0.5)
    raise SystemExit(f"heaptrack -p {pid} did not start:\n{log.read_text()}")


def run(kind: str, nodes: int, rounds: int, leaks: int, out: Path) -> None:
    with warm_worker(kind, nodes, 20, {}) as (client, simple_id, pid):
        idle = memory(pid)
        tracker, log = attach(pid, out)
        small_requests(client, simple_id)
        jdl = collection(nodes)
        for r in range(rounds):
            client.job_register(jdl, "bench")
            small_requests(client, simple_id)
            print(f"  [{kind}] round {r + 1}: RSS {memory(pid):.1f} MB (idle {idle:.1f} MB, "
                  f"+{memory(pid) - idle:.1f} MB; heaptrack's own bookkeeping included)", flush=True)
        os.kill(pid, signal.SIGKILL)
        tracker.wait(timeout=600)
    print(f"  [{kind}] " + leak_report(log, leaks))


def leak_report(log: Path, leaks: int) -> str:
    """heaptrack's data file named in ``log`` and its leak report (``leaks`` call sites, biggest first)."""
    data = _data_file(log)
    if data is None or not data.exists():
        raise SystemExit(f"no heaptrack data:\n{log.read_text()}")
    report = subprocess.run(["heaptrack_print", "-f", str(data), "--print-leaks", "1", "--print-peaks", "0",
                             "--print-allocators", "0", "--print-temporary", "0", "--peak-limit", str(leaks)],
                            capture_output=True, text=True, check=False).stdout
    return f"heaptrack data: {data}\n" + (report[report.find("MEMORY LEAKS"):] if "MEMORY LEAKS" in report else report)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--leaks", type=int, default=15, help="call sites printed")
    parser.add_argument("--out", type=Path, default=None, help="directory of the heaptrack data (default: a new one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="worker-heaptrack-"))
    out.mkdir(parents=True, exist_ok=True)
    run(args.database, args.nodes, args.rounds, args.leaks, out.resolve())


if __name__ == "__main__":
    main()
