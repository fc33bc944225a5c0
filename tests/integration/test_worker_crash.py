"""The execution worker dies or stops; its jobs still end Done, each run exactly once.

On the deployment with the privilege split (:mod:`tests.integration.isolated`: worker as
the service user with its 5 capabilities, jobs as alice's mapped account), SQLite and
PostgreSQL. Every job appends its nonce to a marker file when it starts, then waits for a
release file, then exits with its own code: one marker line per nonce proves each job ran
once, and the job's status proves its real exit code was collected. ``heartbeat_lease``
is short (5 s) so that adoption by another worker is quick; waits are generous.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Pki, need_peer
from tests.integration.isolated import Isolated, isolated_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.support import WAIT_TIMEOUT, delegate, wait_for, wait_for_final
from wmproxy.domain import JOB_PROXY_NAME, to_filename
from wmproxy.execution.jobwrapper import STATE_DIR, STATUS_NAME

pytestmark = pytest.mark.integration

#: Jobs one worker runs at once in these tests (G1's ``[execution] max_running``).
MAX_RUNNING = 20
LEASE = 5
#: The job script is run, and the marker file appended to, by the jobs' mapped account.
SCRIPT_MODE = 0o755
MARKERS_MODE = 0o666

JOB_SCRIPT = """#!/bin/sh
# $1 nonce, $2 exit code, $3 marker file, $4 release file
echo "$1" >> "$3"
while [ ! -e "$4" ]; do sleep 0.2; done
exit "$2"
"""
#: A job that notes the SIGTERM of a cancel (the wrapper forwards it) and goes on until released.
CANCEL_SCRIPT = """#!/bin/sh
# $1 nonce, $2 marker file, $3 release file
trap 'echo "$1-term" >> "$2"' TERM
echo "$1" >> "$2"
while [ ! -e "$3" ]; do sleep 0.2; done
exit 0
"""
#: Seconds from a cancel's SIGTERM to the wrapper's SIGKILL: longer than any test, so a job that
#: ignores the SIGTERM keeps its wrapper running until the test releases it.
KILL_GRACE = 600


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    execution = f"max_running = {MAX_RUNNING}\nheartbeat_lease = {LEASE}\nkill_grace = {KILL_GRACE}"
    with isolated_deployment(pki, database_url, execution=execution, start_worker=False) as deployment:
        for name, text in (("job.sh", JOB_SCRIPT), ("cancel.sh", CANCEL_SCRIPT)):
            script = deployment.shared / name
            script.write_text(text)
            os.chmod(script, SCRIPT_MODE)
        yield deployment


@pytest.fixture(scope="module")
def alice(iso: Isolated, pki: Pki) -> ReferenceClient:
    ref = reference_client(iso.deployment.endpoint, pki.users["alice"].proxy, iso.root / "certificates")
    delegate(ref, pki.users["alice"].proxy, "crash")
    return ref


@dataclass
class Batch:
    """Jobs of one test: job id → (nonce, exit code), their marker and release files."""

    jobs: dict[str, tuple[str, int]]
    markers: Path
    release: Path

    def started(self) -> list[str]:
        return self.markers.read_text().split() if self.markers.exists() else []

    def wait_started(self, count: int) -> list[str]:
        return wait_for(self.started, lambda lines: len(lines) >= count, what=f"{count} jobs to start")

    def job_pids(self) -> dict[str, int]:
        """nonce → pid of the job's shell (from /proc, as root).

        A child the shell has forked for ``sleep`` shows the shell's command line until it
        execs: only a matching process whose parent does not match is the job's shell.
        """
        found: dict[int, tuple[str, int]] = {}  # pid → (nonce, parent pid)
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
                if len(argv) > 5 and argv[1].endswith(b"/job.sh") and argv[4] == str(self.markers).encode():
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    found[int(entry.name)] = (argv[2].decode(), int(stat[1]))
            except (OSError, IndexError, ValueError):
                continue
        return {nonce: pid for pid, (nonce, parent) in found.items() if parent not in found}


@pytest.fixture
def batch(iso: Isolated, alice: ReferenceClient) -> Iterator[Batch]:
    name = uuid.uuid4().hex[:8]
    markers = iso.shared / f"markers-{name}"
    markers.touch()
    os.chmod(markers, MARKERS_MODE)
    made = Batch({}, markers, iso.shared / f"release-{name}")
    yield made
    made.release.touch()  # let whatever a failed test left running end


@pytest.fixture
def workers(iso: Isolated) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=WAIT_TIMEOUT)


def submit(iso: Isolated, alice: ReferenceClient, batch: Batch, count: int) -> None:
    for index in range(count):
        nonce, code = uuid.uuid4().hex[:12], index % 5
        jdl = (f'[ Executable = "{iso.shared / "job.sh"}"; '
               f'Arguments = "{nonce} {code} {batch.markers} {batch.release}"; ]')
        batch.jobs[alice.wmproxy.jobSubmit(jdl, "crash").id] = (nonce, code)


def start(iso: Isolated, workers: dict[str, subprocess.Popen[bytes]], name: str) -> None:
    workers[name] = iso.start_worker(name)


def run_batch(iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]],
              name: str, jobs: int, running: int) -> dict[str, int]:
    """Submit ``jobs`` jobs, start worker ``name``, wait until ``running`` of them have started;
    returns nonce → pid of each running job."""
    submit(iso, alice, batch, jobs)
    start(iso, workers, name)
    batch.wait_started(running)
    pids = batch.job_pids()
    assert len(pids) == running
    return pids


def kill_9(workers: dict[str, subprocess.Popen[bytes]], name: str) -> None:
    proc = workers.pop(name)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT_TIMEOUT)


def assert_each_done_once(alice: ReferenceClient, batch: Batch) -> None:
    statuses = {job_id: wait_for_final(alice, job_id) for job_id in batch.jobs}
    assert statuses == {job_id: f"Done (Exit Code {code})" for job_id, (_, code) in batch.jobs.items()}
    assert collections.Counter(batch.started()) == {nonce: 1 for nonce, _ in batch.jobs.values()}


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def working_in(dirs: list[Path]) -> list[int]:
    """Pids of the processes whose working directory is one of ``dirs`` or below (a job's wrapper
    and payload run in its work dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if any(cwd == str(d) or cwd.startswith(f"{d}/") for d in dirs):
                found.append(int(entry.name))
    return found


def traced(pid: int) -> bool:
    """Whether every thread of ``pid`` has a tracer (strace attached)."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return bool(tasks) and all(
        int(line.split()[1]) != 0 for task in tasks for line in (task / "status").read_text().splitlines()
        if line.startswith("TracerPid:"))


class TestWorkerDeath:
    def test_kill_9_with_jobs_running_and_queued_then_restart(
        self, iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]]
    ) -> None:
        running = run_batch(iso, alice, batch, workers, "worker-a", 2 * MAX_RUNNING, MAX_RUNNING)
        statuses = collections.Counter(str(alice.wmproxy.getJobStatus(j).status) for j in batch.jobs)
        assert statuses["Running"] == MAX_RUNNING  # and the other 20 wait their turn
        kill_9(workers, "worker-a")
        assert all(alive(pid) for pid in running.values())  # the jobs outlive their worker
        start(iso, workers, "worker-a")
        batch.release.touch()
        assert_each_done_once(alice, batch)

    def test_kill_9_between_two_releases_of_a_cycle_then_restart(
        self, iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]]
    ) -> None:
        if shutil.which("strace") is None:
            need_peer("strace kills the worker at a chosen system call")
        run_batch(iso, alice, batch, workers, "worker-r", 2, 2)
        worker = workers["worker-r"]
        dirs = [iso.work_root / to_filename(job_id) for job_id in batch.jobs]
        # Both jobs end while the worker is stopped: it finds both ends in one cycle when it goes on.
        os.kill(worker.pid, signal.SIGSTOP)
        batch.release.touch()
        wait_for(lambda: [(d / STATE_DIR / STATUS_NAME).exists() for d in dirs], all, what="both jobs' final status")
        wait_for(lambda: working_in(dirs), lambda pids: not pids, what="both jobs' wrappers to exit")
        # SIGKILL at the second unlink of a proxy copy, the first thing a release does: the
        # cycle's first job released (its work dir gone), the second not, no end committed.
        proxies = [str(d / JOB_PROXY_NAME) for d in dirs]
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(worker.pid),
                                   *(arg for path in proxies for arg in ("-P", path)), "-e", "trace=unlink,unlinkat",
                                   "-e", "inject=unlink,unlinkat:signal=KILL:when=2"])
        try:
            wait_for(lambda: traced(worker.pid), bool, what="strace to attach")
            os.kill(worker.pid, signal.SIGCONT)
            assert worker.wait(timeout=WAIT_TIMEOUT) == -signal.SIGKILL
        finally:
            if tracer.poll() is None:
                tracer.kill()
            tracer.wait(timeout=WAIT_TIMEOUT)
        workers.pop("worker-r")
        assert [d.exists() for d in dirs].count(True) == 1  # killed between the two releases
        start(iso, workers, "worker-r")
        assert_each_done_once(alice, batch)  # the journal's ends, the second's work dir removed first
        assert not any(d.exists() for d in dirs)

    def test_sigterm_drains_jobs_keep_running_and_end_done_after_restart(
        self, iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]]
    ) -> None:
        running = run_batch(iso, alice, batch, workers, "worker-t", 5, 5)
        proc = workers.pop("worker-t")
        proc.terminate()
        assert proc.wait(timeout=WAIT_TIMEOUT) == 0  # a drain is a clean exit
        assert all(alive(pid) for pid in running.values())
        for job_id in batch.jobs:
            assert str(alice.wmproxy.getJobStatus(job_id).status) == "Running"
        start(iso, workers, "worker-t")
        batch.release.touch()
        assert_each_done_once(alice, batch)

    def test_another_worker_adopts_the_jobs_of_a_dead_one(
        self, iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]]
    ) -> None:
        run_batch(iso, alice, batch, workers, "worker-x", 8, 8)  # all on worker-x
        start(iso, workers, "worker-y")
        kill_9(workers, "worker-x")
        batch.release.touch()
        # worker-x never comes back: worker-y collects its jobs once the 5 s lease has run out.
        assert_each_done_once(alice, batch)

    def test_kill_9_after_a_cancel_was_sent_then_restart_ends_the_job_cancelled(
        self, iso: Isolated, alice: ReferenceClient, batch: Batch, workers: dict[str, subprocess.Popen[bytes]]
    ) -> None:
        nonce = uuid.uuid4().hex[:12]
        jdl = (f'[ Executable = "{iso.shared / "cancel.sh"}"; Arguments = "{nonce} {batch.markers} {batch.release}";'
               ' RetryCount = 2; ShallowRetryCount = 2; ]')
        job_id = alice.wmproxy.jobSubmit(jdl, "crash").id
        start(iso, workers, "worker-c")
        batch.wait_started(1)
        alice.wmproxy.jobCancel(job_id)
        # The worker sent the cancel (the job ignores it: its wrapper waits KILL_GRACE); it dies
        # before the job's end can be recorded, and comes back.
        wait_for(batch.started, lambda lines: f"{nonce}-term" in lines, what="the cancel's SIGTERM")
        kill_9(workers, "worker-c")
        start(iso, workers, "worker-c")
        batch.release.touch()  # the job could end by itself now (exit 0)
        assert wait_for_final(alice, job_id) == "Cancelled (Cancelled by user)"
        assert batch.started().count(nonce) == 1  # never run again
