"""Job history, job listing, status verbosity and the JSON schemas (issue 12), through the CLI
against the real service and worker (docs/cli-json.md pins the schemas tested here)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from tests.integration.service import Deployment
from tests.support import run_cli, wait_for, wait_for_cli_status
from wmproxy.cli import render
from wmproxy.soap.contract import WSDL_FILE

pytestmark = pytest.mark.integration

UNKNOWN = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"
STATUS_KEYS = {"jobid", "current_status", "state", "exit_code", "status_reason", "destination", "submitted",
               "last_update", "owner", "parent_jobid", "node_name", "state_times", "user_tags", "node_states",
               "missing_outputs"}
EVENT_KEYS = {"event", "kind", "timestamp", "source", "state", "reason"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def delegated(deployment: Deployment) -> str:
    rc, _out, err = run_cli(deployment, "delegate-proxy", "-d", "hist")
    assert rc == 0, err
    return "hist"


def _submit(deployment: Deployment, delegated: str, jdl_dir: Path, jdl: str, *files: tuple[str, str]) -> str:
    for name, text in files:
        (jdl_dir / name).write_text(text)
    (jdl_dir / "job.jdl").write_text(jdl)
    rc, out, err = run_cli(deployment, "submit", "--json", "-d", delegated, str(jdl_dir / "job.jdl"))
    assert rc == 0, err
    return str(json.loads(out)["jobid"])


@pytest.fixture(scope="module")
def done_job(deployment: Deployment, delegated: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A job with an input sandbox and a declared output file it never writes, run to Done."""
    jdl_dir = tmp_path_factory.mktemp("done")
    job_id = _submit(
        deployment, delegated, jdl_dir,
        '[ Executable = "run.sh"; StdOutput = "out.txt"; InputSandbox = {"run.sh"};\n'
        '  OutputSandbox = {"out.txt", "nothere.txt"}; UserTags = [ campaign = "hist-a"; run = "1" ]; ]\n',
        ("run.sh", "#!/bin/sh\necho hello\n"),
    )
    entry = wait_for_cli_status(deployment, job_id, ("Done", "Aborted", "Cancelled"))
    assert entry["Current Status"] == "Done (Success)", entry
    return job_id


def _events(deployment: Deployment, job_id: str, *args: str) -> list[dict[str, Any]]:
    rc, out, err = run_cli(deployment, "logging-info", "--json", *args, job_id)
    assert rc == 0, err
    data = json.loads(out)
    assert (data["result"], data["errors"], [j["jobid"] for j in data["jobs"]]) == ("success", [], [job_id])
    events: list[dict[str, Any]] = data["jobs"][0]["events"]
    return events


class TestLoggingInfo:
    def test_every_step_of_a_job_is_an_event_with_time_source_and_reason(
            self, deployment: Deployment, done_job: str) -> None:
        events = _events(deployment, done_job)
        assert all(set(e) == EVENT_KEYS and ISO.match(e["timestamp"]) for e in events), events
        kinds = [e["kind"] for e in events]
        assert kinds == ["registered", "sandbox_transferred", "enqueued", "matched", "scheduled",
                         "backend_submitted", "running", "done"], kinds
        by_kind = {e["kind"]: e for e in events}
        assert (by_kind["registered"]["event"], by_kind["registered"]["source"]) == ("RegJob", "user")
        assert by_kind["sandbox_transferred"]["reason"].startswith("input sandbox transferred: 1 file(s), ")
        assert by_kind["matched"]["reason"].startswith("matched to CE ")
        assert by_kind["backend_submitted"]["reason"].startswith("submitted to ")
        assert (by_kind["done"]["state"], by_kind["done"]["source"]) == ("Done", "wrapper")
        assert "nothere.txt" in by_kind["done"]["reason"]
        assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)

    def test_text_in_the_reference_format_per_verbosity(self, deployment: Deployment, done_job: str) -> None:
        rc, out, err = run_cli(deployment, "logging-info", "-v", "2", done_job)
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[1] == render.stripe("wmproxy logging-info Success")
        assert "LOGGING INFORMATION:" in lines
        assert f"Printing info for the Job : {done_job}" in lines
        names = [line.removeprefix("Event: ") for line in lines if line.startswith("Event: ")]
        assert names == ["RegJob", "Transfer", "EnQueued", "Match", "DeQueued", "Accepted", "Running", "Done"]
        assert "- Source                     =    user" in lines
        assert "- Status                     =    Done" in lines
        stamps = [line for line in lines if line.startswith("- Timestamp")]
        assert len(stamps) == 8 and all(re.search(r"=    \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} UTC$", s)
                                         for s in stamps)
        assert lines[-1] == "=" * 74
        rc, out, err = run_cli(deployment, "logging-info", "-v", "0", done_job)
        assert rc == 0 and "- Source" not in out and out.count("- Timestamp") == 8

    def test_event_and_time_filters(self, deployment: Deployment, done_job: str) -> None:
        assert [e["kind"] for e in _events(deployment, done_job, "--event", "Match")] == ["matched"]
        assert [e["kind"] for e in _events(deployment, done_job, "--event", "running", "--event", "Done")] == [
            "running", "done"]
        assert "registered" not in [e["kind"] for e in _events(deployment, done_job, "--exclude", "RegJob")]
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert _events(deployment, done_job, "--from", future) == []
        assert len(_events(deployment, done_job, "--to", future)) == 8
        rc, _out, err = run_cli(deployment, "logging-info", "--from", "yesterday", done_job)
        assert rc == 1 and "is not a time" in err

    def test_unknown_event_kind_is_a_typed_fault(self, deployment: Deployment, done_job: str) -> None:
        rc, _out, err = run_cli(deployment, "logging-info", "--event", "Nonsense", done_job)
        assert rc == 1 and "InvalidArgumentFault" in err and "Unknown event kind" in err and "Traceback" not in err


class TestStatusVerbosity:
    def test_default_shows_destination_submitted_and_the_missing_output(
            self, deployment: Deployment, done_job: str) -> None:
        rc, out, err = run_cli(deployment, "status", done_job)
        assert rc == 0, err
        lines = out.splitlines()
        assert "Current Status:     Done (Success)" in lines
        assert "Exit code:          0" in lines
        assert "Missing output:     nothere.txt (not produced)" in lines
        assert any(re.match(r"^Destination:        \S+", line) for line in lines), out
        assert any(re.match(r"^Submitted:          \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} UTC$", line)
                   for line in lines), out
        assert "Owner:" not in out

    def test_levels_0_2_and_3(self, deployment: Deployment, pki: Pki, done_job: str) -> None:
        rc, out, err = run_cli(deployment, "status", "-v", "0", done_job)
        assert rc == 0 and "Current Status:     Done (Success)" in out
        assert "Exit code" not in out and "Destination" not in out
        rc, out, err = run_cli(deployment, "status", "-v", "2", done_job)
        assert rc == 0, err
        assert f"Owner:              {pki.users['alice'].dn}" in out
        assert "State times:" in out and re.search(r"^    - Running\s+= .* UTC$", out, re.M)
        assert "User tag campaign:  hist-a" in out and "Jdl:" not in out
        rc, out, err = run_cli(deployment, "status", "-v", "3", done_job)
        assert rc == 0 and "Jdl:" in out and 'campaign = "hist-a"' in out

    def test_json_schema(self, deployment: Deployment, pki: Pki, done_job: str) -> None:
        rc, out, err = run_cli(deployment, "status", "--json", done_job)
        assert rc == 0, err
        data = json.loads(out)
        assert set(data) == {"result", "jobs", "errors"} and data["result"] == "success"
        (entry,) = data["jobs"]
        assert set(entry) == STATUS_KEYS
        assert not any(" " in key for key in entry)
        assert (entry["jobid"], entry["current_status"], entry["state"], entry["exit_code"]) == (
            done_job, "Done (Success)", "Done", 0)
        assert entry["missing_outputs"] == [{"name": "nothere.txt", "reason": "not produced"}]
        assert entry["user_tags"] == {"campaign": "hist-a", "run": "1"}
        assert entry["owner"] == pki.users["alice"].dn
        assert ISO.match(entry["submitted"]) and set(entry["state_times"]) >= {"Submitted", "Running", "Done"}


class TestBatches:
    def test_status_goes_on_past_a_bad_id_and_fails_at_the_end(self, deployment: Deployment, done_job: str,
                                                               tmp_path: Path) -> None:
        rc, out, err = run_cli(deployment, "status", "--noint", done_job, UNKNOWN, "not-a-job-id", done_job)
        assert rc == 1
        assert out.count(f"Status info for the Job : {done_job}") == 1  # given twice, asked once
        errors = err.splitlines()
        assert len(errors) == 2 and all(line.startswith("Error - ") for line in errors), err
        assert UNKNOWN in errors[0] and "The job has not been registered" in errors[0]
        # not a job id: not sent, as gLite's Utils::checkJobIds; a failure of that job
        assert "Input: the job id not-a-job-id is in bad format" in errors[1] and "Traceback" not in err
        ids = tmp_path / "ids.txt"
        ids.write_text(f"###Submitted Job Ids###\n{UNKNOWN}\n{done_job}\n")
        rc, out, err = run_cli(deployment, "status", "--json", "-i", str(ids))
        assert rc == 1
        data = json.loads(out)
        assert data["result"] == "partial" and [j["jobid"] for j in data["jobs"]] == [done_job]
        assert [e["jobid"] for e in data["errors"]] == [UNKNOWN]
        assert "The job has not been registered" in data["errors"][0]["error"]["message"]
        assert set(data["errors"][0]["error"]) == {"type", "message"}

    def test_logging_info_batch(self, deployment: Deployment, done_job: str) -> None:
        rc, out, _err = run_cli(deployment, "logging-info", "--json", UNKNOWN, done_job)
        assert rc == 1
        data = json.loads(out)
        assert data["result"] == "partial" and [j["jobid"] for j in data["jobs"]] == [done_job]
        assert data["errors"][0]["jobid"] == UNKNOWN
        rc, out, _err = run_cli(deployment, "logging-info", "--json", UNKNOWN)
        assert rc == 1 and json.loads(out)["result"] == "failure"

    def test_error_of_the_whole_verb_is_a_json_object(self, deployment: Deployment, done_job: str) -> None:
        rc, out, _err = run_cli(deployment, "status", "--json", "-i", "/nonexistent/ids.txt")
        assert rc == 1
        assert json.loads(out) == {"result": "failure", "error": {
            "type": "Input", "message": "cannot read /nonexistent/ids.txt: No such file or directory"}}


@pytest.fixture(scope="module")
def second_job(deployment: Deployment, delegated: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A job failing with exit code 4, tagged campaign=hist-b."""
    jdl_dir = tmp_path_factory.mktemp("second")
    return _submit(deployment, delegated, jdl_dir,
                   '[ Executable = "/bin/sh"; Arguments = "-c \\"exit 4\\""; UserTags = [ campaign = "hist-b" ]; ]')


class TestListing:

    def _listed(self, deployment: Deployment, *args: str, proxy: Path | None = None) -> list[dict[str, Any]]:
        rc, out, err = run_cli(deployment, "status", "--all", "--json", *args, proxy=proxy)
        assert rc == 0, err
        data = json.loads(out)
        assert data["result"] == "success" and data["total"] == len(data["jobs"])
        return list(data["jobs"])

    def test_filters(self, deployment: Deployment, done_job: str, second_job: str) -> None:
        wait_for_cli_status(deployment, second_job, ("Done", "Aborted"))
        listed = self._listed(deployment)
        ids = [j["jobid"] for j in listed]
        assert done_job in ids and second_job in ids
        assert ids.index(second_job) < ids.index(done_job)  # newest first
        assert all(set(j) == STATUS_KEYS for j in listed)
        assert [j["jobid"] for j in self._listed(deployment, "--user-tag", "campaign=hist-a")] == [done_job]
        assert [j["jobid"] for j in self._listed(deployment, "--user-tag", "campaign=hist-b")] == [second_job]
        assert self._listed(deployment, "--user-tag", "campaign=hist-a", "--user-tag", "run=2") == []
        done = [j["jobid"] for j in self._listed(deployment, "--status", "done")]
        assert done_job in done and second_job in done
        assert done_job not in [j["jobid"] for j in self._listed(deployment, "--exclude", "Done")]
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert self._listed(deployment, "--from", future) == []
        assert done_job in [j["jobid"] for j in self._listed(deployment, "--to", future)]
        rc, _out, err = run_cli(deployment, "status", "--all", "--status", "Sleeping")
        assert rc == 1 and "'Sleeping' is not a job state" in err
        # the filters apply to the jobs given too, without --all (as glite-wms-job-status)
        rc, out, err = run_cli(deployment, "status", "--status", "Done", done_job)
        assert rc == 0 and done_job in out, err
        rc, out, err = run_cli(deployment, "status", "--exclude", "Done", done_job)
        assert done_job not in out, (rc, out, err)

    def test_compact_table(self, deployment: Deployment, done_job: str, second_job: str) -> None:
        wait_for_cli_status(deployment, second_job, ("Done", "Aborted"))
        rc, out, err = run_cli(deployment, "status", "--all", "--user-tag", "campaign=hist-b")
        assert rc == 0, err
        lines = out.splitlines()
        assert re.match(r"^JOBID\s+STATUS\s+SUBMITTED \(UTC\)\s+DESTINATION$", lines[0])
        assert lines[1].startswith(second_job) and "Done (Exit Code !=0)" in lines[1]
        assert lines[-1] == "1 job(s): 1 Done"

    def test_other_users_see_shared_jobs_only(self, deployment: Deployment, pki: Pki, done_job: str,
                                              second_job: str) -> None:
        from tests.integration.refclient import reference_client

        bob = pki.users["bob"].proxy
        assert done_job not in [j["jobid"] for j in self._listed(deployment, proxy=bob)]
        rc, out, err = run_cli(deployment, "logging-info", done_job, proxy=bob)
        assert rc == 1 and "AuthorizationFault" in err
        alice = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
        alice.wmproxy.addACLItems(done_job, {"Item": [pki.users["bob"].dn]})
        shared = [j["jobid"] for j in self._listed(deployment, proxy=bob)]
        assert done_job in shared and second_job not in shared
        rc, out, err = run_cli(deployment, "logging-info", done_job, proxy=bob)
        assert rc == 0 and "Event: RegJob" in out


def test_cancel_request_and_purge_are_events(deployment: Deployment, delegated: str, pki: Pki,
                                            tmp_path: Path) -> None:
    scratch = deployment.scratch(tmp_path)
    started = scratch / "started"
    job_id = _submit(deployment, delegated, tmp_path,
                     f'[ Executable = "/bin/sh"; Arguments = "-c \\"touch {started}; sleep 300\\""; ]')
    wait_for(started.exists, what="the job to start")
    rc, out, err = run_cli(deployment, "cancel", "--noint", job_id)
    assert rc == 0, err
    wait_for_cli_status(deployment, job_id, ("Cancelled",))
    events = _events(deployment, job_id, "--event", "Cancel")
    assert [e["kind"] for e in events] == ["cancel_requested", "cancelled"]
    assert events[0]["source"] == "user" and events[1]["reason"] == "Cancelled by user"
    from tests.integration.refclient import reference_client

    reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir).wmproxy.jobPurge(job_id)
    kinds = [e["kind"] for e in _events(deployment, job_id)]
    assert kinds[-2:] == ["cleared", "purged"]
    rc, out, err = run_cli(deployment, "status", job_id)
    assert rc == 0 and "Current Status:     Cleared" in out


def test_reference_wsdl_does_not_describe_the_extension() -> None:
    assert "jobs-1" not in WSDL_FILE.read_text()
    assert "getJobEvents" in (WSDL_FILE.parent / "wmproxy-jobs.wsdl").read_text()


class TestLightSummary:
    """``wmproxy status`` reads the jobs-1 summary without zeep (issue 14): the light reply
    must read back as what zeep reads from the same service."""

    def test_light_summary_equals_the_zeep_clients(self, deployment: Deployment, pki: Pki, done_job: str) -> None:
        from wmproxy.client import WMProxyClient, jobs_ext

        alice = pki.users["alice"]
        client = WMProxyClient(deployment.endpoint, str(alice.proxy), str(pki.ca_dir))
        light = jobs_ext.job_summary(client.post, done_job)
        full = jobs_ext.JobsClient(deployment.endpoint, str(alice.proxy), str(pki.ca_dir)).get_job_events(
            done_job, kinds=["registered"]).job
        assert light == full
        assert light.user_tags == {"campaign": "hist-a", "run": "1"} and light.destination
        assert light.missing_outputs == (("nothere.txt", "not produced"),)
        assert {"Submitted", "Running", "Done"} <= set(light.state_times)

    def test_unknown_job_is_the_services_fault(self, deployment: Deployment, pki: Pki) -> None:
        from wmproxy.client import WMProxyClient, WMProxyClientError, jobs_ext

        alice = pki.users["alice"]
        client = WMProxyClient(deployment.endpoint, str(alice.proxy), str(pki.ca_dir))
        with pytest.raises(WMProxyClientError) as caught:
            jobs_ext.job_summary(client.post, UNKNOWN)
        assert caught.value.fault_type == "JobUnknownFault"

    def test_status_imports_neither_zeep_nor_requests(self, deployment: Deployment, done_job: str) -> None:
        import subprocess
        import sys

        env = dict(deployment.env, GLITE_WMS_WMPROXY_ENDPOINT=deployment.endpoint)
        code = ("import sys; from wmproxy.cli.main import main\n"
                "try:\n    main(['status', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                "print(sorted(m for m in ('zeep', 'requests') if m in sys.modules))")
        done = subprocess.run([sys.executable, "-c", code, done_job], env=env, capture_output=True, text=True,
                              timeout=300, check=False, cwd=deployment.cwd)
        assert done.returncode == 0, done.stderr
        assert "Destination:" in done.stdout
        assert done.stdout.splitlines()[-1] == "[]"
