"""Signing a service CSR with the user's proxy (real crypto from the shared test PKI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from wmproxy.client import WMProxyClientError
from wmproxy.client.delegation import sign_request


class TestSignRequest:
    def test_returns_new_proxy_then_signer_chain(self, pki: Any) -> None:
        from wmproxy.security.delegation import new_proxy_request

        _key, csr = new_proxy_request(2048)
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


def csr_of(key: Any) -> str:
    """A proxy request (as a service's getProxyReq) for ``key``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


#: A 512-bit RSA key (cryptography makes none under 1024 bits), as the red team's impostor sent.
RSA_512 = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBANoy47M/POveXMypofO2j56plxjDtc3+NusHs8rc9kHZcuEum2Ui
LjJ7+PlQucQW+RLq53ujzY3vCXkITcwh+nECAwEAAQJAXdNmMEywEKjUdLk4x8in
50z7iQ2XHtYCnXv5ZvEu/08LZXwnKX67bab/iKaLBrsx99moDIYU/b8oMv1kStFK
BQIhAPf4rvsMaUlWxlJDavNH9PwbWX6ukjjTH7CspY1H/Jt7AiEA4UNvUIAOuLlZ
eQnoLS21GW+zNAnsDw7o1mKdIhiX+AMCIQCIOlLHENZ2t/lUED2dUZbBObU852Ll
XPc39GEu8LFSKQIgaqqc9jh9QBl8daUsTOBc5fuPlu+v2P2NYZ72myOcKnMCIQCq
gmK/rqbdxdH6MnpAU7Tlwx7upi2xmtG8SdxumQ0PdQ==
-----END RSA PRIVATE KEY-----
"""


class TestRequestKeys:
    """The client certifies only keys no one can break: a service (or an impostor) asking for a
    proxy of a 512-bit key would hold a credential of the user anyone can forge."""

    @pytest.mark.parametrize(("make", "refusal"), [
        (lambda: serialization.load_pem_private_key(RSA_512, None), "its RSA key has 512 bits, at least 2048 required"),
        (lambda: rsa.generate_private_key(65537, 1024),  # noqa: S505 - the weak key refused
         "its RSA key has 1024 bits, at least 2048 required"),
        (lambda: dsa.generate_private_key(2048), "is not RSA or EC"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "its EC key is on the curve secp256k1"),
        (ed25519.Ed25519PrivateKey.generate, "is not RSA or EC"),
    ], ids=["rsa512", "rsa1024", "dsa", "secp256k1", "ed25519"])
    def test_a_weak_or_odd_key_is_refused(self, pki: Any, make: Callable[[], Any], refusal: str) -> None:
        with pytest.raises(WMProxyClientError) as err:
            sign_request(csr_of(make()), str(pki.users["alice"].proxy))
        assert err.value.fault_type == "ProxyError"
        assert "refused to sign the proxy request: " in err.value.description
        assert refusal in err.value.description

    @pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 3072),
                                      lambda: ec.generate_private_key(ec.SECP384R1())], ids=["rsa3072", "p384"])
    def test_a_strong_key_is_signed(self, pki: Any, make: Callable[[], Any]) -> None:
        key = make()
        pem = sign_request(csr_of(key), str(pki.users["alice"].proxy))
        assert x509.load_pem_x509_certificates(pem.encode())[0].public_key() == key.public_key()
