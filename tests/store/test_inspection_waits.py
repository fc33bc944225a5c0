"""Live inspection's held waits (the job agent's long-poll, ``getInspectionResult``) end at once
when the service process begins to stop (``Runtime.stopping``, set by the gunicorn worker's
SIGTERM in ``wmproxy.soap.tls_worker``): a graceful stop no longer waits out a hold of up to
30 seconds. Both databases; the looks at the database are counted, no time is measured."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import wait_for
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
    """Count the calls of ``inspection.<name>`` (one per look at the database), each by the id of
    the thread that made it; the service begins to stop during call number ``stop_at``."""
    calls: list[int] = []
    original = getattr(inspection, name)

    def look(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.get_ident())
        if len(calls) == stop_at:
            rt.stopping.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(inspection, name, look)
    return calls


class TestAgentLongPoll:
    def test_a_held_poll_looks_until_its_deadline_while_the_service_runs(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        # ended by the service's stop during the third look, not by a short deadline (a look can
        # take longer than 0.6 s on a loaded machine)
        looks = counted(monkeypatch, "_agent_job", rt, stop_at=3)
        token = inspection.agent_token(rt.settings, running_job, attempt=0)
        assert inspection.agent_next(rt, alice, running_job, token, HOLD) is None
        assert len(looks) == 3  # looks with pauses between them until the stop

    @pytest.mark.parametrize("stop_at", [None, 1], ids=["stopping-before", "stopping-during"])
    def test_a_stopping_service_answers_the_poll_after_one_look(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch,
            stop_at: int | None) -> None:
        if stop_at is None:
            rt.stopping.set()
        looks = counted(monkeypatch, "_agent_job", rt, stop_at=stop_at)
        token = inspection.agent_token(rt.settings, running_job, attempt=0)
        assert inspection.agent_next(rt, alice, running_job, token, HOLD) is None  # the agent asks again
        assert len(looks) == 1

    def test_a_pending_request_is_still_handed_out_while_stopping(
            self, rt: Runtime, alice: Principal, running_job: str) -> None:
        request_id = inspection.ask(rt, alice, running_job, ["ps"])
        rt.stopping.set()
        token = inspection.agent_token(rt.settings, running_job, attempt=0)
        task = inspection.agent_next(rt, alice, running_job, token, HOLD)
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
        # the wait ends by the service's stop during the third look, not by a short deadline: one
        # look took longer than a 0.6 s deadline on a loaded machine (failed in CI)
        request_id = inspection.ask(rt, alice, running_job, ["ps"])
        looks = counted(monkeypatch, "_look", rt, stop_at=3)
        assert not inspection.result(rt, alice, request_id, HOLD).finished
        assert len(looks) == 3


@contextlib.contextmanager
def one_held(rt: Runtime, user: Principal, request_id: str) -> Iterator[threading.Thread]:
    """A thread holding ``user``'s wait for ``request_id`` (once held) until the service stops,
    at the block's end; then no wait is held."""
    held = threading.Thread(target=inspection.result, args=(rt, user, request_id, HOLD))
    held.start()
    try:
        wait_for(lambda: inspection.held_waits(rt).held, lambda n: n == 1, what="the first wait held")
        yield held
    finally:
        rt.stopping.set()
        held.join()
    assert inspection.held_waits(rt).held == 0


def with_threads(rt: Runtime, threads: int) -> Runtime:
    """The same store and key with ``[service] threads`` set (a process of that many request threads)."""
    service = dataclasses.replace(rt.settings.service, threads=threads)
    return dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, service=service))


class TestHeldWaitsLeaveAThreadFree:
    """Held waits (users' and agents') take at most ``threads - 1`` request threads of a process;
    one that finds no free slot answers after one look instead of holding its thread."""

    def test_the_shares(self) -> None:
        assert (inspection.HeldWaits(4).total, inspection.HeldWaits(4).agents) == (3, 2)
        assert (inspection.HeldWaits(2).total, inspection.HeldWaits(2).agents) == (1, 1)
        assert (inspection.HeldWaits(1).total, inspection.HeldWaits(1).agents) == (0, 0)

    def test_a_user_wait_beyond_the_free_threads_answers_at_once(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        two = with_threads(rt, 2)  # one thread may be held
        request_id = inspection.ask(two, alice, running_job, ["ps"])
        with one_held(two, alice, request_id) as held:
            looks = counted(monkeypatch, "_look", two)
            assert not inspection.result(two, alice, request_id, HOLD).finished
            # answered while the first still holds (whose own looks, each poll of its wait, count apart)
            assert looks.count(threading.get_ident()) == 1 and held.is_alive()
            token = inspection.agent_token(two.settings, running_job, attempt=0)
            assert inspection.agent_next(two, alice, running_job, token, 0.0) is not None  # no hold asked: served

    def test_one_user_holds_at_most_their_share_and_leaves_the_rest_to_the_others(self) -> None:
        """A user's waits had no share of their own: one DN waiting on as many results as a
        process had slots took them all, and every other user's wait answered at once."""
        waits = inspection.HeldWaits(4)  # 3 slots, one user's waits at most 1 of them
        assert waits.per_user == 1 and inspection.HeldWaits(8).per_user == 3 and inspection.HeldWaits(2).per_user == 1
        with (waits.hold(agent=False, dn="/CN=alice") as first, waits.hold(agent=False, dn="/CN=alice") as second,
              waits.hold(agent=False, dn="/CN=bob") as other, waits.hold(agent=True) as agent):
            assert (first, second, other, agent) == (True, False, True, True)
        with waits.hold(agent=False, dn="/CN=alice") as again:
            assert again  # given back
        assert waits.held == 0

    def test_a_users_second_wait_answers_at_once_while_the_first_holds(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        four = with_threads(rt, 4)  # three threads may be held, one of them by alice
        first = inspection.ask(four, alice, running_job, ["ps"])
        second = inspection.ask(four, alice, running_job, ["ls"])
        with one_held(four, alice, first) as held:
            looks = counted(monkeypatch, "_look", four)
            assert not inspection.result(four, alice, second, HOLD).finished
            assert looks.count(threading.get_ident()) == 1 and held.is_alive()  # one look, not held

    def test_a_runtime_gets_its_own_count_even_with_the_id_of_one_gone(self, rt: Runtime) -> None:
        """The counts were kept by ``id(rt)`` alone: a runtime of two threads that got the id of a
        gone one of four found its count, let a second wait hold, and the test above held both
        for 30 s (a CI failure: 237 looks where one was due)."""
        four = with_threads(rt, 4)
        two = with_threads(rt, 2)
        stale = inspection.held_waits(four)
        inspection._held_waits[id(two)] = inspection._held_waits.pop(id(four))  # as if two had four's id
        assert inspection.held_waits(two) is not stale
        assert inspection.held_waits(two).total == 1

    def test_one_thread_holds_no_wait(
            self, rt: Runtime, alice: Principal, running_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        one = with_threads(rt, 1)
        request_id = inspection.ask(one, alice, running_job, ["ps"])
        looks = counted(monkeypatch, "_look", one)
        assert not inspection.result(one, alice, request_id, HOLD).finished
        assert len(looks) == 1
