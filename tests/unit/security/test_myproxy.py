"""The X.509 side of the MyProxy protocol: server names, proof of possession, delegation step."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import Pki
from wmproxy.errors import ProxyError
from wmproxy.security.chain import identity_dn, load_pem_chain
from wmproxy.security.myproxy import (
    RenewalRequest,
    chain_der,
    load_der_certificate,
    names_myproxy_server,
    sign_challenge,
)
from wmproxy.security.proxy import Credential, load_credential, make_proxy, sign_proxy_request


@pytest.fixture(scope="module")
def host(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> x509.Certificate:
    cert, _ = pki.ca.issue_host("px.example.org", tmp_path_factory.mktemp("px"))
    return load_pem_chain(Path(cert).read_bytes())[0]


class TestServerNames:
    @pytest.mark.parametrize("server", ["px.example.org", "PX.example.org.", "localhost", "127.0.0.1"])
    def test_subject_alternative_names(self, host: x509.Certificate, server: str) -> None:
        assert names_myproxy_server(host, server)

    @pytest.mark.parametrize("server", ["other.example.org", "example.org", "127.0.0.2", "x.px.example.org"])
    def test_other_names_are_refused(self, host: x509.Certificate, server: str) -> None:
        assert not names_myproxy_server(host, server)


class TestProofOfPossession:
    def test_rsa_signature_verifies_with_the_proxy_key(self, pki: Pki) -> None:
        user = load_credential(pki.users["alice"].proxy)
        signature = sign_challenge(user, b"challenge text", "sha256")
        user.cert.public_key().verify(signature, b"challenge text", padding.PKCS1v15(), hashes.SHA256())

    def test_ec_keys_sign_ecdsa(self, pki: Pki) -> None:
        alice = load_credential(pki.users["alice"].proxy)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        proxy = make_proxy(alice, lifetime=600, public_key=ec_key.public_key())
        signature = sign_challenge(Credential(proxy.cert, ec_key, proxy.chain), b"c", "sha1")
        ec_key.public_key().verify(signature, b"c", ec.ECDSA(hashes.SHA1()))  # noqa: S303 - MyProxy's SHA-1 method

    def test_without_a_key_no_proof(self, pki: Pki) -> None:
        alice = load_credential(pki.users["alice"].proxy)
        with pytest.raises(ProxyError):
            sign_challenge(Credential(alice.cert, None, alice.chain), b"c", "sha256")

    def test_chain_der_round_trips(self, pki: Pki) -> None:
        chain = load_credential(pki.users["alice"].proxy).full_chain
        assert [load_der_certificate(der) for der in chain_der(chain)] == chain
        with pytest.raises(ProxyError):
            load_der_certificate(b"\x30\x03abc")


class TestDelegationStep:
    def test_the_returned_chain_with_the_new_key_is_a_usable_proxy(self, pki: Pki) -> None:
        alice = load_credential(pki.users["alice"].proxy)
        request = RenewalRequest.new(2048)
        csr_pem = x509.load_der_x509_csr(request.csr_der).public_bytes(Encoding.PEM)
        chain = load_pem_chain(sign_proxy_request(csr_pem, alice, lifetime=600))
        renewed = load_credential(request.credential(chain))
        assert renewed.key is not None and identity_dn(renewed.full_chain) == pki.users["alice"].dn

    def test_a_chain_for_another_key_is_refused(self, pki: Pki) -> None:
        other = load_pem_chain(pki.users["alice"].proxy.read_bytes())
        with pytest.raises(ProxyError, match="another key"):
            RenewalRequest.new(2048).credential(other)

