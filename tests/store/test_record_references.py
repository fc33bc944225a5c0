"""A backend reference a worker resolved after it was recorded (the Slurm job id found after an
sbatch lost its answer) is recorded where the job still holds the one recorded, without a state
change or an event; a job that ended or holds another reference is left alone. Both databases."""

from __future__ import annotations

from tests.store.conftest import DELEGATION
from wmproxy.domain import JobState, Principal
from wmproxy.services.execution import claim_next_start, mark_running, record_references, set_state
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

JDL = '[ Executable = "/bin/true"; ]'


def _running(rt: Runtime, alice: Principal, ref: str) -> str:
    job_id = submit_job(rt, alice, JDL, DELEGATION).job_id
    order = claim_next_start(rt, "w1")
    assert order is not None and order.job_id == job_id
    mark_running(rt, [(job_id, ref)])
    return job_id


def _row(rt: Runtime, job_id: str) -> tuple[str, str | None, int]:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state, job.backend_ref, len(list(uow.jobs.events(job_id)))


def test_a_resolved_reference_replaces_the_recorded_one_only(rt: Runtime, alice: Principal) -> None:
    followed = _running(rt, alice, "slurm:c:-:a")
    moved_on = _running(rt, alice, "slurm:c:-:b")
    ended = _running(rt, alice, "slurm:c:-:c")
    set_state(rt, ended, JobState.ABORTED, reason="gone")
    before = {job_id: _row(rt, job_id) for job_id in (followed, moved_on, ended)}

    done = record_references(rt, [(followed, "slurm:c:-:a", "slurm:c:12:a"), (moved_on, "slurm:c:-:x", "slurm:c:13:b"),
                                   (ended, "slurm:c:-:c", "slurm:c:14:c")])

    assert done == {followed}
    assert _row(rt, followed) == (JobState.RUNNING.value, "slurm:c:12:a", before[followed][2])
    assert _row(rt, moved_on) == before[moved_on] and _row(rt, ended) == before[ended]
