"""ZippedISB (``wmproxy-behaviour.md`` §3.2 step 8e, §11.2) on each backend: the archive is
uploaded through the sandbox edge over real TLS, jobStart extracts it into ``input/`` (members
named ``<JobIdStructType.path>/<file>``), deletes it and leaves ``.unzipok``; the job runs and
reads the files. Hostile archives are refused with a typed fault naming the member, nothing of
them is left, the archive stays and the owner's usage counter stays exact."""

from __future__ import annotations

import gzip
import http.client
import io
import ssl
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import support
from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import end_jobs, in_state, job_row, until
from tests.support import CALLER_KEY, WAIT_TIMEOUT, delegate_in_process, principal_of
from tests.unit.cli.https_server import https_server
from wmproxy.domain import JobState, Principal
from wmproxy.errors import InvalidArgumentError, QuotaExceededError, WMProxyError
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.sandbox.zipped import MARKER, ArchiveMemberError
from wmproxy.services import quota
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import RegisteredJob, register_job, start_job
from wmproxy.soap.app import WMProxyApplication

ARCHIVE = "ISBfiles_x_0.tar.gz"
JDL = ('[ Executable = "/bin/sh"; Arguments = "-c \'cat a.txt\'"; StdOutput = "o"; StdError = "e";'
       ' OutputSandbox = {"o", "e"}; InputSandbox = {"a.txt"}; ZippedISB = {"' + ARCHIVE + '"}; ]')
MAX_ISB = 100_000


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    """A mapped runtime behind a real TLS server (the sandbox edge); every request is alice's."""
    with (https_server(pki, None) as (server, base),
          mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                         service={"port": int(base.rsplit(":", 1)[1]), "max_input_sandbox_size": MAX_ISB},
                         execution={"work_dir": str(work_root), "poll_interval": 0.05, "kill_grace": 2.0}) as runtime):
        caller = principal_of(pki, "alice")
        quota.recount_usage(runtime, caller.dn)
        app = WMProxyApplication(runtime, authenticate=support.caller_from_environ)

        def as_alice(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ[CALLER_KEY] = caller
            return app(environ, start_response)

        server.app = as_alice
        delegate_in_process(runtime, caller, pki.users["alice"].proxy, "exec")
        yield runtime


@pytest.fixture
def alice(pki: Pki) -> Principal:
    return principal_of(pki, "alice")


def put(pki: Pki, uri: str, body: bytes) -> int:
    parts = urlsplit(uri)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                       context=ssl.create_default_context(capath=str(pki.ca_dir)),
                                       timeout=WAIT_TIMEOUT)
    try:
        conn.request("PUT", parts.path, body=body)
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def tar_gz(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A gzip -9 tar of ``members``: ``(name, data)`` regular files, or prepared headers."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buf.getvalue()


def link(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def used(rt: Runtime, alice: Principal) -> int:
    return quota.used_bytes(rt, alice.dn)


def recounted(rt: Runtime, alice: Principal) -> int:
    """What the owner's counter should hold: the bytes of its areas on disk (the counter reset to it)."""
    return quota.recount_usage(rt, alice.dn).get(alice.dn, 0)


def register_and_upload(rt: Runtime, pki: Pki, alice: Principal, members: Callable[[str], list[Any]],
                        jdl: str = JDL) -> tuple[RegisteredJob, Path]:
    job = register_job(rt, alice, jdl, "exec")
    uri = rt.storage.job_area(job.job_id).input_uri
    assert put(pki, f"{uri}/{ARCHIVE}", tar_gz(members(job.path))) == 201
    return job, rt.storage.job_area(job.job_id).input_dir


def run_worker(rt: Runtime, work_root: Path, job_id: str) -> None:
    backend = LocalExecutionBackend(work_root, kill_grace=2.0)
    worker = ExecutionWorker(rt, {"local": backend}, "zipped-isb")
    worker.start()
    try:
        until(worker, in_state(rt, job_id, JobState.DONE, JobState.ABORTED), "the job to end")
    finally:
        end_jobs(worker)


def test_the_archive_is_extracted_at_jobstart_and_the_job_reads_its_files(
        rt: Runtime, pki: Pki, alice: Principal, work_root: Path) -> None:
    job, input_dir = register_and_upload(rt, pki, alice, lambda path: [
        (f"{path}/a.txt", b"zipped a\n"), link(f"{path}/sub", tarfile.DIRTYPE), (f"{path}/sub/b.txt", b"zipped b\n")])
    start_job(rt, alice, job.job_id)
    assert sorted(p.name for p in input_dir.iterdir()) == ["a.txt", "sub"]
    assert (rt.storage.job_dir(job.job_id) / MARKER).exists()
    assert (input_dir / "a.txt").stat().st_mode & 0o777 == 0o600
    assert used(rt, alice) == recounted(rt, alice) == len(b"zipped a\n") * 2  # the archive given back
    run_worker(rt, work_root, job.job_id)
    row = job_row(rt, job.job_id)
    assert (row.state, row.exit_code) == (JobState.DONE.value, 0), row.reason
    assert (rt.storage.job_area(job.job_id).output_dir / "o").read_bytes() == b"zipped a\n"


def test_a_compound_jobs_archive_may_hold_its_nodes_paths(rt: Runtime, pki: Pki, alice: Principal) -> None:
    jdl = ('[ Type = "collection"; ZippedISB = {"' + ARCHIVE + '"}; nodes = {'
           ' [ Executable = "/bin/cat"; Arguments = "n0.txt"; InputSandbox = {"n0.txt"}; ],'
           ' [ Executable = "/bin/cat"; Arguments = "n1.txt"; InputSandbox = {"n1.txt"}; ] }; ]')
    job = register_job(rt, alice, jdl, "exec")
    members = [(f"{child.path}/n{i}.txt", b"x") for i, child in enumerate(job.children)]
    assert put(pki, f"{rt.storage.job_area(job.job_id).input_uri}/{ARCHIVE}", tar_gz(members)) == 201
    start_job(rt, alice, job.job_id)
    assert sorted(p.name for p in rt.storage.job_area(job.job_id).input_dir.iterdir()) == ["n0.txt", "n1.txt"]


HOSTILE: dict[str, tuple[Callable[[str, str], list[Any]], type[WMProxyError]]] = {
    "dotdot": (lambda path, _o: [(f"{path}/../escape.txt", b"x")], ArchiveMemberError),
    "absolute": (lambda path, _o: [(f"/{path}/a.txt", b"x")], ArchiveMemberError),
    "symlink": (lambda path, _o: [link(f"{path}/a.txt", tarfile.SYMTYPE, "/etc/passwd")], ArchiveMemberError),
    "hardlink": (lambda path, _o: [(f"{path}/b.txt", b"x"), link(f"{path}/a.txt", tarfile.LNKTYPE, f"{path}/b.txt")],
                 ArchiveMemberError),
    "device": (lambda path, _o: [link(f"{path}/a.txt", tarfile.CHRTYPE)], ArchiveMemberError),
    "fifo": (lambda path, _o: [link(f"{path}/a.txt", tarfile.FIFOTYPE)], ArchiveMemberError),
    "another-jobs-prefix": (lambda path, other: [(f"{path}/ok.txt", b"x"), (f"{other}/a.txt", b"x")],
                            ArchiveMemberError),
    "no-prefix": (lambda _p, _o: [("a.txt", b"x")], ArchiveMemberError),
    "temporary-name": (lambda path, _o: [(f"{path}/.a.wmproxy-part", b"x")], ArchiveMemberError),
    "over-the-size-limit": (lambda path, _o: [(f"{path}/a.txt", b"x" * 60_000), (f"{path}/b.txt", b"y" * 60_000)],
                            QuotaExceededError),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_and_nothing_is_left(rt: Runtime, pki: Pki, alice: Principal,
                                                          case: str) -> None:
    members, fault = HOSTILE[case]
    other = register_job(rt, alice, JDL, "exec")
    job, input_dir = register_and_upload(rt, pki, alice, lambda path: members(path, other.path))
    before = used(rt, alice)
    with pytest.raises(fault) as refused:
        start_job(rt, alice, job.job_id)
    assert refused.value.code in (1224, 1225) and refused.value.causes
    assert sorted(p.name for p in input_dir.iterdir()) == [ARCHIVE]  # the archive kept, nothing extracted
    assert not (rt.storage.job_dir(job.job_id) / MARKER).exists()
    assert not rt.storage.job_area(other.job_id).input_dir.exists()
    assert not (input_dir.parents[3] / "escape.txt").exists() and not (input_dir.parent / "escape.txt").exists()
    assert used(rt, alice) == before == recounted(rt, alice)
    assert job_row(rt, job.job_id).state == JobState.SUBMITTED.value


def test_a_compression_bomb_stops_at_the_limit(rt: Runtime, pki: Pki, alice: Principal) -> None:
    job = register_job(rt, alice, JDL, "exec")
    path = job.path
    buf = io.BytesIO()  # 50 MB of zeros sent compressed (about 50 kB): never written whole
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        info = tarfile.TarInfo(f"{path}/a.txt")
        info.size = 50 << 20
        gz.write(info.tobuf())
        zeros = bytes(1 << 20)
        for _ in range(50):
            gz.write(zeros)
    assert len(buf.getvalue()) < MAX_ISB
    assert put(pki, f"{rt.storage.job_area(job.job_id).input_uri}/{ARCHIVE}", buf.getvalue()) == 201
    input_dir = rt.storage.job_area(job.job_id).input_dir
    with pytest.raises(QuotaExceededError):
        start_job(rt, alice, job.job_id)
    assert sorted(p.name for p in input_dir.iterdir()) == [ARCHIVE]
    assert used(rt, alice) == recounted(rt, alice) == len(buf.getvalue())


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"not a tar archive" * 100, mtime=0)[:-20]],
                         ids=["not-gzip", "truncated-gzip"])  # ids the same in every process (pytest-xdist)
def test_a_corrupt_archive_is_refused(rt: Runtime, pki: Pki, alice: Principal, body: bytes) -> None:
    job = register_job(rt, alice, JDL, "exec")
    assert put(pki, f"{rt.storage.job_area(job.job_id).input_uri}/{ARCHIVE}", body) == 201
    with pytest.raises(InvalidArgumentError):
        start_job(rt, alice, job.job_id)
    assert sorted(p.name for p in rt.storage.job_area(job.job_id).input_dir.iterdir()) == [ARCHIVE]


def test_a_repeated_jobstart_does_not_extract_again(rt: Runtime, pki: Pki, alice: Principal) -> None:
    job, input_dir = register_and_upload(rt, pki, alice, lambda path: [(f"{path}/a.txt", b"a")])
    (rt.storage.job_dir(job.job_id) / MARKER).touch()  # as a jobStart that extracted, then failed, leaves it
    start_job(rt, alice, job.job_id)
    assert sorted(p.name for p in input_dir.iterdir()) == [ARCHIVE]
