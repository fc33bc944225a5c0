"""The execution worker in-process on a real database (SQLite file and PostgreSQL): jobs run
through the wrapper as the mapped account (a throwaway Unix account; the tests run as
root), and none is lost or run twice when workers die, race, drain or restart, or when the
database or the sandbox's file system fails as a job ends.

A "dead" worker is a worker object the test abandons (its wrappers keep running, in their
own sessions) whose heartbeat the test back-dates past the lease: no sleeping."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
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
    left_in_work_root,
    running_events,
    start_requests,
    submit,
    until,
    work_dir,
)
from tests.support import counted_on_disk
from tests.unit.execution.wrapper_support import DEADLINE, alive, kill_session
from wmproxy.config import BrokeringSettings
from wmproxy.domain import FINAL_STATES, JobState, Principal, to_filename, utcnow
from wmproxy.execution import ends_journal, processes
from wmproxy.execution.backends import JobLaunch, local
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import PROXY_NAME, Account
from wmproxy.execution.jobwrapper import STATE_DIR, STATUS_NAME
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.jdl import parse_jdl
from wmproxy.sandbox.storage import TMP_SUFFIX
from wmproxy.services import execution as service
from wmproxy.services import quota
from wmproxy.services.execution import WorkerNameInUseError
from wmproxy.services.jobs import cancel_job
from wmproxy.services.perusal import enable_file_perusal
from wmproxy.services.retries import END_REFUSED, AttemptEnd, EndsNotRecordedError, end_attempts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import Job


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE, "poll_interval": 0.05,
                                   "kill_grace": 2.0},
                        jobs={"min_perusal_interval": 1},
                        # a job left Waiting (no job directory) is claimed again soon
                        replace={"brokering": BrokeringSettings(match_retry_period=0.5)}) as runtime:
        yield runtime


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], bool]]:
    """Every ends journal written from now on, as (its job ids, whether it was synced)."""
    written: list[tuple[list[str], bool]] = []
    save = ends_journal.save

    def watched(*args: Any, durable: bool = True, **kwargs: Any) -> Path:
        written.append(([job_id for job_id, _end in args[4]], durable))
        return save(*args, durable=durable, **kwargs)

    monkeypatch.setattr(ends_journal, "save", watched)
    return written



@pytest.fixture
def workers(rt: Runtime, work_root: Path) -> Iterator[Callable[[str], ExecutionWorker]]:
    """``make(name)`` gives a worker; afterwards every wrapper a test left running is killed."""
    made: list[ExecutionWorker] = []

    def make(name: str) -> ExecutionWorker:
        worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, name)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        for handle in [job.handle for job in worker.running.values()] + worker.detached:
            if handle.pid is not None and alive(handle.pid):
                kill_session(handle.pid)
            if handle.process is not None:
                handle.process.wait(timeout=DEADLINE)


def running(rt: Runtime, alice: Principal, worker: ExecutionWorker, script: str = "", extra: str = "") -> str:
    """Submit a job (default: waits for a ``go`` file, then exits 5) and step ``worker`` until it runs."""
    job_id = submit(rt, alice, script or WAIT_GO, extra)
    worker.start()
    until(worker, in_state(rt, job_id, JobState.RUNNING), "the job to run")
    return job_id


class TestRun:
    def test_a_job_runs_as_its_mapped_account_and_ends_done(self, rt: Runtime, alice: Principal,
                                                            workers: Callable[[str], ExecutionWorker],
                                                            job_account: Account) -> None:
        job_id = submit(rt, alice, "id -u; exit 3", 'LocalAccount = "root";')  # the user's own is replaced
        row = job_row(rt, job_id)
        assert row.local_account == job_account.name
        assert parse_jdl(row.jdl_registered)["LocalAccount"] == job_account.name
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        row = job_row(rt, job_id)
        assert (row.exit_code, row.reason, row.worker) == (3, None, "w1")
        assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == f"{job_account.uid}\n"
        assert left_in_work_root(rt) == [], "the work dir was not removed"

    def test_the_registered_jdl_names_the_proxy_copy_the_job_sees(self, rt: Runtime, alice: Principal,
                                                                  workers: Callable[[str], ExecutionWorker]) -> None:
        job_id = submit(rt, alice, "echo $X509_USER_PROXY")
        registered = parse_jdl(job_row(rt, job_id).jdl_registered)["X509UserProxy"]
        assert registered == str(rt.storage.job_area(job_id).proxy_file)
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == f"{registered}\n"

    def test_every_node_of_a_collection_runs_as_the_mapped_account(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], job_account: Account
    ) -> None:
        collection = (
            '[ Type = "collection"; Nodes = {'
            ' [ Executable = "/usr/bin/id"; Arguments = "-u"; StdOutput = "n.out"; OutputSandbox = {"n.out"}; ],'
            ' [ Executable = "/usr/bin/id"; Arguments = "-u"; StdOutput = "n.out"; OutputSandbox = {"n.out"}; ] }; ]'
        )
        parent = submit_job(rt, alice, collection, "exec")
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, parent.job_id, JobState.DONE), "the collection to end")
        assert len(parent.children) == 2
        for node in parent.children:
            row = job_row(rt, node.job_id)
            assert (row.state, row.exit_code, row.local_account) == ("Done", 0, job_account.name)
            assert parse_jdl(row.jdl_registered)["LocalAccount"] == job_account.name
            output = rt.storage.job_area(node.job_id, parent.job_id).output_dir / "n.out"
            assert output.read_text() == f"{job_account.uid}\n"

    def test_outputs_that_are_links_are_not_collected_and_the_status_says_why(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        job_id = submit(rt, alice, "ln -s /etc/shadow out; exit 0", 'StdOutput = "o";')
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        row = job_row(rt, job_id)
        assert row.exit_code == 0
        assert row.reason is not None and "output sandbox file out not collected: symbolic link" in row.reason
        assert not (rt.storage.job_area(job_id).output_dir / "out").exists()

    def test_cancel_stops_the_running_job(self, rt: Runtime, alice: Principal,
                                          workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker)
        pid = worker.running[job_id].handle.pid
        cancel_job(rt, alice, job_id)
        until(worker, in_state(rt, job_id, JobState.CANCELLED), "the job to be cancelled")
        assert pid is not None and not alive(pid)

    def test_perusal_copies_regular_files_and_refuses_symlinks(self, rt: Runtime, alice: Principal,
                                                               workers: Callable[[str], ExecutionWorker]) -> None:
        job_id = submit(rt, alice, "echo visible > real.txt; ln -s /etc/shadow link.txt; " + WAIT_GO,
                        "PerusalFileEnable = true; PerusalTimeInterval = 1;")
        enable_file_perusal(rt, alice, job_id, ["real.txt", "link.txt"])
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, job_id, JobState.RUNNING), "the job to run")
        peek = rt.storage.job_area(job_id).peek_dir
        until(worker, lambda: peek.is_dir() and any(p.name.startswith("real.txt.") for p in peek.iterdir()),
              "a perusal chunk (its first makes peek/)")
        (work_dir(rt, job_id) / "go").write_text("")
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert not any(p.name.startswith("link.txt") for p in peek.iterdir())


class TestReapingWakeups:
    @pytest.mark.skipif(not processes.EXIT_STATUS_KNOWN, reason="needs Linux 6.15+ (PIDFD_INFO_EXIT)")
    def test_an_ended_wrapper_its_parent_does_not_reap_never_makes_the_worker_loop(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An adopted wrapper ends under the zygote of the worker that died, which a job of the
        account had stopped: it stays a zombie (its exit status, which the kernel gives once it is
        reaped, is awaited for ``REAP_WAIT`` seconds). Its pidfd is readable from its exit on: the
        worker, woken by it at every wait, looped without sleeping for those seconds (700 to 2,200
        wake-ups in 2 s here); now it waits for the reaping, and sleeps its poll interval."""
        monkeypatch.setattr(local, "REAP_WAIT", 2.0)
        dead = workers("w-dead")
        job_id = running(rt, alice, dead, "while [ ! -e go ]; do sleep 0.1; done")
        (zygote,) = dead.backends["local"]._zygotes.values()  # type: ignore[attr-defined]
        os.kill(zygote.process.pid, signal.SIGSTOP)  # as a job of the account may
        try:
            abandon(dead, rt)
            heir = workers("w-heir")
            heir.start()
            assert list(heir.running) == [job_id]
            wakeups = 0
            wait = heir.wakeup.wait

            def counted(*args: Any, **kwargs: Any) -> bool:
                nonlocal wakeups
                woken = wait(*args, **kwargs)
                wakeups += woken
                return woken

            monkeypatch.setattr(heir.wakeup, "wait", counted)
            (work_dir(rt, job_id) / "go").write_text("")
            stop = threading.Event()
            deadline = time.monotonic() + DEADLINE
            try:
                while not in_state(rt, job_id, JobState.DONE, JobState.ABORTED)():  # the worker's loop (run())
                    assert time.monotonic() < deadline, "the adopted job did not end"
                    if not heir.step():
                        heir._wait(stop)
            finally:
                heir.wakeup.close()
            # ended as it was (the exit status never came: the status file is taken as written)
            assert job_row(rt, job_id).state == JobState.DONE.value
            assert wakeups <= 2, f"{wakeups} wake-ups for one ended wrapper"
        finally:
            os.kill(zygote.process.pid, signal.SIGCONT)
            dead.backends["local"].close()  # type: ignore[attr-defined]


class TestAdoption:
    def test_a_dead_workers_running_job_is_adopted_and_ends_with_its_real_exit_code(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        dead = workers("w-dead")
        job_id = running(rt, alice, dead)
        abandon(dead, rt)
        heir = workers("w-heir")
        heir.start()
        assert list(heir.running) == [job_id]
        assert job_row(rt, job_id).worker == "w-heir"
        (work_dir(rt, job_id) / "go").write_text("")
        until(heir, in_state(rt, job_id, JobState.DONE), "the adopted job to end")
        assert job_row(rt, job_id).exit_code == 5
        assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"
        assert running_events(rt, job_id) == 1
        with rt.uow() as uow:
            assert uow.workers.get("w-dead") is None

    def test_a_live_worker_is_not_adopted(self, rt: Runtime, alice: Principal,
                                          workers: Callable[[str], ExecutionWorker]) -> None:
        owner = workers("w-owner")
        job_id = running(rt, alice, owner)
        other = workers("w-other")
        other.start()
        assert other.running == {} and job_row(rt, job_id).worker == "w-owner"
        (work_dir(rt, job_id) / "go").write_text("")
        until(owner, in_state(rt, job_id, JobState.DONE), "the job to end")

    @pytest.mark.postgresql_only  # row locks (NOWAIT): a SQLite writer holds the whole database
    def test_a_batch_claim_keeps_what_it_took_before_a_job_another_transaction_holds(
            self, rt: Runtime, alice: Principal) -> None:
        first, held = submit(rt, alice, "exit 0"), submit(rt, alice, "exit 0")
        with rt.uow() as holder:  # a jobCancel, say, holding the second job's row
            assert holder.jobs.get(held, for_update=True) is not None
            orders = service.claim_starts(rt, "w-batch", {"local": 8}, limit=8)
            assert [order.job_id for order in orders] == [first]  # the savepoint gave the second one back
        assert job_row(rt, first).state == JobState.READY.value
        assert job_row(rt, held).state == JobState.WAITING.value and job_row(rt, held).worker is None
        assert [order.job_id for order in service.claim_starts(rt, "w-batch", {"local": 8}, limit=8)] == [held]

    def test_a_claimed_job_never_started_is_requeued_once(self, rt: Runtime, alice: Principal,
                                                          workers: Callable[[str], ExecutionWorker]) -> None:
        job_id = submit(rt, alice, "exit 0")
        dead = workers("w-dead")
        dead.start()
        assert service.claim_next_start(rt, "w-dead") is not None  # claimed, then the worker died
        abandon(dead, rt)
        first, second = workers("w-a"), workers("w-b")
        first.adopt()
        second.adopt()
        first.adopt()
        assert job_row(rt, job_id).state == JobState.WAITING.value
        assert start_requests(rt, job_id) == 2  # the original and exactly one requeue
        second.start()
        until(second, in_state(rt, job_id, JobState.DONE), "the requeued job to end")
        assert running_events(rt, job_id) == 1

    def test_a_scheduled_job_whose_wrapper_never_started_is_requeued_and_runs_once(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        job_id = submit(rt, alice, "exit 0")
        dead = workers("w-dead")
        dead.start()
        order = service.claim_next_start(rt, "w-dead")
        assert order is not None
        # The worker prepared the work dir and committed Scheduled, then died before spawning.
        launch_spec = dead._spec(order)
        handle = dead.backends["local"].prepare(JobLaunch(order.job_id, Account.from_name(order.local_account or ""),
                                                launch_spec, order.area.input_dir, order.isb_files, order.proxy_pem))
        assert service.set_state(rt, job_id, JobState.SCHEDULED, backend_ref=handle.ref)
        abandon(dead, rt)
        heir = workers("w-heir")
        heir.start()
        assert heir.running == {} and job_row(rt, job_id).state == JobState.WAITING.value
        until(heir, in_state(rt, job_id, JobState.DONE), "the requeued job to end")
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 2

    def test_a_job_cancelled_while_claimed_by_a_worker_that_died_ends_cancelled_not_requeued(
            self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]) -> None:
        """The user cancelled the job while a worker that then died held it, before its wrapper
        ran: the heir ends it Cancelled by user. Requeued, it went back to Waiting with its cancel
        pending, and the next worker started it before it saw the cancel."""
        job_id = submit(rt, alice, "exit 0")
        dead = workers("w-dead")
        dead.start()
        assert service.claim_next_start(rt, "w-dead") is not None
        abandon(dead, rt)
        cancel_job(rt, alice, job_id)  # the job is held: a cancel request for its worker
        heir = workers("w-heir")
        heir.start()
        row = job_row(rt, job_id)
        assert (row.state, row.reason, row.worker) == (JobState.CANCELLED.value, "Cancelled by user", None)
        assert start_requests(rt, job_id) == 1 and running_events(rt, job_id) == 0
        with rt.uow() as uow:
            assert uow.queue.pending_for(job_id) == []

    def test_two_workers_racing_adopt_a_dead_workers_job_once(self, rt: Runtime, alice: Principal,
                                                              workers: Callable[[str], ExecutionWorker]) -> None:
        dead = workers("w-dead")
        job_id = running(rt, alice, dead)
        abandon(dead, rt)
        racers = [workers(f"w-race{i}") for i in range(3)]
        barrier = threading.Barrier(len(racers))
        errors: list[BaseException] = []

        def race(worker: ExecutionWorker) -> None:
            try:
                barrier.wait(DEADLINE)
                worker.start()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(w,)) for w in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE * 2)
            assert not thread.is_alive()
        assert errors == []
        holders = [w for w in racers if job_id in w.running]
        assert len(holders) == 1
        assert job_row(rt, job_id).worker == holders[0].name
        (work_dir(rt, job_id) / "go").write_text("")
        until(holders[0], in_state(rt, job_id, JobState.DONE), "the adopted job to end")
        assert job_row(rt, job_id).exit_code == 5

    def test_a_worker_restarted_under_its_name_adopts_its_previous_lifes_jobs(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        first_life = workers("w1")
        job_id = running(rt, alice, first_life)
        second_life = workers("w1")  # fresh heartbeat: no lease has to pass for its own jobs
        second_life.start()
        assert list(second_life.running) == [job_id]
        (work_dir(rt, job_id) / "go").write_text("")
        until(second_life, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert job_row(rt, job_id).exit_code == 5 and running_events(rt, job_id) == 1

    def test_a_worker_taken_for_dead_lets_go_of_its_jobs(self, rt: Runtime, alice: Principal,
                                                         workers: Callable[[str], ExecutionWorker]) -> None:
        stalled = workers("w-stalled")
        job_id = running(rt, alice, stalled)
        abandon(stalled, rt)
        heir = workers("w-heir")
        heir.start()
        assert list(heir.running) == [job_id]
        stalled._next_heartbeat = 0.0  # it wakes up: its next step heartbeats
        stalled.step()
        assert stalled.running == {}
        with rt.uow() as uow:
            assert uow.workers.get("w-stalled") is not None  # registered again, as a new life with no jobs
        (work_dir(rt, job_id) / "go").write_text("")
        until(heir, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert job_row(rt, job_id).worker == "w-heir" and running_events(rt, job_id) == 1

    def test_take_over_is_a_compare_and_set_on_the_seen_heartbeat(self, rt: Runtime) -> None:
        old = utcnow() - dt.timedelta(seconds=2 * LEASE)
        with rt.uow() as uow:
            uow.workers.register("w-dead", "node1", 1, old)
        with rt.uow() as uow:
            (seen,) = uow.workers.stale("node1", utcnow() - dt.timedelta(seconds=LEASE), exclude="w-me")
            uow.session.expunge(seen)
        with rt.uow() as uow:
            assert uow.workers.heartbeat("w-dead", "node1", 1, utcnow())  # it came back meanwhile
        with rt.uow() as uow:
            assert uow.workers.take_over(seen, "w-me", ["Running"]) is None
            assert uow.workers.get("w-dead") is not None
            assert not uow.workers.heartbeat("w-dead", "node1", 2, utcnow())  # another pid's heartbeat

    def test_a_dead_workers_jobs_go_to_heirs_with_their_backend_and_its_row_stays_until_all_have(
            self, rt: Runtime, alice: Principal) -> None:
        jobs = {ref: submit(rt, alice, "true") for ref in ("local:x", "slurm:42", None, "ready")}
        with rt.uow() as uow:
            uow.workers.register("w-dead", "node1", 1, utcnow() - dt.timedelta(seconds=2 * LEASE))
            for ref, job_id in jobs.items():
                state = JobState.READY if ref == "ready" else JobState.RUNNING
                uow.session.execute(sa.update(Job).where(Job.id == job_id).values(
                    state=state.value, worker="w-dead", backend_ref=None if ref == "ready" else ref))

        def heir_takes(heir: str, kinds: set[str]) -> int | None:
            with rt.uow() as uow:
                (seen,) = uow.workers.stale("node1", utcnow() - dt.timedelta(seconds=LEASE), exclude=heir)
                return uow.workers.take_over(seen, heir, ["Ready", "Running"], backend_kinds=kinds,
                                             any_backend=("Ready",))

        assert heir_takes("w-local", {"local"}) == 3  # local:x, the job with no reference, the Ready one
        assert {ref: job_row(rt, job_id).worker for ref, job_id in jobs.items()} == {
            "local:x": "w-local", "slurm:42": "w-dead", None: "w-local", "ready": "w-local"}
        with rt.uow() as uow:
            assert uow.workers.get("w-dead") is not None  # still holds a Slurm job
        assert heir_takes("w-slurm", {"slurm"}) == 1
        assert job_row(rt, jobs["slurm:42"]).worker == "w-slurm"
        with rt.uow() as uow:
            assert uow.workers.get("w-dead") is None  # nothing left to it

    def test_a_name_held_by_another_live_process_is_refused(self, rt: Runtime) -> None:
        service.register_worker(rt, "w1", "node1", 4242, lambda pid: True)
        with pytest.raises(WorkerNameInUseError):
            service.register_worker(rt, "w1", "node1", 4343, lambda pid: True)
        service.register_worker(rt, "w1", "node1", 4343, lambda pid: False)  # the old pid is gone: a restart
        with pytest.raises(WorkerNameInUseError):
            service.register_worker(rt, "w1", "node2", 1, lambda pid: False)


class TestCancelAcrossDeath:
    """A worker dies after it read a job's cancel request and before the job's end is recorded:
    the worker that adopts the job carries the cancel out and the job ends Cancelled by user,
    never resubmitted (the request stays pending until the end is recorded)."""

    @pytest.mark.parametrize("killed", ["after-the-signal", "before-the-signal"])
    def test_the_heir_ends_the_job_cancelled_and_never_runs_it_again(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        monkeypatch: pytest.MonkeyPatch, killed: str
    ) -> None:
        dead = workers("w-dead")
        job_id = running(rt, alice, dead, extra="RetryCount = 2; ShallowRetryCount = 2;")
        if killed == "before-the-signal":  # SIGKILL once the cancel is read, before the wrapper is signalled
            monkeypatch.setattr(dead.backends["local"], "cancel", _killed)
        cancel_job(rt, alice, job_id)
        took_cancel(dead, job_id)
        abandon(dead, rt)  # its end never recorded: the wrapper stops (or runs on) unfollowed
        heir = workers("w-heir")
        heir.start()
        assert list(heir.running) == [job_id]
        until(heir, attempt_over(rt, job_id), "the adopted job's attempt to end")
        row = job_row(rt, job_id)
        assert (row.state, row.reason, row.shallow_retries, row.deep_retries) == (
            JobState.CANCELLED.value, "Cancelled by user", 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1
        assert cancels_pending(rt, job_id) == 0  # done with the end
        assert heir.running == {}

    def test_a_node_of_a_compound_job_cancelled_whole_ends_cancelled_and_so_does_the_compound_job(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        collection = ('[ Type = "collection"; Nodes = { [ Executable = "/bin/sh";'
                      f' Arguments = "-c \'{WAIT_GO}\'"; RetryCount = 2; ] }}; ]')
        parent = submit_job(rt, alice, collection, "exec")
        [node] = [child.job_id for child in parent.children]
        dead = workers("w-dead")
        dead.start()
        until(dead, in_state(rt, node, JobState.RUNNING), "the node to run")
        cancel_job(rt, alice, parent.job_id)
        took_cancel(dead, node)
        abandon(dead, rt)
        heir = workers("w-heir")
        heir.start()
        until(heir, attempt_over(rt, node), "the adopted node's attempt to end")
        row = job_row(rt, node)
        assert (row.state, row.reason, row.deep_retries) == (JobState.CANCELLED.value, "Cancelled by user", 0)
        assert (job_row(rt, parent.job_id).state, job_row(rt, parent.job_id).reason) == (
            JobState.CANCELLED.value, "Cancelled by user")
        assert running_events(rt, node) == 1

    def test_a_job_aborted_while_running_whose_worker_died_before_stopping_it_is_stopped_by_the_heir(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        """The proxy expiry pass aborted a running job and asked its worker to stop it; the
        worker died first. Adoption took only Ready, Scheduled and Running jobs: the job's
        process ran on, followed by no worker, for as long as it liked."""
        dead = workers("w-dead")
        job_id = running(rt, alice, dead)
        reason = "the user proxy expired (it was not renewed)"
        with rt.uow() as uow:  # what wmproxy.services.renewal.expiry writes for a running job
            job = uow.jobs.get(job_id, for_update=True)
            assert job is not None
            uow.jobs.set_state(job, JobState.ABORTED.value, utcnow(), reason=reason)
            uow.queue.enqueue(job_id, "cancel", utcnow())
        abandon(dead, rt)
        heir = workers("w-heir")
        heir.start()
        assert list(heir.running) == [job_id]
        until(heir, lambda: cancels_pending(rt, job_id) == 0, "the adopted job to be stopped")
        assert heir.running == {}
        row = job_row(rt, job_id)
        assert (row.state, row.reason) == (JobState.ABORTED.value, reason)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    def test_a_late_end_of_an_earlier_attempt_leaves_the_current_attempts_cancel_pending(
        self, rt: Runtime, alice: Principal
    ) -> None:
        job_id = submit(rt, alice, "exit 0", "RetryCount = 2;")
        with rt.uow() as uow:  # the second attempt runs (the first was resubmitted), and is being cancelled
            uow.session.execute(sa.update(Job).where(Job.id == job_id).values(
                state=JobState.RUNNING.value, deep_retries=1))
            uow.queue.enqueue(job_id, "cancel", utcnow())
        failed = AttemptEnd(JobState.ABORTED, reason="the job wrapper was stopped by a signal outside wmproxy",
                            payload_started=True, attempt=0)
        assert end_attempts(rt, [(job_id, failed)]) == [None]
        assert cancels_pending(rt, job_id) == 1 and job_row(rt, job_id).state == JobState.RUNNING.value
        assert end_attempts(rt, [(job_id, dataclasses.replace(failed, attempt=1))]) == [JobState.CANCELLED]
        assert cancels_pending(rt, job_id) == 0 and job_row(rt, job_id).deep_retries == 1


def _killed(*_args: object) -> None:
    raise Killed


def took_cancel(worker: ExecutionWorker, job_id: str) -> None:
    """Have ``worker`` read the cancel requests (only that: no end is looked at) until it acts on
    ``job_id``'s; a :class:`Killed` is the worker dying right there."""
    deadline = time.monotonic() + DEADLINE
    while worker.running[job_id].cancel_reason is None:
        assert time.monotonic() < deadline, "timed out waiting for the worker to read the cancel"
        with contextlib.suppress(Killed):
            worker._take_cancels()
        time.sleep(0.05)


def attempt_over(rt: Runtime, job_id: str) -> Callable[[], bool]:
    """The job's attempt has ended: the job is final, or was resubmitted (a retry counted)."""
    def over() -> bool:
        row = job_row(rt, job_id)
        return row.state in {s.value for s in FINAL_STATES} or row.shallow_retries + row.deep_retries > 0
    return over


def cancels_pending(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return len(uow.queue.pending_commands([job_id], "cancel"))


class TestShutdown:
    def test_a_drained_worker_leaves_the_job_running_and_its_restart_finishes_it(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker)
        handle = worker.running[job_id].handle
        worker.stop()  # SIGTERM: drain
        assert worker.detached == [handle] and worker.running == {}
        assert handle.pid is not None and alive(handle.pid)
        assert job_row(rt, job_id).state == JobState.RUNNING.value
        restarted = workers("w1")
        restarted.start()
        (work_dir(rt, job_id) / "go").write_text("")
        until(restarted, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert job_row(rt, job_id).exit_code == 5

    @pytest.mark.parametrize("killed_in", ["the-commit", "the-releases", "a-release"])
    def test_the_ends_of_the_cycle_a_worker_is_killed_in_are_recorded_by_its_restart(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        monkeypatch: pytest.MonkeyPatch, killed_in: str
    ) -> None:
        worker = workers("w1")
        jobs = [running(rt, alice, worker), running(rt, alice, worker)]
        dirs = [work_dir(rt, job_id) for job_id in jobs]
        handles = [worker.running[job_id].handle for job_id in jobs]
        pids = [handle.pid for handle in handles]
        journal = worker.journal_path
        left: dict[str, bytes] = {}  # the journal directory as a SIGKILL there leaves it
        release = worker._release
        released: list[Path] = []

        def killed(*args: object, **kwargs: object) -> None:
            assert [d.exists() for d in dirs] == [False, killed_in != "the-commit"]
            left.update({p.name: p.read_bytes() for p in journal.parent.iterdir()} if journal.parent.exists() else {})
            raise Killed

        def release_then_killed(backend: Any, handle: Any) -> None:
            if released:  # the second release: killed before it, or in it once the status is unlinked
                if killed_in == "a-release":
                    (handle.work_dir / PROXY_NAME).unlink()
                    (handle.work_dir / STATE_DIR / STATUS_NAME).unlink()
                killed()
            released.append(handle.work_dir)
            release(backend, handle)

        if killed_in == "the-commit":
            monkeypatch.setattr("wmproxy.execution.worker.end_attempts", killed)
        else:
            monkeypatch.setattr(worker, "_release", release_then_killed)
        for directory in dirs:
            (directory / "go").write_text("")
        # A wrapper a zygote forked ends for the worker once the zygote has reaped it (its exit status
        # comes with the reaping): both must be gone, not only zombies, for one cycle to see both ends.
        wait_for(lambda: not any(pid is not None and (alive(pid) if handle.process is not None
                                                      else os.path.exists(f"/proc/{pid}"))
                                 for pid, handle in zip(pids, handles, strict=True)),
                 "both wrappers to exit (and be reaped by their zygote)")
        with pytest.raises(Killed):
            worker.step()  # both ends made in this cycle; killed before the commit or between releases
        monkeypatch.undo()
        for written in journal.parent.iterdir():  # what the process ran after the kill (a finally) never ran
            written.unlink()
        for name, data in left.items():
            fd = os.open(journal.parent / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        assert list(left) == [journal.name]
        assert {job_id for job_id, _end in json.loads(left[journal.name])["ends"]} == set(jobs)
        # Restarted at once with the same pid (pid 1 of a container): the journal written just now,
        # by this pid, is its previous life's all the same (another life, another file).
        assert {job_row(rt, job_id).state for job_id in jobs} == {JobState.RUNNING.value}
        restarted = workers("w1")
        restarted.start()  # the journal taken before adoption: its ends are recorded, its jobs not adopted
        assert restarted.running == {} and {job_id for job_id, _end in restarted.unrecorded} == set(jobs)
        assert not any(d.exists() for d in dirs)  # a work dir left by the kill removed before the record
        until(restarted, lambda: all(in_state(rt, job_id, JobState.DONE)() for job_id in jobs), "the ends recorded")
        assert not journal.exists() and left_in_work_root(rt) == []  # every work dir released
        for job_id in jobs:
            row = job_row(rt, job_id)
            assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
            assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1
            assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"

    def test_cancel_running_on_exit_stops_the_jobs(self, rt: Runtime, alice: Principal,
                                                   workers: Callable[[str], ExecutionWorker]) -> None:
        worker = workers("w1")
        worker.cancel_running_on_exit = True
        job_id = running(rt, alice, worker)
        pid = worker.running[job_id].handle.pid
        worker.stop()
        row = job_row(rt, job_id)
        assert (row.state, row.reason) == (JobState.ABORTED.value, "cancelled by the administrator at worker shutdown")
        assert pid is not None and not alive(pid)
        with rt.uow() as uow:
            assert uow.workers.get("w1") is None
        assert left_in_work_root(rt) == []


class TestOutage:
    """A job that ends while the database or the sandbox's file system fails keeps its end and
    its outputs: recorded once they work again, the job never run twice."""

    def test_an_end_the_database_does_not_take_is_kept_and_recorded_once_it_does(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        worker = workers("w1")
        with ended_in_an_outage(rt, alice, worker) as job_id:
            [(kept, end)] = worker.unrecorded
            assert (kept, end.state, end.exit_code) == (job_id, JobState.DONE, 5)
        assert job_row(rt, job_id).state == JobState.RUNNING.value
        assert worker.adopt() == []  # the heartbeat's adoption would find no work dir: it must not follow the job
        until(worker, in_state(rt, job_id, JobState.DONE), "the kept end to be recorded")
        assert worker.unrecorded == [] and worker.running == {}
        assert job_row(rt, job_id).exit_code == 5
        assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    def test_the_cycles_journal_is_synced_once_the_database_refuses_its_ends(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        writes: list[tuple[list[str], bool]]
    ) -> None:
        worker = workers("w1")
        with ended_in_an_outage(rt, alice, worker) as job_id:
            for _ in range(3):  # more cycles of the outage: the journal is not written again
                with contextlib.suppress(OperationalError):
                    worker.step()
        # before the release, unsynced (a killed process's page cache); synced at the refusal
        assert writes == [([job_id], False), ([job_id], True)]
        until(worker, in_state(rt, job_id, JobState.DONE), "the kept end to be recorded")
        assert not worker.journal_path.exists()
        assert len(writes) == 2

    def test_a_journal_holding_refused_ends_stays_synced_when_the_next_ends_join_it(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        writes: list[tuple[list[str], bool]]
    ) -> None:
        worker = workers("w1")
        other = running(rt, alice, worker)
        go = work_dir(rt, other) / "go"
        with ended_in_an_outage(rt, alice, worker) as job_id:
            go.write_text("")
            until(worker, lambda: other not in worker.running, "the other job's end", tolerate=(OperationalError,))
        # the refused end's journal was synced; written again with the next end before its release,
        # it is synced again: never an unsynced file in place of a synced one
        assert writes[:2] == [([job_id], False), ([job_id], True)]
        assert ([job_id, other], True) in writes
        assert all(durable for ids, durable in writes[1:] if job_id in ids), writes
        until(worker, lambda: all(in_state(rt, j, JobState.DONE)() for j in (job_id, other)), "both ends recorded")
        assert not worker.journal_path.exists()

    def test_a_journal_the_file_system_cannot_take_does_not_hold_the_ends_back(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        caplog: pytest.LogCaptureFixture
    ) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker)
        with full_file_system(worker.work_root / ends_journal.DIR_NAME):
            (work_dir(rt, job_id) / "go").write_text("")
            until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert "its ends journal could not be written before the commit" in caplog.text
        assert "kept in memory only" not in caplog.text  # recorded at once: not kept anywhere
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert worker.unrecorded == [] and left_in_work_root(rt) == []

    def test_the_worker_loop_rides_out_the_outage(self, rt: Runtime, alice: Principal,
                                                  workers: Callable[[str], ExecutionWorker],
                                                  caplog: pytest.LogCaptureFixture) -> None:
        worker = workers("w1")
        job_id = submit(rt, alice, WAIT_GO)
        stop = threading.Event()
        loop = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        with impatient(rt):
            loop.start()
            try:
                wait_for(in_state(rt, job_id, JobState.RUNNING), "the job to run")
                go = work_dir(rt, job_id) / "go"
                with database_held(rt, job_id):
                    go.write_text("")
                    # SQLite: every cycle fails (logged); PostgreSQL: only the end's record waits
                    wait_for(lambda: bool(worker.unrecorded) or "a cycle failed on the database" in caplog.text,
                             "the outage seen by the worker")
                wait_for(in_state(rt, job_id, JobState.DONE), "the kept end to be recorded")
                assert loop.is_alive()
            finally:
                stop.set()
                loop.join(DEADLINE)
        assert not loop.is_alive()
        assert job_row(rt, job_id).exit_code == 5 and running_events(rt, job_id) == 1

    def test_outputs_a_full_sandbox_cannot_take_wait_in_the_work_dir(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker)
        with full_file_system(rt.storage.job_area(job_id).output_dir) as filler:
            (work_dir(rt, job_id) / "go").write_text("")
            until(worker, lambda: job_id in worker.running and worker.running[job_id].end_failures > 0,
                  "a failed collection")
            assert (work_dir(rt, job_id) / "out").read_text() == "out\n"  # kept for the next try
            assert job_row(rt, job_id).state == JobState.RUNNING.value
            filler.unlink()  # the administrator frees space
            until(worker, in_state(rt, job_id, JobState.DONE), "the outputs to be collected")
            assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"
        row = job_row(rt, job_id)
        assert (row.exit_code, row.reason) == (5, None)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    def test_outputs_collected_before_a_full_sandbox_are_counted_when_the_job_is_cancelled(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker, f"{WAIT_GO.removesuffix('; exit 5')}; head -c 20000 /dev/zero >&2")
        used = quota.used_bytes(rt, alice.dn)  # the module's database: other tests' jobs of alice count too
        drift = used - counted_on_disk(rt, alice.dn)
        output = rt.storage.job_area(job_id).output_dir
        with full_file_system(output, pages=2) as counted_filler:
            counted_filler.unlink()
            filler = output / f".filler{TMP_SUFFIX}"  # a name the usage counter leaves out, as a real filler's
            fill(filler)
            os.truncate(filler, max(0, filler.stat().st_size - 4096))  # room for "out" (4 bytes), not "err"
            (work_dir(rt, job_id) / "go").write_text("")
            until(worker, lambda: job_id in worker.running and worker.running[job_id].end_failures > 0,
                  "a collection failed part-way")
            assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"  # copied before it failed
            cancel_job(rt, alice, job_id)
            until(worker, in_state(rt, job_id, JobState.CANCELLED), "the job cancelled")
            assert quota.used_bytes(rt, alice.dn) == used + 4  # "out" is counted
            assert quota.used_bytes(rt, alice.dn) - counted_on_disk(rt, alice.dn) == drift

    def test_a_job_whose_directory_a_full_sandbox_cannot_take_waits_then_runs(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        job_id = submit(rt, alice, "echo out; exit 5")  # jobSubmit: no job directory yet
        assert not rt.storage.has_job_area(job_id)
        fan_out = rt.storage.job_dir(job_id).parent  # in a used sandbox root, a full file system
        fan_out.parent.mkdir(parents=True, exist_ok=True)
        worker = workers("w1")
        with full_file_system(fan_out, inodes=8):  # no inode left for the job directory
            worker.start()
            until(worker, lambda: (job_row(rt, job_id).reason or "").startswith(service.NO_JOB_DIRECTORY),
                  "the claim to leave the job Waiting")
            assert job_row(rt, job_id).state == JobState.WAITING.value and worker.running == {}
            for taken in fan_out.glob("filler*"):  # the administrator frees space
                taken.unlink()
            until(worker, in_state(rt, job_id, JobState.DONE), "the job to run")
            area = rt.storage.job_area(job_id)
            assert (area.output_dir / "out").read_text() == "out\n"
            assert stat.S_IMODE(os.lstat(area.dir).st_mode) == 0o700
        row = job_row(rt, job_id)
        assert (row.exit_code, row.reason) == (5, None)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    def test_an_end_that_fails_other_than_by_an_outage_is_tried_end_tries_times_then_aborted(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tries = 3
        monkeypatch.setattr("wmproxy.execution.worker.END_TRIES", tries)
        monkeypatch.setattr("wmproxy.execution.worker.END_RETRY_FIRST", 0.01)
        monkeypatch.setattr("wmproxy.execution.worker.END_RETRY_MAX", 0.02)
        worker = workers("w1")
        # Retries allowed: only the end's "not retryable" keeps the job from being resubmitted.
        job_id = running(rt, alice, worker, extra="RetryCount = 2; ShallowRetryCount = 2;")
        followed = worker.running[job_id]
        with full_file_system(rt.storage.job_area(job_id).output_dir):  # an outage: not counted
            (work_dir(rt, job_id) / "go").write_text("")
            until(worker, lambda: job_id not in worker.running or followed.end_failures > tries,
                  "failed collections")
            assert job_id in worker.running and followed.end_defects == 0
        outage_failures = followed.end_failures
        # The job area's fan-out directory (<SandboxDir>/<2ch>) a regular file: the job area
        # cannot be reached (lstat: ENOTDIR, a raw OSError, neither full nor the database).
        fan_out = rt.storage.job_dir(job_id).parent
        aside = fan_out.with_name(fan_out.name + ".aside")
        fan_out.rename(aside)
        fan_out.write_text("")
        try:
            until(worker, lambda: job_id not in worker.running or followed.end_defects >= tries - 1,
                  "failed collections other than by an outage")
            assert job_id in worker.running and followed.end_defects == tries - 1
            assert job_row(rt, job_id).state == JobState.RUNNING.value
            assert (work_dir(rt, job_id) / "out").read_text() == "out\n"  # kept for the next try
            until(worker, in_state(rt, job_id, JobState.ABORTED), "the job to be aborted")
        finally:
            fan_out.unlink()
            aside.rename(fan_out)
        assert followed.end_defects == tries and followed.end_failures == outage_failures + tries
        assert worker.running == {} and worker.unrecorded == []
        reason = job_row(rt, job_id).reason or ""
        assert reason.startswith("the worker could not collect the job's end: ") and "Not a directory" in reason
        for _ in range(3):  # not resubmitted: no step finds it queued again
            worker.step()
        row = job_row(rt, job_id)
        assert (row.state, row.shallow_retries, row.deep_retries) == (JobState.ABORTED.value, 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1
        assert [r.levelname for r in caplog.records
                if f"could not be collected in {outage_failures + tries} tries" in r.getMessage()] == ["ERROR"]

    def test_ends_a_drain_could_not_record_are_recorded_by_the_restarted_worker(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        worker = workers("w1")
        with ended_in_an_outage(rt, alice, worker) as job_id:
            worker.stop()  # SIGTERM during the outage: the end is in the journal
        journal = worker.journal_path
        assert [job for job, _end in json.loads(journal.read_text())["ends"]] == [job_id]
        for item, mode in ((journal.parent, 0o700), (journal, 0o600)):
            assert (stat.S_IMODE(os.lstat(item).st_mode), os.lstat(item).st_uid) == (mode, os.geteuid())
        written_by_a_gone_process(journal, same_pid=True)  # the restarted process got the same pid
        assert job_row(rt, job_id).state == JobState.RUNNING.value
        restarted = workers("w1")
        restarted.start()  # the journal taken before adoption: the job (no work dir) is not adopted
        assert restarted.running == {} and [job for job, _end in restarted.unrecorded] == [job_id]
        until(restarted, in_state(rt, job_id, JobState.DONE), "the journaled end to be recorded")
        assert not journal.exists()
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1
        assert (rt.storage.job_area(job_id).output_dir / "out").read_text() == "out\n"

    def test_a_dead_workers_journal_is_taken_over_by_a_peer_a_live_ones_is_not(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        owner = workers("w-owner")
        with ended_in_an_outage(rt, alice, owner) as job_id:
            pass
        journal = owner.journal_path
        assert journal.exists()
        written_by_a_live_process(journal)  # (this test's workers share its pid)
        abandon(owner, rt)  # its row names a gone process, its journal's writer lives
        peer = workers("w-peer")
        peer.start()  # takes the owner's jobs over, but not one a journal holds the end of
        assert peer.unrecorded == [] and peer.running == {} and journal.exists()
        assert job_row(rt, job_id).state == JobState.RUNNING.value
        written_by_a_gone_process(journal)  # now its writer is gone too
        peer.adopt()
        assert [job for job, _end in peer.unrecorded] == [job_id] and peer.running == {}
        assert not journal.exists()  # the peer's own journal holds the end now
        until(peer, in_state(rt, job_id, JobState.DONE), "the taken end to be recorded")
        assert os.listdir(journal.parent) == []
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    @pytest.mark.parametrize(("field", "value"), [("reason", "output sandbox file \udcff.o not collected"),
                                                   ("exit_code", 2**63)], ids=["surrogate", "overflow"])
    def test_a_journaled_end_the_database_refuses_aborts_its_job_and_the_taker_lives_on(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], field: str, value: object
    ) -> None:
        """An end no database takes in a dead worker's journal (what a job made of its end before
        its values were checked): the taker records its job Aborted and empties the journal. It
        ended every worker life that took the journal over (UnicodeEncodeError, OverflowError:
        not SQLAlchemy errors)."""
        owner = workers("w-owner")
        with ended_in_an_outage(rt, alice, owner) as job_id:
            pass
        journal = owner.journal_path
        doc = json.loads(journal.read_text())
        doc["ends"][0][1][field] = value
        journal.write_text(json.dumps(doc))
        abandon(owner, rt)
        written_by_a_gone_process(journal)
        peer = workers("w-peer")
        peer.start()
        until(peer, in_state(rt, job_id, JobState.ABORTED), "the refused end to abort its job")
        until(peer, lambda: peer.unrecorded == [] and os.listdir(journal.parent) == [], "the journals to empty")
        assert job_row(rt, job_id).reason == END_REFUSED

    @pytest.mark.parametrize("attempt", [0, 7], ids=["the-same-attempt", "an-earlier-attempt"])
    def test_a_taken_end_leaves_a_work_dir_another_worker_follows_alone(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], attempt: int
    ) -> None:
        worker = workers("w1")
        job_id = running(rt, alice, worker)
        directory = work_dir(rt, job_id)
        exited = subprocess.Popen(["true"])
        exited.wait()
        # A gone worker's journal with an end of this job while w1 runs it: of an earlier attempt
        # (recorded already, the job resubmitted since), or of this one (w-gone held it, then w1
        # adopted it without seeing the journal and runs it): the work dir is w1's run's.
        stale = ends_journal.save(worker.work_root, "w-gone", worker.host, exited.pid, [
            (job_id, AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, attempt=attempt))])
        peer = workers("w2")
        peer.start()
        assert peer.unrecorded == [] and peer.running == {}
        assert (directory / STATE_DIR).is_dir() and list(worker.running) == [job_id]  # left to w1's run
        assert stale.exists() == (attempt == 0)  # the same attempt's end left to w1, which holds the job
        worker.adopt()
        assert worker.unrecorded == [] and stale.exists() == (attempt == 0)  # w1 runs it: not taken yet
        (directory / "go").write_text("")
        until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        worker.adopt()  # its work dir released: the journal taken, its end recorded again, and ignored
        until(worker, lambda: worker.unrecorded == [] and not stale.exists(), "the stale journal taken")
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert running_events(rt, job_id) == 1

    def test_a_journal_whose_work_dir_needs_a_backend_the_taker_lacks_is_left_to_one_that_has_it(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], work_root: Path
    ) -> None:
        from wmproxy.execution.backends.slurm import SlurmExecutionBackend

        owner = workers("w-owner")
        job_id, directory = exited_unreleased(rt, alice, owner)
        # Killed between its journal and the release: the end journaled, the work dir left.
        journal = ends_journal.save(owner.work_root, owner.name, owner.host, os.getpid(), [
            (job_id, AttemptEnd(JobState.DONE, exit_code=5, payload_started=True, attempt=0))])
        abandon(owner, rt)
        written_by_a_gone_process(journal)
        slurm_only = ExecutionWorker(rt, {"slurm": SlurmExecutionBackend(work_root)}, "w-slurm")
        slurm_only.start()  # can neither release the local work dir nor follow the job: it takes neither
        assert slurm_only.unrecorded == [] and slurm_only.running == {} and journal.exists()
        assert (directory / STATE_DIR).is_dir() and job_row(rt, job_id).state == JobState.RUNNING.value
        assert job_row(rt, job_id).worker == owner.name  # not taken over by a worker that cannot follow it
        peer = workers("w-local")
        peer.start()  # has the local backend: releases the dir, records the journaled end
        assert [job for job, _end in peer.unrecorded] == [job_id] and peer.running == {}
        assert not directory.exists()
        until(peer, in_state(rt, job_id, JobState.DONE), "the taken end to be recorded")
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1 and left_in_work_root(rt) == []

    @pytest.mark.parametrize("full", [False, True], ids=["split", "no-room-for-the-rest-at-first"])
    def test_a_journal_of_two_backends_is_split_between_the_heirs_that_have_them(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], work_root: Path,
        caplog: pytest.LogCaptureFixture, full: bool
    ) -> None:
        owner = workers("w-owner")  # had the local and the Slurm backend
        local_job, local_dir = exited_unreleased(rt, alice, owner)
        slurm_job = submit(rt, alice, "true")
        with rt.uow() as uow:
            uow.session.execute(sa.update(Job).where(Job.id == slurm_job).values(
                state=JobState.RUNNING.value, worker=owner.name, backend_ref="slurm:4242"))
        slurm_dir = work_root / to_filename(slurm_job)
        slurm_dir.mkdir()  # the Slurm job's work dir, left as well
        ends = [(job_id, AttemptEnd(JobState.DONE, exit_code=code, payload_started=True, attempt=0))
                for job_id, code in ((local_job, 5), (slurm_job, 3))]
        with contextlib.ExitStack() as stack:
            if full:  # the journal directory a tmpfs the journal is written to, then filled
                stack.enter_context(full_file_system(work_root / ends_journal.DIR_NAME, pages=4)).unlink()
            journal = ends_journal.save(owner.work_root, owner.name, owner.host, os.getpid(), ends)
            abandon(owner, rt)
            written_by_a_gone_process(journal)
            written = json.loads(journal.read_text())
            if full:
                fill(journal.parent / "filler")
            heir = workers("w-local")  # lacks the Slurm backend
            heir.start()  # takes the local job's end, leaves the Slurm job's in a journal of the owner's
            assert [job for job, _end in heir.unrecorded] == [local_job] and not local_dir.exists()
            until(heir, in_state(rt, local_job, JobState.DONE), "the local job's end to be recorded")
            if full:  # the journal stays whole until the rest can be written
                assert journal.exists() and "cannot split the ends journal" in caplog.text
                (journal.parent / "filler").unlink()
                heir.adopt()  # the local end taken again (recorded twice: ignored), the rest written
                until(heir, lambda: heir.unrecorded == [] and not journal.exists(), "the journal split")
            (rest,) = ends_journal.journals(work_root, heir.host) or []
            assert (rest.worker, rest.pid, [job for job, _end in rest.ends]) == (owner.name, written["pid"],
                                                                                   [slurm_job])
            assert rest.written_at.isoformat() == written["written_at"]  # as gone as the journal it came from
            assert rest.ends[0][1].exit_code == 3 and not journal.exists() and slurm_dir.is_dir()
            assert (job_row(rt, slurm_job).state, job_row(rt, slurm_job).worker) == (JobState.RUNNING.value,
                                                                                     owner.name)
            heir.adopt()  # nothing more for it: the rest stays as it is
            assert heir.unrecorded == [] and ends_journal.journals(work_root, heir.host) == [rest]
        assert job_row(rt, local_job).exit_code == 5 and running_events(rt, local_job) == 1

    def test_adoption_waits_while_the_journals_cannot_be_read(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        owner = workers("w-owner")
        with ended_in_an_outage(rt, alice, owner) as job_id:
            pass
        journal = owner.journal_path
        abandon(owner, rt)
        written_by_a_gone_process(journal)  # a dead worker: its jobs and its journal are for the taking
        read = ends_journal._read

        def taken_over_while_read(dir_fd: int, path: Path) -> ends_journal.Journal:
            data = path.read_bytes()  # at every pass, replaced between the listing and the read
            path.unlink()
            try:
                return read(dir_fd, path)
            finally:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)

        monkeypatch.setattr(ends_journal, "_read", taken_over_while_read)
        peer = workers("w-peer")
        peer.start()  # the owner's job (no work dir) is not adopted while its end may be in a journal
        assert peer.running == {} and peer.unrecorded == [] and "puts adoption off" in caplog.text
        assert job_row(rt, job_id).state == JobState.RUNNING.value
        monkeypatch.undo()
        peer.adopt()
        assert [job for job, _end in peer.unrecorded] == [job_id] and peer.running == {}
        until(peer, in_state(rt, job_id, JobState.DONE), "the taken end to be recorded")
        row = job_row(rt, job_id)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (5, 0, 0)
        assert running_events(rt, job_id) == 1 and start_requests(rt, job_id) == 1

    def test_perusal_samples_a_full_sandbox_cannot_take_are_taken_once_it_can(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker],
        caplog: pytest.LogCaptureFixture
    ) -> None:
        job_id = submit(rt, alice, "echo visible > real.txt; " + WAIT_GO,
                        "PerusalFileEnable = true; PerusalTimeInterval = 1;")
        enable_file_perusal(rt, alice, job_id, ["real.txt"])
        worker = workers("w1")
        worker.start()
        until(worker, in_state(rt, job_id, JobState.RUNNING), "the job to run")
        peek = rt.storage.job_area(job_id).peek_dir
        with full_file_system(peek) as filler:
            until(worker, lambda: "perusal sample not kept" in caplog.text, "a sample refused")  # no step raised
            assert [p.name for p in peek.iterdir()] == ["filler"]  # no partial chunk left
            filler.unlink()
            until(worker, lambda: any(p.name.startswith("real.txt.") for p in peek.iterdir()), "a perusal chunk")
            (work_dir(rt, job_id) / "go").write_text("")
            until(worker, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert job_row(rt, job_id).exit_code == 5 and running_events(rt, job_id) == 1

    def test_a_worker_that_cannot_heartbeat_but_lives_keeps_its_jobs(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        owner = workers("w-owner")
        job_id = running(rt, alice, owner)
        abandon(owner, rt, process_lives=True)  # an outage longer than the lease stopped its heartbeats
        other = workers("w-other")
        other.start()  # its adoption must leave the job (and any end the owner keeps) to the owner
        assert other.running == {} and job_row(rt, job_id).worker == "w-owner"
        (work_dir(rt, job_id) / "go").write_text("")
        until(owner, in_state(rt, job_id, JobState.DONE), "the job to end")
        assert job_row(rt, job_id).exit_code == 5 and running_events(rt, job_id) == 1

    def test_ends_recorded_one_by_one_name_those_the_database_refused(self, rt: Runtime, alice: Principal) -> None:
        free, held = submit(rt, alice, "exit 0"), submit(rt, alice, "exit 0")
        done = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True)
        sqlite = rt.settings.database.url.startswith("sqlite")
        calls: list[str] = []  # the worker journals its ends there: before any one-by-one record

        def before_one_by_one() -> None:
            calls.append(job_row(rt, free).state if not sqlite else "journaled")

        with impatient(rt), database_held(rt, held):
            if sqlite:  # every transaction fails: the database's own error
                with pytest.raises(OperationalError):
                    end_attempts(rt, [(free, done), (held, done)], before_one_by_one=before_one_by_one)
            else:  # the batch waits for the held row and fails; one by one, the free job's end goes in
                with pytest.raises(EndsNotRecordedError) as refused:
                    end_attempts(rt, [(free, done), (held, done)], before_one_by_one=before_one_by_one)
                assert (refused.value.states, refused.value.failed) == ({free: JobState.DONE}, [held])
        assert calls == ["journaled" if sqlite else JobState.WAITING.value]  # once, none recorded yet
        assert job_row(rt, free).state == (JobState.WAITING if sqlite else JobState.DONE).value
        assert job_row(rt, held).state == JobState.WAITING.value



def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition()`` while a worker thread runs; a look that meets the database
    held or busy (the impatient runtime gives up after 0.2 s) counts as not yet."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with contextlib.suppress(OperationalError):
            if condition():
                return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def ended_in_an_outage(rt: Runtime, alice: Principal, worker: ExecutionWorker) -> Iterator[str]:
    """A job of ``worker`` runs, then ends while the database is held (:func:`database_held`):
    inside, the job's id, its end kept in ``worker.unrecorded``; the database is released after."""
    job_id = running(rt, alice, worker)
    # Cancels looked for every 6 s, not at every step: on SQLite, where every transaction
    # fails while the database is held, a step then gets past them to the job's end.
    worker.settings = dataclasses.replace(worker.settings, poll_interval=30.0)
    go = work_dir(rt, job_id) / "go"
    with impatient(rt), database_held(rt, job_id):
        go.write_text("")
        until(worker, lambda: bool(worker.unrecorded), "the end kept, not recorded", tolerate=(OperationalError,))
        yield job_id


def exited_unreleased(rt: Runtime, alice: Principal, worker: ExecutionWorker) -> tuple[str, Path]:
    """A job ``worker`` runs whose wrapper has exited (exit code 5), the worker not stepped
    since: (job id, its work dir, not released yet)."""
    job_id = running(rt, alice, worker)
    pid = worker.running[job_id].handle.pid
    (work_dir(rt, job_id) / "go").write_text("")
    wait_for(lambda: pid is None or not alive(pid), "the wrapper to exit")
    return job_id, work_dir(rt, job_id)


def written_by_a_live_process(journal: Path) -> None:
    """The journal's writer is another process that lives (init, started before it wrote)."""
    doc = json.loads(journal.read_text())
    doc["pid"] = 1
    journal.write_text(json.dumps(doc))


def written_by_a_gone_process(journal: Path, *, same_pid: bool = False) -> None:
    """The journal's writer has exited, as :func:`abandon`'s worker (the worker objects of these
    tests all live in the test's process): its pid is an exited process's, or with ``same_pid``
    this process's pid reused (a worker restarted as pid 1 of a container): written before this
    process started."""
    doc = json.loads(journal.read_text())
    if same_pid:
        doc["written_at"] = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).isoformat()
    else:
        exited = subprocess.Popen(["true"])
        exited.wait()
        doc["pid"] = exited.pid
    journal.write_text(json.dumps(doc))


@contextlib.contextmanager
def full_file_system(path: Path, pages: int = 1, inodes: int | None = None) -> Iterator[Path]:
    """``path`` (made here) as a mount point of a tmpfs of ``pages`` 4 kB pages (and, when
    given, ``inodes`` inodes, its root and the file included) that a file fills; the file is
    given, for the test to remove (space freed); unmounted after."""
    path.mkdir(mode=0o700)
    options = f"size={4 * pages}k,mode=0700" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        fill(path / "filler")
        for n in range(inodes or 0):  # then every inode left: empty files filler.<n>
            try:
                os.close(os.open(path / f"filler.{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError:
                break
        yield path / "filler"
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 512)
    finally:
        os.close(fd)


def run_until(rt: Runtime, alice: Principal, worker: ExecutionWorker, script: str, extra: str,
              state: JobState) -> tuple[str, Job]:
    """Submit a job, step ``worker`` until the job is in ``state``; its id and row."""
    job_id = submit(rt, alice, script, extra)
    worker.start()
    until(worker, in_state(rt, job_id, state), f"the job to reach {state.value}")
    return job_id, job_row(rt, job_id)


def events_of(rt: Runtime, job_id: str, state: JobState) -> list[str | None]:
    with rt.uow() as uow:
        return [e.reason for e in uow.jobs.events(job_id) if e.state == state.value]


class TestRetries:
    """Shallow and deep resubmission with real wrappers: the reference's job-resubmit tests."""

    @pytest.mark.parametrize(("extra", "kind", "final", "cause"), [
        ('ShallowRetryCount = 2; Prologue = "/bin/false";', "shallow", "hit job shallow retry count (2)",
         "Job Wrapper error: the prologue failed (exit code 1)"),
        ('RetryCount = 2; Epilogue = "/bin/false";', "deep", "hit job retry count (2)",
         "epilogue failed with exit code 1"),
    ])
    def test_a_failing_prologue_or_epilogue_is_resubmitted_until_the_retry_count_is_hit(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], extra: str, kind: str,
        final: str, cause: str
    ) -> None:
        job_id, row = run_until(rt, alice, workers("w1"), "exit 0", extra, JobState.ABORTED)
        # A deep attempt's work dir (holding started.json) is removed before the next claim,
        # so no attempt fails shallow on it.
        counts = (2, 0) if kind == "shallow" else (0, 2)
        assert (row.reason, row.shallow_retries, row.deep_retries) == (final, *counts)
        resubmitted = [r.split(": ", 1) for r in events_of(rt, job_id, JobState.WAITING) if r]
        assert [head for head, _ in resubmitted] == [
            f"{kind} resubmission 1 of 2 (attempt 2)", f"{kind} resubmission 2 of 2 (attempt 3)"]
        assert all(cause in why for _, why in resubmitted), resubmitted
        assert running_events(rt, job_id) == 3  # the wrapper ran three times
        assert left_in_work_root(rt) == []

    def test_a_job_that_cannot_be_prepared_is_a_shallow_failure(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        extra = 'InputSandbox = {"gone.txt"}; ShallowRetryCount = 1;'
        job_id, row = run_until(rt, alice, workers("w1"), "exit 0", extra, JobState.ABORTED)
        assert row.reason == "hit job shallow retry count (1)"
        assert [r for r in events_of(rt, job_id, JobState.WAITING) if r] == [
            "shallow resubmission 1 of 1 (attempt 2): input sandbox file gone.txt has not been uploaded"]
        assert running_events(rt, job_id) == 0

    def test_the_payloads_exit_code_is_never_retried(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker]
    ) -> None:
        job_id, row = run_until(rt, alice, workers("w1"), "exit 3", "RetryCount = 2; ShallowRetryCount = 2;",
                                JobState.DONE)
        assert (row.exit_code, row.shallow_retries, row.deep_retries) == (3, 0, 0)
        assert running_events(rt, job_id) == 1

    def test_a_job_whose_ce_needs_a_backend_the_worker_lacks_stays_queued(
        self, rt: Runtime, alice: Principal, workers: Callable[[str], ExecutionWorker], tmp_path: Path
    ) -> None:
        catalogue = tmp_path / "slurm-only.ads"
        catalogue.write_text('[ GlueCEUniqueID = "slurm.example.org:6817/slurm-batch"; WMProxyBackend = "slurm";'
                             ' SlurmPartition = "batch"; GlueCEStateStatus = "Production" ]')
        rt.settings = dataclasses.replace(
            rt.settings, jobs=dataclasses.replace(rt.settings.jobs, ce_catalogue=str(catalogue)))
        job_id = submit(rt, alice, "exit 0")
        worker = workers("w1")
        worker.start()
        for _ in range(3):
            assert worker.step() is False
        row = job_row(rt, job_id)
        assert (row.state, row.worker, row.destination) == ("Waiting", None, None)
        assert row.reason == ("matched to CE slurm.example.org:6817/slurm-batch: "
                              "waiting for a worker with its slurm backend")
        assert start_requests(rt, job_id) == 1 and worker.running == {}
