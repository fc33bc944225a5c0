"""The payload's environment on a real (throwaway) Slurm: sbatch submits with
``--export=ALL`` (``--export=NONE`` made slurmd run ``su -`` for every job), so the batch
job gets sbatch's environment, and the job wrapper still builds the payload's environment
from nothing: Slurm's ``SLURM_*`` variables pass, nothing of the worker's or of sbatch's
environment does."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests import support
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import DEADLINE, launch, make_backend, wait_outcome
from wmproxy.domain import JobState
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend, parse_ref
from wmproxy.execution.identity import Account
from wmproxy.execution.jobwrapper import BASE_PATH, STATE_DIR, TMP_DIR
from wmproxy.execution.slurm import SlurmCommands

DUMP = "env > env.out"


class _SbatchWithExtraEnvironment(SlurmCommands):
    """Slurm's commands with two more variables in their environment, one of them ``SLURM_``
    (sbatch --export=ALL hands both to the batch job)."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "WMP_SBATCH_ONLY": "from-sbatch"}


@pytest.fixture
def leaky_backend(slurm_cluster: SlurmCluster, work_root: Path,
                  monkeypatch: pytest.MonkeyPatch) -> SlurmExecutionBackend:
    monkeypatch.setenv("WMP_WORKER_ONLY", "from-the-worker")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/worker/lib")
    return make_backend(slurm_cluster, work_root, commands=_SbatchWithExtraEnvironment(slurm_cluster.conf))


def _environment(handle: RunHandle) -> dict[str, str]:
    lines = (handle.work_dir / "env.out").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _check_payload_environment(handle: RunHandle, account: Account, slurm_id: str) -> dict[str, str]:
    env = _environment(handle)
    assert "WMP_WORKER_ONLY" not in env and "WMP_SBATCH_ONLY" not in env
    assert "LD_LIBRARY_PATH" not in env and "SLURM_GET_USER_ENV" not in env
    assert env["SLURM_JOB_ID"] == slurm_id
    assert env["PATH"] == BASE_PATH and env["HOME"] == str(handle.work_dir)
    assert env["TMPDIR"] == str(handle.work_dir / TMP_DIR) and env["USER"] == account.name
    assert env["GLITE_WMS_JOBID"].startswith("https://lb.example.org:9000/")
    assert not {key for key in env if key.startswith("WMP")}
    return env


def test_the_payload_sees_slurms_variables_and_nothing_of_the_workers(
    leaky_backend: SlurmExecutionBackend, account: Account, input_dir: Path
) -> None:
    handle = leaky_backend.prepare(launch(account, input_dir, DUMP, environment={"JDL_VAR": "jdl"}))
    assert "#SBATCH --export=ALL" in (handle.work_dir / STATE_DIR / "slurm.sh").read_text()
    leaky_backend.spawn(handle)

    outcome = wait_outcome(leaky_backend, handle)

    assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0)
    env = _check_payload_environment(handle, account, str(handle.pid))
    assert env["JDL_VAR"] == "jdl" and env["SLURM_JOB_PARTITION"] == "debug"

    # the control: the batch environment itself does hold sbatch's variable; the wrapper drops it.
    # env may write in several writes: the job renames its complete output to control.out
    control, partial = handle.work_dir / "control.out", handle.work_dir / "control.tmp"
    leaky_backend.commands.run("sbatch", "--parsable", "--export=ALL", f"--output={handle.work_dir / 'control.log'}",
                               "--partition=debug", f"--wrap=env > {shlex.quote(str(partial))} && "
                               f"mv {shlex.quote(str(partial))} {shlex.quote(str(control))}",
                               account=account, as_account=True, cwd=handle.work_dir)
    support.wait_for(control.exists, what="the control job's environment", timeout=DEADLINE)
    assert "SLURM_JOB_ID=" in control.read_text()
    assert "WMP_SBATCH_ONLY=from-sbatch" in control.read_text().splitlines()


def test_an_array_task_sees_its_own_slurm_ids_and_nothing_of_the_workers(
    leaky_backend: SlurmExecutionBackend, account: Account, input_dir: Path
) -> None:
    handles = [leaky_backend.prepare(launch(account, input_dir, DUMP)) for _ in range(2)]
    leaky_backend.spawn_batch(handles)
    handles = [leaky_backend.spawn(handle) for handle in handles]

    outcomes = [wait_outcome(leaky_backend, handle) for handle in handles]

    assert [(o.state, o.exit_code) for o in outcomes] == [(JobState.DONE, 0)] * 2
    for index, handle in enumerate(handles):
        slurm_id = (parse_ref(handle.ref) or ("", None, ""))[1]
        assert slurm_id == f"{handle.pid}_{index}"
        env = _environment(handle)
        _check_payload_environment(handle, account, env["SLURM_JOB_ID"])
        assert (env["SLURM_ARRAY_JOB_ID"], env["SLURM_ARRAY_TASK_ID"]) == (str(handle.pid), str(index))


def test_jdl_environment_and_arguments_are_evaluated_on_the_node_with_slurms_variables(
    slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
) -> None:
    """The wrapper copied beside the job evaluates shell syntax on the batch node, in the payload's
    environment (Slurm's ``SLURM_JOB_ID`` included), as for a local job (docs/execution.md)."""
    backend = make_backend(slurm_cluster, work_root)
    job = launch(account, input_dir, "", executable="/usr/bin/printf", arguments=[],
                 shell_arguments="'%s\\n' \"$SLURM_JOB_ID\" \"$JOBVAR\" 'a  b'",
                 shell_environment=["JOBVAR=job-$SLURM_JOB_ID:$HOME", "PATH=$PATH:/opt/x"])
    handle = backend.spawn(backend.prepare(job))
    outcome = wait_outcome(backend, handle)
    assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0), (handle.work_dir / "std.err").read_text()
    slurm_id = str(handle.pid)
    assert (handle.work_dir / "std.out").read_text() == f"{slurm_id}\njob-{slurm_id}:{handle.work_dir}\na  b\n"
