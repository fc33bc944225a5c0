"""The store key: its fingerprint recorded at init, every process refusing another key or an
older schema with the fix in the message (exit once, non-zero), init never creating a key for
a database with sealed data, rotation re-sealing every row; concurrent migrations."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from tests.admin.support import (
    BIN,
    SERVICE_USER,
    effective_user,
    key_path,
    recorded,
    run,
    sealed_rows,
    write_ini,
)
from tests.conftest import Pki
from wmproxy.admin import initialise, upgrade_database
from wmproxy.config import RenewalSettings, Settings
from wmproxy.domain import utcnow
from wmproxy.errors import WMProxyError
from wmproxy.security import sealing
from wmproxy.security.filemodes import sqlite_path
from wmproxy.security.sealing import Sealer, key_fingerprint
from wmproxy.services.storekey import (
    StoreStateError,
    check_store,
    check_store_key,
    record_store_key,
    rotate_store_key,
)
from wmproxy.store import make_engine, make_session_factory
from wmproxy.store.migrations import _alembic_config, head_revision, schema_revisions
from wmproxy.store.schema import Delegation, DelegationRequest, ExecutionWorkerRow, ProxyRenewal
from wmproxy.store.uow import UnitOfWork

DN = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"


def db_dir(settings: Settings) -> None:
    """The SQLite file's directory (init creates it; a bare migrate needs it)."""
    if settings.database.url.startswith("sqlite"):
        Path(settings.database.url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)


def store_sealed(settings: Settings, sealer: Sealer, delegation_id: str = "d1") -> None:
    engine = make_engine(settings.database.url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            uow.session.add_all(sealed_rows(sealer, DN, delegation_id))
    finally:
        engine.dispose()


def replace_key(settings: Settings) -> str:
    """Put another key in the key file (as a node with its own key); returns its fingerprint."""
    path = key_path(settings)
    path.unlink()
    path.write_bytes(Sealer.generate_key() + b"\n")
    path.chmod(0o600)
    return key_fingerprint(path.read_bytes())


class TestInitRecordsTheKey:
    def test_the_fingerprint_is_the_keys_sha256_never_the_key(self, settings: Settings) -> None:
        initialise(settings)
        key = key_path(settings).read_bytes().strip()
        fingerprint = recorded(settings)
        assert fingerprint == key_fingerprint(key) and fingerprint.startswith("sha256:")
        assert key.decode() not in fingerprint
        check_store(settings)

    def test_init_again_keeps_the_key(self, settings: Settings) -> None:
        initialise(settings)
        before = key_path(settings).read_bytes()
        initialise(settings)
        assert key_path(settings).read_bytes() == before

    def test_init_refuses_to_create_a_key_for_a_database_with_sealed_data(self, settings: Settings) -> None:
        initialise(settings)
        store_sealed(settings, Sealer.from_key_file(key_path(settings)))
        key_path(settings).unlink()  # lost, or a second node without the key
        with pytest.raises(StoreStateError, match="copy the key file from another node") as err:
            initialise(settings)
        assert "init never creates a new key" in str(err.value)
        assert not key_path(settings).exists()

    def test_init_refuses_to_create_a_key_when_another_is_recorded(self, settings: Settings) -> None:
        initialise(settings)  # no sealed data yet, but the database belongs to a key
        key_path(settings).unlink()
        with pytest.raises(StoreStateError, match="copy the key file"):
            initialise(settings)
        assert not key_path(settings).exists()

    def test_init_with_another_nodes_different_key_refuses(self, settings: Settings) -> None:
        initialise(settings)
        replace_key(settings)
        with pytest.raises(StoreStateError, match="is not the key of this database"):
            initialise(settings)


class TestProcessesRefuseAnotherKey:
    def test_check_store_names_the_fix(self, settings: Settings) -> None:
        initialise(settings)
        good = recorded(settings)
        mine = replace_key(settings)
        with pytest.raises(StoreStateError) as err:
            check_store(settings)
        message = str(err.value)
        assert "copy the store key file from another node" in message
        assert good[:19] in message and mine[:19] in message
        assert key_path(settings).read_text().strip() not in message

    def test_a_database_without_a_recorded_key_is_refused(self, settings: Settings) -> None:
        db_dir(settings)
        upgrade_database(settings)  # migrated, but never initialised
        key_path(settings).parent.mkdir(parents=True)
        key_path(settings).write_bytes(Sealer.generate_key())
        with pytest.raises(StoreStateError, match="wmproxy-admin init"):
            check_store(settings)

    def test_migrate_records_the_key_of_an_older_deployment_after_checking_it(self, settings: Settings) -> None:
        db_dir(settings)
        upgrade_database(settings)
        key_path(settings).parent.mkdir(parents=True)
        key_path(settings).write_bytes(Sealer.generate_key())
        store_sealed(settings, Sealer.from_key_file(key_path(settings)))
        record_store_key(settings, create=False)
        check_store(settings)
        replace_key(settings)
        with pytest.raises(StoreStateError):
            check_store(settings)

    def test_migrate_does_not_record_a_key_that_cannot_open_the_stored_proxies(self, settings: Settings) -> None:
        db_dir(settings)
        upgrade_database(settings)
        store_sealed(settings, Sealer(Sealer.generate_key()))
        key_path(settings).parent.mkdir(parents=True)
        key_path(settings).write_bytes(Sealer.generate_key())
        with pytest.raises(StoreStateError, match="cannot open the proxies"):
            record_store_key(settings, create=False)
        assert recorded(settings) is None

    def test_the_worker_the_renewal_worker_and_admin_exit_once_with_the_message(
            self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        replace_key(settings)
        for argv, status in ((["wmproxy-worker", "--name", "w1"], 3), (["wmproxy-renewal", "--once"], 3),
                             (["wmproxy-admin", "stats"], 1)):
            done = run(*argv, config=config, timeout=60)  # a crash loop would not return
            assert done.returncode == status, (argv, done.stdout, done.stderr)
            assert "is not the key of this database" in done.stderr, (argv, done.stderr)
            assert "copy the store key file from another node" in done.stderr
            assert "Traceback" not in done.stderr

    def test_check_reports_the_key_and_exits_non_zero(self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        assert run("wmproxy-admin", "check", config=config).returncode == 0
        replace_key(settings)
        done = run("wmproxy-admin", "check", config=config)
        assert done.returncode == 1
        assert "PROBLEM" in done.stdout and "store key" in done.stdout


class _FernetSealer(Sealer):
    """Seals as releases before schema revision 0014 did (Fernet)."""

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)


class TestOlderSchema:
    def test_every_process_refuses_with_the_command_to_run(self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        command.downgrade(_alembic_config(settings.database.url), "0006")
        assert schema_revisions(settings.database.url) == ("0006", head_revision())
        with pytest.raises(StoreStateError, match="run `wmproxy-admin migrate`"):
            check_store(settings)
        for argv in (["wmproxy-worker", "--name", "w1"], ["wmproxy-renewal", "--once"], ["wmproxy-admin", "jobs",
                                                                                         "list"]):
            done = run(*argv, config=config, timeout=60)
            assert done.returncode != 0 and "wmproxy-admin migrate" in done.stderr, (argv, done.stderr)
        done = run("wmproxy-admin", "migrate", config=config)
        assert done.returncode == 0, done.stderr
        check_store(settings)


    @pytest.mark.sqlite_only
    def test_a_missing_sqlite_database_is_named_never_created(self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        db = sqlite_path(settings.database.url)
        assert db is not None
        db.unlink()  # e.g. [database] url mistyped on this node
        for argv in (["wmproxy-worker", "--name", "w1"], ["wmproxy-renewal", "--once"],
                     ["wmproxy-admin", "jobs", "list"], ["wmproxy-admin", "check"]):
            done = run(*argv, config=config, timeout=60)
            assert done.returncode != 0 and f"there is no database at {db}" in done.stdout + done.stderr, argv
            assert not db.exists(), argv
        with pytest.raises(StoreStateError, match="run `wmproxy-admin init`"):
            check_store(settings)

class TestRotation:
    def test_every_sealed_row_is_resealed_and_the_old_key_retired(self, settings: Settings) -> None:
        initialise(settings)
        old = Sealer.from_key_file(key_path(settings))
        for delegation_id in ("d1", "d2", "d3"):
            store_sealed(settings, old, delegation_id)
        done = rotate_store_key(settings, today=dt.date(2026, 12, 2))
        assert (done.delegations, done.requests) == (3, 3)
        new = Sealer.from_key_file(key_path(settings))
        assert new.fingerprint == done.new_fingerprint == recorded(settings) != old.fingerprint
        assert done.retired == key_path(settings).with_name("store.key.retired-20261202")
        assert Sealer.from_key_file(done.retired).fingerprint == old.fingerprint
        assert not key_path(settings).with_name("store.key.new").exists()
        assert oct(key_path(settings).stat().st_mode & 0o777) == "0o600"
        engine = make_engine(settings.database.url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                for row in uow.session.scalars(select(Delegation)):
                    assert new.open(row.sealed_proxy) == f"proxy of {row.delegation_id}".encode()
                    with pytest.raises(WMProxyError):
                        old.open(row.sealed_proxy)
                for req in uow.session.scalars(select(DelegationRequest)):
                    assert new.open(req.sealed_key) == f"key of {req.delegation_id}".encode()
        finally:
            engine.dispose()
        check_store(settings)

    def test_rows_sealed_by_an_earlier_release_are_resealed_with_aes_gcm(self, settings: Settings) -> None:
        """Fernet tokens (what releases before schema 0014 wrote) are opened and written again in
        the AES-256-GCM format: after a rotation no Fernet token is left."""
        initialise(settings)
        old_key = key_path(settings).read_bytes().strip()
        store_sealed(settings, _FernetSealer(old_key), "legacy")
        rotate_store_key(settings, today=dt.date(2026, 12, 2))
        new = Sealer.from_key_file(key_path(settings))
        engine = make_engine(settings.database.url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                row = uow.session.scalars(select(Delegation)).one()
                req = uow.session.scalars(select(DelegationRequest)).one()
            assert row.sealed_proxy[:1] == req.sealed_key[:1] == b"\x02"
            assert new.open(row.sealed_proxy) == b"proxy of legacy"
            assert new.open(req.sealed_key) == b"key of legacy"
        finally:
            engine.dispose()

    def test_a_second_rotation_the_same_day_keeps_both_retired_keys(self, settings: Settings) -> None:
        initialise(settings)
        first = rotate_store_key(settings, today=dt.date(2026, 12, 2))
        second = rotate_store_key(settings, today=dt.date(2026, 12, 2))
        assert first.retired != second.retired and first.retired.exists() and second.retired.exists()

    def test_a_failed_sync_after_the_key_is_in_place_does_not_ask_for_the_move(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The directory's fsync after the rename fails (a disk error, injected: none can be made
        here): the key is in place, so the message must not send the admin to `mv` a file that
        is gone."""
        initialise(settings)
        real, calls = sealing.fsync_directory, []

        def failing_after_the_rename(path: Path) -> None:
            calls.append(path)
            if len(calls) == 2:  # the first is <key>.new's, written; the second follows the rename
                raise OSError(5, "Input/output error")
            real(path)

        monkeypatch.setattr(sealing, "fsync_directory", failing_after_the_rename)
        with pytest.raises(StoreStateError, match="the new key is in place") as info:
            rotate_store_key(settings, today=dt.date(2026, 12, 2))
        assert "mv " not in str(info.value)
        assert Sealer.from_key_file(key_path(settings)).fingerprint == recorded(settings)

    def test_the_pool_of_delegation_keys_is_emptied(self, settings: Settings) -> None:
        from sqlalchemy import func

        from wmproxy.domain import utcnow
        from wmproxy.store.keypool import PooledDelegationKey, SqlDelegationKeyPool

        initialise(settings)
        engine = make_engine(settings.database.url)
        factory = make_session_factory(engine)
        try:
            with factory() as session, session.begin():
                SqlDelegationKeyPool(session).add(b"sealed", "csr", 2048, utcnow())
            rotate_store_key(settings)
            with factory() as session:
                assert session.scalar(select(func.count()).select_from(PooledDelegationKey)) == 0
        finally:
            engine.dispose()

    def test_a_row_sealed_with_another_key_aborts_the_rotation_unchanged(self, settings: Settings) -> None:
        initialise(settings)
        key_before = key_path(settings).read_bytes()
        store_sealed(settings, Sealer.from_key_file(key_path(settings)), "d1")
        store_sealed(settings, Sealer(Sealer.generate_key()), "d2")  # corrupt
        with pytest.raises(StoreStateError, match=f"delegated proxy of {DN} with delegation id d2 cannot be opened"):
            rotate_store_key(settings)
        assert key_path(settings).read_bytes() == key_before
        assert recorded(settings) == key_fingerprint(key_before)
        assert not key_path(settings).with_name("store.key.new").exists()

    def test_a_pending_request_sealed_with_another_key_is_named(self, settings: Settings) -> None:
        initialise(settings)
        _delegation, request = sealed_rows(Sealer(Sealer.generate_key()), DN, "d3")
        engine = make_engine(settings.database.url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                uow.session.add(request)
        finally:
            engine.dispose()
        with pytest.raises(StoreStateError, match=f"pending delegation request of {DN} with delegation id d3"):
            rotate_store_key(settings)

    def test_the_admin_command(self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        before = recorded(settings)
        done = run("wmproxy-admin", "rotate-store-key", "--yes", config=config)
        assert done.returncode == 0, done.stderr
        assert "retired" in done.stdout and recorded(settings) != before
        assert run("wmproxy-admin", "check", config=config).returncode == 0


@contextlib.contextmanager
def running_worker(config: Path, settings: Settings, name: str) -> Iterator[subprocess.Popen[str]]:
    """A real ``wmproxy-worker --name <name>``, yielded once its heartbeat row is in the database;
    stopped (SIGTERM, it deregisters) after the block."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env["WMPROXY_CONFIG"] = str(config)
    proc = subprocess.Popen([str(BIN / "wmproxy-worker"), "--name", name], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    engine = make_engine(settings.database.url)
    try:
        for _ in range(1200):  # until it heartbeats (or exits): no speed assumed, at most ~2 minutes
            with engine.connect() as conn:
                if conn.execute(select(ExecutionWorkerRow.name).where(ExecutionWorkerRow.name == name)).first():
                    break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
        else:
            pytest.fail("the worker never heartbeat")
        yield proc
    finally:
        engine.dispose()
        proc.terminate()
        proc.communicate(timeout=120)


class TestRotationWhileProcessesRun:
    """A process running through a rotation goes on sealing with the old key: the rotation
    refuses while the database shows one running (``--force`` overrides)."""

    def test_a_heartbeating_execution_worker_refuses_the_rotation_until_it_stops(
            self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        before = recorded(settings)
        with running_worker(config, settings, "w-live") as worker:
            done = run("wmproxy-admin", "rotate-store-key", "--yes", config=config)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
            assert f"execution worker w-live on {os.uname().nodename} (pid {worker.pid}" in done.stderr
            assert "systemctl stop wmproxy-worker" in done.stderr and "--force" in done.stderr
            assert recorded(settings) == before and not key_path(settings).with_name("store.key.new").exists()
        done = run("wmproxy-admin", "rotate-store-key", "--yes", config=config)  # stopped: it deregistered
        assert done.returncode == 0, done.stderr
        assert recorded(settings) != before

    def test_force_rotates_while_a_worker_runs(self, settings: Settings, tmp_path: Path) -> None:
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        before = recorded(settings)
        with running_worker(config, settings, "w-forced"):
            done = run("wmproxy-admin", "rotate-store-key", "--yes", "--force", config=config)
            assert done.returncode == 0, done.stderr
        assert recorded(settings) != before

    def test_a_renewal_lease_refuses_the_rotation(self, settings: Settings) -> None:
        """A renewal worker in a MyProxy exchange holds its record's lease (the row as it writes it)."""
        initialise(settings)
        now = utcnow()
        engine = make_engine(settings.database.url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                uow.session.add_all([
                    ProxyRenewal(owner_dn=DN, delegation_id="d1", myproxy_server="myproxy:7512", created_at=now,
                                 updated_at=now, claimed_by="renewer-a", claimed_until=now + dt.timedelta(minutes=5)),
                    ProxyRenewal(owner_dn=DN, delegation_id="d2", myproxy_server="myproxy:7512", created_at=now,
                                 updated_at=now, claimed_by="renewer-gone",
                                 claimed_until=now - dt.timedelta(minutes=5))])
        finally:
            engine.dispose()
        with pytest.raises(StoreStateError, match="renewal worker renewer-a ") as info:
            rotate_store_key(settings)
        assert "renewer-gone" not in str(info.value) and "systemctl stop wmproxy-renewal" in str(info.value)
        rotate_store_key(settings, force=True)


class TestSealingAfterARotation:
    def test_a_process_with_the_retired_key_does_not_refill_the_key_pool(self, settings: Settings) -> None:
        """The service's pool filler, after a rotation forced while it ran: it would refill the
        pool the rotation emptied with keys sealed with the old key."""
        from sqlalchemy import func

        from wmproxy.services.delegation_keys import fill_pool
        from wmproxy.services.runtime import Runtime
        from wmproxy.services.storekey import RetiredKeyError
        from wmproxy.store.keypool import PooledDelegationKey

        initialise(settings)
        rt = Runtime.from_settings(settings)  # loads the key now, as a running service did
        try:
            assert fill_pool(rt, target=1) == 1
            rotate_store_key(settings, force=True)
            with pytest.raises(RetiredKeyError, match="rotated while it ran; restart it"):
                fill_pool(rt, target=1)
            with rt.uow() as uow:
                assert uow.session.scalar(select(func.count()).select_from(PooledDelegationKey)) == 0
            fresh = Runtime.from_settings(settings)  # restarted with the new key
            try:
                assert fill_pool(fresh, target=1) == 1
            finally:
                fresh.session_factory.kw["bind"].dispose()
        finally:
            rt.session_factory.kw["bind"].dispose()


    def test_a_renewal_claimed_before_a_forced_rotation_stores_nothing_after_it(
            self, settings: Settings, pki: Pki) -> None:
        """A renewal worker in a MyProxy exchange across a forced rotation (its lease held, so
        the rotation needed --force): storing what MyProxy granted would seal it with the
        retired key, which nothing opens after the worker's restart."""
        from wmproxy.services.renewal import (
            RenewalOutcome,
            begin_renewal,
            due_renewals,
            finish_renewal,
            register_for_renewal,
            renewal_status,
        )
        from wmproxy.services.runtime import Runtime
        from wmproxy.services.storekey import RetiredKeyError

        server = "myproxy.example.org:7512"
        settings = dataclasses.replace(settings, renewal=RenewalSettings(myproxy_allowed_servers=server))
        initialise(settings)
        dn, now = pki.users["alice"].dn, utcnow()
        stored = pki.proxy("alice", 20 * 60).read_bytes()  # due: 20 minutes left
        rt = Runtime.from_settings(settings)  # the worker's: loaded the key at its start
        try:
            with rt.uow() as uow:
                uow.delegations.put_proxy(dn, "d1", rt.sealer.seal(stored), now - dt.timedelta(minutes=5),
                                          now + dt.timedelta(minutes=20), (), now)
                register_for_renewal(uow, dn, "d1", server, now)
            with rt.uow() as uow:
                (record_id,) = due_renewals(uow, rt, now)
                order = begin_renewal(uow, rt, record_id, "renewer-a", now)
            assert order is not None
            with pytest.raises(StoreStateError, match="renewal worker renewer-a "):
                rotate_store_key(settings)
            rotate_store_key(settings, force=True)
            renewed = RenewalOutcome("renewed", proxy_pem=pki.proxy("alice", 10 * 3600).read_bytes())
            with pytest.raises(RetiredKeyError, match="rotated while it ran; restart it"), rt.uow() as uow:
                finish_renewal(uow, rt, order, renewed, utcnow())
        finally:
            rt.session_factory.kw["bind"].dispose()
        fresh = Runtime.from_settings(settings)  # restarted with the new key
        try:
            with fresh.uow() as uow:
                row = uow.delegations.get(dn, "d1")
                assert row is not None and fresh.sealer.open(row.sealed_proxy) == stored
                status = renewal_status(uow, dn, "d1")
            assert status is not None and (status.attempts, status.last_result) == (0, None)
        finally:
            fresh.session_factory.kw["bind"].dispose()

    def test_a_renewal_worker_running_through_a_forced_rotation_stops_at_its_next_pass(
            self, settings: Settings, tmp_path: Path) -> None:
        """Started and idle (no lease held, so the rotation's guard does not see it): at its next
        pass it stops, exit 1, saying to restart it with the new key file."""
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        assert run("wmproxy-admin", "init", config=config).returncode == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
        env["WMPROXY_CONFIG"] = str(config)
        proc = subprocess.Popen([str(BIN / "wmproxy-renewal"), "--name", "renewer-idle"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        try:
            started = []
            while not any("renewal worker renewer-idle started" in line for line in started):
                line = proc.stderr.readline()
                assert line, "".join(started)  # exited before it started
                started.append(line)
            done = run("wmproxy-admin", "rotate-store-key", "--yes", config=config)
            assert done.returncode == 0, done.stderr  # not seen: it holds no lease
            proc.send_signal(signal.SIGUSR1)  # a pass now
            rest = proc.communicate(timeout=120)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 1, rest
        assert "the store key was rotated: restart wmproxy-renewal with the new key file" in rest
        assert "Traceback" not in rest


class TestCheckOpensSealedRows:
    def test_rows_sealed_with_the_retired_key_after_a_rotation_are_counted_and_named(
            self, settings: Settings, tmp_path: Path) -> None:
        """What a service that ran through the rotation leaves: a putProxy and a pool refill
        sealed with the old key after the database recorded the new one."""
        from wmproxy.store.keypool import SqlDelegationKeyPool

        config = write_ini(settings, tmp_path / "wmproxy.conf")
        initialise(settings)
        old = Sealer.from_key_file(key_path(settings))
        store_sealed(settings, old, "before")
        rotate_store_key(settings)
        assert run("wmproxy-admin", "check", config=config).returncode == 0
        store_sealed(settings, old, "late")
        engine = make_engine(settings.database.url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                SqlDelegationKeyPool(uow.session).add(old.seal(b"pool key"), "csr", 2048, utcnow())
        finally:
            engine.dispose()
        done = run("wmproxy-admin", "check", "--json", config=config)
        assert done.returncode == 1
        found = {c["check"]: c for c in json.loads(done.stdout)}
        assert found["store key"]["ok"]
        detail = found["sealed rows"]["detail"]
        assert not found["sealed rows"]["ok"] and detail.startswith("3 of 5 sealed rows")
        assert f"delegation {DN} late" in detail and f"pending request {DN} late" in detail and "pooled key" in detail
        assert "before" not in detail


class TestKeyOwner:
    """A key file the service user cannot read: rotation as root keeps the key the service
    user's, and a process that cannot read it names the ``chown``, not a restore."""

    @pytest.mark.parametrize("mode", [0o600, 0o400], ids=["0600", "0400"])
    def test_a_rotation_run_as_root_keeps_the_owner_group_and_mode(self, service_settings: Settings,
                                                                  mode: int) -> None:
        path = key_path(service_settings)
        path.chmod(mode)
        before = path.stat()
        config = write_ini(service_settings, path.parent.parent / "wmproxy.conf")
        done = run("wmproxy-admin", "rotate-store-key", "--yes", config=config)
        assert done.returncode == 0, done.stderr
        after = path.stat()
        assert after.st_ino != before.st_ino and recorded(service_settings) == key_fingerprint(path.read_bytes())
        assert (after.st_uid, after.st_gid, after.st_mode & 0o7777) == (before.st_uid, before.st_gid, mode)
        with effective_user(SERVICE_USER):  # what the service does at its next start
            check_store(service_settings)

    def test_a_key_the_user_cannot_read_names_the_chown(self, service_settings: Settings) -> None:
        path = key_path(service_settings)
        os.chown(path, 0, 0)  # a root shell's copy, or a rotation of an older wmproxy run as root
        with effective_user(SERVICE_USER), pytest.raises(StoreStateError) as info:
            check_store_key(service_settings)
        message = str(info.value)
        assert f"store key {path} is not readable by user {SERVICE_USER}" in message
        assert f"`chown {SERVICE_USER} {path}`" in message and "root" in message
        assert "backup" not in message and "restore" not in message

    def test_a_key_in_a_directory_the_user_cannot_enter_names_the_directory(
            self, service_settings: Settings) -> None:
        path = key_path(service_settings)
        hidden = dataclasses.replace(service_settings, security=dataclasses.replace(
            service_settings.security, store_key_file=str(path.parent / "private" / path.name)))
        (path.parent / "private").mkdir(mode=0o700)
        shutil.copy2(path, hidden.security.store_key_file)
        with effective_user(SERVICE_USER), pytest.raises(StoreStateError, match=(
                f"not readable by user {SERVICE_USER}: a directory on its path cannot be entered")) as info:
            check_store_key(hidden)
        assert "backup" not in str(info.value)


class TestConcurrentMigrate:
    def test_two_migrate_processes_on_an_old_database_both_succeed(self, settings: Settings,
                                                                    tmp_path: Path) -> None:
        """Two nodes upgraded at once: one runs the migrations, the other waits and finds none to run.
        (The database is at the first revision: ``migrate`` refuses one with no wmproxy schema.)"""
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        db_dir(settings)
        if settings.database.url.startswith("sqlite"):  # as init leaves it: private (every command checks)
            Path(settings.database.url.split(":///", 1)[1]).touch(mode=0o600)
        upgrade_database(settings, "0001")
        argv = [str(BIN / "wmproxy-admin"), "migrate"]
        env = {"WMPROXY_CONFIG": str(config), "PATH": str(BIN)}
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        for status, _out, err in results:
            assert status == 0, err
        assert schema_revisions(settings.database.url) == (head_revision(), head_revision())


def test_rotation_covers_every_binary_column_of_the_schema() -> None:
    """A new sealed column (a LargeBinary) must be added to the rotation: this fails until it is.
    Binary columns that hold no sealed data are listed as such."""
    from sqlalchemy import LargeBinary

    from wmproxy.store.schema import Base

    binary = {(table.name, column.name) for table in Base.metadata.tables.values() for column in table.columns
              if isinstance(column.type, LargeBinary)}
    not_sealed = {("inspection_requests", "output")}  # a command's output, shown to the job's owner
    discarded = {("delegation_key_pool", "sealed_key")}  # unused keys: emptied by the rotation
    assert binary - not_sealed - discarded == {("delegations", "sealed_proxy"), ("delegation_requests", "sealed_key")}
