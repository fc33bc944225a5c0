"""A DN's pending delegation requests beyond ``[limits] max_pending_delegation_requests`` are
dropped, oldest first (services/delegation.py ``_bound_pending``); both databases run the
store's count and trim."""

from __future__ import annotations

import dataclasses

import pytest

from wmproxy.domain import Principal
from wmproxy.services import delegation, delegation_keys
from wmproxy.services.runtime import Runtime
from wmproxy.store.delegation_writes import delegation_writes


def test_the_oldest_pending_requests_beyond_the_bound_are_dropped(
        rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    limits = dataclasses.replace(rt.settings.limits, max_pending_delegation_requests=2)
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, limits=limits))
    monkeypatch.setattr(delegation, "TRIM_EVERY", 1)
    delegation_keys.fill_pool(rt, 4)
    for i in range(4):
        delegation.create_proxy_request(rt, alice, f"bound{i}")
    with rt.uow() as uow:
        assert delegation_writes(rt.session_factory).pending_count(alice.dn) == 2
        assert [uow.delegations.get_request(alice.dn, f"bound{i}") is not None for i in range(4)] == [
            False, False, True, True]
        assert uow.delegations.trim_requests(alice.dn, 2) == 0
