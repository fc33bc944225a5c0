"""The sandbox usage counter under concurrent changes of one user's files, through the sandbox
edge, on each backend (``wmproxy.sandbox.http``, ``wmproxy.services.sandboxes.change_area_bytes``,
``wmproxy.services.quota.change_usage``).

An upload's temporary file is never counted, so removing it with its job area takes nothing off.

Uploads are held by their body (:class:`HeldBody`): the edge has looked at the file, checked the
room and opened its temporary file when it first reads.
"""

from __future__ import annotations

import threading

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.store.conftest import DELEGATION
from tests.support import CALLER_KEY, ECHO_JDL, WAIT_TIMEOUT, caller_from_environ, counted_on_disk, start_thread
from wmproxy.domain import Principal
from wmproxy.services import jobs, quota
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication

KEPT = 20_000
"""Bytes of another job of the user's, so that a counter taken too low shows (it never goes below 0)."""


class HeldBody:
    """An upload body: its first ``free`` bytes at once, the rest once ``release`` is set.
    ``waiting`` is set when the sandbox edge asks for bytes past ``free``: it has looked at the
    file it replaces, checked the room and written the first bytes into its temporary file."""

    def __init__(self, data: bytes, release: threading.Event, free: int = 0) -> None:
        self.data, self.release, self.free, self.offset = data, release, free, 0
        self.waiting = threading.Event()

    def read(self, size: int = -1) -> bytes:
        if self.offset >= self.free:
            self.waiting.set()
            if not self.release.wait(WAIT_TIMEOUT):
                raise TimeoutError("the test never released the upload")
        end = len(self.data) if size < 0 else self.offset + size
        if not self.release.is_set():
            end = min(end, self.free)
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def send(app: WMProxyApplication, who: Principal, method: str, path: str, body: bytes | HeldBody = b"",
         headers: dict[str, str] | None = None) -> int:
    """The status of one request to the sandbox edge as ``who``."""
    environ = EnvironBuilder(path=path, method=method, headers=headers or {},
                             data=b"" if isinstance(body, HeldBody) else body).get_environ()
    environ[CALLER_KEY] = who
    if isinstance(body, HeldBody):  # read as a server's input stream
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = body, str(len(body.data))
    reply, status, _ = run_wsgi_app(app, environ, buffered=True)
    b"".join(reply)
    return int(status.split()[0])


def input_of(rt: Runtime, job_id: str) -> str:
    return f"/{rt.storage.job_rel_dir(job_id)}/input"


def held_upload(app: WMProxyApplication, who: Principal, path: str, body: HeldBody,
                outcome: dict[str, object], name: str) -> threading.Thread:
    """A PUT of ``body`` started in a thread, returned once the edge waits for its bytes."""
    def put() -> int:
        try:
            return send(app, who, "PUT", path, body)
        finally:
            body.waiting.set()  # an upload answered without reading its body fails at once

    thread = start_thread(name, put, outcome)
    assert body.waiting.wait(WAIT_TIMEOUT) and name not in outcome, f"{name} ended before its body: {outcome}"
    return thread


def finish(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(WAIT_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)


@pytest.fixture
def app(rt: Runtime, alice: Principal) -> WMProxyApplication:
    # The module's database keeps the jobs (and counter) of its earlier tests, not their areas.
    quota.recount_usage(rt, alice.dn)
    return WMProxyApplication(rt, authenticate=caller_from_environ)


@pytest.fixture
def file_path(rt: Runtime, app: WMProxyApplication, alice: Principal) -> str:
    """``f.bin`` (5,000 bytes) in a job of alice's, who holds :data:`KEPT` bytes in another."""
    kept = register_job(rt, alice, ECHO_JDL, DELEGATION).job_id
    assert send(app, alice, "PUT", f"{input_of(rt, kept)}/kept.bin", b"k" * KEPT) == 201
    path = f"{input_of(rt, register_job(rt, alice, ECHO_JDL, DELEGATION).job_id)}/f.bin"
    assert send(app, alice, "PUT", path, b"f" * 5000) == 201
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT + 5000
    return path


def test_a_cancel_during_an_upload_takes_off_only_what_was_counted(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str) -> None:
    """The upload's temporary file holds 100,000 bytes, never counted, when jobCancel removes the
    job area: they were taken off the counter with the area's other bytes (its owner could then
    upload them again past the hard quota, at each cancel)."""
    job_id = register_job(rt, alice, ECHO_JDL, DELEGATION).job_id
    release, outcome = threading.Event(), {}
    body = HeldBody(b"t" * 100_001, release, free=100_000)
    upload = held_upload(app, alice, f"{input_of(rt, job_id)}/big.bin", body, outcome, "upload")
    jobs.cancel_job(rt, alice, job_id)  # a registered job's area goes at once
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT + 5000
    release.set()
    finish(upload)
    assert isinstance(outcome["upload"], int) and outcome["upload"] >= 400  # its area is gone
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT + 5000
