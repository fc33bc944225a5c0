"""The worker's read-ahead (``ExecutionWorker.ahead``): when short jobs end, it claims, prepares
and records Scheduled the next jobs before a slot is free, and spawns them as soon as one is.

The worker runs in-process on a real database (SQLite file and PostgreSQL) with
``max_running = 1``; the jobs run through the wrapper as the mapped account. Every test makes
one job wait ahead: A (``exit 0``) ends, so the cycle that reaps it starts B (which waits for a
``go`` file) and prepares C ahead of a slot. Then: a crash, a heartbeat's adoption, a cancel, a
drain and the hold's end must each leave C run exactly once (or cancelled, never run), its
prepared work dir removed, and never more than one job running."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import (
    LEASE,
    WAIT_GO,
    Killed,
    abandon,
    database_held,
    impatient,
    in_state,
    job_row,
    running_events,
    start_requests,
    submit,
    until,
    work_dir,
)
from tests.support import delegate_in_process, principal_of
from tests.unit.execution.wrapper_support import DEADLINE, alive, kill_session
from wmproxy.domain import JobState, Principal
from wmproxy.execution import worker as worker_module
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.jobs import cancel_job
from wmproxy.services.runtime import Runtime


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    # Any job counts as short (a loaded machine may run ``exit 0`` for longer than the default).
    monkeypatch.setattr(worker_module, "READ_AHEAD_RUNTIME", 3600.0)
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE, "poll_interval": 0.05,
                                   "kill_grace": 2.0, "max_running": 1}) as runtime:
        yield runtime


@pytest.fixture
def owner(rt: Runtime, pki: Pki) -> Principal:
    """alice, with the delegation "exec" that the jobs use."""
    delegate_in_process(rt, principal := principal_of(pki, "alice"), pki.users["alice"].proxy, "exec")
    return principal


@pytest.fixture
def workers(rt: Runtime, work_root: Path) -> Iterator[Callable[[str], ExecutionWorker]]:
    """``make(name)`` gives a worker on the local backend; the wrappers left running are killed after."""
    made: list[ExecutionWorker] = []
    yield lambda name: made.append(ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)},
                                                   name)) or made[-1]
    for handle in [h for worker in made for h in [*(job.handle for job in worker.running.values()), *worker.detached]]:
        if handle.pid is not None and alive(handle.pid):
            kill_session(handle.pid)
        if handle.process is not None:
            handle.process.wait(timeout=DEADLINE)


def one_ahead(rt: Runtime, owner: Principal, worker: ExecutionWorker) -> tuple[str, str]:
    """Submit A (short), B (waits for ``go``), C (short) and step ``worker`` until C waits
    ahead of a slot while B runs; returns (B, C)."""
    short, waiting, ahead = submit(rt, owner, "exit 0"), submit(rt, owner, WAIT_GO), submit(rt, owner, "exit 0")
    worker.start()
    until(worker, lambda: bool(worker.ahead), "a job prepared ahead")
    assert job_row(rt, short).state == JobState.DONE.value
    assert list(worker.running) == [waiting] and list(worker.ahead) == [ahead]
    assert job_row(rt, ahead).state == JobState.SCHEDULED.value and work_dir(rt, ahead).is_dir()
    return waiting, ahead


def finish(rt: Runtime, worker: ExecutionWorker, waiting: str, ahead: str) -> None:
    """Let B end and step ``worker`` (max_running 1 respected at every step) until C is final."""
    (work_dir(rt, waiting) / "go").write_text("")
    until(worker, lambda: len(worker.running) <= 1 and in_state(rt, ahead, JobState.DONE, JobState.CANCELLED)(),
          "the job prepared ahead to end")
    assert job_row(rt, waiting).state == JobState.DONE.value


class TestReadAhead:
    def test_the_job_prepared_ahead_runs_once_when_a_slot_frees_never_above_max_running(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-ahead")
        waiting, ahead = one_ahead(rt, owner, worker)
        for _ in range(5):  # B runs: no slot, C stays ahead (not spawned above max_running)
            worker.step()
            assert len(worker.running) == 1 and list(worker.ahead) == [ahead]
        (work_dir(rt, waiting) / "go").write_text("")
        until(worker, lambda: ahead in worker.running or in_state(rt, ahead, JobState.DONE)(), "C to start")
        assert len(worker.running) <= 1
        until(worker, in_state(rt, ahead, JobState.DONE), "C to end")
        assert running_events(rt, ahead) == 1 and start_requests(rt, ahead) == 1

    def test_a_heartbeats_adoption_leaves_the_workers_own_job_prepared_ahead(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-heartbeat")
        waiting, ahead = one_ahead(rt, owner, worker)
        worker.adopt()  # as every heartbeat does
        assert list(worker.ahead) == [ahead] and job_row(rt, ahead).state == JobState.SCHEDULED.value
        assert start_requests(rt, ahead) == 1 and work_dir(rt, ahead).is_dir()
        finish(rt, worker, waiting, ahead)
        assert running_events(rt, ahead) == 1

    def test_a_crash_with_a_job_prepared_ahead_requeues_it_once_and_removes_its_work_dir(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        dead = workers("w-dead")
        waiting, ahead = one_ahead(rt, owner, dead)
        prepared = work_dir(rt, ahead)
        abandon(dead, rt)  # killed: nothing of it runs any more
        heir = workers("w-heir")
        heir.start()
        assert list(heir.running) == [waiting] and heir.ahead == {}
        assert job_row(rt, ahead).state == JobState.WAITING.value and not prepared.exists()
        assert start_requests(rt, ahead) == 2
        finish(rt, heir, waiting, ahead)
        assert job_row(rt, ahead).state == JobState.DONE.value and running_events(rt, ahead) == 1

    def test_a_cancelled_job_prepared_ahead_is_cancelled_without_running(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-cancel")
        waiting, ahead = one_ahead(rt, owner, worker)
        prepared = work_dir(rt, ahead)
        cancel_job(rt, owner, ahead)
        until(worker, in_state(rt, ahead, JobState.CANCELLED), "the cancel")
        assert worker.ahead == {} and not prepared.exists() and running_events(rt, ahead) == 0
        assert list(worker.running) == [waiting]

    def test_a_cancel_taken_in_the_cycle_the_worker_is_killed_in_is_recorded_by_its_restart(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker],
            monkeypatch: pytest.MonkeyPatch) -> None:
        worker = workers("w-cancel-kill")
        journal = worker.journal_path
        waiting, ahead = one_ahead(rt, owner, worker)
        prepared = work_dir(rt, ahead)
        left: dict[str, bytes] = {}

        def killed(*args: object, **kwargs: object) -> None:  # in the cycle's commit
            assert not prepared.exists()  # released: the cancel taken, nothing to adopt
            left.update({p.name: p.read_bytes() for p in journal.parent.iterdir()})
            raise Killed

        monkeypatch.setattr(worker_module, "end_attempts", killed)
        cancel_job(rt, owner, ahead)
        with pytest.raises(Killed):
            until(worker, lambda: False, "the kill")
        monkeypatch.undo()
        for written in journal.parent.iterdir():  # what ran after the kill never ran
            written.unlink()
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(left[journal.name])
        doc = json.loads(journal.read_text())
        assert [(job_id, end["state"]) for job_id, end in doc["ends"]] == [(ahead, "Cancelled")]
        restarted = workers("w-cancel-kill")
        restarted.start()
        until(restarted, in_state(rt, ahead, JobState.CANCELLED), "the journaled cancel recorded")
        assert running_events(rt, ahead) == 0 and list(restarted.running) == [waiting]

    @pytest.mark.postgresql_only  # SQLite's outage stops the cycle before any cancel is taken
    def test_a_cancel_taken_while_the_database_fails_is_kept_and_recorded(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-cancel-outage")
        _waiting, ahead = one_ahead(rt, owner, worker)
        cancel_job(rt, owner, ahead)
        with impatient(rt), database_held(rt, ahead):  # the cancel is taken, its record refused
            until(worker, lambda: ahead not in worker.ahead, "the cancel taken", tolerate=(OperationalError,))
            assert [job_id for job_id, _end in worker.unrecorded] == [ahead]
        until(worker, in_state(rt, ahead, JobState.CANCELLED), "the cancel recorded")
        assert running_events(rt, ahead) == 0 and start_requests(rt, ahead) == 1

    def test_a_drain_during_an_outage_leaves_the_job_prepared_ahead_to_adoption(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-drain")
        waiting, ahead = one_ahead(rt, owner, worker)
        prepared = work_dir(rt, ahead)
        with impatient(rt), database_held(rt, ahead):
            worker.stop()  # SIGTERM while the job cannot be put back: no exception, nothing held
            assert worker.ahead == {} and worker.running == {} and not prepared.exists()
        assert job_row(rt, ahead).state == JobState.SCHEDULED.value  # not requeued yet
        restarted = workers("w-drain")
        restarted.start()  # its adoption finds the job never started: back in the queue, once
        assert job_row(rt, ahead).state == JobState.WAITING.value and start_requests(rt, ahead) == 2
        finish(rt, restarted, waiting, ahead)
        assert running_events(rt, ahead) == 1

    def test_a_drain_puts_the_job_prepared_ahead_back_in_the_queue(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w-drain")
        waiting, ahead = one_ahead(rt, owner, worker)
        prepared = work_dir(rt, ahead)
        worker.stop()  # SIGTERM
        row = job_row(rt, ahead)
        assert row.state == JobState.WAITING.value and row.worker is None and not prepared.exists()
        assert start_requests(rt, ahead) == 2 and job_row(rt, waiting).state == JobState.RUNNING.value
        restarted = workers("w-drain")
        restarted.start()
        finish(rt, restarted, waiting, ahead)
        assert running_events(rt, ahead) == 1

    def test_a_job_held_ahead_past_the_hold_is_put_back_for_any_worker(
            self, rt: Runtime, owner: Principal, workers: Callable[[str], ExecutionWorker],
            monkeypatch: pytest.MonkeyPatch) -> None:
        worker = workers("w-hold")
        waiting, ahead = one_ahead(rt, owner, worker)
        prepared = work_dir(rt, ahead)
        monkeypatch.setattr(worker_module, "READ_AHEAD_HOLD", 0.0)
        worker.step()
        assert worker.ahead == {} and not prepared.exists()
        row = job_row(rt, ahead)
        assert row.state == JobState.WAITING.value and row.worker is None and start_requests(rt, ahead) == 2
        other = workers("w-other")  # another worker with room runs it
        other.start()
        until(other, in_state(rt, ahead, JobState.DONE), "the put-back job to run elsewhere")
        assert running_events(rt, ahead) == 1
        (work_dir(rt, waiting) / "go").write_text("")
        until(worker, in_state(rt, waiting, JobState.DONE), "B to end")
