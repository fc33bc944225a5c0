"""Garbage collection and memory on the request path (issue 14): no forced full collection
per request (Spyne's ``MethodContext.close`` ran ``gc.collect()`` about once a second per worker;
the ports turn that off), and the memory of big requests handed back after their response
(soap/memory.py): a request body of 1 MiB or more gets a response whose close() runs a full
collection; ordinary requests are left alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.support import SoapApp
from wmproxy.domain import Principal
from wmproxy.soap import memory
from wmproxy.soap.namespaces import DELEGATION_2, WMPROXY


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """Generation-2 collections that start while automatic GC is off (explicit ones only)."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(2)

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    if was_enabled:
        gc.enable()


def test_requests_run_no_gc_collect(soap: SoapApp, alice: Principal, full_collections: list[int]) -> None:
    from spyne import context

    context._LAST_GC_RUN = 0  # as in a fresh worker: Spyne would collect at the first request
    for namespace in (WMPROXY, DELEGATION_2, WMPROXY):
        assert soap.call(namespace, "getVersion", alice).status.startswith("200")
    assert full_collections == []


class Body:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter([b"reply"])

    def close(self) -> None:
        self.closed = True


def test_a_big_request_releases_memory_when_its_response_is_closed(full_collections: list[int]) -> None:
    body = Body()
    response = memory.release_after({"CONTENT_LENGTH": str(memory.BIG_REQUEST_BYTES)}, body)
    assert b"".join(response) == b"reply"
    assert full_collections == []  # not while the response is being sent
    response.close()  # type: ignore[attr-defined]
    assert body.closed
    assert full_collections == [2]


def test_ordinary_requests_keep_their_response(full_collections: list[int]) -> None:
    body = Body()
    for length in ("", "12345", "not a number", str(memory.BIG_REQUEST_BYTES - 1)):
        assert memory.release_after({"CONTENT_LENGTH": length}, body) is body
    assert full_collections == []


def test_release_memory_frees_cycles() -> None:
    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    import weakref

    ref = weakref.ref(a)
    del a, b
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        assert ref() is not None
        memory.release_memory()
        assert ref() is None
    finally:
        if was_enabled:
            gc.enable()
