"""Control characters in text the server gives (reasons, file names, JDL values, fault messages)
are printed as ``\\xNN`` in the human formats: U+009B (CSI) would otherwise start a terminal
command. ``--json`` keeps the exact text."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL
from wmproxy.cli.main import cli
from wmproxy.client import OutputFile, WMProxyClientError
from wmproxy.domain import JobState
from wmproxy.services.runtime import Runtime

from .conftest import JOB, FakeClient
from .https_server import registered_job

CSI = "\x9b"


def test_a_status_reason_is_printed_escaped(runner: CliRunner, service: Runtime, pki: Pki) -> None:
    _, job_id = registered_job(service, pki, ECHO_JDL, JobState.ABORTED, reason=f"bad {CSI}2J news")
    result = runner.invoke(cli, ["status", job_id])
    assert result.exit_code == 0, result.output
    assert "Status Reason:      bad \\x9b2J news\n" in result.stdout
    assert CSI not in result.stdout
    result = runner.invoke(cli, ["status", "--json", job_id])
    assert json.loads(result.stdout)["jobs"][0]["status_reason"] == f"bad {CSI}2J news"


def test_a_jdl_value_is_printed_escaped(runner: CliRunner, fake: FakeClient) -> None:
    """This service sends JDL values escaped (``\\302\\233``, classad2's form); another may not."""
    fake.jdls[(JOB, "ORIGINAL")] = f'[ Executable = "/bin/echo"; Arguments = "hello{CSI}grid"; ]'
    result = runner.invoke(cli, ["info", "-j", JOB])
    assert result.exit_code == 0, result.output
    assert 'Arguments = "hello\\x9bgrid"; ]\n' in result.stdout and CSI not in result.stdout
    result = runner.invoke(cli, ["info", "--json", "-j", JOB])
    assert json.loads(result.stdout)["jdl"] == fake.jdls[(JOB, "ORIGINAL")]


def test_a_listed_file_and_a_fault_message_are_printed_escaped(runner: CliRunner, fake: FakeClient) -> None:
    fake.outputs = [OutputFile(f"https://w/o/res{CSI}1.txt\x1b]0;title\x07", 3)]
    result = runner.invoke(cli, ["output", "--list-only", JOB])
    assert result.exit_code == 0, result.output
    assert " - https://w/o/res\\x9b1.txt\\x1b]0;title\\x07\n   size (bytes): 3\n" in result.stdout
    assert CSI not in result.stdout and "\x1b" not in result.stdout
    result = runner.invoke(cli, ["output", "--list-only", "--json", JOB])
    assert json.loads(result.stdout)["files"][JOB][0]["uri"] == f"https://w/o/res{CSI}1.txt\x1b]0;title\x07"
    fake.fail["get_output_file_list"] = WMProxyClientError("JobUnknownFault", f"no {CSI}job\rhere")
    result = runner.invoke(cli, ["output", "--list-only", JOB])
    assert result.exit_code == 1
    assert result.stderr == "Error - JobUnknownFault: no \\x9bjob here\n"
