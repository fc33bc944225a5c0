"""The RFC 3820 proxyCertInfo extension (OID 1.3.6.1.5.5.7.1.14), encoded with pyasn1.

``cryptography`` has no class for it, so proxies carry it as an
``UnrecognizedExtension`` holding this DER::

    ProxyCertInfo ::= SEQUENCE {
        pCPathLenConstraint  INTEGER (0..MAX) OPTIONAL,
        proxyPolicy          ProxyPolicy }
    ProxyPolicy ::= SEQUENCE {
        policyLanguage  OBJECT IDENTIFIER,
        policy          OCTET STRING OPTIONAL }
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

PROXY_CERT_INFO_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
INHERIT_ALL_OID = "1.3.6.1.5.5.7.21.1"  # id-ppl-inheritAll (impersonation proxy)
INDEPENDENT_OID = "1.3.6.1.5.5.7.21.2"  # id-ppl-independent
LIMITED_PROXY_OID = "1.3.6.1.4.1.3536.1.1.1.9"  # Globus limited proxy


class _ProxyPolicy(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("policyLanguage", univ.ObjectIdentifier()),
        namedtype.OptionalNamedType("policy", univ.OctetString()),
    )


class _ProxyCertInfo(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("pCPathLenConstraint", univ.Integer()),
        namedtype.NamedType("proxyPolicy", _ProxyPolicy()),
    )


@dataclass(frozen=True)
class ProxyCertInfo:
    """Decoded proxyCertInfo: ``policy_language`` dotted OID, optional path length and policy bytes."""

    policy_language: str
    path_len: int | None = None
    policy: bytes | None = None


def encode_pci(info: ProxyCertInfo) -> bytes:
    """DER of the ProxyCertInfo SEQUENCE (the extension's extnValue content)."""
    value = _ProxyCertInfo()
    if info.path_len is not None:
        value["pCPathLenConstraint"] = info.path_len
    policy = value["proxyPolicy"]
    policy["policyLanguage"] = univ.ObjectIdentifier(info.policy_language)
    if info.policy is not None:
        policy["policy"] = info.policy
    der: bytes = encoder.encode(value)
    return der


#: Distinct proxyCertInfo values whose decoding is remembered (per process).
DECODED_MAX = 512


@functools.lru_cache(maxsize=DECODED_MAX)
def decode_pci(der: bytes) -> ProxyCertInfo:
    """Decode the extension value.

    A pure function of ``der``, remembered for the :data:`DECODED_MAX` most recent values
    (issue 14: pyasn1 took about 0.15 ms per proxy, and every limited-proxy check of
    putProxy, of the TLS edge and of the stored chains decodes them; in practice a handful
    of distinct values, such as inheritAll with or without a path length, are seen). A
    malformed value raises each time (exceptions are not remembered).

    Raises:
        ValueError: not a DER ProxyCertInfo.
    """
    try:
        value, rest = decoder.decode(der, asn1Spec=_ProxyCertInfo())
    except PyAsn1Error as exc:
        raise ValueError(f"bad proxyCertInfo: {exc}") from None
    if rest:
        raise ValueError("bad proxyCertInfo: trailing data")
    path_len = value["pCPathLenConstraint"]
    policy = value["proxyPolicy"]["policy"]
    return ProxyCertInfo(
        policy_language=str(value["proxyPolicy"]["policyLanguage"]),
        path_len=int(path_len) if path_len.isValue else None,
        policy=bytes(policy) if policy.isValue else None,
    )


def pci_extension(info: ProxyCertInfo) -> x509.UnrecognizedExtension:
    """The extension object to pass to ``CertificateBuilder.add_extension(..., critical=True)``."""
    return x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, encode_pci(info))


def proxy_cert_info(cert: x509.Certificate) -> ProxyCertInfo | None:
    """The decoded proxyCertInfo of ``cert``, or None when it has none (not an RFC 3820 proxy).

    Raises:
        ValueError: the extension is present but malformed.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(PROXY_CERT_INFO_OID)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return decode_pci(value.value)
    raise ValueError("unexpected proxyCertInfo representation")  # pragma: no cover
