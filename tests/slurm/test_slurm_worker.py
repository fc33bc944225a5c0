"""The execution worker in-process with the Slurm backend on the session's cluster: a job
whose worker died before its sbatch is requeued by the worker that adopts it, not Aborted
(docs/slurm.md, "Worker restarts"); a job whose own files (``.wmproxy/slurm-task``) hold
digits ``int`` refuses is adopted all the same, and one a backend fails to attach is set
aside, the worker going on (red team)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import CLUSTER, make_backend
from tests.store.conftest import alice, mapped_runtime, store_key_dir
from tests.store.worker_support import (
    LEASE,
    Killed,
    abandon,
    in_state,
    job_row,
    start_requests,
    submit,
    until,
    work_dir,
)
from wmproxy.domain import JobState, Principal
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.slurm import NamedJob, SlurmCommands, SlurmError
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime

__all__ = ["alice", "store_key_dir"]

pytestmark = pytest.mark.sqlite_only  # the worker's adoption, not the database, is under test

CES = ('[ GlueCEUniqueID = "localhost:6817/slurm-debug"; WMProxyBackend = "slurm"; SlurmPartition = "debug";'
       ' GlueCEStateStatus = "Production"; GlueCEInfoHostName = "localhost" ]\n')


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path, account: Account,
       work_root: Path) -> Iterator[Runtime]:
    catalogue = tmp_path / "ces.txt"
    catalogue.write_text(CES)
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE, "poll_interval": 0.05,
                                   "kill_grace": 2.0, "backend": "slurm"},
                        jobs={"ce_catalogue": str(catalogue)}) as runtime:
        yield runtime


def test_a_job_whose_worker_died_before_its_sbatch_is_requeued_by_its_heir(
    rt: Runtime, alice: Principal, slurm_cluster: SlurmCluster, work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submit(rt, alice, "echo ran", "Requirements = true; ShallowRetryCount = 0;")
    dying = make_backend(slurm_cluster, work_root, submit_settle=5.0)

    def killed(handles: list[RunHandle]) -> None:
        raise Killed  # SIGKILL of the worker once the job is Scheduled, just before its sbatch

    monkeypatch.setattr(dying, "spawn_batch", killed)
    dead = ExecutionWorker(rt, {"slurm": dying}, "w-dead")
    dead.start()
    with pytest.raises(Killed):
        until(dead, lambda: False, "the worker to reach its sbatch")
    row = job_row(rt, job_id)
    assert row.state == JobState.SCHEDULED.value
    assert (row.backend_ref or "").startswith(f"slurm:{CLUSTER}:-:")  # no Slurm job id
    abandon(dead, rt)

    # Adopted while its sbatch may still come (submit_settle after slurm.sh was written): followed,
    # then known never submitted: requeued, run again, not Aborted (no shallow retry to use up).
    heir = ExecutionWorker(rt, {"slurm": make_backend(slurm_cluster, work_root, submit_settle=5.0)}, "w-heir")
    heir.start()
    until(heir, in_state(rt, job_id, JobState.DONE, JobState.ABORTED, JobState.CANCELLED), "the job to end")

    row = job_row(rt, job_id)
    assert (row.state, row.exit_code, row.reason) == (JobState.DONE.value, 0, None)
    assert (row.shallow_retries, start_requests(rt, job_id)) == (0, 2)
    assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "ran\n"


class AnswerLost(SlurmCommands):
    """sbatch creates the job, then its answer is lost (a busy slurmctld), and every squeue by
    name times out too: the job stays without Slurm id in the database."""

    def submit(self, script: Path, account: Account | None, cwd: Path) -> int:
        super().submit(script, account, cwd)
        raise SlurmError("sbatch failed: Socket timed out on send/recv operation", command="sbatch",
                         returncode=1, stderr="sbatch: error: Socket timed out on send/recv operation")

    def named(self, names: Sequence[str]) -> dict[str, NamedJob]:
        raise SlurmError("squeue did not answer within 60 s", command="squeue", timed_out=True)


class Broken(SlurmExecutionBackend):
    """A backend with a defect in attaching a job."""

    def attach(self, ref: str, account: Account | None) -> RunHandle | None:
        raise ValueError("invalid literal for int() with base 10: '\u00b2'")


#: The payload rewrites its own slurm-task: a task number str.isdigit() accepts, int() refuses.
POISON = ('rm -f .wmproxy/slurm-task; printf \\"x \\\\302\\\\262\\\\n\\" > .wmproxy/slurm-task; '
          'echo poisoned $SLURM_JOB_ID; exec sleep 300')


def test_a_job_whose_files_hold_foreign_digits_is_adopted_its_slurm_id_recorded_and_a_defect_sets_it_aside(
    rt: Runtime, alice: Principal, slurm_cluster: SlurmCluster, work_root: Path,
) -> None:
    job_id = submit(rt, alice, POISON, "Requirements = true;")
    first = ExecutionWorker(rt, {"slurm": make_backend(slurm_cluster, work_root,
                                                         commands=AnswerLost(slurm_cluster.conf))}, "w-first")
    first.start()
    until(first, lambda: job_row(rt, job_id).backend_ref is not None, "the job to be scheduled")
    work = work_dir(rt, job_id)
    until(first, lambda: (work / "out").exists() and (work / "out").read_text().startswith("poisoned "),
          "the payload to run")
    assert (work / ".wmproxy" / "slurm-task").read_bytes() == "x \u00b2\n".encode()
    slurm_id = int((work / "out").read_text().split()[1])
    assert job_row(rt, job_id).backend_ref == f"slurm:{CLUSTER}:-:{work.name}"
    abandon(first, rt)
    try:
        broken = ExecutionWorker(rt, {"slurm": Broken(work_root, slurm_conf=slurm_cluster.conf, cluster=CLUSTER)},
                                 "w-broken")
        broken.start()  # the defect is the job's, not the worker's end
        assert job_id in broken.set_aside and job_id not in broken.running
        broken.step()
        assert job_row(rt, job_id).state == JobState.RUNNING.value  # its record kept for the administrator
        abandon(broken, rt)

        heir = ExecutionWorker(rt, {"slurm": make_backend(slurm_cluster, work_root)}, "w-heir")
        heir.start()
        until(heir, lambda: heir.running[job_id].handle.pid is not None, "the heir to find the job's Slurm job")
        assert heir.running[job_id].handle.pid == slurm_id
        # recorded: a worker adopting the job next follows that Slurm job, the job's files unread
        until(heir, lambda: job_row(rt, job_id).backend_ref == f"slurm:{CLUSTER}:{slurm_id}:{work.name}",
              "the Slurm job id to be recorded")
    finally:
        slurm_cluster.run("scancel", str(slurm_id), check=False)
    until(heir, in_state(rt, job_id, JobState.DONE, JobState.ABORTED, JobState.CANCELLED), "the job to end")
