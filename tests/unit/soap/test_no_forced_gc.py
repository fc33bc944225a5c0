"""No full garbage collection on the request path (issue 14): Spyne's ``MethodContext.close``
would run ``gc.collect()`` about once a second per worker; the ports turn that off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.support import SoapApp
from wmproxy.domain import Principal
from wmproxy.soap.namespaces import DELEGATION_2, WMPROXY


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """Generations of the collections that run while automatic GC is off: explicit ones only."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    if was_enabled:
        gc.enable()


def test_requests_run_no_gc_collect(soap: SoapApp, alice: Principal, collections: list[int]) -> None:
    from spyne import context

    context._LAST_GC_RUN = 0  # as in a fresh worker: Spyne would collect at the first request
    for namespace in (WMPROXY, DELEGATION_2, WMPROXY):
        assert soap.call(namespace, "getVersion", alice).status.startswith("200")
    assert collections == []
