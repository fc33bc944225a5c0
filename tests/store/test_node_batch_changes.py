"""A worker cycle's batch of node changes (``mark_scheduled``, ``mark_running``, ``end_attempts``)
leaves what the same changes one job at a time leave (``set_state``, ``end_attempt``): the nodes'
and the compound job's rows and events, and the start requests of the dependents released; and
it costs the same statements whatever the number of nodes in the batch (the nodes' rows in the
batch's Core statements, each compound job refreshed once, the dependents read in one query:
issue 14, a node cost about three times a simple job's worker CPU). Both databases."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal
from wmproxy.services.execution import claim_next_start, mark_running, mark_scheduled, set_state
from wmproxy.services.retries import AttemptEnd, end_attempt, end_attempts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job

#: ``c`` waits for ``a``; ``d`` waits for ``a`` and ``b``; ``e`` waits for nothing.
DAG = """[ Type = "dag"; nodes = [
  a = [ Description = [ Executable = "/bin/true"; ]; ];
  b = [ Description = [ Executable = "/bin/true"; ]; ];
  c = [ Description = [ Executable = "/bin/true"; ]; ];
  d = [ Description = [ Executable = "/bin/true"; ]; ];
  e = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { a, c }, { a, d }, { b, d } };
]; ]"""

OK = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True)
FAILED = AttemptEnd(JobState.DONE, exit_code=3, payload_started=True)

Changes = Callable[[Runtime, dict[str, str], list[tuple[str, AttemptEnd]]], None]


def _started(rt: Runtime, alice: Principal, jdl: str) -> tuple[str, dict[str, str]]:
    """A compound job registered and started: its id and ``{node name: node id}``."""
    registered = register_job(rt, alice, jdl, DELEGATION)
    start_job(rt, alice, registered.job_id)
    return registered.job_id, {child.name or "": child.job_id for child in registered.children}


def _claim_all(rt: Runtime) -> set[str]:
    """Claim every start request that is due; the jobs claimed (the module's database may hold
    other tests' requests too)."""
    claimed = set()
    while (order := claim_next_start(rt, "w1")) is not None:
        claimed.add(order.job_id)
    return claimed


def _in_batches(rt: Runtime, nodes: dict[str, str], ends: list[tuple[str, AttemptEnd]]) -> None:
    refs = [(nodes[name], f"ref-{name}") for name, _end in ends]
    assert mark_scheduled(rt, refs) == {job_id for job_id, _ref in refs}
    mark_running(rt, refs)
    end_attempts(rt, [(nodes[name], end) for name, end in ends])


def _one_by_one(rt: Runtime, nodes: dict[str, str], ends: list[tuple[str, AttemptEnd]]) -> None:
    for name, _end in ends:
        assert set_state(rt, nodes[name], JobState.SCHEDULED, backend_ref=f"ref-{name}")
    for name, _end in ends:
        set_state(rt, nodes[name], JobState.RUNNING, backend_ref=f"ref-{name}")
    for name, end in ends:
        end_attempt(rt, nodes[name], end)


def _outcome(rt: Runtime, parent: str, nodes: dict[str, str]) -> dict[str, Any]:
    """What the changes left, with the job ids replaced by node names: each job's state,
    reason, exit code and backend reference, its events (not their times), its pending requests."""
    names = {job_id: name for name, job_id in nodes.items()} | {parent: "parent"}
    seen: dict[str, Any] = {}
    with rt.uow() as uow:
        for job_id, name in names.items():
            job = uow.jobs.get(job_id)
            assert job is not None
            events = [(e.state, e.reason, e.kind, e.source) for e in uow.jobs.events(job_id)]
            requests = [r.command for r in uow.queue.pending_for(job_id)]
            seen[name] = (job.state, job.reason, job.exit_code, job.backend_ref, events, requests)
    return seen


def _run(rt: Runtime, alice: Principal, changes: Changes) -> dict[str, Any]:
    """The DAG through two cycles of changes: a (succeeds), b (fails) and e (succeeds) together,
    then c, the dependent that a released; d is aborted by b's failure."""
    parent, nodes = _started(rt, alice, DAG)
    assert {nodes["a"], nodes["b"], nodes["e"]} <= _claim_all(rt)
    changes(rt, nodes, [("a", OK), ("b", FAILED), ("e", OK)])
    first = _outcome(rt, parent, nodes)
    assert nodes["c"] in _claim_all(rt)
    changes(rt, nodes, [("c", OK)])
    return {"first cycle": first, "second cycle": _outcome(rt, parent, nodes)}


def test_a_batch_of_node_changes_leaves_what_one_job_at_a_time_leaves(rt: Runtime, alice: Principal) -> None:
    one_by_one = _run(rt, alice, _one_by_one)
    assert one_by_one["first cycle"]["c"][5] == ["start"]  # released by a, claimed in the second cycle
    assert one_by_one["first cycle"]["d"][0] == JobState.ABORTED.value  # b failed
    assert one_by_one["second cycle"]["parent"][0] in {s.value for s in JobState}  # ended, as the nodes give
    assert _run(rt, alice, _in_batches) == one_by_one


def test_a_dependent_waiting_for_two_nodes_of_a_batch_is_released_once(rt: Runtime, alice: Principal) -> None:
    parent, nodes = _started(rt, alice, DAG)
    assert {nodes["a"], nodes["b"], nodes["e"]} <= _claim_all(rt)
    _in_batches(rt, nodes, [("b", OK), ("a", OK), ("e", OK)])
    seen = _outcome(rt, parent, nodes)
    assert seen["d"][5] == ["start"] and seen["c"][5] == ["start"]
    assert seen["parent"][0] == JobState.RUNNING.value


@contextlib.contextmanager
def _statements(rt: Runtime) -> Iterator[list[str]]:
    """The SQL statements sent on ``rt``'s engine inside the block."""
    sent: list[str] = []
    engine = rt.session_factory.kw["bind"]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _cycle_statements(rt: Runtime, alice: Principal, size: int) -> int:
    """Statements of a cycle's Scheduled, Running and Done for ``size`` nodes of one collection
    (all of them: the last end also ends the compound job)."""
    body = ", ".join('[ Executable = "/bin/true"; ]' for _ in range(size))
    parent, nodes = _started(rt, alice, f'[ Type = "collection"; Nodes = {{ {body} }}; ]')
    assert set(nodes.values()) <= _claim_all(rt)
    with _statements(rt) as sent:
        _in_batches(rt, nodes, [(name, OK) for name in nodes])
    with rt.uow() as uow:
        job = uow.jobs.get(parent)
        assert job is not None and job.state == JobState.DONE.value
    return len(sent)


def test_a_batch_of_nodes_costs_the_same_statements_whatever_its_size(rt: Runtime, alice: Principal) -> None:
    assert _cycle_statements(rt, alice, 8) == _cycle_statements(rt, alice, 2)
