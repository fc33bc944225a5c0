"""Helpers of the Slurm backend tests: a backend on the session's cluster, job launches as
the pool account, polling to the end, and putting the node and partitions back."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.accounts import AccountSet
from tests.peers.slurm import SlurmCluster
from wmproxy.execution.backends import JobLaunch, JobOutcome, RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.jobwrapper import JobSpec

CLUSTER = "testcluster"
DEADLINE = 120.0  # seconds: generous, the machine is shared


def job_id() -> str:
    """A fresh grid job id."""
    return f"https://lb.example.org:9000/{secrets.token_urlsafe(16)}"


def make_backend(cluster: SlurmCluster, work_root: Path, **options: object) -> SlurmExecutionBackend:
    """A backend on ``cluster`` with small periods (squeue every 0.2 s, 0.5 s status grace)."""
    settings: dict[str, object] = {"slurm_conf": cluster.conf, "cluster": CLUSTER, "refresh": 0.2,
                                   "status_grace": 0.5, "kill_grace": 2.0}
    settings.update(options)
    return SlurmExecutionBackend(work_root, **settings)  # type: ignore[arg-type]


def launch(account: Account | None, input_dir: Path, script: str, *, queue: str = "debug",
           proxy_pem: bytes = b"", **spec: object) -> JobLaunch:
    """A job running ``/bin/sh -c script`` into std.out/std.err in partition ``queue``."""
    job = job_id()
    fields: dict[str, object] = {"job_id": job, "executable": "/bin/sh", "arguments": ["-c", script],
                                 "stdout": "std.out", "stderr": "std.err",
                                 "proxy": "user.proxy" if proxy_pem else None, "kill_grace": 2.0}
    fields.update(spec)
    return JobLaunch(job_id=job, account=account, spec=JobSpec(**fields),  # type: ignore[arg-type]
                     input_dir=input_dir, proxy_pem=proxy_pem, queue=queue)


def run_job(backend: SlurmExecutionBackend, job: JobLaunch) -> tuple[RunHandle, JobOutcome]:
    """Prepare, submit and follow ``job`` to its end."""
    handle = backend.spawn(backend.prepare(job))
    return handle, wait_outcome(backend, handle)


def wait_outcome(backend: SlurmExecutionBackend, handle: RunHandle, timeout: float = DEADLINE) -> JobOutcome:
    """Poll until the job has an outcome."""
    outcome = support.wait_for(lambda: backend.poll(handle), lambda o: o is not None,
                               what=f"Slurm job {handle.ref} to end", timeout=timeout, interval=0.1)
    assert outcome is not None
    return outcome


def wait_started(backend: SlurmExecutionBackend, handle: RunHandle) -> None:
    """Poll (so the backend keeps following) until the payload has been executed."""
    def started() -> bool:
        assert backend.poll(handle) is None, "the job ended before its payload was seen running"
        return backend.started(handle)
    support.wait_for(started, what=f"the payload of {handle.ref} to start", timeout=DEADLINE, interval=0.1)


def node_idle(cluster: SlurmCluster) -> bool:
    """Whether the node is idle: as ``sinfo`` says, or as its record in slurmctld says (``scontrol
    show node``: ``State=IDLE`` without a flag, no CPU allocated). Seen twice in CI (Slurm 22.05):
    ``sinfo`` said ``mixed`` for two minutes with the queue empty, while ``scontrol`` showed
    ``State=IDLE``, ``CPUAlloc=0`` and a ``LastBusyTime`` at the start of that wait; the next
    tests' jobs ran at once."""
    if cluster.node_state() == "idle":
        return True
    record = cluster.run("scontrol", "-o", "show", "node", cluster.node, check=False).stdout.split()
    return "State=IDLE" in record and "CPUAlloc=0" in record


def resume_node(cluster: SlurmCluster) -> None:
    """Put the node back in service (RESUME) and wait until Slurm shows it idle again."""
    if cluster.node_state() != "idle":
        cluster.run("scontrol", "update", f"NodeName={cluster.node}", "State=RESUME", check=False)
    try:
        support.wait_for(lambda: node_idle(cluster), what="the node to be idle again", timeout=DEADLINE)
    except AssertionError as exc:  # say what holds the node (seen once: "mixed" with an empty queue)
        shown = [cluster.run(*command, check=False).stdout.strip()
                 for command in (("scontrol", "show", "node", cluster.node), ("squeue", "-t", "all", "-l"))]
        processes = subprocess.run(["ps", "-eo", "pid,user,stat,etime,args"], capture_output=True, text=True,
                                   check=False).stdout
        jobs = "\n".join(line for line in processes.splitlines() if "slurmstepd" in line or "jobwrapper" in line)
        raise AssertionError(f"{exc}\n{shown[0]}\n{shown[1]}\n{jobs}") from None


def empty_queue(cluster: SlurmCluster) -> None:
    """Cancel every job and wait for the queue to drain."""
    queued = list(cluster.queue())
    if queued:
        cluster.run("scancel", *queued)
    support.wait_for(cluster.queue, lambda queue: not queue, what="the queue to drain", timeout=DEADLINE)


@pytest.fixture
def account(pool_accounts: AccountSet) -> Account:
    """The pool account the jobs run as."""
    return Account.from_name(pool_accounts.name("slurm001"))


@pytest.fixture
def work_root(slurm_cluster: SlurmCluster) -> Iterator[Path]:
    """A work root under the 0755 cluster directory (the "shared filesystem"), owned by the
    worker (root) and traversable by the accounts; the test's jobs are cancelled and the node
    resumed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="work-", dir=slurm_cluster.root))
    root.chmod(0o755)
    try:
        yield root
    finally:
        empty_queue(slurm_cluster)
        resume_node(slurm_cluster)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    """The job's input sandbox directory (pytest's per-test directory)."""
    return tmp_path


@pytest.fixture
def backend(slurm_cluster: SlurmCluster, work_root: Path) -> SlurmExecutionBackend:
    return make_backend(slurm_cluster, work_root)
