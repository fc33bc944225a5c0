"""A CE catalogue the worker cannot read: its error names the file and is logged once, not at
every cycle (a fresh install naming /etc/wmproxy/ce-catalogue.ads, never written, logged the
same line every second without the path); the jobs wait, and run once the file is there.

Real worker in process, both databases (``wmproxy/services/matchmaking.py``,
``MatchingFailures``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import end_jobs, in_state, job_row, submit, until
from tests.support import delegate_in_process, principal_of
from wmproxy.domain import JobState
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime

WORKER_LOG = "wmproxy.execution.worker"


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "ce-catalogue.ads"


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account, store_key_dir: Path,
       catalogue: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0},
                        jobs={"ce_catalogue": str(catalogue)}) as runtime:
        yield runtime


def test_an_unreadable_catalogue_is_logged_once_with_its_path_and_the_jobs_run_once_it_is_there(
        rt: Runtime, pki: Pki, work_root: Path, catalogue: Path, caplog: pytest.LogCaptureFixture) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    job = submit(rt, alice, "touch ran")
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w1")
    caplog.set_level(logging.INFO, logger=WORKER_LOG)

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == WORKER_LOG and r.levelno >= logging.ERROR]

    try:
        worker.start()
        for _ in range(20):  # twenty cycles, each failing to match
            worker.step()
        (line,) = errors()
        assert f"CE catalogue {catalogue} unreadable: No such file or directory" in line, line
        assert job_row(rt, job).state == JobState.WAITING.value

        catalogue.parent.mkdir()
        catalogue.write_text("[ GlueCEUniqueID = \"ce.example.org:7443/wmproxy-local\"; "
                             "GlueCEStateStatus = \"Production\" ]\n")
        until(worker, in_state(rt, job, JobState.DONE), "the job to run once the catalogue is there")
        assert len(errors()) == 1
        assert any(r.getMessage().startswith("matching works again") for r in caplog.records if r.name == WORKER_LOG)
    finally:
        end_jobs(worker)
