"""The renewal worker's pass on both databases, against real TCP listeners on loopback that
record who connected, in order, and hang up at once (so each MyProxy exchange fails quickly,
with no wait on a timeout):

* a record whose MyProxy server the site no longer allows (``[renewal]
  myproxy_allowed_servers`` changed after the job was registered) is refused without any
  connection, and the refusal is recorded for the owner (``not-allowed`` and the reason, as
  getProxyRenewalInfo shows them);
* several due records are tried in the order of their proxies' ends, earliest first, not in
  the order they were registered.

Jobs are registered through the submission service, as jobRegister does; the worker is the
real :class:`wmproxy.renewal.worker.RenewalWorker` with its real MyProxy client, one thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import store_runtime
from tests.support import ECHO_JDL, delegate_in_process, principal_of
from wmproxy.config import RenewalSettings
from wmproxy.domain import JobState, utcnow
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.services.delegation import destroy
from wmproxy.services.renewal import expired_credentials, renewal_status
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.store.schema import Delegation, ExecutionRequest, Job, JobEvent, ProxyRenewal


class Listener:
    """A TCP port on 127.0.0.1 that appends its name to ``log`` for each connection it
    accepts, then closes the connection (before the connecting side can move on)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.log.append(self.name)
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def connections() -> Iterator[tuple[list[str], list[Listener]]]:
    log: list[str] = []
    listeners = [Listener(name, log) for name in ("early", "mid", "late")]
    yield log, listeners
    for listener in listeners:
        listener.close()


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    """A runtime on the module's database, emptied of jobs, delegations and renewal records."""
    with store_runtime(tmp_path / "rt", pki, database_url, store_key_dir) as runtime:
        with runtime.uow() as uow:
            for table in (ExecutionRequest, JobEvent, Job, ProxyRenewal, Delegation):
                uow.session.execute(sa.delete(table))
        yield runtime


def allow(rt: Runtime, servers: str) -> None:
    """Set ``[renewal] myproxy_allowed_servers`` (a short timeout bounds a wrongly made connection)."""
    rt.settings = dataclasses.replace(rt.settings, renewal=RenewalSettings(myproxy_allowed_servers=servers,
                                                                           timeout=10.0))


def register(rt: Runtime, pki: Pki, delegation_id: str, lifetime: int, server: str, user: str = "alice") -> str:
    """Delegate a proxy of ``user`` valid for ``lifetime`` seconds (due for renewal: below a
    quarter of ``renewal.lifetime``) and register a job renewed from ``server``."""
    who = principal_of(pki, user)
    delegate_in_process(rt, who, pki.users[user].proxy, delegation_id, lifetime=lifetime)
    jdl = ECHO_JDL.replace("[", f'[ MyProxyServer = "{server}";', 1)
    return register_job(rt, who, jdl, delegation_id).job_id


def one_pass(rt: Runtime) -> None:
    RenewalWorker(rt, name="test-worker", threads=1).step()


def test_a_record_whose_server_is_no_longer_allowed_is_refused_without_connecting(
        rt: Runtime, pki: Pki, connections: tuple[list[str], list[Listener]]) -> None:
    log, (target, _, _) = connections
    allow(rt, target.server)
    register(rt, pki, "gone", 40 * 60, target.server)
    allow(rt, "myproxy.example.org")  # the site's list changes after the registration
    one_pass(rt)
    assert log == []  # the worker returns only after an exchange ended: nothing connected
    alice = pki.users["alice"].dn
    with rt.uow() as uow:
        status = renewal_status(uow, alice, "gone")
    assert status is not None
    assert (status.last_result, status.attempts, status.renewals) == ("not-allowed", 1, 0)
    assert status.last_attempt_at is not None
    assert status.last_error is not None and target.server in status.last_error
    assert "myproxy_allowed_servers" in status.last_error


def test_a_record_whose_server_is_allowed_is_tried(
        rt: Runtime, pki: Pki, connections: tuple[list[str], list[Listener]]) -> None:
    """The counterpart of the test above: the same record, still allowed, connects (so the
    listener does see a connection attempt of the worker)."""
    log, (target, _, _) = connections
    allow(rt, target.server)
    register(rt, pki, "kept", 40 * 60, target.server)
    one_pass(rt)
    assert log == ["early"]
    with rt.uow() as uow:
        status = renewal_status(uow, pki.users["alice"].dn, "kept")
    assert status is not None and status.attempts == 1 and status.last_result in ("unreachable", "failed")


def test_due_records_are_tried_earliest_end_first(
        rt: Runtime, pki: Pki, connections: tuple[list[str], list[Listener]]) -> None:
    log, (early, mid, late) = connections
    allow(rt, ", ".join(listener.server for listener in (early, mid, late)))
    # registered in another order than their ends: the latest first, the earliest second
    register(rt, pki, "late", 50 * 60, late.server)
    register(rt, pki, "early", 25 * 60, early.server)
    register(rt, pki, "mid", 35 * 60, mid.server)
    one_pass(rt)
    assert log == ["early", "mid", "late"]


def test_owners_take_turns(rt: Runtime, pki: Pki, connections: tuple[list[str], list[Listener]]) -> None:
    """Red team: one user's many records on a server that never answers, ending first, were all
    tried before another user's due record (each holding a thread for the timeout). Each
    owner's first record comes before any owner's second."""
    log, (bobs, alices, _) = connections
    allow(rt, f"{bobs.server}, {alices.server}")
    for i in range(3):
        register(rt, pki, f"bob{i}", (25 + i) * 60, bobs.server, user="bob")
    register(rt, pki, "alice", 34 * 60, alices.server)
    one_pass(rt)
    assert log == ["early", "mid", "early", "early"]


def test_a_default_server_no_longer_allowed_moves_to_the_new_default(
        rt: Runtime, pki: Pki, connections: tuple[list[str], list[Listener]]) -> None:
    """The site moves its default MyProxy (old no longer allowed): the next job registered
    without MyProxyServer moves the credential's record to the new default, which the worker
    then tries; while the old server stays allowed, the record keeps it."""
    log, (old, new, _) = connections
    alice = principal_of(pki, "alice")

    def site(default: str, allowed: str) -> None:
        rt.settings = dataclasses.replace(rt.settings, renewal=RenewalSettings(
            myproxy_server=default, myproxy_allowed_servers=allowed, timeout=10.0))

    def record_server() -> str:
        with rt.uow() as uow:
            status = renewal_status(uow, alice.dn, "moved")
        assert status is not None
        return status.myproxy_server

    site(old.server, old.server)
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "moved", lifetime=40 * 60)
    register_job(rt, alice, ECHO_JDL, "moved")
    site(new.server, f"{old.server}, {new.server}")  # a new default, the old one still allowed
    register_job(rt, alice, ECHO_JDL, "moved")
    assert record_server() == old.server
    site(new.server, new.server)  # the old one no longer allowed
    register_job(rt, alice, ECHO_JDL, "moved")
    assert record_server() == new.server
    one_pass(rt)
    assert log == ["mid"]


def test_expired_and_destroyed_credentials_on_each_database(rt: Runtime, pki: Pki) -> None:
    """The pass's first query: delegations expired while unfinished jobs use them, and destroyed
    ones while jobs a worker holds use them (a destroyed one only jobs not started use is left:
    they wait for a proxy delegated again)."""
    alice = principal_of(pki, "alice")
    jobs = {}
    for delegation_id, lifetime in (("live", 6 * 3600), ("short", 3600), ("gone-running", 6 * 3600),
                                    ("gone-waiting", 6 * 3600)):
        delegate_in_process(rt, alice, pki.users["alice"].proxy, delegation_id, lifetime=lifetime)
        jobs[delegation_id] = register_job(rt, alice, ECHO_JDL, delegation_id).job_id
    with rt.uow() as uow:
        job = uow.jobs.get(jobs["gone-running"])
        assert job is not None
        uow.jobs.set_state(job, JobState.RUNNING.value, utcnow())
    for delegation_id in ("gone-running", "gone-waiting"):
        destroy(rt, alice, delegation_id)
    now = utcnow()
    with rt.uow() as uow:
        assert expired_credentials(uow, now) == [(alice.dn, "gone-running")]
        later = now + dt.timedelta(hours=2)
        assert sorted(expired_credentials(uow, later)) == [(alice.dn, "gone-running"), (alice.dn, "short")]
