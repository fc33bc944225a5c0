"""list-match, perusal, info, templates, two-phase and compound submission, compound output."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wmproxy.cli import jobids, output, perusal, submit
from wmproxy.cli.compound import child_job_id
from wmproxy.cli.main import cli
from wmproxy.client import (
    CEMatch,
    GraphNode,
    JobIds,
    JobStatus,
    OutputFile,
    ProxyInfo,
    RenewalInfo,
    VOInfo,
    WMProxyClientError,
)

from .conftest import ENDPOINT, JOB, FakeClient

DEST = "https://wms.example.org:7443/SandboxDir/Ab/x/input"


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch, fake: FakeClient) -> list[tuple[str, Path]]:
    done: list[tuple[str, Path]] = []

    def fake_upload(session: Any, dest: str, path: Path, **kw: Any) -> str:
        done.append((dest, Path(path)))
        fake.calls.append(("upload", (dest, Path(path).name)))
        return f"{dest}/{Path(path).name}"

    monkeypatch.setattr(submit, "upload_file", fake_upload)
    return done


class TestListMatch:
    def test_ranked_text(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text('[ Executable = "/bin/true"; ]')
        fake.matches = [CEMatch("ce2.example.org:8443/long", 40), CEMatch("ce1.example.org:8443/short", 12)]
        result = runner.invoke(cli, ["list-match", "-d", "dg", "--rank", str(tmp_path / "m.jdl")])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("job_list_match", ('[ Executable = "/bin/true"; ]', "dg"))]
        assert "\t\t     COMPUTING ELEMENT IDs LIST \n" in result.stdout
        assert " The following CE(s) matching your job requirements have been found:\n" in result.stdout
        assert " - ce2.example.org:8443/long" + " " * 6 + "40\n" in result.stdout
        assert " - ce1.example.org:8443/short" + " " * 5 + "12\n" in result.stdout
        assert "*Rank*" in result.stdout

    def test_without_rank_and_empty(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text('[ Executable = "/bin/true"; ]')
        result = runner.invoke(cli, ["list-match", "-d", "dg", str(tmp_path / "m.jdl")])
        assert result.exit_code == 0
        assert "No Computing Element matching your job requirements has been found!" in result.stdout
        fake.matches = [CEMatch("ce1", 3)]
        result = runner.invoke(cli, ["list-match", "-d", "dg", str(tmp_path / "m.jdl")])
        assert " - ce1\n" in result.stdout and "*Rank*" not in result.stdout

    def test_json_and_automatic_delegation_under_a_fresh_id(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path
    ) -> None:
        (tmp_path / "m.jdl").write_text('[ Executable = "/bin/true"; ]')
        fake.matches = [CEMatch("ce1", 3)]
        result = runner.invoke(cli, ["list-match", "-a", "--json", "--rank", str(tmp_path / "m.jdl")])
        assert json.loads(result.stdout) == {"result": "success", "ceid": ["ce1"], "rank": [3]}
        (name, (used,)), (_, (_, sent)) = fake.calls
        assert name == "delegate" and used.startswith("listmatch-") and sent == used

    def test_compound_jobs_are_refused_locally(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text('[ Type = "collection"; Nodes = { [Executable = "a"] }; ]')
        result = runner.invoke(cli, ["list-match", "-d", "dg", str(tmp_path / "m.jdl")])
        assert result.exit_code == 1 and result.stderr.startswith("Error - Not supported Type")
        assert fake.calls == []

    def test_output_file(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text('[ Executable = "/bin/true"; ]')
        fake.matches = [CEMatch("ce1", 3)]
        result = runner.invoke(cli, ["list-match", "-d", "dg", "-o", str(tmp_path / "ces"), str(tmp_path / "m.jdl")])
        assert "have been stored in the file:\n" in result.stdout
        assert " - ce1\n" in (tmp_path / "ces").read_text()

    def test_output_file_is_appended_to_on_request_and_json_goes_only_there(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path
    ) -> None:
        (tmp_path / "m.jdl").write_text('[ Executable = "/bin/true"; ]')
        ces = tmp_path / "ces"
        ces.write_text("previous results\n")
        fake.matches = [CEMatch("ce1", 3)]
        result = runner.invoke(cli, ["list-match", "-d", "dg", "-o", str(ces), str(tmp_path / "m.jdl")],
                               input="y\na\n")  # overwrite? (asked first, as gLite), then append/overwrite
        assert result.exit_code == 0
        assert "Do you want to overwrite it ?" in result.stderr
        assert "Do you want to append (a) or to overwrite (o) ?" in result.stderr
        assert ces.read_text().startswith("previous results\n") and " - ce1\n" in ces.read_text()
        result = runner.invoke(cli, ["list-match", "--json", "-d", "dg", "-o", str(ces), str(tmp_path / "m.jdl")])
        assert result.exit_code == 0
        assert result.stdout == ""
        assert ces.read_text() == '{"result": "success", "ceid": ["ce1"]}\n'


class TestPerusal:
    def test_set_and_unset(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["perusal", "--set", "-f", "out.txt", "-f", "err.txt", JOB])
        assert result.exit_code == 0, result.output
        assert "File perusal has been successfully enabled for the job:" in result.stdout
        result = runner.invoke(cli, ["perusal", "--unset", "--json", JOB])
        assert json.loads(result.stdout)["perusal"] == "unset"
        assert fake.calls == [
            ("enable_file_perusal", (JOB, ["out.txt", "err.txt"])), ("enable_file_perusal", (JOB, [])),
        ]

    def test_get_downloads_and_displays(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake.perusal_uris = ["https://w/peek/out.txt-1-2", "https://w/peek/out.txt-3-4"]

        def fake_download(session: Any, uri: str, directory: str, **kw: Any) -> Path:
            path = Path(directory) / uri.rsplit("/", 1)[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"chunk {uri[-3:]}\n")
            return path

        monkeypatch.setattr(perusal, "download_file", fake_download)
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--all", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("get_perusal_files", (JOB, "out.txt", True, "https"))]
        assert result.stdout.endswith("chunk 1-2\nchunk 3-4\n")
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--nodisplay", "--dir", str(tmp_path), JOB])
        assert "chunk 1-2" not in result.stdout
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--json", "--dir", str(tmp_path), JOB])
        assert json.loads(result.stdout)["chunks"] == [str(tmp_path / "out.txt-1-2"), str(tmp_path / "out.txt-3-4")]

    def test_get_with_nothing_new(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0
        assert "No new chunks of the file out.txt" in result.stdout

    @pytest.mark.parametrize("args", [
        [JOB], ["--set", JOB], ["--get", "-f", "a", "-f", "b", JOB], ["--unset", "-f", "a", JOB], ["--set", "-f", "a"],
    ])
    def test_usage_errors(self, runner: CliRunner, fake: FakeClient, args: list[str]) -> None:
        assert runner.invoke(cli, ["perusal", *args]).exit_code == 1
        assert fake.calls == []

    def test_job_id_and_file_names_from_files(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "ids").write_text(f"###Submitted Job Ids###\n{JOB}\n")
        (tmp_path / "names").write_text("a.txt\n\nb.txt\n")
        result = runner.invoke(cli, ["perusal", "--set", "--input-file", str(tmp_path / "names"),
                                     "-i", str(tmp_path / "ids")])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("enable_file_perusal", (JOB, ["a.txt", "b.txt"]))]

    def test_several_ids_in_the_file_are_refused(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "ids").write_text(f"###Submitted Job Ids###\n{JOB}\n{JOB}2\n")
        result = runner.invoke(cli, ["perusal", "--unset", "-i", str(tmp_path / "ids")])
        assert result.exit_code == 1 and result.stdout == "", result.output
        assert result.stderr == (f"Error - Input: {tmp_path / 'ids'} holds 2 job ids; this command accepts only "
                                 "one: adjust the file or give JOBID\n")


class TestInfo:
    def test_delegated_proxy_in_the_glite_format(self, runner: CliRunner, fake: FakeClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("time.time", lambda: 1700000000.0)
        fake.proxy = ProxyInfo(
            "/C=XX/CN=Alice/CN=123", "/C=XX/CN=Alice", "/C=XX/CN=Alice", "proxy", "2048", "1700000000", "1700093784",
            vos=(VOInfo("/C=XX/CN=Alice", "/C=XX/CN=CA", "/C=XX/CN=voms", "/C=XX/CN=CA", "dteam", "voms:15000",
                        "1700000000", "1700003725", ("/dteam/Role=NULL/Capability=NULL",)),),
        )
        result = runner.invoke(cli, ["info", "-d", "mine"])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("get_delegated_proxy_info", ("mine",))]
        out = result.stdout
        assert f"Your proxy delegated to the endpoint {ENDPOINT}\nwith delegationID mine: \n" in out
        assert "Subject     : /C=XX/CN=Alice/CN=123\n" in out
        assert "Strength    : 2048\n" in out
        assert "Timeleft    : 1 days 02 hours 03 min 04 sec \n" in out
        assert "=== VO dteam extension information ===\nVO          : dteam\n" in out
        assert "Attribute   : /dteam/Role=NULL/Capability=NULL\n" in out
        assert "Timeleft    : 01 hours 02 min 05 sec \n" in out
        assert out.startswith("\n" + "=" * 26 + " wmproxy info Success ")
        vos = json.loads(runner.invoke(cli, ["info", "--json", "-d", "mine"]).stdout)["proxy"]["vos"]
        assert vos == [{"vo": "dteam", "user": "/C=XX/CN=Alice", "user_ca": "/C=XX/CN=CA", "server": "/C=XX/CN=voms",
                        "server_ca": "/C=XX/CN=CA", "uri": "voms:15000",
                        "attributes": ["/dteam/Role=NULL/Capability=NULL"], "start_time": 1700000000,
                        "end_time": 1700003725}]

    def test_job_proxy_jdl_and_original(self, runner: CliRunner, fake: FakeClient) -> None:
        fake.jdls[(JOB, "REGISTERED")] = '[\n  Executable = "/bin/true";\n  edg_jobid = "x"\n]'
        result = runner.invoke(cli, ["info", "--jdl", JOB])
        assert "The registered JDL\n for the job" in result.stdout and "edg_jobid" in result.stdout
        result = runner.invoke(cli, ["info", "-j", "--json", JOB])
        assert json.loads(result.stdout)["type"] == "ORIGINAL"
        result = runner.invoke(cli, ["info", "-p", "--json", JOB])
        assert json.loads(result.stdout)["proxy"]["end_time"] == 1700003725
        assert fake.names() == ["get_jdl", "get_jdl", "get_job_proxy_info", "get_proxy_renewal_info"]
        assert [args[1] for name, args in fake.calls if name == "get_jdl"] == ["REGISTERED", "ORIGINAL"]

    def test_job_proxy_with_its_last_renewal(self, runner: CliRunner, fake: FakeClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("time.time", lambda: 1700000000.0)
        fake.renewal = RenewalInfo("myproxy.example.org:7512", True,
                                   dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), "renewed",
                                   None, 1, "1700003725")
        result = runner.invoke(cli, ["info", "-p", JOB])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("get_job_proxy_info", (JOB,)), ("get_proxy_renewal_info", (JOB,))]
        out = result.stdout
        block = ("Timeleft    : 01 hours 02 min 05 sec \n\n"
                 "Proxy renewal: myproxy.example.org:7512\n"
                 "Last renewal: 2023-11-14 22:13:20 UTC (renewed)\n")
        assert block in out, out
        assert "Renewal error" not in out
        assert out.endswith(block + "\n" + "=" * 74 + "\n")

    def test_job_proxy_after_a_refused_renewal(self, runner: CliRunner, fake: FakeClient) -> None:
        fake.renewal = RenewalInfo("mp:7512", True, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC),
                                   "refused", "MyProxy server refused the renewal:\n  not authorized", 0, "1700003725")
        out = runner.invoke(cli, ["info", "-p", JOB]).stdout
        assert "Last renewal: 2023-11-14 22:13:20 UTC (refused)\n" in out
        assert "Renewal error: MyProxy server refused the renewal: not authorized\n" in out

    def test_job_proxy_registered_but_never_renewed_and_not_registered(self, runner: CliRunner,
                                                                       fake: FakeClient) -> None:
        fake.renewal = RenewalInfo("mp:7512", True, None, None, None, 0, "1700003725")
        out = runner.invoke(cli, ["info", "-p", JOB]).stdout
        assert "Proxy renewal: mp:7512\nLast renewal: never\n" in out
        fake.renewal = RenewalInfo(None, False, None, None, None, 0, "1700003725")
        out = runner.invoke(cli, ["info", "-p", JOB]).stdout
        assert "Proxy renewal: not registered\n" in out and "Last renewal" not in out

    def test_job_proxy_json_has_the_renewal(self, runner: CliRunner, fake: FakeClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("time.time", lambda: 1700000000.0)
        fake.renewal = RenewalInfo("mp:7512", True, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC),
                                   "unreachable", "cannot connect", 0, "1700003725")
        result = runner.invoke(cli, ["info", "-p", "--json", JOB])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["proxy"]["time_left"] == 3725
        assert data["renewal"] == {
            "myproxy_server": "mp:7512", "registered": True, "last_attempt": 1700000000,
            "last_result": "unreachable", "last_error": "cannot connect", "renewals": 0, "proxy_end_time": 1700003725,
        }

    @pytest.mark.parametrize("fault", [
        WMProxyClientError("InvalidArgumentFault", "Unknown operation {http://glite.org/wms/wmproxy}getProxyRenewalInfo",
                           "1225", "getProxyRenewalInfo"),
        WMProxyClientError("WMProxy Server Error", "Method 'ns1:getProxyRenewalInfo' not implemented"),
        WMProxyClientError("UnsupportedOperation", "the service's WSDL has no getProxyRenewalInfo"),
    ])
    def test_old_server_without_the_extension_gives_the_glite_output(
        self, runner: CliRunner, fake: FakeClient, fault: WMProxyClientError, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("time.time", lambda: 1700000000.0)
        fake.fail["get_proxy_renewal_info"] = fault
        result = runner.invoke(cli, ["info", "-p", JOB])
        assert result.exit_code == 0, result.output
        assert "Timeleft    : " in result.stdout
        assert "renewal" not in result.stdout.lower()
        result = runner.invoke(cli, ["info", "-p", "--json", JOB])
        assert result.exit_code == 0, result.output
        assert "renewal" not in json.loads(result.stdout)

    def test_delegated_proxy_does_not_ask_for_renewal(self, runner: CliRunner, fake: FakeClient) -> None:
        assert runner.invoke(cli, ["info", "-d", "mine"]).exit_code == 0
        assert fake.names() == ["get_delegated_proxy_info"]

    @pytest.mark.parametrize("args", [[JOB], ["--jdl", "-p", JOB], ["--jdl"], ["-d", "x", JOB]])
    def test_usage_errors(self, runner: CliRunner, fake: FakeClient, args: list[str]) -> None:
        assert runner.invoke(cli, ["info", *args]).exit_code == 1
        assert fake.calls == []


class TestTemplates:
    def test_job(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["templates", "job", "-t", "mpi", "-t", "PARAMETRIC", "--executable", "x"])
        assert result.exit_code == 0, result.output
        assert result.stdout == '[ Executable = "x" ]\n'
        assert fake.calls[0][1][:3] == (("MPI", "PARAMETRIC"), "x", "")

    def test_dag_graph_from_dependencies(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["templates", "dag", "--node", "lone", "--dependency", "a", "b",
                                     "--dependency", "b", "c", "--json"])
        assert result.exit_code == 0, result.output
        graph = fake.calls[0][1][0]
        assert graph == GraphNode(None, (GraphNode("lone"), GraphNode("a", (GraphNode("b", (GraphNode("c"),)),))))
        assert json.loads(result.stdout)["jdl"] == '[ Type = "dag" ]'

    def test_dag_cycle_is_a_usage_error(self, runner: CliRunner, fake: FakeClient) -> None:
        result = runner.invoke(cli, ["templates", "dag", "--dependency", "a", "b", "--dependency", "b", "a"])
        assert result.exit_code == 1 and fake.calls == []

    def test_collection_and_parametric(self, runner: CliRunner, fake: FakeClient) -> None:
        assert runner.invoke(cli, ["templates", "collection", "-n", "3"]).exit_code == 0
        assert runner.invoke(cli, ["templates", "parametric", "--attribute", "Arguments", "--param", "5",
                                   "--start", "1", "--step", "2"]).exit_code == 0
        assert runner.invoke(cli, ["templates", "parametric", "--attribute", "A", "--value", "x",
                                   "--value", "y"]).exit_code == 0
        assert fake.calls[0] == ("get_collection_template", (3, "true", "-other.GlueCEStateEstimatedResponseTime"))
        assert fake.calls[1][1][:4] == (("Arguments",), 5, 1, 2)
        assert fake.calls[2][1][:2] == (("A",), ("x", "y"))
        assert runner.invoke(cli, ["templates", "parametric", "--attribute", "A"]).exit_code == 1


class TestTwoPhaseSubmit:
    def test_register_only_uploads_but_does_not_start(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "a.sh").write_text("echo")
        (tmp_path / "j.jdl").write_text('[ Executable = "a.sh"; InputSandbox = {"a.sh"}; ]')
        result = runner.invoke(cli, ["submit", "-d", "dg", "--register-only", "--transfer-files",
                                     str(tmp_path / "j.jdl")])
        assert result.exit_code == 0, result.output
        assert fake.names() == ["get_max_input_sandbox_size", "job_register", "get_sandbox_dest_uri", "upload"]
        assert "The job has been successfully registered to the WMProxy\n" in result.stdout
        assert (
            "To complete the operation start the job by issuing a submission with the option:\n"
            f" --start {JOB}\n"
        ) in result.stdout

    def test_register_only_without_transfer_files_names_the_files(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "a.sh").write_text("echo")
        (tmp_path / "j.jdl").write_text('[ Executable = "a.sh"; InputSandbox = {"a.sh"}; ]')
        result = runner.invoke(cli, ["submit", "-d", "dg", "--register-only", str(tmp_path / "j.jdl")])
        assert result.exit_code == 0, result.output
        assert fake.names() == ["job_register", "get_sandbox_dest_uri"]
        assert ("The following local input sandbox file(s) must be transferred to\n"
                "https://wms.example.org:7443/SandboxDir/Ab/x/input\nbefore the job is started:\n"
                f" - {tmp_path / 'a.sh'}\n") in result.stdout

    def test_register_only_without_files_registers(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        result = runner.invoke(cli, ["submit", "-d", "dg", "--register-only", "--json", str(tmp_path / "j.jdl")])
        assert fake.names() == ["job_register"]
        assert json.loads(result.stdout)["jobid"] == JOB

    def test_start(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        result = runner.invoke(cli, ["submit", "--start", JOB, "-o", str(tmp_path / "ids")])
        assert result.exit_code == 0, result.output
        assert fake.calls == [("job_start", (JOB,))]
        assert "The job has been successfully started to the WMProxy\n" in result.stdout
        assert (tmp_path / "ids").read_text() == f"###Submitted Job Ids###\n{JOB}\n"

    @pytest.mark.parametrize("args", [["--start", JOB, "x.jdl"], ["--start", JOB, "--register-only"], ["-d", "x"],
                                      ["-d", "x", "--collection", "d", "x.jdl"]])
    def test_usage_errors(self, runner: CliRunner, fake: FakeClient, args: list[str]) -> None:
        assert runner.invoke(cli, ["submit", *args]).exit_code == 1

    def test_failed_start_is_marked_in_the_jobid_file(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "a.sh").write_text("echo")
        (tmp_path / "j.jdl").write_text('[ Executable = "a.sh"; InputSandbox = {"a.sh"}; ]')
        fake.fail["job_start"] = WMProxyClientError("OperationNotAllowedFault", "not now")
        ids = tmp_path / "ids"
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(ids), str(tmp_path / "j.jdl")])
        assert result.exit_code == 1
        assert result.stderr == "Error - OperationNotAllowedFault: not now\n"
        assert ids.read_text() == (
            "###Submitted Job Ids###\n#*Following Job Registered but Submission failed (try use --start option)\n"
            f"{JOB}\n"
        )


class TestSubmitJobIdFile:
    """``submit -o FILE``: checked before registering; a registered job's id is never lost."""

    def failing_upload(self, monkeypatch: pytest.MonkeyPatch, fake: FakeClient, tmp_path: Path) -> Path:
        def bad_upload(*args: Any, **kw: Any) -> str:
            fake.calls.append(("upload", ()))
            raise WMProxyClientError("TransferError", "HTTP 507 Insufficient Storage", None, "upload")

        monkeypatch.setattr(submit, "upload_file", bad_upload)
        (tmp_path / "a.sh").write_text("echo")
        (tmp_path / "j.jdl").write_text('[ Executable = "a.sh"; InputSandbox = {"a.sh"}; ]')
        return tmp_path / "j.jdl"

    def test_a_failed_upload_saves_the_registered_id_and_says_how_to_start_it(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        jdl = self.failing_upload(monkeypatch, fake, tmp_path)
        ids = tmp_path / "ids"
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(ids), str(jdl)])
        assert result.exit_code == 1
        assert "job_start" not in fake.names()
        assert result.stderr == (
            f"Error - TransferError: The job has been successfully registered (the JobId is: {JOB}), but an error "
            "occurred while transferring files: HTTP 507 Insufficient Storage. To complete the operation, transfer "
            "the input sandbox files, then start the job by issuing a submission with the option: "
            f"--start {JOB}\n"
        )
        assert ids.read_text() == f"{jobids.HEADER}\n{jobids.FAILED_HEADER}\n{JOB}\n"
        assert "Traceback" not in result.output

    def test_a_failed_upload_in_json_names_the_job(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        jdl = self.failing_upload(monkeypatch, fake, tmp_path)
        result = runner.invoke(cli, ["submit", "--json", "-d", "dg", str(jdl)])
        assert result.exit_code == 1
        doc = json.loads(result.stdout)
        assert doc["result"] == "failure"
        assert doc["jobid"] == JOB
        assert doc["error"]["type"] == "TransferError"
        assert f"--start {JOB}" in doc["error"]["message"]

    @pytest.mark.parametrize("where", ["nodir/ids", "."])
    def test_a_jobid_file_that_cannot_be_written_is_refused_before_registering(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, where: str
    ) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        target = tmp_path / where
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(target), str(tmp_path / "j.jdl")])
        assert result.exit_code == 1
        assert fake.calls == []
        assert result.stderr.startswith(f"Error - Output: cannot write the job id to {target}: ")

    def test_a_file_that_is_not_a_jobid_file_is_refused_before_registering(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path
    ) -> None:
        jdl = tmp_path / "j.jdl"
        jdl.write_text('[ Executable = "/bin/true"; ]\n')
        for args in (["-d", "dg", "-o", str(jdl), str(jdl)], ["--start", JOB, "-o", str(jdl)]):
            result = runner.invoke(cli, ["submit", *args])
            assert result.exit_code == 1
            assert fake.calls == []
            assert result.stderr.startswith(f"Error - Output: cannot write the job id to {jdl}: it is not a job id "
                                            "file (its first line is not ###Submitted Job Ids###)")
        assert jdl.read_text() == '[ Executable = "/bin/true"; ]\n'

    def test_a_jobid_file_unwritable_after_the_submission_is_a_warning(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        ids = tmp_path / "ids"

        def full_disk(path: Any, job_id: str) -> Path:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(jobids, "append_job_id", full_disk)
        result = runner.invoke(cli, ["submit", "-d", "dg", "-o", str(ids), str(tmp_path / "j.jdl")])
        assert result.exit_code == 0, result.output
        assert fake.names() == ["job_submit"]
        assert result.stderr == (f"Warning - Unable to write the jobid to the output file {ids}: "
                                 "No space left on device\n")
        assert f"Your job identifier is:\n\n{JOB}\n" in result.stdout
        assert "saved in the following file" not in result.stdout

        result = runner.invoke(cli, ["submit", "--json", "-d", "dg", "-o", str(ids), str(tmp_path / "j.jdl")])
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {
            "result": "success", "jobid": JOB, "endpoint": ENDPOINT,
            "warning": f"Unable to write the jobid to the output file {ids}: No space left on device"}


PARAMETRIC = """[ JobType = "Parametric"; Executable = "test.sh"; Arguments = "input_PARAM_.txt";
  Parameters = 130; ParameterStart = 100; ParameterStep = 10;
  InputSandbox = { "test.sh", "data/input_PARAM_.txt"}; ]"""


class TestCompoundSubmit:
    def registered(self, fake: FakeClient, names: list[str]) -> None:
        fake.registered = JobIds(JOB, children=tuple(JobIds(f"{JOB}{i}", name=n) for i, n in enumerate(names)))
        entries = ", ".join(f'"{DEST}/{n}"' for n in ("test.sh", "input100.txt", "input110.txt"))
        fake.jdls[(JOB, "REGISTERED")] = f'[\n  Type = "dag";\n  InputSandbox = {{ {entries}, "gsiftp://se/x" }};\n]'

    def test_parametric_uploads_the_expanded_files_once_to_the_parent(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "test.sh").write_text("cat")
        (tmp_path / "data").mkdir()
        for v in (100, 110):
            (tmp_path / "data" / f"input{v}.txt").write_text(str(v))
        (tmp_path / "p.jdl").write_text(PARAMETRIC)
        self.registered(fake, ["Node_100", "Node_110"])
        result = runner.invoke(cli, ["submit", "-d", "dg", "--json", str(tmp_path / "p.jdl")])
        assert result.exit_code == 0, result.output
        assert fake.names() == [
            "job_register", "get_jdl", "get_sandbox_dest_uri", "get_max_input_sandbox_size",
            "upload", "upload", "upload", "job_start",
        ]
        assert uploads == [(DEST, tmp_path / "test.sh"), (DEST, tmp_path / "data" / "input100.txt"),
                           (DEST, tmp_path / "data" / "input110.txt")]
        assert json.loads(result.stdout) == {
            "result": "success", "parent": JOB, "endpoint": ENDPOINT,
            "children": {"Node_100": f"{JOB}0", "Node_110": f"{JOB}1"},
        }

    def test_missing_node_file_stops_before_start(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "test.sh").write_text("cat")
        (tmp_path / "p.jdl").write_text(PARAMETRIC)
        self.registered(fake, ["Node_100"])
        result = runner.invoke(cli, ["submit", "-d", "dg", str(tmp_path / "p.jdl")])
        assert result.exit_code == 1
        # the parent is registered by then: its id is given, and how to start it
        assert result.stderr.startswith(f"Error - InputSandbox: The job has been successfully registered (the JobId "
                                        f"is: {JOB}), but an error occurred while transferring files: file not found:")
        assert "input100.txt" in result.stderr and "job_start" not in fake.names()

    def test_collection_directory(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, uploads: list[tuple[str, Path]]
    ) -> None:
        (tmp_path / "one.jdl").write_text('Executable = "/bin/echo"; InputSandbox = {"sub/x.txt"};')
        (tmp_path / "two.jdl").write_text('[ Executable = "/bin/date"; NodeName = "second"; ]')
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "x.txt").write_text("x")
        fake.jdls[(JOB, "REGISTERED")] = f'[ Type = "dag"; InputSandbox = {{"{DEST}/x.txt"}}; ]'
        result = runner.invoke(cli, ["submit", "-d", "dg", "--nomsg", "--collection", str(tmp_path)])
        assert result.exit_code == 0, result.output
        sent = fake.calls[0][1][0]
        assert 'Type = "collection"' in sent
        assert 'NodeName = "Node_one_jdl"' in sent and 'NodeName = "second"' in sent
        assert uploads == [(DEST, tmp_path / "sub" / "x.txt")]
        assert result.stdout == f"{JOB}\n"

    def test_empty_collection_directory(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        result = runner.invoke(cli, ["submit", "-d", "dg", "--collection", str(tmp_path)])
        assert result.exit_code == 1 and result.stderr.startswith("Error - Collection: no *.jdl file")


class TestCompoundOutput:
    def test_retrieves_each_node_into_its_directory_then_purges_the_parent(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a, b = child_job_id(JOB, 0), child_job_id(JOB, 1)
        fake.fail["get_output_file_list"] = WMProxyClientError("OperationNotAllowedFault", "parent")
        fake.status = JobStatus(JOB, "Done (Exit Code 0)", children=(JobStatus(b, "Done"), JobStatus(a, "Done")))
        fake.jdls[(JOB, "ORIGINAL")] = (
            '[ Type = "dag"; nodes = [ zeta = [ description = [ Executable = "/bin/true"; ]; ];'
            ' alpha = [ description = [ Executable = "/bin/true"; ]; ]; ]; ]'
        )
        got: list[tuple[str, str]] = []

        def list_files(job_id: str, protocol: str = "https") -> list[OutputFile]:
            fake.calls.append(("get_output_file_list", (job_id,)))
            if job_id == JOB:
                raise WMProxyClientError("OperationNotAllowedFault", "parent")
            return [OutputFile(f"https://w/{job_id[-4:]}/out.txt", 3)]

        def fake_download(session: Any, uri: str, directory: str, **kw: Any) -> Path:
            got.append((uri, os.fspath(directory)))
            return Path(directory) / "out.txt"

        monkeypatch.setattr(fake, "get_output_file_list", list_files)
        monkeypatch.setattr(output, "download_file", fake_download)
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0, result.output
        # DAG nodes are numbered in alphabetical order: alpha = 0, zeta = 1
        assert got == [(f"https://w/{b[-4:]}/out.txt", str(tmp_path / "zeta")),
                       (f"https://w/{a[-4:]}/out.txt", str(tmp_path / "alpha"))]
        assert fake.names()[-1] == "job_purge"
        assert f"\tNode Name:\talpha\n\tJobId:    \t{a}\n\tDir:      \t{tmp_path / 'alpha'}\n" in result.stdout
        assert "Output sandbox files for the DAG/Collection :\n" in result.stdout

    def test_a_node_whose_files_cannot_be_listed_fails_and_nothing_is_purged(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        b = _alpha_zeta_dag(fake, monkeypatch, "Done (Exit Code 0)", "Done",
                            WMProxyClientError("AuthorizationFault", "not yours"))
        result = runner.invoke(cli, ["output", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 1, result.output
        assert "job_purge" not in fake.names()
        assert f"Error - AuthorizationFault: node zeta: cannot list its output files: not yours (job {b})\n" \
            in result.stderr
        assert f"Warning - {JOB}: not purged" in result.stderr
        assert "\tNode Name:\talpha\n" in result.stdout
        assert "\tNode Name:\tzeta\n" not in result.stdout

        fake.calls.clear()
        result = runner.invoke(cli, ["output", "--json", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 1
        assert "job_purge" not in fake.names()
        doc = json.loads(result.stdout)
        assert doc["result"] == "partial"
        assert doc["nodes"]["zeta"]["failed"][0]["error"]["type"] == "AuthorizationFault"

    def test_a_cancelled_node_has_no_output_to_lose_and_the_job_is_purged(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The service lists output files of Done and Aborted jobs only: a node cancelled alone
        (the DAG then ends Aborted) is refused OperationNotAllowed, which loses nothing."""
        _alpha_zeta_dag(fake, monkeypatch, "Aborted", "Cancelled",
                        WMProxyClientError("OperationNotAllowedFault", "job status (CANCELLED) doesn't allow it"))
        result = runner.invoke(cli, ["output", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0, result.output
        assert "job_purge" in fake.names()
        assert "Warning - node zeta: OperationNotAllowedFault" in result.stderr

    def test_a_simple_job_fault_is_still_an_error(self, runner: CliRunner, fake: FakeClient, tmp_path: Path) -> None:
        fake.fail["get_output_file_list"] = WMProxyClientError("OperationNotAllowedFault", "not done")
        result = runner.invoke(cli, ["output", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 1
        assert result.stderr == "Error - OperationNotAllowedFault: not done\n"

    def test_several_jobs_from_a_file_go_to_subdirectories(
        self, runner: CliRunner, fake: FakeClient, tmp_path: Path
    ) -> None:
        (tmp_path / "ids").write_text(f"###Submitted Job Ids###\n{JOB}\n{JOB}2\n")
        result = runner.invoke(cli, ["output", "--json", "--dir", str(tmp_path), "-i", str(tmp_path / "ids")])
        assert result.exit_code == 0, result.output
        dirs = [job["dir"] for job in json.loads(result.stdout)["jobs"]]
        assert dirs == [str(tmp_path / output.default_dir(JOB).rsplit("/", 1)[-1]),
                        str(tmp_path / output.default_dir(JOB + "2").rsplit("/", 1)[-1])]


def _alpha_zeta_dag(fake: FakeClient, monkeypatch: pytest.MonkeyPatch, state: str, zeta_state: str,
                    zeta_fault: WMProxyClientError) -> str:
    """JOB as a DAG (``state``) of the nodes alpha (Done, one output file) and zeta
    (``zeta_state``, whose file list the service refuses with ``zeta_fault``); JOB's own list is
    refused (a compound job), each call recorded; a download lands in the node's directory.
    Returns zeta's job id."""
    a, b = child_job_id(JOB, 0), child_job_id(JOB, 1)
    fake.status = JobStatus(JOB, state, children=(JobStatus(a, "Done"), JobStatus(b, zeta_state)))
    fake.jdls[(JOB, "ORIGINAL")] = (
        '[ Type = "dag"; nodes = [ alpha = [ description = [ Executable = "/bin/true"; ]; ];'
        ' zeta = [ description = [ Executable = "/bin/true"; ]; ]; ]; ]'
    )

    def list_files(job_id: str, protocol: str = "https") -> list[OutputFile]:
        fake.calls.append(("get_output_file_list", (job_id,)))
        if job_id == JOB:
            raise WMProxyClientError("OperationNotAllowedFault", "getOutputFileList operation not allowed for dag")
        if job_id == b:
            raise zeta_fault
        return [OutputFile(f"https://w/{job_id[-4:]}/out.txt", 3)]

    monkeypatch.setattr(fake, "get_output_file_list", list_files)
    monkeypatch.setattr(output, "download_file", lambda session, uri, directory, **kw: Path(directory) / "out.txt")
    return b
