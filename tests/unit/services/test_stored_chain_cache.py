"""The stored proxy's chain is unsealed and parsed once per worker (issue 14), and the cache
never hides a change: a replaced proxy is read again, the time checks run on every call."""

from __future__ import annotations

import pytest
from cachetools import LRUCache

from tests.conftest import Pki
from tests.unit.services.conftest import DELEGATION
from wmproxy.domain import Principal, utcnow
from wmproxy.errors import LimitedProxyError
from wmproxy.security.proxy import credential_pem, make_proxy
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime


def test_same_row_parsed_once_and_a_replaced_proxy_is_read_again(
        rt: Runtime, alice: Principal, delegated: str, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty cache: the process's own may be full already (earlier tests), so not grow by one.
    monkeypatch.setattr(delegation, "_STORED_CHAINS", LRUCache(delegation.STORED_CHAINS_MAX))
    with rt.uow() as uow:
        row = uow.delegations.get(alice.dn, DELEGATION)
        assert row is not None
        before = len(delegation._STORED_CHAINS)
        first = delegation.believed_fqans(rt, row, utcnow(), "register jobs")
        assert delegation.believed_fqans(rt, row, utcnow(), "register jobs") == first
        assert len(delegation._STORED_CHAINS) == before + 1
        # A renewal stores another proxy under the same id, here a limited one: refused.
        limited = make_proxy(pki.users["alice"].credential, lifetime=3600, limited=True)
        row.sealed_proxy = rt.sealer.seal(credential_pem(limited))
        with pytest.raises(LimitedProxyError, match="limited proxy"):
            delegation.believed_fqans(rt, row, utcnow(), "register jobs")
        with pytest.raises(LimitedProxyError):  # and again, from the cache
            delegation.believed_fqans(rt, row, utcnow(), "register jobs")


def test_cache_is_bounded(rt: Runtime, alice: Principal, delegated: str, pki: Pki,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delegation, "_STORED_CHAINS", LRUCache(2))
    with rt.uow() as uow:
        row = uow.delegations.get(alice.dn, DELEGATION)
        assert row is not None
        for _ in range(4):
            row.sealed_proxy = rt.sealer.seal(credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600)))
            delegation.believed_fqans(rt, row, utcnow(), "register jobs")
        assert len(delegation._STORED_CHAINS) <= 2
