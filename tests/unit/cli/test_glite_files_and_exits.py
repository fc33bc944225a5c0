"""What scripts written for the gLite ``glite-wms-job-*`` tools rely on, against the service
in-process behind real TLS: how ``-o FILE`` is written (``Utils::saveToFile``), the exit status
of a declined question, the ``delegate-proxy -o`` file the CTB tests read with awk, the bounded
reading of local files, and usage errors in the ``Error -`` format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL, principal_of
from wmproxy.cli.main import cli
from wmproxy.domain import JobState
from wmproxy.jdl import parse_jdl
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime

from .https_server import registered_job


@pytest.fixture
def done_job(service: Runtime, pki: Pki) -> str:
    return registered_job(service, pki, ECHO_JDL, JobState.DONE, exit_code=0)[1]


def _status(runner: CliRunner, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["status", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


class TestResultFileIsOverwrittenWithoutQuestion:
    """gLite: under ``--noint`` or ``--json`` an existing ``-o FILE`` is replaced (the Python
    status/logging-info remove it; the C++ tools' ``saveToFile`` truncates it)."""

    def test_noint_keeps_only_the_last_status(self, runner: CliRunner, done_job: str, tmp_path: Path) -> None:
        out = tmp_path / "poll.txt"
        out.write_text("Current Status: Running (stale)\n")
        for _ in range(2):
            code, stdout, stderr = _status(runner, "--noint", "-v", "0", "-o", str(out), done_job)
            assert code == 0, stderr
            assert stdout == ""
        printed = runner.invoke(cli, ["status", "-v", "0", done_job]).stdout
        assert out.read_text() == printed and "Done" in printed

    @pytest.mark.parametrize("verb", ["status", "logging-info"])
    def test_json_stays_one_document(self, runner: CliRunner, done_job: str, tmp_path: Path, verb: str) -> None:
        out = tmp_path / "s.json"
        for noint in (["--noint"], []):
            for _ in range(2):
                result = runner.invoke(cli, [verb, "--json", *noint, "-o", str(out), done_job])
                assert result.exit_code == 0, result.output
                assert "already exists" not in result.stderr
                assert json.loads(out.read_text())["result"] == "success"

    def test_a_new_file_is_written_without_question(self, runner: CliRunner, done_job: str, tmp_path: Path) -> None:
        out = tmp_path / "new.txt"
        code, _, stderr = _status(runner, "-o", str(out), done_job, stdin="")
        assert code == 0 and "already exists" not in stderr
        assert done_job in out.read_text()


class TestResultFileQuestion:
    """Without ``--noint``, an existing FILE: gLite asks "append (a) or overwrite (o)", 'q' for
    not saving, and asks again for anything else."""

    @pytest.fixture
    def out(self, tmp_path: Path) -> Path:
        path = tmp_path / "result.txt"
        path.write_text("previous\n")
        return path

    def test_append(self, runner: CliRunner, done_job: str, out: Path) -> None:
        code, stdout, stderr = _status(runner, "-o", str(out), done_job, stdin="a\n")
        assert code == 0
        assert f"{out} file already exists\nDo you want to append (a) or to overwrite (o) ?" in stderr
        assert out.read_text().startswith("previous\n") and done_job in out.read_text()
        assert stdout == ""

    def test_overwrite_after_a_wrong_answer(self, runner: CliRunner, done_job: str, out: Path) -> None:
        code, _, stderr = _status(runner, "-o", str(out), done_job, stdin="x\no\n")
        assert code == 0
        assert stderr.count("Do you want to append (a) or to overwrite (o) ?") == 2
        assert not out.read_text().startswith("previous") and done_job in out.read_text()

    def test_q_prints_the_result_instead(self, runner: CliRunner, done_job: str, out: Path) -> None:
        code, stdout, _ = _status(runner, "-o", str(out), done_job, stdin="q\n")
        assert code == 0
        assert out.read_text() == "previous\n"
        assert done_job in stdout

    def test_end_of_input_overwrites_as_without_question(self, runner: CliRunner, done_job: str,
                                                         out: Path) -> None:
        code, _, stderr = _status(runner, "-o", str(out), done_job, stdin="")
        assert code == 0, stderr
        assert "Aborted" not in stderr
        assert not out.read_text().startswith("previous") and done_job in out.read_text()


class TestCancel:
    @pytest.fixture
    def job(self, service: Runtime, pki: Pki) -> str:
        return registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)[1]

    def test_noint_overwrites_the_result_file(self, runner: CliRunner, job: str, tmp_path: Path) -> None:
        out = tmp_path / "cancel.txt"
        out.write_text("stale\n")
        result = runner.invoke(cli, ["cancel", "--noint", "-o", str(out), job])
        assert result.exit_code == 0, result.output
        assert not out.read_text().startswith("stale") and job in out.read_text()

    def test_declining_exits_1(self, runner: CliRunner, job: str, service: Runtime) -> None:
        result = runner.invoke(cli, ["cancel", job], input="n\n")
        assert result.exit_code == 1
        assert result.stderr.rstrip().endswith("bye")
        with service.uow() as uow:
            stored = uow.jobs.get(job)
            assert stored is not None and stored.state == JobState.SUBMITTED.value

    def test_end_of_input_takes_the_default_yes(self, runner: CliRunner, job: str) -> None:
        result = runner.invoke(cli, ["cancel", job], input="")
        assert result.exit_code == 0, result.output
        assert "Aborted" not in result.stderr
        assert f"- {job}" in result.stdout


def _awk_last_field(text: str, pattern: str) -> list[str]:
    """``awk -F ' ' '/<pattern>/ {print $NF}'`` (the CTB test WMS-cli-delegate-proxy.sh)."""
    return [line.split()[-1] for line in text.splitlines() if pattern in line and line.split()]


class TestDelegateProxyFile:
    """gLite's ``DelegateProxy::infoToFile``: the -o file holds ``WMProxy: <endpoint>`` and
    ``delegation ID: <id>``; the full message is still printed."""

    def test_the_ctb_awk_lines_read_the_endpoint_and_the_id(self, runner: CliRunner, service: Runtime,
                                                            tmp_path: Path) -> None:
        out = tmp_path / "deleg.out"
        result = runner.invoke(cli, ["delegate-proxy", "--noint", "-d", "ctb-id", "-o", str(out)])
        assert result.exit_code == 0, result.output
        endpoint = service.settings.service.endpoint
        text = out.read_text()
        assert _awk_last_field(text, "WMProxy") == [endpoint]
        assert _awk_last_field(text, "delegation") == ["ctb-id"]
        lines = text.splitlines()
        assert lines[0].startswith("wmproxy delegate-proxy (") and lines[1] == "=" * 73
        assert "Your proxy has been successfully delegated to the WMProxy(s):" in result.stdout
        assert "with the delegation identifier: ctb-id\n" in result.stdout
        assert f"The DelegateProxy result  has been saved in the following file:\n{out}\n" in result.stdout

    def test_automatic_writes_the_id_the_service_chose(self, runner: CliRunner, service: Runtime,
                                                       tmp_path: Path) -> None:
        out = tmp_path / "deleg.out"
        out.write_text("stale WMProxy: https://old\n")
        result = runner.invoke(cli, ["delegate-proxy", "--noint", "-a", "-o", str(out)])
        assert result.exit_code == 0, result.output
        shown = result.stdout.split("with the delegation identifier: ", 1)[1].split("\n", 1)[0]
        assert _awk_last_field(out.read_text(), "WMProxy") == [service.settings.service.endpoint]
        assert _awk_last_field(out.read_text(), "delegation") == [shown] and shown


class TestUsageErrors:
    """gLite's commands return 1 for an option error (wmp-job-submit.cpp); the CLI reports it as
    any other error, not with click's ``Usage:`` text and exit 2."""

    @pytest.mark.parametrize(("args", "said"), [
        (["delegate-proxy"], "exactly one of -d/--delegationid and -a/--autm-delegation is required"),
        (["status", "--bogus", "x"], "No such option '--bogus'"),
        (["status", "-v", "9", "x"], "9 is not in the range 0<=x<=3"),
        (["submit", "-d", "dg"], "give exactly one of JDLFILE and --collection DIR"),
        (["nosuch"], "No such command 'nosuch'"),
    ])
    def test_one_error_line_exit_1(self, runner: CliRunner, service: Runtime, args: list[str], said: str) -> None:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Usage: ") and said in result.stderr
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""

    def test_json_gets_the_json_error(self, runner: CliRunner, service: Runtime) -> None:
        result = runner.invoke(cli, ["delegate-proxy", "--json"])
        assert result.exit_code == 1
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "Usage" and "exactly one of -d" in error["message"]

    def test_no_verb_prints_the_help_exit_1(self, runner: CliRunner) -> None:
        result = runner.invoke(cli, [])
        assert result.exit_code == 1 and "Commands:" in result.output


class TestCeChoice:
    """``submit -i CEFILE`` without ``--noint`` asks which CE; no answer or the end of input is
    the first, as ``--noint`` takes it, not click's ``Aborted!``."""

    @pytest.mark.parametrize(("stdin", "chosen"), [("", "ce1.example.org:8443/q"),
                                                   ("9\n2\n", "ce2.example.org:8443/q")])
    def test_answer(self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path, stdin: str,
                    chosen: str) -> None:
        (tmp_path / "ces").write_text("# CEs\nce1.example.org:8443/q\nce2.example.org:8443/q\n")
        (tmp_path / "job.jdl").write_text('[ Executable = "/bin/true"; ]')
        result = runner.invoke(cli, ["submit", "-a", "--nomsg", "--register-only", "-i", str(tmp_path / "ces"),
                                     str(tmp_path / "job.jdl")], input=stdin)
        assert result.exit_code == 0, result.output
        assert "Aborted" not in result.stderr
        job_id = result.stdout.strip().splitlines()[-1]
        registered = parse_jdl(jobs.get_jdl(service, principal_of(pki, "alice"), job_id, "ORIGINAL"))
        assert registered["SubmitTo"] == chosen
