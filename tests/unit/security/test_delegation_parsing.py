"""The delegation path's parsing shortcuts (issue 14): certificates of repeated PEM blocks are
parsed once, and putProxy stores the pending key's own PEM; neither changes what is stored or
refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from wmproxy.errors import ProxyError
from wmproxy.security.chain import chain_pem, load_pem_chain
from wmproxy.security.delegation import accept_delegated_proxy, new_proxy_request
from wmproxy.security.proxy import key_pem, sign_proxy_request

DN = "/C=XX/O=wmproxy-demo/OU=Users/CN=Jane Doe"


class TestRepeatedBlocks:
    def test_a_repeated_chain_gives_the_same_certificates(self, proxy) -> None:
        pem = chain_pem(proxy.full_chain)
        first, again = load_pem_chain(pem), load_pem_chain(pem)
        assert first == again == proxy.full_chain
        assert [a is b for a, b in zip(first, again, strict=True)] == [True] * len(first)  # parsed once

    def test_an_unreadable_block_is_refused_every_time(self, proxy) -> None:
        good = chain_pem(proxy.full_chain[:1])
        broken = good.replace(good[40:60], b"A" * 20)
        for _ in range(2):
            with pytest.raises(ProxyError, match="unreadable PEM certificate"):
                load_pem_chain(broken)
        assert load_pem_chain(good) == proxy.full_chain[:1]


class TestStoredCredential:
    def test_the_stored_key_block_is_the_pending_key_as_serialised(self, ca, proxy) -> None:
        pending, csr = new_proxy_request(bits=2048)
        accepted = accept_delegated_proxy(pending, sign_proxy_request(csr, proxy, lifetime=1800), DN,
                                          str(ca.directory))
        key = serialization.load_pem_private_key(pending, None)
        assert key_pem(key) == pending  # stored as it is == serialised again
        chain = load_pem_chain(accepted.pem)
        assert accepted.pem == chain_pem(chain[:1]) + pending + chain_pem(chain[1:])

    def test_a_pkcs8_pending_key_is_stored_in_the_traditional_layout(self, ca, proxy) -> None:
        pending, csr = new_proxy_request(bits=2048)
        key = serialization.load_pem_private_key(pending, None)
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        accepted = accept_delegated_proxy(pkcs8, sign_proxy_request(csr, proxy, lifetime=1800), DN,
                                          str(ca.directory))
        assert key_pem(key) in accepted.pem and pkcs8 not in accepted.pem
