"""The pool of pre-generated delegation keys (services/delegation_keys.py; issue 14): getProxyReq
takes a sealed key made earlier, each key serves one request, an empty pool falls back to a key
made inline, and the background filler tops the pool up."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import Pki
from tests.support import build_runtime, close_runtime
from wmproxy.domain import Principal
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation, delegation_keys
from wmproxy.services.runtime import Runtime
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import DelegationRequest

#: Deadline (seconds) for the background filler; generous, the machine is shared.
DEADLINE = 180.0


def _pool(rt: Runtime) -> list[PooledDelegationKey]:
    with rt.uow() as uow:
        return list(uow.session.scalars(sa.select(PooledDelegationKey).order_by(PooledDelegationKey.id)))


def _public_der(csr_pem: str) -> bytes:
    return x509.load_pem_x509_csr(csr_pem.encode()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class TestPool:
    def test_a_request_takes_a_pooled_key_and_its_proxy_is_accepted(
        self, rt: Runtime, alice: Principal, pki: Pki
    ) -> None:
        assert delegation_keys.fill_pool(rt, 2) == 2
        pooled = _pool(rt)
        _, csr = delegation.create_proxy_request(rt, alice, "pooled")
        assert csr == pooled[0].csr_pem
        assert [row.id for row in _pool(rt)] == [pooled[1].id]
        with rt.uow() as uow:
            request = uow.delegations.get_request(alice.dn, "pooled")
            assert request is not None and request.sealed_key == pooled[0].sealed_key
        signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600)
        row = delegation.store_proxy(rt, alice, "pooled", signed.decode())
        assert row.delegation_id == "pooled"

    def test_each_key_serves_one_request_then_keys_are_made_inline(self, rt: Runtime, alice: Principal) -> None:
        delegation_keys.fill_pool(rt, 2)
        pooled = {row.csr_pem for row in _pool(rt)}
        csrs = [delegation.create_proxy_request(rt, alice, f"d{i}")[1] for i in range(3)]
        assert set(csrs[:2]) == pooled
        assert csrs[2] not in pooled  # the pool was empty: a fresh key
        assert len({_public_der(c) for c in csrs}) == 3
        assert _pool(rt) == []
        with rt.uow() as uow:
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(DelegationRequest)) == 3

    def test_pooled_keys_are_sealed_2048_bit_rsa_matching_their_csr(self, rt: Runtime) -> None:
        delegation_keys.fill_pool(rt, 1)
        (row,) = _pool(rt)
        assert b"PRIVATE KEY" not in row.sealed_key
        key = serialization.load_pem_private_key(rt.sealer.open(row.sealed_key), password=None)
        assert key.key_size == row.key_bits == 2048  # type: ignore[union-attr]
        assert key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == _public_der(row.csr_pem)

    def test_a_pool_of_zero_is_off(self, rt: Runtime, alice: Principal) -> None:
        delegation_keys.fill_pool(rt, 1)
        rt.settings = dataclasses.replace(
            rt.settings, security=dataclasses.replace(rt.settings.security, delegation_key_pool=0))
        _, csr = delegation.create_proxy_request(rt, alice, "inline")
        assert [row.csr_pem for row in _pool(rt)] != [] and csr not in {row.csr_pem for row in _pool(rt)}

    def test_keys_of_another_size_are_not_handed_out(self, rt: Runtime, alice: Principal) -> None:
        delegation_keys.fill_pool(rt, 1)
        rt.settings = dataclasses.replace(
            rt.settings, security=dataclasses.replace(rt.settings.security, delegation_key_bits=3072))
        _, csr = delegation.create_proxy_request(rt, alice, "bigger")
        assert x509.load_pem_x509_csr(csr.encode()).public_key().key_size == 3072  # type: ignore[union-attr]
        assert len(_pool(rt)) == 1

    def test_a_filler_yields_when_another_process_claims(self, rt: Runtime, alice: Principal,
                                                         tmp_path: Path, pki: Pki) -> None:
        """The filler's fill stops once the pool shrinks between two of its keys: another worker
        (here another Runtime on the same database, as another process) serves requests."""
        other = dataclasses.replace(rt)  # its own identity: what it claims does not wake rt's filler
        looks = []

        def claim_elsewhere() -> bool:
            looks.append(1)
            if len(looks) == 2:  # after the first key: another process claims it
                delegation.create_proxy_request(other, alice, "elsewhere")
            return False

        assert delegation_keys.fill_pool(rt, 5, claim_elsewhere, yield_to_claims=True) == 1
        assert _pool(rt) == []
        with rt.uow() as uow:
            assert uow.delegations.get_request(alice.dn, "elsewhere") is not None
        assert delegation_keys.fill_pool(rt, 2, lambda: False) == 2  # without yielding: fills up


@pytest.fixture
def small_pool(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[Runtime]:
    runtime = build_runtime(tmp_path / "filler", pki, template_db, security={"delegation_key_pool": 2})
    yield runtime
    delegation_keys.stop_filler(runtime)
    close_runtime(runtime)


class TestFiller:
    def test_the_filler_tops_the_pool_up_after_a_claim(self, small_pool: Runtime, alice: Principal) -> None:
        delegation_keys.ensure_filler(small_pool)
        _wait_for(lambda: len(_pool(small_pool)) == 2)
        first = {row.id for row in _pool(small_pool)}
        delegation.create_proxy_request(small_pool, alice, "x")
        _wait_for(lambda: len(_pool(small_pool)) == 2 and {row.id for row in _pool(small_pool)} != first)

    def test_one_filler_per_process_and_runtime(self, small_pool: Runtime) -> None:
        delegation_keys.ensure_filler(small_pool)
        delegation_keys.ensure_filler(small_pool)
        names = [t for t in __import__("threading").enumerate() if t.name == "delegation-key-pool"]
        assert len(names) == 1


def _wait_for(condition: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the key pool filler did not get there in time")
        time.sleep(0.1)
