"""The inspection agent runs the program the site allowed, not one the job put on its ``PATH``
(a red-team review, L4): a job with ``Environment = {"PATH=.:/usr/bin:/bin"}`` and its own
``./ps`` had ``wmproxy inspect JOB -- ps`` run that script, past ``[inspection] allowed_commands``.
The agent now looks a bare program name up in its fixed ``TRUSTED_PATH``.

Nor does the job's environment run anything in an allowed command (a red-team review, LOW):
``Environment = {"LD_PRELOAD=./evil.so"}`` ran the job's library inside ``ps``. The command gets
an environment of its own: a fixed ``PATH``, and of the job's only the variables that name it."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import Pki, need_peer
from wmproxy.execution.inspection_agent import TRUSTED_PATH, Agent

FAKE = "#!/bin/sh\necho NOT-PS\n"


#: Loaded into a program, it says so first (a constructor: before the program's own code).
EVIL_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void evil(void) { printf("JOB-CODE-RAN\n"); fflush(stdout); }
"""


def agent(pki: Pki, work: Path, **extra: str) -> Agent:
    environ = {"WMPROXY_INSPECTION_URL": "https://127.0.0.1:1/wmproxy-inspection/agent",
               "WMPROXY_INSPECTION_TOKEN": "0" * 64, "WMPROXY_INSPECTION_CA_DIR": str(pki.ca_dir),
               "GLITE_WMS_JOBID": "https://localhost:7443/job", "X509_USER_PROXY": str(pki.users["alice"].proxy),
               "PATH": f".:{work}:/usr/bin:/bin", "JOB_MARK": "dropped", "USER": "ali", "LOGNAME": "ali",
               "HOME": "/elsewhere", **extra}
    return Agent(str(work), environ)


def run(agent: Agent, *argv: str) -> dict[str, object]:
    return agent.run({"argv": list(argv), "time_limit": 20, "output_cap": 10_000})


def output(outcome: dict[str, object]) -> str:
    return base64.b64decode(str(outcome["output"])).decode()


def test_the_jobs_path_does_not_choose_the_program(pki: Pki, tmp_path: Path) -> None:
    for name in ("ps", "pwd"):
        (tmp_path / name).write_text(FAKE)
        (tmp_path / name).chmod(0o755)
    outcome = run(agent(pki, tmp_path), "ps", "-o", "pid=", "-p", str(os.getpid()))
    assert outcome["error"] is None and outcome["exit_code"] == 0, outcome
    assert "NOT-PS" not in output(outcome) and output(outcome).strip() == str(os.getpid())
    outcome = run(agent(pki, tmp_path), "pwd")
    assert output(outcome).strip() == str(tmp_path)  # the job's work dir, by /bin/pwd


def test_the_command_gets_the_variables_naming_the_job_and_nothing_else_of_its_environment(
        pki: Pki, tmp_path: Path) -> None:
    hostile = {"LD_LIBRARY_PATH": str(tmp_path), "LD_AUDIT": "x.so", "GCONV_PATH": str(tmp_path),
               "LOCPATH": str(tmp_path), "PYTHONPATH": str(tmp_path), "PERL5OPT": "-Mx", "BASH_ENV": "./x",
               "ENV": "./x", "IFS": "/", "BASH_FUNC_ps%%": "() { echo x; }", "GLIBC_TUNABLES": "x", "SLURM_CONF": "./x"}
    outcome = run(agent(pki, tmp_path, **hostile), "env", "-0")
    seen = dict(entry.split("=", 1) for entry in output(outcome).split("\0") if entry)
    assert seen == {"PATH": TRUSTED_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path),
                    "GLITE_WMS_JOBID": "https://localhost:7443/job", "X509_USER_PROXY": str(pki.users["alice"].proxy),
                    "USER": "ali", "LOGNAME": "ali"}


def test_a_library_the_job_preloads_never_runs_in_an_allowed_command(pki: Pki, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        need_peer("gcc builds the job's library")
    (tmp_path / "evil.c").write_text(EVIL_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "evil.so"), str(tmp_path / "evil.c")], check=True)
    loaded = subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(tmp_path / "evil.so")}, capture_output=True,
                            text=True, check=True)
    assert loaded.stdout == "JOB-CODE-RAN\n"  # the library does run where it is preloaded
    for preload in ("./evil.so", str(tmp_path / "evil.so")):
        outcome = run(agent(pki, tmp_path, LD_PRELOAD=preload), "ps", "-o", "pid=", "-p", str(os.getpid()))
        assert outcome["error"] is None and outcome["exit_code"] == 0, outcome
        assert output(outcome).strip() == str(os.getpid())  # no JOB-CODE-RAN


def test_a_program_only_the_job_has_is_not_found(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "mytool").write_text(FAKE)
    (tmp_path / "mytool").chmod(0o755)
    outcome = run(agent(pki, tmp_path), "mytool")
    assert outcome["exit_code"] is None and outcome["error"] == f"cannot run mytool: not found in {TRUSTED_PATH}"
