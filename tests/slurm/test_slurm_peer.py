"""The throwaway Slurm cluster runs real jobs: as root, as a pool account, cancelled, on a
node taken down and resumed; its free CPUs and waiting jobs can be read; and stopping it
leaves no daemon or job behind (issue 9 groundwork, peers.md §13)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.accounts import AccountSet
from tests.peers.slurm import RECORD, SlurmCluster, _start_time
from wmproxy.execution.slurm import CpuCounts, parse_cpus, parse_job_states, parse_scontrol

T = TypeVar("T")
DEADLINE = 120.0  # seconds: generous, the machine is shared
REPO = Path(__file__).resolve().parents[2]


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def job_state(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.job(job_id)["JobState"]


def wait_state(cluster: SlurmCluster, job_id: str, *states: str) -> str:
    return wait_for(lambda: (s := job_state(cluster, job_id)) in states and s,
                    f"job {job_id} to reach {'/'.join(states)}")


@pytest.fixture
def job_dir(slurm_cluster: SlurmCluster, request: pytest.FixtureRequest, no_jobs_left: None) -> Path:
    """A directory for one test's job scripts and output, under the 0755 cluster root; the
    test's jobs are cancelled afterwards."""
    path = slurm_cluster.root / "jobs" / request.node.name
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_jobs_left(slurm_cluster: SlurmCluster) -> Iterator[None]:
    """Cancel whatever the test left in the queue so the next test sees an idle node."""
    yield
    queued = list(slurm_cluster.queue())
    if queued:
        slurm_cluster.run("scancel", *queued)
    wait_for(lambda: not slurm_cluster.queue(), "the queue to drain")


def test_a_batch_job_submitted_as_root_runs_and_writes_its_output(slurm_cluster: SlurmCluster,
                                                                    job_dir: Path) -> None:
    job = script(job_dir, "hello.sh", 'echo "hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION"')
    job_id = slurm_cluster.sbatch(job, "-D", str(job_dir), "-o", f"{job_dir}/out.%j")

    output = job_dir / f"out.{job_id}"
    text = wait_for(lambda: output.exists() and output.read_text(), f"{output} to be written")
    assert text == f"hello from {job_id} on debug\n"
    wait_state(slurm_cluster, job_id, "COMPLETED")
    assert slurm_cluster.job(job_id)["ExitCode"] == "0:0"


def test_a_job_submitted_with_uid_and_gid_runs_as_the_pool_account(
    slurm_cluster: SlurmCluster, pool_accounts: AccountSet, job_dir: Path
) -> None:
    account = pool_accounts.passwd("slurm001")
    os.chown(job_dir, account.pw_uid, account.pw_gid)
    job = script(job_dir, "whoami.sh", "id -u; id -g")
    job_id = slurm_cluster.sbatch(job, f"--uid={account.pw_name}", f"--gid={account.pw_gid}",
                                  "--partition=long", "-D", str(job_dir), "-o", f"{job_dir}/out.%j")

    output = job_dir / f"out.{job_id}"
    wait_state(slurm_cluster, job_id, "COMPLETED", "FAILED")
    assert output.read_text().split() == [str(account.pw_uid), str(account.pw_gid)]
    assert output.stat().st_uid == account.pw_uid
    record = slurm_cluster.job(job_id)
    assert (record["JobState"], record["UserId"], record["Partition"]) == (
        "COMPLETED", f"{account.pw_name}({account.pw_uid})", "long")


def test_scancel_ends_a_sleeping_job_as_cancelled(slurm_cluster: SlurmCluster, job_dir: Path) -> None:
    job = script(job_dir, "sleep.sh", "echo started; exec sleep 600")
    job_id = slurm_cluster.sbatch(job, "-D", str(job_dir), "-o", f"{job_dir}/out.%j")
    wait_state(slurm_cluster, job_id, "RUNNING")
    wait_for((job_dir / f"out.{job_id}").exists, "the job to start its script")

    slurm_cluster.run("scancel", job_id)

    wait_state(slurm_cluster, job_id, "CANCELLED")
    listed = slurm_cluster.run("squeue", "-h", "--states=all", "-j", job_id, "-o", "%i %T").stdout
    assert parse_job_states(listed) == {job_id: "CANCELLED"}
    wait_for(lambda: job_id not in slurm_cluster.queue(), "the cancelled job to leave the queue")


def test_a_node_taken_down_holds_jobs_until_it_is_resumed(slurm_cluster: SlurmCluster, job_dir: Path) -> None:
    node = slurm_cluster.node
    slurm_cluster.run("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=test")
    try:
        assert slurm_cluster.node_state() == "down"
        shown = parse_scontrol(slurm_cluster.run("scontrol", "show", "node", "--oneliner", node).stdout)
        assert shown["State"].startswith("DOWN") and shown["Reason"].startswith("test")

        job = script(job_dir, "later.sh", "echo ran")
        job_id = slurm_cluster.sbatch(job, "-D", str(job_dir), "-o", f"{job_dir}/out.%j")
        assert job_state(slurm_cluster, job_id) == "PENDING"
        assert slurm_cluster.queue() == {job_id: "PENDING"}
    finally:
        slurm_cluster.run("scontrol", "update", f"NodeName={node}", "State=RESUME")

    wait_state(slurm_cluster, job_id, "COMPLETED")
    assert (job_dir / f"out.{job_id}").read_text() == "ran\n"
    wait_for(lambda: slurm_cluster.node_state() == "idle", "the node to be idle again")


def test_free_cpus_and_waiting_jobs_are_read_from_sinfo_and_squeue(slurm_cluster: SlurmCluster,
                                                                    job_dir: Path) -> None:
    total = os.cpu_count() or 1
    assert slurm_cluster.cpus() == CpuCounts(allocated=0, idle=total, other=0, total=total)
    assert slurm_cluster.cpus("long") == slurm_cluster.cpus("debug")

    hog = script(job_dir, "hog.sh", "exec sleep 600")
    running = slurm_cluster.sbatch(hog, f"--cpus-per-task={total}", "-D", str(job_dir), "-o", "/dev/null")
    wait_state(slurm_cluster, running, "RUNNING")
    waiting = slurm_cluster.sbatch(hog, "--partition=long", "-D", str(job_dir), "-o", "/dev/null")

    wait_for(lambda: slurm_cluster.cpus().idle == 0, "the CPUs to be allocated")
    assert slurm_cluster.cpus() == CpuCounts(allocated=total, idle=0, other=0, total=total)
    queue = slurm_cluster.queue()
    assert queue == {running: "RUNNING", waiting: "PENDING"}
    assert [job for job, state in queue.items() if state == "PENDING"] == [waiting]


def test_the_parsers_read_what_sinfo_and_squeue_print() -> None:
    # a node in two partitions is printed twice and counted once
    assert parse_cpus("vm 1/1/0/2\nvm 1/1/0/2\nwn2 0/4/0/4\n") == CpuCounts(1, 5, 0, 6)
    assert parse_job_states("12 RUNNING\n13 PENDING\n") == {"12": "RUNNING", "13": "PENDING"}
    assert parse_scontrol("JobId=7 JobName=a b=c JobState=FAILED ExitCode=1:0")["ExitCode"] == "1:0"
    with pytest.raises(ValueError, match="A/I/O/T"):
        parse_cpus("vm 1/1/2\n")


def test_the_command_line_starts_a_cluster_and_stop_leaves_nothing_behind(
    slurm_cluster: SlurmCluster,
) -> None:
    """A second cluster, started and stopped by ``python -m tests.peers.slurm`` as the demo does,
    with a job still sleeping in it: afterwards none of its daemons or job processes is left.
    (The session cluster is requested only so that a missing Slurm fails/skips like the rest.)"""
    root = Path(tempfile.mkdtemp(prefix="wmpslurm-cli-"))
    cli = [sys.executable, "-m", "tests.peers.slurm"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    try:
        started = subprocess.run([*cli, "start", str(root), "--partition", "only"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=180, check=False)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"export SLURM_CONF={root}/slurm.conf"
        other = SlurmCluster(root, ["only"])
        daemons = json.loads((root / RECORD).read_text())
        assert sorted(d["name"] for d in daemons) == ["munged", "slurmctld", "slurmd"]
        assert all(_start_time(d["pid"]) == d["start"] for d in daemons)
        job = script(root, "sleep.sh", "exec sleep 600")
        job_id = other.sbatch(job, "-D", str(root), "-o", "/dev/null")
        wait_state(other, job_id, "RUNNING")
        sleeper = wait_for(lambda: _job_processes(f"SLURM_JOB_ID={job_id}", other), "the job's process")
    finally:
        stopped = subprocess.run([*cli, "stop", str(root)], cwd=REPO, env=env, capture_output=True, text=True,
                                 timeout=180, check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_start_time(d["pid"]) == d["start"] for d in daemons)
    assert not any(_start_time(pid) == start for pid, start in sleeper)
    assert not (root / RECORD).exists()
    shutil.rmtree(root)


def _job_processes(entry: str, cluster: SlurmCluster) -> list[tuple[int, str]]:
    """Live processes whose environment holds ``entry`` and this cluster's SLURM_CONF."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = proc.joinpath("environ").read_bytes().split(b"\0")
        except OSError:
            continue
        start = _start_time(int(proc.name))
        if entry.encode() in environ and f"SLURM_CONF={cluster.conf}".encode() in environ and start:
            found.append((int(proc.name), start))
    return found
