"""State rules of getJobStatus, getJDL, jobCancel and jobPurge (services/jobs.py; §1.3, §3.6, §4.7, §10)."""

from __future__ import annotations

import pytest

from tests.support import ECHO_JDL
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import (
    InvalidArgumentError,
    JobNotFoundError,
    OperationNotAllowedError,
)
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job


@pytest.fixture
def job_id(rt: Runtime, alice: Principal, delegated: str) -> str:
    return register_job(rt, alice, ECHO_JDL, delegated).job_id


def set_state(rt: Runtime, job_id: str, state: JobState, **kwargs: object) -> None:
    """Move the job as the execution worker would (through the store)."""
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, state.value, utcnow(), **kwargs)  # type: ignore[arg-type]


def pending_commands(rt: Runtime, job_id: str) -> list[str]:
    with rt.uow() as uow:
        return [r.command for r in uow.queue.pending_for(job_id)]


class TestStatusAndJdl:
    def test_registered_job_is_submitted(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        status = jobs.job_status(rt, alice, job_id)
        assert (status.job_id, status.status, status.state, status.children) == (job_id, "Submitted", "Submitted", ())

    def test_status_text_of_ended_jobs(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        set_state(rt, job_id, JobState.DONE, exit_code=3)
        status = jobs.job_status(rt, alice, job_id)
        assert (status.status, status.exit_code) == ("Done (Exit Code 3)", 3)
        set_state(rt, job_id, JobState.ABORTED, reason="no CE")
        assert jobs.job_status(rt, alice, job_id).status == "Aborted (no CE)"

    def test_original_jdl_is_what_the_user_sent(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        original = jobs.get_jdl(rt, alice, job_id, "ORIGINAL")
        assert '"/bin/echo"' in original and '"hello grid"' in original
        assert job_id not in original

    def test_registered_jdl_names_the_job(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        assert job_id in jobs.get_jdl(rt, alice, job_id, "REGISTERED")

    @pytest.mark.parametrize("kind", ["", "original", "PARTIAL"])
    def test_unknown_jdl_kind(self, rt: Runtime, alice: Principal, job_id: str, kind: str) -> None:
        with pytest.raises(InvalidArgumentError, match="JDL type") as err:
            jobs.get_jdl(rt, alice, job_id, kind)
        assert err.value.code == 1225


class TestCancel:
    def test_registered_job_is_cancelled_at_once_and_its_area_removed(self, rt: Runtime, alice: Principal,
                                                                      job_id: str) -> None:
        assert rt.storage.has_job_area(job_id)
        jobs.cancel_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).status == "Cancelled (Cancelled by user)"
        assert not rt.storage.has_job_area(job_id)

    def test_waiting_job_is_cancelled_before_a_worker_takes_it(self, rt: Runtime, alice: Principal,
                                                               job_id: str) -> None:
        start_job(rt, alice, job_id)
        assert pending_commands(rt, job_id) == ["start"]
        jobs.cancel_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Cancelled"
        assert pending_commands(rt, job_id) == []

    def test_running_job_gets_a_cancel_request_for_its_worker(self, rt: Runtime, alice: Principal,
                                                              job_id: str) -> None:
        set_state(rt, job_id, JobState.RUNNING)
        jobs.cancel_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Running"  # until the worker has stopped it
        assert pending_commands(rt, job_id) == ["cancel"]
        with pytest.raises(OperationNotAllowedError, match="Cancel has already been requested"):
            jobs.cancel_job(rt, alice, job_id)
        assert pending_commands(rt, job_id) == ["cancel"]

    @pytest.mark.parametrize("state", [JobState.DONE, JobState.ABORTED, JobState.CANCELLED])
    def test_ended_job_cannot_be_cancelled(self, rt: Runtime, alice: Principal, job_id: str,
                                           state: JobState) -> None:
        set_state(rt, job_id, state)
        with pytest.raises(OperationNotAllowedError, match=f"job status \\({state.value.upper()}\\)") as err:
            jobs.cancel_job(rt, alice, job_id)
        assert err.value.code == 1226


class TestPurge:
    @pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.WAITING, JobState.RUNNING])
    def test_only_ended_jobs_are_purged(self, rt: Runtime, alice: Principal, job_id: str, state: JobState) -> None:
        set_state(rt, job_id, state)
        with pytest.raises(OperationNotAllowedError, match="doesn't allow purge operation"):
            jobs.purge_job(rt, alice, job_id)
        assert rt.storage.has_job_area(job_id)

    def test_purged_job_is_cleared_and_then_unknown(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        set_state(rt, job_id, JobState.DONE, exit_code=0)
        jobs.purge_job(rt, alice, job_id)
        assert not rt.storage.has_job_area(job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Cleared"
        for call in (lambda: jobs.get_jdl(rt, alice, job_id, "ORIGINAL"), lambda: jobs.purge_job(rt, alice, job_id),
                     lambda: jobs.cancel_job(rt, alice, job_id)):
            with pytest.raises(JobNotFoundError):
                call()


class TestOutputFiles:
    def test_only_after_the_job_ended(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        with pytest.raises(OperationNotAllowedError, match="getOutputFileList"):
            jobs.output_files(rt, alice, job_id, None)

    def test_lists_the_output_area_with_sizes(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        (rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output") / "std.out").write_bytes(b"hello grid\n")
        set_state(rt, job_id, JobState.DONE, exit_code=0)
        [(uri, size)] = jobs.output_files(rt, alice, job_id, "https")
        assert uri.startswith("https://localhost:7443/SandboxDir/") and uri.endswith("/output/std.out")
        assert size == 11
