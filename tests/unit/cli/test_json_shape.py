"""docs/cli-json.md's shared rules (one JSON document, one line, lower case keys) for verbs
whose schema the other modules do not pin, against the service in-process behind real TLS."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL
from wmproxy.cli.main import cli
from wmproxy.domain import JobState
from wmproxy.services.runtime import Runtime

from .https_server import registered_job


class TestInspect:
    def test_is_one_line(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        # a job that has ended answers at once (docs/inspection.md)
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        result = runner.invoke(cli, ["inspect", "--json", job_id, "--", "ls"])
        assert result.exit_code == 1, result.output
        assert result.stdout.count("\n") == 1, result.stdout
        doc = json.loads(result.stdout)
        assert (doc["job"], doc["state"], doc["job_state"]) == (job_id, "ended", "Done")
