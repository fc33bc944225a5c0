"""Failover (several endpoints in ``-c FILE``, the first one dead) against the service
in-process behind real TLS: every verb reports, and uses, the endpoint that answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from tests.port_support import closed_port
from tests.support import ECHO_JDL
from wmproxy.cli.main import cli
from wmproxy.domain import JobState
from wmproxy.services.runtime import Runtime

from .https_server import registered_job


@pytest.fixture
def dead() -> Iterator[str]:
    """An endpoint where nothing listens (its port held so for the test: no other process takes it)."""
    with closed_port() as port:
        yield f"https://localhost:{port}/glite_wms_wmproxy_server"


@pytest.fixture
def config(service: Runtime, dead: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A client configuration listing the dead endpoint, then the service's; no -e nor
    ``$GLITE_WMS_WMPROXY_ENDPOINT``."""
    monkeypatch.delenv("GLITE_WMS_WMPROXY_ENDPOINT")
    conf = tmp_path / "client.conf"
    conf.write_text(f"[client]\nendpoints = {dead}\n            {service.settings.service.endpoint}\n")
    return str(conf)


def _switched(stderr: str, dead: str) -> bool:
    return stderr.startswith(f"Warning - {dead}: ") and "switching to the next WMProxy server" in stderr


class TestTheEndpointThatAnswered:
    def test_info_of_a_delegation_and_of_a_job_proxy(self, runner: CliRunner, service: Runtime, pki: Pki,
                                                     config: str, dead: str) -> None:
        live = service.settings.service.endpoint
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        result = runner.invoke(cli, ["info", "--json", "-c", config, "-d", "unit"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["endpoint"] == live and _switched(result.stderr, dead)
        result = runner.invoke(cli, ["info", "-c", config, "-d", "unit"])
        assert result.exit_code == 0, result.output
        assert f"Your proxy delegated to the endpoint {live}\nwith delegationID unit" in result.stdout
        result = runner.invoke(cli, ["info", "-c", config, "-p", job_id])
        assert result.exit_code == 0, result.output
        assert f"Your proxy delegated to the endpoint {live}\n for the job {job_id} :\n" in result.stdout

    def test_submit_start_json(self, runner: CliRunner, service: Runtime, pki: Pki, config: str,
                               dead: str) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)
        result = runner.invoke(cli, ["submit", "--json", "-c", config, "--start", job_id])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert (doc["jobid"], doc["endpoint"]) == (job_id, service.settings.service.endpoint)
        assert _switched(result.stderr, dead)

    def test_templates_json(self, runner: CliRunner, service: Runtime, config: str, dead: str) -> None:
        result = runner.invoke(cli, ["templates", "collection", "--json", "-c", config, "-n", "2"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["endpoint"] == service.settings.service.endpoint

    def test_inspect_fails_over(self, runner: CliRunner, service: Runtime, config: str, dead: str) -> None:
        unknown = "https://localhost:9000/NoSuchJobAbCdEfGhIjKlMn"
        result = runner.invoke(cli, ["inspect", "-c", config, unknown, "--", "ls"])
        assert result.exit_code == 1
        assert _switched(result.stderr, dead), result.stderr
        assert result.stderr.splitlines()[-1].startswith("Error - JobUnknownFault: "), result.stderr
