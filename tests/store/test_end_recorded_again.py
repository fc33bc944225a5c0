"""An attempt's end recorded a second time adds its output bytes to the owner's usage counter once,
whatever the end: the worker records an end again when it does not know whether the first
commit went through (the ends journal taken over after a worker died between the commit and
the journal's removal, or one by one after a batch commit whose outcome was lost). Only a Done
end was skipped before: an Aborted or Cancelled one counted its bytes twice. A job aborted for
proxy expiry while running (it stays Aborted, a ``cancel`` request pending until its end) still
counts the output its worker collected when stopping it, once. Both databases."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services import quota
from wmproxy.services.execution import claim_next_start, mark_running
from wmproxy.services.renewal import abort_expired_credential
from wmproxy.services.renewal.expiry import PROXY_EXPIRED_REASON
from wmproxy.services.retries import AttemptEnd, end_attempt, end_attempts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

JDL = '[ Executable = "/bin/true"; OutputSandbox = {"out"}; ]'
OUTPUT = 1000


def _running_with_output(rt: Runtime, alice: Principal) -> tuple[str, int]:
    """A job claimed and Running, its worker's collected output (:data:`OUTPUT` bytes) in its
    area; with its attempt's number."""
    job_id = submit_job(rt, alice, JDL, DELEGATION).job_id
    order = claim_next_start(rt, "w1")
    assert order is not None and order.job_id == job_id
    mark_running(rt, [(job_id, f"local:{job_id}")])
    output = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output")
    (output / "out").write_bytes(b"x" * OUTPUT)  # as the worker collected it
    return job_id, order.attempt


def _state(rt: Runtime, job_id: str) -> tuple[str, str | None, list[str]]:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state, job.reason, [r.command for r in uow.queue.pending_for(job_id)]


@pytest.mark.parametrize("state", [JobState.ABORTED, JobState.CANCELLED], ids=["aborted", "cancelled"])
def test_an_end_recorded_again_counts_its_outputs_once(rt: Runtime, alice: Principal, state: JobState) -> None:
    job_id, attempt = _running_with_output(rt, alice)
    before = quota.used_bytes(rt, alice.dn)
    end = AttemptEnd(state, reason="stopped", retryable=False, output_bytes=OUTPUT, attempt=attempt)
    assert end_attempt(rt, job_id, end) == state
    assert quota.used_bytes(rt, alice.dn) == before + OUTPUT
    assert end_attempt(rt, job_id, end) is None  # the journal taken over
    assert end_attempts(rt, [(job_id, end)]) == [None]  # among a cycle's ends
    assert quota.used_bytes(rt, alice.dn) == before + OUTPUT
    assert _state(rt, job_id)[::2] == (state.value, [])


def test_a_job_aborted_for_proxy_expiry_while_running_counts_its_outputs_once(rt: Runtime,
                                                                               alice: Principal) -> None:
    job_id, attempt = _running_with_output(rt, alice)
    before = quota.used_bytes(rt, alice.dn)
    later = utcnow() + dt.timedelta(days=3650)  # the delegation and the job's own copy have ended
    with rt.uow() as uow:
        assert job_id in abort_expired_credential(uow, rt, alice.dn, DELEGATION, later)
    assert _state(rt, job_id) == (JobState.ABORTED.value, PROXY_EXPIRED_REASON, ["cancel"])
    # the worker stops it (the cancel) and collects what it wrote: the job stays Aborted
    end = AttemptEnd(JobState.CANCELLED, payload_started=True, output_bytes=OUTPUT, attempt=attempt)
    assert end_attempt(rt, job_id, end) is None
    assert quota.used_bytes(rt, alice.dn) == before + OUTPUT
    assert _state(rt, job_id) == (JobState.ABORTED.value, PROXY_EXPIRED_REASON, [])
    assert end_attempts(rt, [(job_id, end)]) == [None]  # recorded again
    assert end_attempt(rt, job_id, end) is None
    assert quota.used_bytes(rt, alice.dn) == before + OUTPUT
