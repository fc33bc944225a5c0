"""gLite ``glite-wms-job-*`` option compatibility, against the service in-process behind real
TLS: status filters on the jobs given (or all jobs), state codes, ``hh:mm`` times read as local
time, ``-e`` = ``--exclude`` for status and logging-info, the ``<LOGNAME>_<id>`` output
directory, options gLite scripts pass (``--vo``, ``--pretty-print``, ...) and the default
client configuration."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from tests.conftest import Pki
from tests.support import ECHO_JDL, principal_of
from tests.voms_support import fake_voms_proxy, fake_voms_server
from wmproxy.cli import history_opts
from wmproxy.cli.main import cli
from wmproxy.domain import JobState
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job

from .conftest import local_time_zone
from .https_server import registered_job


@pytest.fixture
def local_zone() -> Iterator[dt.tzinfo]:
    """The process's local time zone set to UTC+03:00 (no daylight saving) for the test."""
    with local_time_zone("XYZ-03"):
        yield dt.timezone(dt.timedelta(hours=3))


def status_json(runner: CliRunner, *args: str) -> tuple[int, dict]:
    result = runner.invoke(cli, ["status", "--json", *args])
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


def listed(doc: dict) -> list[str]:
    return [job["jobid"] for job in doc["jobs"]]


@pytest.fixture
def done_and_running(service: Runtime, pki: Pki) -> tuple[str, str]:
    _, done = registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)
    _, running = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
    return done, running


class TestStatusFilters:
    """glite-wms-job-status filters the jobs given, or all the user's jobs, without --all
    (CTB WMS-cli-status-all.sh: ``--status DONE``, ``--exclude DONE``, ``--from 06:00``)."""

    def test_filter_the_jobs_given(self, runner: CliRunner, done_and_running: tuple[str, str]) -> None:
        done, running = done_and_running
        code, doc = status_json(runner, "--status", "DONE", done, running)
        assert code == 0, doc
        assert listed(doc) == [done] and doc["errors"] == []
        code, doc = status_json(runner, "--exclude", "done", done, running)
        assert (code, listed(doc)) == (0, [running])

    def test_filter_all_jobs_when_none_is_given(self, runner: CliRunner, done_and_running: tuple[str, str]) -> None:
        done, running = done_and_running
        code, doc = status_json(runner, "--status", "DONE")
        assert (code, listed(doc)) == (0, [done]), doc
        code, doc = status_json(runner, "--exclude", "Done")
        assert (code, listed(doc)) == (0, [running]), doc

    @pytest.mark.parametrize(("code", "state"), [("6", "Done"), ("5", "Running")])
    def test_state_codes_are_the_lb_ones(self, runner: CliRunner, done_and_running: tuple[str, str], code: str,
                                         state: str) -> None:
        done, running = done_and_running
        exit_code, doc = status_json(runner, "-s", code, done, running)
        assert (exit_code, listed(doc)) == (0, [done if state == "Done" else running]), doc

    def test_a_state_no_job_of_the_service_is_in_matches_none(self, runner: CliRunner,
                                                              done_and_running: tuple[str, str]) -> None:
        code, doc = status_json(runner, "-s", "11")  # Purged
        assert (code, listed(doc)) == (0, []), doc
        code, doc = status_json(runner, "--exclude", "purged")
        assert (code, sorted(listed(doc))) == (0, sorted(done_and_running)), doc

    @pytest.mark.parametrize("bad", ["12", "-1", "Finished"])
    def test_bad_states_are_usage_errors(self, runner: CliRunner, bad: str) -> None:
        result = runner.invoke(cli, ["status", "--all", "-s", bad])
        assert result.exit_code == 1 and "state" in result.output

    def test_from_hh_mm_is_today(self, runner: CliRunner, service: Runtime, pki: Pki,
                                 local_zone: dt.tzinfo) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        noon = dt.datetime.now(local_zone).replace(hour=12, minute=0, second=0, microsecond=0)
        with service.uow() as uow:
            uow.session.execute(update(Job).where(Job.id == job_id).values(created_at=noon.astimezone(dt.UTC)))
        assert listed(status_json(runner, "--from", "11:59", job_id)[1]) == [job_id]
        assert listed(status_json(runner, "--from", "12:01", job_id)[1]) == []
        assert listed(status_json(runner, "--to", "12:00")[1]) == [job_id]
        assert listed(status_json(runner, "--to", "11:59")[1]) == []


class TestTimes:
    def test_glite_forms_are_local_time(self, local_zone: dt.tzinfo) -> None:
        now = dt.datetime(2030, 5, 6, 4, 8, tzinfo=dt.UTC)  # 07:08 local time
        parse = history_opts.parse_time
        assert parse("06:00", "--from", now) == dt.datetime(2030, 5, 6, 3, 0, tzinfo=dt.UTC)
        assert parse("03:04:05:06", "--from", now) == dt.datetime(2030, 3, 4, 2, 6, tzinfo=dt.UTC)
        assert parse("03:04:05:06:2031", "--from", now) == dt.datetime(2031, 3, 4, 2, 6, tzinfo=dt.UTC)
        assert parse("03:04:05:06:31", "--from", now) == dt.datetime(2031, 3, 4, 2, 6, tzinfo=dt.UTC)
        assert parse("06:00", "--to", now) == dt.datetime(2030, 5, 6, 3, 0, 59, 999999, tzinfo=dt.UTC)

    def test_daylight_saving_time_of_the_date_given(self) -> None:
        """As ``time.mktime``: the offset of the date given, not of today."""
        with local_time_zone("CET-1CEST,M3.5.0,M10.5.0/3"):
            now = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
            assert history_opts.parse_time("07:01:12:00", "--from", now) == dt.datetime(2030, 7, 1, 10, 0,
                                                                                         tzinfo=dt.UTC)
            assert history_opts.parse_time("12:00", "--from", now) == dt.datetime(2030, 1, 15, 11, 0, tzinfo=dt.UTC)

    def test_the_current_date_is_the_local_one(self, local_zone: dt.tzinfo) -> None:
        """At 01:30 local time (22:30 UTC the day before) ``hh:mm`` is on the local date."""
        now = dt.datetime(2030, 5, 5, 22, 30, tzinfo=dt.UTC)
        assert history_opts.parse_time("01:00", "--from", now) == dt.datetime(2030, 5, 5, 22, 0, tzinfo=dt.UTC)

    @pytest.mark.parametrize("bad", ["13:40:10:10", "10:10:10", "25:00", "1:2:3:4:123"])
    def test_bad_forms(self, bad: str) -> None:
        with pytest.raises(Exception, match="is not a time"):
            history_opts.parse_time(bad, "--from")


class TestShortExclude:
    """``-e`` is ``--exclude`` for status and logging-info (glite-wms-job-status ``s:e:``)."""

    def test_status(self, runner: CliRunner, done_and_running: tuple[str, str]) -> None:
        done, running = done_and_running
        code, doc = status_json(runner, "--all", "-e", "Done")
        assert (code, listed(doc)) == (0, [running]), doc
        code, doc = status_json(runner, "-e", "6", done, running)
        assert (code, listed(doc)) == (0, [running]), doc

    def test_logging_info(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)
        result = runner.invoke(cli, ["logging-info", "--json", "-e", "RegJob", job_id])
        assert result.exit_code == 0, result.output
        assert [e["event"] for e in json.loads(result.stdout)["jobs"][0]["events"]] == []

    def test_the_endpoint_is_the_long_option(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)
        endpoint = service.settings.service.endpoint
        code, doc = status_json(runner, "--endpoint", endpoint, job_id)
        assert (code, listed(doc)) == (0, [job_id]), doc
        result = runner.invoke(cli, ["logging-info", "--json", "--endpoint", endpoint, job_id])
        assert result.exit_code == 0, result.output


def done_job_with_output(rt: Runtime, pki: Pki, files: dict[str, str]) -> str:
    """A Done job of alice's whose output area holds ``files`` (name -> text)."""
    _, job_id = registered_job(rt, pki, ECHO_JDL, JobState.DONE, exit_code=0)
    area = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output")
    for name, text in files.items():
        (area / name).write_text(text)
    return job_id


def files_under(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


class TestOutputDirectory:
    """glite-wms-job-output (joboutput.cpp): ``--dir D`` stores each job's files in
    ``D/<LOGNAME>_<unique part of the id>`` (``jobOutput_...`` without ``$LOGNAME``), one job
    as several; ``--nosubdir`` in ``D`` itself."""

    def test_one_job_goes_to_logname_and_unique_part(self, runner: CliRunner, service: Runtime, pki: Pki,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOGNAME", "carol")
        job_id = done_job_with_output(service, pki, {"std.out": "hello grid\n"})
        result = runner.invoke(cli, ["output", "--dir", str(tmp_path / "out"), job_id])
        assert result.exit_code == 0, result.output
        sub = f"carol_{job_id.rsplit('/', 1)[1]}"
        assert files_under(tmp_path / "out") == {f"{sub}/std.out": "hello grid\n"}
        assert f"stored in the directory:\n{tmp_path / 'out' / sub}\n" in result.stdout

    def test_without_logname_it_is_job_output(self, runner: CliRunner, service: Runtime, pki: Pki,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("LOGNAME", raising=False)
        monkeypatch.setenv("USER", "carol")  # not read: gLite reads $LOGNAME alone
        job_id = done_job_with_output(service, pki, {"std.out": "x"})
        result = runner.invoke(cli, ["output", "--json", "--dir", str(tmp_path), job_id])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["dir"] == str(tmp_path / f"jobOutput_{job_id.rsplit('/', 1)[1]}")

    def test_nosubdir_stores_in_the_directory_itself(self, runner: CliRunner, service: Runtime, pki: Pki,
                                                     tmp_path: Path) -> None:
        job_id = done_job_with_output(service, pki, {"std.out": "x"})
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path / "out"), job_id])
        assert result.exit_code == 0, result.output
        assert files_under(tmp_path / "out") == {"std.out": "x"}
        assert jobs.job_status(service, principal_of(pki, "alice"), job_id).state == "Cleared"

    def test_perusal_names_its_default_job_perusal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from wmproxy.cli.output import default_dir

        monkeypatch.delenv("LOGNAME", raising=False)
        job = "https://wms.example.org:9000/AbCdEfGhIjKlMnOpQrStUv"
        assert default_dir(job) == "/tmp/jobOutput_AbCdEfGhIjKlMnOpQrStUv"
        assert default_dir(job, "jobPerusal") == "/tmp/jobPerusal_AbCdEfGhIjKlMnOpQrStUv"
        monkeypatch.setenv("LOGNAME", "carol")
        assert default_dir(job, "jobPerusal") == "/tmp/carol_AbCdEfGhIjKlMnOpQrStUv"


def registered_jdl(rt: Runtime, job_id: str) -> str:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.jdl_registered or ""


class TestGliteOptionsAccepted:
    """Options of the gLite commands that made a verb fail with exit 2."""

    VERBS = ("submit", "status", "logging-info", "cancel", "output", "list-match", "info", "delegate-proxy",
             "perusal")

    @pytest.mark.parametrize("verb", VERBS)
    def test_vo_on_every_verb(self, runner: CliRunner, verb: str) -> None:
        result = runner.invoke(cli, [verb, "--vo", "dteam", "--help"])
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize("verb", ["submit", "cancel", "output", "list-match"])
    def test_pretty_print(self, runner: CliRunner, verb: str) -> None:
        result = runner.invoke(cli, [verb, "--pretty-print", "--help"])
        assert result.exit_code == 0, result.output

    def test_vo_is_the_virtual_organisation_of_a_jdl_without_one(self, runner: CliRunner, service: Runtime,
                                                                tmp_path: Path) -> None:
        jdl = tmp_path / "job.jdl"
        jdl.write_text('[ Executable = "/bin/true"; ]')
        ids = tmp_path / "ids.txt"
        result = runner.invoke(cli, ["submit", "-a", "--nomsg", "--vo", "dteam", "--pretty-print", "-o", str(ids),
                                     str(jdl)])
        assert result.exit_code == 0, result.output
        job_id = ids.read_text().splitlines()[-1]
        assert 'VirtualOrganisation = "dteam"' in registered_jdl(service, job_id)
        jdl.write_text('[ Executable = "/bin/true"; VirtualOrganisation = "atlas"; ]')
        result = runner.invoke(cli, ["submit", "-a", "--nomsg", "--vo", "dteam", "-o", str(ids), str(jdl)])
        assert result.exit_code == 0, result.output
        assert 'VirtualOrganisation = "atlas"' in registered_jdl(service, ids.read_text().splitlines()[-1])

    def test_vo_and_config_are_not_taken_together(self, runner: CliRunner, tmp_path: Path) -> None:
        conf = tmp_path / "c.conf"
        conf.write_text("[client]\nvo = dteam\n")
        result = runner.invoke(cli, ["status", "--vo", "dteam", "-c", str(conf), "https://localhost:1/x"])
        assert result.exit_code == 1 and "--vo and -c/--config" in result.output

    def test_status_vo_and_nonodes(self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path) -> None:
        collection = ('[ Type = "collection"; Nodes = { [ Executable = "/bin/true"; ], '
                      '[ Executable = "/bin/false"; ] }; ]')
        _, job_id = registered_job(service, pki, collection, JobState.SUBMITTED)
        code, doc = status_json(runner, "--vo", "dteam", "-v", "2", job_id)
        assert code == 0 and len(doc["jobs"][0]["nodes"]) == 2, doc
        code, doc = status_json(runner, "--vo", "dteam", "-v", "2", "--nonodes", job_id)
        assert code == 0 and "nodes" not in doc["jobs"][0], doc
        text = runner.invoke(cli, ["status", job_id])
        assert text.exit_code == 0 and "Nodes information" in text.stdout, text.output
        text = runner.invoke(cli, ["status", "--nonodes", job_id])
        assert text.exit_code == 0 and "Nodes information" not in text.stdout, text.output

    def test_logging_info_user_tag(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        tagged = ECHO_JDL.replace("[", '[ UserTags = [ campaign = "c1" ];', 1)
        _, first = registered_job(service, pki, tagged, JobState.SUBMITTED)
        _, second = registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)
        result = runner.invoke(cli, ["logging-info", "--json", "--vo", "dteam", "--user-tag", "campaign=c1", first,
                                     second])
        assert result.exit_code == 0, result.output
        assert [job["jobid"] for job in json.loads(result.stdout)["jobs"]] == [first]

    def test_perusal_output_and_proto(self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path) -> None:
        jdl = ECHO_JDL.replace("[", "[ PerusalFileEnable = true;", 1)
        _, job_id = registered_job(service, pki, jdl, JobState.RUNNING)
        saved = tmp_path / "perused.txt"
        result = runner.invoke(cli, ["perusal", "--set", "-f", "out.txt", "-f", "err.txt", "--vo", "dteam",
                                     "-o", str(saved), job_id])
        assert result.exit_code == 0, result.output
        assert saved.read_text() == f"###File perusal enabled for the job {job_id}###\nout.txt\nerr.txt\n"
        service.storage.create_area(service.storage.job_rel_dir(job_id), "output")
        service.storage.write_perusal_chunk(job_id, "out.txt", b"first lines\n", 100)
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--proto", "https", "--output", str(saved),
                                     "--dir", str(tmp_path / "p"), "--nodisplay", job_id])
        assert result.exit_code == 0, result.output
        chunk = tmp_path / "p" / "out.txt-100-100"
        assert chunk.read_text() == "first lines\n"
        assert saved.read_text().endswith(f"###Perusal: file(s) retrieved for the job {job_id}###\n{chunk}\n")


def glite_conf(path: Path, endpoint: str, *extra: str) -> Path:
    """A gLite UI ``glite_wms.conf`` naming ``endpoint`` (and ``extra`` attributes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"    {line};\n" for line in (f'WMProxyEndpoints = {{ "{endpoint}" }}', *extra))
    path.write_text(f"[\n  WmsClient = [\n{body}  ];\n]\n")
    return path


class TestDefaultConfiguration:
    """gLite (utils.cpp ``checkConf``): ``--config``, else ``$GLITE_WMSUI_COMMANDS_CONFIG``, else
    ``$EMI_UI_CONF/etc/glite-wms/<vo>/glite_wms.conf`` (VO: ``--vo``, else the proxy's VOMS
    attribute); its ``OutputStorage`` is where ``output`` stores without ``--dir``."""

    @pytest.fixture
    def no_endpoint(self, service: Runtime, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.delenv("GLITE_WMS_WMPROXY_ENDPOINT")
        monkeypatch.delenv("WMPROXY_CLIENT_CONFIG", raising=False)
        monkeypatch.delenv("GLITE_WMSUI_COMMANDS_CONFIG", raising=False)
        return service.settings.service.endpoint

    def test_glite_wmsui_commands_config(self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, no_endpoint: str) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        assert runner.invoke(cli, ["status", job_id]).exit_code == 1  # no endpoint anywhere
        monkeypatch.setenv("GLITE_WMSUI_COMMANDS_CONFIG", str(glite_conf(tmp_path / "ui.conf", no_endpoint)))
        code, doc = status_json(runner, job_id)
        assert (code, listed(doc)) == (0, [job_id]), doc

    def test_the_vo_file_and_its_output_storage(self, runner: CliRunner, service: Runtime, pki: Pki,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 no_endpoint: str) -> None:
        store = tmp_path / "store"
        store.mkdir()
        monkeypatch.setenv("EMI_UI_CONF", str(tmp_path / "prefix"))
        monkeypatch.setenv("STORE_ROOT", str(tmp_path))
        monkeypatch.setenv("LOGNAME", "carol")
        glite_conf(tmp_path / "prefix" / "etc" / "glite-wms" / "dteam" / "glite_wms.conf", no_endpoint,
                   'OutputStorage = "$STORE_ROOT/store/"')
        job_id = done_job_with_output(service, pki, {"std.out": "hello\n"})
        result = runner.invoke(cli, ["output", "--vo", "DTeam", job_id])
        assert result.exit_code == 0, result.output
        assert files_under(store) == {f"carol_{job_id.rsplit('/', 1)[1]}/std.out": "hello\n"}

    def test_an_output_storage_that_is_no_directory_is_a_configuration_error(
            self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, no_endpoint: str) -> None:
        conf = glite_conf(tmp_path / "ui.conf", no_endpoint, f'OutputStorage = "{tmp_path / "absent"}"')
        job_id = done_job_with_output(service, pki, {"std.out": "x"})
        result = runner.invoke(cli, ["output", "-c", str(conf), job_id])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error - Configuration: the OutputStorage {tmp_path / 'absent'} of {conf} "
                                        "is not a directory")
        assert jobs.job_status(service, principal_of(pki, "alice"), job_id).state == "Done"  # not purged

    def test_the_vo_of_the_proxy(self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, no_endpoint: str) -> None:
        proxy = fake_voms_proxy(pki, fake_voms_server(pki, tmp_path / "voms"), tmp_path / "voms-proxy.pem")
        monkeypatch.setenv("X509_USER_PROXY", str(proxy))
        monkeypatch.setenv("EMI_UI_CONF", str(tmp_path / "prefix"))
        glite_conf(tmp_path / "prefix" / "etc" / "glite-wms" / "atlas" / "glite_wms.conf", no_endpoint)
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        code, doc = status_json(runner, job_id)
        assert (code, listed(doc)) == (0, [job_id]), doc


class TestPrettyPrint:
    """``--pretty-print``: the ``--json`` document indented, as gLite prints it."""

    def test_the_document_is_indented(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        compact = runner.invoke(cli, ["status", "--json", job_id])
        pretty = runner.invoke(cli, ["status", "--json", "--pretty-print", job_id])
        assert (compact.exit_code, pretty.exit_code) == (0, 0), pretty.output
        assert pretty.stdout == json.dumps(json.loads(compact.stdout), indent=2) + "\n"
        assert pretty.stdout.startswith('{\n  "result": "success",\n')

    def test_an_error_document_too(self, runner: CliRunner, service: Runtime) -> None:
        result = runner.invoke(cli, ["cancel", "--json", "--pretty-print", "--noint", "not-a-job-id"])
        assert result.exit_code == 1
        assert result.stdout.startswith('{\n  "result": "failure",\n'), result.stdout
        assert json.loads(result.stdout)["error"]["type"] == "Input"

    def test_without_json_nothing_changes(self, runner: CliRunner, service: Runtime, pki: Pki) -> None:
        _, job_id = registered_job(service, pki, ECHO_JDL, JobState.RUNNING)
        plain = runner.invoke(cli, ["status", job_id])
        assert runner.invoke(cli, ["status", "--pretty-print", job_id]).stdout == plain.stdout
