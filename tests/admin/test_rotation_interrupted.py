"""A store-key rotation interrupted at or after its commit never loses the new key.

The rotation writes the new key to ``<key>.new``, re-seals every row and records the new
fingerprint in one transaction, then moves the new key into place. Before, any error of the
transaction removed ``<key>.new``, also one raised after the database had committed (the
connection lost while COMMIT was answered, Ctrl-C): the only copy of the key sealing every
proxy was gone. And a rotation killed between the commit and the rename left every process
refusing to start with "copy the store key file from another node", whose keys are the old one.
Now the database decides (``wmproxy.services.storekey``): ``<key>.new`` is removed only while it
records the old key, and every process names an interrupted rotation and the ``mv`` ending it.

The faults are real: a Ctrl-C (SIGINT) and a SIGKILL of a real ``wmproxy-admin`` process, and
on PostgreSQL a TCP relay cutting the connection at its COMMIT (:mod:`tests.admin.commit_cut`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.admin.commit_cut import CommitCut
from tests.admin.support import key_path, recorded, run, sealed_rows, write_ini
from tests.store.locking_support import lock_waiters, start_thread
from tests.support import wait_for
from wmproxy.admin import initialise
from wmproxy.config import DatabaseSettings, Settings
from wmproxy.security.sealing import Sealer
from wmproxy.services.storekey import (
    StoreStateError,
    check_store,
    fingerprint_of_file,
    rotate_store_key,
    staged_key_path,
)
from wmproxy.store import make_engine, make_session_factory
from wmproxy.store.schema import Delegation, DelegationRequest
from wmproxy.store.uow import UnitOfWork

REPO = Path(__file__).resolve().parents[2]
DN = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"
INTERRUPTED = "a store key rotation was interrupted after its commit"


def with_sealed_rows(settings: Settings) -> Sealer:
    """Initialise the deployment and store a delegation and a pending request sealed with its
    key (returned)."""
    initialise(settings)
    old = Sealer.from_key_file(key_path(settings))
    engine = make_engine(settings.database.url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            uow.session.add_all(sealed_rows(old, DN, "d1"))
    finally:
        engine.dispose()
    return old


def assert_rows_open_with(settings: Settings, sealer: Sealer) -> None:
    engine = make_engine(settings.database.url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            assert sealer.open(uow.session.scalars(select(Delegation)).one().sealed_proxy) == b"proxy of d1"
            assert sealer.open(uow.session.scalars(select(DelegationRequest)).one().sealed_key) == b"key of d1"
    finally:
        engine.dispose()


def finish_as_told(settings: Settings, message: str) -> None:
    """Run the ``mv <key>.new <key>`` the message gives; then the store check passes."""
    staged, key = staged_key_path(key_path(settings)), key_path(settings)
    assert f"`mv {staged} {key}`" in message, message
    os.replace(staged, key)
    check_store(settings)


def rotation_process(mode: str, config: Path) -> subprocess.Popen[str]:
    """``wmproxy-admin rotate-store-key --yes`` interrupted after its commit (tests/admin/interrupt_rotation.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env["WMPROXY_CONFIG"] = str(config)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "tests.admin.interrupt_rotation", mode], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_once_committed(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` (mode ``stop``) once its rotation has committed."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert line == "committed\n", (line, out, err)
    assert proc.returncode == -signal.SIGKILL


class TestInterruptedProcess:
    def test_ctrl_c_right_after_the_commit_keeps_the_new_key_and_names_the_mv(
            self, settings: Settings, tmp_path: Path) -> None:
        old = with_sealed_rows(settings)
        proc = rotation_process("sigint", write_ini(settings, tmp_path / "wmproxy.conf"))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (out, err)
        staged = staged_key_path(key_path(settings))
        new_fingerprint = recorded(settings)
        assert new_fingerprint != old.fingerprint  # the rotation committed
        assert staged.exists(), err  # and its key is kept
        assert fingerprint_of_file(staged) == new_fingerprint
        assert "the store key rotation committed" in err and "KeyboardInterrupt" in err
        assert "Traceback" not in err
        assert_rows_open_with(settings, Sealer.from_key_file(staged))
        assert Sealer.from_key_file(key_path(settings)).fingerprint == old.fingerprint
        finish_as_told(settings, err)
        assert_rows_open_with(settings, Sealer.from_key_file(key_path(settings)))

    def test_a_kill_between_the_commit_and_the_rename_is_named_by_every_process(
            self, settings: Settings, tmp_path: Path) -> None:
        old = with_sealed_rows(settings)
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        kill_once_committed(rotation_process("stop", config))
        staged, key = staged_key_path(key_path(settings)), key_path(settings)
        assert fingerprint_of_file(staged) == recorded(settings) != old.fingerprint
        assert Sealer.from_key_file(key).fingerprint == old.fingerprint
        for argv, status in ((["wmproxy-admin", "check", "--json"], 1), (["wmproxy-renewal", "--once"], 3),
                             (["wmproxy-worker", "--name", "w1"], 3), (["wmproxy-admin", "stats"], 1)):
            done = run(*argv, config=config, timeout=60)
            assert done.returncode == status, (argv, done.stdout, done.stderr)
            said = done.stderr
            if argv[1] == "check":
                said = {row["check"]: row["detail"] for row in json.loads(done.stdout)}["store key"]
            assert INTERRUPTED in said and f"`mv {staged} {key}`" in said, (argv, said)
            assert "copy the store key file from another node" not in said, (argv, said)
        with pytest.raises(StoreStateError, match=INTERRUPTED) as refused:
            rotate_store_key(settings)
        finish_as_told(settings, str(refused.value))
        assert run("wmproxy-admin", "check", config=config).returncode == 0
        assert_rows_open_with(settings, Sealer.from_key_file(key))

    def test_with_the_old_key_file_removed_after_the_kill_the_message_still_names_the_mv(
            self, settings: Settings, tmp_path: Path) -> None:
        with_sealed_rows(settings)
        kill_once_committed(rotation_process("stop", write_ini(settings, tmp_path / "wmproxy.conf")))
        key_path(settings).unlink()  # "keep the matching key, remove the other", done the wrong way round
        with pytest.raises(StoreStateError, match=INTERRUPTED) as refused:
            check_store(settings)
        finish_as_told(settings, str(refused.value))


def through(settings: Settings, cut: CommitCut) -> Settings:
    return dataclasses.replace(settings, database=DatabaseSettings(url=cut.url))


@pytest.mark.postgresql_only
class TestCommitCut:
    def test_the_answer_to_commit_lost_keeps_the_new_key(self, settings: Settings) -> None:
        old = with_sealed_rows(settings)
        cut = CommitCut(settings.database.url, "lose-reply")
        try:
            with pytest.raises(StoreStateError, match="the store key rotation committed") as refused:
                rotate_store_key(through(settings, cut))
            assert cut.cut.is_set()
        finally:
            cut.close()
        assert isinstance(refused.value.__cause__, sa.exc.DBAPIError)  # the connection failed at COMMIT
        staged = staged_key_path(key_path(settings))
        assert fingerprint_of_file(staged) == recorded(settings) != old.fingerprint
        assert_rows_open_with(settings, Sealer.from_key_file(staged))
        finish_as_told(settings, str(refused.value))

    @pytest.mark.parametrize("commit", ["arrives", "never-arrives"])
    def test_a_commit_still_on_its_way_is_waited_for(self, settings: Settings,
                                                     commit: str) -> None:
        """The client sees its connection fail while the COMMIT has not reached the server yet:
        the look at the database waits for the rotation's transaction (its row lock) to end,
        then reads what it left."""
        old = with_sealed_rows(settings)
        cut = CommitCut(settings.database.url, "hold")
        watcher = sa.create_engine(settings.database.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        outcome: dict[str, Any] = {}
        try:
            thread = start_thread("rotation", lambda: rotate_store_key(through(settings, cut)), outcome)
            with watcher.connect() as conn:
                waiters, running = wait_for(lambda: (lock_waiters(conn), thread.is_alive()),
                                            lambda seen: seen[0] > 0 or not seen[1],
                                            what="the rotation's look at the database to wait for the "
                                                 "rotation's own transaction, or the rotation to end")
            assert cut.cut.is_set()
            if commit == "arrives":
                cut.release()
            else:
                cut.abort()
            thread.join(120)
            assert not thread.is_alive()
        finally:
            cut.close()
            watcher.dispose()
        assert (waiters, running) == (1, True)  # the outcome was read once the transaction had ended
        staged = staged_key_path(key_path(settings))
        if commit == "arrives":
            assert isinstance(outcome["rotation"], StoreStateError), outcome
            assert "the store key rotation committed" in str(outcome["rotation"])
            assert fingerprint_of_file(staged) == recorded(settings) != old.fingerprint
            finish_as_told(settings, str(outcome["rotation"]))
            assert_rows_open_with(settings, Sealer.from_key_file(key_path(settings)))
        else:  # rolled back: the connection's own error, nothing changed, no key left behind
            assert isinstance(outcome["rotation"], sa.exc.DBAPIError), outcome
            assert not staged.exists()
            assert recorded(settings) == old.fingerprint == Sealer.from_key_file(key_path(settings)).fingerprint
            check_store(settings)
            assert_rows_open_with(settings, old)

    def test_a_database_gone_after_the_cut_keeps_the_key_and_says_the_outcome_is_unknown(
            self, settings: Settings) -> None:
        old = with_sealed_rows(settings)
        cut = CommitCut(settings.database.url, "hold", refuse_after_cut=True)
        try:
            with pytest.raises(StoreStateError, match="whether it committed is unknown") as refused:
                rotate_store_key(through(settings, cut))
            cut.abort()  # the transaction never committed
        finally:
            cut.close()
        staged, key = staged_key_path(key_path(settings)), key_path(settings)
        message = str(refused.value)
        assert f"{staged} is kept" in message and f"`mv {staged} {key}`" in message
        assert staged.exists()
        # the database records the old key: the checks pass, a new rotation names the leftover
        check_store(settings)
        assert recorded(settings) == old.fingerprint
        with pytest.raises(StoreStateError, match=f"remove {staged} and run the rotation again"):
            rotate_store_key(settings)
        staged.unlink()
        done = rotate_store_key(settings)
        assert_rows_open_with(settings, Sealer.from_key_file(key))
        assert done.old_fingerprint == old.fingerprint

