"""The Slurm backend's release of a job's work dir on the worker host: the Slurm job id is not
a local session. Before, the release handed the local backend a handle whose ``pid`` was the
Slurm job id, and after a cancel (or without a status file) the local backend killed what it
found of the *local* session with that number owned by the job's account: orphans of another
job of the same pool account on the worker host."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from tests.conftest import need_peer
from tests.unit.execution.wrapper_support import launch
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account


def orphan_in_a_session_of_its_own(account: Account) -> tuple[int, int]:
    """(pid, session id) of a ``sleep`` running as ``account`` whose session leader has exited:
    no process holds the session's number as its pid."""
    shell = subprocess.run(["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
                            "setsid", "sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True, timeout=30)
    pid = int(shell.stdout.strip())
    session = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[4])
    assert not os.path.exists(f"/proc/{session}")  # the leader (the shell) has exited
    return pid, session


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_releasing_a_cancelled_slurm_job_kills_no_local_session_of_its_number(
        work_root: Path, input_dir: Path, account: Account | None) -> None:
    if account is None:
        need_peer("root, to run a process as a pool account")
        return
    job_account = account
    backend = SlurmExecutionBackend(work_root, cluster="c")
    pid, session = orphan_in_a_session_of_its_own(job_account)
    try:
        handle = backend.prepare(dataclasses.replace(launch(input_dir, job_account, "true"), queue="debug"))
        # what the backend holds for a Slurm job whose id is that number, once its cancel was sent
        handle.ref = f"slurm:c:{session}:{handle.work_dir.name}"
        handle.pid = session
        handle.cancel_sent_at = 1.0
        backend.release(handle)
        assert alive(pid), "the release killed a local process of the job's account"
        assert not handle.work_dir.exists() or not any(handle.work_dir.iterdir())
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)
