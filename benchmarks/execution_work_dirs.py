"""A local job's work dir made new and removed vs an emptied one reused (issue 14, helper exec12):
what :class:`~wmproxy.execution.backends.local.LocalExecutionBackend` does with the file system
per job, without the job, with ``reuse_work_dirs`` off and on, in alternated windows.

``.venv/bin/python benchmarks/execution_work_dirs.py [--root /var/tmp] [--dirs 200] [--windows 5]``
(as any user: the work dirs are the caller's, ``account=None``).

Per work dir, both ways: the worker's side (:func:`identity.prepare_work_dir`, or a spare renamed
into place with :func:`identity.reuse_work_dir`; the proxy copy with
:func:`identity.install_proxy`), the wrapper's side done here (``tmp/``, ``.wmproxy/status.json``
of a few hundred bytes), then the release: the proxy copy unlinked and
:func:`identity.remove_work_dir` (``shutil.rmtree``), or :func:`identity.recycle_work_dir`. Printed
per window: microseconds of wall time and of CPU (this process's, ``time.process_time``) per work dir;
then min/median/max of the ratios reuse / new over the windows. On a disk mounted with
``discard`` each removed directory is a synchronous block discard, which the wall time shows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_support import summary

from wmproxy.execution import identity
from wmproxy.execution.jobwrapper import STATE_DIR, STATUS_NAME, TMP_DIR

PROXY = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 3000 + b"\n-----END CERTIFICATE-----\n"
STATUS = b'{"job_id": "x", "exit_code": 0}' + b" " * 300


def _wrapper_side(work_dir: Path) -> None:
    """What the wrapper of a trivial job leaves: ``tmp/`` (kept if there) and a status."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(work_dir / TMP_DIR, 0o700)
    (work_dir / STATE_DIR / STATUS_NAME).write_bytes(STATUS)


def one_new(root: Path, name: str, _spares: list[str]) -> None:
    identity.prepare_work_dir(root, name, None)
    identity.install_proxy(root / name, PROXY, None, sync=False, fresh=True)
    _wrapper_side(root / name)
    os.unlink(root / name / identity.PROXY_NAME)
    identity.remove_work_dir(root, name)


def one_reused(root: Path, name: str, spares: list[str]) -> None:
    if not (spares and identity.reuse_work_dir(root, spares.pop(), name, None)):
        identity.prepare_work_dir(root, name, None)
    identity.install_proxy(root / name, PROXY, None, sync=False, fresh=True)
    _wrapper_side(root / name)
    os.unlink(root / name / identity.PROXY_NAME)
    spare = identity.recycle_work_dir(root, name, None)
    if spare is None:
        identity.remove_work_dir(root, name)
    else:
        spares.append(spare)


def window(root: Path, dirs: int, one: Callable[[Path, str, list[str]], None], spares: list[str],
           tag: str) -> tuple[float, float]:
    """Microseconds of wall time and CPU per work dir."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(dirs):
        one(root, f"{tag}{i}", spares)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return wall / dirs * 1e6, cpu / dirs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/var/tmp",  # noqa: S108 - mkdtemp makes a private directory in it
                        help="where the work root is made (default /var/tmp)")
    parser.add_argument("--dirs", type=int, default=200, help="work dirs per window")
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wmp-workdirs-", dir=args.root))
    root.chmod(0o755)
    spares: list[str] = []
    wall_ratio, cpu_ratio = [], []
    try:
        print(f"{args.windows} windows of {args.dirs} work dirs in {root}")
        for w in range(args.windows):
            new_wall, new_cpu = window(root, args.dirs, one_new, spares, f"n{w}-")
            re_wall, re_cpu = window(root, args.dirs, one_reused, spares, f"r{w}-")
            wall_ratio.append(re_wall / new_wall)
            cpu_ratio.append(re_cpu / new_cpu if new_cpu else float("nan"))
            print(f"  window {w + 1}: new {new_wall:7.0f} us wall {new_cpu:5.0f} us CPU | "
                  f"reused {re_wall:7.0f} us wall {re_cpu:5.0f} us CPU", flush=True)
        print("reused / new over the windows:")
        print(f"  wall: {summary(wall_ratio)}")
        print(f"  CPU:  {summary(cpu_ratio)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
