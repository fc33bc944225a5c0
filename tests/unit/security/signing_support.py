"""Certificates signed with algorithms ``cryptography`` will not sign with (SHA-1, MD5), for the
tests of what gridsite clients send (``peers.md`` §6.3)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

SHA1_RSA = "1.2.840.113549.1.1.5"
MD5_RSA = "1.2.840.113549.1.1.4"


def _algorithm(oid: str) -> rfc5280.AlgorithmIdentifier:
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = univ.ObjectIdentifier(oid)
    algorithm["parameters"] = univ.Null("")
    return algorithm


def resigned(cert: x509.Certificate, key: Any, digest: hashes.HashAlgorithm, oid: str,
             inner_oid: str | None = None) -> x509.Certificate:
    """``cert`` signed again by the RSA ``key`` with ``digest`` under the signature algorithm
    ``oid`` (``cryptography`` signs neither SHA-1 nor MD5 certificates; gridsite clients sign
    SHA-1, ``peers.md`` §6.3); with ``inner_oid``, its signed part names that algorithm instead
    (a certificate OpenSSL refuses)."""
    tbs, _ = decoder.decode(cert.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    tbs["signature"] = _algorithm(inner_oid or oid)
    tbs_der = encoder.encode(tbs)
    whole = rfc5280.Certificate()
    whole["tbsCertificate"] = tbs
    whole["signatureAlgorithm"] = _algorithm(oid)
    whole["signature"] = univ.BitString.fromOctetString(key.sign(tbs_der, padding.PKCS1v15(), digest))
    return x509.load_der_x509_certificate(encoder.encode(whole))
