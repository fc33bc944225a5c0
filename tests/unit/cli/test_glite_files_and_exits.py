"""What scripts written for the gLite ``glite-wms-job-*`` tools rely on, against the service
in-process behind real TLS: how ``-o FILE`` is written (``Utils::saveToFile``), the exit status
of a declined question, the ``delegate-proxy -o`` file the CTB tests read with awk, the bounded
reading of local files, and usage errors in the ``Error -`` format."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL, principal_of
from wmproxy.cli import common
from wmproxy.cli.errors import read_text_file
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


class TestOverwriteAskedFirst:
    """glite-wms-job-cancel and -list-match ask ``Utils::askForFileOverwriting`` about an existing
    ``-o FILE`` before anything is done (no answer: no, "bye", exit 1), then ``saveToFile``'s
    append/overwrite question when they save."""

    @pytest.fixture
    def job(self, service: Runtime, pki: Pki) -> str:
        return registered_job(service, pki, ECHO_JDL, JobState.SUBMITTED)[1]

    @pytest.fixture
    def out(self, tmp_path: Path) -> Path:
        path = tmp_path / "result.txt"
        path.write_text("previous\n")
        return path

    @pytest.mark.parametrize("answer", ["n\n", "\n", ""], ids=["no", "empty", "end-of-input"])
    def test_cancel_declined_cancels_nothing(self, runner: CliRunner, job: str, service: Runtime, out: Path,
                                             answer: str) -> None:
        result = runner.invoke(cli, ["cancel", "-o", str(out), job], input=answer)
        assert result.exit_code == 1
        assert f"\n\n{out} file already exists\nDo you want to overwrite it ? [y/n]n : " in result.stderr
        assert result.stderr.rstrip().endswith("bye") and "Are you sure" not in result.stderr
        assert out.read_text() == "previous\n"
        with service.uow() as uow:
            stored = uow.jobs.get(job)
            assert stored is not None and stored.state == JobState.SUBMITTED.value

    def test_cancel_accepted_asks_again_when_saving(self, runner: CliRunner, job: str, out: Path) -> None:
        result = runner.invoke(cli, ["cancel", "-o", str(out), job], input="y\ny\na\n")
        assert result.exit_code == 0, result.output
        assert result.stderr.index("Do you want to overwrite it ?") < result.stderr.index("Are you sure") \
            < result.stderr.index("Do you want to append (a) or to overwrite (o) ?")
        assert out.read_text().startswith("previous\n") and job in out.read_text()

    def test_list_match(self, runner: CliRunner, service: Runtime, out: Path, tmp_path: Path) -> None:
        jdl = tmp_path / "job.jdl"
        jdl.write_text(ECHO_JDL)
        result = runner.invoke(cli, ["list-match", "-d", "none", "-o", str(out), str(jdl)], input="\n")
        assert result.exit_code == 1
        assert "Do you want to overwrite it ? [y/n]n : " in result.stderr and result.stderr.rstrip().endswith("bye")
        assert out.read_text() == "previous\n"
        for args in (["--noint"], ["--json"]):  # never asked
            result = runner.invoke(cli, ["list-match", "-d", "none", *args, "-o", str(out), str(jdl)], input="")
            assert "Do you want to overwrite it" not in result.stderr


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


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


class TestLocalFilesAreBounded:
    """A JDL, ``-i`` file (job ids, CE ids) or ``--default-jdl`` that is not a regular file or is
    larger than 16 MiB (the service's default ``[limits] max_request_bytes``) is refused with one
    ``Error -`` line, exit 1, before any call (``-a`` delegates nothing)."""

    TOO_LARGE = "is larger than 16 MiB, the most a WMProxy request may carry"

    @pytest.fixture
    def no_call(self, monkeypatch: pytest.MonkeyPatch) -> list[object]:
        made: list[object] = []
        monkeypatch.setattr(common, "make_client", lambda env, **kw: made.append(env))
        return made

    @pytest.fixture
    def jdl(self, tmp_path: Path) -> Path:
        path = tmp_path / "job.jdl"
        path.write_text('[ Executable = "/bin/true"; ]')
        return path

    @pytest.mark.parametrize("which", ["jdl", "ce file", "default jdl"])
    def test_a_file_over_16_mib(self, runner: CliRunner, service: Runtime, tmp_path: Path, jdl: Path,
                                no_call: list[object], which: str) -> None:
        big = _sparse(tmp_path / "big", 16 * 1024 * 1024 + 1)
        args = {"jdl": [str(big)], "ce file": ["-i", str(big), str(jdl)],
                "default jdl": ["--default-jdl", str(big), str(jdl)]}[which]
        result = runner.invoke(cli, ["submit", "-a", *args])
        assert result.exit_code == 1
        kind = "Input" if which == "ce file" else "JDL"
        assert result.stderr.startswith(f"Error - {kind}: cannot read {big}: it {self.TOO_LARGE}")
        assert len(result.stderr.splitlines()) == 1
        assert no_call == []

    def test_a_perusal_names_file_that_is_a_device(self, runner: CliRunner, service: Runtime,
                                                  no_call: list[object]) -> None:
        result = runner.invoke(cli, ["perusal", "--set", "--input-file", "/dev/null", "https://h:7443/x"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Input: cannot read /dev/null: it is not a regular file")
        assert no_call == []

    def test_a_client_configuration_over_16_mib(self, runner: CliRunner, service: Runtime, tmp_path: Path,
                                                 no_call: list[object]) -> None:
        big = _sparse(tmp_path / "glite_wms.conf", 16 * 1024 * 1024 + 1)
        result = runner.invoke(cli, ["status", "-c", str(big), "https://h:7443/x"])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error - Configuration: cannot read the configuration file {big}: it "
                                        f"{self.TOO_LARGE}")
        assert no_call == []

    @pytest.mark.parametrize("verb", [["status"], ["cancel", "--noint"], ["logging-info"]])
    def test_an_id_file_that_is_a_device(self, runner: CliRunner, service: Runtime, no_call: list[object],
                                         verb: list[str]) -> None:
        # /dev/null, not /dev/zero: read without a bound (as before), /dev/zero fills the memory
        result = runner.invoke(cli, [*verb, "-i", "/dev/null"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Input: ") and "/dev/null" in result.stderr
        assert "it is not a regular file" in result.stderr
        assert no_call == []

    def test_a_fifo_is_refused_without_waiting_for_a_writer(self, runner: CliRunner, service: Runtime,
                                                            tmp_path: Path, no_call: list[object]) -> None:
        fifo = tmp_path / "job.jdl"
        os.mkfifo(fifo)
        done = threading.Event()

        def release() -> None:  # a reading that waits for a writer (as before) is ended, not left hanging
            if not done.wait(60):
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

        threading.Thread(target=release, daemon=True).start()
        result = runner.invoke(cli, ["submit", "-a", str(fifo)])
        done.set()
        assert result.exit_code == 1
        assert result.stderr == f"Error - JDL: cannot read {fifo}: it is not a regular file\n"

    def test_16_mib_is_read(self, tmp_path: Path) -> None:
        path = tmp_path / "f"
        path.write_bytes(b"x" * (16 * 1024 * 1024))  # not sparse: a NUL is refused as not text
        assert len(read_text_file(path)) == 16 * 1024 * 1024

    def test_inlined_nodes_over_16_mib_are_not_sent(self, runner: CliRunner, service: Runtime, tmp_path: Path,
                                                     no_call: list[object]) -> None:
        node = tmp_path / "node.jdl"
        node.write_text('[ Executable = "/bin/true"; Arguments = "' + "x" * (6 * 1024 * 1024) + '"; ]')
        dag = tmp_path / "dag.jdl"
        dag.write_text('[ Type = "collection"; Nodes = { [ file = "node.jdl"; ], [ file = "node.jdl"; ], '
                       '[ file = "node.jdl"; ] }; ]')
        result = runner.invoke(cli, ["submit", "-a", str(dag)])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error - JDL: {dag}: the JDL to send {self.TOO_LARGE}")
        assert no_call == []


class TestConnectionClosedWhileSending:
    """An SSL EOF after a completed handshake is the service closing the connection while the
    request was sent (as it does for one over its ``[limits] max_request_bytes``), not a failed
    TLS handshake; an EOF during the handshake still is one."""

    @staticmethod
    def _peer(pki: Pki, handshake: bool) -> tuple[threading.Thread, str]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.host_cert, pki.host_key)
        listener = socket.create_server(("localhost", 0))
        # a small receive buffer (the accepted socket inherits it): the client's 8 MiB cannot all
        # sit in the two kernels' buffers before the close, so the close meets it while it sends
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        def serve() -> None:
            with listener:
                conn, _ = listener.accept()
                if not handshake:
                    conn.close()
                    return
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)  # the start of the request, then the connection is closed

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        return thread, f"https://localhost:{listener.getsockname()[1]}/wmproxy"

    @pytest.mark.parametrize("handshake", [True, False], ids=["after-handshake", "during-handshake"])
    def test_wording(self, runner: CliRunner, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     handshake: bool) -> None:
        monkeypatch.setenv("X509_USER_PROXY", str(pki.users["alice"].proxy))
        monkeypatch.setenv("X509_CERT_DIR", str(pki.ca_dir))
        jdl = tmp_path / "job.jdl"
        jdl.write_text('[ Executable = "/bin/true"; Arguments = "' + "x" * (8 * 1024 * 1024) + '"; ]')
        thread, endpoint = self._peer(pki, handshake)
        result = runner.invoke(cli, ["submit", "-e", endpoint, "-d", "dg", str(jdl)])
        thread.join(60)
        assert result.exit_code == 1
        if handshake:
            assert result.stderr.startswith("Error - ConnectionError: localhost:")
            # which of the two the client sees depends on when the close meets its writes (on
            # Python 3.13 now and then only at the answer's read): never a failed handshake
            assert ("closed the connection while the request was being sent" in result.stderr
                    or "closed the connection without an answer" in result.stderr), result.stderr
            assert "handshake" not in result.stderr
        else:
            assert "closed the connection while the request was being sent" not in result.stderr
