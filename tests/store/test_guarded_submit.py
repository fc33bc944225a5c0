"""jobSubmit's guarded write (issue 14): a simple job checked against the stored proxy the
process read last is written only if the store still holds that proxy (wmproxy.store.job_writes,
wmproxy.services.submission._submit_guarded); on both databases.

The process keeps the stored proxy it stored (the ``alice`` fixture's putProxy) or read (a
jobSubmit's unit of work). The tests change the store behind it, as another gunicorn worker or
the renewal worker would: the next jobSubmit must answer from the store, not from what was
kept, and write nothing it refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import DELEGATION, store_runtime
from tests.support import ECHO_JDL, delegate_in_process, principal_of, wait_for
from wmproxy.config import RenewalSettings
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import DelegationNotFoundError, ProxyExpiredError
from wmproxy.execution.wakeup import Wakeup
from wmproxy.jdl import parse_jdl
from wmproxy.services.delegation import destroy, forget_proxy, recent_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.job_writes import JobWrites, job_writes

#: Seconds a listener may take to see the queue's notification (a loaded machine).
WOKEN_WITHIN = 60.0


def _counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.uow() as uow:
        return tuple(uow.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # type: ignore[return-value] # noqa: S608 - fixed names
                     for table in ("jobs", "job_events", "execution_requests"))


def test_the_second_submit_is_written_by_the_guarded_write_with_its_events_and_request(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = job_writes(rt.session_factory)
    guarded: list[bool] = []

    def insert_started(*args: Any, **kwargs: Any) -> bool:
        guarded.append(JobWrites.insert_started(writes, *args, **kwargs))
        return guarded[-1]

    monkeypatch.setattr(writes, "insert_started", insert_started)
    forget_proxy(rt, alice.dn, DELEGATION)  # as in a process that did not serve the putProxy
    first = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert guarded == []  # the unit of work, which keeps the proxy it read
    assert recent_proxy(rt, alice.dn, DELEGATION) is not None
    second = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert guarded == [True]
    with rt.uow() as uow:
        jobs = {job_id: uow.jobs.get(job_id) for job_id in (first.job_id, second.job_id)}
        for job_id, job in jobs.items():
            assert job is not None and job.state == JobState.WAITING.value and job.owner_dn == alice.dn
            assert [event.state for event in uow.jobs.history(job_id)] == ["Submitted", "Waiting"]
            assert [request.command for request in uow.queue.pending_for(job_id)] == ["start"]
        ads = [parse_jdl(job.jdl_registered) for job in jobs.values()]  # type: ignore[union-attr]
        assert set(ads[0].keys()) == set(ads[1].keys())  # registered alike (edg_jobid, sandbox paths...)
        assert [ad["CertificateSubject"] for ad in ads] == [alice.dn, alice.dn]


@pytest.fixture
def other(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    """Another process of the service on the same database (another gunicorn worker, a node)."""
    with store_runtime(tmp_path / "other", pki, database_url, store_key_dir) as runtime:
        yield runtime


def test_a_delegation_another_process_destroyed_refuses_the_next_submit_and_nothing_is_written(
        rt: Runtime, other: Runtime, alice: Principal) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    destroy(other, alice, DELEGATION)
    assert recent_proxy(rt, alice.dn, DELEGATION) is not None  # this process does not know
    before = _counts(rt)
    with pytest.raises(DelegationNotFoundError):
        submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert _counts(rt) == before
    assert recent_proxy(rt, alice.dn, DELEGATION) is None  # forgotten once the store refused it


def test_a_proxy_another_process_replaced_is_the_one_checked(
        rt: Runtime, other: Runtime, alice: Principal, pki: Pki) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    # Another worker's putProxy: a proxy valid for 10 minutes, less than the 20 a job needs.
    delegate_in_process(other, alice, pki.users["alice"].proxy, DELEGATION, lifetime=600)
    before = _counts(rt)
    with pytest.raises(ProxyExpiredError, match="less than 20 minutes left"):
        submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert _counts(rt) == before
    assert recent_proxy(rt, alice.dn, DELEGATION) is None


def test_putproxy_and_destroy_in_this_process_replace_and_drop_the_kept_proxy(
        rt: Runtime, alice: Principal, pki: Pki) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    delegate_in_process(rt, alice, pki.users["alice"].proxy, DELEGATION, lifetime=7200)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    with rt.uow() as uow:
        assert kept == uow.delegations.stored_proxy(alice.dn, DELEGATION)
    destroy(rt, alice, DELEGATION)
    assert recent_proxy(rt, alice.dn, DELEGATION) is None


def test_a_compound_job_and_a_renewal_go_through_the_unit_of_work(rt: Runtime, alice: Principal) -> None:
    allowed = RenewalSettings(myproxy_allowed_servers="myproxy.example.org")
    rt.settings = dataclasses.replace(rt.settings, renewal=allowed)
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert recent_proxy(rt, alice.dn, DELEGATION) is not None
    collection = submit_job(rt, alice, '[ Type = "collection"; nodes = { [ Executable = "/bin/true"; ], '
                                        '[ Executable = "/bin/false"; ] }; ]', DELEGATION)
    renewed = submit_job(rt, alice, ECHO_JDL.replace("[", '[ MyProxyServer = "myproxy.example.org";', 1),
                         DELEGATION)
    with rt.uow() as uow:
        nodes = uow.jobs.children(collection.job_id)
        assert sorted(node.id for node in nodes) == sorted(child.job_id for child in collection.children)
        assert {node.state for node in nodes} == {JobState.WAITING.value}
        record = uow.renewals.get(alice.dn, DELEGATION)
        assert record is not None and record.myproxy_server == "myproxy.example.org"
        job = uow.jobs.get(renewed.job_id)
        assert job is not None and 'MyProxyServer = "myproxy.example.org"' in job.jdl_registered


def test_the_store_refuses_the_write_for_another_proxy_and_takes_it_for_the_same(
        rt: Runtime, alice: Principal) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    assert kept is not None
    now = utcnow()

    def job(job_id: str) -> dict[str, object]:
        return {"id": job_id, "owner_dn": alice.dn, "delegation_id": DELEGATION, "state": "Waiting",
                "jdl_original": "[]", "jdl_registered": "[]", "sandbox_dir": f"x/{job_id[-4:]}",
                "created_at": now, "updated_at": now}

    writes = job_writes(rt.session_factory)
    engine = rt.session_factory.kw["bind"]
    checked_in: list[object] = []

    def note(dbapi_conn: Any, _record: Any) -> None:
        checked_in.append(getattr(dbapi_conn, "autocommit", None))

    sa.event.listen(engine, "checkin", note)
    before = _counts(rt)
    for owner, delegation_id, sealed in ((alice.dn, DELEGATION, kept.sealed_proxy + b"x"),
                                         (alice.dn, "other", kept.sealed_proxy),
                                         ("/CN=someone else", DELEGATION, kept.sealed_proxy)):
        assert not writes.insert_started(job("https://h:9000/refused0"), ("Submitted", "Waiting"), "start",
                                         owner_dn=owner, delegation_id=delegation_id, sealed_proxy=sealed)
    assert _counts(rt) == before
    assert writes.insert_started(job("https://h:9000/taken000"), ("Submitted", "Waiting"), "start",
                                 owner_dn=alice.dn, delegation_id=DELEGATION, sealed_proxy=kept.sealed_proxy)
    sa.event.remove(engine, "checkin", note)
    assert _counts(rt) == (before[0] + 1, before[1] + 2, before[2] + 1)
    if engine.dialect.name == "postgresql":  # the statement's autocommit does not go back to the pool
        assert checked_in and not any(checked_in), checked_in


def test_a_refused_statement_writes_nothing(rt: Runtime, alice: Principal) -> None:
    job = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    assert kept is not None
    now = utcnow()
    before = _counts(rt)
    with pytest.raises(sa.exc.IntegrityError):  # raised as SQLAlchemy raises a refused statement
        job_writes(rt.session_factory).insert_started(
            {"id": job.job_id, "owner_dn": alice.dn, "delegation_id": DELEGATION, "state": "Waiting",
             "jdl_original": "[]", "jdl_registered": "[]", "sandbox_dir": "x/y", "created_at": now,
             "updated_at": now},
            ("Submitted", "Waiting"), "start", owner_dn=alice.dn, delegation_id=DELEGATION,
            sealed_proxy=kept.sealed_proxy)
    assert _counts(rt) == before
    submit_job(rt, alice, ECHO_JDL, DELEGATION)  # the pooled connection is usable again
    assert _counts(rt) == (before[0] + 1, before[1] + 2, before[2] + 1)


@pytest.mark.postgresql_only  # SQLite has no notification: its worker watches the database's directory
def test_the_guarded_write_wakes_the_listening_worker_on_postgresql(
        rt: Runtime, alice: Principal, database_url: str, tmp_path: Path) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    waker = Wakeup(rt.session_factory.kw["bind"])
    try:
        waker.wait(0)  # opens the LISTEN connection
        assert waker.listening
        submit_job(rt, alice, ECHO_JDL, DELEGATION)  # the guarded write
        assert waker.wait(WOKEN_WITHIN), "the guarded write's start request did not wake the listener"
    finally:
        waker.close()


def test_a_lost_connection_is_a_disconnect_and_the_next_submit_works(
        tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> None:
    """The pooled connection gone under the guarded write (PostgreSQL: its backend terminated, as
    by a restart; SQLite: the driver's connection closed as the write checks it out): the write's
    error is SQLAlchemy's disconnect, the connection is invalidated, nothing is written, and the
    next jobSubmit connects anew. (No ping at checkout, however long the test takes.)"""
    with store_runtime(tmp_path / "no-ping", pki, database_url, store_key_dir, ping_after_idle=24 * 3600) as rt:
        alice = principal_of(pki, "alice")
        delegate_in_process(rt, alice, pki.users["alice"].proxy, DELEGATION)
        _lose_the_connection_under_a_submit(rt, alice, database_url)


def _lose_the_connection_under_a_submit(rt: Runtime, alice: Principal, database_url: str) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)  # the pool keeps one connection, idle
    assert recent_proxy(rt, alice.dn, DELEGATION) is not None  # the next submit is the guarded write
    before = _counts(rt)
    engine = rt.session_factory.kw["bind"]
    broken: list[object] = []

    def close_once(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if not broken:
            broken.append(dbapi_conn)
            dbapi_conn.close()

    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "checkout", close_once)
    else:
        assert engine.pool.checkedin() == 1  # so the write checks out the connection terminated here
        with engine.connect() as conn:
            pid = conn.connection.driver_connection.info.backend_pid
        # autocommit: in a transaction pg_stat_activity keeps its first snapshot, and a first
        # read made before the backend was gone read 1 until the deadline (failed in CI)
        killer = sa.create_engine(database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        with killer.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            wait_for(lambda: other.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                           {"pid": pid}).scalar_one(), lambda n: n == 0,
                     what="the terminated backend to go", timeout=60)
        killer.dispose()
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            submit_job(rt, alice, ECHO_JDL, DELEGATION)
    finally:
        if engine.dialect.name == "sqlite":
            sa.event.remove(engine, "checkout", close_once)
    assert raised.value.connection_invalidated
    assert _counts(rt) == before
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert _counts(rt) == (before[0] + 1, before[1] + 2, before[2] + 1)


def test_a_failed_write_names_no_sealed_proxy(rt: Runtime, alice: Principal) -> None:
    """A refused guarded write's error (logged with its traceback by the SOAP edge) holds the
    statement, not its values: not the sealed proxy, the DN or the JDL."""
    job = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    assert kept is not None
    now = utcnow()
    with pytest.raises(sa.exc.IntegrityError) as raised:
        job_writes(rt.session_factory).insert_started(
            {"id": job.job_id, "owner_dn": alice.dn, "delegation_id": DELEGATION, "state": "Waiting",
             "jdl_original": "[ secret-jdl ]", "jdl_registered": "[]", "sandbox_dir": "x/y",
             "created_at": now, "updated_at": now},
            ("Submitted", "Waiting"), "start", owner_dn=alice.dn, delegation_id=DELEGATION,
            sealed_proxy=kept.sealed_proxy)
    text = str(raised.value)
    assert "INSERT INTO jobs" in text
    token = bytes(kept.sealed_proxy)
    for secret in (repr(token[:40])[2:-1], token[:40].hex(), alice.dn, "secret-jdl"):  # as str() or a hex dump shows it
        assert secret not in text
