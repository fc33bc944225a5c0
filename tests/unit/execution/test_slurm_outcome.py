"""How the Slurm backend reads a job it cancelled whose payload Slurm killed before the wrapper
handled its own SIGTERM: the wrapper's status (a real one, written by the wrapper) shows the
payload killed by SIGTERM and no ``cancelled_by``. The job is Cancelled, not Done with 143."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.unit.execution.wrapper_support import DEADLINE, PYTHON, sh
from wmproxy.domain import JobState
from wmproxy.execution import identity
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend, _Followed


def _wrapper_status_of_a_payload_killed_by_sigterm(work_root: Path) -> Path:
    work = identity.prepare_work_dir(work_root, "job1", None)
    identity.write_spec(work, sh("kill -TERM $$"), None)  # as scancel would: the payload only
    subprocess.run([PYTHON, "-I", str(identity.WRAPPER_PATH), str(work)], cwd=work, env={"PATH": "/usr/bin:/bin"},
                   start_new_session=True, check=False, timeout=DEADLINE, capture_output=True)
    status = identity.read_status(work, None)
    assert status is not None and (status.signal, status.cancelled_by) == (15, None)
    return work


def test_a_cancelled_job_whose_payload_slurm_killed_first_is_cancelled(tmp_path: Path) -> None:
    work = _wrapper_status_of_a_payload_killed_by_sigterm(tmp_path)
    backend = SlurmExecutionBackend(tmp_path)
    handle = RunHandle(ref=f"slurm::1:{work.name}", work_dir=work, account=None, pid=1)
    outcome = backend._ended(handle, "1", _Followed(cancelled=True), None)
    assert outcome is not None
    assert (outcome.state, outcome.exit_code, outcome.payload_started) == (JobState.CANCELLED, 143, True)
