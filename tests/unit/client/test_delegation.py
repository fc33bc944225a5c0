"""Signing a service CSR with the user's proxy (real crypto from the shared test PKI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from wmproxy.client import WMProxyClientError
from wmproxy.client.delegation import sign_request


class TestSignRequest:
    def test_returns_new_proxy_then_signer_chain(self, pki: Any) -> None:
        from wmproxy.security.delegation import new_proxy_request

        _key, csr = new_proxy_request(1024)
        proxy_file = pki.users["alice"].proxy
        pem = sign_request(csr.decode(), str(proxy_file))
        certs = x509.load_pem_x509_certificates(pem.encode())
        signer = x509.load_pem_x509_certificates(Path(proxy_file).read_bytes())
        assert len(certs) == len(signer) + 1
        assert certs[0].issuer == signer[0].subject
        assert "PRIVATE KEY" not in pem

    def test_unreadable_proxy_is_a_proxy_error(self, tmp_path: Path) -> None:
        with pytest.raises(WMProxyClientError) as err:
            sign_request("-----BEGIN CERTIFICATE REQUEST-----", str(tmp_path / "none"))
        assert err.value.fault_type == "ProxyError"

    def test_a_proxy_of_another_policy_language_is_not_delegated(self, pki: Any, tmp_path: Path) -> None:
        """The service refuses a chain holding an independent proxy: the client says so before."""
        from tests.support import INDEPENDENT, policy_proxy
        from wmproxy.security.delegation import new_proxy_request
        from wmproxy.security.proxy import credential_pem

        proxy_file = tmp_path / "independent.pem"
        proxy_file.write_bytes(credential_pem(policy_proxy(pki.users["alice"].credential, INDEPENDENT)))
        with pytest.raises(WMProxyClientError) as err:
            sign_request(new_proxy_request(1024)[1].decode(), str(proxy_file))
        assert err.value.fault_type == "ProxyError"
        assert "independent proxy" in err.value.description and INDEPENDENT in err.value.description

    def test_bad_csr_is_a_proxy_error(self, pki: Any) -> None:
        with pytest.raises(WMProxyClientError) as err:
            sign_request("not a csr", str(pki.users["alice"].proxy))
        assert err.value.fault_type == "ProxyError"
        assert "proxy request" in err.value.description
