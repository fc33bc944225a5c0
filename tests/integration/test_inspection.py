"""Live inspection of running jobs (issue 13) on the local backend: the CLI asks, the job's
agent (started by the job wrapper, as the job's mapped account) long-polls the service over
HTTPS with the job's proxy and secret, runs the command and posts the result.

As root the deployment maps alice to the account ``ali`` (``isolated_deployment``), so the
command's ``id -un`` proves it ran as the job's account; otherwise jobs run as the test user.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.isolated import SYSTEM_PYTHON, isolated_deployment, standard_deployment
from tests.integration.service import BIN, Deployment
from tests.support import WAIT_TIMEOUT, run_cli, wait_for, wait_for_cli_status

pytestmark = pytest.mark.integration

TIME_LIMIT = 6
OUTPUT_CAP = 1000
SETTINGS = {
    "WMPROXY_INSPECTION_MODE": "allow-list",
    "WMPROXY_INSPECTION_ALLOWED_COMMANDS": "sh,sleep,id,pwd,ls,ps,tail",
    "WMPROXY_INSPECTION_TIME_LIMIT": str(TIME_LIMIT),
    "WMPROXY_INSPECTION_OUTPUT_CAP": str(OUTPUT_CAP),
    "WMPROXY_INSPECTION_PICKUP_TIMEOUT": "60",
}
#: A payload that runs until cancelled and leaves a log to look at.
LONG_JOB = "#!/bin/sh\necho started > out.log\nenv > payload.env\nexec sleep 900\n"


@pytest.fixture(scope="module")
def inspection_deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[tuple[Deployment, str]]:
    """(deployment, the account alice's jobs run as)."""
    if os.geteuid() == 0:
        with isolated_deployment(pki, database_url, mapping="gridmap", extra_env=SETTINGS) as iso:
            yield iso.deployment, iso.mapped["alice"].pw_name
        return
    import pwd

    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=SETTINGS) as dep:
        yield dep, pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(scope="module")
def dep(inspection_deployment: tuple[Deployment, str]) -> Deployment:
    deployment = inspection_deployment[0]
    rc, _out, err = run_cli(deployment, "delegate-proxy", "-d", "insp")
    assert rc == 0, err
    return deployment


@pytest.fixture(scope="module")
def requirements() -> str:
    """The JDL Requirements of the jobs inspected (the Slurm tests send them to a Slurm CE)."""
    return "true"


def submit(dep: Deployment, tmp_path: Path, script: str, name: str = "job", requirements: str = "true") -> str:
    """Submit ``script`` (a shell script, the job's executable) through the CLI; the job id."""
    (tmp_path / f"{name}.sh").write_text(script)
    (tmp_path / f"{name}.jdl").write_text(
        f'[ Executable = "{name}.sh"; InputSandbox = {{"{name}.sh"}}; StdOutput = "std.out";\n'
        f'  RetryCount = 0; ShallowRetryCount = 0; Requirements = {requirements}; ]\n')
    ids = tmp_path / f"{name}.ids"
    rc, _out, err = run_cli(dep, "submit", "-d", "insp", "-o", str(ids), str(tmp_path / f"{name}.jdl"))
    assert rc == 0, err
    return ids.read_text().splitlines()[1]


@pytest.fixture(scope="module")
def running_job(dep: Deployment, requirements: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    job_id = submit(dep, tmp_path_factory.mktemp("long"), LONG_JOB, requirements=requirements)
    wait_for_cli_status(dep, job_id, ("Running",))
    yield job_id
    run_cli(dep, "cancel", job_id)


def inspect(dep: Deployment, job_id: str, *command: str, proxy: Path | None = None,
            timeout: int | None = None) -> tuple[int, str, str]:
    extra = ["--timeout", str(timeout)] if timeout is not None else []
    return run_cli(dep, "inspect", *extra, job_id, "--", *command, proxy=proxy)


def test_output_exit_code_time_and_account(dep: Deployment, inspection_deployment: tuple[Deployment, str],
                                           running_job: str) -> None:
    from wmproxy.domain import to_filename

    account = inspection_deployment[1]
    rc, out, err = inspect(dep, running_job, "sh", "-c", "cat out.log; id -un; pwd; echo oops >&2; exit 3")
    assert rc == 3, err
    lines = out.splitlines()
    assert lines[0] == "started"
    assert lines[1] == account
    assert Path(lines[2]).name == to_filename(running_job)
    assert "oops" in lines
    assert re.fullmatch(r"-- exit code 3, ran at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[-1]), lines[-1]


def test_the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment(
        dep: Deployment, running_job: str) -> None:
    pick = "grep -e ^GLITE_WMS_JOBID= -e WMPROXY_INSPECTION"  # the output is capped at 1000 bytes
    rc, out, err = inspect(dep, running_job, "sh", "-c", f"env | {pick}; echo ==; {pick} payload.env")
    assert rc == 0, err
    own, _sep, payload = out.partition("==\n")
    assert f"GLITE_WMS_JOBID={running_job}" in own
    assert f"GLITE_WMS_JOBID={running_job}" in payload, "the payload did not write its environment"
    assert "WMPROXY_INSPECTION" not in out


def test_time_limit_kills_the_command(dep: Deployment, running_job: str) -> None:
    rc, out, err = inspect(dep, running_job, "sh", "-c", "echo before; sleep 300", timeout=2)
    assert rc == 137, (out, err)
    assert out.splitlines()[0] == "before"
    assert "killed at the time limit" in out


def test_output_is_capped(dep: Deployment, running_job: str) -> None:
    rc, out, err = inspect(dep, running_job, "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo 0123456789; "
                           "i=$((i+1)); done")
    assert rc == 0, err
    body, _sep, summary = out.rpartition("-- exit code")
    assert len(body.rstrip("\n").encode()) <= OUTPUT_CAP
    assert len(body.rstrip("\n").encode()) >= OUTPUT_CAP - 1
    assert "output truncated" in summary


def test_another_user_is_refused_until_granted(dep: Deployment, pki: Pki, running_job: str) -> None:
    from tests.integration.refclient import reference_client

    rc, out, err = inspect(dep, running_job, "pwd", proxy=pki.users["bob"].proxy)
    assert rc == 1
    assert "Error - AuthorizationFault" in err
    ref = reference_client(dep.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    ref.wmproxy.addACLItems(running_job, {"Item": [pki.users["bob"].dn]})
    rc, out, err = inspect(dep, running_job, "pwd", proxy=pki.users["bob"].proxy)
    assert rc == 0, err
    assert out.startswith("/")


def test_a_limited_proxy_cannot_inspect(dep: Deployment, pki: Pki, running_job: str, tmp_path: Path) -> None:
    from wmproxy.security.proxy import credential_pem, make_proxy

    limited = tmp_path / "limited.pem"
    limited.write_bytes(credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600, limited=True)))
    limited.chmod(0o600)
    rc, _out, err = inspect(dep, running_job, "pwd", proxy=limited)
    assert rc == 1
    assert "Error - AuthorizationFault: Authorization error: a limited proxy cannot inspect jobs" in err


def test_site_allow_list(dep: Deployment, running_job: str) -> None:
    rc, _out, err = inspect(dep, running_job, "cat", "out.log")
    assert rc == 1
    assert "Error - OperationNotAllowedFault" in err and "'cat' is not allowed" in err
    rc, _out, err = inspect(dep, running_job, "/bin/sh", "-c", "true")
    assert rc == 1 and "not allowed" in err


def test_ended_job_answers_at_once_with_its_final_state(dep: Deployment, requirements: str, tmp_path: Path) -> None:
    job_id = submit(dep, tmp_path, "#!/bin/sh\nexit 0\n", "short", requirements)
    wait_for_cli_status(dep, job_id, ("Done", "Aborted"))
    rc, out, err = inspect(dep, job_id, "ls")
    assert rc == 1
    assert out.startswith("The job has ended: Done, exit code 0"), (out, err)


def _pids(pattern: str) -> list[int]:
    """Processes whose command line (words joined by blanks) starts with ``pattern``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith(pattern):
                found.append(int(entry.name))
    return found


def _is_wrapper_of(pid: int, work_dir: str) -> bool:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(w.endswith("/jobwrapper.py") for w in words) and any(w.endswith("/" + work_dir) for w in words)


def test_wrapper_killed_mid_request_ends_the_ask_with_an_error(dep: Deployment, requirements: str,
                                                              tmp_path: Path) -> None:
    from wmproxy.domain import to_filename

    job_id = submit(dep, tmp_path, LONG_JOB, "victim", requirements)
    wait_for_cli_status(dep, job_id, ("Running",))
    work_dir = to_filename(job_id)
    env = dict(dep.env, GLITE_WMS_WMPROXY_ENDPOINT=dep.endpoint)
    ask = subprocess.Popen([str(BIN / "wmproxy"), "inspect", job_id, "--", "sleep", "4321"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _pids("sleep 4321"), what="the inspection command to run")
        wrappers = [p for p in _pids(SYSTEM_PYTHON) if _is_wrapper_of(p, work_dir)]
        assert len(wrappers) == 1, wrappers
        os.kill(wrappers[0], signal.SIGKILL)
        out, err = ask.communicate(timeout=WAIT_TIMEOUT + 120)
    finally:
        if ask.poll() is None:
            ask.kill()
            ask.wait()
    assert ask.returncode == 1, (out, err)
    assert "Error - InspectionFailed: The job stopped running" in err, (out, err)
    wait_for(lambda: not _pids("sleep 4321"), what="the inspection command to be killed with its wrapper")
