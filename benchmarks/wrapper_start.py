"""CPU of one job wrapper run for a trivial job, this tree's wrapper against another
revision's (default ``main``), side by side: what every Slurm job costs its node besides
Slurm's own slurmstepd.

``.venv/bin/python benchmarks/wrapper_start.py [--windows 5] [--runs 40] [--base main]``

Each wrapper is installed as the Slurm backend installs it (its own directory with the
byte code compiled by the worker, ``install_shared_wrapper``'s way) and started as the batch
script starts it (``python3 -I -S -c <boot> <dir>/jobwrapper.py <work dir>``) on a fresh work
dir whose spec runs ``/bin/true`` (both spec files are written: ``job.json`` for a wrapper
before ``job.marshal``). Per window, ``--runs`` runs of each wrapper alternate, plus
``python3 -I -S -c pass`` (the interpreter alone); the CPU (user + system of the children,
``getrusage(RUSAGE_CHILDREN)``) and the wall time per run are summed per wrapper. Printed:
min / median / max over the windows of ms per run, and the ratio this tree / base of the
same window. As root or not: the wrappers run as the current user.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wmproxy.execution import identity
from wmproxy.execution.backends.slurm import WRAPPER_BOOT
from wmproxy.execution.jobwrapper import LEGACY_SPEC_NAME, SPEC_NAME, STATE_DIR, JobSpec

PYTHON = "/usr/bin/python3"
WRAPPER = "wmproxy/execution/jobwrapper.py"


def install(source: bytes, directory: Path) -> Path:
    """``directory/jobwrapper.py`` with byte code checked by hash, as the Slurm backend installs it."""
    directory.mkdir()
    wrapper = directory / "jobwrapper.py"
    wrapper.write_bytes(source)
    py_compile.compile(str(wrapper), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    return wrapper


def work_dir(root: Path, index: int) -> Path:
    """A fresh work dir whose spec (both formats) runs ``/bin/true``."""
    work = root / f"w{index}"
    (work / STATE_DIR).mkdir(parents=True)
    spec = JobSpec(job_id=f"https://lb.example.org:9000/bench{index:06d}", executable="/bin/true")
    (work / STATE_DIR / SPEC_NAME).write_bytes(spec.to_bytes())
    (work / STATE_DIR / LEGACY_SPEC_NAME).write_text(spec.to_json())
    return work


def measure(argv_of: list[str], runs: int, root: Path, first: int) -> tuple[float, float]:
    """(CPU ms per run, wall ms per run) of ``runs`` runs of ``argv_of + [work dir]``."""
    cpu = wall = 0.0
    for index in range(first, first + runs):
        work = work_dir(root, index)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        begin = time.perf_counter()
        done = subprocess.run([*argv_of, str(work)], cwd=work, env={}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        wall += time.perf_counter() - begin
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if argv_of[-1].endswith("jobwrapper.py") and done.returncode != 0:
            raise RuntimeError(f"{argv_of[-1]} failed: {done.stderr.decode()}")
        shutil.rmtree(work)
    return cpu * 1000 / runs, wall * 1000 / runs


def _spread(values: list[float]) -> str:
    return f"{min(values):6.2f} / {statistics.median(values):6.2f} / {max(values):6.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=5, help="windows (default 5)")
    parser.add_argument("--runs", type=int, default=40, help="runs per wrapper and window (default 40)")
    parser.add_argument("--base", default="main", help="the git revision to compare with (default main)")
    args = parser.parse_args(argv)
    base_source = subprocess.run(["git", "-C", str(REPO), "show", f"{args.base}:{WRAPPER}"], capture_output=True,
                                 check=True).stdout
    root = Path(tempfile.mkdtemp(prefix="wmp-wrapper-start-"))
    try:
        wrappers = {
            "python": [PYTHON, "-I", "-S", "-c", "pass"],
            args.base: [PYTHON, "-I", "-S", "-c", WRAPPER_BOOT, str(install(base_source, root / "base"))],
            "this": [PYTHON, "-I", "-S", "-c", WRAPPER_BOOT,
                     str(install(identity.WRAPPER_PATH.read_bytes(), root / "this"))],
        }
        cpu: dict[str, list[float]] = {name: [] for name in wrappers}
        wall: dict[str, list[float]] = {name: [] for name in wrappers}
        count = 0
        print(f"{args.windows} windows x {args.runs} runs per wrapper of a /bin/true job, {os.cpu_count()} cores")
        for window in range(args.windows):
            names = list(wrappers)
            names = names[window % len(names):] + names[:window % len(names)]
            for name in names:
                c, w = measure(wrappers[name], args.runs, root, count)
                count += args.runs
                cpu[name].append(c)
                wall[name].append(w)
            print(f"window {window + 1}: " + ", ".join(f"{name} {cpu[name][-1]:.2f} ms CPU" for name in wrappers),
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("min / median / max over the windows, per run")
    for name in wrappers:
        print(f"{name:>8}: CPU {_spread(cpu[name])} ms, wall {_spread(wall[name])} ms")
    ratio = [t / b for t, b in zip(cpu["this"], cpu[args.base], strict=True)]
    print(f"CPU ratio this / {args.base}: {_spread(ratio)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
