"""Helpers for the tests that run the execution worker in-process on a real database
(tests/store/test_adoption.py, test_worker_read_ahead.py): submit a shell job, read its row,
step a worker until a condition holds, make a worker "die" by back-dating its heartbeat
past :data:`LEASE` (no sleeping), make the database refuse the worker's writes for a
while (:func:`database_held`), and run a job that must be Aborted beside one that must run
(:func:`aborted_beside_done`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.support import delegate_in_process, principal_of
from tests.unit.execution.wrapper_support import DEADLINE, alive, kill_session
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.ends_journal import DIR_NAME as JOURNALS
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import ExecutionRequest, ExecutionWorkerRow, Job

LEASE = 60.0
"""The heartbeat lease (seconds) the tests' runtimes are configured with."""


def submit(rt: Runtime, alice: Principal, script: str, extra: str = "") -> str:
    jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; StdOutput = "out"; StdError = "err";'
           f' OutputSandbox = {{"out", "err"}}; {extra} ]')
    return submit_job(rt, alice, jdl, "exec").job_id


def job_row(rt: Runtime, job_id: str) -> Job:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.session.expunge(job)
        return job


def until(worker: ExecutionWorker, condition: Callable[[], bool], what: str,
          tolerate: tuple[type[Exception], ...] = ()) -> None:
    """Step ``worker`` until ``condition()`` holds (failing after the suites' deadline); a step
    raising one of ``tolerate`` is taken as the worker's loop takes it: the next step follows."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        with contextlib.suppress(*tolerate):
            worker.step()
        time.sleep(0.05)


@contextlib.contextmanager
def impatient(rt: Runtime, patience: float = 0.2) -> Iterator[None]:
    """While inside, the runtime's new connections give up waiting for a lock after
    ``patience`` seconds (SQLite ``busy_timeout``, PostgreSQL ``lock_timeout``) instead of the
    service's 30; its pooled connections are closed on the way in and out. Enter it before a
    worker thread starts: SQLAlchemy's event lists are not for changing under a running thread."""
    engine: sa.Engine = rt.session_factory.kw["bind"]
    sqlite = engine.dialect.name == "sqlite"
    wait_ms = int(patience * 1000)

    def set_patience(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={wait_ms}" if sqlite else f"SET lock_timeout = {wait_ms}")
        cursor.close()
        if not sqlite:
            dbapi_conn.commit()  # else the first rollback takes the setting back

    sa.event.listen(engine, "connect", set_patience)
    engine.dispose()
    try:
        yield
    finally:
        sa.event.remove(engine, "connect", set_patience)
        engine.dispose()


@contextlib.contextmanager
def database_held(rt: Runtime, job_id: str) -> Iterator[None]:
    """An outage as the worker sees it (with :func:`impatient`): while inside, another
    connection holds what recording ``job_id``'s end needs: on SQLite the database's write
    lock, so every transaction of the runtime fails (reading through ``rt`` too: every
    transaction there begins IMMEDIATE); on PostgreSQL the job's row."""
    engine: sa.Engine = rt.session_factory.kw["bind"]
    if engine.dialect.name == "sqlite":
        holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            yield
        finally:
            holder.close()
        return
    other = sa.create_engine(engine.url, poolclass=NullPool)
    try:
        with other.connect() as conn:
            assert conn.execute(sa.select(Job.id).where(Job.id == job_id).with_for_update()).all()
            yield
    finally:
        other.dispose()


def end_jobs(worker: ExecutionWorker) -> None:
    """Kill the wrappers ``worker`` still runs (a test's clean-up) and reap them."""
    for job in worker.running.values():
        if job.handle.pid is not None and alive(job.handle.pid):
            kill_session(job.handle.pid)
        if job.handle.process is not None:
            job.handle.process.wait(timeout=DEADLINE)


@contextlib.contextmanager
def running_runtime(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
                    store_key_dir: Path) -> Iterator[Runtime]:
    """A runtime mapping alice to ``job_account`` (:func:`tests.store.conftest.mapped_runtime`)
    whose local jobs run in ``work_root`` (fast polls, 2 s kill grace), alice's delegation
    ``exec`` made: for :func:`run_to_end`."""
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0}) as runtime:
        delegate_in_process(runtime, principal_of(pki, "alice"), pki.users["alice"].proxy, "exec")
        yield runtime


def run_to_end(rt: Runtime, job_id: str, work_root: Path) -> None:
    """Run the started ``job_id`` with a local worker in process until it is Done or Aborted."""
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w1")
    try:
        worker.start()
        until(worker, in_state(rt, job_id, JobState.DONE, JobState.ABORTED), "the job to end")
    finally:
        end_jobs(worker)


def in_state(rt: Runtime, job_id: str, *states: JobState) -> Callable[[], bool]:
    return lambda: job_row(rt, job_id).state in {s.value for s in states}


def aborted_beside_done(rt: Runtime, pki: Pki, work_root: Path, what: str, *, extra: str = "",
                        stored: dict[str, Any] | None = None) -> tuple[str, str]:
    """A job the worker must abort, then an ordinary one, both of alice (delegation ``exec``):
    ``(bad, good)`` once a worker in process (local backend, ``work_root``) has Aborted the first
    and run the second to Done, and then made one more cycle (the worker goes on).

    Args:
        what: the wait's description, for a timeout's message.
        extra: JDL attributes of the first job.
        stored: columns of the first job's row changed after it was submitted (what an
            earlier version or configuration stored).
    """
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "exec")
    bad = submit(rt, alice, "touch ran", extra)  # the oldest request: claimed first
    good = submit(rt, alice, "touch ran")
    if stored:
        with rt.uow() as uow:
            uow.session.execute(sa.update(Job).where(Job.id == bad).values(**stored))
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w1")
    try:
        worker.start()
        # Each step is a cycle of the worker's loop: one raising is the process ending.
        until(worker, lambda: in_state(rt, bad, JobState.ABORTED)() and in_state(rt, good, JobState.DONE)(), what)
        worker.step()
    finally:
        end_jobs(worker)
    return bad, good


def abandon(worker: ExecutionWorker, rt: Runtime, *, process_lives: bool = False) -> None:
    """The worker dies: nothing of it runs any more, its heartbeat is older than the lease and
    its row names a process that has exited (the worker object lives on in the test's process).
    ``process_lives``: only the heartbeat gets old (a worker that cannot heartbeat, e.g. through
    a database outage); its row keeps the test's own pid."""
    values: dict[str, object] = {"heartbeat_at": utcnow() - dt.timedelta(seconds=2 * LEASE)}
    if not process_lives:
        exited = subprocess.Popen(["true"])
        exited.wait()
        values["pid"] = exited.pid
    with rt.uow() as uow:
        uow.session.execute(sa.update(ExecutionWorkerRow).where(ExecutionWorkerRow.name == worker.name)
                            .values(**values))


class Killed(BaseException):
    """The worker process killed (SIGKILL): what it would run after this, its ``finally`` blocks
    included, is not what a killed process leaves; the test puts the disk back as it was."""


def left_in_work_root(rt: Runtime) -> list[str]:
    """What is in the work root besides an empty ends-journal directory (the worker keeps it:
    every cycle's ends are journaled there until their commit): [] once every work dir is gone
    and every end recorded."""
    root = Path(rt.settings.execution.work_dir)
    names = sorted(os.listdir(root))
    if JOURNALS in names and not os.listdir(root / JOURNALS):
        names.remove(JOURNALS)
    return names


def work_dir(rt: Runtime, job_id: str) -> Path:
    ref = job_row(rt, job_id).backend_ref
    assert ref is not None
    return Path(rt.settings.execution.work_dir) / ref.split(":", 3)[3]


def running_events(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return sum(1 for e in uow.jobs.events(job_id) if e.state == JobState.RUNNING.value)


def start_requests(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return len(uow.session.scalars(sa.select(ExecutionRequest).where(
            ExecutionRequest.job_id == job_id, ExecutionRequest.command == "start")).all())


WAIT_GO = "while [ ! -e go ]; do sleep 0.1; done; echo out; exit 5"


@contextlib.contextmanager
def local_worker_runtime(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
                         store_key_dir: Path) -> Iterator[Runtime]:
    """A runtime whose jobs run as ``job_account`` in ``work_root``, polled every 50 ms (a worker
    in process on the local backend)."""
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE, "poll_interval": 0.05,
                                   "kill_grace": 2.0}) as runtime:
        yield runtime
