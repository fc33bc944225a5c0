"""The CLI as a user runs it, against the real service and worker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.service import BIN, Deployment

pytestmark = pytest.mark.integration


def wmproxy(deployment: Deployment, *args: str, proxy: Path | None = None) -> tuple[int, str, str]:
    env = dict(deployment.env, GLITE_WMS_WMPROXY_ENDPOINT=deployment.endpoint)
    if proxy is not None:
        env["X509_USER_PROXY"] = str(proxy)
    import subprocess

    done = subprocess.run([str(BIN / "wmproxy"), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


def status_of(deployment: Deployment, job_id: str) -> dict:
    rc, out, err = wmproxy(deployment, "status", "--json", job_id)
    assert rc == 0, err
    return json.loads(out)[job_id]


def wait_for(deployment: Deployment, job_id: str, prefixes: tuple[str, ...], timeout: float = 60) -> dict:
    """The CLI's JSON status entry once "Current Status" starts with one of ``prefixes``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = status_of(deployment, job_id)
        if entry["Current Status"].startswith(prefixes):
            return entry
        time.sleep(0.3)
    raise AssertionError(f"{job_id} never reached {prefixes}; last {entry}")


@pytest.fixture(scope="module")
def delegated(deployment: Deployment) -> str:
    rc, out, err = wmproxy(deployment, "delegate-proxy", "-d", "cli")
    assert rc == 0, err
    assert "with the delegation identifier: cli" in out
    return "cli"


def test_submit_with_input_sandbox_then_output(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text('#!/bin/sh\necho "args: $*"\ncat data.txt\necho "$GREETING" >&2\nexit 3\n')
    (tmp_path / "data.txt").write_text("line one\nline two\n")
    (tmp_path / "job.jdl").write_text(
        '[ Executable = "run.sh"; Arguments = "a b"; StdOutput = "out.txt"; StdError = "err.txt";\n'
        '  Environment = {"GREETING=hi there"}; InputSandbox = {"run.sh", "data.txt"};\n'
        '  OutputSandbox = {"out.txt", "err.txt"}; ]\n'
    )
    ids = tmp_path / "ids.txt"
    rc, out, err = wmproxy(deployment, "submit", "-d", delegated, "-o", str(ids), str(tmp_path / "job.jdl"))
    assert rc == 0, err
    lines = ids.read_text().splitlines()
    assert lines[0] == "###Submitted Job Ids###"
    job_id = lines[1]
    assert job_id in out and "Your job identifier is:" in out
    entry = wait_for(deployment, job_id, ("Done", "Aborted"))
    assert entry["Current Status"] == "Done (Exit Code !=0)"
    assert entry["Exit code"] == 3
    rc, out, err = wmproxy(deployment, "status", job_id)
    assert "Current Status:     Done (Exit Code !=0)" in out and "Exit code:          3" in out
    rc, out, err = wmproxy(deployment, "output", "--dir", str(tmp_path / "out"), job_id)
    assert rc == 0, err
    assert (tmp_path / "out" / "out.txt").read_text() == "args: a b\nline one\nline two\n"
    assert (tmp_path / "out" / "err.txt").read_text() == "hi there\n"
    assert status_of(deployment, job_id)["Current Status"] == "Cleared"


def test_start_without_uploading_the_input_sandbox_aborts_with_reason(
    deployment: Deployment, delegated: str, pki: Pki
) -> None:
    from tests.integration.refclient import reference_client

    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    job = ref.wmproxy.jobRegister('[ Executable = "/bin/true"; InputSandbox = {"gone.txt"}; ]', delegated)
    ref.wmproxy.jobStart(job.id)
    entry = wait_for(deployment, job.id, ("Done", "Aborted"))
    assert entry["Current Status"] == "Aborted"
    assert entry["Status Reason"] == "input sandbox file gone.txt has not been uploaded"
    rc, out, err = wmproxy(deployment, "status", job.id)
    assert "Status Reason:      input sandbox file gone.txt has not been uploaded" in out


def test_cancel_stops_a_running_job(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    (tmp_path / "job.jdl").write_text(
        f'[ Executable = "/bin/sh"; Arguments = "-c \\"sleep 30; touch {marker}\\""; ]'
    )
    rc, out, err = wmproxy(deployment, "submit", "--json", "-d", delegated, str(tmp_path / "job.jdl"))
    assert rc == 0, err
    job_id = json.loads(out)["jobid"]
    wait_for(deployment, job_id, ("Running",))
    rc, out, err = wmproxy(deployment, "cancel", "--noint", job_id)
    assert rc == 0, err
    entry = wait_for(deployment, job_id, ("Cancelled", "Done", "Aborted"), timeout=30)
    assert (entry["Current Status"], entry["Status Reason"]) == ("Cancelled", "Cancelled by user")
    time.sleep(1)
    assert not marker.exists()
    rc, out, err = wmproxy(deployment, "cancel", "--noint", job_id)
    assert rc == 1 and "OperationNotAllowedFault" in err and "Traceback" not in err


def test_errors_are_one_line_without_traceback(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "bad.jdl").write_text('[ Arguments = "no executable"; ]')
    rc, out, err = wmproxy(deployment, "submit", "-d", delegated, str(tmp_path / "bad.jdl"))
    assert rc == 1
    assert "Mandatory attribute Executable not set" in err
    assert "Traceback" not in err + out
    rc, out, err = wmproxy(deployment, "status", "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA")
    assert rc == 1 and "Traceback" not in err


def test_another_user_cannot_follow_or_cancel(deployment: Deployment, delegated: str, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "job.jdl").write_text('[ Executable = "/bin/true"; ]')
    rc, out, err = wmproxy(deployment, "submit", "--json", "-d", delegated, str(tmp_path / "job.jdl"))
    job_id = json.loads(out)["jobid"]
    rc, out, err = wmproxy(deployment, "status", job_id, proxy=pki.users["bob"].proxy)
    assert rc == 1 and "AuthorizationFault" in err
    rc, out, err = wmproxy(deployment, "cancel", "--noint", job_id, proxy=pki.users["bob"].proxy)
    assert rc == 1
