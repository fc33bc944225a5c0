"""The sandbox usage counter under concurrent changes of one user's files, through the sandbox
edge, on each backend (``wmproxy.sandbox.http``, ``wmproxy.services.sandboxes.change_area_bytes``,
``wmproxy.services.quota.change_usage``).

The size of the file an upload replaces, a DELETE removes or a MOVE overwrites is read once
the user's counter row is locked, right before the rename or unlink: read before, two changes
of one file took the same bytes off twice (the counter went below what the disk holds, room
past the hard quota). So are the input sandbox limits checked then: uploads of one job that
each fitted MaxInputSandboxSize when they started went past it together. An upload's temporary
file is never counted, so removing it with its job area takes nothing off.

Uploads are held by their body (:class:`HeldBody`): the edge has looked at the file, checked the
room and opened its temporary file when it first reads. On PostgreSQL a third connection holds
the counter row and the requests queue behind it in the order they came (``pg_stat_activity``),
which orders a DELETE or MOVE that has started behind an upload about to commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.conftest import Pki
from tests.store.conftest import DELEGATION
from tests.store.locking_support import hold_rows, lock_waiters, race_behind_row
from tests.support import (
    CALLER_KEY,
    ECHO_JDL,
    WAIT_TIMEOUT,
    build_runtime,
    caller_from_environ,
    close_runtime,
    counted_on_disk,
    delegate_in_process,
    flock_waiters,
    start_thread,
    wait_for,
)
from wmproxy.domain import Principal
from wmproxy.services import jobs, quota
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.store.usage import SandboxUsage

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


def test_two_uploads_replacing_one_file_at_once_count_it_once(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str) -> None:
    release, outcome = threading.Event(), {}
    first = held_upload(app, alice, file_path, HeldBody(b"x", release), outcome, "first")
    second = held_upload(app, alice, file_path, HeldBody(b"yy", release), outcome, "second")
    release.set()
    finish(first, second)
    assert outcome == {"first": 204, "second": 204}
    # Before, each had read the 5,000 bytes it replaced before either renamed: 10,000 came off.
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) in (KEPT + 1, KEPT + 2)


def test_an_upload_whose_file_is_deleted_meanwhile_creates_it(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str) -> None:
    release, outcome = threading.Event(), {}
    upload = held_upload(app, alice, file_path, HeldBody(b"x", release), outcome, "upload")
    assert send(app, alice, "DELETE", file_path) == 204
    release.set()
    finish(upload)
    assert outcome == {"upload": 201}  # was 204, the 5,000 bytes it had seen taken off a second time
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT + 1


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


@pytest.fixture
def small_input(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path,
                alice: Principal) -> Iterator[Runtime]:
    """A runtime on the module's database whose jobs may upload 1,000 input bytes."""
    runtime = build_runtime(tmp_path / "small", pki, database={"url": database_url},
                            security={"store_key_file": str(store_key_dir / "store.key")},
                            service={"max_input_sandbox_size": 1000})
    delegate_in_process(runtime, alice, pki.users["alice"].proxy, DELEGATION)
    yield runtime
    close_runtime(runtime)


def test_uploads_that_fit_one_by_one_do_not_pass_the_max_input_sandbox_size_together(
        small_input: Runtime, alice: Principal) -> None:
    quota.recount_usage(small_input, alice.dn)
    app = WMProxyApplication(small_input, authenticate=caller_from_environ)
    job_id = register_job(small_input, alice, ECHO_JDL, DELEGATION).job_id
    release, outcome = threading.Event(), {}
    uploads = [held_upload(app, alice, f"{input_of(small_input, job_id)}/{name}", HeldBody(b"z" * 600, release),
                           outcome, name) for name in ("a.bin", "b.bin")]  # each finds 1,000 bytes free
    release.set()
    finish(*uploads)
    assert sorted(outcome.values()) == [201, 413]  # both were stored: 1,200 bytes
    assert small_input.storage.input_tally(job_id) == (600, 1)
    assert quota.used_bytes(small_input, alice.dn) == counted_on_disk(small_input, alice.dn) == 600


# --- PostgreSQL: a change that has started, queued behind an upload's commit ----------------------


def job_dir_of(rt: Runtime, path: str) -> Path:
    """The job directory of a sandbox edge path (``/<job rel dir>/input/...``): the one a change of
    the job's input holds (``input_changes``, its ``flock``) while it waits for the counter."""
    return rt.storage.root / path.split("/input/")[0].lstrip("/")


def hold_counter(owner_dn: str) -> Callable[[sa.Connection], None]:
    """Lock ``owner_dn``'s usage counter row in the connection's transaction."""
    return hold_rows(sa.select(SandboxUsage.owner_dn).where(SandboxUsage.owner_dn == owner_dn).with_for_update())


@pytest.mark.postgresql_only
@pytest.mark.parametrize("method", ["DELETE", "MOVE"])
def test_a_delete_or_move_reads_the_size_it_takes_off_once_it_has_the_counter(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str, database_url: str,
        method: str) -> None:
    """An upload replacing f.bin (5,000 bytes) by 1 byte waits for the counter, then a DELETE of
    f.bin (or a MOVE of g.bin onto it) does. The upload commits first: the DELETE removes, the
    MOVE overwrites, a 1-byte file, and 1 byte comes off (it was the 5,000 read when it started)."""
    source = file_path.replace("/f.bin", "/g.bin")
    assert send(app, alice, "PUT", source, b"g" * 10) == 201
    change = (("DELETE", lambda: send(app, alice, "DELETE", file_path)) if method == "DELETE" else
              ("MOVE", lambda: send(app, alice, "MOVE", source, headers={"Destination": file_path})))
    outcome = race_behind_row(database_url, hold_counter(alice.dn),
                              ("upload", lambda: send(app, alice, "PUT", file_path, b"x")), change,
                              also_waiting=lambda: flock_waiters(job_dir_of(rt, file_path)))
    assert outcome == {"upload": 204, method: 204}
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT + 10


@pytest.mark.postgresql_only
def test_the_later_of_two_deletes_of_one_file_is_404(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str, database_url: str) -> None:
    outcome = race_behind_row(database_url, hold_counter(alice.dn),
                              ("first", lambda: send(app, alice, "DELETE", file_path)),
                              ("second", lambda: send(app, alice, "DELETE", file_path)),
                              also_waiting=lambda: flock_waiters(job_dir_of(rt, file_path)))
    assert outcome == {"first": 204, "second": 404}  # the second was an internal error (500)
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT


@pytest.mark.postgresql_only
def test_a_cancel_counts_and_removes_the_area_only_once_it_has_the_counter(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str, database_url: str) -> None:
    """The cancel of a registered job removes its area: it locks the counter before it counts
    and removes, as an upload's commit does. Counted and removed first, an upload committed
    between the count and the removal stayed on the counter for good. Here the cancel waits for
    the counter (held by a third connection) with the area still there."""
    with rt.uow() as uow:
        job = uow.jobs.by_sandbox_dir(file_path.split("/input/")[0].lstrip("/"))
        assert job is not None
        job_id = job.id
    area = rt.storage.job_dir(job_id)
    outcome: dict[str, object] = {}
    holder = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as hold, holder.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            hold_counter(alice.dn)(hold)
            thread = start_thread("cancel", lambda: jobs.cancel_job(rt, alice, job_id), outcome)
            wait_for(lambda: lock_waiters(watch), lambda n: n == 1, what="the cancel to wait for the counter",
                     timeout=WAIT_TIMEOUT)
            kept = area.exists()
            hold.rollback()
            thread.join(WAIT_TIMEOUT)
            assert not thread.is_alive()
    finally:
        holder.dispose()
    assert kept, "the area was removed before the counter was locked"
    assert not isinstance(outcome.get("cancel"), BaseException), outcome
    assert not area.exists()
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == KEPT


def test_the_walk_of_a_jobs_input_holds_no_database_lock(
        rt: Runtime, app: WMProxyApplication, alice: Principal, file_path: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload's commit reads what its job's input/ holds (a walk: about 1 s per 100,000
    entries) under the job's own lock, before the counter's transaction: on SQLite that
    transaction holds the database's write lock, so inside it the walk stalled every other
    user's writes. Here alice's walk is held while another user's counter changes."""
    walking, done_walking = threading.Event(), threading.Event()
    real = rt.storage.input_tally

    def held_walk(job_id: str) -> object:
        walking.set()
        assert done_walking.wait(WAIT_TIMEOUT), "the test never let the walk go on"
        return real(job_id)

    monkeypatch.setattr(rt.storage, "input_tally", held_walk)
    outcome: dict[str, object] = {}
    new_file = file_path.replace("/f.bin", "/new.bin")  # bytes added: the limits are checked
    upload = start_thread("upload", lambda: send(app, alice, "PUT", new_file, b"x" * 10), outcome)
    try:
        assert walking.wait(WAIT_TIMEOUT), "the upload never walked its input"
        # before: waited for the walk behind the write lock, then "database is locked" (SQLite)
        quota.change_usage(rt, "/DC=org/CN=Someone Else", lambda: 7, lambda: None)
        assert quota.used_bytes(rt, "/DC=org/CN=Someone Else") == 7
    finally:
        done_walking.set()
        upload.join(WAIT_TIMEOUT)
    assert outcome == {"upload": 201}
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn)
