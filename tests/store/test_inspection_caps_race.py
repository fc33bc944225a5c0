"""``[inspection] max_requests_per_job`` and ``max_requests_per_user`` are exact under concurrent
asks (a red-team review, Low): the ask counted the kept requests and then inserted, so on
PostgreSQL asks at the same instant all passed the count below a cap and all got in. Now the
count and the insert run under transaction-scoped advisory locks (the job's, then the
requester's DN's). SQLite serialised writers already (``BEGIN IMMEDIATE``); both databases run.

Many threads released together (a barrier) ask against a cap: exactly the cap's number get
request ids, every other one the typed :class:`InspectionLimitError`, and the database keeps
exactly the cap's number of requests."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal
from wmproxy.errors import InspectionLimitError
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.inspections import InspectionRequest
from wmproxy.store.schema import Job

#: Asks released together: within the engine's pool (5 + 10 overflow), so none waits for a
#: connection, and enough that, unserialised, several pass the count before any inserts.
THREADS = 12
CAP = 3
ROUNDS = 3


def running(rt: Runtime, alice: Principal) -> str:
    """A job of alice marked Running (nothing answers the agent's side)."""
    job_id = submit_job(rt, alice, '[ Executable = "/bin/sleep"; Arguments = "600"; ]', DELEGATION).job_id
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.RUNNING.value))
    return job_id


def caps(rt: Runtime, **values: int) -> None:
    rt.settings = dataclasses.replace(rt.settings, inspection=dataclasses.replace(rt.settings.inspection,
                                                                                 **values))  # type: ignore[arg-type]


def race(asks: list[Callable[[], str]]) -> tuple[list[str], list[BaseException]]:
    """Run ``asks`` in threads released together; (request ids got, exceptions raised)."""
    barrier = threading.Barrier(len(asks))
    got: list[str] = []
    raised: list[BaseException] = []
    lock = threading.Lock()

    def run(ask: Callable[[], str]) -> None:
        barrier.wait()
        try:
            request_id = ask()
        except BaseException as exc:  # noqa: BLE001 - every outcome is asserted on
            with lock:
                raised.append(exc)
        else:
            with lock:
                got.append(request_id)

    threads = [threading.Thread(target=run, args=(ask,)) for ask in asks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got, raised


def kept(rt: Runtime, alice: Principal) -> int:
    with rt.uow() as uow:
        stmt = sa.select(sa.func.count()).select_from(InspectionRequest).where(
            InspectionRequest.requester_dn == alice.dn)
        return int(uow.session.scalar(stmt) or 0)


@pytest.fixture
def clean(rt: Runtime, alice: Principal) -> None:
    """No request of alice's kept from an earlier test (one database per module)."""
    with rt.uow() as uow:
        uow.session.execute(sa.delete(InspectionRequest))


def assert_exact(got: list[str], raised: list[BaseException], cap: int) -> None:
    assert [exc for exc in raised if not isinstance(exc, InspectionLimitError)] == []
    assert (len(got), len(raised)) == (cap, THREADS - cap)  # before: more than the cap got in


@pytest.mark.usefixtures("clean")
def test_concurrent_asks_of_one_job_stop_exactly_at_the_jobs_cap(rt: Runtime, alice: Principal) -> None:
    caps(rt, max_requests_per_job=CAP, max_requests_per_user=10_000)
    for _ in range(ROUNDS):
        job_id = running(rt, alice)
        got, raised = race([lambda job_id=job_id: inspection.ask(rt, alice, job_id, ["ls"])
                            for _ in range(THREADS)])
        assert_exact(got, raised, CAP)
        assert all("this job keeps" in str(exc) for exc in raised)
    assert kept(rt, alice) == CAP * ROUNDS


@pytest.mark.usefixtures("clean")
def test_concurrent_asks_of_many_jobs_stop_exactly_at_the_users_cap(rt: Runtime, alice: Principal) -> None:
    caps(rt, max_requests_per_job=10_000, max_requests_per_user=CAP)
    jobs = [running(rt, alice) for _ in range(THREADS)]  # one job each: only the DN's cap is shared
    for round_ in range(ROUNDS):
        if round_:
            with rt.uow() as uow:
                uow.session.execute(sa.delete(InspectionRequest))
        got, raised = race([lambda job_id=job_id: inspection.ask(rt, alice, job_id, ["ls"]) for job_id in jobs])
        assert_exact(got, raised, CAP)
        assert all("you keep" in str(exc) for exc in raised)
        assert kept(rt, alice) == CAP
