"""How long the worker waits for a zygote to fork a batch of job wrappers, this tree's
``zygote.py`` against another revision's (default ``main``), side by side (issue 14: the
worker blocks on the zygote's answers while it starts a cycle's jobs).

``.venv/bin/python benchmarks/execution_zygote.py [--windows 5] [--batches 20] [--batch 8] [--base main]``

Both zygotes run as the current user (``python3 -I -S zygote.py``, as
:func:`~wmproxy.execution.identity.zygote_command` starts it without an account) and are
driven by this tree's :class:`~wmproxy.execution.zygote.Zygote` (the protocol is the same).
Each request names ``--batch`` fresh work dirs holding an empty ``.wmproxy``; each forked
wrapper finds no spec, records that in its status file and exits, so only the fork and set-up
are timed. Per window the two zygotes take turns, ``--batches`` requests each. Printed per
window: milliseconds per batch (wall time of :meth:`Zygote.request`) and the ratio this tree
/ base; then min / median / max over the windows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wmproxy.execution.identity import SYSTEM_PYTHON, WRAPPER_PATH
from wmproxy.execution.zygote import Zygote


def batch_ms(zygote: Zygote, root: Path, batches: int, size: int, tag: str) -> float:
    """Mean wall milliseconds of one ``request`` of ``size`` fresh work dirs."""
    total = 0.0
    for b in range(batches):
        dirs = []
        for i in range(size):
            work = root / f"{tag}-{b}-{i}"
            (work / ".wmproxy").mkdir(parents=True)
            dirs.append(str(work))
        begin = time.perf_counter()
        answers = zygote.request(dirs)
        total += time.perf_counter() - begin
        if any(isinstance(a, Exception) for a in answers):
            raise RuntimeError(f"a wrapper was refused: {answers}")
    return total / batches * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="requests per zygote and window (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="work dirs per request (default 8, max_running)")
    parser.add_argument("--base", default="main", help="the git revision to compare with (default main)")
    args = parser.parse_args()
    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
    root = Path(tempfile.mkdtemp(prefix="wmproxy-zygote-", dir="/var/tmp"))
    try:
        base_script = root / "base-zygote.py"
        show = ["git", "-C", str(REPO), "show", f"{args.base}:wmproxy/execution/zygote.py"]
        base_script.write_bytes(subprocess.run(show, check=True, capture_output=True).stdout)
        this_script = REPO / "wmproxy/execution/zygote.py"
        zygotes = {name: Zygote([python, "-I", "-S", str(script)], str(WRAPPER_PATH), python)
                   for name, script in (("this", this_script), ("base", base_script))}
        figures: dict[str, list[float]] = {"this": [], "base": [], "ratio": []}
        print(f"{args.windows} windows, {args.batches} requests of {args.batch} work dirs per zygote and window")
        try:
            for window in range(args.windows):
                ms = {}
                for name in ("base", "this") if window % 2 else ("this", "base"):
                    ms[name] = batch_ms(zygotes[name], root / "work", args.batches, args.batch, f"{name}{window}")
                shutil.rmtree(root / "work", ignore_errors=True)
                figures["this"].append(ms["this"])
                figures["base"].append(ms["base"])
                figures["ratio"].append(ms["this"] / ms["base"])
                print(f"  window {window + 1}: this {ms['this']:.1f} ms/batch | {args.base} {ms['base']:.1f} ms/batch"
                      f" | ratio {ms['this'] / ms['base']:.2f}")
        finally:
            for zygote in zygotes.values():
                zygote.close()
        print("min / median / max over the windows:")
        for key, label in (("this", "this tree, ms/batch"), ("base", f"{args.base}, ms/batch"),
                           ("ratio", f"this / {args.base}")):
            values = figures[key]
            print(f"  {label}: {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
