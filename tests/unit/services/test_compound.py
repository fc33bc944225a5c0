"""Cancels of collections and DAGs (services/jobs.py ``cancel_job``, services/compound.py;
``wmproxy-behaviour.md`` §3.6, §9.5): a whole compound job ends Cancelled whatever the order of
its nodes, its areas go when it was never started, a node cancelled before jobStart stays
cancelled, and chains far longer than Python's recursion limit are cancelled and aborted."""

from __future__ import annotations

import pytest

from tests.support import ECHO_JDL
from tests.unit.services.compound_support import (
    CANCELLED,
    CHAIN,
    COLLECTION,
    DAG,
    REVERSED_DAG,
    chain_dag,
    fill,
    node_ids,
    pending,
    statuses,
)
from wmproxy.domain import JobState, Principal
from wmproxy.errors import OperationNotAllowedError
from wmproxy.services import jobs, quota
from wmproxy.services.execution import claim_next_start
from wmproxy.services.retries import AttemptEnd, end_attempt
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job, submit_job


def held_collection(rt: Runtime, alice: Principal, delegated: str) -> tuple[str, str, str]:
    """A two-node collection submitted and both nodes claimed by a worker: (job, node, node)."""
    job_id = submit_job(rt, alice, COLLECTION, delegated).job_id
    first, second = node_ids(rt, alice, job_id).values()
    for _ in range(2):
        assert claim_next_start(rt, "w1") is not None
    return job_id, first, second


class TestCancelOfTheWholeJob:
    @pytest.mark.parametrize("jdl", [DAG, REVERSED_DAG], ids=["dependency-first", "dependency-last"])
    def test_a_started_dag_ends_cancelled_whatever_the_order_of_its_nodes(
            self, rt: Runtime, alice: Principal, delegated: str, jdl: str) -> None:
        job_id = submit_job(rt, alice, jdl, delegated).job_id
        jobs.cancel_job(rt, alice, job_id)
        assert statuses(rt, alice, job_id) == (CANCELLED, [CANCELLED] * 3)
        for node_id in node_ids(rt, alice, job_id).values():
            assert pending(rt, node_id) == []  # the queued start went with the cancel

    def test_a_registered_dag_is_cancelled_and_its_areas_are_released(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = register_job(rt, alice, DAG, delegated)
        nodes = [c.job_id for c in job.children]
        fill(rt, job.job_id, 3700)  # a node has no input area of its own: its files go to the compound job's
        assert quota.used_bytes(rt, alice.dn) == 3700
        jobs.cancel_job(rt, alice, job.job_id)
        assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 3)
        assert not rt.storage.has_job_area(job.job_id)
        assert not any(rt.storage.has_job_area(node_id) for node_id in nodes)
        assert quota.used_bytes(rt, alice.dn) == 0
        with pytest.raises(OperationNotAllowedError, match="doesn't allow job cancel"):
            jobs.cancel_job(rt, alice, job.job_id)

    def test_a_held_node_is_stopped_and_the_job_ends_cancelled_when_it_has(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = submit_job(rt, alice, DAG, delegated).job_id
        names = node_ids(rt, alice, job_id)
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == names["first"]  # a worker holds first
        jobs.cancel_job(rt, alice, job_id)
        assert pending(rt, names["first"]) == ["cancel"]
        assert jobs.job_status(rt, alice, names["second"]).status == CANCELLED
        assert jobs.job_status(rt, alice, job_id).state in ("Waiting", "Running")  # until first has ended
        with pytest.raises(OperationNotAllowedError, match="Cancel has already been requested"):
            jobs.cancel_job(rt, alice, job_id)
        # the worker stops first; its end (even a failure) is a cancel: the job is Cancelled, not Aborted
        assert end_attempt(rt, names["first"], AttemptEnd(JobState.ABORTED, reason="killed")) == JobState.CANCELLED
        assert statuses(rt, alice, job_id) == (CANCELLED, [CANCELLED] * 3)

    def test_nodes_that_ended_before_do_not_make_it_aborted(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id, first, second = held_collection(rt, alice, delegated)
        assert end_attempt(rt, first, AttemptEnd(JobState.DONE, exit_code=0)) == JobState.DONE
        jobs.cancel_job(rt, alice, job_id)  # second is held: a cancel request
        assert end_attempt(rt, second, AttemptEnd(JobState.CANCELLED)) == JobState.CANCELLED
        assert statuses(rt, alice, job_id) == (CANCELLED, ["Done (Exit Code 0)", CANCELLED])

    def test_a_held_node_that_succeeded_before_its_cancel_leaves_the_job_done(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id, first, second = held_collection(rt, alice, delegated)
        jobs.cancel_job(rt, alice, job_id)
        for node_id in (first, second):  # both had ended Done before their workers saw the cancel
            end_attempt(rt, node_id, AttemptEnd(JobState.DONE, exit_code=0))
        assert statuses(rt, alice, job_id) == ("Done (Exit Code 0)", ["Done (Exit Code 0)"] * 2)


class TestCancelOfOneNode:
    def test_its_dag_dependents_are_aborted_and_the_job_ends_aborted(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = submit_job(rt, alice, DAG, delegated).job_id
        names = node_ids(rt, alice, job_id)
        jobs.cancel_job(rt, alice, names["first"])
        assert statuses(rt, alice, job_id) == ("Aborted (3 of 3 nodes did not end successfully)", [
            CANCELLED,
            "Aborted (dependency first did not end successfully)",
            "Aborted (dependency second did not end successfully)"])

    def test_a_node_cancelled_before_the_start_is_not_started(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = register_job(rt, alice, COLLECTION, delegated)
        first, second = (c.job_id for c in job.children)
        jobs.cancel_job(rt, alice, first)
        start_job(rt, alice, job.job_id)
        assert jobs.job_status(rt, alice, first).status == CANCELLED
        assert pending(rt, first) == []
        assert pending(rt, second) == ["start"]
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == second
        assert claim_next_start(rt, "w1") is None
        assert end_attempt(rt, second, AttemptEnd(JobState.DONE, exit_code=0)) == JobState.DONE
        assert statuses(rt, alice, job.job_id) == (
            "Done (Exit Code 1)", [CANCELLED, "Done (Exit Code 0)"])

    def test_a_never_started_dag_whose_descendants_it_aborted_ends_aborted_at_the_cancel(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = register_job(rt, alice, DAG, delegated)
        names = node_ids(rt, alice, job.job_id)
        jobs.cancel_job(rt, alice, names["first"])
        assert statuses(rt, alice, job.job_id) == ("Aborted (3 of 3 nodes did not end successfully)", [
            CANCELLED,
            "Aborted (dependency first did not end successfully)",
            "Aborted (dependency second did not end successfully)"])
        with pytest.raises(OperationNotAllowedError, match=r"job state \(ABORTED\) doesn't allow start"):
            start_job(rt, alice, job.job_id)
        assert all(pending(rt, node_id) == [] for node_id in names.values())
        assert claim_next_start(rt, "w1") is None
        jobs.purge_job(rt, alice, job.job_id)

    def test_a_never_started_job_whose_nodes_were_all_cancelled_ends_cancelled_at_the_last_cancel(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        """It stayed Submitted, could be neither purged nor cancelled, and held its areas."""
        job = register_job(rt, alice, COLLECTION, delegated)
        first, second = (c.job_id for c in job.children)
        jobs.cancel_job(rt, alice, first)
        assert statuses(rt, alice, job.job_id) == ("Submitted", [CANCELLED, "Submitted"])
        jobs.cancel_job(rt, alice, second)
        assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * 2)
        with pytest.raises(OperationNotAllowedError, match=r"job state \(CANCELLED\) doesn't allow start"):
            start_job(rt, alice, job.job_id)
        assert claim_next_start(rt, "w1") is None
        jobs.purge_job(rt, alice, job.job_id)
        assert jobs.job_status(rt, alice, job.job_id).status.startswith("Cleared")

    def test_a_simple_jobs_cancel_is_unchanged(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        jobs.cancel_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).status == CANCELLED
        assert not rt.storage.has_job_area(job_id)


class TestLongChains:
    """A linear DAG of :data:`CHAIN` nodes: each end walks the whole chain below it."""

    def test_cancel_of_its_first_node_aborts_the_rest(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = submit_job(rt, alice, chain_dag(CHAIN), delegated)
        jobs.cancel_job(rt, alice, job.children[0].job_id)
        parent, nodes = statuses(rt, alice, job.job_id)
        assert parent == f"Aborted ({CHAIN} of {CHAIN} nodes did not end successfully)"
        assert nodes[0] == CANCELLED
        assert nodes[-1] == f"Aborted (dependency n{CHAIN - 2:05d} did not end successfully)"

    def test_a_failing_first_node_aborts_the_rest(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = submit_job(rt, alice, chain_dag(CHAIN), delegated)
        first = job.children[0].job_id
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == first
        assert end_attempt(rt, first, AttemptEnd(JobState.DONE, exit_code=1)) == JobState.DONE
        parent, nodes = statuses(rt, alice, job.job_id)
        assert parent == f"Aborted ({CHAIN} of {CHAIN} nodes did not end successfully)"
        assert nodes[0] == "Done (Exit Code 1)"
        assert set(nodes[1:]) == {f"Aborted (dependency n{i:05d} did not end successfully)" for i in range(CHAIN - 1)}

    def test_cancel_of_the_whole_chain(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = submit_job(rt, alice, chain_dag(CHAIN), delegated)
        jobs.cancel_job(rt, alice, job.job_id)
        assert statuses(rt, alice, job.job_id) == (CANCELLED, [CANCELLED] * CHAIN)
