"""A job without a mapped account is not run while jobs are mapped (least privilege).

A site that ran with ``[mapping] mode = none`` and then turned mapping on keeps its database:
a job registered before (``jobs.local_account`` NULL) and started afterwards would run as the
service's own user, who can read the store key, the database and every stored proxy. The worker
aborts it instead, for good (no retry), before it makes its work dir. Real worker in process,
both databases; the job that is mapped beside it runs as its account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import LEASE, end_jobs, in_state, job_row, submit, until
from tests.support import delegate_in_process, principal_of
from wmproxy.domain import JobState, to_filename
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE,
                                   "poll_interval": 0.05, "kill_grace": 2.0}) as runtime:
        yield runtime


def test_a_job_registered_unmapped_is_aborted_not_run_as_the_service(rt: Runtime, pki: Pki,
                                                                     work_root: Path) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    unmapped, mapped = submit(rt, alice, "touch ran"), submit(rt, alice, "touch ran")
    with rt.uow() as uow:  # as registered while [mapping] mode was none
        uow.session.execute(sa.update(Job).where(Job.id == unmapped).values(local_account=None))
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w1")
    try:
        worker.start()
        until(worker, lambda: in_state(rt, unmapped, JobState.ABORTED)() and in_state(rt, mapped, JobState.DONE)(),
              "the unmapped job aborted and the mapped one done")
    finally:
        end_jobs(worker)
    row = job_row(rt, unmapped)
    assert "no mapped account" in (row.reason or "") and row.shallow_retries == 0
    assert row.backend_ref is None  # never prepared: nothing spawned
    assert to_filename(unmapped) not in os.listdir(work_root)  # and no work dir made
