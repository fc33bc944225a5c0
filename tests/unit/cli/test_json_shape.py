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


def _keys(value: object) -> set[str]:
    """Every key of the nested document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


class TestInfo:
    def test_keys_are_lower_case(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        docs = []
        for args in (["-d", "unit"], ["-p", job_id]):
            result = runner.invoke(cli, ["info", "--json", *args])
            assert result.exit_code == 0, result.output
            assert result.stdout.count("\n") == 1, result.stdout
            docs.append(json.loads(result.stdout))
        assert set(docs[0]["proxy"]) == {"subject", "issuer", "identity", "type", "strength", "start_time",
                                         "end_time", "time_left", "vos"}
        assert docs[1]["proxy"]["end_time"] == docs[0]["proxy"]["end_time"]
        assert set(docs[1]["renewal"]) == {"myproxy_server", "registered", "last_attempt", "last_result",
                                           "last_error", "renewals", "proxy_end_time"}
        assert all(k == k.lower() and " " not in k for doc in docs for k in _keys(doc)), docs
