"""A job that makes a directory tree far deeper than Python's recursion limit in its work dir
(``while :; do mkdir a && cd a; done``) ends like any other, and the worker goes on: the removal
of the work dir raised RecursionError (shutil.rmtree on 3.11), which left the worker's step and
ended the worker process with the job Running. And whatever a removal raises, the worker logs it,
records the job's end and keeps the work dir for a later try.

The worker runs in-process on a real database (SQLite file and PostgreSQL); the jobs run through
the wrapper as the mapped account."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.deep_trees import DEPTH
from tests.store.worker_support import in_state, job_row, left_in_work_root, local_worker_runtime, submit, until
from wmproxy.domain import JobState, Principal, to_filename
from wmproxy.execution import identity
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime

#: Levels one ``mkdir -p`` of the job makes (its path stays far below PATH_MAX).
_STRIDE = 500
assert DEPTH % _STRIDE == 0
#: A job making a chain of DEPTH directories: ``mkdir -p`` and ``cd -P`` of _STRIDE levels at a
#: time (dash's logical ``cd`` stops at PATH_MAX, about 2,000 levels here). One process per level
#: took the job up to a minute on a loaded machine.
DEEP = (f"p={'a/' * _STRIDE}; i=0; while [ $i -lt {DEPTH // _STRIDE} ]; do mkdir -p $p && cd -P $p || exit 1;"
        f" i=$((i+1)); done; echo $((i*{_STRIDE}))")


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with local_worker_runtime(tmp_path, pki, database_url, work_root, job_account, store_key_dir) as runtime:
        yield runtime


def _worker(rt: Runtime, **options: bool) -> ExecutionWorker:
    """A started worker on the local backend with ``options`` (the jobs here end by themselves)."""
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(Path(rt.settings.execution.work_dir),
                                                                  kill_grace=2.0, **options)}, "w1")
    worker.start()
    return worker


@pytest.mark.parametrize("options", [{}, {"background_removal": True, "reuse_work_dirs": True}],
                         ids=["removed-at-release", "as-deployed"])
def test_a_job_making_a_tree_deeper_than_the_recursion_limit_ends_done_and_its_work_dir_goes(
        rt: Runtime, alice: Principal, options: dict[str, bool]) -> None:
    """``as-deployed``: the worker's command (wmproxy.execution.__main__) removes released work
    dirs in the background (:meth:`LocalExecutionBackend.tidy`) and reuses them; a work dir holding
    a directory is not reused."""
    deep = submit(rt, alice, DEEP)
    worker = _worker(rt, **options)
    until(worker, in_state(rt, deep, JobState.DONE), "the deep job to end")
    until(worker, lambda: left_in_work_root(rt) == [], "its work dir to be removed")
    assert job_row(rt, deep).exit_code == 0
    after = submit(rt, alice, "exit 0")  # the worker goes on
    until(worker, in_state(rt, after, JobState.DONE), "the next job to end")


def test_whatever_a_removal_raises_the_job_ends_and_its_work_dir_is_kept_for_a_later_try(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A failure that is not the backend's (BackendError): the worker caught only WMProxyError
    there, so anything else left its step and ended the worker with the job Running."""
    def broken(work_root: Path, name: str) -> None:
        raise RuntimeError("removal broken")

    monkeypatch.setattr(identity, "remove_work_dir", broken)
    job_id = submit(rt, alice, "exit 0")
    worker = _worker(rt)
    with caplog.at_level(logging.ERROR, logger="wmproxy.execution.worker"):
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
    assert left_in_work_root(rt) == [to_filename(job_id)]
    assert "removal broken" in caplog.text
    monkeypatch.undo()
    identity.remove_work_dir(Path(rt.settings.execution.work_dir), to_filename(job_id))  # as the purger will
    after = submit(rt, alice, "exit 0")
    until(worker, in_state(rt, after, JobState.DONE), "the next job to end")
    assert left_in_work_root(rt) == []
