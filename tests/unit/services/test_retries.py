"""How attempts end (services/retries.py): shallow and deep resubmissions with their events and
counters, the reference's "hit job (shallow) retry count (N)" wording, the site caps, a payload's
own exit code, cancels, and DAG/collection nodes with DefaultNode(Shallow)RetryCount."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import classad2
import pytest

from tests.unit.services.conftest import DELEGATION
from wmproxy.config import BrokeringSettings
from wmproxy.domain import JobState, Principal
from wmproxy.jdl import parse_jdl
from wmproxy.services import jobs, quota
from wmproxy.services.execution import StartOrder, claim_next_start
from wmproxy.services.retries import AttemptEnd, end_attempt, end_attempts, verdict
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

PROLOGUE_FAILED = "Job Wrapper error: the prologue failed (exit code 1)"
EPILOGUE_FAILED = "epilogue failed with exit code 1"
SHALLOW = AttemptEnd(JobState.ABORTED, reason=PROLOGUE_FAILED, payload_started=False)
DEEP = AttemptEnd(JobState.ABORTED, exit_code=0, reason=EPILOGUE_FAILED, payload_started=True)
RankedRuntime = Callable[..., Runtime]


def submit(rt: Runtime, alice: Principal, extra: str) -> str:
    return submit_job(rt, alice, f'[ Executable = "/bin/hostname"; {extra} ]', DELEGATION).job_id


def claimed(rt: Runtime, job_id: str) -> StartOrder:
    order = claim_next_start(rt, "w1")
    assert order is not None and order.job_id == job_id
    return order


def row(rt: Runtime, job_id: str) -> tuple[str, str | None, int | None, int, int]:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state, job.reason, job.exit_code, job.shallow_retries, job.deep_retries


def resubmissions(rt: Runtime, job_id: str) -> list[str | None]:
    with rt.uow() as uow:
        return [e.reason for e in uow.jobs.events(job_id) if e.state == "Waiting" and e.reason]


def fail_until_final(rt: Runtime, job_id: str, end: AttemptEnd, limit: int = 20) -> list[int]:
    """Claim the job and end each attempt with ``end`` until it ends; the attempts' numbers."""
    attempts = []
    for _ in range(limit):
        attempts.append(claimed(rt, job_id).attempt)
        if end_attempt(rt, job_id, end) != JobState.WAITING:
            return attempts
    raise AssertionError("the job never ended")


class TestShallowAndDeep:
    @pytest.mark.parametrize(("extra", "end", "final", "counts"), [
        ('ShallowRetryCount = 2; Prologue = "/bin/false";', SHALLOW, "hit job shallow retry count (2)", (2, 0)),
        ('RetryCount = 2; Epilogue = "/bin/false";', DEEP, "hit job retry count (2)", (0, 2)),
    ])
    def test_failures_are_resubmitted_up_to_the_jobs_retry_count(
        self, broker_rt: RankedRuntime, alice: Principal, extra: str, end: AttemptEnd, final: str,
        counts: tuple[int, int]
    ) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, extra)
        assert fail_until_final(rt, job_id, end) == [0, 1, 2]
        assert row(rt, job_id) == ("Aborted", final, None, *counts)
        kind = "deep" if end.payload_started else "shallow"
        assert resubmissions(rt, job_id) == [
            f"{kind} resubmission 1 of 2 (attempt 2): {end.reason}",
            f"{kind} resubmission 2 of 2 (attempt 3): {end.reason}",
        ]
        assert jobs.job_status(rt, alice, job_id).status == f"Aborted ({final})"

    def test_the_two_counts_are_separate(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 1; ShallowRetryCount = 1;")
        claimed(rt, job_id)
        assert end_attempt(rt, job_id, SHALLOW) == JobState.WAITING
        assert claimed(rt, job_id).attempt == 1
        assert end_attempt(rt, job_id, DEEP) == JobState.WAITING
        assert claimed(rt, job_id).attempt == 2
        assert end_attempt(rt, job_id, DEEP) == JobState.ABORTED
        assert row(rt, job_id) == ("Aborted", "hit job retry count (1)", None, 1, 1)
        assert resubmissions(rt, job_id)[1] == f"deep resubmission 1 of 1 (attempt 3): {EPILOGUE_FAILED}"

    def test_a_resubmitted_job_is_matched_again_with_a_new_start_request(self, broker_rt: RankedRuntime,
                                                                        alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "ShallowRetryCount = 1;")
        claimed(rt, job_id)
        end_attempt(rt, job_id, SHALLOW)
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and (job.worker, job.backend_ref) == (None, None)
            assert [r.command for r in uow.queue.pending_for(job_id)] == ["start"]
        claimed(rt, job_id)
        with rt.uow() as uow:
            assert [e.state for e in uow.jobs.events(job_id)][-3:] == ["Ready", "Waiting", "Ready"]

    @pytest.mark.parametrize(("extra", "end", "expected"), [
        ("", SHALLOW, PROLOGUE_FAILED),
        ("RetryCount = 0; ShallowRetryCount = 3;", DEEP, EPILOGUE_FAILED),
    ])
    def test_without_retry_counts_a_failure_aborts_with_its_own_reason(
        self, broker_rt: RankedRuntime, alice: Principal, extra: str, end: AttemptEnd, expected: str
    ) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, extra)
        claimed(rt, job_id)
        assert end_attempt(rt, job_id, end) == JobState.ABORTED
        assert row(rt, job_id)[:4] == ("Aborted", expected, None, 0)

    def test_shallow_retry_count_minus_one_makes_shallow_failures_deep(self, broker_rt: RankedRuntime,
                                                                       alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "ShallowRetryCount = -1; RetryCount = 1;")
        claimed(rt, job_id)
        assert end_attempt(rt, job_id, SHALLOW) == JobState.WAITING
        assert row(rt, job_id)[3:] == (0, 1)


class TestNotRetried:
    def test_the_payloads_own_exit_code_is_done_and_never_retried(self, broker_rt: RankedRuntime,
                                                                  alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3; ShallowRetryCount = 3;")
        claimed(rt, job_id)
        assert end_attempt(rt, job_id, AttemptEnd(JobState.DONE, exit_code=3, payload_started=True)) == JobState.DONE
        assert row(rt, job_id) == ("Done", None, 3, 0, 0)
        assert jobs.job_status(rt, alice, job_id).status == "Done (Exit Code 3)"
        assert claim_next_start(rt, "w1") is None

    def test_a_cancelled_job_is_never_retried(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3;")
        claimed(rt, job_id)
        assert end_attempt(rt, job_id, AttemptEnd(JobState.CANCELLED, payload_started=True)) == JobState.CANCELLED
        assert row(rt, job_id)[:2] == ("Cancelled", "Cancelled by user")

    def test_a_failure_while_a_cancel_is_pending_ends_cancelled(self, broker_rt: RankedRuntime,
                                                                alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3; ShallowRetryCount = 3;")
        claimed(rt, job_id)
        jobs.cancel_job(rt, alice, job_id)  # the job is Ready: its worker gets a cancel request
        assert end_attempt(rt, job_id, DEEP) == JobState.CANCELLED
        assert row(rt, job_id)[:2] == ("Cancelled", "Cancelled by user")
        with rt.uow() as uow:
            assert uow.queue.pending_for(job_id) == []

    def test_ends_recorded_together_see_each_jobs_own_pending_cancel(self, broker_rt: RankedRuntime,
                                                                      alice: Principal) -> None:
        rt = broker_rt()
        cancelled, failed, done = (submit(rt, alice, "RetryCount = 3; ShallowRetryCount = 3;") for _ in range(3))
        for job_id in (cancelled, failed, done):
            claimed(rt, job_id)
        jobs.cancel_job(rt, alice, cancelled)  # its worker gets a cancel request; the others do not
        ok = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True)
        assert end_attempts(rt, [(cancelled, DEEP), (failed, DEEP), (done, ok)]) == [
            JobState.CANCELLED, JobState.WAITING, JobState.DONE]
        assert row(rt, cancelled)[:2] == ("Cancelled", "Cancelled by user")
        assert row(rt, failed)[4] == 1  # resubmitted (deep)
        with rt.uow() as uow:
            assert [r.command for r in uow.queue.pending_for(cancelled)] == []  # the cancel was completed
            assert [r.command for r in uow.queue.pending_for(failed)] == ["start"]

    def test_an_abort_that_is_not_retryable_ends_the_job(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3;")
        claimed(rt, job_id)
        end = AttemptEnd(JobState.ABORTED, reason="cancelled by the administrator", payload_started=True,
                         retryable=False)
        assert end_attempt(rt, job_id, end) == JobState.ABORTED
        assert row(rt, job_id)[:2] == ("Aborted", "cancelled by the administrator")

    def test_an_ended_job_is_left_alone(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3;")
        claimed(rt, job_id)
        end_attempt(rt, job_id, AttemptEnd(JobState.DONE, exit_code=0, payload_started=True))
        assert end_attempt(rt, job_id, DEEP) is None
        assert row(rt, job_id)[0] == "Done"

    def test_an_attempts_end_recorded_again_after_its_resubmission_is_ignored(
        self, broker_rt: RankedRuntime, alice: Principal
    ) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3;")
        first = dataclasses.replace(DEEP, attempt=claimed(rt, job_id).attempt)
        assert end_attempt(rt, job_id, first) == JobState.WAITING
        assert end_attempt(rt, job_id, first) is None  # a worker that did not learn the first went through
        assert row(rt, job_id)[::4] == ("Waiting", 1)
        second = dataclasses.replace(DEEP, attempt=claimed(rt, job_id).attempt)
        assert (first.attempt, second.attempt) == (0, 1)
        assert end_attempt(rt, job_id, second) == JobState.WAITING
        assert row(rt, job_id)[::4] == ("Waiting", 2)

    def test_a_done_end_recorded_again_or_after_the_purge_counts_its_outputs_once(self, broker_rt: RankedRuntime,
                                                               alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "RetryCount = 3;")
        output = rt.storage.create_job_area(job_id) / "output"  # jobSubmit made none: the worker makes it
        output.mkdir(mode=0o700)
        (output / "out").write_bytes(b"x" * 1000)  # as the worker collected it
        done = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, output_bytes=1000,
                          attempt=claimed(rt, job_id).attempt)
        assert end_attempt(rt, job_id, done) == JobState.DONE
        assert quota.used_bytes(rt, alice.dn) == 1000
        # the worker did not learn that the first commit went through: the same end again, alone
        # and among a cycle's ends (whose quick Done path leaves ends with outputs to _end_in)
        assert end_attempt(rt, job_id, done) is None
        assert end_attempts(rt, [(job_id, done)]) == [None]
        assert end_attempt(rt, job_id, dataclasses.replace(done, attempt=None)) is None
        assert quota.used_bytes(rt, alice.dn) == 1000
        assert row(rt, job_id)[:3] == ("Done", None, 0)
        jobs.purge_job(rt, alice, job_id)  # its area and what it counted are gone
        assert quota.used_bytes(rt, alice.dn) == 0
        assert end_attempt(rt, job_id, done) is None  # e.g. from a journal taken days later
        assert quota.used_bytes(rt, alice.dn) == 0 and row(rt, job_id)[0] == "Cleared"


class TestSiteCaps:
    def test_the_sites_max_retry_count_caps_the_jobs(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(max_retry_count=1)
        job_id = submit(rt, alice, "RetryCount = 5;")
        assert fail_until_final(rt, job_id, DEEP) == [0, 1]
        assert row(rt, job_id)[:2] == ("Aborted", "hit max retry count (1)")
        assert resubmissions(rt, job_id) == [f"deep resubmission 1 of 1 (attempt 2): {EPILOGUE_FAILED}"]

    def test_the_sites_max_shallow_retry_count_caps_the_jobs(self, broker_rt: RankedRuntime,
                                                             alice: Principal) -> None:
        rt = broker_rt(max_shallow_retry_count=2)
        job_id = submit(rt, alice, "ShallowRetryCount = 9;")
        assert fail_until_final(rt, job_id, SHALLOW) == [0, 1, 2]
        assert row(rt, job_id)[:2] == ("Aborted", "hit max shallow retry count (2)")

    @pytest.mark.parametrize(("jdl", "started", "done", "expected"), [
        ("[ RetryCount = 2 ]", True, (0, 2), (False, "hit job retry count (2)")),
        ("[ RetryCount = 2 ]", True, (5, 1), (True, "deep resubmission 2 of 2 (attempt 8): x")),
        ("[ RetryCount = 20 ]", True, (0, 10), (False, "hit max retry count (10)")),
        ('[ RetryCount = "3" ]', True, (0, 0), (False, "x")),  # registered before registration refused it
        ("[ RetryCount = undefined ]", True, (0, 0), (False, "x")),  # classad2's int 2: no resubmission
        ("[ RetryCount = error ]", True, (0, 0), (False, "x")),  # the int 1
        ("[ ShallowRetryCount = undefined ]", False, (0, 0), (False, "x")),
        ("[ ShallowRetryCount = 1 ]", False, (0, 0), (True, "shallow resubmission 1 of 1 (attempt 2): x")),
        ("[ ShallowRetryCount = 1 ]", False, (1, 0), (False, "hit job shallow retry count (1)")),
    ])
    def test_verdicts(self, jdl: str, started: bool, done: tuple[int, int], expected: tuple[bool, str]) -> None:
        _, decision = verdict(classad2.ClassAd(jdl), started, *done, "x", BrokeringSettings())
        assert (decision.resubmit, decision.reason) == expected


class TestNodes:
    COLLECTION = """[ Type = "collection"; DefaultNodeShallowRetryCount = 1; DefaultNodeRetryCount = 2;
      Nodes = { [ Executable = "/bin/hostname"; Prologue = "/bin/false"; ],
                [ Executable = "/bin/hostname"; RetryCount = 0; ] }; ]"""

    def test_node_defaults_are_in_each_nodes_registered_jdl_and_drive_its_retries(
        self, broker_rt: RankedRuntime, alice: Principal
    ) -> None:
        rt = broker_rt()
        parent = submit_job(rt, alice, self.COLLECTION, DELEGATION)
        first, second = (child.job_id for child in parent.children)
        with rt.uow() as uow:
            ads = {node: parse_jdl(uow.jobs.get(node).jdl_registered) for node in (first, second)}  # type: ignore[union-attr]
        assert (ads[first]["ShallowRetryCount"], ads[first]["RetryCount"]) == (1, 2)
        assert (ads[second]["ShallowRetryCount"], ads[second]["RetryCount"]) == (1, 0)
        orders = [claim_next_start(rt, "w1"), claim_next_start(rt, "w1")]
        assert {o.job_id for o in orders if o is not None} == {first, second}
        assert end_attempt(rt, first, SHALLOW) == JobState.WAITING
        assert end_attempt(rt, second, DEEP) == JobState.ABORTED  # its own RetryCount = 0
        assert jobs.job_status(rt, alice, parent.job_id).state == "Running"
        claimed(rt, first)
        assert end_attempt(rt, first, SHALLOW) == JobState.ABORTED
        assert row(rt, first)[:2] == ("Aborted", "hit job shallow retry count (1)")
        status = jobs.job_status(rt, alice, parent.job_id)
        assert status.status == "Aborted (2 of 2 nodes did not end successfully)"
