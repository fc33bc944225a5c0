"""The Slurm backend on a real (throwaway) Slurm: the job wrapper submitted with sbatch as the
pool account, followed through squeue, its outcome from status.json, Slurm's own failures
classified shallow or deep with Slurm's state in the reason (issue 9, point 3 and 5)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests import support
from tests.conftest import Pki
from tests.peers.slurm import RECORD, SlurmCluster
from tests.slurm.slurm_support import (
    CLUSTER,
    launch,
    make_backend,
    resume_node,
    run_job,
    wait_outcome,
    wait_started,
)
from wmproxy.domain import JobState, job_unique
from wmproxy.execution import identity
from wmproxy.execution.backends import BackendError, JobLaunch, RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend, job_name, parse_ref
from wmproxy.execution.identity import PROXY_NAME, Account
from wmproxy.execution.jobwrapper import LOG_NAME, STATE_DIR
from wmproxy.execution.slurm import SlurmCommands, SlurmError
from wmproxy.security.proxy import credential_pem, make_proxy

SOCKET_TIMEOUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


@contextlib.contextmanager
def controller_stopped(cluster: SlurmCluster) -> Iterator[None]:
    """slurmctld stopped (SIGSTOP) inside the block, as a controller too busy to answer: a
    client gives up after ``MessageTimeout`` (10 s) with "Socket timed out on send/recv
    operation", and slurmctld, continued, still handles what it had been sent."""
    records = json.loads((cluster.root / RECORD).read_text())
    pid = next(record["pid"] for record in records if record["name"] == "slurmctld")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def jobs_named(cluster: SlurmCluster, name: str) -> list[str]:
    """The ids of the jobs of that name Slurm still knows (any state)."""
    return cluster.run("squeue", "-h", "-r", "--states=all", "-n", name, "-o", "%i").stdout.split()


PROXY_CHECK = (
    'id -u > id.out; stat -c %a:%u "$X509_USER_PROXY" > proxy.out; '
    'echo "$SLURM_JOB_ID $SLURM_JOB_PARTITION" > slurm.out; echo hello'
)


class TestJobCycle:
    def test_a_job_runs_as_the_pool_account_with_its_outputs_and_a_private_proxy(
        self, backend: SlurmExecutionBackend, slurm_cluster: SlurmCluster, account: Account, input_dir: Path,
        pki: Pki,
    ) -> None:
        (input_dir / "data.txt").write_text("input sandbox\n")
        proxy = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600))
        job = replace(launch(account, input_dir, PROXY_CHECK + "; cat data.txt", queue="long", proxy_pem=proxy),
                      isb_files=("data.txt",))

        handle = backend.prepare(job)
        assert handle.ref == f"slurm:{CLUSTER}:-:{handle.work_dir.name}"
        script = (handle.work_dir / STATE_DIR / "slurm.sh").read_text()
        assert "#SBATCH --partition=long" in script and "#SBATCH --no-requeue" in script
        shared = [path for path in handle.work_dir.parent.iterdir() if path.name.startswith(".wmproxy-wrapper-")]
        assert len(shared) == 1 and f" {shared[0]}/jobwrapper.py " in script.splitlines()[-1]
        assert (shared[0] / "jobwrapper.py").read_bytes() == identity.WRAPPER_PATH.read_bytes()
        compiled = shared[0] / "__pycache__" / Path(importlib.util.cache_from_source("jobwrapper.py")).name
        assert stat.S_IMODE(compiled.stat().st_mode) == 0o444 and stat.S_IMODE(shared[0].stat().st_mode) == 0o755
        backend.spawn(handle)
        cluster, slurm_id, name = parse_ref(handle.ref) or ("", None, "")
        assert (cluster, slurm_id, name) == (CLUSTER, str(handle.pid), handle.work_dir.name)

        outcome = wait_outcome(backend, handle)

        assert (outcome.state, outcome.exit_code, outcome.payload_started) == (JobState.DONE, 0, True)
        work = handle.work_dir
        assert (work / "std.out").read_text() == "hello\ninput sandbox\n"
        assert (work / "id.out").read_text().strip() == str(account.uid)
        assert (work / "proxy.out").read_text().strip() == f"600:{account.uid}"
        proxy_stat = (work / PROXY_NAME).stat()
        assert stat.S_IMODE(proxy_stat.st_mode) == 0o600 and proxy_stat.st_uid == account.uid
        assert (work / "slurm.out").read_text().split() == [str(handle.pid), "long"]
        record = slurm_cluster.job(str(handle.pid))
        assert record["UserId"] == f"{account.name}({account.uid})"
        assert record["JobName"] == job_name(work.name) == "wmp_" + job_unique(job.job_id)
        assert record["WorkDir"] == str(work)
        status = identity.read_status(work, account)
        assert status is not None and status.exit_code == 0

        backend.release(handle)
        assert not work.exists()

    def test_a_payload_exit_code_is_done_with_that_code(self, backend: SlurmExecutionBackend, account: Account,
                                                        input_dir: Path, slurm_cluster: SlurmCluster) -> None:
        handle, outcome = run_job(backend, launch(account, input_dir, "exit 3"))

        assert (outcome.state, outcome.exit_code, outcome.payload_started) == (JobState.DONE, 3, True)
        assert slurm_cluster.job(str(handle.pid))["JobState"] == "FAILED"  # Slurm saw the wrapper exit 3

    def test_a_payload_killed_by_its_own_signal_is_done_not_a_slurm_failure(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        _, outcome = run_job(backend, launch(account, input_dir, "kill -KILL $$"))

        assert (outcome.state, outcome.exit_code, outcome.reason) == (JobState.DONE, 137, None)

    def test_cancel_stops_the_payload_and_the_wrapper_records_it(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(account, input_dir, "echo started; exec sleep 600")))
        wait_started(backend, handle)

        backend.cancel(handle)
        backend.cancel(handle)  # idempotent
        outcome = wait_outcome(backend, handle)

        assert outcome.state == JobState.CANCELLED and outcome.payload_started
        status = identity.read_status(handle.work_dir, account)
        assert status is not None and status.cancelled_by == 15 and status.signal == 15

    def test_cancel_removes_a_pending_job(self, backend: SlurmExecutionBackend, account: Account,
                                          input_dir: Path, slurm_cluster: SlurmCluster) -> None:
        slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=test")
        handle = backend.spawn(backend.prepare(launch(account, input_dir, "echo never")))
        support.wait_for(lambda: slurm_cluster.queue().get(str(handle.pid)), lambda s: s == "PENDING",
                         what="the job to be pending")
        assert backend.poll(handle) is None

        backend.cancel(handle)
        outcome = wait_outcome(backend, handle)

        assert (outcome.state, outcome.payload_started) == (JobState.CANCELLED, False)
        assert slurm_cluster.job(str(handle.pid))["JobState"] == "CANCELLED"


class TestAdoption:
    def test_a_fresh_backend_follows_a_running_job_to_its_end(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        handle = first.spawn(first.prepare(launch(account, input_dir, "while [ ! -e go ]; do sleep 0.1; done; exit 5")))
        wait_started(first, handle)
        del first  # the worker died

        second = make_backend(slurm_cluster, work_root)
        adopted = second.attach(handle.ref, account)
        assert adopted is not None
        assert (adopted.ref, adopted.pid, adopted.work_dir) == (handle.ref, handle.pid, handle.work_dir)
        assert second.poll(adopted) is None
        (handle.work_dir / "go").touch()
        outcome = wait_outcome(second, adopted)

        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 5)

    def test_a_reference_without_slurm_id_finds_the_submitted_job(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        prepared = first.prepare(launch(account, input_dir, "exit 4"))
        scheduled_ref = prepared.ref  # the worker died after sbatch, before committing the new reference
        first.spawn(prepared)

        second = make_backend(slurm_cluster, work_root)
        adopted = second.attach(scheduled_ref, account)
        assert adopted is not None and adopted.pid is None
        outcome = wait_outcome(second, adopted)

        assert adopted.pid == prepared.pid
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 4)

    def test_a_job_never_submitted_is_reported_unstarted_for_a_requeue(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        prepared = first.prepare(launch(account, input_dir, "exit 0"))  # the worker died before sbatch

        second = make_backend(slurm_cluster, work_root, submit_settle=0.0)  # its sbatch cannot come any more
        adopted = second.attach(prepared.ref, account)
        assert adopted is not None
        outcome = wait_outcome(second, adopted)

        assert (outcome.state, outcome.recorded, outcome.payload_started) == (JobState.ABORTED, False, False)
        assert outcome.reason == "Slurm has no job for it: it was never submitted (shallow failure)"
        assert not second.started(adopted)

    def test_a_job_whose_worker_died_during_sbatch_is_waited_for_not_submitted_twice(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        prepared = first.prepare(launch(account, input_dir, "echo ran $SLURM_JOB_ID"))
        scheduled_ref = prepared.ref  # the worker died while its sbatch was on the way to slurmctld

        heir = make_backend(slurm_cluster, work_root, submit_settle=3600.0)
        adopted = heir.attach(scheduled_ref, account)
        assert adopted is not None
        assert heir.poll(adopted) is None  # not "never submitted": slurmctld may still create the job
        first.spawn(prepared)  # ... and it does
        outcome = wait_outcome(heir, adopted)

        assert (adopted.pid, outcome.state, outcome.exit_code) == (prepared.pid, JobState.DONE, 0)
        assert jobs_named(slurm_cluster, job_name(prepared.work_dir.name)) == [str(prepared.pid)]

    def test_a_job_array_task_whose_worker_died_during_sbatch_is_waited_for(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        class DiesInSbatch(SlurmCommands):  # the worker is gone before sbatch answers
            def submit(self, script: Path, account: Account | None, cwd: Path) -> int:
                raise KeyboardInterrupt

        first = make_backend(slurm_cluster, work_root, commands=DiesInSbatch(slurm_cluster.conf))
        handles = [first.prepare(launch(account, input_dir, f"exit {n}")) for n in range(2)]
        with pytest.raises(KeyboardInterrupt):
            first.spawn_batch(handles)

        waiting = make_backend(slurm_cluster, work_root, submit_settle=3600.0)
        adopted = waiting.attach(handles[1].ref, account)
        assert adopted is not None and waiting.poll(adopted) is None  # task 1 of an array that may appear

        settled = make_backend(slurm_cluster, work_root, submit_settle=0.0)
        adopted = settled.attach(handles[1].ref, account)
        assert adopted is not None
        never = wait_outcome(settled, adopted)
        assert (never.state, never.recorded, never.payload_started) == (JobState.ABORTED, False, False)
        assert never.reason == "Slurm has no job for it: it was never submitted (shallow failure)"

    def test_a_submission_whose_answer_was_lost_is_found_by_name(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        class AnswerLost(SlurmCommands):  # sbatch did its work, then "timed out" before answering
            def submit(self, script: Path, account: Account | None, cwd: Path) -> int:
                self.submitted = super().submit(script, account, cwd)
                raise SlurmError("sbatch did not answer within 60 s", command="sbatch", timed_out=True)

        commands = AnswerLost(slurm_cluster.conf)
        backend = make_backend(slurm_cluster, work_root, commands=commands)
        handle, outcome = run_job(backend, launch(account, input_dir, "exit 6"))

        assert handle.pid == commands.submitted
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 6)

    def test_a_reference_without_slurm_id_never_takes_the_previous_attempts_job(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        job = launch(account, input_dir, "exit 0", prologue="/bin/false")
        failed, outcome = run_job(first, job)  # attempt 0 ends in Slurm (kept MinJobAge seconds)
        assert (outcome.state, outcome.payload_started) == (JobState.ABORTED, False)
        first.release(failed)
        retry = first.prepare(replace(job, attempt=1))
        assert retry.work_dir == failed.work_dir  # the same work dir, the same grid job

        second = make_backend(slurm_cluster, work_root, submit_settle=0.0)  # the worker died before sbatch
        adopted = second.attach(retry.ref, account)
        assert adopted is not None
        never = wait_outcome(second, adopted)
        assert (never.state, never.recorded, never.payload_started) == (JobState.ABORTED, False, False)
        assert never.reason == "Slurm has no job for it: it was never submitted (shallow failure)"
        assert adopted.pid is None  # not attempt 0's Slurm job

        first.spawn(retry)  # this attempt's job, found by a worker adopting its reference without id
        third = make_backend(slurm_cluster, work_root)
        found = third.attach(f"slurm:{CLUSTER}:-:{retry.work_dir.name}", account)
        assert found is not None
        again = wait_outcome(third, found)
        assert (found.pid, again.state) == (retry.pid, JobState.ABORTED)
        assert slurm_cluster.job(str(retry.pid))["JobName"] == job_name(retry.work_dir.name, 1)

    def test_an_sbatch_whose_answer_slurm_lost_is_followed_when_slurmctld_creates_the_job(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        backend = make_backend(slurm_cluster, work_root)
        handle = backend.prepare(launch(account, input_dir, "echo ran $SLURM_JOB_ID"))
        with controller_stopped(slurm_cluster):
            backend.spawn(handle)  # sbatch and the squeue looking for the job both time out: not a refusal
        assert handle.pid is None
        outcome = wait_outcome(backend, handle)  # slurmctld, continued, created the job after all

        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0)
        assert jobs_named(slurm_cluster, job_name(handle.work_dir.name)) == [str(handle.pid)]
        assert (handle.work_dir / "std.out").read_text() == f"ran {handle.pid}\n"

    def test_an_sbatch_whose_answer_was_lost_counts_as_never_submitted_only_after_the_settle_time(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        class LostOnTheWay(SlurmCommands):  # the request never reached slurmctld, sbatch said so
            def submit(self, script: Path, account: Account | None, cwd: Path) -> int:
                raise SlurmError(f"sbatch failed: {SOCKET_TIMEOUT.removeprefix('sbatch: error: ')}", command="sbatch",
                                 returncode=1, stderr=SOCKET_TIMEOUT)

        first = make_backend(slurm_cluster, work_root, commands=LostOnTheWay(slurm_cluster.conf))
        handle = first.spawn(first.prepare(launch(account, input_dir, "exit 0")))
        assert handle.pid is None and first.poll(handle) is None  # it may still appear
        del first  # the worker died

        waiting = make_backend(slurm_cluster, work_root, submit_settle=3600.0)
        adopted = waiting.attach(handle.ref, account)
        assert adopted is not None and waiting.poll(adopted) is None  # the lost sbatch is in the work dir

        settled = make_backend(slurm_cluster, work_root, submit_settle=0.0)
        adopted = settled.attach(handle.ref, account)
        assert adopted is not None
        outcome = wait_outcome(settled, adopted)
        assert (outcome.state, outcome.recorded, outcome.payload_started) == (JobState.ABORTED, False, False)
        assert outcome.reason is not None and "Socket timed out on send/recv operation" in outcome.reason
        assert "it was never submitted (shallow failure)" in outcome.reason

    def test_references_of_other_backends_and_clusters_are_not_adopted(self, backend: SlurmExecutionBackend,
                                                                       account: Account) -> None:
        assert backend.attach("local:host:12:name", account) is None
        assert backend.attach("slurm:othercluster:12:name", account) is None
        assert backend.attach(f"slurm:{CLUSTER}:x12:name", account) is None
        assert backend.attach(f"slurm:{CLUSTER}:12:", account) is None


class TestSlurmFailures:
    def test_an_unknown_partition_is_refused_with_slurms_message(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        handle = backend.prepare(launch(account, input_dir, "exit 0", queue="nosuchpartition"))

        with pytest.raises(BackendError, match="Invalid partition name specified"):
            backend.spawn(handle)
        backend.release(handle)

    def test_an_inactive_partition_is_refused_with_slurms_message(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path, slurm_cluster: SlurmCluster
    ) -> None:
        slurm_cluster.run("scontrol", "update", "PartitionName=long", "State=INACTIVE")
        try:
            handle = backend.prepare(launch(account, input_dir, "exit 0", queue="long"))
            with pytest.raises(BackendError, match="partition not available"):
                backend.spawn(handle)
        finally:
            slurm_cluster.run("scontrol", "update", "PartitionName=long", "State=UP")

    def test_no_account_as_root_is_refused(self, backend: SlurmExecutionBackend, input_dir: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("the refusal concerns a worker running as root")
        handle = backend.prepare(launch(None, input_dir, "exit 0"))
        with pytest.raises(BackendError, match="Refusing to run a job as root"):
            backend.spawn(handle)

    def test_a_job_never_scheduled_is_cancelled_after_max_pending_as_shallow(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=test")
        backend = make_backend(slurm_cluster, work_root, max_pending=1.0)
        handle, outcome = run_job(backend, launch(account, input_dir, "echo never"))

        assert (outcome.state, outcome.payload_started) == (JobState.ABORTED, False)
        assert outcome.reason is not None
        assert "did not schedule the job within 1 s" in outcome.reason and "shallow failure" in outcome.reason
        assert slurm_cluster.job(str(handle.pid))["JobState"] == "CANCELLED"
        assert not (handle.work_dir / "std.out").exists()

    def test_a_job_waiting_its_turn_is_not_cancelled_after_max_pending(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        busy = slurm_cluster.run("sbatch", "--parsable", "--exclusive", "-o", "/dev/null", "--wrap=sleep 600")
        busy_id = busy.stdout.strip()
        support.wait_for(lambda: slurm_cluster.queue().get(busy_id), lambda state: state == "RUNNING",
                         what="the job holding the node to run")
        backend = make_backend(slurm_cluster, work_root, max_pending=0.0, refresh=0.0)  # squeue at every poll
        handle = backend.spawn(backend.prepare(launch(account, input_dir, "exit 0")))

        def waiting() -> str:
            return slurm_cluster.run("squeue", "-h", "-o", "%T %r", "-j", str(handle.pid)).stdout.strip()
        support.wait_for(waiting, lambda line: line in ("PENDING Resources", "PENDING Priority"),
                         what="the job to wait for the node")
        assert backend.poll(handle) is None  # the backend sees it pending for Resources, past max_pending
        slurm_cluster.run("scancel", busy_id)
        outcome = wait_outcome(backend, handle)

        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0)

    def test_a_node_going_down_under_a_running_job_is_a_deep_failure_naming_slurms_state(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path, slurm_cluster: SlurmCluster
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(account, input_dir, "exec sleep 600")))
        wait_started(backend, handle)

        slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=test")
        outcome = wait_outcome(backend, handle)

        assert (outcome.state, outcome.payload_started) == (JobState.ABORTED, True)
        assert outcome.reason is not None
        assert "NODE_FAIL" in outcome.reason and "deep failure" in outcome.reason

    def test_a_node_that_dies_under_a_running_job_is_a_deep_failure_without_status(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path, slurm_cluster: SlurmCluster
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(account, input_dir, "exec sleep 600")))
        wait_started(backend, handle)

        slurm_cluster.crash_node()  # slurmd, the job step, the wrapper and the payload: all gone at once
        try:  # what slurmctld does after SlurmdTimeout, at once
            slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=crash")
            outcome = wait_outcome(backend, handle)
        finally:
            slurm_cluster.start_slurmd()

        assert (outcome.state, outcome.payload_started, outcome.recorded) == (JobState.ABORTED, True, False)
        assert outcome.reason is not None
        assert outcome.reason.startswith("the job wrapper ended without recording the job's outcome")
        assert "NODE_FAIL" in outcome.reason and "deep failure" in outcome.reason
        assert identity.read_status(handle.work_dir, account) is None

    def test_a_wrapper_that_cannot_start_is_a_shallow_failure(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        backend = make_backend(slurm_cluster, work_root, python="/nonexistent/python3")
        _, outcome = run_job(backend, launch(account, input_dir, "exit 0"))

        assert (outcome.state, outcome.payload_started, outcome.recorded) == (JobState.ABORTED, False, False)
        assert outcome.reason is not None
        assert "FAILED" in outcome.reason and "shallow failure" in outcome.reason
        assert "/nonexistent/python3" in outcome.reason  # the batch script's own error, from the log


class TestPrologueAndEpilogue:
    def test_a_failing_prologue_aborts_the_job_before_the_payload(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        prologue = {"prologue": "/bin/sh", "prologue_arguments": ["-c", "echo prologue-ran; exit 2"]}
        handle, outcome = run_job(backend, launch(account, input_dir, "echo payload > payload.out", **prologue))

        assert (outcome.state, outcome.payload_started) == (JobState.ABORTED, False)
        assert outcome.reason is not None and "prologue failed (exit code 2)" in outcome.reason
        assert not (handle.work_dir / "payload.out").exists()
        assert "prologue-ran" in (handle.work_dir / STATE_DIR / LOG_NAME).read_text()

    def test_the_epilogue_runs_after_the_payload_and_its_output_is_kept(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        epilogue = ["-c", "echo epilogue-ran; cat std.out > epilogue.out"]
        handle, outcome = run_job(backend, launch(account, input_dir, "echo payload", epilogue="/bin/sh",
                                                  epilogue_arguments=epilogue))

        assert (outcome.state, outcome.exit_code, outcome.reason) == (JobState.DONE, 0, None)
        assert (handle.work_dir / "epilogue.out").read_text() == "payload\n"
        assert "epilogue-ran" in (handle.work_dir / STATE_DIR / LOG_NAME).read_text()
        status = identity.read_status(handle.work_dir, account)
        assert status is not None and status.epilogue is not None and status.epilogue.exit_code == 0

    def test_a_failing_epilogue_is_recorded_in_the_outcome(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        handle, outcome = run_job(backend, launch(account, input_dir, "exit 0", epilogue="/bin/sh",
                                                  epilogue_arguments=["-c", "exit 4"]))

        assert outcome.payload_started  # the state is outcome_of's decision (a deep failure in the reference)
        assert outcome.reason is not None and "epilogue" in outcome.reason and "exit code 4" in outcome.reason
        status = identity.read_status(handle.work_dir, account)
        assert status is not None and status.epilogue is not None and status.epilogue.exit_code == 4


class TestJobArrays:
    """The jobs of one worker cycle that share account, partition and limits go to Slurm as one
    job array (one sbatch); each task is followed, cancelled and adopted on its own."""

    @staticmethod
    def spawn_cycle(backend: SlurmExecutionBackend, jobs: list[JobLaunch]) -> list[RunHandle]:
        handles = [backend.prepare(job) for job in jobs]
        backend.spawn_batch(handles)
        return [backend.spawn(handle) for handle in handles]

    def test_one_array_per_partition_each_task_runs_its_own_job(
        self, backend: SlurmExecutionBackend, slurm_cluster: SlurmCluster, account: Account, input_dir: Path
    ) -> None:
        jobs = [launch(account, input_dir, f"echo task $SLURM_ARRAY_TASK_ID; exit {code}") for code in (3, 4, 5)]
        alone = launch(account, input_dir, "exit 6", queue="long")
        handles = self.spawn_cycle(backend, [jobs[0], alone, jobs[1], jobs[2]])
        arrayed = [handles[0], handles[2], handles[3]]

        ids = [(parse_ref(handle.ref) or ("", None, ""))[1] for handle in arrayed]
        assert ids == [f"{arrayed[0].pid}_0", f"{arrayed[0].pid}_1", f"{arrayed[0].pid}_2"]
        assert (parse_ref(handles[1].ref) or ("", None, ""))[1] == str(handles[1].pid)  # alone: a plain job
        outcomes = [wait_outcome(backend, handle) for handle in handles]

        assert [(o.state, o.exit_code) for o in outcomes] == [(JobState.DONE, c) for c in (3, 6, 4, 5)]
        for index, handle in enumerate(arrayed):
            assert (handle.work_dir / "std.out").read_text() == f"task {index}\n"
            marker = (handle.work_dir / STATE_DIR / "slurm-task").read_text()
            assert marker == f"{job_name(arrayed[0].work_dir.name)} {index}\n"
        record = slurm_cluster.job(f"{arrayed[0].pid}_1")
        assert (record["ArrayJobId"], record["ArrayTaskId"]) == (str(arrayed[0].pid), "1")
        assert record["JobName"] == job_name(arrayed[0].work_dir.name)
        assert record["Comment"] == ",".join(job.job_id for job in jobs)
        assert record["UserId"].startswith(f"{account.name}(")

    def test_cancelling_one_task_leaves_the_others_running(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        wait_go = "while [ ! -e go ]; do sleep 0.1; done; exit 7"
        first, second = self.spawn_cycle(backend, [launch(account, input_dir, wait_go) for _ in range(2)])
        wait_started(backend, first)
        wait_started(backend, second)

        backend.cancel(first)
        cancelled = wait_outcome(backend, first)
        assert backend.poll(second) is None
        (second.work_dir / "go").touch()
        done = wait_outcome(backend, second)

        assert (cancelled.state, cancelled.payload_started) == (JobState.CANCELLED, True)
        assert (done.state, done.exit_code) == (JobState.DONE, 7)

    def test_a_pending_task_is_cancelled_alone(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path, slurm_cluster: SlurmCluster
    ) -> None:
        slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=test")
        first, second = self.spawn_cycle(backend, [launch(account, input_dir, f"exit {c}") for c in (1, 2)])
        support.wait_for(lambda: slurm_cluster.queue().get(f"{first.pid}_[0-1]"), lambda state: state == "PENDING",
                         what="the array to be pending")
        assert backend.poll(first) is None and backend.poll(second) is None

        backend.cancel(first)
        cancelled = wait_outcome(backend, first)
        resume_node(slurm_cluster)
        done = wait_outcome(backend, second)

        assert (cancelled.state, cancelled.payload_started) == (JobState.CANCELLED, False)
        assert (done.state, done.exit_code) == (JobState.DONE, 2)

    def test_a_fresh_backend_adopts_tasks_by_their_references_with_or_without_id(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        first = make_backend(slurm_cluster, work_root)
        wait_go = "while [ ! -e go ]; do sleep 0.1; done; exit {}"
        prepared = [first.prepare(launch(account, input_dir, wait_go.format(code))) for code in (8, 9)]
        scheduled_refs = [handle.ref for handle in prepared]  # what the worker committed before sbatch
        first.spawn_batch(prepared)
        spawned_ref = first.spawn(prepared[0]).ref
        first.spawn(prepared[1])
        del first  # the worker died; only the first job's reference with its task id was committed

        second = make_backend(slurm_cluster, work_root)
        by_id = second.attach(spawned_ref, account)
        without_id = second.attach(scheduled_refs[1], account)
        assert by_id is not None and without_id is not None and without_id.pid is None
        assert second.poll(by_id) is None and second.poll(without_id) is None
        assert without_id.ref == prepared[1].ref  # found as task 1 of the array
        for handle in prepared:
            (handle.work_dir / "go").touch()

        assert [(o.state, o.exit_code) for o in (wait_outcome(second, by_id), wait_outcome(second, without_id))] \
            == [(JobState.DONE, 8), (JobState.DONE, 9)]

    def test_an_array_whose_sbatch_answer_slurm_lost_has_each_task_followed(
        self, backend: SlurmExecutionBackend, slurm_cluster: SlurmCluster, account: Account, input_dir: Path
    ) -> None:
        handles = [backend.prepare(launch(account, input_dir, f"exit {code}")) for code in (1, 2)]
        with controller_stopped(slurm_cluster):
            backend.spawn_batch(handles)
        for handle in handles:
            backend.spawn(handle)
        assert [handle.pid for handle in handles] == [None, None]

        outcomes = [wait_outcome(backend, handle) for handle in handles]
        assert [(o.state, o.exit_code) for o in outcomes] == [(JobState.DONE, 1), (JobState.DONE, 2)]
        ids = [(parse_ref(handle.ref) or ("", None, ""))[1] for handle in handles]
        assert ids == [f"{handles[0].pid}_0", f"{handles[0].pid}_1"]
        assert jobs_named(slurm_cluster, job_name(handles[0].work_dir.name)) == ids

    def test_a_refused_array_fails_each_of_its_jobs(
        self, backend: SlurmExecutionBackend, account: Account, input_dir: Path
    ) -> None:
        handles = [backend.prepare(launch(account, input_dir, "exit 0", queue="nosuchpartition")) for _ in range(2)]
        backend.spawn_batch(handles)
        for handle in handles:
            with pytest.raises(BackendError, match="Invalid partition name specified"):
                backend.spawn(handle)
            backend.release(handle)

    def test_a_task_whose_wrapper_cannot_start_is_a_shallow_failure_with_its_log(
        self, slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
    ) -> None:
        backend = make_backend(slurm_cluster, work_root, python="/nonexistent/python3")
        handles = self.spawn_cycle(backend, [launch(account, input_dir, "exit 0") for _ in range(2)])
        assert all("_" in (parse_ref(handle.ref) or ("", "", ""))[1] for handle in handles)  # tasks of an array

        for handle in handles:
            outcome = wait_outcome(backend, handle)
            assert (outcome.state, outcome.payload_started, outcome.recorded) == (JobState.ABORTED, False, False)
            assert outcome.reason is not None and "shallow failure" in outcome.reason
            assert "/nonexistent/python3" in outcome.reason  # the task's own error, from its wrapper.log
