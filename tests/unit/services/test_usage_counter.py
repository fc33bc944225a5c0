"""The per-user sandbox usage counter (issue 14): changed by the sandbox edge's uploads,
deletes and overwriting moves in the transaction that commits the bytes, by purges and by the
worker's output collection and perusal chunks; always equal to a walk of the ``input/``, ``output/``
and ``peek/`` of the user's job areas (:func:`wmproxy.services.quota.recount_usage`, for
``wmproxy-admin``)."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import Client

from tests.support import CALLER_KEY, ECHO_JDL, caller_from_environ, counted_on_disk
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services import jobs, quota
from wmproxy.services.perusal import keep_perusal_chunk
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.store.schema import Job


@pytest.fixture
def edge(rt: Runtime) -> Client:
    return Client(WMProxyApplication(rt, authenticate=caller_from_environ))


def _as(principal: Principal) -> dict[str, Any]:
    return {"environ_overrides": {CALLER_KEY: principal}}


def _input(rt: Runtime, job_id: str) -> str:
    return f"/{rt.storage.job_rel_dir(job_id)}/input"


def _done_and_purged(rt: Runtime, owner: Principal, job_id: str) -> None:
    """The job set Done (as if it ran), then purged by its owner (jobPurge)."""
    with rt.uow() as uow:
        row = uow.session.get(Job, job_id)
        assert row is not None
        row.state = JobState.DONE.value
    jobs.purge_job(rt, owner, job_id)


def test_uploads_deletes_and_moves_keep_the_counter_equal_to_the_disk(
    rt: Runtime, edge: Client, alice: Principal, bob: Principal, delegated: str
) -> None:
    first = register_job(rt, alice, ECHO_JDL, delegated).job_id
    second = register_job(rt, alice, ECHO_JDL, delegated).job_id
    steps = [
        ("PUT", f"{_input(rt, first)}/a.bin", b"a" * 1000, 201),
        ("PUT", f"{_input(rt, second)}/b.bin", b"b" * 2500, 201),
        ("PUT", f"{_input(rt, first)}/a.bin", b"a" * 400, 204),  # replaced: 600 bytes less
        ("PUT", f"{_input(rt, first)}/c.bin", b"c" * 700, 201),
        ("DELETE", f"{_input(rt, second)}/b.bin", b"", 204),
    ]
    for method, path, data, status in steps:
        assert edge.open(path, method=method, data=data, **_as(alice)).status_code == status
        assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn)
    moved = edge.open(f"{_input(rt, first)}/c.bin", method="MOVE", **_as(alice),
                      headers={"Destination": f"{_input(rt, first)}/a.bin"})
    assert moved.status_code == 204  # a.bin (400 bytes) overwritten by c.bin (700)
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == 700
    assert quota.used_bytes(rt, bob.dn) == 0


def test_a_refused_upload_changes_nothing(rt: Runtime, edge: Client, alice: Principal, delegated: str) -> None:
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    too_big = rt.settings.service.max_input_sandbox_size + 1
    response = edge.open(f"{_input(rt, job_id)}/big.bin", method="PUT", data=b"x" * too_big, **_as(alice))
    assert response.status_code == 413
    assert quota.used_bytes(rt, alice.dn) == 0 == counted_on_disk(rt, alice.dn)


def test_purge_and_cancel_take_the_areas_bytes_off(
    rt: Runtime, edge: Client, alice: Principal, delegated: str
) -> None:
    cancelled = register_job(rt, alice, ECHO_JDL, delegated).job_id
    purged = register_job(rt, alice, ECHO_JDL, delegated).job_id
    for job_id in (cancelled, purged):
        edge.open(f"{_input(rt, job_id)}/in.bin", method="PUT", data=b"i" * 800, **_as(alice))
    jobs.cancel_job(rt, alice, cancelled)
    assert quota.used_bytes(rt, alice.dn) == 800 == counted_on_disk(rt, alice.dn)
    output = rt.storage.job_dir(purged) / "output"
    output.mkdir(exist_ok=True)
    (output / "out.txt").write_bytes(b"o" * 300)
    quota.count_output(rt, purged)
    assert quota.used_bytes(rt, alice.dn) == 1100 == counted_on_disk(rt, alice.dn)
    _done_and_purged(rt, alice, purged)
    assert quota.used_bytes(rt, alice.dn) == 0 == counted_on_disk(rt, alice.dn)


def test_perusal_chunks_are_counted_and_taken_off_once(
    rt: Runtime, edge: Client, alice: Principal, delegated: str
) -> None:
    """Perusal chunks (``peek/``, written by the execution worker) are added to the owner's
    counter as they are written (they were not: a 1 MB quota held 3 MB of chunks), found by a
    recount, unchanged by a merge (getPerusalFiles), and taken off once when the area is removed
    (only what this job held: the counter keeps the owner's other jobs)."""
    kept = register_job(rt, alice, ECHO_JDL, delegated).job_id
    purged = register_job(rt, alice, ECHO_JDL, delegated).job_id
    assert edge.open(f"{_input(rt, kept)}/kept.bin", method="PUT", data=b"k" * 1000, **_as(alice)).status_code == 201
    assert edge.open(f"{_input(rt, purged)}/in.bin", method="PUT", data=b"i" * 800, **_as(alice)).status_code == 201
    output = rt.storage.create_area(rt.storage.job_rel_dir(purged), "output")
    (output / "out.txt").write_bytes(b"o" * 300)
    quota.count_output(rt, purged)  # the worker's count of the collected output sandbox
    for timestamp in (1, 2):  # as the worker writes them while the job runs
        keep_perusal_chunk(rt, alice.dn, purged, "out.txt", b"p" * 5000, timestamp)
    assert quota.used_bytes(rt, alice.dn) == 12100 == counted_on_disk(rt, alice.dn)
    assert quota.recount_usage(rt, alice.dn) == {alice.dn: 12100}  # a recount counts peek/ too
    assert rt.storage.merge_perusal_chunks(purged, "out.txt") == ["out.txt-1-2"]
    assert quota.used_bytes(rt, alice.dn) == 12100 == counted_on_disk(rt, alice.dn)
    _done_and_purged(rt, alice, purged)
    assert quota.used_bytes(rt, alice.dn) == 1000 == counted_on_disk(rt, alice.dn)


def test_recount_sets_the_counter_to_what_the_areas_hold(
    rt: Runtime, alice: Principal, bob: Principal, delegated: str
) -> None:
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    by_hand = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input") / "by-hand.bin"
    by_hand.write_bytes(b"h" * 1234)  # behind the service's back
    assert quota.used_bytes(rt, alice.dn) == 0
    assert quota.recount_usage(rt, alice.dn) == {alice.dn: 1234}
    assert quota.used_bytes(rt, alice.dn) == 1234
    with rt.uow() as uow:
        uow.usage.add(bob.dn, 99, utcnow())  # a counter without jobs behind it
    assert quota.recount_usage(rt) == {alice.dn: 1234, bob.dn: 0}
    assert quota.used_bytes(rt, bob.dn) == 0


def test_a_move_onto_itself_changes_nothing(rt: Runtime, edge: Client, alice: Principal, delegated: str) -> None:
    """The destination was counted as overwritten: its bytes came off the counter and stayed on
    disk (rename(2) onto the same file does nothing), so each such MOVE gave room past the hard quota."""
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    assert edge.open(f"{_input(rt, job_id)}/a.bin", method="PUT", data=b"a" * 1000, **_as(alice)).status_code == 201
    for destination in (f"{_input(rt, job_id)}/a.bin", f"https://localhost:7443{_input(rt, job_id)}/%61.bin"):
        moved = edge.open(f"{_input(rt, job_id)}/a.bin", method="MOVE", headers={"Destination": destination},
                          **_as(alice))
        assert moved.status_code == 204
        assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == 1000
    assert (rt.storage.job_dir(job_id) / "input" / "a.bin").read_bytes() == b"a" * 1000


def test_temporary_files_a_crash_left_are_neither_counted_nor_taken_off(
    rt: Runtime, edge: Client, alice: Principal, delegated: str
) -> None:
    """An upload cut by a worker's crash leaves its temporary file, never counted: a recount put it
    in the counter, and removing the area took it off (room past the hard quota)."""
    kept = register_job(rt, alice, ECHO_JDL, delegated).job_id
    cancelled = register_job(rt, alice, ECHO_JDL, delegated).job_id
    for job_id in (kept, cancelled):
        uploaded = edge.open(f"{_input(rt, job_id)}/in.bin", method="PUT", data=b"i" * 1000, **_as(alice))
        assert uploaded.status_code == 201
        (rt.storage.job_dir(job_id) / "input" / ".big.bin.k2j4l5m6.wmproxy-part").write_bytes(b"t" * 5000)
    assert quota.recount_usage(rt, alice.dn) == {alice.dn: 2000}
    jobs.cancel_job(rt, alice, cancelled)
    assert quota.used_bytes(rt, alice.dn) == counted_on_disk(rt, alice.dn) == 1000
