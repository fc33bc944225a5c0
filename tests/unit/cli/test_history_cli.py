"""logging-info, status -v/--all, batches and the JSON documents, against fake clients (issue 12)."""

from __future__ import annotations

import datetime as dt
import json

import click
import pytest
from click.testing import CliRunner

from wmproxy.cli import history_opts, render
from wmproxy.cli.main import cli
from wmproxy.client import JobStatus, WMProxyClientError
from wmproxy.domain import JobEvent, JobHistory

from .conftest import JOB, FakeClient
from .fake_jobs import T0, FakeJobsClient, summary


def utc(*fields: int) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=dt.UTC)


UNKNOWN = WMProxyClientError("JobUnknownFault", "The job has not been registered", "1218", "getJobStatus")


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, fake: FakeClient) -> FakeJobsClient:
    client = FakeJobsClient()
    monkeypatch.setattr(history_opts, "jobs_client", lambda c: client)
    return client


class TestLoggingInfoText:
    def test_reference_layout_at_each_verbosity(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        jobs.histories[JOB] = JobHistory(summary(JOB), (
            JobEvent(T0, "registered", "Submitted", "user"),
            JobEvent(T0 + dt.timedelta(seconds=2), "matched", "Ready", "worker", "matched to CE ce1:8443/q"),
        ))
        result = runner.invoke(cli, ["logging-info", "-v", "2", JOB])
        assert result.exit_code == 0, result.output
        assert result.stdout == "\n".join([
            "", render.stripe("wmproxy logging-info Success"), "", "LOGGING INFORMATION:", "",
            f"Printing info for the Job : {JOB}", " ",
            "\t---", "Event: RegJob",
            "- Source                     =    user",
            "- Status                     =    Submitted",
            "- Timestamp                  =    Thu Nov  5 05:39:00 2026 UTC",
            "\t---", "Event: Match",
            "- Reason                     =    matched to CE ce1:8443/q",
            "- Source                     =    worker",
            "- Status                     =    Ready",
            "- Timestamp                  =    Thu Nov  5 05:39:02 2026 UTC",
            "=" * 74, ""])
        quiet = runner.invoke(cli, ["logging-info", "-v", "0", JOB]).stdout
        assert "- Source" not in quiet and "- Reason" not in quiet and quiet.count("- Timestamp") == 2
        full = runner.invoke(cli, ["logging-info", "-v", "3", JOB]).stdout
        assert f"- Jobid                      =    {JOB}" in full
        assert "- Kind                       =    matched" in full

    def test_event_names_select_kinds(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        runner.invoke(cli, ["logging-info", "--event", "Cancel", "--event", "matched", JOB])
        assert jobs.calls[-1][1][3] == ("cancel_requested", "cancelled", "matched")
        runner.invoke(cli, ["logging-info", "--exclude", "RegJob", JOB])
        assert "registered" not in jobs.calls[-1][1][3] and "done" in jobs.calls[-1][1][3]

    def test_event_codes_select_kinds(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        """glite-wms-job-logging-info takes L&B event codes too (edg_wll_EventCode: 11 Cancel,
        15 Match, 17 RegJob)."""
        result = runner.invoke(cli, ["logging-info", "--event", "11", "--event", "15", JOB])
        assert result.exit_code == 0, result.output
        assert jobs.calls[-1][1][3] == ("cancel_requested", "cancelled", "matched")
        result = runner.invoke(cli, ["logging-info", "-e", "17", JOB])
        assert result.exit_code == 0, result.output
        assert "registered" not in jobs.calls[-1][1][3] and "done" in jobs.calls[-1][1][3]

    @pytest.mark.parametrize("code", ["0", "33", "-1"])
    def test_an_event_code_out_of_range_is_a_usage_error(self, runner: CliRunner, jobs: FakeJobsClient,
                                                          code: str) -> None:
        for option in ("--event", "--exclude"):
            result = runner.invoke(cli, ["logging-info", option, code, JOB])
            assert result.exit_code == 1
            assert result.stderr.startswith("Error - Usage: ") and "an L&B event code is 1 to 32" in result.stderr
            assert option in result.stderr
        assert jobs.calls == []

    @pytest.mark.usefixtures("utc_local_time")  # the gLite forms are local time
    def test_times_are_passed_as_utc(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        result = runner.invoke(cli, ["logging-info", "--from", "2026-11-05T06:00:00+01:00", "--to", "11:06:10:30:2026",
                                     JOB])
        assert result.exit_code == 0, result.output
        _, since, until, _ = jobs.calls[-1][1]
        assert (since, until) == (dt.datetime(2026, 11, 5, 5, 0, tzinfo=dt.UTC),
                                  dt.datetime(2026, 11, 6, 10, 30, 59, 999999, tzinfo=dt.UTC))


class TestParseTime:
    @pytest.mark.usefixtures("utc_local_time")  # the gLite forms are local time
    def test_forms(self) -> None:
        now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        assert history_opts.parse_time("03:04:05:06", "--from", now) == dt.datetime(2030, 3, 4, 5, 6, tzinfo=dt.UTC)
        assert history_opts.parse_time("2026-01-02 03:04", "--from") == dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
        assert history_opts.parse_time(None, "--from") is None

    @pytest.mark.usefixtures("utc_local_time")  # the gLite forms are local time
    @pytest.mark.parametrize(("value", "end"), [
        ("2026-01-02T03:04:05Z", utc(2026, 1, 2, 3, 4, 5, 999999)),
        ("2026-01-02T04:04:05+01:00", utc(2026, 1, 2, 3, 4, 5, 999999)),
        ("20260102T030405", utc(2026, 1, 2, 3, 4, 5, 999999)),
        ("2026-01-02T03:04:05.250Z", utc(2026, 1, 2, 3, 4, 5, 250000)),
        ("2026-01-02 03:04", utc(2026, 1, 2, 3, 4, 59, 999999)),
        ("01:02:03:04:2026", utc(2026, 1, 2, 3, 4, 59, 999999)),
        ("2026-01-02T03", utc(2026, 1, 2, 3, 59, 59, 999999)),
        ("2026-01-02", utc(2026, 1, 2, 23, 59, 59, 999999)),
        ("9999-12-31", utc(9999, 12, 31, 23, 59, 59, 999999)),
    ])
    def test_a_to_bound_is_the_end_of_the_last_unit_given(self, value: str, end: dt.datetime) -> None:
        """Times are printed to the second but stored to the microsecond: ``--to`` a printed
        time ("at or before") must take what happened during that second."""
        assert history_opts.parse_time(value, "--to") == end
        start = history_opts.parse_time(value, "--from")
        assert start is not None and start <= end

    @pytest.mark.parametrize("bad", ["yesterday", "13:40:10:10", "2026-13-01"])
    def test_bad_time(self, bad: str) -> None:
        with pytest.raises(click.BadParameter, match="is not a time"):
            history_opts.parse_time(bad, "--to")

    def test_user_tags(self) -> None:
        assert history_opts.parse_user_tags(["a=1", " b = x y "]) == {"a": "1", "b": "x y"}
        with pytest.raises(click.BadParameter):
            history_opts.parse_user_tags(["novalue"])


class TestStatusVerbosity:
    def test_level_1_adds_destination_submitted_missing_outputs_and_node_summary(
            self, runner: CliRunner, fake: FakeClient, jobs: FakeJobsClient) -> None:
        fake.status = JobStatus(JOB, "Done (Exit Code 0)", exit_code=0)
        jobs.histories[JOB] = JobHistory(summary(JOB, "Done", exit_code=0, missing_outputs=(("x.out", "not produced"),),
                                                 node_states={"Done": 2, "Running": 1}), ())
        lines = runner.invoke(cli, ["status", JOB]).stdout.splitlines()
        assert "Missing output:     x.out (not produced)" in lines
        assert "Destination:        localhost:7443/local-default" in lines
        assert "Submitted:          Thu Nov  5 05:39:00 2026 UTC" in lines
        assert "Nodes:              3 (2 Done, 1 Running)" in lines
        assert "Owner:              /C=XX/O=Grid/CN=Alice" not in lines

    def test_level_2_and_3(self, runner: CliRunner, fake: FakeClient, jobs: FakeJobsClient) -> None:
        fake.jdls[(JOB, "REGISTERED")] = '[\n  Executable = "/bin/true"\n]'
        out = runner.invoke(cli, ["status", "-v", "2", JOB]).stdout
        assert "Owner:              /C=XX/O=Grid/CN=Alice" in out
        assert "    - Waiting         = Thu Nov  5 05:39:01 2026 UTC" in out and "Jdl:" not in out
        out = runner.invoke(cli, ["status", "-v", "3", JOB]).stdout
        assert 'Jdl:\n    [\n      Executable = "/bin/true"\n    ]\n' in out

    def test_level_3_of_a_job_purged_meanwhile_has_no_jdl(self, runner: CliRunner, fake: FakeClient,
                                                          jobs: FakeJobsClient) -> None:
        """getJDL refuses a purged job (JobUnknownFault) though getJobStatus answered: -v 3 is -v 2."""
        fake.fail["get_jdl"] = WMProxyClientError("JobUnknownFault", "The job has been purged", "1218", "getJDL")
        result = runner.invoke(cli, ["status", "-v", "3", JOB])
        assert result.exit_code == 0, result.output
        assert result.stdout == runner.invoke(cli, ["status", "-v", "2", JOB]).stdout
        fake.fail["get_jdl"] = WMProxyClientError("AuthorizationFault", "user not authorized", "1207", "getJDL")
        result = runner.invoke(cli, ["status", "-v", "3", JOB])
        assert result.exit_code == 1 and "AuthorizationFault" in result.stderr

    def test_level_0_asks_only_getjobstatus(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        out = runner.invoke(cli, ["status", "-v", "0", JOB]).stdout
        assert "Current Status:     Running" in out and "Destination" not in out and jobs.calls == []

    def test_a_service_without_the_extension_still_answers(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        jobs.fail[JOB] = WMProxyClientError(
            "InvalidArgumentFault", "Unknown operation {http://wmproxy.org/namespaces/jobs-1}getJobEvents")
        result = runner.invoke(cli, ["status", JOB, JOB + "2"])
        assert result.exit_code == 0 and result.stdout.count("Current Status:     Running") == 2
        assert len(jobs.calls) == 1  # asked once, then left alone


class TestBatches:
    def test_goes_on_past_a_bad_id_and_exits_1(self, runner: CliRunner, fake: FakeClient,
                                                monkeypatch: pytest.MonkeyPatch, jobs: FakeJobsClient) -> None:
        unknown = JOB + "Unknown"  # a well-formed id the service does not know

        def status(job_id: str) -> JobStatus:
            if job_id == unknown:
                raise UNKNOWN
            return JobStatus(job_id, "Running")

        monkeypatch.setattr(fake, "get_job_status", status)
        result = runner.invoke(cli, ["status", JOB, unknown, JOB + "2"])
        assert result.exit_code == 1
        assert f"Status info for the Job : {JOB}\n" in result.stdout
        assert f"Status info for the Job : {JOB}2\n" in result.stdout
        assert result.stderr == f"Error - JobUnknownFault: The job has not been registered (job {unknown})\n"
        data = json.loads(runner.invoke(cli, ["status", "--json", JOB, unknown]).stdout)
        assert data["result"] == "partial"
        assert data["errors"] == [{"jobid": unknown, "error": {"type": "JobUnknownFault",
                                                               "message": "The job has not been registered"}}]
        data = json.loads(runner.invoke(cli, ["status", "--json", unknown]).stdout)
        assert (data["result"], data["jobs"]) == ("failure", [])

    def test_whole_verb_error_is_a_json_object(self, runner: CliRunner, fake: FakeClient,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("GLITE_WMS_WMPROXY_ENDPOINT")
        result = runner.invoke(cli, ["logging-info", "--json", JOB])
        assert result.exit_code == 1 and result.stderr == ""
        data = json.loads(result.stdout)
        assert set(data) == {"result", "error"} and data["result"] == "failure"
        assert data["error"]["type"] == "Configuration" and "no WMProxy endpoint" in data["error"]["message"]


class TestAll:
    def test_table_and_filters(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        jobs.jobs = [summary(JOB + "2", "Done", exit_code=1), summary(JOB, "Running", destination=None)]
        result = runner.invoke(cli, ["status", "--all", "-s", "Done", "--from", "2026-11-01",
                                     "--user-tag", "campaign=a"])
        assert result.exit_code == 0, result.output
        assert jobs.calls[-1] == ("list_all_jobs", {
            "states": ("Done",), "exclude_states": (), "since": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            "until": None, "user_tags": {"campaign": "a"}})
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["JOBID", "STATUS", "SUBMITTED", "(UTC)", "DESTINATION"]
        assert lines[1].split()[:4] == [JOB + "2", "Done", "(Exit", "Code"]
        assert lines[2].split() == [JOB, "Running", "2026-11-05", "05:39:00", "-"]
        assert lines[-1] == "2 job(s): 1 Done, 1 Running"

    def test_json(self, runner: CliRunner, jobs: FakeJobsClient) -> None:
        jobs.jobs = [summary(JOB)]
        data = json.loads(runner.invoke(cli, ["status", "--all", "--json"]).stdout)
        assert (data["result"], data["total"], data["errors"]) == ("success", 1, [])
        assert data["jobs"][0]["jobid"] == JOB and data["jobs"][0]["submitted"] == "2026-11-05T05:39:00Z"

    @pytest.mark.parametrize("args", [["--all", JOB], ["--all", "-i", "jobs.txt"]])
    def test_usage_errors(self, runner: CliRunner, jobs: FakeJobsClient, args: list[str]) -> None:
        assert runner.invoke(cli, ["status", *args]).exit_code == 1

    @pytest.mark.parametrize("args", [["--all"], [], [JOB]], ids=["all", "filters-only", "jobs-given"])
    def test_status_and_exclude_exclude_each_other(self, runner: CliRunner, jobs: FakeJobsClient,
                                                   args: list[str]) -> None:
        """glite-wms-job-status refuses --status with --exclude (checkExclude: UI_ARG_EXCLUSIVE)."""
        result = runner.invoke(cli, ["status", "-s", "Done", "--exclude", "Aborted", *args])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Usage: -s/--status and -e/--exclude cannot be given together"), \
            result.stderr
        assert result.stdout == "" and jobs.calls == []
