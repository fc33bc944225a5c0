"""Submission rate and jobs/s to all ended for N trivial jobs through the Slurm backend, vs a bare
``sbatch --wrap=true`` loop on the same Slurm (issue 9: target ≥ 0.8 of the bare loop).

Standalone, as root (it starts a throwaway Slurm and creates a throwaway pool account):
``.venv/bin/python benchmarks/slurm_submission.py [--jobs 1000] [--cpus 64]``.

One run starts a one-node cluster (:class:`tests.peers.slurm.SlurmCluster`) whose node offers
``--cpus`` job slots (overcommitted: the jobs do nothing), then, on an empty queue each:

- bare: ``sbatch --parsable --wrap=true -o /dev/null`` N times in a row (as root, the plain
  loop an administrator would write), then ``squeue`` until none of them is listed active;
- backend: N ``/bin/true`` jobs of the pool account through
  :class:`~wmproxy.execution.backends.slurm.SlurmExecutionBackend` as the worker drives it:
  ``prepare`` (work dir, proxy-less spec, wrapper copy, batch script) and ``spawn`` (sbatch as
  the account through setpriv) for each, then ``poll`` of every job until all have an outcome
  (each must be Done, exit code 0; the wrapper's status.json read back), and ``release``.

Printed: for each the seconds and jobs/s of the submission loop and of submission-to-all-ended,
and the ratios backend/bare. Times include everything the backend does per job (work dir on
the "shared" filesystem, the python wrapper on the node), which the bare loop does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

TIMEOUT = 3600.0  # seconds one mode may take at most
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
        time.sleep(0.2)
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


def backend_run(cluster: SlurmCluster, jobs: int, account: Account, work_root: Path) -> tuple[float, float]:
    """(seconds of prepare+spawn for all, seconds from the first prepare until every job's outcome)."""
    backend = SlurmExecutionBackend(work_root, slurm_conf=cluster.conf, cluster="bench", status_grace=5.0)
    input_dir = work_root / "input"
    input_dir.mkdir(mode=0o755)
    begin = time.monotonic()
    handles: list[RunHandle] = []
    preparing = 0.0
    for index in range(jobs):
        job_id = f"https://lb.example.org:9000/bench{index:06d}"
        launch = JobLaunch(job_id=job_id, account=account, spec=JobSpec(job_id=job_id, executable="/bin/true"),
                           input_dir=input_dir, queue="debug")
        before = time.monotonic()
        handle = backend.prepare(launch)
        preparing += time.monotonic() - before
        handles.append(backend.spawn(handle))
    submitted = time.monotonic()
    print(f"backend: prepare {preparing / jobs * 1000:.1f} ms/job, spawn (setpriv + sbatch) "
          f"{(submitted - begin - preparing) / jobs * 1000:.1f} ms/job")
    outcomes: dict[str, JobOutcome] = {}
    while len(outcomes) < jobs:
        for handle in handles:
            if handle.ref not in outcomes and (outcome := backend.poll(handle)) is not None:
                outcomes[handle.ref] = outcome
        if time.monotonic() - begin > TIMEOUT:
            raise RuntimeError(f"{jobs - len(outcomes)} jobs without outcome after {TIMEOUT:g} s")
        time.sleep(0.05)
    ended = time.monotonic()
    bad = [o for o in outcomes.values() if (o.state, o.exit_code) != (JobState.DONE, 0)]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not end Done (0), e.g. {bad[0]}")
    for handle in handles:
        backend.release(handle)
    return submitted - begin, ended - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="trivial jobs per mode (default 1000)")
    parser.add_argument("--cpus", type=int, default=64, help="job slots of the one node (default 64)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: it starts Slurm daemons and creates a pool account", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="wmpslurm-bench-"))
    root.chmod(0o755)
    cluster = SlurmCluster(root, ["debug"], cpus=args.cpus, extra_config=TUNING)
    try:
        cluster.start()
        with local_accounts({"bench": ["bench001"]}) as accounts:
            account = Account.from_name(accounts.name("bench001"))
            work_root = root / "work"
            work_root.mkdir(mode=0o755)
            bare_submit, bare_total = bare_loop(cluster, args.jobs)
            back_submit, back_total = backend_run(cluster, args.jobs, account, work_root)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    n = args.jobs
    print(f"{n} trivial jobs, one node with {args.cpus} slots, {os.cpu_count()} cores")
    print(f"bare sbatch loop : submit {bare_submit:7.1f} s ({n / bare_submit:6.1f} jobs/s), "
          f"all ended {bare_total:7.1f} s ({n / bare_total:6.1f} jobs/s)")
    print(f"Slurm backend    : submit {back_submit:7.1f} s ({n / back_submit:6.1f} jobs/s), "
          f"all ended {back_total:7.1f} s ({n / back_total:6.1f} jobs/s)")
    print(f"ratio backend/bare: submission {bare_submit / back_submit:.2f}, "
          f"jobs/s to all ended {bare_total / back_total:.2f} (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
