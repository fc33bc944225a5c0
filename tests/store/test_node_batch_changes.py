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

import pytest
from sqlalchemy import event

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal
from wmproxy.services.execution import claim_next_start, mark_running, mark_scheduled, set_state
from wmproxy.services.jobs import cancel_job
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

COLLECTION = '[ Type = "collection"; Nodes = { [ Executable = "/bin/true"; ], [ Executable = "/bin/true"; ] }; ]'

OK = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True)
FAILED = AttemptEnd(JobState.DONE, exit_code=3, payload_started=True)
WITH_OUTPUT = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, output_bytes=10)


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


class Steps:
    """A worker cycle's changes of jobs ``{name: job id}``, in batches (``batch``: what the worker
    does) or one job at a time (what the batch must leave)."""

    def __init__(self, rt: Runtime, batch: bool) -> None:
        self.rt = rt
        self.batch = batch
        self.ids: dict[str, str] = {}

    def scheduled(self, names: list[str]) -> None:
        refs = [(self.ids[name], f"ref-{name}") for name in names]
        if self.batch:
            assert mark_scheduled(self.rt, refs) == {job_id for job_id, _ref in refs}
        else:
            for job_id, ref in refs:
                assert set_state(self.rt, job_id, JobState.SCHEDULED, backend_ref=ref)

    def running(self, names: list[str]) -> None:
        refs = [(self.ids[name], f"ref-{name}") for name in names]
        if self.batch:
            mark_running(self.rt, refs)
        else:
            for job_id, ref in refs:
                set_state(self.rt, job_id, JobState.RUNNING, backend_ref=ref)

    def claimed_and_running(self, names: list[str]) -> None:
        """Claim the due start requests (``names``' among them), then record ``names`` Scheduled and Running."""
        assert {self.ids[name] for name in names} <= _claim_all(self.rt)
        self.scheduled(names)
        self.running(names)

    def ended(self, ends: list[tuple[str, AttemptEnd]]) -> list[JobState | None]:
        if self.batch:
            return end_attempts(self.rt, [(self.ids[name], end) for name, end in ends])
        return [end_attempt(self.rt, self.ids[name], end) for name, end in ends]


def _outcome(rt: Runtime, jobs: dict[str, str]) -> dict[str, Any]:
    """What the changes left of ``jobs`` (``{name: job id}``), by name: each job's state,
    reason, exit code and backend reference, its events (not their times), its pending requests."""
    seen: dict[str, Any] = {}
    with rt.uow() as uow:
        for name, job_id in jobs.items():
            job = uow.jobs.get(job_id)
            assert job is not None
            events = [(e.state, e.reason, e.kind, e.source) for e in uow.jobs.events(job_id)]
            requests = [r.command for r in uow.queue.pending_for(job_id)]
            seen[name] = (job.state, job.reason, job.exit_code, job.backend_ref, events, requests)
    return seen


def _compound(rt: Runtime, alice: Principal, steps: Steps, jdl: str, tag: str = "") -> dict[str, str]:
    """A compound job started, its nodes known to ``steps`` as ``<tag><node name>``; returns
    ``{"<tag>parent": its id, "<tag><node name>": node id...}``."""
    parent, nodes = _started(rt, alice, jdl)
    jobs = {f"{tag}parent": parent} | {f"{tag}{name}": job_id for name, job_id in nodes.items()}
    steps.ids.update(jobs)
    return jobs


def _two_cycles(rt: Runtime, alice: Principal, steps: Steps) -> list[Any]:
    """The DAG through two cycles: a (succeeds), b (fails) and e (succeeds) together, then c,
    the dependent that a released; d is aborted by b's failure."""
    jobs = _compound(rt, alice, steps, DAG)
    steps.claimed_and_running(["a", "b", "e"])
    steps.ended([("a", OK), ("b", FAILED), ("e", OK)])
    first = _outcome(rt, jobs)
    steps.claimed_and_running(["c"])
    steps.ended([("c", OK)])
    return [first, _outcome(rt, jobs)]


def _from_scheduled(rt: Runtime, alice: Principal, steps: Steps) -> list[Any]:
    """Two nodes end Done straight from Scheduled (adopted by a worker after one died before
    recording them Running): the compound job, still Waiting, goes through Running to Done."""
    jobs = _compound(rt, alice, steps, COLLECTION)
    names = [name for name in jobs if name != "parent"]
    assert {jobs[name] for name in names} <= _claim_all(rt)
    steps.scheduled(names)
    return [steps.ended([(name, OK) for name in names]), _outcome(rt, jobs)]


def _mixed(rt: Runtime, alice: Principal, steps: Steps) -> list[Any]:
    """Two compound jobs in one batch of ends: the DAG's d waits for a (Done, quick) and b (Done
    with output to count: node by node), e fails; a collection's two nodes succeed."""
    dag = _compound(rt, alice, steps, DAG)
    collection = _compound(rt, alice, steps, COLLECTION, "second-")
    names = ["a", "b", "e", *(name for name in collection if name != "second-parent")]
    steps.claimed_and_running(names)
    ended = steps.ended([("e", FAILED), ("b", WITH_OUTPUT), ("a", OK),
                         *((name, OK) for name in names[3:])])
    return [ended, _outcome(rt, dag), _outcome(rt, collection)]


def _cancelled(rt: Runtime, alice: Principal, steps: Steps) -> list[Any]:
    """The DAG cancelled as a whole while a, b and e run; their ends come Done."""
    jobs = _compound(rt, alice, steps, DAG)
    steps.claimed_and_running(["a", "b", "e"])
    cancel_job(rt, alice, jobs["parent"])
    return [steps.ended([("a", OK), ("b", OK), ("e", OK)]), _outcome(rt, jobs)]


def _twice(rt: Runtime, alice: Principal, steps: Steps) -> list[Any]:
    """One node's end given twice in one batch: recorded once."""
    jobs = _compound(rt, alice, steps, COLLECTION)
    names = [name for name in jobs if name != "parent"]
    steps.claimed_and_running(names)
    steps.ended([(names[0], OK), (names[0], OK)])
    return [_outcome(rt, jobs)]


@pytest.mark.parametrize("scenario", [_two_cycles, _from_scheduled, _mixed, _cancelled, _twice],
                         ids=lambda scenario: scenario.__name__.strip("_"))
def test_a_batch_of_node_changes_leaves_what_one_job_at_a_time_leaves(
        rt: Runtime, alice: Principal, scenario: Callable[[Runtime, Principal, Steps], list[Any]]) -> None:
    assert scenario(rt, alice, Steps(rt, batch=True)) == scenario(rt, alice, Steps(rt, batch=False))


def test_the_scenarios_change_what_they_say(rt: Runtime, alice: Principal) -> None:
    """The node-by-node outcomes the batch is compared with are those the scenarios describe."""
    first, second = _two_cycles(rt, alice, Steps(rt, batch=False))
    assert first["c"][5] == ["start"] and first["d"][0] == JobState.ABORTED.value
    assert second["parent"][0] == JobState.ABORTED.value  # a node failed, another was aborted
    _ended, scheduled = _from_scheduled(rt, alice, Steps(rt, batch=False))
    assert [event[0] for event in scheduled["parent"][4]] == ["Submitted", "Waiting", "Running", "Done"]
    _ended, dag, _collection = _mixed(rt, alice, Steps(rt, batch=False))
    assert dag["d"][5] == ["start"]  # released once a and b both succeeded
    (twice,) = _twice(rt, alice, Steps(rt, batch=False))
    ended = [seen for name, seen in twice.items() if name != "parent" and seen[0] == JobState.DONE.value]
    assert len(ended) == 1 and [event[0] for event in ended[0][4]].count("Done") == 1


def test_a_dependent_waiting_for_two_nodes_of_a_batch_is_released_once(rt: Runtime, alice: Principal) -> None:
    steps = Steps(rt, batch=True)
    jobs = _compound(rt, alice, steps, DAG)
    steps.claimed_and_running(["b", "a", "e"])
    steps.ended([("b", OK), ("a", OK), ("e", OK)])
    seen = _outcome(rt, jobs)
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
    steps = Steps(rt, batch=True)
    jobs = _compound(rt, alice, steps, f'[ Type = "collection"; Nodes = {{ {body} }}; ]')
    names = [name for name in jobs if name != "parent"]
    assert {jobs[name] for name in names} <= _claim_all(rt)
    with _statements(rt) as sent:
        steps.scheduled(names)
        steps.running(names)
        steps.ended([(name, OK) for name in names])
    with rt.uow() as uow:
        job = uow.jobs.get(jobs["parent"])
        assert job is not None and job.state == JobState.DONE.value
    return len(sent)


def test_a_batch_of_nodes_costs_the_same_statements_whatever_its_size(rt: Runtime, alice: Principal) -> None:
    assert _cycle_statements(rt, alice, 8) == _cycle_statements(rt, alice, 2)
