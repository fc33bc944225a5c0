"""An end whose values the database refuses (the job's text or numbers: a reason naming a file
whose name is not UTF-8, an exit code no column holds, a NUL on PostgreSQL) is recorded as its
job Aborted with a neutral reason, the other ends of its batch as they are; one refused even
then is dropped (logged with its job id). Before, the driver's ``UnicodeEncodeError`` or
``OverflowError`` (not an SQLAlchemy error) left :func:`end_attempts` and ended the worker, at
every restart (the end in its ends journal); PostgreSQL's ``DataError`` kept the end for ever,
tried and logged at every cycle. An outage still keeps the ends. Both databases."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal
from wmproxy.services import retries
from wmproxy.services.execution import claim_next_start, mark_running
from wmproxy.services.retries import END_REFUSED, AttemptEnd, EndsNotRecordedError, end_attempts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

OK = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, attempt=0)
REFUSED = {
    "surrogate": AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, attempt=0,
                            reason="output sandbox file \udcff.o not collected: symbolic link"),
    "overflow": AttemptEnd(JobState.DONE, exit_code=2**63, payload_started=True, attempt=0),
    "aborted-surrogate": AttemptEnd(JobState.ABORTED, reason="Job Wrapper error: \udcff", payload_started=True,
                                    retryable=False, attempt=0),
    "nul": AttemptEnd(JobState.ABORTED, reason="x\x00y", payload_started=True, retryable=False, attempt=0),
}


def _running(rt: Runtime, alice: Principal, count: int) -> list[str]:
    ids = [submit_job(rt, alice, '[ Executable = "/bin/true"; ]', DELEGATION).job_id for _ in range(count)]
    for _ in ids:
        order = claim_next_start(rt, "w1")
        assert order is not None
    mark_running(rt, [(job_id, f"local:{job_id}") for job_id in ids])
    return ids


def _state(rt: Runtime, job_id: str) -> tuple[str, str | None, int | None]:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state, job.reason, job.exit_code


@pytest.mark.parametrize("kind", list(REFUSED))
def test_an_end_the_database_refuses_aborts_its_job_and_the_others_are_recorded(
    rt: Runtime, alice: Principal, database_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "nul" and database_url.startswith("sqlite"):
        pytest.skip("SQLite stores a NUL: only PostgreSQL refuses it")
    before, bad, after = _running(rt, alice, 3)
    with caplog.at_level(logging.ERROR, logger="wmproxy.services.retries"):
        states = end_attempts(rt, [(before, OK), (bad, REFUSED[kind]), (after, OK)])
    assert states == [JobState.DONE, JobState.ABORTED, JobState.DONE]
    assert _state(rt, bad) == ("Aborted", END_REFUSED, None)
    assert _state(rt, before) == _state(rt, after) == ("Done", None, 0)
    assert any(bad in record.getMessage() and "refused" in record.getMessage() for record in caplog.records)
    assert end_attempts(rt, [(bad, REFUSED[kind])]) == [None]  # the journal taken over again: recorded already


def test_an_end_refused_even_aborted_is_dropped(rt: Runtime, alice: Principal,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Output bytes no column holds: its Aborted end carries them too (counted with it)."""
    good, bad = _running(rt, alice, 2)
    huge = AttemptEnd(JobState.DONE, exit_code=0, payload_started=True, attempt=0, output_bytes=2**63)
    with caplog.at_level(logging.ERROR, logger="wmproxy.services.retries"):
        assert end_attempts(rt, [(bad, huge), (good, OK)]) == [None, JobState.DONE]
    assert _state(rt, bad)[0] == "Running" and _state(rt, good)[0] == "Done"
    assert any(f"job {bad}: its end is dropped" in record.getMessage() for record in caplog.records)


def test_an_outage_still_keeps_the_ends(rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database outage is no refusal of the end's values: the ends are kept, not Aborted."""
    lost, kept = _running(rt, alice, 2)
    real = retries._end_in

    def outage(uow: object, rt_: Runtime, job_id: str, *args: object, **kwargs: object) -> JobState | None:
        if job_id == lost:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))
        return real(uow, rt_, job_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retries, "_end_in", outage)
    failed = AttemptEnd(JobState.ABORTED, reason="failed", payload_started=True, retryable=False, attempt=0)
    with pytest.raises(EndsNotRecordedError) as raised:
        end_attempts(rt, [(lost, failed), (kept, failed)])
    assert raised.value.failed == [lost] and raised.value.states == {kept: JobState.ABORTED}
    assert _state(rt, lost)[0] == "Running"
