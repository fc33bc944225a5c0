"""jobSubmit's guarded write (issue 14): a simple job checked against the stored proxy the
process read last is written only if the store still holds that proxy (wmproxy.store.job_writes,
wmproxy.services.submission._submit_guarded); on both databases.

Each test first submits once, so that the process keeps the stored proxy, then changes the
store behind it, as another gunicorn worker or the renewal worker would: the next jobSubmit
must answer from the store, not from what was kept, and write nothing it refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import DELEGATION
from tests.support import ECHO_JDL, delegate_in_process
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import DelegationNotFoundError, ProxyExpiredError
from wmproxy.execution.wakeup import Wakeup
from wmproxy.jdl import parse_jdl
from wmproxy.services.delegation import destroy, recent_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.job_writes import job_writes

#: Seconds a listener may take to see the queue's notification (a loaded machine).
WOKEN_WITHIN = 60.0


def _counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.uow() as uow:
        return tuple(uow.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # type: ignore[return-value] # noqa: S608 - fixed names
                     for table in ("jobs", "job_events", "execution_requests"))


def test_the_second_submit_is_written_by_the_guarded_write_with_its_events_and_request(
        rt: Runtime, alice: Principal) -> None:
    first = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert recent_proxy(rt, alice.dn, DELEGATION) is not None  # kept by the first one's unit of work
    second = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    with rt.uow() as uow:
        jobs = {job_id: uow.jobs.get(job_id) for job_id in (first.job_id, second.job_id)}
        for job_id, job in jobs.items():
            assert job is not None and job.state == JobState.WAITING.value and job.owner_dn == alice.dn
            assert [event.state for event in uow.jobs.history(job_id)] == ["Submitted", "Waiting"]
            assert [request.command for request in uow.queue.pending_for(job_id)] == ["start"]
        ads = [parse_jdl(job.jdl_registered) for job in jobs.values()]  # type: ignore[union-attr]
        assert set(ads[0].keys()) == set(ads[1].keys())  # registered alike (edg_jobid, sandbox paths...)
        assert [ad["CertificateSubject"] for ad in ads] == [alice.dn, alice.dn]


def test_a_destroyed_delegation_refuses_the_next_submit_and_nothing_is_written(
        rt: Runtime, alice: Principal) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    destroy(rt, alice, DELEGATION)
    before = _counts(rt)
    with pytest.raises(DelegationNotFoundError):
        submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert _counts(rt) == before
    assert recent_proxy(rt, alice.dn, DELEGATION) is None


def test_a_replaced_proxy_is_the_one_checked(rt: Runtime, alice: Principal, pki: Pki) -> None:
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    # Another worker's putProxy: a proxy valid for 10 minutes, less than the 20 a job needs.
    delegate_in_process(rt, alice, pki.users["alice"].proxy, DELEGATION, lifetime=600)
    before = _counts(rt)
    with pytest.raises(ProxyExpiredError, match="less than 20 minutes left"):
        submit_job(rt, alice, ECHO_JDL, DELEGATION)
    assert _counts(rt) == before
    assert recent_proxy(rt, alice.dn, DELEGATION) is not kept


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
    before = _counts(rt)
    for owner, delegation_id, sealed in ((alice.dn, DELEGATION, kept.sealed_proxy + b"x"),
                                         (alice.dn, "other", kept.sealed_proxy),
                                         ("/CN=someone else", DELEGATION, kept.sealed_proxy)):
        assert not writes.insert_started(job("https://h:9000/refused0"), ("Submitted", "Waiting"), "start",
                                         owner_dn=owner, delegation_id=delegation_id, sealed_proxy=sealed)
    assert _counts(rt) == before
    assert writes.insert_started(job("https://h:9000/taken000"), ("Submitted", "Waiting"), "start",
                                 owner_dn=alice.dn, delegation_id=DELEGATION, sealed_proxy=kept.sealed_proxy)
    assert _counts(rt) == (before[0] + 1, before[1] + 2, before[2] + 1)


def test_a_refused_statement_writes_nothing(rt: Runtime, alice: Principal) -> None:
    job = submit_job(rt, alice, ECHO_JDL, DELEGATION)
    kept = recent_proxy(rt, alice.dn, DELEGATION)
    assert kept is not None
    now = utcnow()
    before = _counts(rt)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):  # the driver's own error
        job_writes(rt.session_factory).insert_started(
            {"id": job.job_id, "owner_dn": alice.dn, "delegation_id": DELEGATION, "state": "Waiting",
             "jdl_original": "[]", "jdl_registered": "[]", "sandbox_dir": "x/y", "created_at": now,
             "updated_at": now},
            ("Submitted", "Waiting"), "start", owner_dn=alice.dn, delegation_id=DELEGATION,
            sealed_proxy=kept.sealed_proxy)
    assert _counts(rt) == before
    submit_job(rt, alice, ECHO_JDL, DELEGATION)  # the pooled connection is usable again
    assert _counts(rt) == (before[0] + 1, before[1] + 2, before[2] + 1)


def test_the_guarded_write_wakes_the_listening_worker_on_postgresql(
        rt: Runtime, alice: Principal, database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no notification: its worker watches the database's directory")
    submit_job(rt, alice, ECHO_JDL, DELEGATION)
    waker = Wakeup(rt.session_factory.kw["bind"])
    try:
        waker.wait(0)  # opens the LISTEN connection
        assert waker.listening
        submit_job(rt, alice, ECHO_JDL, DELEGATION)  # the guarded write
        assert waker.wait(WOKEN_WITHIN), "the guarded write's start request did not wake the listener"
    finally:
        waker.close()
