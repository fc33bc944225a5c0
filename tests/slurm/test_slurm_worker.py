"""The execution worker in-process with the Slurm backend on the session's cluster: a job
whose worker died before its sbatch is requeued by the worker that adopts it, not Aborted
(docs/slurm.md, "Worker restarts")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import CLUSTER, make_backend
from tests.store.conftest import alice, mapped_runtime, store_key_dir
from tests.store.worker_support import LEASE, Killed, abandon, in_state, job_row, start_requests, submit, until
from wmproxy.domain import JobState, Principal
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.identity import Account
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
