"""Live inspection of running jobs (issue 13) on the local backend: the cases of
``inspection_cases.py`` plus the limited-proxy refusal.

As root the deployment maps alice to the account ``ali`` (``isolated_deployment``), so the
command's ``id -un`` proves it ran as the job's account; otherwise jobs run as the test user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki, need_peer
from tests.integration import inspection_cases as cases
from tests.integration.inspection_cases import (
    LONG_JOB,
    SETTINGS,
    _is_wrapper_of,
    _pids,
    cancel,
    dep,
    inspect,
    running_job,
    wait_for_payload_files,
)
from tests.integration.isolated import SYSTEM_PYTHON, isolated_deployment, standard_deployment
from tests.integration.service import Deployment
from tests.support import run_cli, wait_for, wait_for_cli_status

pytestmark = pytest.mark.integration

cases.collect(globals())  # the shared cases, as test_<name>

__all__ = ["dep", "running_job"]  # fixtures the shared cases use


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
def requirements() -> str:
    """The JDL Requirements of the jobs inspected (the Slurm tests send them to a Slurm CE)."""
    return "true"


def test_a_limited_proxy_cannot_inspect(dep: Deployment, pki: Pki, running_job: str, tmp_path: Path) -> None:
    from wmproxy.security.proxy import credential_pem, make_proxy

    limited = tmp_path / "limited.pem"
    limited.write_bytes(credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600, limited=True)))
    limited.chmod(0o600)
    rc, _out, err = inspect(dep, running_job, "pwd", proxy=limited)
    assert rc == 1
    assert "Error - AuthorizationFault: Authorization error: a limited proxy cannot inspect jobs" in err


def submit_running(dep: Deployment, tmp_path: Path, script: str, attributes: str) -> str:
    """Submit ``script`` (``job.sh``, output ``std.out``; it writes ``out.log`` first thing) with
    the JDL ``attributes``; its job id once it runs and ``out.log`` is there (a job is "Running"
    once its wrapper is spawned, before the payload's shell runs)."""
    (tmp_path / "job.sh").write_text(script)
    (tmp_path / "job.jdl").write_text(f'[ Executable = "job.sh"; StdOutput = "std.out"; {attributes} ]\n')
    ids = tmp_path / "job.ids"
    rc, _out, err = run_cli(dep, "submit", "-d", "insp", "-o", str(ids), str(tmp_path / "job.jdl"))
    assert rc == 0, err
    job_id = ids.read_text().splitlines()[1]
    wait_for_cli_status(dep, job_id, ("Running",))
    wait_for_payload_files(dep, job_id, "out.log")
    return job_id


#: Loaded into a program, it says so first (a constructor: before the program's own code).
EVIL_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void evil(void) { printf("JOB-CODE-RAN\n"); fflush(stdout); }
"""


def test_a_library_the_job_preloads_does_not_run_in_an_allowed_command(dep: Deployment, tmp_path: Path) -> None:
    """``Environment = {"LD_PRELOAD=./evil.so"}`` with the job's own library: an allow-listed ``ps``
    ran the job's code (a red-team review); the command gets an environment of its own."""
    if shutil.which("gcc") is None:
        need_peer("gcc builds the job's library")
    (tmp_path / "evil.c").write_text(EVIL_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "evil.so"), str(tmp_path / "evil.c")], check=True)
    job_id = submit_running(dep, tmp_path, "#!/bin/sh\necho started > out.log\nexec sleep 900\n",
                            'InputSandbox = {"job.sh", "evil.so"}; Environment = {"LD_PRELOAD=./evil.so"};\n'
                            '  RetryCount = 0; ShallowRetryCount = 0;')
    try:
        rc, out, err = inspect(dep, job_id, "ps", "-o", "comm=", "-p", "1")
        assert rc == 0, (out, err)
        assert "JOB-CODE-RAN" not in out, out
        rc, out, err = inspect(dep, job_id, "tail", "-n", "1", "std.out")  # the payload itself did load it
        assert rc == 0 and "JOB-CODE-RAN" in out, (out, err)
    finally:
        cancel(dep, job_id)


def test_a_resubmitted_job_is_inspected_through_its_new_attempts_agent(dep: Deployment, tmp_path: Path) -> None:
    """The agent's secret covers the job's attempt (``docs/inspection.md``, "Answer"): the worker
    gives a resubmitted job's wrapper the secret of its attempt, which the service accepts (an
    earlier attempt's agent gets 403: ``tests/unit/services/test_inspection_attempts.py``)."""
    from wmproxy.domain import to_filename

    job_id = submit_running(dep, tmp_path, LONG_JOB,
                            'InputSandbox = {"job.sh"}; RetryCount = 1; ShallowRetryCount = 1;')
    work_dir = to_filename(job_id)
    try:
        def wrappers() -> list[int]:
            return [p for p in _pids(SYSTEM_PYTHON) if _is_wrapper_of(p, work_dir)]

        first = wait_for(wrappers, what="the first attempt's wrapper")
        assert len(first) == 1, first
        os.kill(first[0], signal.SIGKILL)  # the attempt fails: the job is resubmitted (RetryCount)
        second = wait_for(lambda: [p for p in wrappers() if p != first[0]], what="the second attempt's wrapper")
        assert len(second) == 1, second
        wait_for_cli_status(dep, job_id, ("Running",))
        wait_for_payload_files(dep, job_id, "out.log")  # the new attempt's payload wrote it
        rc, out, err = inspect(dep, job_id, "tail", "out.log")
        assert rc == 0, (out, err)  # the worker passed no attempt: "did not pick up" (its agent got 403)
        assert out.splitlines()[0] == "started"
    finally:
        cancel(dep, job_id)
