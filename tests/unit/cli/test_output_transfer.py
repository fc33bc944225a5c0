"""``wmproxy output`` (and ``perusal --get``) downloading from a real HTTPS server.

* A hostile server: names it gives (file URIs, node names of a compound job's JDL) never lead
  outside the chosen directory, and one file that cannot be retrieved does not stop the others.
* The service itself, in-process (``WMProxyApplication``: SOAP port and sandbox edge, a fixed
  caller instead of the TLS client certificate) behind a real TLS server: file names with
  ``#``, ``%``, ``?`` or spaces are listed with URIs the sandbox edge serves.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import ECHO_JDL
from wmproxy.cli.compound import child_job_id
from wmproxy.cli.main import cli
from wmproxy.cli.output import default_dir
from wmproxy.client import JobStatus, OutputFile, WMProxyClientError
from wmproxy.client.session import grid_session
from wmproxy.domain import JobState
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime

from .conftest import JOB, FakeClient
from .https_server import https_server, registered_job


def _any_file(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 for every GET: the body names the (decoded) path asked for."""
    body = f"content of {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


def _listed(uri: str) -> OutputFile:
    """``uri`` as getOutputFileList lists it: with the size of what :func:`_any_file` serves."""
    return OutputFile(uri, len(f"content of {unquote(urlsplit(uri).path)}".encode()))


@pytest.fixture
def server(pki: Pki, fake: FakeClient) -> Iterator[str]:
    """A hostile server's sandbox: any path is served. The fake client uses a real session."""
    with https_server(pki, _any_file) as (_, base):
        fake.session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
        yield base


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


class TestServerGivenNames:
    def test_a_file_name_leading_outside_is_refused_and_the_others_are_written(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        root = tmp_path / "dl"
        chosen = root / "chosen" / "sub"
        chosen.mkdir(parents=True)
        (root / "victim.txt").write_text("keep")
        (chosen / "linked.txt").symlink_to(root / "victim.txt")
        hostile = [".%2F..%2F..%2Fescaped.txt", "..%2F..%2Fescaped2.txt", "%2E%2E", ".", "..%5C..%5Cback.txt",
                   "nul%00.txt", "linked.txt"]
        fake.outputs = [_listed(f"{server}/job/output/out.txt")]
        fake.outputs += [_listed(f"{server}/job/output/{name}") for name in hostile]
        fake.outputs += [_listed(f"{server}/job/output/plain.txt")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 1, result.output
        assert not (root / "escaped.txt").exists() and not (root / "escaped2.txt").exists()
        assert (chosen / "out.txt").read_text() == "content of /job/output/out.txt"
        assert (chosen / "plain.txt").read_text() == "content of /job/output/plain.txt"
        assert (root / "victim.txt").read_text() == "keep"
        assert _files_under(root) == {"victim.txt", "chosen/sub/out.txt", "chosen/sub/plain.txt",
                                      "chosen/sub/linked.txt"}
        assert (chosen / "linked.txt").is_symlink()
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error - ")]
        assert len(errors) == len(hostile), result.stderr
        uri = f"{server}/job/output/.%2F..%2F..%2Fescaped.txt"
        assert (f"Error - TransferError: refused the name './../../escaped.txt' of {uri}: "
                f"not a plain file name (job {JOB})") in errors
        assert any("refused the name 'linked.txt'" in e and "leads outside" in e for e in errors)
        assert "job_purge" not in fake.names()
        assert f"Warning - {JOB}: not purged, {len(hostile)} of its output files could not be retrieved" \
               in result.stderr
        assert "have been retrieved and stored in the directory:\n" in result.stdout
        assert "but these output files could not be retrieved: ./../../escaped.txt, ../../escaped2.txt" \
               in result.stdout

    def test_a_leftover_temporary_file_that_is_a_link_is_not_followed(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        (tmp_path / "victim.txt").write_text("keep")
        chosen = tmp_path / "chosen"
        chosen.mkdir()
        (chosen / ".plain.txt.part").symlink_to(tmp_path / "victim.txt")
        fake.outputs = [_listed(f"{server}/job/output/plain.txt")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "victim.txt").read_text() == "keep"
        assert not (chosen / "plain.txt").is_symlink()
        assert (chosen / "plain.txt").read_text() == "content of /job/output/plain.txt"
        assert _files_under(chosen) == {"plain.txt", ".plain.txt.part"}  # not one of its own: kept
        assert (chosen / ".plain.txt.part").is_symlink()

    def test_json_names_each_file_not_retrieved(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        fake.outputs = [_listed(f"{server}/o/..%2Fx"), _listed(f"{server}/o/y")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--json", "--dir", str(tmp_path / "d"), JOB])
        assert result.exit_code == 1
        data = json.loads(result.stdout)
        assert data["result"] == "partial" and data["files"] == [str(tmp_path / "d" / "y")]
        assert [(f["name"], f["error"]["type"]) for f in data["failed"]] == [("../x", "TransferError")]
        assert "Error" not in result.stderr and "not purged" in result.stderr

    def test_node_names_leading_outside_are_never_used(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Node names that are not plain names ('..', 'a/../../x') make the parent's JDL one the
        JDL parser refuses (as the service refuses it at registration): the nodes get their
        positional names, and every file lands inside the chosen directory."""
        target = tmp_path / "dl" / "chosen"
        children = [child_job_id(JOB, i) for i in range(3)]
        fake.status = JobStatus(JOB, "Done (Exit Code 0)", children=tuple(JobStatus(c, "Done") for c in children))
        node = '[ description = [ Executable = "/bin/true"; ]; ]'
        fake.jdls[(JOB, "ORIGINAL")] = (f"[ Type = \"dag\"; nodes = [ '..' = {node}; 'a/../../x' = {node};"
                                        f" ok = {node}; ]; ]")

        def list_files(job_id: str, protocol: str = "https") -> list[OutputFile]:
            fake.calls.append(("get_output_file_list", (job_id,)))
            if job_id == JOB:
                raise WMProxyClientError("OperationNotAllowedFault", "parent")
            return [_listed(f"{server}/{job_id[-6:]}/out.txt")]

        monkeypatch.setattr(fake, "get_output_file_list", list_files)
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(target), JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(tmp_path / "dl") == {f"chosen/Node_{i}/out.txt" for i in range(3)}
        assert [args[0] for name, args in fake.calls if name == "get_output_file_list"] == [JOB, *children]


NAMES = ("res#1.txt", "50%.txt", "a b?.txt")


class TestThroughTheService:
    def test_output_names_with_hash_or_percent_are_listed_quoted_and_retrieved(
        self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        rt = service
        alice, job_id = registered_job(rt, pki, ECHO_JDL, JobState.DONE)
        output = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output")
        for name in NAMES:
            (output / name).write_text(f"data of {name}")
        uris = [uri for uri, _ in jobs.output_files(rt, alice, job_id, "https")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path / "out"), job_id])
        assert result.exit_code == 0, result.output
        assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {n: f"data of {n}" for n in NAMES}
        assert jobs.job_status(rt, alice, job_id).state == "Cleared"
        assert sorted(uri.rsplit("/", 1)[1] for uri in uris) == ["50%25.txt", "a%20b%3F.txt", "res%231.txt"]

    def test_perusal_parts_of_a_name_with_a_hash_are_retrieved(
        self, runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        rt = service
        jdl = ECHO_JDL.replace("[", "[ PerusalFileEnable = true;", 1)
        _, job_id = registered_job(rt, pki, jdl, JobState.RUNNING)
        result = runner.invoke(cli, ["perusal", "--set", "-f", "res#1.txt", job_id])
        assert result.exit_code == 0, result.output
        rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output")
        rt.storage.write_perusal_chunk(job_id, "res#1.txt", b"first lines\n", 100)
        result = runner.invoke(cli, ["perusal", "--get", "-f", "res#1.txt", "--dir", str(tmp_path / "p"), job_id])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "p" / "res#1.txt-100-100").read_text() == "first lines\n"
        assert result.stdout.endswith("first lines\n")


@pytest.mark.parametrize("name", ["..", "a/../../x", "a\\b", "x\0y", ""])
def test_a_node_name_that_is_not_a_plain_name_gets_no_directory(name: str, tmp_path: Path) -> None:
    """Should a node name that is not a plain name come through (the parser refuses such JDLs
    now, and the nodes get positional names), it gets no directory: the node is reported."""
    from wmproxy.cli.output import _node_dir

    node_dir, failed = _node_dir(str(tmp_path / "chosen"), name, child_job_id(JOB, 0), True)
    assert node_dir is None and len(failed) == 1
    assert _node_dir(str(tmp_path / "chosen"), "ok", child_job_id(JOB, 0), True) == (
        str(tmp_path / "chosen" / "ok"), [])


class TestLocalWriteFailure:
    def test_a_dir_that_is_a_file_is_a_transfer_error(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        (tmp_path / "afile").write_text("keep")
        fake.outputs = [_listed(f"{server}/job/output/out.txt")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path / "afile"), JOB])
        assert result.exit_code == 1, result.output
        assert (f"Error - TransferError: cannot write {tmp_path / 'afile' / 'out.txt'}: File exists "
                f"(job {JOB})\n") in result.stderr, result.stderr
        assert (tmp_path / "afile").read_text() == "keep"
        assert "job_purge" not in fake.names()

    def test_a_body_cut_short_is_a_transfer_error_and_leaves_no_part_file(
        self, runner: CliRunner, fake: FakeClient, pki: Pki, tmp_path: Path
    ) -> None:
        def short_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "100000")])
            return [b"only this"]

        with https_server(pki, short_body) as (_, base):
            fake.session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
            fake.outputs = [OutputFile(f"{base}/job/output/out.txt", 100000)]
            result = runner.invoke(cli, ["output", "--dir", str(tmp_path / "d"), JOB])
        assert result.exit_code == 1, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error - ")]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith(f"Error - TransferError: the download of {base}/job/output/out.txt broke off: "
                                    "Connection broken: "), errors
        assert _files_under(tmp_path / "d") == set()


NOBODY = 65534  # an account every Linux system has: the other local user of these tests
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@pytest.fixture
def own_job(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A job id of this test alone, and its default output directory ``/tmp/<LOGNAME>_<id>``
    (removed afterwards; ``$LOGNAME`` set: without it perusal's is ``jobPerusal_<id>``)."""
    monkeypatch.setenv("LOGNAME", "alice")
    job = f"https://wms.example.org:9000/{uuid.uuid4().hex}"
    where = Path(default_dir(job))
    yield job, where
    shutil.rmtree(where, ignore_errors=True)
    where.unlink(missing_ok=True)


def _as_nobody(*argv: str) -> None:
    subprocess.run(argv, user=NOBODY, group=NOBODY, extra_groups=[], check=True, timeout=60)


class TestTheDefaultDirectory:
    """``/tmp/<user>_<id>``: anyone may create that name first. The user's own directory that only
    they can write is used; anything else is refused, the job is not purged."""

    @needs_root
    def test_a_directory_another_user_made_is_refused(
        self, runner: CliRunner, fake: FakeClient, server: str, own_job: tuple[str, Path]
    ) -> None:
        job, where = own_job
        _as_nobody("mkdir", "-m", "0755", str(where))  # as an attacker would, before the user's retrieval
        fake.outputs = [_listed(f"{server}/job/output/std.out")]
        result = runner.invoke(cli, ["output", job])
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"Error - TransferError: the default output directory {where} belongs to uid "
                                 f"{NOBODY} (nobody), not to you: it is not used (another user could replace or "
                                 "read the files stored there); remove it, or choose a directory with --dir\n")
        assert list(where.iterdir()) == [] and "job_purge" not in fake.names()
        assert "get_output_file_list" not in fake.names()  # nothing asked, nothing fetched
        fake.perusal_uris = [f"{server}/job/peek/out.txt-1-2"]
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", job])
        assert result.exit_code == 1 and "belongs to uid 65534 (nobody), not to you" in result.stderr
        assert list(where.iterdir()) == []

    @pytest.mark.parametrize("kind", ["link", "group-writable", "file"])
    def test_a_link_a_file_or_a_directory_others_can_write_is_refused(
        self, runner: CliRunner, fake: FakeClient, server: str, own_job: tuple[str, Path], tmp_path: Path,
        kind: str
    ) -> None:
        job, where = own_job
        if kind == "link":
            where.symlink_to(tmp_path)
            problem = "is a symbolic link"
        elif kind == "file":
            where.write_text("")
            problem = "is not a directory"
        else:
            where.mkdir()
            where.chmod(0o775)
            problem = "can be written by others (mode 0775)"
        fake.outputs = [_listed(f"{server}/job/output/std.out")]
        result = runner.invoke(cli, ["output", job])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error - TransferError: the default output directory {where} {problem}: "
                                        "it is not used"), result.stderr
        assert list(tmp_path.iterdir()) == [] and "job_purge" not in fake.names()

    def test_is_made_for_the_user_alone_whatever_the_umask(
        self, runner: CliRunner, fake: FakeClient, server: str, own_job: tuple[str, Path], tmp_path: Path
    ) -> None:
        job, where = own_job
        fake.outputs = [_listed(f"{server}/job/output/std.out")]
        previous = os.umask(0o002)
        try:
            result = runner.invoke(cli, ["output", "--nopurge", job])
            assert os.umask(0o002) == 0o002  # given back
        finally:
            os.umask(previous)
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
        assert stat.S_IMODE((where / "std.out").stat().st_mode) == 0o600
        # the user's own directory is used again (the file already there is kept, below)
        where.chmod(0o755)
        fake.outputs = [_listed(f"{server}/job/output/other.out")]
        result = runner.invoke(cli, ["output", job])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE((where / "other.out").stat().st_mode) == 0o600
        assert fake.names().count("job_purge") == 1
        # in a directory the user names, the umask decides, as for any file the user makes
        previous = os.umask(0o022)
        try:
            result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path / "mine"), job])
        finally:
            os.umask(previous)
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE((tmp_path / "mine" / "other.out").stat().st_mode) == 0o644


class TestOneListingNeverReplacesAFile:
    def test_a_name_listed_twice_is_fetched_once_and_the_job_is_not_purged(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        fake.outputs = [_listed(f"{server}/a/result.txt"), _listed(f"{server}/b/result.txt"),
                        _listed(f"{server}/c/other.txt")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 1, result.output
        assert (tmp_path / "result.txt").read_text() == "content of /a/result.txt"
        assert (tmp_path / "other.txt").read_text() == "content of /c/other.txt"
        assert (f"Error - TransferError: the output file list names result.txt twice: {server}/b/result.txt is "
                "not fetched (only the first file of a name is: it would replace that one) "
                f"(job {JOB})\n") in result.stderr
        assert "job_purge" not in fake.names()

    def test_an_existing_file_is_kept_unless_overwrite(
        self, runner: CliRunner, fake: FakeClient, server: str, tmp_path: Path
    ) -> None:
        (tmp_path / "result.txt").write_text("precious")
        fake.outputs = [_listed(f"{server}/a/result.txt"), _listed(f"{server}/a/new.txt")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--json", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 1, result.output
        assert (tmp_path / "result.txt").read_text() == "precious"
        assert (tmp_path / "new.txt").read_text() == "content of /a/new.txt"
        failed = json.loads(result.stdout)["failed"]
        kept = (f"{tmp_path / 'result.txt'} already exists: it is kept and {server}/a/result.txt is not fetched "
                "(remove it, choose another --dir, or give --overwrite)")
        assert [(f["name"], f["error"]["message"]) for f in failed] == [("result.txt", kept)]
        assert "job_purge" not in fake.names()
        (tmp_path / "new.txt").unlink()
        result = runner.invoke(cli, ["output", "--nosubdir", "--overwrite", "--dir", str(tmp_path), JOB])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "result.txt").read_text() == "content of /a/result.txt"
        assert fake.names().count("job_purge") == 1
