"""Submission rate and jobs/s to all ended for trivial jobs through the Slurm backend, vs a
bare ``sbatch --wrap=true`` loop on the same Slurm (issue 9: target >= 0.8 of the bare loop).

Standalone, as root (it starts a throwaway Slurm and creates a throwaway pool account):
``.venv/bin/python benchmarks/slurm_submission.py [--windows 5] [--jobs 200] [--cpus 64]``
(default: 5 windows of 200 jobs per mode, 1,000 jobs per mode in all).

One run starts a one-node cluster (:class:`tests.peers.slurm.SlurmCluster`) whose node offers
``--cpus`` job slots (overcommitted: the jobs do nothing), then runs, in each window, each mode
once on an empty queue (the order rotates from window to window):

- ``bare``: ``sbatch --parsable --wrap=true -o /dev/null`` N times in a row (as root, the plain
  loop an administrator would write);
- ``arrays``: N ``/bin/true`` jobs of the pool account through
  :class:`~wmproxy.execution.backends.slurm.SlurmExecutionBackend` as the worker drives it, in
  cycles of ``STARTS_PER_STEP`` jobs: ``prepare`` each (work dir, proxy-less spec, wrapper copy,
  batch script), then ``spawn_batch`` (one job array per cycle: one sbatch as the account) and
  ``spawn`` of each;
- ``single`` (with ``--single``): the same with ``max_array=1``, one sbatch per job (the
  backend before job arrays).

"Submitted" is when the last sbatch has answered. "All ended" is measured the same way for
every mode, polling every 0.2 s from the first sbatch: for ``bare``, until ``squeue`` lists none
of its jobs active; for the backend, until ``poll`` has returned every job's outcome (its
squeue refresh set to the same 0.2 s; the outcome also needs the wrapper's status.json read
back: each must be Done, exit code 0). Printed: each window's times, then for each mode the
min/median/max over the windows of jobs/s and of the ratio to the bare loop of the same window.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.accounts import local_accounts
from tests.peers.slurm import SlurmCluster
from wmproxy.domain import JobState
from wmproxy.execution.backends import JobLaunch, JobOutcome, RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.jobwrapper import JobSpec
from wmproxy.execution.slurm import SlurmCommands
from wmproxy.execution.worker import STARTS_PER_STEP

TIMEOUT = 3600.0  # seconds one mode may take at most
POLL = 0.2  # seconds between two looks at the jobs, every mode
#: Slurm tuned for a burst of short jobs: room for them all, scheduling on every submit and
#: end (not only every sched_interval), no backfill pass over a thousand pending jobs.
TUNING = (
    "MaxJobCount=20000",
    "SchedulerType=sched/builtin",
    "SchedulerParameters=default_queue_depth=1000,sched_min_interval=100000",
    "MinJobAge=600",
)


def _active(commands: SlurmCommands) -> set[str]:
    return set(commands.run("squeue", "-h", "-o", "%i").split())


def _wait_drained(commands: SlurmCommands, ids: set[str], begin: float) -> float:
    while ids & _active(commands):
        if time.monotonic() - begin > TIMEOUT:
            raise RuntimeError(f"{len(ids & _active(commands))} jobs still active after {TIMEOUT:g} s")
        time.sleep(POLL)
    return time.monotonic()


def bare_loop(cluster: SlurmCluster, jobs: int) -> tuple[float, float]:
    """(seconds of the sbatch loop, seconds from the first sbatch until all left the queue)."""
    commands = SlurmCommands(cluster.conf)
    begin = time.monotonic()
    ids = set()
    for _ in range(jobs):
        ids.add(commands.run("sbatch", "--parsable", "--wrap=true", "-o", "/dev/null", "-D", str(cluster.root),
                             "-p", "debug").strip().split(";")[0])
    submitted = time.monotonic()
    ended = _wait_drained(commands, ids, begin)
    return submitted - begin, ended - begin


def backend_run(cluster: SlurmCluster, jobs: int, account: Account, work_root: Path, window: int,
                max_array: int) -> tuple[float, float]:
    """(seconds of prepare+spawn for all, seconds from the first prepare until every job's outcome)."""
    backend = SlurmExecutionBackend(work_root, slurm_conf=cluster.conf, cluster="bench", status_grace=5.0,
                                    refresh=POLL, max_array=max_array)
    input_dir = work_root / f"input{window}-{max_array}"
    input_dir.mkdir(mode=0o755)
    begin = time.monotonic()
    handles: list[RunHandle] = []
    for first in range(0, jobs, STARTS_PER_STEP):  # one worker cycle
        cycle = []
        for index in range(first, min(jobs, first + STARTS_PER_STEP)):
            job_id = f"https://lb.example.org:9000/bench{window:02d}{max_array:04d}{index:06d}"
            launch = JobLaunch(job_id=job_id, account=account, spec=JobSpec(job_id=job_id, executable="/bin/true"),
                               input_dir=input_dir, queue="debug")
            cycle.append(backend.prepare(launch))
        backend.spawn_batch(cycle)
        handles += [backend.spawn(handle) for handle in cycle]
    submitted = time.monotonic()
    outcomes: dict[str, JobOutcome] = {}
    while len(outcomes) < jobs:
        for handle in handles:
            if handle.ref not in outcomes and (outcome := backend.poll(handle)) is not None:
                outcomes[handle.ref] = outcome
        if time.monotonic() - begin > TIMEOUT:
            raise RuntimeError(f"{jobs - len(outcomes)} jobs without outcome after {TIMEOUT:g} s")
        if len(outcomes) < jobs:
            time.sleep(POLL)
    ended = time.monotonic()
    bad = [o for o in outcomes.values() if (o.state, o.exit_code) != (JobState.DONE, 0)]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not end Done (0), e.g. {bad[0]}")
    for handle in handles:
        backend.release(handle)
    return submitted - begin, ended - begin


def _spread(values: list[float]) -> str:
    return f"{min(values):6.2f} / {statistics.median(values):6.2f} / {max(values):6.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=5, help="windows (default 5)")
    parser.add_argument("--jobs", type=int, default=200, help="trivial jobs per mode and window (default 200)")
    parser.add_argument("--cpus", type=int, default=64, help="job slots of the one node (default 64)")
    parser.add_argument("--single", action="store_true", help="also the backend with one sbatch per job")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: it starts Slurm daemons and creates a pool account", file=sys.stderr)
        return 2
    modes = ["bare", "arrays", *(["single"] if args.single else [])]
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    n = args.jobs
    root = Path(tempfile.mkdtemp(prefix="wmpslurm-bench-"))
    root.chmod(0o755)
    cluster = SlurmCluster(root, ["debug"], cpus=args.cpus, extra_config=TUNING)
    print(f"{args.windows} windows x {n} trivial jobs per mode, one node with {args.cpus} slots, "
          f"{os.cpu_count()} cores, {STARTS_PER_STEP} jobs per worker cycle, poll every {POLL:g} s")
    try:
        cluster.start()
        with local_accounts({"bench": ["bench001"]}) as accounts:
            account = Account.from_name(accounts.name("bench001"))
            work_root = root / "work"
            work_root.mkdir(mode=0o755)
            for window in range(args.windows):
                order = modes[window % len(modes):] + modes[:window % len(modes)]
                for mode in order:
                    if mode == "bare":
                        result = bare_loop(cluster, n)
                    else:
                        result = backend_run(cluster, n, account, work_root, window,
                                             1 if mode == "single" else 1000)
                    times[mode].append(result)
                    print(f"window {window + 1} {mode:6}: submit {result[0]:6.2f} s ({n / result[0]:6.1f} jobs/s), "
                          f"all ended {result[1]:6.2f} s ({n / result[1]:6.1f} jobs/s)", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("min / median / max over the windows")
    for mode in modes:
        submit = [n / t[0] for t in times[mode]]
        ended = [n / t[1] for t in times[mode]]
        print(f"{mode:6} jobs/s: submission {_spread(submit)}, to all ended {_spread(ended)}")
    for mode in modes[1:]:
        submit = [b[0] / t[0] for b, t in zip(times["bare"], times[mode], strict=True)]
        ended = [b[1] / t[1] for b, t in zip(times["bare"], times[mode], strict=True)]
        print(f"ratio {mode}/bare: submission {_spread(submit)}, jobs/s to all ended {_spread(ended)} "
              "(target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
