"""Option parsing and flows of each verb, against a fake client (no server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wmproxy.cli import common, output, submit
from wmproxy.cli.main import cli, main
from wmproxy.client import JobStatus, OutputFile, WMProxyClientError

from .conftest import ENDPOINT, JOB, FakeClient

UNKNOWN = WMProxyClientError(
    "JobUnknownFault", "The job has not been registered from this Workload Manager Proxy server", "1218", "jobStart"
)


def write_jdl(tmp_path: Path, isb: str = "") -> Path:
    jdl = tmp_path / "job.jdl"
    jdl.write_text(f'[Executable = "/bin/sh"; Arguments = "a.sh"; {isb}]')
    return jdl


class TestEnvironment:
    def test_option_beats_environment(self) -> None:
        env = common.Environment.load("https://opt", {common.ENDPOINT_ENV: "https://env"})
        assert env.endpoint == "https://opt"

    def test_defaults(self) -> None:
        env = common.Environment.load(None, {common.ENDPOINT_ENV: "https://env"})
        assert env.endpoint == "https://env"
        assert env.proxy_file.startswith("/tmp/x509up_u")
        assert env.ca_dir == "/etc/grid-security/certificates"

    def test_x509_variables(self) -> None:
        env = common.Environment.load("https://e", {"X509_USER_PROXY": "/p", "X509_CERT_DIR": "/ca"})
        assert (env.proxy_file, env.ca_dir) == ("/p", "/ca")

    def test_no_endpoint_is_a_one_line_error(self, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(common.ENDPOINT_ENV, raising=False)
        result = runner.invoke(cli, ["status", JOB])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Configuration: no WMProxy endpoint")
        assert len(result.stderr.splitlines()) == 1


class TestDelegateProxy:
    def test_with_id(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["delegate-proxy", "-d", "mine"])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("delegate", ("mine",))]
        assert (
            f"Your proxy has been successfully delegated to the WMProxy(s):\n{ENDPOINT}\n"
            "with the delegation identifier: mine\n"
        ) in result.stdout

    def test_automatic(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["delegate-proxy", "-a", "--json"])
        assert result.exit_code == 0
        assert fake.calls == [("delegate", (None,))]
        assert json.loads(result.stdout) == {"result": "success", "endpoint": ENDPOINT, "delegationid": ""}

    @pytest.mark.parametrize("args", [[], ["-a", "-d", "x"]])
    def test_needs_exactly_one_of_a_and_d(self, runner: CliRunner, fake: FakeClient, args: list[str]) -> None:
        result = runner.invoke(cli, ["delegate-proxy", *args])
        assert result.exit_code == 1
        assert fake.calls == []

    def test_endpoint_option(self, runner: CliRunner, fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[common.Environment] = []
        monkeypatch.setattr(common, "make_client", lambda env, **kw: seen.append(env) or fake)
        runner.invoke(cli, ["delegate-proxy", "-d", "x", "-e", "https://other:7443/w"])
        assert seen[0].endpoint == "https://other:7443/w"


class TestSubmit:
    def test_without_local_files_uses_job_submit(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        jdl = write_jdl(tmp_path, 'InputSandbox = {"gsiftp://se/x"};')
        result = runner.invoke(cli, ["submit", "-d", "dg", str(jdl)])
        assert result.exit_code == 0, result.output
        assert fake.names() == ["job_submit"]
        assert fake.calls[0][1] == (jdl.read_text(), "dg")
        assert f"Connecting to the service {ENDPOINT}" in result.stdout
        assert "The job has been successfully submitted to the WMProxy\nYour job identifier is:\n\n" in result.stdout
        assert f"\n{JOB}\n" in result.stdout

    def test_with_local_files_registers_uploads_and_starts(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "a.sh").write_text("echo hi\n")
        jdl = write_jdl(tmp_path, 'InputSandbox = {"a.sh"};')
        uploads: list[tuple[str, Path]] = []

        def fake_upload(session: Any, dest: str, path: Path, **kw: Any) -> str:
            uploads.append((dest, Path(path)))
            kw["progress"](Path(path).stat().st_size)
            fake.calls.append(("upload", (dest,)))
            return f"{dest}/{Path(path).name}"

        monkeypatch.setattr(submit, "upload_file", fake_upload)
        result = runner.invoke(cli, ["submit", "-a", "--nomsg", str(jdl)])
        assert result.exit_code == 0, result.output
        assert fake.names() == [
            "delegate", "get_max_input_sandbox_size", "job_register", "get_sandbox_dest_uri", "upload", "job_start",
        ]
        assert fake.calls[2][1][1] == ""  # automatic delegation: empty id
        assert fake.calls[3][1] == (JOB, "https")
        assert uploads == [("https://wms.example.org:7443/SandboxDir/Ab/x/input", tmp_path / "a.sh")]
        assert result.stdout == f"{JOB}\n"

    def test_json_and_jobid_file(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        jdl = write_jdl(tmp_path)
        ids = tmp_path / "ids.txt"
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(ids), "--json", str(jdl)])
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"result": "success", "jobid": JOB, "endpoint": ENDPOINT}
        assert ids.read_text() == f"###Submitted Job Ids###\n{JOB}\n"

    def test_jobid_file_is_announced(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        ids = tmp_path / "ids.txt"
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(ids), str(write_jdl(tmp_path))])
        assert f"The job identifier has been saved in the following file:\n{ids}\n" in result.stdout

    def test_missing_local_file_fails_before_contacting_the_service(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path
    ) -> None:
        jdl = write_jdl(tmp_path, 'InputSandbox = {"missing.sh"};')
        result = runner.invoke(cli, ["submit", "-d", "dg", str(jdl)])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - InputSandbox: file not found:")
        assert fake.calls == []

    def test_fault_is_one_line_on_stderr(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        fake.fail["job_submit"] = WMProxyClientError("InvalidArgumentFault", "Mandatory attribute X not set", "1219")
        result = runner.invoke(cli, ["submit", "-d", "dg", str(write_jdl(tmp_path))])
        assert result.exit_code == 1
        assert result.stderr == "Error - InvalidArgumentFault: Mandatory attribute X not set\n"
        assert "Traceback" not in result.output

    def test_unreadable_jdl(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        result = runner.invoke(cli, ["submit", "-d", "dg", str(tmp_path / "none.jdl")])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - JDL: cannot read")


class TestStatus:
    def test_prints_the_status_block(self, runner: CliRunner, fake: FakeClient) -> None:
        fake.status = JobStatus(JOB, "Done (Success)")
        result = runner.invoke(cli, ["status", JOB])
        assert result.exit_code == 0
        assert "Current Status:     Done (Success)\n" in result.stdout
        assert f"Status info for the Job : {JOB}\n" in result.stdout

    def test_reads_the_jobid_file(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        ids = tmp_path / "ids"
        ids.write_text(f"###Submitted Job Ids###\n{JOB}\n{JOB}2\n")
        result = runner.invoke(cli, ["status", "-i", str(ids), "--json"])
        assert result.exit_code == 0
        assert [args[0] for _, args in fake.calls] == [JOB, JOB + "2"]
        assert [j["jobid"] for j in json.loads(result.stdout)["jobs"]] == [JOB, JOB + "2"]

    def test_needs_a_job(self, runner: CliRunner, fake: FakeClient) -> None:
        assert runner.invoke(cli, ["status"]).exit_code == 1

    def test_unknown_job(self, runner: CliRunner, fake: FakeClient) -> None:
        fake.fail["get_job_status"] = UNKNOWN
        result = runner.invoke(cli, ["status", JOB])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - JobUnknownFault: The job has not been registered")


class TestCancel:
    def test_asks_for_confirmation(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["cancel", JOB], input="y\n")
        assert result.exit_code == 0
        assert "Are you sure you want to remove specified job(s) [y/n]" in result.stderr
        assert fake.calls == [("job_cancel", (JOB,))]
        assert f"following job(s):\n\n- {JOB}\n" in result.stdout

    def test_no_means_no(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["cancel", JOB], input="n\n")
        assert result.exit_code == 1  # gLite jobcancel: "bye", exit 1
        assert fake.calls == []

    @pytest.mark.parametrize("flag", ["--noint", "--json"])
    def test_noint_and_json_do_not_ask(self, runner: CliRunner, fake: FakeClient, flag: str) -> None:
        result = runner.invoke(cli, ["cancel", flag, JOB, JOB + "2"])
        assert result.exit_code == 0
        assert "Are you sure" not in result.output
        assert len(fake.calls) == 2

    def test_failure_of_one_job(self, runner: CliRunner, fake: FakeClient) -> None:
        fake.fail["job_cancel"] = WMProxyClientError("OperationNotAllowedFault", "The Operation is not allowed: done")
        result = runner.invoke(cli, ["cancel", "--noint", JOB])
        assert result.exit_code == 1
        assert result.stderr == "Error - OperationNotAllowedFault: The Operation is not allowed: done\n"


    def test_json_of_a_batch_follows_the_shared_rules(self, runner: CliRunner, fake: FakeClient) -> None:
        def cancel(job_id: str) -> None:
            fake.calls.append(("job_cancel", (job_id,)))
            if job_id.endswith("bad"):
                raise WMProxyClientError("JobUnknownFault", "unknown job")

        fake.job_cancel = cancel  # type: ignore[method-assign]
        result = runner.invoke(cli, ["cancel", "--json", JOB, JOB + "bad", JOB + "2"])
        assert result.exit_code == 1
        assert json.loads(result.stdout) == {
            "result": "partial", "jobids": [JOB, JOB + "2"], "endpoint": ENDPOINT,
            "errors": [{"jobid": JOB + "bad", "error": {"type": "JobUnknownFault", "message": "unknown job"}}]}
        result = runner.invoke(cli, ["cancel", "--json", JOB + "bad", JOB + "2bad"])
        assert result.exit_code == 1
        doc = json.loads(result.stdout)
        assert doc["result"] == "failure" and doc["jobids"] == [] and len(doc["errors"]) == 2

    def test_a_jobid_file_listing_a_job_twice_cancels_it_once(self, runner: CliRunner, fake: FakeClient,
                                                              tmp_path: Path) -> None:
        # submit --register-only -o ids, then submit --start ID -o ids: the id is there twice; the
        # file was saved by an editor that writes a BOM
        ids = tmp_path / "ids"
        ids.write_bytes(f"\ufeff###Submitted Job Ids###\n{JOB}\n// started:\n{JOB}\n".encode())
        result = runner.invoke(cli, ["cancel", "--noint", "-i", str(ids)])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("job_cancel", (JOB,))]


class TestOutput:
    def test_json_of_a_batch_follows_the_shared_rules(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake.outputs = [OutputFile("https://w/o/out.txt", 3), OutputFile("https://w/o/err.txt", 0)]

        def list_files(job_id: str, protocol: str = "https") -> list[OutputFile]:
            if job_id.endswith("bad"):
                raise WMProxyClientError("JobUnknownFault", "unknown job")
            return fake.outputs

        def download(session: Any, uri: str, directory: str, **kw: Any) -> Path:
            if os.fspath(directory).endswith("half") and uri.endswith("err.txt"):
                raise WMProxyClientError("TransferError", "HTTP 404")
            return Path(directory) / uri.rsplit("/", 1)[-1]

        monkeypatch.setattr(fake, "get_output_file_list", list_files)
        monkeypatch.setattr(output, "download_file", download)
        result = runner.invoke(cli, ["output", "--json", "--dir", str(tmp_path), JOB, JOB + "bad", JOB + "half"])
        assert result.exit_code == 1
        doc = json.loads(result.stdout)
        assert doc["result"] == "partial"
        assert [job["jobid"] for job in doc["jobs"]] == [JOB, JOB + "half"]
        assert doc["jobs"][1]["result"] == "partial"
        assert doc["errors"] == [
            {"jobid": JOB + "bad", "error": {"type": "JobUnknownFault", "message": "unknown job"}},
            {"jobid": JOB + "half", "error": {"type": "TransferError",
                                              "message": "1 output file(s) could not be retrieved: err.txt"}}]
        result = runner.invoke(cli, ["output", "--json", "--dir", str(tmp_path), JOB + "bad", JOB + "2bad"])
        assert result.exit_code == 1
        doc = json.loads(result.stdout)
        assert doc["result"] == "failure" and doc["jobs"] == [] and len(doc["errors"]) == 2

    def test_downloads_every_file_then_purges(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake.outputs = [OutputFile("https://w/o/out.txt", 3), OutputFile("https://w/o/err.txt", 0)]
        got: list[tuple[str, str]] = []

        def fake_download(session: Any, uri: str, directory: str, **kw: Any) -> Path:
            got.append((uri, os.fspath(directory)))
            return Path(directory) / uri.rsplit("/", 1)[-1]

        monkeypatch.setattr(output, "download_file", fake_download)
        result = runner.invoke(cli, ["output", "--nosubdir", JOB, "--dir", str(tmp_path / "out")])
        assert result.exit_code == 0, result.output
        assert got == [("https://w/o/out.txt", str(tmp_path / "out")), ("https://w/o/err.txt", str(tmp_path / "out"))]
        assert fake.names() == ["get_output_file_list", "get_jdl", "job_purge"]
        assert fake.calls[0][1] == (JOB, "https")
        assert f"have been successfully retrieved and stored in the directory:\n{tmp_path / 'out'}\n" in result.stdout

    def test_nopurge(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        result = runner.invoke(cli, ["output", "--nopurge", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0
        assert fake.names() == ["get_output_file_list", "get_jdl"]
        assert f"No output files to be retrieved for the job:\n{JOB}\n" in result.stdout

    def test_purge_refused_is_a_warning(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        fake.fail["job_purge"] = WMProxyClientError("OperationNotAllowedFault", "no")
        result = runner.invoke(cli, ["output", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0
        assert result.stderr.startswith("Warning - JobPurging not allowed")

    def test_default_directory(self) -> None:
        assert output.default_dir(JOB).endswith("_AbCdEfGhIjKlMnOpQrStUv")
        assert output.default_dir(JOB).startswith("/tmp/")


class TestMain:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as done:
            main(["--version"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith("wmproxy version ")

    def test_unexpected_exception_is_one_line(
        self, fake: FakeClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def boom(job_id: str) -> None:
            raise RuntimeError("kaputt\nsecond line")

        monkeypatch.setattr(fake, "get_job_status", boom)
        with pytest.raises(SystemExit) as done:
            main(["status", JOB])
        assert done.value.code == 1
        assert capsys.readouterr().err == "Error - RuntimeError: kaputt second line\n"

    def test_missing_ca_dir(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner: CliRunner) -> None:
        monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "proxy"))
        monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "no-ca"))
        result = runner.invoke(cli, ["status", "--endpoint", ENDPOINT, JOB])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - Configuration: CA directory not found")

    def test_missing_proxy_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner: CliRunner) -> None:
        monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "absent"))
        monkeypatch.setenv("X509_CERT_DIR", str(tmp_path))
        result = runner.invoke(cli, ["status", "--endpoint", ENDPOINT, JOB])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error - ProxyError: no proxy file ")


class TestResultFile:
    def test_delegate_result_goes_to_the_file(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        out = tmp_path / "result.txt"
        result = runner.invoke(cli, ["delegate-proxy", "-d", "mine", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "with the delegation identifier: mine\n" in result.stdout
        assert f"has been saved in the following file:\n{out}\n" in result.stdout
        assert f"WMProxy: {ENDPOINT}\ndelegation ID: mine\n" in out.read_text()

    def test_errors_stay_on_stderr(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        fake.fail["delegate"] = WMProxyClientError("AuthorizationFault", "no")
        out = tmp_path / "result.txt"
        result = runner.invoke(cli, ["delegate-proxy", "-d", "mine", "-o", str(out), "--json"])
        assert result.exit_code == 1
        assert json.loads(result.stdout) == {"result": "failure",
                                             "error": {"type": "AuthorizationFault", "message": "no"}}
        assert not out.exists()


class TestFilesInLatin1:
    """A JDL, CE, job-id, file-name or configuration file that is not UTF-8 is read as Latin-1
    (every byte taken, as gLite's parser took the bytes), never refused: ``caf\\xe9`` is
    ``café`` in what the CLI sends."""

    @pytest.mark.parametrize(("args", "content", "call", "sent"), [
        (["submit", "-d", "dg", "{bad}"], '[ Executable = "/bin/true"; Arguments = "caf\xe9"; ]\n',
         "job_submit", 'Arguments = "caf\xe9"'),
        (["submit", "-d", "dg", "-i", "{bad}", "{good}"], "# le caf\xe9\nce.example.org:8443/cream-pbs-caf\xe9\n",
         "job_submit", 'SubmitTo = "ce.example.org:8443/cream-pbs-caf\\303\\251"'),  # classad2's escape
        (["submit", "-d", "dg", "--collection", "{dir}"], '[ Executable = "/bin/true"; Arguments = "caf\xe9"; ]\n',
         "job_register", 'Arguments = "caf\\303\\251"'),
        (["list-match", "-d", "dg", "{bad}"], '[ Executable = "/bin/true"; Arguments = "caf\xe9"; ]\n',
         "job_list_match", 'Arguments = "caf\xe9"'),
        (["status", "-i", "{bad}"], f"# le caf\xe9\n{JOB}\n", "get_job_status", JOB),
        (["cancel", "--noint", "-i", "{bad}"], f"# le caf\xe9\n{JOB}\n", "job_cancel", JOB),
        (["info", "--jdl", "-i", "{bad}"], f"# le caf\xe9\n{JOB}\n", "get_jdl", JOB),
        (["perusal", "--set", "--input-file", "{bad}", JOB], "caf\xe9.txt\n", "enable_file_perusal",
         "['caf\xe9.txt']"),
        (["status", "-c", "{bad}", JOB], "[client]\n; le caf\xe9\nvo = caf\xe9\n", "get_job_status", JOB),
    ], ids=["jdl", "ce-ids", "collection", "list-match", "status-ids", "cancel-ids", "info-ids", "perusal-names",
            "configuration"])
    def test_is_read_as_latin1(self, runner: CliRunner, fake: FakeClient, tmp_path: Path, args: list[str],
                               content: str, call: str, sent: str) -> None:
        (tmp_path / "dir").mkdir()
        bad = tmp_path / "dir" / "latin1.jdl"
        bad.write_bytes(content.encode("latin-1"))
        (tmp_path / "good.jdl").write_text('[ Executable = "/bin/true"; ]')
        argv = [a.format(bad=bad, good=tmp_path / "good.jdl", dir=tmp_path / "dir") for a in args]
        result = runner.invoke(cli, argv, input="")
        assert result.exit_code == 0, result.output
        assert any(sent in str(arg) for name, given in fake.calls if name == call for arg in given), fake.calls

    def test_utf8_is_read_as_utf8(self, tmp_path: Path) -> None:
        from wmproxy.cli.errors import read_text_file

        text = tmp_path / "utf8"
        text.write_text('Arguments = "caf\xe9 \u20ac";', encoding="utf-8")
        assert read_text_file(text) == 'Arguments = "caf\xe9 \u20ac";'
        text.write_bytes(b'Arguments = "caf\xe9 \x80";')
        assert read_text_file(text) == 'Arguments = "caf\xe9 \x80";'


class TestJobIdFileWithoutOneUsableId:
    """An ``-i`` file with no job id (only the header), or several for a verb that takes one, is
    an ``Input`` error (docs/cli.md: ``Error - <type>: ...``, exit 1, ``{"error": ...}`` under
    --json), not a usage error; a verb given neither JOBID nor -i is one (exit 2)."""

    @pytest.mark.parametrize(("args", "content", "message"), [
        (["status"], "", "holds no job id"),
        (["logging-info"], "", "holds no job id"),
        (["cancel", "--noint"], "", "holds no job id"),
        (["output"], "", "holds no job id"),
        (["info", "--jdl"], "", "holds no job id"),
        (["perusal", "--unset"], "", "holds no job id"),
        (["info", "--jdl"], f"{JOB}\n{JOB}2\n", "holds 2 job ids; this command accepts only one"),
        (["info", "--jdl"], f"{JOB}\nnot-a-job-id\n",
         "holds 2 job ids (1 in bad format: not-a-job-id); this command accepts only one"),
    ], ids=["status", "logging-info", "cancel", "output", "info", "perusal", "info-two-ids", "info-one-bad-id"])
    def test_is_an_input_error(self, runner: CliRunner, fake: FakeClient, tmp_path: Path, args: list[str],
                               content: str, message: str) -> None:
        ids = tmp_path / "ids"
        ids.write_text(f"###Submitted Job Ids###\n#*a comment\n{content}")
        result = runner.invoke(cli, [*args, "-i", str(ids)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error - Input: {ids} {message}"), result.stderr
        assert result.stdout == ""
        result = runner.invoke(cli, [*args, "-i", str(ids), "--json"])
        assert result.exit_code == 1, result.output
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "Input" and error["message"].startswith(f"{ids} {message}")
        assert fake.calls == []

    @pytest.mark.parametrize("verb", ["status", "logging-info", "output"])
    def test_neither_jobid_nor_file_is_a_usage_error(self, runner: CliRunner, fake: FakeClient, verb: str) -> None:
        result = runner.invoke(cli, [verb, "--json"])
        assert result.exit_code == 1  # as gLite's option errors; with --json the JSON error object
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "Usage" and "no job id given (JOBID or -i FILE)" in error["message"]


class TestJobIdsFromArgumentsOrFile:
    """As gLite's ``Options::readOptions`` (status, logging-info, cancel, output): job ids come
    from the arguments or from ``-i FILE``, never both; each id is acted on once; ids that are
    not job ids are left out before any call (``Utils::checkJobIds``)."""

    VERBS = ("status", "logging-info", "cancel", "output")

    @pytest.mark.parametrize("verb", VERBS)
    def test_arguments_together_with_a_file_are_refused(self, runner: CliRunner, fake: FakeClient, tmp_path: Path,
                                                        verb: str) -> None:
        ids = tmp_path / "ids"
        ids.write_text(f"###Submitted Job Ids###\n{JOB}\n")
        result = runner.invoke(cli, [verb, "-i", str(ids), JOB])
        assert result.exit_code == 1, result.output
        assert "job ids must not be given together with -i/--input" in result.stderr
        assert fake.calls == []

    def test_a_repeated_argument_is_acted_on_once(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["cancel", "--noint", JOB, JOB + "2", JOB])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("job_cancel", (JOB,)), ("job_cancel", (JOB + "2",))]
        fake.calls.clear()
        result = runner.invoke(cli, ["status", "--json", "-v", "0", JOB, JOB])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("get_job_status", (JOB,))]
        assert [job["jobid"] for job in json.loads(result.stdout)["jobs"]] == [JOB]

    @pytest.mark.parametrize("verb", VERBS)
    def test_an_id_in_bad_format_is_a_failure_of_that_job_without_a_call(self, runner: CliRunner, fake: FakeClient,
                                                                         tmp_path: Path, verb: str) -> None:
        """As any job of a batch that fails: in ``errors`` (type ``Input``), exit 1, the others
        served (gLite's status printed ``JOBID HAS WRONG FORMAT`` for it)."""
        ids = tmp_path / "ids"
        ids.write_text(f"###Submitted Job Ids###\n{JOB}\nnot-a-job-id\nhttp://wms.example.org:9000/AbCd\n")
        result = runner.invoke(cli, [verb, "--noint", "-i", str(ids), "--json"])
        assert result.exit_code == 1, result.output
        document = json.loads(result.stdout)
        assert document["result"] == "partial"
        form = "is in bad format (expected https://<host>:<port>/<ID>)"
        assert document["errors"] == [
            {"jobid": bad, "error": {"type": "Input", "message": f"the job id {bad} {form}"}}
            for bad in ("not-a-job-id", "http://wms.example.org:9000/AbCd")]
        assert JOB in result.stdout
        assert {call[0] for _, call in fake.calls} <= {JOB}  # logging-info asks the jobs-1 port instead

    def test_no_question_is_asked_and_the_good_ids_are_served(self, runner: CliRunner, fake: FakeClient) -> None:
        """A script without a terminal (stdin at its end) is not stopped by a question."""
        result = runner.invoke(cli, ["status", "-v", "0", JOB, "junk"], input="")
        assert result.exit_code == 1, result.output
        assert "continue" not in result.stderr
        assert fake.calls == [("get_job_status", (JOB,))] and JOB in result.stdout
        assert "Error - Input: the job id junk is in bad format" in result.stderr

    @pytest.mark.parametrize(("args", "message"), [
        (["status", "-i", "{ids}"], "the job id junk is in bad format (expected https://<host>:<port>/<ID>)"),
        (["cancel", "--noint", "junk", "https://wms.example.org:9000/"],
         "all the job ids are in bad format (expected https://<host>:<port>/<ID>): junk, https://wms.example.org:9000/"),
        (["info", "--jdl", "-i", "{ids}"], "the job id junk is in bad format (expected https://<host>:<port>/<ID>)"),
        (["perusal", "--unset", "junk"], "the job id junk is in bad format (expected https://<host>:<port>/<ID>)"),
    ], ids=["status", "cancel", "info", "perusal"])
    def test_no_id_in_good_format_is_an_input_error(self, runner: CliRunner, fake: FakeClient, tmp_path: Path,
                                                    args: list[str], message: str) -> None:
        ids = tmp_path / "ids"
        ids.write_text("###Submitted Job Ids###\njunk\n")
        argv = [a.format(ids=ids) for a in args]
        result = runner.invoke(cli, argv)
        assert result.exit_code == 1, result.output
        assert result.stderr == f"Error - Input: {message}\n"
        result = runner.invoke(cli, [*argv, "--json"])
        assert json.loads(result.stdout) == {"result": "failure", "error": {"type": "Input", "message": message}}
        assert fake.calls == []
