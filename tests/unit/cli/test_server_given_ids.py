"""Job ids and status strings a hostile server gives cannot forge output lines: an id that is not
a job id is refused (it would be written, one a line, to the ``submit -o`` file and read back as
another job), and a value printed as ``key: value`` shows its line breaks as ``\\x0a``. The real
CLI and client against a real TLS server answering crafted SOAP replies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from wmproxy.cli.jobids import read_job_ids
from wmproxy.cli.main import cli

from .https_server import https_server

NS = "http://glite.org/wms/wmproxy"
NIL = "xsi:nil='true' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'"


def _envelope(operation: str, inner: str) -> bytes:
    return (f'<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>'
            f'<ns:{operation}Response xmlns:ns="{NS}">{inner}</ns:{operation}Response></S:Body></S:Envelope>').encode()


def _fields(job_id: str) -> str:
    return f"<id>{escape(job_id)}</id><name {NIL}/><path {NIL}/>"


def _job_ids(job_id: str, children: str = "") -> str:
    return f"<jobIdStruct>{_fields(job_id)}{children}</jobIdStruct>"


class HostileService:
    """A WSGI app answering every SOAP call with :attr:`replies` (operation -> inner XML)."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}
        self.operations: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size).decode()
        found = re.search(r"Body>\s*<(?:[\w-]+:)?(\w+)", body)
        operation = found.group(1) if found else "?"
        self.operations.append(operation)
        reply = _envelope(operation, self.replies.get(operation, ""))
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(reply)))])
        return [reply]


@pytest.fixture
def hostile(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HostileService, str]]:
    app = HostileService()
    with https_server(pki, app) as (_, base):
        monkeypatch.setenv("GLITE_WMS_WMPROXY_ENDPOINT", f"{base}/glite_wms_wmproxy_server")
        monkeypatch.setenv("X509_USER_PROXY", str(pki.users["alice"].proxy))
        monkeypatch.setenv("X509_CERT_DIR", str(pki.ca_dir))
        yield app, base


JOB = "https://localhost:9000/AbCdEf0123456789abcdef"
INJECTED = f"{JOB}\nhttps://victim.example:7443/INJECTED_ID\n#"


@pytest.mark.parametrize("where", ["job", "node"])
def test_a_submitted_id_that_is_not_a_job_id_is_refused(
    runner: CliRunner, hostile: tuple[HostileService, str], tmp_path: Path, where: str
) -> None:
    app, _ = hostile
    if where == "job":
        app.replies["jobSubmit"] = _job_ids(INJECTED)
    else:
        app.replies["jobSubmit"] = _job_ids(JOB, f"<childrenJob>{_fields(INJECTED)}</childrenJob>")
    (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
    ids = tmp_path / "ids.txt"
    result = runner.invoke(cli, ["submit", "-d", "x", "--nomsg", "-o", str(ids), str(tmp_path / "j.jdl")])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == (f"Error - InvalidResponse: the service returned {INJECTED!r} as a job id, which is not "
                             "one (https://<host>:<port>/<ID>): the reply is refused\n")
    assert not ids.exists() or read_job_ids(ids) == []
    assert "jobSubmit" in app.operations


def test_a_status_string_cannot_add_a_line(runner: CliRunner, hostile: tuple[HostileService, str]) -> None:
    app, _ = hostile
    forged = "Done(Success)\nCurrent Status:     Aborted\nStatus Reason:      forged line"
    app.replies["getJobStatus"] = (f"<JobStatusStruct><jobid>{JOB}</jobid><status>{escape(forged)}</status>"
                                   "</JobStatusStruct>")
    result = runner.invoke(cli, ["status", "-v", "0", JOB])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if line.startswith("Current Status:")] == [
        "Current Status:     Done(Success)\\x0aCurrent Status:     Aborted\\x0aStatus Reason:      forged line"]
    assert "\nStatus Reason:" not in result.stdout
