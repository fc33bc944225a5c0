"""``status`` against the service in-process behind real TLS: purged jobs at ``-v 3``."""

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
