"""What a trivial job's wrapper costs, this tree's ``zygote.py`` and ``jobwrapper.py`` against
another revision's (default ``main``), side by side (issue 14): how long the worker waits for a
zygote to fork a batch of job wrappers, and the CPU each job costs outside the worker (the
zygote's fork, the wrapper it forks, the payload the wrapper starts).

``.venv/bin/python benchmarks/execution_zygote.py [--windows 5] [--batches 20] [--batch 8] [--base main]
[--payload none|true|agent]``

Both zygotes run as the current user (``python3 -I -S zygote.py``, as
:func:`~wmproxy.execution.identity.zygote_command` starts it without an account), each with
its own revision's wrapper beside it, and are driven by this tree's
:class:`~wmproxy.execution.zygote.Zygote` (the protocol is the same; with ``--inline`` this
tree's zygote gets the specs with the requests, as this tree's local backend sends them, while
the base's wrappers read ``job.marshal``). Each request names
``--batch`` fresh work dirs (under ``/var/tmp``, a disk) holding ``.wmproxy``:

- ``--payload true`` (default): with a spec running ``/bin/true``, as the worker writes it;
  after each request the benchmark waits until the zygote has reaped every wrapper. The CPU
  per job is the zygote's own user + system time plus that of its reaped children (the
  wrappers, which include their payloads), from ``/proc/<zygote>/stat``, and so are the minor
  page faults per job (load-independent: the copy-on-write faults of the forked wrappers).
- ``--payload agent``: the same with the spec the worker writes for a job with a proxy while
  inspection is on: a proxy copy (a real RFC 3820 proxy of a throwaway CA) and the inspection
  agent's variables in ``base_environment`` (``[inspection] agent_delay`` at its default; the
  agent URL refuses connections, so a started agent stays up retrying until its wrapper stops it).
- ``--payload none``: without a spec (each wrapper records that and exits), so that mostly
  the fork and set-up are timed; the requests follow one another without waiting.

Per window the two zygotes take turns, ``--batches`` requests each. Printed per window: the
worker's wait per request (wall time of :meth:`Zygote.request`), the CPU per job, and the
ratios this tree / base; then min / median / max over the windows.
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

from wmproxy.execution.identity import SYSTEM_PYTHON
from wmproxy.execution.jobwrapper import SPEC_NAME, STATE_DIR, JobSpec
from wmproxy.execution.zygote import Zygote

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SOURCES = ("wmproxy/execution/zygote.py", "wmproxy/execution/jobwrapper.py", "wmproxy/execution/inspection_agent.py")
PROXY = "proxy.pem"


def usage(pid: int) -> tuple[float, int]:
    """(utime + stime + cutime + cstime in seconds, minflt + cminflt) of ``pid``, its reaped
    children included. Minor faults (the copy-on-write faults of a forked wrapper among them)
    depend on the code run, not on the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICK, int(fields[7]) + int(fields[8])


def has_children(pid: int) -> bool:
    return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def run_batches(zygote: Zygote, root: Path, batches: int, size: int, tag: str, spec: bytes | None,
                proxy: bytes | None = None, inline: bool = False) -> tuple[float, float, float]:
    """(mean wall ms of one ``request`` of ``size`` fresh work dirs, CPU ms per job, minor faults
    per job). ``inline``:
    the spec goes with the request (as this tree's local backend sends it), not into
    ``job.marshal``."""
    pid = zygote.process.pid
    total = 0.0
    cpu, faults = usage(pid)
    for b in range(batches):
        dirs = []
        for i in range(size):
            work = root / f"{tag}-{b}-{i}"
            (work / STATE_DIR).mkdir(parents=True)
            if spec is not None and not inline:
                (work / STATE_DIR / SPEC_NAME).write_bytes(spec)
            if proxy is not None:
                (work / PROXY).write_bytes(proxy)
                (work / PROXY).chmod(0o600)
            dirs.append(str(work))
        begin = time.perf_counter()
        answers = zygote.request(dirs, [spec] * size) if inline and spec is not None else zygote.request(dirs)
        total += time.perf_counter() - begin
        if any(isinstance(a, Exception) for a in answers):
            raise RuntimeError(f"a wrapper was refused: {answers}")
        if spec is not None:
            deadline = time.monotonic() + 60
            while has_children(pid):
                if time.monotonic() > deadline:
                    raise RuntimeError("the wrappers did not end within 60 s")
                time.sleep(0.002)
    if spec is not None:
        while has_children(pid):
            time.sleep(0.002)
    cpu_after, faults_after = usage(pid)
    jobs = batches * size
    return total / batches * 1000, (cpu_after - cpu) * 1000 / jobs, (faults_after - faults) / jobs


def _inspected_job(root: Path) -> tuple[bytes, bytes]:
    """The spec of a ``/bin/true`` job with a proxy while inspection is on, as the worker
    writes it (``wmproxy.services.inspection.agent_environment``, default settings), and the
    proxy's bytes (a user of a throwaway CA under ``root``)."""
    import dataclasses

    from wmproxy.config import SecuritySettings, ServiceSettings, Settings
    from wmproxy.security.pki import create_ca, write_proxy
    from wmproxy.services.inspection import agent_environment

    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    cred = ca.issue_user("Bench", root / "user")
    write_proxy(cred, root / "user" / "x509up", lifetime=12 * 3600)
    (root / "store.key").write_bytes(os.urandom(32).hex().encode())
    security = SecuritySettings(store_key_file=str(root / "store.key"), ca_dir=str(root / "certificates"))
    settings = dataclasses.replace(
        Settings(), security=security,
        service=dataclasses.replace(ServiceSettings(), host="127.0.0.1", port=1))  # refused: the agent retries
    job_id = "https://lb.example.org:9000/bench"
    spec = JobSpec(job_id=job_id, executable="/bin/true", proxy=PROXY,
                   base_environment=agent_environment(settings, job_id, attempt=0))
    return spec.to_bytes(), (root / "user" / "x509up").read_bytes()


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def _ratios(figures: dict[str, list[float]]) -> list[float]:
    return [t / b for t, b in zip(figures["this"], figures["base"], strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="requests per zygote and window (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="work dirs per request (default 8, max_running)")
    parser.add_argument("--base", default="main", help="the git revision to compare with (default main)")
    parser.add_argument("--payload", choices=("none", "true", "agent"), default="true",
                        help="true: a spec running /bin/true (default); agent: the same job with a proxy and "
                             "inspection on; none: no spec")
    parser.add_argument("--inline", action="store_true",
                        help="this tree's zygote gets the specs with the requests (as its local backend sends them), "
                             "the base's reads job.marshal (a base whose zygote takes no specs)")
    args = parser.parse_args()
    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
    root = Path(tempfile.mkdtemp(prefix="wmproxy-zygote-", dir="/var/tmp"))
    spec: bytes | None = None
    proxy: bytes | None = None
    try:
        if args.payload == "true":
            spec = JobSpec(job_id="https://lb.example.org:9000/bench", executable="/bin/true").to_bytes()
        elif args.payload == "agent":
            spec, proxy = _inspected_job(root)
        trees = {"this": REPO / "wmproxy/execution", "base": root / "base"}
        trees["base"].mkdir()
        for source in SOURCES:
            show = ["git", "-C", str(REPO), "show", f"{args.base}:{source}"]
            text = subprocess.run(show, check=True, capture_output=True).stdout
            (trees["base"] / Path(source).name).write_bytes(text)
        zygotes = {name: Zygote([python, "-I", "-S", str(tree / "zygote.py")], str(tree / "jobwrapper.py"), python)
                   for name, tree in trees.items()}
        wait: dict[str, list[float]] = {"this": [], "base": []}
        cpu: dict[str, list[float]] = {"this": [], "base": []}
        faults: dict[str, list[float]] = {"this": [], "base": []}
        print(f"{args.windows} windows, {args.batches} requests of {args.batch} work dirs per zygote and window,"
              f" payload {args.payload}, {os.cpu_count()} cores")
        try:
            for window in range(args.windows):
                for name in ("base", "this") if window % 2 else ("this", "base"):
                    w, c, f = run_batches(zygotes[name], root / "work", args.batches, args.batch,
                                          f"{name}{window}", spec, proxy, inline=name == "this" and args.inline)
                    wait[name].append(w)
                    cpu[name].append(c)
                    faults[name].append(f)
                shutil.rmtree(root / "work", ignore_errors=True)
                line = (f"  window {window + 1}: wait this {wait['this'][-1]:.1f} | {args.base}"
                        f" {wait['base'][-1]:.1f} ms/request")
                if spec is not None:  # without a payload the wrappers may not have ended yet
                    line += (f"; CPU this {cpu['this'][-1]:.2f} | {args.base} {cpu['base'][-1]:.2f} ms/job"
                             f"; minor faults this {faults['this'][-1]:.0f} | {args.base} {faults['base'][-1]:.0f}")
                print(line, flush=True)
        finally:
            for zygote in zygotes.values():
                zygote.close()
        print("min / median / max over the windows:")
        print(f"  wait, this tree: {_spread(wait['this'])} ms/request")
        print(f"  wait, {args.base}: {_spread(wait['base'])} ms/request")
        print(f"  wait, this / {args.base}: {_spread(_ratios(wait))}")
        if spec is not None:
            print(f"  CPU, this tree: {_spread(cpu['this'])} ms/job (zygote + wrapper + payload)")
            print(f"  CPU, {args.base}: {_spread(cpu['base'])} ms/job")
            print(f"  CPU, this / {args.base}: {_spread(_ratios(cpu))}")
            print(f"  minor faults per job, this tree: {_spread(faults['this'])};"
                  f" {args.base}: {_spread(faults['base'])}")
            print(f"  minor faults, this / {args.base}: {_spread(_ratios(faults))}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
