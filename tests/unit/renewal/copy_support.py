"""What a job may write in place of its proxy copy, for the renewal tests."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from wmproxy.security import renewed as renewed_module
from wmproxy.security.proxy import Credential, make_proxy


def self_signed(days: int) -> bytes:
    """A certificate anyone can make: self-signed, valid for ``days`` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anything")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def big_exponent_key(exponent_bits: int = 40) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key whose public exponent has ``exponent_bits`` bits (red team: 3072-bit
    exponents on 3072-bit moduli, each signature 7 ms to verify; OpenSSL caps the exponent only
    above 3072-bit moduli). A valid key: a signature by it verifies."""
    base = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    p, q = base.p, base.q
    phi = (p - 1) * (q - 1)
    e = (1 << (exponent_bits - 1)) | 1
    while math.gcd(e, phi) != 1:
        e += 2
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def proxy_levels(user: Credential, levels: int, *, lifetime: int = 3600,
                 key: rsa.RSAPrivateKey | None = None) -> Credential:
    """``levels`` proxies of ``user``, each signed by the one above (a job holds its proxy's key
    and may sign below it); the last with ``key`` when given."""
    issuer = user
    for level in range(levels):
        if key is not None and level == levels - 1:
            made = make_proxy(issuer, lifetime=lifetime, public_key=key.public_key())
            return Credential(made.cert, key, made.chain)
        issuer = make_proxy(issuer, lifetime=lifetime)
    return issuer


def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The chains OpenSSL is asked to verify as proxies of their owner from now on
    (:mod:`wmproxy.security.renewed`: a job's copy, a renewed proxy)."""
    verified: list[object] = []
    real = renewed_module.verify_exact_chain
    monkeypatch.setattr(renewed_module, "verify_exact_chain",
                        lambda chain, *args, **kw: verified.append(chain) or real(chain, *args, **kw))
    return verified
