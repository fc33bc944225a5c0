"""The sandbox attributes of a JDL when its job runs: a destination this service cannot serve
(a remote ``OutputSandboxDestURI``, a remote ``InputSandbox`` entry) is refused at registration
instead of being silently dropped; every ``OutputSandbox`` entry is collected (wildcards
expanded) under the name its registered destination gives. Real worker in process, real jobs
(as the mapped account), both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import job_row, run_to_end
from tests.support import delegate_in_process, principal_of
from wmproxy.domain import JobState
from wmproxy.errors import InvalidArgumentError, JdlError
from wmproxy.execution.identity import Account
from wmproxy.jdl import parse_jdl
from wmproxy.services.jobs import output_files
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, submit_job
from wmproxy.store.schema import Job


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0}) as runtime:
        delegate_in_process(runtime, principal_of(pki, "alice"), pki.users["alice"].proxy, "exec")
        yield runtime


def run(rt: Runtime, pki: Pki, work_root: Path, script: str, sandbox: str) -> str:
    """Submit ``/bin/sh -c script`` with the ``sandbox`` attributes and run it to its end."""
    job_id = submit_job(rt, principal_of(pki, "alice"),
                        f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; {sandbox} ]', "exec").job_id
    run_to_end(rt, job_id, work_root)
    return job_id


def jobs_count(rt: Runtime) -> int:
    with rt.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize(("sandbox", "named"), [
    ('OutputSandbox = {"a.out"}; OutputSandboxDestURI = {"gsiftp://se.example.org:2811/data/a.out"};',
     "OutputSandboxDestURI: 'gsiftp://se.example.org:2811/data/a.out' is not allowed"),
    ('OutputSandbox = {"*.out"}; OutputSandboxBaseDestURI = "gsiftp://se.example.org:2811/data/";',
     "OutputSandboxBaseDestURI: 'gsiftp://se.example.org:2811/data/' is not allowed"),
])
def test_a_remote_output_destination_is_refused_at_registration(rt: Runtime, pki: Pki, sandbox: str,
                                                                named: str) -> None:
    """It was accepted, the file kept in the job's own output area and the destination ignored:
    Done, exit 0, no reason; the user never learnt the file was not sent."""
    alice = principal_of(pki, "alice")
    before = jobs_count(rt)
    for operation in (register_job, submit_job):
        with pytest.raises(InvalidArgumentError, match="keeps the output sandbox in the job's own output area") as exc:
            operation(rt, alice, f'[ Executable = "/bin/true"; {sandbox} ]', "exec")
        assert named in str(exc.value)
    assert jobs_count(rt) == before


@pytest.mark.parametrize("entry", [
    "gsiftp://se.example.org:2811/data/in.txt",
    "https://wms.example.org:7443/SandboxDir/Ab/https_3a_2f_2flb_3a9000_2fAb/output/in.txt",
])
def test_a_remote_input_sandbox_entry_is_refused_at_registration(rt: Runtime, pki: Pki, entry: str) -> None:
    """It was accepted and never fetched: the job ran without the file (exit 1, no reason)."""
    alice = principal_of(pki, "alice")
    before = jobs_count(rt)
    for operation in (register_job, submit_job):
        with pytest.raises(InvalidArgumentError, match="does not fetch remote input sandbox files") as exc:
            operation(rt, alice, f'[ Executable = "/bin/cat"; Arguments = "in.txt"; InputSandbox = {{"{entry}"}}; ]',
                      "exec")
        assert f"InputSandbox: {entry!r} is not allowed" in str(exc.value)
    compound = (f'[ Type = "dag"; Nodes = {{ [ NodeName = "a"; Executable = "/bin/true"; ], [ NodeName = "b";'
                f' Executable = "/bin/true"; InputSandbox = {{"{entry}"}}; ] }}; ]')
    with pytest.raises(InvalidArgumentError, match="does not fetch remote input sandbox files"):
        register_job(rt, alice, compound, "exec")
    assert jobs_count(rt) == before


def test_a_relative_destination_names_the_stored_file(rt: Runtime, pki: Pki, work_root: Path) -> None:
    """The registered JDL promised ``.../output/renamed#1.out``; the file was stored as a.out and
    getOutputFileList listed a.out."""
    job_id = run(rt, pki, work_root, "echo a > a.out; echo b > b.out",
                 'OutputSandbox = {"a.out", "b.out"}; OutputSandboxDestURI = {"renamed#1.out", "b.out"};')
    row = job_row(rt, job_id)
    assert (row.state, row.exit_code, row.reason) == (JobState.DONE.value, 0, None)
    assert rt.storage.output_files(job_id) == [("b.out", 2), ("renamed#1.out", 2)]
    listed = output_files(rt, principal_of(pki, "alice"), job_id, "https")
    promised = parse_jdl(row.jdl_registered)["OutputSandboxDestURI"]
    assert sorted(uri for uri, _ in listed) == sorted(promised)
    assert promised[0].endswith("/output/renamed%231.out")


def test_two_entries_with_one_file_name_are_refused_at_registration(rt: Runtime, pki: Pki) -> None:
    """``{"x/r.txt", "y/r.txt"}`` left one r.txt (the second), without a word; then the job ended
    Done with "output sandbox file y/r.txt not collected: it has the same name r.txt ..." (a job
    registered before the check still does: tests/unit/sandbox/test_storage.py TestOutputTargets).
    The JDL library refuses such a JDL (``JobAd::checkSemantic``), and so does registration now."""
    alice = principal_of(pki, "alice")
    before = jobs_count(rt)
    for operation in (register_job, submit_job):
        with pytest.raises(JdlError, match=r"^Attribute OutputSandbox: entries 'x/r\.txt' and 'y/r\.txt' have"):
            operation(rt, alice, '[ Executable = "/bin/true"; OutputSandbox = {"x/r.txt", "y/r.txt"}; ]', "exec")
    assert jobs_count(rt) == before


def test_wildcards_collect_every_matching_file(rt: Runtime, pki: Pki, work_root: Path) -> None:
    """``OutputSandbox = {"*.out"}`` lost a.out and b.out: "*.out not collected: not produced"."""
    job_id = run(rt, pki, work_root, "echo a > a.out; echo b > b.out; echo c > c.log",
                 'OutputSandbox = {"*.out", "*.none"};')
    row = job_row(rt, job_id)
    assert (row.state, row.exit_code) == (JobState.DONE.value, 0)
    assert row.reason == "output sandbox file *.none not collected: not produced"
    assert rt.storage.output_files(job_id) == [("a.out", 2), ("b.out", 2)]
