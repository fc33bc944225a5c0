"""``wmproxy output --dir D`` and ``perusal --get --dir D`` against a local attacker, and ``perusal
--get`` against a server sending too much.

* D in a directory others can write (``/tmp/shared``): a component of its path swapped for a
  symbolic link after the CLI has checked (and opened) D, while a file is being fetched, must
  not redirect the files written. The swap is made by the test's HTTPS server while it answers
  the GET: after the CLI's checks, before its writes, and nothing of the code under test is
  replaced.
* A name created in D meanwhile is kept without ``--overwrite``.
* ``perusal --get`` stores at most ``--max-size`` bytes: the listing of chunks gives no sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from wmproxy.cli.main import cli
from wmproxy.cli.output import job_subdir
from wmproxy.client import OutputFile
from wmproxy.client.session import grid_session

from .conftest import JOB, FakeClient
from .https_server import https_server

OTHER_JOB = JOB + "2"
NOBODY = 65534  # an account every Linux system has: the other local user
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a link of another user needs root")


class Server:
    """A sandbox server: every GET is answered ``content of <path>``, after ``before_answer``
    (once), which plays the local attacker at that moment."""

    def __init__(self) -> None:
        self.base = ""
        self.before_answer: Callable[[], None] | None = None
        self.body: Callable[[str], Iterable[bytes]] | None = None
        self.length = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.before_answer is not None:
            hook, self.before_answer = self.before_answer, None
            hook()
        path = environ["PATH_INFO"]
        body = list(self.body(path)) if self.body is not None else [f"content of {path}".encode()]
        headers = [("Content-Type", "application/octet-stream")]
        if self.length:
            headers.append(("Content-Length", str(sum(len(b) for b in body))))
        start_response("200 OK", headers)
        return body

    def listed(self, path: str) -> OutputFile:
        """``path`` as getOutputFileList lists it, with the size served."""
        return OutputFile(f"{self.base}{path}", len(f"content of {path}".encode()))


@pytest.fixture
def server(pki: Pki, fake: FakeClient) -> Iterator[Server]:
    app = Server()
    with https_server(pki, app) as (_, base):
        app.base = base
        fake.session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
        yield app


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A directory everybody may write (as ``/tmp`` without its sticky bit's protection of the
    user's own subdirectory: a swap of ``shared/work`` is what another user could do there)."""
    where = tmp_path / "shared"
    where.mkdir()
    where.chmod(0o777)
    return where


def _swap(component: Path, to: Path) -> Callable[[], None]:
    """The attacker's move: ``component`` renamed aside, a link to ``to`` in its place."""
    def swap() -> None:
        component.rename(component.with_name(component.name + ".real"))
        component.symlink_to(to, target_is_directory=True)
    return swap


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


class TestASwappedPathComponent:
    @pytest.mark.parametrize("jobs", [[JOB], [JOB, OTHER_JOB]], ids=["one job", "two jobs"])
    def test_does_not_redirect_the_files(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path, jobs: list[str]
    ) -> None:
        chosen = shared / "work" / "out"
        chosen.mkdir(parents=True)
        elsewhere = tmp_path / "attacker"
        (elsewhere / "out").mkdir(parents=True)
        fake.outputs = [server.listed("/job/output/std.out"), server.listed("/job/output/std.err")]
        server.before_answer = _swap(shared / "work", elsewhere)
        result = runner.invoke(cli, ["output", "--nopurge", "--dir", str(chosen), *jobs])
        assert result.exit_code == 0, result.output
        assert _files_under(elsewhere) == set()
        real = shared / "work.real" / "out"
        names = {f"{job_subdir(job)}/{name}" for job in jobs for name in ("std.out", "std.err")}
        assert _files_under(real) == names
        assert f"stored in the directory:\n{chosen}" in result.stdout  # the path the user named

    def test_does_not_replace_the_victims_file_through_the_link(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path
    ) -> None:
        """With ``--overwrite``: the directory itself swapped for a link to one of the user's
        directories holding a file of the name fetched."""
        chosen = shared / "out"
        chosen.mkdir()
        victim = tmp_path / "home" / "bin"
        victim.mkdir(parents=True)
        (victim / "std.out").write_text("the user's own program")
        fake.outputs = [server.listed("/job/output/std.out")]
        server.before_answer = _swap(chosen, victim)
        result = runner.invoke(cli, ["output", "--nosubdir", "--overwrite", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(victim) == {"std.out"}
        assert (victim / "std.out").read_text() == "the user's own program"
        assert (shared / "out.real" / "std.out").read_text() == "content of /job/output/std.out"

    def test_of_a_compound_jobs_directory_does_not_redirect_its_nodes(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from wmproxy.cli.compound import child_job_id
        from wmproxy.client import JobStatus, WMProxyClientError

        chosen = shared / "work" / "out"
        chosen.mkdir(parents=True)
        elsewhere = tmp_path / "attacker"
        (elsewhere / "out").mkdir(parents=True)
        children = [child_job_id(JOB, i) for i in range(2)]
        fake.status = JobStatus(JOB, "Done (Exit Code 0)", children=tuple(JobStatus(c, "Done") for c in children))
        node = '[ description = [ Executable = "/bin/true"; ]; ]'
        fake.jdls[(JOB, "ORIGINAL")] = f'[ Type = "dag"; nodes = [ a = {node}; b = {node}; ]; ]'

        def list_files(job_id: str, protocol: str = "https") -> list[OutputFile]:
            if job_id == JOB:
                raise WMProxyClientError("OperationNotAllowedFault", "parent")
            return [server.listed(f"/{job_id[-6:]}/out.txt")]

        monkeypatch.setattr(fake, "get_output_file_list", list_files)
        # the parent's directory is opened for the first node: the swap comes while it is fetched
        server.before_answer = _swap(shared / "work", elsewhere)
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(elsewhere) == set()
        assert _files_under(shared / "work.real" / "out") == {"a/out.txt", "b/out.txt"}

    def test_perusal_chunks_are_not_redirected(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path
    ) -> None:
        chosen = shared / "work" / "peek"
        chosen.mkdir(parents=True)
        elsewhere = tmp_path / "attacker"
        (elsewhere / "peek").mkdir(parents=True)
        fake.perusal_uris = [f"{server.base}/job/peek/out.txt-1-2", f"{server.base}/job/peek/out.txt-3-4"]
        server.before_answer = _swap(shared / "work", elsewhere)
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(elsewhere) == set()
        assert _files_under(shared / "work.real" / "peek") == {"out.txt-1-2", "out.txt-3-4"}
        assert result.stdout.endswith("content of /job/peek/out.txt-1-2content of /job/peek/out.txt-3-4")


class TestTheChosenDirectory:
    @needs_root
    def test_a_link_is_not_followed(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path
    ) -> None:
        """``--dir shared/out`` where another user made ``out`` a link first (one of the user's own is
        followed: below): refused, as each file's
        error (the job is not purged)."""
        victim = tmp_path / "home"
        victim.mkdir()
        (shared / "out").symlink_to(victim)
        os.lchown(shared / "out", NOBODY, -1)
        fake.outputs = [server.listed("/job/output/std.out")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(shared / "out"), JOB])
        assert result.exit_code == 1, result.output
        assert (f"Error - TransferError: cannot write {shared / 'out' / 'std.out'}: {shared / 'out'} is a symbolic "
                f"link of another user, not followed (job {JOB})\n") in result.stderr
        assert list(victim.iterdir()) == [] and "job_purge" not in fake.names()
        fake.perusal_uris = [f"{server.base}/job/peek/out.txt-1-2"]
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--dir", str(shared / "out"), JOB])
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"Error - TransferError: cannot write {shared / 'out' / 'out.txt-1-2'}: "
                                 f"{shared / 'out'} is a symbolic link of another user, not followed\n")
        assert list(victim.iterdir()) == []

    def test_a_link_of_the_users_own_is_followed(
        self, runner: CliRunner, fake: FakeClient, server: Server, shared: Path, tmp_path: Path
    ) -> None:
        """``--dir ~/results`` where the user linked ``results`` to a scratch disk: the files go there."""
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        (shared / "out").symlink_to(scratch)
        fake.outputs = [server.listed("/job/output/std.out")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(shared / "out"), JOB])
        assert result.exit_code == 0, result.output
        assert (scratch / "std.out").read_bytes() == b"content of /job/output/std.out"

    def test_a_file_made_meanwhile_is_kept_without_overwrite(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        """A name checked free, then taken while the file is fetched (by another program of the
        user's, or another user in a shared directory): it is kept, the job is not purged."""
        chosen = tmp_path / "out"
        chosen.mkdir()
        fake.outputs = [server.listed("/job/output/std.out")]
        server.before_answer = lambda: (chosen / "std.out").write_text("made meanwhile")
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 1, result.output
        assert (chosen / "std.out").read_text() == "made meanwhile"
        assert (f"Error - TransferError: {chosen / 'std.out'} already exists: it is kept and {server.base}"
                f"/job/output/std.out is not stored (job {JOB})\n") in result.stderr
        assert _files_under(chosen) == {"std.out"} and "job_purge" not in fake.names()


def _sized(size: int) -> Callable[[str], Iterable[bytes]]:
    """A body of ``size`` bytes, sent in 64 KiB pieces."""
    def body(path: str) -> Iterable[bytes]:
        for start in range(0, size, 65536):
            yield b"x" * min(65536, size - start)
    return body



def _with_notes(directory: Path, name: str) -> Path:
    """``directory`` made, holding the user's own file ``name`` (``my own notes``)."""
    directory.mkdir()
    (directory / name).write_text("my own notes")
    return directory


class TestTheTemporaryFile:
    """The temporary file a download is written to has a name of its own: a name listed or the
    user's is never removed in its stead."""

    def test_an_output_file_stored_before_is_not_removed(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        """A listing of ``.foo.part`` then ``foo``: both stored and both kept (before, ``foo``'s
        temporary file replaced ``.foo.part``, which was reported stored, and the job purged)."""
        chosen = tmp_path / "out"
        fake.outputs = [server.listed("/job/output/.foo.part"), server.listed("/job/output/foo")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(chosen) == {".foo.part", "foo"}
        assert (chosen / ".foo.part").read_text() == "content of /job/output/.foo.part"
        assert (chosen / "foo").read_text() == "content of /job/output/foo"

    def test_the_users_own_file_of_that_name_is_kept(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        chosen = _with_notes(tmp_path / "out", ".bar.part")
        fake.outputs = [server.listed("/job/output/bar")]
        result = runner.invoke(cli, ["output", "--nosubdir", "--dir", str(chosen), JOB])
        assert result.exit_code == 0, result.output
        assert (chosen / ".bar.part").read_text() == "my own notes"
        assert _files_under(chosen) == {".bar.part", "bar"}

    def test_a_refused_file_removes_only_its_own_temporary_file(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        chosen = _with_notes(tmp_path / "p", ".out.txt-1-2.part")
        server.body = _sized(1_000_000)
        server.length = False
        fake.perusal_uris = [f"{server.base}/job/peek/out.txt-1-2"]
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--max-size", "300000", "--dir",
                                     str(chosen), JOB])
        assert result.exit_code == 1, result.output
        assert "nothing stored" in result.stderr
        assert _files_under(chosen) == {".out.txt-1-2.part"}
        assert (chosen / ".out.txt-1-2.part").read_text() == "my own notes"


class TestPerusalIsBounded:
    @pytest.mark.parametrize("announced", [True, False], ids=["announced", "streamed"])
    def test_a_chunk_over_max_size_is_refused_and_nothing_of_it_stays(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path, announced: bool
    ) -> None:
        server.body = _sized(1_000_000)
        server.length = announced
        fake.perusal_uris = [f"{server.base}/job/peek/out.txt-1-2"]
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--max-size", "300000", "--dir",
                                     str(tmp_path / "p"), JOB])
        assert result.exit_code == 1, result.output
        how = "announced 1000000 bytes" if announced else "sent more"
        assert result.stderr == (
            f"Error - TransferError: refused {server.base}/job/peek/out.txt-1-2: larger than the 300000 bytes "
            f"allowed, it {how}; nothing stored (--max-size 300000 for all the chunks of this --get; the service "
            "keeps the chunks: get them with a larger --max-size --all)\n")
        assert _files_under(tmp_path / "p") == set()

    def test_the_bound_is_for_all_the_chunks_together(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        server.body = _sized(200_000)
        fake.perusal_uris = [f"{server.base}/job/peek/out.txt-{i}-{i}" for i in range(1, 4)]
        args = ["perusal", "--get", "-f", "out.txt", "--all", "--nodisplay", "--dir", str(tmp_path / "p"), JOB]
        result = runner.invoke(cli, [*args[:-1], "--max-size", "500000", JOB])
        assert result.exit_code == 1, result.output
        assert "refused" in result.stderr and "larger than the 100000 bytes allowed" in result.stderr
        assert "the 2 chunk(s) before it are stored; " in result.stderr
        assert "get them with a larger --max-size)" in result.stderr  # --all given already
        assert _files_under(tmp_path / "p") == {"out.txt-1-1", "out.txt-2-2"}
        result = runner.invoke(cli, [*args[:-1], "--max-size", "600000", JOB])
        assert result.exit_code == 0, result.output
        assert _files_under(tmp_path / "p") == {f"out.txt-{i}-{i}" for i in range(1, 4)}
        (tmp_path / "p" / "out.txt-3-3").unlink()
        result = runner.invoke(cli, [*args[:-1], "--max-size", "0", JOB])  # no bound
        assert result.exit_code == 0, result.output
        assert (tmp_path / "p" / "out.txt-3-3").stat().st_size == 200_000

    def test_a_chunk_listed_twice_is_fetched_shown_and_counted_once(
        self, runner: CliRunner, fake: FakeClient, server: Server, tmp_path: Path
    ) -> None:
        """The bound fits the two chunks, not the first one counted twice."""
        server.body = _sized(200_000)
        first, second = f"{server.base}/job/peek/out.txt-1-1", f"{server.base}/job/peek/out.txt-2-2"
        fake.perusal_uris = [first, f"{server.base}/other/out.txt-1-1", second]
        result = runner.invoke(cli, ["perusal", "--get", "-f", "out.txt", "--max-size", "500000", "--dir",
                                     str(tmp_path / "p"), JOB])
        assert result.exit_code == 1, result.output
        assert _files_under(tmp_path / "p") == {"out.txt-1-1", "out.txt-2-2"}
        assert result.stdout.count(str(tmp_path / "p" / "out.txt-1-1")) == 1
        assert result.stdout.endswith("x" * 400_000) and "x" * 400_001 not in result.stdout
        assert result.stderr == (
            f"Error - TransferError: the listing of chunks names out.txt-1-1 twice: {server.base}/other/out.txt-1-1 "
            f"is not fetched (only the first chunk of a name is: it would replace that one) (job {JOB})\n")

    def test_the_default_bound_is_shown_in_the_help(self, runner: CliRunner) -> None:
        result = runner.invoke(cli, ["perusal", "--help"])
        assert "--max-size BYTES" in result.output and "100000000" in result.output
