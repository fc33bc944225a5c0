"""The CLI as a user runs it, against the real service and worker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.service import Deployment
from tests.support import cli_status, run_cli, wait_for, wait_for_cli_status

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def delegated(deployment: Deployment) -> str:
    rc, out, err = run_cli(deployment, "delegate-proxy", "-d", "cli")
    assert rc == 0, err
    assert "with the delegation identifier: cli" in out
    return "cli"


def test_submit_with_input_sandbox_then_output(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text('#!/bin/sh\necho "args: $*"\ncat data.txt\necho "$GREETING" >&2\nexit 3\n')
    (tmp_path / "data.txt").write_text("line one\nline two\n")
    (tmp_path / "job.jdl").write_text(
        '[ Executable = "run.sh"; Arguments = "a b"; StdOutput = "out.txt"; StdError = "err.txt";\n'
        '  Environment = {"GREETING=\'hi there\'"}; InputSandbox = {"run.sh", "data.txt"};\n'
        '  OutputSandbox = {"out.txt", "err.txt"}; ]\n'
    )
    ids = tmp_path / "ids.txt"
    rc, out, err = run_cli(deployment, "submit", "-d", delegated, "-o", str(ids), str(tmp_path / "job.jdl"))
    assert rc == 0, err
    lines = ids.read_text().splitlines()
    assert lines[0] == "###Submitted Job Ids###"
    job_id = lines[1]
    assert job_id in out and "Your job identifier is:" in out
    entry = wait_for_cli_status(deployment, job_id, ("Done", "Aborted"))
    assert entry["Current Status"] == "Done (Exit Code !=0)"
    assert entry["Exit code"] == 3
    rc, out, err = run_cli(deployment, "status", job_id)
    assert "Current Status:     Done (Exit Code !=0)" in out and "Exit code:          3" in out
    rc, out, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "out"), job_id)
    assert rc == 0, err
    assert (tmp_path / "out" / "out.txt").read_text() == "args: a b\nline one\nline two\n"
    assert (tmp_path / "out" / "err.txt").read_text() == "hi there\n"
    assert cli_status(deployment, job_id)["Current Status"] == "Cleared"


def test_start_without_uploading_the_input_sandbox_aborts_with_reason(
    deployment: Deployment, delegated: str, pki: Pki
) -> None:
    from tests.integration.refclient import reference_client

    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    job = ref.wmproxy.jobRegister('[ Executable = "/bin/true"; InputSandbox = {"gone.txt"}; ]', delegated)
    ref.wmproxy.jobStart(job.id)
    entry = wait_for_cli_status(deployment, job.id, ("Done", "Aborted"))
    assert entry["Current Status"] == "Aborted"
    assert entry["Status Reason"] == "input sandbox file gone.txt has not been uploaded"
    _, out, _ = run_cli(deployment, "status", job.id)
    assert "Status Reason:      input sandbox file gone.txt has not been uploaded" in out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_stops_a_running_job(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    """The job records its process group, then would sleep 300 s and only then write "finished":
    after the cancel the group is gone and "finished" was never written."""
    scratch = deployment.scratch(tmp_path)
    started, finished = scratch / "started", scratch / "finished"
    (tmp_path / "job.jdl").write_text(
        f'[ Executable = "/bin/sh"; Arguments = "-c \\"echo $$ > {started}; sleep 300; touch {finished}\\""; ]'
    )
    rc, out, err = run_cli(deployment, "submit", "--json", "-d", delegated, str(tmp_path / "job.jdl"))
    assert rc == 0, err
    job_id = json.loads(out)["jobid"]
    wait_for_cli_status(deployment, job_id, ("Running",))
    pgid = int(wait_for(lambda: started.exists() and started.read_text().strip(), what="the job to start"))
    assert _group_alive(pgid)
    rc, out, err = run_cli(deployment, "cancel", "--noint", job_id)
    assert rc == 0, err
    entry = wait_for_cli_status(deployment, job_id, ("Cancelled", "Done", "Aborted"))
    assert (entry["Current Status"], entry["Status Reason"]) == ("Cancelled", "Cancelled by user")
    wait_for(lambda: not _group_alive(pgid), what=f"the job's process group {pgid} to be gone")
    assert not finished.exists()
    rc, out, err = run_cli(deployment, "cancel", "--noint", job_id)
    assert rc == 1 and "OperationNotAllowedFault" in err and "Traceback" not in err


def test_errors_are_one_line_without_traceback(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "bad.jdl").write_text('[ Arguments = "no executable"; ]')
    rc, out, err = run_cli(deployment, "submit", "-d", delegated, str(tmp_path / "bad.jdl"))
    assert rc == 1
    assert "Mandatory attribute Executable not set" in err
    assert "Traceback" not in err + out
    rc, out, err = run_cli(deployment, "status", "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA")
    assert rc == 1 and "Traceback" not in err


def test_another_user_cannot_follow_or_cancel(deployment: Deployment, delegated: str, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "job.jdl").write_text('[ Executable = "/bin/true"; ]')
    rc, out, err = run_cli(deployment, "submit", "--json", "-d", delegated, str(tmp_path / "job.jdl"))
    job_id = json.loads(out)["jobid"]
    rc, out, err = run_cli(deployment, "status", job_id, proxy=pki.users["bob"].proxy)
    assert rc == 1 and "AuthorizationFault" in err
    rc, out, err = run_cli(deployment, "cancel", "--noint", job_id, proxy=pki.users["bob"].proxy)
    assert rc == 1
