"""``status`` against the service in-process behind real TLS: purged jobs at ``-v 3``, the
reason of a Done job."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL
from wmproxy.cli.main import cli
from wmproxy.domain import JobState
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime

from .https_server import registered_job

NOT_COLLECTED = "output sandbox file nothere.txt not collected: not produced"


def status_json(runner: CliRunner, *args: str) -> tuple[int, dict]:
    result = runner.invoke(cli, ["status", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


class TestPurgedJobAtVerbosity3:
    def test_is_the_verbosity_2_entry_without_a_jdl(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        alice, purged = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        jobs.purge_job(service, alice, purged)
        code, v2 = status_json(runner, "-v", "2", purged)
        assert code == 0, v2
        code, v3 = status_json(runner, "-v", "3", purged)
        assert code == 0, v3
        assert v3 == v2 and v3["jobs"][0]["state"] == "Cleared" and "jdl" not in v3["jobs"][0]
        text = runner.invoke(cli, ["status", "-v", "3", purged])
        assert text.exit_code == 0, text.output
        assert "Current Status:     Cleared\n" in text.stdout and "Jdl:" not in text.stdout

    def test_does_not_fail_a_batch(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        alice, purged = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        jobs.purge_job(service, alice, purged)
        _, live = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        code, doc = status_json(runner, "-v", "3", purged, live)
        assert code == 0 and doc["result"] == "success" and doc["errors"] == []
        assert ["jdl" in entry for entry in doc["jobs"]] == [False, True]
        assert "/bin/echo" in doc["jobs"][1]["jdl"]


class TestReasonOfADoneJob:
    def test_is_shown_in_text_and_json(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0, reason=NOT_COLLECTED)
        code, doc = status_json(runner, job_id)
        assert code == 0, doc
        entry = doc["jobs"][0]
        assert (entry["current_status"], entry["status_reason"]) == ("Done (Success)", NOT_COLLECTED)
        assert entry["missing_outputs"] == [{"name": "nothere.txt", "reason": "not produced"}]
        text = runner.invoke(cli, ["status", job_id]).stdout
        assert ("Current Status:     Done (Success)\nExit code:          0\n"
                f"Status Reason:      {NOT_COLLECTED}\n") in text

    def test_the_status_string_reason_comes_first(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.ABORTED, reason="no compatible resources")
        for verbosity in ("0", "1"):
            _, doc = status_json(runner, "-v", verbosity, job_id)
            assert doc["jobs"][0]["status_reason"] == "no compatible resources"
