"""Live inspection's held waits (the job agent's long-poll, ``getInspectionResult``) end at once
when the service process begins to stop (``Runtime.stopping``, set by the gunicorn worker's
SIGTERM in ``wmproxy.soap.tls_worker``): a graceful stop no longer waits out a hold of up to
30 seconds. Both databases; the looks at the database are counted, no time is measured."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from wmproxy.domain import JobState, Principal
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import Job

HOLD = 30.0  # seconds asked: the longest hold (inspection.MAX_WAIT)


@pytest.fixture
def running_job(rt: Runtime, alice: Principal) -> str:
    """A job marked Running (no worker: nothing here answers the agent's side)."""
    job_id = submit_job(rt, alice, '[ Executable = "/bin/true"; ]', "exec").job_id
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.RUNNING.value))
    return job_id


def counted(monkeypatch: pytest.MonkeyPatch, name: str, rt: Runtime, *, stop_at: int | None = None) -> list[int]:
    """Count the calls of ``inspection.<name>`` (one per look at the database); the service
    begins to stop during call number ``stop_at``."""
    calls: list[int] = []
    original = getattr(inspection, name)

    def look(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == stop_at:
            rt.stopping.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(inspection, name, look)
    return calls


class TestAgentLongPoll:
    def test_a_held_poll_looks_until_its_deadline_while_the_service_runs(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        looks = counted(monkeypatch, "_agent_job", rt)
        token = inspection.agent_token(rt.settings, running_job)
        assert inspection.agent_next(rt, alice, running_job, token, 0.6) is None
        assert len(looks) >= 2  # a look, a pause, a look at the deadline at least

    @pytest.mark.parametrize("stop_at", [None, 1], ids=["stopping-before", "stopping-during"])
    def test_a_stopping_service_answers_the_poll_after_one_look(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch,
            stop_at: int | None) -> None:
        if stop_at is None:
            rt.stopping.set()
        looks = counted(monkeypatch, "_agent_job", rt, stop_at=stop_at)
        token = inspection.agent_token(rt.settings, running_job)
        assert inspection.agent_next(rt, alice, running_job, token, HOLD) is None  # the agent asks again
        assert len(looks) == 1

    def test_a_pending_request_is_still_handed_out_while_stopping(
            self, rt: Runtime, alice: Principal, running_job: str) -> None:
        request_id = inspection.ask(rt, alice, running_job, ["ps"])
        rt.stopping.set()
        task = inspection.agent_next(rt, alice, running_job, inspection.agent_token(rt.settings, running_job), HOLD)
        assert task is not None and task.request_id == request_id and task.argv == ["ps"]


class TestResultWait:
    @pytest.mark.parametrize("stop_at", [None, 1], ids=["stopping-before", "stopping-during"])
    def test_a_stopping_service_gives_the_current_state_after_one_look(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch,
            stop_at: int | None) -> None:
        request_id = inspection.ask(rt, alice, running_job, ["ps"])
        if stop_at is None:
            rt.stopping.set()
        looks = counted(monkeypatch, "_look", rt, stop_at=stop_at)
        found = inspection.result(rt, alice, request_id, HOLD)
        assert not found.finished and len(looks) == 1  # the client asks again

    def test_the_wait_looks_until_its_deadline_while_the_service_runs(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        request_id = inspection.ask(rt, alice, running_job, ["ps"])
        looks = counted(monkeypatch, "_look", rt)
        assert not inspection.result(rt, alice, request_id, 0.6).finished
        assert len(looks) >= 2
