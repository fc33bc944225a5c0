"""The cases of live inspection (issue 13), run by ``test_inspection.py`` (local backend) and
``tests/slurm/test_slurm_inspection.py`` (Slurm) against their own ``inspection_deployment``
and ``requirements`` fixtures: the CLI asks, the job's
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
from tests.integration.isolated import SYSTEM_PYTHON
from tests.integration.service import BIN, Deployment
from tests.support import WAIT_TIMEOUT, run_cli, wait_for, wait_for_cli_status

TIME_LIMIT = 30  # the site's limit; time_limit_kills_the_command asks for less
OUTPUT_CAP = 1000
SETTINGS = {
    "WMPROXY_INSPECTION_MODE": "allow-list",
    "WMPROXY_INSPECTION_ALLOWED_COMMANDS": "sh,sleep,id,pwd,ls,ps,tail",
    "WMPROXY_INSPECTION_TIME_LIMIT": str(TIME_LIMIT),
    "WMPROXY_INSPECTION_OUTPUT_CAP": str(OUTPUT_CAP),
    "WMPROXY_INSPECTION_PICKUP_TIMEOUT": "60",
}
#: A payload that runs until cancelled and leaves a log to look at. It writes each file under
#: another name and renames it: once ``out.log`` and ``payload.env`` exist they are complete
#: (``env`` may write in several writes), as :func:`wait_for_payload_files` needs.
LONG_JOB = ("#!/bin/sh\necho started > out.tmp && mv out.tmp out.log\n"
            "env > env.tmp && mv env.tmp payload.env\nexec sleep 900\n")
#: The files :data:`LONG_JOB` writes, the last one last.
LONG_JOB_FILES = ("out.log", "payload.env")


@pytest.fixture(scope="module")
def dep(inspection_deployment: tuple[Deployment, str]) -> Deployment:
    deployment = inspection_deployment[0]
    rc, _out, err = run_cli(deployment, "delegate-proxy", "-d", "insp")
    assert rc == 0, err
    return deployment


def submit(dep: Deployment, tmp_path: Path, script: str, name: str = "job", requirements: str = "true",
           extra: str = "") -> str:
    """Submit ``script`` (a shell script, the job's executable) through the CLI, with the JDL
    attributes ``extra``; the job id."""
    (tmp_path / f"{name}.sh").write_text(script)
    (tmp_path / f"{name}.jdl").write_text(
        f'[ Executable = "{name}.sh"; InputSandbox = {{"{name}.sh"}}; StdOutput = "std.out";\n'
        f'  RetryCount = 0; ShallowRetryCount = 0; Requirements = {requirements}; {extra}]\n')
    ids = tmp_path / f"{name}.ids"
    rc, _out, err = run_cli(dep, "submit", "-d", "insp", "-o", str(ids), str(tmp_path / f"{name}.jdl"))
    assert rc == 0, err
    return ids.read_text().splitlines()[1]


@pytest.fixture(scope="module")
def running_job(dep: Deployment, requirements: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    job_id = submit(dep, tmp_path_factory.mktemp("long"), LONG_JOB, requirements=requirements)
    wait_for_cli_status(dep, job_id, ("Running",))
    # "Running" is recorded once the wrapper is spawned, before the payload's shell runs
    wait_for_payload_files(dep, job_id, *LONG_JOB_FILES)
    yield job_id
    cancel(dep, job_id)


def cancel(dep: Deployment, job_id: str) -> None:
    """Cancel ``job_id`` (``--noint``: without it the CLI asks, and no one answers) and wait for it
    to be Cancelled, so that the next case's job finds a free CPU on the test's Slurm node."""
    rc, out, err = run_cli(dep, "cancel", "--noint", job_id)
    assert rc == 0, (out, err)
    wait_for_cli_status(dep, job_id, ("Cancelled",))


def inspect(dep: Deployment, job_id: str, *command: str, proxy: Path | None = None,
            timeout: int | None = None) -> tuple[int, str, str]:
    extra = ["--timeout", str(timeout)] if timeout is not None else []
    return run_cli(dep, "inspect", *extra, job_id, "--", *command, proxy=proxy)


def wait_for_payload_files(dep: Deployment, job_id: str, *names: str) -> None:
    """Wait until an inspection of the running ``job_id`` finds the files ``names`` its payload
    writes (by rename, so complete once there); any other answer (the agent did not answer,
    an error) ends the wait and fails."""
    rc, out, err = wait_for(lambda: inspect(dep, job_id, "ls", *names),
                            lambda r: r[0] == 0 or "No such file" not in r[1] + r[2], interval=1.0,
                            what=f"the payload of {job_id} to write {', '.join(names)}")
    assert rc == 0, (out, err)


def output_exit_code_time_and_account(dep: Deployment, inspection_deployment: tuple[Deployment, str],
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


def the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment(
        dep: Deployment, running_job: str) -> None:
    pick = "grep -e ^GLITE_WMS_JOBID= -e WMPROXY_INSPECTION"  # the output is capped at 1000 bytes
    rc, out, err = inspect(dep, running_job, "sh", "-c", f"env | {pick}; echo ==; {pick} payload.env")
    assert rc == 0, err
    own, _sep, payload = out.partition("==\n")
    assert f"GLITE_WMS_JOBID={running_job}" in own
    assert f"GLITE_WMS_JOBID={running_job}" in payload, "the payload did not write its environment"
    assert "WMPROXY_INSPECTION" not in out


def time_limit_kills_the_command(dep: Deployment, running_job: str) -> None:
    # a limit long enough for sh to start and print under any load, below the site's
    rc, out, err = inspect(dep, running_job, "sh", "-c", "echo before; sleep 300", timeout=20)
    assert rc == 137, (out, err)
    assert out.splitlines()[0] == "before"
    assert "killed at the time limit" in out


def output_is_capped(dep: Deployment, running_job: str) -> None:
    rc, out, err = inspect(dep, running_job, "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo 0123456789; "
                           "i=$((i+1)); done")
    assert rc == 0, err
    body, _sep, summary = out.rpartition("-- exit code")
    assert len(body.rstrip("\n").encode()) <= OUTPUT_CAP
    assert len(body.rstrip("\n").encode()) >= OUTPUT_CAP - 1
    assert "output truncated" in summary


def another_user_is_refused_even_when_granted(dep: Deployment, pki: Pki, running_job: str) -> None:
    """An ACL entry grants read access to the job (its status), not commands in it: the job's
    work dir holds the owner's proxy (``tail user.proxy``)."""
    from tests.integration.refclient import reference_client

    rc, out, err = inspect(dep, running_job, "pwd", proxy=pki.users["bob"].proxy)
    assert rc == 1
    assert "Error - AuthorizationFault" in err
    ref = reference_client(dep.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    ref.wmproxy.addACLItems(running_job, {"Item": [pki.users["bob"].dn]})
    bob = reference_client(dep.endpoint, pki.users["bob"].proxy, pki.ca_dir)
    assert bob.wmproxy.getJobStatus(running_job).status == "Running"
    rc, out, err = inspect(dep, running_job, "tail", "-n", "100", "user.proxy", proxy=pki.users["bob"].proxy)
    assert rc == 1
    assert "Error - AuthorizationFault" in err and "only the job's owner may inspect it" in err, err
    assert "PRIVATE KEY" not in out


def site_allow_list(dep: Deployment, running_job: str) -> None:
    rc, _out, err = inspect(dep, running_job, "cat", "out.log")
    assert rc == 1
    assert "Error - OperationNotAllowedFault" in err and "'cat' is not allowed" in err
    rc, _out, err = inspect(dep, running_job, "/bin/sh", "-c", "true")
    assert rc == 1 and "not allowed" in err


def ended_job_answers_at_once_with_its_final_state(dep: Deployment, requirements: str, tmp_path: Path) -> None:
    job_id = submit(dep, tmp_path, "#!/bin/sh\nexit 0\n", "short", requirements)
    wait_for_cli_status(dep, job_id, ("Done", "Aborted"))
    rc, out, err = inspect(dep, job_id, "ls")
    assert rc == 1
    assert out.startswith("The job has ended: Done, exit code 0"), (out, err)


def the_jobs_path_does_not_choose_the_program(dep: Deployment, requirements: str, tmp_path: Path) -> None:
    """A job that puts its work dir first on its PATH with its own ``ps``: the allowed ``ps``
    still runs the system's (before, the job's script ran: the allow-list bypassed)."""
    script = "#!/bin/sh\nprintf '#!/bin/sh\\necho NOT-PS\\n' > ps\nchmod +x ps\necho ready > out.log\nexec sleep 900\n"
    job_id = submit(dep, tmp_path, script, "pathjob", requirements, 'Environment = {"PATH=.:/usr/bin:/bin"}; ')
    try:
        wait_for_cli_status(dep, job_id, ("Running",))
        rc, out, err = wait_for(lambda: inspect(dep, job_id, "tail", "out.log"), lambda r: r[0] == 0,
                                what="the job to write its ./ps")
        rc, out, err = inspect(dep, job_id, "ps", "-o", "comm")  # args: over the 1000-byte cap
        assert rc == 0, (out, err)
        assert "NOT-PS" not in out and "sleep" in out.split(), out
    finally:
        cancel(dep, job_id)


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


def wrapper_killed_mid_request_ends_the_ask_with_an_error(dep: Deployment, requirements: str,
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


#: The shared cases, each collected by :func:`collect` as ``test_<name>``.
CASES = (
    output_exit_code_time_and_account,
    the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment,
    time_limit_kills_the_command,
    output_is_capped,
    another_user_is_refused_even_when_granted,
    site_allow_list,
    ended_job_answers_at_once_with_its_final_state,
    the_jobs_path_does_not_choose_the_program,
    wrapper_killed_mid_request_ends_the_ask_with_an_error,
)


def collect(namespace: dict[str, object], leave_out: tuple[object, ...] = ()) -> None:
    """Put every case but ``leave_out`` into a test module's ``namespace`` under its test name;
    the module provides ``inspection_deployment`` (and ``requirements``) for the cases' fixtures."""
    for case in CASES:
        if case not in leave_out:
            namespace[f"test_{case.__name__}"] = case
