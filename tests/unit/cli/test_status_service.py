"""``status`` and ``logging-info`` against the service in-process behind real TLS: purged jobs
at ``-v 3``, the reason of a Done job, ``--to`` bounds given as the CLI prints times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from tests.conftest import Pki
from tests.support import ECHO_JDL
from wmproxy.cli.main import cli
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.domain import JobState
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job, JobEvent

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


class TestUnknownJob:
    """getJobStatus declares no JobUnknownFault on the wire (the service answers a GenericFault
    with code 1218); the client names it JobUnknownFault, as for every other verb."""

    UNKNOWN = "https://localhost:9000/NoSuchJobAbCdEfGhIjKlMn"

    def test_is_a_job_unknown_fault(self, runner: CliRunner, service: Runtime) -> None:
        text = runner.invoke(cli, ["status", self.UNKNOWN])
        assert text.exit_code == 1
        assert text.stderr.startswith("Error - JobUnknownFault: The job has not been registered"), text.output
        code, doc = status_json(runner, self.UNKNOWN)
        assert code == 1 and doc["result"] == "failure"
        assert [e["error"]["type"] for e in doc["errors"]] == ["JobUnknownFault"]
        cancel = runner.invoke(cli, ["cancel", "--noint", "--json", self.UNKNOWN])
        assert json.loads(cancel.stdout)["error"] == doc["errors"][0]["error"]

    def test_the_client_keeps_the_code_and_method(self, service: Runtime, pki: Pki) -> None:
        client = WMProxyClient(service.settings.service.endpoint, proxy_file=str(pki.users["alice"].proxy),
                               ca_dir=str(pki.ca_dir))
        with pytest.raises(WMProxyClientError) as info:
            client.get_job_status(self.UNKNOWN)
        assert (info.value.fault_type, info.value.error_code, info.value.method) == (
            "JobUnknownFault", "1218", "getJobStatus")


class TestResultFile:
    """``status -o FILE`` and ``logging-info -o FILE`` (glite-wms-job-status/-logging-info
    ``--output``): the result is appended to FILE; in a batch where one job fails, the result of
    the others is still written, the failure is on stderr and the exit status 1."""

    @pytest.mark.parametrize("verb", ["status", "logging-info"])
    def test_the_result_goes_to_the_file(self, runner: CliRunner, service: Runtime, pki: Pki, verb: str,
                                         tmp_path: Path) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        printed = runner.invoke(cli, [verb, job_id])
        assert printed.exit_code == 0, printed.output
        out = tmp_path / "result.txt"
        result = runner.invoke(cli, [verb, "-o", str(out), job_id])
        assert result.exit_code == 0, result.output
        assert result.stdout == "" and result.stderr == f"The result has been written to {out}\n"
        assert out.read_text() == printed.stdout and job_id in printed.stdout

    @pytest.mark.parametrize("verb", ["status", "logging-info"])
    def test_a_partial_batch_writes_the_jobs_that_succeeded(self, runner: CliRunner, service: Runtime, pki: Pki,
                                                            verb: str, tmp_path: Path) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
        unknown = TestUnknownJob.UNKNOWN
        out = tmp_path / "result.txt"
        result = runner.invoke(cli, [verb, "-o", str(out), job_id, unknown])
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert job_id in out.read_text() and unknown not in out.read_text()
        assert result.stderr.startswith("Error - JobUnknownFault: ") and unknown in result.stderr
        assert f"The result has been written to {out}\n" in result.stderr
        result = runner.invoke(cli, [verb, "--json", "-o", str(tmp_path / "result.json"), job_id, unknown])
        assert result.exit_code == 1, result.output
        doc = json.loads((tmp_path / "result.json").read_text())
        assert doc["result"] == "partial" and [e["jobid"] for e in doc["errors"]] == [unknown]
        assert [j["jobid"] for j in doc["jobs"]] == [job_id]

    def test_a_verb_failing_as_a_whole_writes_nothing(self, runner: CliRunner, service: Runtime,
                                                      tmp_path: Path) -> None:
        (tmp_path / "ids").write_text("###Submitted Job Ids###\n")
        out = tmp_path / "result.txt"
        result = runner.invoke(cli, ["status", "--json", "-o", str(out), "-i", str(tmp_path / "ids")])
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"]["type"] == "Input"
        assert not out.exists()


#: When the job below was registered: stored to the microsecond, printed to the second.
REGISTERED = dt.datetime(2026, 12, 2, 13, 5, 9, 500000, tzinfo=dt.UTC)


class TestToBoundOfAPrintedTime:
    @pytest.fixture
    def job_id(self, service: Runtime, pki: Pki) -> str:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)
        with service.uow() as uow:
            uow.session.execute(update(Job).where(Job.id == job_id).values(created_at=REGISTERED))
            uow.session.execute(update(JobEvent).where(JobEvent.job_id == job_id).values(at=REGISTERED))
        return job_id

    def events(self, runner: CliRunner, job_id: str, *bounds: str) -> list[str]:
        result = runner.invoke(cli, ["logging-info", "--json", *bounds, job_id])
        assert result.exit_code == 0, result.output
        return [e["timestamp"] for e in json.loads(result.stdout)["jobs"][0]["events"]]

    @pytest.mark.usefixtures("utc_local_time")  # the gLite forms are local time
    def test_takes_the_events_of_that_second(self, runner: CliRunner, service: Runtime, job_id: str) -> None:
        printed = self.events(runner, job_id)
        assert printed and set(printed) == {"2026-12-02T13:05:09Z"}
        assert self.events(runner, job_id, "--to", printed[0]) == printed
        assert self.events(runner, job_id, "--from", printed[0], "--to", printed[0]) == printed
        assert self.events(runner, job_id, "--to", "2026-12-02 13:05") == printed
        assert self.events(runner, job_id, "--to", "12:02:13:05:2026") == printed
        assert self.events(runner, job_id, "--to", "2026-12-02T13:05:08Z") == []
        assert self.events(runner, job_id, "--to", "2026-12-02T13:05:09.4Z") == []

    @pytest.mark.usefixtures("utc_local_time")  # the gLite forms are local time
    def test_takes_the_jobs_registered_in_that_second(self, runner: CliRunner, service: Runtime,
                                                      job_id: str) -> None:
        code, doc = status_json(runner, "--all")
        assert code == 0, doc
        submitted = doc["jobs"][0]["submitted"]
        assert submitted == "2026-12-02T13:05:09Z"
        assert [j["jobid"] for j in status_json(runner, "--all", "--to", submitted)[1]["jobs"]] == [job_id]
        assert [j["jobid"] for j in status_json(runner, "--all", "--to", "12:02:13:05:2026")[1]["jobs"]] == [job_id]
        assert status_json(runner, "--all", "--to", "2026-12-02T13:05:08Z")[1]["jobs"] == []
