"""The SQLite wake-up of an idle execution worker (issue 14: a started job begins without waiting
for a poll tick): the worker watches the database's directory with inotify, and a commit of
another process ends its wait. Real SQLite files, real committing processes, a real worker.

No assertion on speed: a wait that should be woken has a timeout far beyond any machine's delay
(:data:`WOKEN_WITHIN`), so a missed wake-up fails the test instead of slowing it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.support import delegate_in_process, principal_of
from tests.unit.execution.wrapper_support import DEADLINE
from wmproxy.domain import FINAL_STATES, JobState
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.wakeup import COMMIT_WAKE_GAP, Wakeup
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.submission import submit_job
from wmproxy.store import make_engine

#: Seconds a wait may take when something must wake it (never reached when it works): it
#: includes starting the committing Python process on a loaded machine. Without the wake-up
#: the wait runs to this timeout and returns False: the test fails.
WOKEN_WITHIN = 120.0

#: A second process that commits to the SQLite file ``argv[1]`` every 20 ms until the file
#: ``argv[2]`` exists (at most ``argv[3]`` commits): whichever of its commits lands during a
#: wait must end that wait.
COMMITTER = """
import os, sqlite3, sys, time
db, gate, most = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db, timeout=30)
for n in range(most):
    if os.path.exists(gate):
        break
    conn.execute("insert into t values (?)", (n,))
    conn.commit()
    time.sleep(0.02)
conn.close()
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sa.Engine, Path]]:
    """An engine (WAL, as the worker's) on a fresh SQLite file with a table ``t``."""
    path = tmp_path / "db" / "wmproxy.sqlite"
    path.parent.mkdir()
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (x integer)")
    yield engine, path
    engine.dispose()


@pytest.fixture
def wakeup(db: tuple[sa.Engine, Path]) -> Iterator[Wakeup]:
    waker = Wakeup(db[0])
    assert not waker.wait(0)  # sets up the watch (lazily, as for LISTEN)
    assert waker.listening
    yield waker
    waker.close()


class Committer:
    """The running :data:`COMMITTER` process; ``stop()`` ends it."""

    def __init__(self, path: Path, most: int = 3000) -> None:
        self.gate = path.parent / f"stop-{time.monotonic_ns()}"
        self.process = subprocess.Popen([sys.executable, "-c", COMMITTER, str(path), str(self.gate), str(most)])

    def stop(self) -> None:
        self.gate.touch()
        assert self.process.wait(timeout=DEADLINE) == 0


def _rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("select count(*) from t").scalar_one())


class TestCommitsWake:
    def test_a_commit_of_another_process_wakes_the_wait(self, db: tuple[sa.Engine, Path], wakeup: Wakeup) -> None:
        committer = Committer(db[1])
        try:
            assert wakeup.wait(WOKEN_WITHIN), "another process's commit did not wake the wait"
            assert wakeup.notified  # the worker then also looks at its queued cancels
        finally:
            committer.stop()

    def test_its_own_commits_before_the_wait_do_not_wake_it(self, db: tuple[sa.Engine, Path],
                                                              wakeup: Wakeup) -> None:
        engine, path = db
        for n in range(3):  # the worker's own transactions, before it waits
            with engine.begin() as conn:
                conn.exec_driver_sql("insert into t values (?)", (n,))
        assert not wakeup.wait(0.5)  # ran to its timeout: the worker does not loop on its own commits
        assert not wakeup.wait(0.5, recheck=0.1)  # nothing since: the full wait again
        committer = Committer(path)
        try:
            assert wakeup.wait(WOKEN_WITHIN)  # while a later commit of another process does wake it
        finally:
            committer.stop()

    def test_a_commit_between_two_waits_shortens_the_next_to_its_recheck(
            self, db: tuple[sa.Engine, Path], wakeup: Wakeup) -> None:
        # The worker cannot tell its own commits from another process's that landed after its
        # last poll: the next wait is then no longer than the old idle poll (its recheck).
        with db[0].begin() as conn:
            conn.exec_driver_sql("insert into t values (1)")
        begin = time.monotonic()
        assert not wakeup.wait(WOKEN_WITHIN, recheck=0.1)
        assert time.monotonic() - begin < WOKEN_WITHIN  # ended at its recheck, not its timeout

    def test_a_deleted_and_recreated_wal_still_wakes_it(self, db: tuple[sa.Engine, Path], wakeup: Wakeup) -> None:
        engine, path = db
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        engine.dispose()  # the last connection closes: SQLite checkpoints and deletes the WAL
        assert not wal.exists()
        committer = Committer(path)  # its connection creates the WAL anew, then commits into it
        try:
            assert wakeup.wait(WOKEN_WITHIN), "a commit into the recreated WAL did not wake the wait"
        finally:
            committer.stop()
        assert _rows(engine) > 0  # it did commit into the new WAL

    def test_commits_wake_it_at_most_once_per_gap(self, db: tuple[sa.Engine, Path], wakeup: Wakeup) -> None:
        committer = Committer(db[1])  # 50 commits a second
        try:
            woken = 0
            begin = time.monotonic()
            while time.monotonic() - begin < 1.0:
                woken += wakeup.wait(WOKEN_WITHIN)
            spent = time.monotonic() - begin
        finally:
            committer.stop()
        assert woken >= 1
        # never more often than the gap: a busy service does not turn the idle worker into a loop
        assert woken <= spent / COMMIT_WAKE_GAP + 1


class TestFallback:
    def test_a_directory_that_cannot_be_watched_means_polling_said_once(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'wmproxy.sqlite'}")
        waker = Wakeup(engine)
        try:
            with caplog.at_level(logging.INFO, logger="wmproxy.execution.wakeup"):
                assert not waker.wait(0.1)
                assert not waker.wait(0.1)
            assert not waker.listening  # the worker keeps its short idle poll
            warnings = [r for r in caplog.records if "cannot watch" in r.getMessage()]
            assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        finally:
            waker.close()
            engine.dispose()

    def test_an_in_memory_database_means_polling_said_once(self, caplog: pytest.LogCaptureFixture) -> None:
        engine = make_engine("sqlite://")
        waker = Wakeup(engine)
        try:
            with caplog.at_level(logging.INFO, logger="wmproxy.execution.wakeup"):
                assert not waker.wait(0)
                assert not waker.wait(0)
            assert not waker.listening
            assert [r.levelno for r in caplog.records if "in-memory" in r.getMessage()] == [logging.INFO]
        finally:
            engine.dispose()

    def test_a_lost_watch_ends_the_wait_once_then_polls(self, db: tuple[sa.Engine, Path], wakeup: Wakeup,
                                                        caplog: pytest.LogCaptureFixture) -> None:
        engine, path = db
        engine.dispose()
        with caplog.at_level(logging.WARNING, logger="wmproxy.execution.wakeup"):
            shutil.rmtree(path.parent)  # the watched directory goes (IN_IGNORED)
            assert wakeup.wait(WOKEN_WITHIN)  # one poll at once
        assert not wakeup.listening
        assert any("no longer watched" in r.getMessage() for r in caplog.records)
        assert not wakeup.wait(0.1)


class CountingWorker(ExecutionWorker):
    """A real worker that counts its cycles."""

    steps = 0

    def step(self) -> bool:
        self.steps += 1
        return super().step()


@pytest.mark.sqlite_only  # PostgreSQL wakes the worker by NOTIFY (test_worker_wakeup.py)
def test_an_idle_worker_claims_a_started_job_without_a_poll_tick(
        tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
        store_key_dir: Path) -> None:
    """With a poll interval of an hour (an idle poll every 720 s), a submitted job is claimed
    and run at once, and the idle worker's cycles stay few (no loop on its own commits)."""
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "poll_interval": 3600.0}) as rt:
        alice = principal_of(pki, "alice")
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "wake")
        worker = CountingWorker(rt, {"local": LocalExecutionBackend(work_root, kill_grace=2.0)}, "w-inotify")
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + DEADLINE
            while not worker.steps:
                assert time.monotonic() < deadline, "the worker did not start"
                time.sleep(0.01)

            def state(job_id: str) -> str:
                with rt.uow() as uow:
                    return str(getattr(uow.jobs.get(job_id), "state", ""))

            # A job submitted before the worker's wait began is taken at its next poll (720 s
            # here): the next one wakes it. Without a wake-up, none is taken before the deadline.
            done = None
            while done is None:
                job_id = submit_job(rt, alice, '[ Executable = "/bin/true"; ]', "wake").job_id
                retry = time.monotonic() + 5.0
                while time.monotonic() < retry and done is None:
                    assert time.monotonic() < deadline, "no started job was claimed"
                    if state(job_id) in {s.value for s in FINAL_STATES}:
                        done = job_id
                    time.sleep(0.02)
            assert state(done) == JobState.DONE.value
            while worker.running:  # every job ended and was reaped
                assert time.monotonic() < deadline, "a job did not end"
                time.sleep(0.02)
            before = worker.steps
            stop.wait(2.0)
            # idle for 2 s: at most the recheck after its own last commits and a heartbeat
            assert worker.steps - before <= 3
        finally:
            stop.set()
            thread.join(timeout=DEADLINE)
