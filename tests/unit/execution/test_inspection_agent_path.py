"""The inspection agent runs the program the site allowed, not one the job put on its ``PATH``
(a red-team review, L4): a job with ``Environment = {"PATH=.:/usr/bin:/bin"}`` and its own
``./ps`` had ``wmproxy inspect JOB -- ps`` run that script, past ``[inspection] allowed_commands``.
The agent now looks a bare program name up in its fixed ``TRUSTED_PATH``; the command still
gets the job's environment."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.conftest import Pki
from wmproxy.execution.inspection_agent import TRUSTED_PATH, Agent

FAKE = "#!/bin/sh\necho NOT-PS\n"


def agent(pki: Pki, work: Path) -> Agent:
    environ = {"WMPROXY_INSPECTION_URL": "https://127.0.0.1:1/wmproxy-inspection/agent",
               "WMPROXY_INSPECTION_TOKEN": "0" * 64, "WMPROXY_INSPECTION_CA_DIR": str(pki.ca_dir),
               "GLITE_WMS_JOBID": "https://localhost:7443/job", "X509_USER_PROXY": str(pki.users["alice"].proxy),
               "PATH": f".:{work}:/usr/bin:/bin", "JOB_MARK": "kept"}
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


def test_the_command_keeps_the_jobs_environment(pki: Pki, tmp_path: Path) -> None:
    outcome = run(agent(pki, tmp_path), "sh", "-c", 'echo "$PATH $JOB_MARK"')
    assert output(outcome).strip() == f".:{tmp_path}:/usr/bin:/bin kept"


def test_a_program_only_the_job_has_is_not_found(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "mytool").write_text(FAKE)
    (tmp_path / "mytool").chmod(0o755)
    outcome = run(agent(pki, tmp_path), "mytool")
    assert outcome["exit_code"] is None and outcome["error"] == f"cannot run mytool: not found in {TRUSTED_PATH}"
