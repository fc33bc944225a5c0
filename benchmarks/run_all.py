"""Run every benchmark under ``benchmarks/`` in one go and print their ratio lines (issue 14).

Each benchmark is a script that prints its own ratios (min/median/max over repeated windows
measured side by side); this runner starts them one after the other with the arguments below
(``--quick`` for a shorter run), keeps going when one fails, and ends with a summary of every
line that names a target. The issue-14 benchmarks of other areas are picked up by their file
names when present (``execution_*.py``, ``cli_*.py``, ``collection_*.py``).

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME[,NAME]]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: This area's benchmarks and their arguments: (full run, quick run).
OWN: dict[str, tuple[list[str], list[str]]] = {
    "soap_ratios.py": ([], ["--rounds", "3", "--seconds", "1.5"]),
    "sandbox_scale.py": ([], ["--jobs", "1000000", "--owned", "100000", "--rounds", "3", "--requests", "60"]),
    "sandbox_transfer.py": ([], ["--rounds", "3"]),
    "worker_memory.py": ([], ["--rounds", "2"]),
    "process_memory.py": ([], ["--users", "16", "--rounds", "6", "--jobs", "600", "--callers", "300"]),
}
#: Other areas' benchmarks, by file name pattern (run without arguments).
OTHERS = ("execution_*.py", "cli_*.py", "collection_*.py")
NOT_BENCHMARKS = {"run_all.py", "perf_support.py", "trivial_wsgi.py", "raw_transfer_wsgi.py"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated file names")
    args = parser.parse_args()
    scripts: list[tuple[str, list[str]]] = [(name, argv[1] if args.quick else argv[0]) for name, argv in OWN.items()]
    for pattern in OTHERS:
        scripts += [(p.name, []) for p in sorted(HERE.glob(pattern)) if p.name not in NOT_BENCHMARKS]
    if args.only:
        wanted = set(args.only.split(","))
        scripts = [s for s in scripts if s[0] in wanted]
    summary: list[str] = []
    for name, argv in scripts:
        print(f"=== {name} {' '.join(argv)}", flush=True)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(HERE / name), *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            # a ratio's line with its target, indented or not (execution_mapping's are indented)
            if "(target" in line or ("target" in line and not line.startswith("  ")):
                summary.append(f"{name}: {line.strip()}")
        code = proc.wait()
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            summary.append(f"{name}: FAILED (exit {code})")
    print("\n=== summary")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
