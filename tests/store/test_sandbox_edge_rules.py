"""Rules of the sandbox edge over real TLS (the service in-process behind a TLS server,
``tests.unit.cli.https_server``), on each backend.

* The nodes of a compound job read their input sandbox from their parent's ``input/``
  (``wmproxy-behaviour.md`` §2.3, §4.1): getSandboxDestURI and getSandboxBulkDestURI give a
  node that URI, and the edge refuses writes into a node's own area (nothing would read them, and
  each node had its own MaxInputSandboxSize there), naming the parent's URI.
* An upload authorised while its job was Submitted and committing after jobStart is refused (409,
  nothing committed, its temporary file removed); a jobStart that comes while an upload commits
  waits for it (``wmproxy.services.sandboxes.change_area_bytes``, ``submission.start_job``). The
  upload is held mid-body on a raw TLS socket, the commit by its walk of ``input/``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import support
from tests.conftest import Pki
from tests.store.conftest import DELEGATION
from tests.support import CALLER_KEY, ECHO_JDL, WAIT_TIMEOUT, principal_of, start_thread, wait_for
from tests.unit.cli.https_server import https_server
from wmproxy.domain import JobState, Principal
from wmproxy.errors import OperationNotAllowedError
from wmproxy.sandbox.storage import AreaTally, is_temporary
from wmproxy.services import quota, sandboxes
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job
from wmproxy.soap.app import WMProxyApplication

COLLECTION = """[ Type = "collection";
nodes = {
  [ Executable = "/bin/cat"; Arguments = "data.txt"; InputSandbox = { "data.txt" };
    StdOutput = "n0.out"; OutputSandbox = { "n0.out" }; ],
  [ Executable = "/bin/cat"; Arguments = "data.txt"; InputSandbox = { "data.txt" };
    StdOutput = "n1.out"; OutputSandbox = { "n1.out" }; ]
};
]"""


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    """The service on the module's database behind a real TLS server; every request is alice's."""
    with https_server(pki, None) as (server, base):
        runtime = support.build_runtime(tmp_path / "rt", pki, database={"url": database_url},
                                security={"store_key_file": str(store_key_dir / "store.key")},
                                service={"port": int(base.rsplit(":", 1)[1])})
        app = WMProxyApplication(runtime, authenticate=support.caller_from_environ)
        caller = principal_of(pki, "alice")
        # The module's database keeps the jobs (and counter) of its earlier tests, not their areas.
        quota.recount_usage(runtime, caller.dn)

        def as_alice(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ[CALLER_KEY] = caller
            return app(environ, start_response)

        server.app = as_alice
        try:
            yield runtime
        finally:
            support.close_runtime(runtime)


def tls_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(capath=str(pki.ca_dir))


def request(pki: Pki, method: str, uri: str, body: bytes = b"") -> tuple[int, str]:
    """``(status, body)`` of one request over TLS."""
    parts = urlsplit(uri)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=tls_context(pki),
                                       timeout=WAIT_TIMEOUT)
    try:
        conn.request(method, parts.path, body=body if method == "PUT" else None)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def job_state(rt: Runtime, job_id: str) -> str:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state


def files_in(directory: Path) -> list[str]:
    """Names in ``directory`` (temporary files included); [] when it does not exist."""
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# --- the nodes of a compound job ---


def test_a_nodes_dest_uris_name_its_parents_input(rt: Runtime, alice: Principal) -> None:
    job = register_job(rt, alice, COLLECTION, DELEGATION)
    parent_uri = rt.storage.job_area(job.job_id).input_uri
    bulk = sandboxes.bulk_dest_uris(rt, alice, job.job_id, "https")
    assert bulk == [(job.job_id, [parent_uri])] + [(c.job_id, [parent_uri]) for c in job.children]
    for child in job.children:
        assert sandboxes.dest_uris(rt, alice, child.job_id, "https") == [parent_uri]
        # what the worker stages the node's input from
        assert rt.storage.job_area(child.job_id, job.job_id).input_uri == parent_uri


def test_an_upload_to_a_nodes_uri_is_what_the_node_reads(rt: Runtime, pki: Pki, alice: Principal) -> None:
    job = register_job(rt, alice, COLLECTION, DELEGATION)
    node = job.children[0].job_id
    node_uri = sandboxes.bulk_dest_uris(rt, alice, job.job_id, "https")[1][1][0]
    assert request(pki, "PUT", f"{node_uri}/data.txt", b"hello\n") == (201, "Created\n")
    assert (rt.storage.job_area(node, job.job_id).input_dir / "data.txt").read_bytes() == b"hello\n"
    # The nodes share one MaxInputSandboxSize: the parent's input holds the node's files.
    big = rt.settings.service.max_input_sandbox_size - 3
    status, _ = request(pki, "PUT", f"{sandboxes.bulk_dest_uris(rt, alice, job.job_id, 'https')[2][1][0]}/big",
                        b"x" * big)
    assert status == 413


def test_a_write_into_a_nodes_own_area_is_refused_naming_the_parents_input(
        rt: Runtime, pki: Pki, alice: Principal) -> None:
    job = register_job(rt, alice, COLLECTION, DELEGATION)
    node = job.children[0].job_id
    own_input = f"{rt.storage.job_area(node).base_uri}/input"
    parent_uri = rt.storage.job_area(job.job_id).input_uri
    status, body = request(pki, "PUT", f"{own_input}/data.txt", b"x" * 900_000)
    assert status == 409
    assert body.startswith("The Operation is not allowed: a node of a compound job has no input sandbox")
    assert body.rstrip().endswith(f"input sandbox, {parent_uri}")
    for method in ("DELETE", "PUT"):  # a file, then a directory
        assert request(pki, method, f"{own_input}/data.txt" + ("/" if method == "PUT" else ""))[0] == 409
    assert files_in(rt.storage.job_dir(node)) == []  # its input/ was never made
    assert quota.used_bytes(rt, alice.dn) == support.counted_on_disk(rt, alice.dn)
    # reading it stays allowed: an empty listing
    assert request(pki, "GET", f"{own_input}/")[0] == 200


# --- uploads and jobStart ---


def test_an_upload_authorised_before_jobstart_is_refused_when_it_commits_after(
        rt: Runtime, pki: Pki, alice: Principal) -> None:
    job_id = register_job(rt, alice, ECHO_JDL, DELEGATION).job_id
    uri = rt.storage.job_area(job_id).input_uri
    assert request(pki, "PUT", f"{uri}/first.txt", b"first")[0] == 201
    used = quota.used_bytes(rt, alice.dn)
    input_dir = rt.storage.job_area(job_id).input_dir
    parts = urlsplit(uri)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT_TIMEOUT) as raw, \
            tls_context(pki).wrap_socket(raw, server_hostname=parts.hostname) as sock:
        sock.sendall(f"PUT {parts.path}/late.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n"
                     "Connection: close\r\n\r\n".encode() + b"01234")
        # authorised while Submitted, its temporary file open: the edge waits for the rest
        wait_for(lambda: [n for n in files_in(input_dir) if is_temporary(n)], what="the upload's temporary file")
        start_job(rt, alice, job_id)  # not held by the upload: it holds no lock before its commit
        assert job_state(rt, job_id) == JobState.WAITING.value
        sock.sendall(b"56789")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    assert head.split()[1] == "409", reply
    assert body == "The Operation is not allowed: the input sandbox cannot change after the job has been started\n"
    assert files_in(input_dir) == ["first.txt"]  # nothing committed, the temporary file removed
    assert quota.used_bytes(rt, alice.dn) == used == support.counted_on_disk(rt, alice.dn)


def test_jobstart_waits_for_an_upload_that_commits(
        rt: Runtime, pki: Pki, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = register_job(rt, alice, ECHO_JDL, DELEGATION).job_id
    uri = rt.storage.job_area(job_id).input_uri
    committing, release = threading.Event(), threading.Event()
    tally = rt.storage.input_tally

    def held_tally(held_job: str) -> AreaTally:  # called by the commit under the job's lock
        committing.set()
        assert release.wait(WAIT_TIMEOUT), "the test never released the commit"
        return tally(held_job)

    monkeypatch.setattr(rt.storage, "input_tally", held_tally)
    outcome: dict[str, Any] = {}
    upload = start_thread("upload", lambda: request(pki, "PUT", f"{uri}/data.txt", b"data"), outcome)
    assert committing.wait(WAIT_TIMEOUT)
    try:
        starter = start_thread("start", lambda: start_job(rt, alice, job_id), outcome)
        job_dir = rt.storage.job_dir(job_id)
        wait_for(lambda: support.flock_waiters(job_dir) or not starter.is_alive(),
                 what="jobStart to wait for the job's lock")
        assert starter.is_alive() and "start" not in outcome, outcome  # it waits for the commit
        assert job_state(rt, job_id) == JobState.SUBMITTED.value
    finally:
        release.set()
    for thread in (upload, starter):
        thread.join(WAIT_TIMEOUT)
    assert outcome == {"upload": (201, "Created\n"), "start": None}
    assert job_state(rt, job_id) == JobState.WAITING.value
    assert (rt.storage.job_area(job_id).input_dir / "data.txt").read_bytes() == b"data"


def test_a_change_refused_at_its_commit_applies_nothing(rt: Runtime, alice: Principal) -> None:
    """The commit's own check (a started job, a node), whatever the edge authorised before."""
    job = register_job(rt, alice, COLLECTION, DELEGATION)
    applied: list[str] = []
    for job_id in (job.children[0].job_id, job.job_id):
        if job_id == job.job_id:
            start_job(rt, alice, job_id)
        with pytest.raises(OperationNotAllowedError):
            sandboxes.change_area_bytes(rt, rt.storage.job_rel_dir(job_id), lambda: AreaTally(1, 1),
                                        lambda: applied.append("applied"))
    assert applied == []
