"""Cancels and failures of DAG nodes on each backend (SQLite file and PostgreSQL): a whole DAG
cancelled while a worker holds a node ends Cancelled once the node has ended (the compound
job's ``cancel_requested`` event is read in the node's own transaction), a never-started one
gives its areas' bytes back (cancelled whole or node by node), a running one stays Running while
a node is resubmitted, and the nodes below a failed node of a chain far longer than
Python's recursion limit are aborted (``SqlJobStore.descendants`` reads them level by level)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.store.conftest import DELEGATION
from tests.store.locking_support import lock_waiters
from tests.support import start_thread, wait_for
from tests.unit.services.compound_support import CANCELLED, CHAIN, COLLECTION, DAG, chain_dag, fill, node_ids, statuses
from wmproxy.domain import FINAL_STATES, JobState, Principal, utcnow
from wmproxy.errors import OperationNotAllowedError
from wmproxy.services import jobs, quota
from wmproxy.services.execution import claim_next_start, mark_running
from wmproxy.services.retries import AttemptEnd, end_attempt
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, submit_job


def claim(rt: Runtime, job_id: str) -> None:
    order = claim_next_start(rt, "w1")
    assert order is not None and order.job_id == job_id


def test_a_dag_cancelled_while_a_node_runs_ends_cancelled(rt: Runtime, alice: Principal) -> None:
    job = submit_job(rt, alice, DAG, DELEGATION)
    first = job.children[0].job_id
    claim(rt, first)
    jobs.cancel_job(rt, alice, job.job_id)
    with pytest.raises(OperationNotAllowedError, match="Cancel has already been requested"):
        jobs.cancel_job(rt, alice, job.job_id)
    assert end_attempt(rt, first, AttemptEnd(JobState.ABORTED, reason="killed")) == JobState.CANCELLED
    assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 3)


@pytest.mark.postgresql_only
def test_a_node_claimed_while_the_dag_is_cancelled_is_cancelled_by_its_worker_not_overwritten(
        rt: Runtime, alice: Principal) -> None:
    """A worker's claim holds the first node (Scheduled, not yet committed) when the whole DAG is
    cancelled: the cancel waits for the node's row and then asks the worker to cancel it. It
    read the node unlocked as Waiting and wrote it Cancelled over the claim, and the worker ran
    a node the service reported Cancelled."""
    job = submit_job(rt, alice, DAG, DELEGATION)
    first = job.children[0].job_id
    outcome: dict[str, object] = {}
    holder = sa.create_engine(rt.session_factory.kw["bind"].url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as claim_tx, holder.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            # what a claim writes, as its own statements do: the job held, its start request done
            claim_tx.execute(sa.text("UPDATE jobs SET state = 'Scheduled', worker = 'w1' WHERE id = :id"),
                             {"id": first})
            claim_tx.execute(sa.text("UPDATE execution_requests SET claimed_by = 'w1', done_at = now() "
                                     "WHERE job_id = :id AND command = 'start'"), {"id": first})
            thread = start_thread("cancel", lambda: jobs.cancel_job(rt, alice, job.job_id), outcome)
            wait_for(lambda: lock_waiters(watch), lambda n: n == 1, what="the cancel to wait for the node's row",
                     timeout=120)
            claim_tx.commit()
            thread.join(120)
            assert not thread.is_alive()
    finally:
        holder.dispose()
    assert outcome["cancel"] is None
    with rt.uow() as uow:
        node = uow.jobs.get(first)
        assert node is not None and node.state == JobState.SCHEDULED.value
        assert [r.command for r in uow.queue.pending_for(first)] == ["cancel"]
    assert end_attempt(rt, first, AttemptEnd(JobState.ABORTED, reason="killed")) == JobState.CANCELLED
    assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 3)


def test_a_registered_dag_cancelled_gives_its_bytes_back(rt: Runtime, alice: Principal) -> None:
    before = quota.used_bytes(rt, alice.dn)
    job = register_job(rt, alice, DAG, DELEGATION)
    fill(rt, job.job_id, 2500)  # a node has no input area of its own: its files go to the compound job's
    assert quota.used_bytes(rt, alice.dn) == before + 2500
    jobs.cancel_job(rt, alice, job.job_id)
    assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 3)
    assert quota.used_bytes(rt, alice.dn) == before
    assert not any(rt.storage.has_job_area(j) for j in (job.job_id, *(c.job_id for c in job.children)))


def test_a_registered_collection_whose_nodes_were_cancelled_one_by_one_ends_and_gives_its_bytes_back(
        rt: Runtime, alice: Principal) -> None:
    """It stayed Submitted, holding its areas and their bytes, and jobPurge refused it."""
    before = quota.used_bytes(rt, alice.dn)
    job = register_job(rt, alice, COLLECTION, DELEGATION)
    fill(rt, job.job_id, 2500)
    nodes = [child.job_id for child in job.children]
    jobs.cancel_job(rt, alice, nodes[0])
    assert statuses(rt, alice, job.job_id) == ("Submitted", [CANCELLED, "Submitted"])
    assert quota.used_bytes(rt, alice.dn) == before + 2500
    jobs.cancel_job(rt, alice, nodes[1])
    assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 2)
    assert quota.used_bytes(rt, alice.dn) == before
    assert not any(rt.storage.has_job_area(j) for j in (job.job_id, *nodes))
    jobs.purge_job(rt, alice, job.job_id)


def test_a_failing_first_node_of_a_long_chain_aborts_the_rest(rt: Runtime, alice: Principal) -> None:
    job = submit_job(rt, alice, chain_dag(CHAIN), DELEGATION)
    first = job.children[0].job_id
    claim(rt, first)
    assert end_attempt(rt, first, AttemptEnd(JobState.DONE, exit_code=1)) == JobState.DONE
    parent, nodes = statuses(rt, alice, job.job_id)
    assert parent == f"Aborted ({CHAIN} of {CHAIN} nodes did not end successfully)"
    assert nodes[-1] == f"Aborted (dependency n{CHAIN - 2:05d} did not end successfully)"
    assert claim_next_start(rt, "w1") is None


def test_the_end_of_a_held_node_after_a_whole_cancel_does_not_read_the_chain_below_it(
        rt: Runtime, alice: Principal) -> None:
    """The nodes below it have all ended (cancelled with the job): none is aborted, so the
    walk stops at the first, whatever the chain's length (it read one level per node)."""
    job = submit_job(rt, alice, chain_dag(300), DELEGATION)
    first = job.children[0].job_id
    claim(rt, first)
    jobs.cancel_job(rt, alice, job.job_id)
    engine = rt.session_factory.kw["bind"]
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert end_attempt(rt, first, AttemptEnd(JobState.CANCELLED)) == JobState.CANCELLED
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) < 60, len(statements)
    assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 300)


#: ``a`` → ``b``, each node resubmitted once after a failure.
RETRIED = """[ Type = "dag"; DefaultNodeRetryCount = 1;
nodes = [
  a = [ Description = [ Executable = "/bin/true"; ]; ];
  b = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { a, b } };
];
]"""


def run(rt: Runtime, job_id: str, end: AttemptEnd) -> JobState | None:
    """One attempt of ``job_id``: claimed, Running, ended with ``end``."""
    claim(rt, job_id)
    mark_running(rt, [(job_id, "ref")])
    return end_attempt(rt, job_id, end)


def test_a_running_dag_stays_running_while_a_node_is_resubmitted(rt: Runtime, alice: Principal) -> None:
    """The first node failed after its payload started and went back to Waiting: the compound
    job went back from Running to Waiting with it, and ran again."""
    job = submit_job(rt, alice, RETRIED, DELEGATION)
    a, b = (child.job_id for child in job.children)
    assert run(rt, a, AttemptEnd(JobState.ABORTED, reason="killed", payload_started=True)) == JobState.WAITING
    assert statuses(rt, alice, job.job_id) == ("Running", ["Waiting", "Waiting"])
    assert run(rt, a, AttemptEnd(JobState.DONE, exit_code=0)) == JobState.DONE
    assert run(rt, b, AttemptEnd(JobState.DONE, exit_code=0)) == JobState.DONE
    with rt.uow() as uow:
        states = [event.state for event in uow.jobs.history(job.job_id) if event.state is not None]
    assert states == ["Submitted", "Waiting", "Running", "Done"]


#: ``top`` → ``left`` → ``bottom`` and ``top`` → ``right`` → ``bottom``.
DIAMOND = """[ Type = "dag";
nodes = [
  top = [ Description = [ Executable = "/bin/true"; ]; ];
  left = [ Description = [ Executable = "/bin/true"; ]; ];
  right = [ Description = [ Executable = "/bin/true"; ]; ];
  bottom = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { top, left }, { top, right }, { left, bottom }, { right, bottom } };
];
]"""


def test_the_walk_below_a_node_reaches_a_node_of_two_parents_through_the_one_not_ended(
        rt: Runtime, alice: Principal) -> None:
    job = submit_job(rt, alice, DIAMOND, DELEGATION)
    ids = node_ids(rt, alice, job.job_id)
    final = tuple(state.value for state in FINAL_STATES)
    with rt.uow() as uow:
        left = uow.jobs.get(ids["left"])
        assert left is not None
        uow.jobs.set_state(left, JobState.DONE.value, utcnow(), exit_code=0)
        edges, nodes = uow.jobs.descendants(ids["top"], final)
        assert sorted(edges) == sorted([(ids["right"], ids["top"]), (ids["bottom"], ids["right"])])
        assert set(nodes) == {ids["right"], ids["bottom"]}
        right = nodes[ids["right"]]
        uow.jobs.set_state(right, JobState.CANCELLED.value, utcnow())
        edges, nodes = uow.jobs.descendants(ids["top"], final)
        assert (edges, nodes) == ([], {})
