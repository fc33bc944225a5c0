"""A claim that fails with an error nothing expected (``_claim_guarded``), on each backend (SQLite
file and PostgreSQL): the claim's transaction rolls back whole, the job ends alone in one of its
own (through ``change_state``: a compound parent follows), the other jobs of the batch are
claimed, and when the abort fails too, the request is postponed rather than wedging the queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services import compound, jobs
from wmproxy.services.execution import CLAIM_FAILED, claim_next_start, claim_starts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

#: ``first`` (expired at once: its claim aborts it) → ``second``.
DAG = """[ Type = "dag";
nodes = [
  first = [ Description = [ Executable = "/bin/true"; ExpiryTime = 1; ]; ];
  second = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { first, second } };
];
]"""
SIMPLE = '[ Executable = "/bin/true"; ]'
FAILED = f"{CLAIM_FAILED} (RuntimeError)"


def failing_refresh(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> None:
    """``compound.refresh_parent`` raises a RuntimeError at the calls numbered ``failing`` (from 1):
    a bug below ``on_node_ended``, after the node's own end was written in the session."""
    real = compound.refresh_parent
    calls = [0]

    def refresh(*args: Any) -> None:
        calls[0] += 1
        if calls[0] in failing:
            raise RuntimeError("bug")
        real(*args)
    monkeypatch.setattr(compound, "refresh_parent", refresh)


def claim_both(rt: Runtime, how: str, now: dt.datetime) -> list[str]:
    if how == "claim_starts":
        return [order.job_id for order in claim_starts(rt, "w1", {"local": 2}, limit=2, now=now)]
    claimed = [claim_next_start(rt, "w1", now=now), claim_next_start(rt, "w1", now=now)]
    return [order.job_id for order in claimed if order is not None]



@pytest.mark.parametrize("how", ["claim_starts", "claim_next_start"])
def test_a_node_whose_claim_fails_mid_abort_ends_and_so_does_its_parent(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    dag = submit_job(rt, alice, DAG, DELEGATION)
    other = submit_job(rt, alice, SIMPLE, DELEGATION).job_id
    failing_refresh(monkeypatch, {1})
    assert claim_both(rt, how, utcnow()) == [other]
    monkeypatch.undo()
    status = jobs.job_status(rt, alice, dag.job_id)
    assert status.state == JobState.ABORTED.value
    assert [(c.state, c.reason) for c in status.children] == [
        ("Aborted", FAILED), ("Aborted", "dependency first did not end successfully")]
    assert jobs.job_status(rt, alice, other).state == JobState.READY.value
    with rt.uow() as uow:
        assert not any(uow.queue.pending_for(c.job_id) for c in dag.children)


@pytest.mark.parametrize("how", ["claim_starts", "claim_next_start"])
def test_a_second_unexpected_error_in_the_abort_postpones_the_request_and_the_queue_goes_on(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    dag = submit_job(rt, alice, DAG, DELEGATION)
    first = dag.children[0].job_id
    other = submit_job(rt, alice, SIMPLE, DELEGATION).job_id
    now = utcnow()
    failing_refresh(monkeypatch, {1, 2})
    assert claim_both(rt, how, now) == [other]
    monkeypatch.undo()
    status = jobs.job_status(rt, alice, dag.job_id)
    assert status.state == JobState.WAITING.value
    assert status.children[0].state == JobState.WAITING.value
    assert (status.children[0].reason or "").startswith(f"{FAILED}; its abort failed too")
    assert claim_next_start(rt, "w1", now=now) is None  # postponed: not due again at once
    retry = rt.settings.brokering.match_retry_period
    assert claim_next_start(rt, "w1", now=now + dt.timedelta(seconds=retry + 1)) is None  # expired: aborted
    status = jobs.job_status(rt, alice, dag.job_id)
    assert status.state == JobState.ABORTED.value
    assert [c.state for c in status.children] == ["Aborted", "Aborted"]
    with rt.uow() as uow:
        assert not uow.queue.pending_for(first)
