"""``wmproxy submit`` uploading input sandbox files whose names hold ``#``, ``%``, ``?`` or spaces
to the service itself, in-process behind a real TLS server (the ``service`` fixture): the
registered JDL lists them percent-encoded below the input area's URI, the CLI decodes them to
find the local files, the sandbox edge stores them under their own names and the execution
worker is told to stage those names."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Pki
from tests.support import principal_of
from wmproxy.cli.main import cli
from wmproxy.jdl import isb_file_names, parse_jdl
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime

#: ``50%25.txt`` reads as percent-encoded: the CLI decoded the name it was registered under
#: (as it was, before names were encoded) to ``50%.txt``, a file that is not there.
NAMES = ("res#1.txt", "a b%.txt", "50%25.txt", "what?.txt")


def _jdl(tmp_path: Path, collection: bool) -> Path:
    for name in NAMES:
        (tmp_path / name).write_text(f"data of {name}")
    sandbox = ", ".join(f'"{name}"' for name in NAMES)
    if collection:
        node = f'[ Executable = "/bin/cat"; InputSandbox = {{ {sandbox} }}; ]'
        text = f'[ Type = "collection"; nodes = {{ {node}, {node} }}; ]'
    else:
        text = f'[ Executable = "/bin/cat"; InputSandbox = {{ {sandbox} }}; ]'
    path = tmp_path / "job.jdl"
    path.write_text(text)
    return path


@pytest.mark.parametrize("collection", [False, True], ids=["simple", "collection"])
def test_input_names_with_uri_delimiters_round_trip(
    runner: CliRunner, service: Runtime, pki: Pki, tmp_path: Path, collection: bool
) -> None:
    rt = service
    result = runner.invoke(cli, ["submit", "-a", "--nomsg", "--register-only", "--transfer-files",
                                 str(_jdl(tmp_path, collection))])
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[-1]
    area = rt.storage.job_area(job_id)
    assert {p.name: p.read_text() for p in Path(area.input_dir).iterdir()} == {n: f"data of {n}" for n in NAMES}
    alice = principal_of(pki, "alice")
    with rt.uow() as uow:
        ids = [job_id, *(child.id for child in uow.jobs.children(job_id))]
    assert len(ids) == (3 if collection else 1)
    for each in ids:
        registered = parse_jdl(jobs.get_jdl(rt, alice, each, "REGISTERED"))
        own = rt.storage.job_area(each, job_id if each != job_id else None)
        if each == job_id and collection:
            continue  # the collection's own JDL lists no InputSandbox of its own
        assert registered["InputSandbox"] == [f"{own.input_uri}/{encoded}" for encoded in (
            "res%231.txt", "a%20b%25.txt", "50%2525.txt", "what%3F.txt")]
        assert isb_file_names(registered, own.input_uri) == NAMES


@pytest.mark.parametrize("service", [{"jobs": {"quota_soft_limit": 2000, "quota_hard_limit": 4000}}],
                         indirect=True)
def test_an_upload_refused_after_register_keeps_the_job_id(runner: CliRunner, service: Runtime,
                                                            tmp_path: Path) -> None:
    (tmp_path / "big.dat").write_bytes(b"x" * 10000)
    jdl = tmp_path / "job.jdl"
    jdl.write_text('[ Executable = "/bin/cat"; Arguments = "big.dat"; InputSandbox = {"big.dat"}; ]')
    ids = tmp_path / "ids.txt"
    result = runner.invoke(cli, ["submit", "-a", "-o", str(ids), str(jdl)])
    assert result.exit_code == 1
    lines = ids.read_text().splitlines()
    assert lines[:2] == ["###Submitted Job Ids###",
                         "#*Following Job Registered but Submission failed (try use --start option)"]
    job_id = lines[2]
    with service.uow() as uow:
        assert uow.jobs.get(job_id) is not None
    said = f"The job has been successfully registered (the JobId is: {job_id}), but an error occurred while"
    assert said in result.stderr
    assert result.stderr.rstrip().endswith(f"--start {job_id}")
    assert "Traceback" not in result.output
