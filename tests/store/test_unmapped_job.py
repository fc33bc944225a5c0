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

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import LEASE, aborted_beside_done, job_row
from wmproxy.domain import to_filename
from wmproxy.execution.identity import Account
from wmproxy.services.runtime import Runtime


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE,
                                   "poll_interval": 0.05, "kill_grace": 2.0}) as runtime:
        yield runtime


def test_a_job_registered_unmapped_is_aborted_not_run_as_the_service(rt: Runtime, pki: Pki,
                                                                     work_root: Path) -> None:
    # local_account as registered while [mapping] mode was none
    unmapped, _ = aborted_beside_done(rt, pki, work_root, "the unmapped job aborted and the mapped one done",
                                      stored={"local_account": None})
    row = job_row(rt, unmapped)
    assert "no mapped account" in (row.reason or "") and row.shallow_retries == 0
    assert row.backend_ref is None  # never prepared: nothing spawned
    assert to_filename(unmapped) not in os.listdir(work_root)  # and no work dir made
