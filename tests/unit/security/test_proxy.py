from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from wmproxy.errors import ProxyError
from wmproxy.security.chain import chain_pem, load_pem_chain, verify_chain
from wmproxy.security.delegation import new_proxy_request
from wmproxy.security.pci import INHERIT_ALL_OID, LIMITED_PROXY_OID, PROXY_CERT_INFO_OID, proxy_cert_info
from wmproxy.security.pki import write_proxy
from wmproxy.security.proxy import (
    Credential,
    credential_pem,
    load_credential,
    make_proxy,
    sign_proxy_request,
    time_left,
)


class TestMakeProxy:
    def test_rfc3820_shape(self, user, proxy):
        cert = proxy.cert
        serial_cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[-1].value
        assert list(cert.subject.rdns)[:-1] == list(user.cert.subject.rdns)
        assert serial_cn == str(cert.serial_number)
        assert cert.issuer == user.cert.subject
        assert cert.extensions.get_extension_for_oid(PROXY_CERT_INFO_OID).critical
        assert proxy_cert_info(cert).policy_language == INHERIT_ALL_OID
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
        assert not ku.value.key_cert_sign
        assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        assert proxy.chain == [user.cert]
        assert proxy.key is not None

    def test_validity(self, user):
        now = datetime.now(UTC).replace(microsecond=0)
        cred = make_proxy(user, lifetime=7200, now=now)
        assert cred.cert.not_valid_after_utc == now + timedelta(seconds=7200)
        assert cred.cert.not_valid_before_utc == max(now - timedelta(minutes=5), user.cert.not_valid_before_utc)

    def test_capped_by_issuer(self, user):
        cred = make_proxy(user, lifetime=10 * 365 * 86400)
        assert cred.cert.not_valid_after_utc == user.cert.not_valid_after_utc

    def test_limited_and_path_len(self, user):
        info = proxy_cert_info(make_proxy(user, lifetime=60, limited=True, path_len=0).cert)
        assert info.policy_language == LIMITED_PROXY_OID and info.path_len == 0

    def test_certifies_a_given_key_without_returning_one(self, proxy):
        from cryptography.hazmat.primitives.asymmetric import rsa

        pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        cred = make_proxy(proxy, lifetime=60, public_key=pub)
        assert cred.key is None and cred.cert.public_key() == pub

    def test_issuer_without_key(self, proxy):
        with pytest.raises(ProxyError):
            make_proxy(Credential(proxy.cert, None, proxy.chain), lifetime=60)


class TestCredentialFiles:
    def test_grid_layout_round_trip(self, proxy):
        pem = credential_pem(proxy)
        assert pem.index(b"PRIVATE KEY") > pem.index(b"END CERTIFICATE")
        assert pem.count(b"BEGIN CERTIFICATE") == 2
        loaded = load_credential(pem)
        assert loaded.cert == proxy.cert and loaded.chain == proxy.chain
        assert credential_pem(loaded) == pem

    def test_separate_cert_and_key_files(self, ca, tmp_path):
        ca.issue_user("File User", tmp_path)
        assert oct(os.stat(tmp_path / "userkey.pem").st_mode & 0o777) == "0o600"
        cred = load_credential(tmp_path / "usercert.pem", tmp_path / "userkey.pem")
        assert cred.key is not None and cred.chain == []

    def test_key_must_match(self, user, proxy):
        with pytest.raises(ProxyError, match="does not match"):
            load_credential(chain_pem([user.cert]), credential_pem(proxy))

    def test_missing_file(self, tmp_path):
        with pytest.raises(ProxyError):
            load_credential(tmp_path / "nope")


class TestSignProxyRequest:
    def test_round_trip(self, ca, proxy):
        _key, csr = new_proxy_request(bits=2048)
        pem = sign_proxy_request(csr, proxy, lifetime=1800)
        assert b"PRIVATE KEY" not in pem
        chain = load_pem_chain(pem)
        assert chain[1:] == proxy.full_chain
        assert chain[0].public_key() == x509.load_pem_x509_csr(csr).public_key()
        assert chain[0].issuer == proxy.cert.subject
        verify_chain(chain, str(ca.directory))

    def test_bad_csr_signature(self, proxy):
        _key, csr = new_proxy_request()
        der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(Encoding.DER))
        der[-1] ^= 0xFF
        import base64
        tampered = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
                    + b"-----END CERTIFICATE REQUEST-----\n")
        with pytest.raises(ProxyError, match="bad signature"):
            sign_proxy_request(tampered, proxy, lifetime=60)

    def test_not_a_csr(self, proxy):
        with pytest.raises(ProxyError):
            sign_proxy_request(b"hello", proxy, lifetime=60)


def test_time_left(proxy):
    now = datetime.now(UTC)
    assert time_left(proxy.cert, now) == pytest.approx((proxy.cert.not_valid_after_utc - now).total_seconds())
    assert time_left(proxy.cert, now + timedelta(days=1)) < 0


def test_grid_proxy_info_reads_our_proxy(user, ca, tmp_path):
    binary = shutil.which("grid-proxy-info")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("grid-proxy-info (globus-proxy-utils) is required when CI=true")
        pytest.skip("grid-proxy-info not installed")
    path = tmp_path / "x509up"
    write_proxy(user, path, lifetime=3600)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    env = {**os.environ, "X509_CERT_DIR": str(ca.directory)}
    out = subprocess.run([binary, "-f", str(path)], capture_output=True, text=True, env=env, check=True).stdout
    assert "RFC 3820 compliant impersonation proxy" in out
    assert "identity : /C=XX/O=wmproxy-demo/OU=Users/CN=Jane Doe" in out
