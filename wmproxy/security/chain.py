"""PEM certificate chains: parsing, RFC 3820 proxy tests, identity DN and verification.

Chains are lists of ``cryptography`` certificates, **leaf first** (proxy, its issuer
proxies, the user's end-entity certificate; the CA is optional). Verification uses
pyOpenSSL's ``X509Store`` because ``cryptography.x509.verification`` refuses the
critical proxyCertInfo extension (``peers.md`` §0, §2.4).
"""

from __future__ import annotations

import binascii
import functools
import os
import re
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from cachetools import LRUCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID
from OpenSSL import crypto

from wmproxy.errors import ProxyError, ProxyPolicyError, ProxyVerificationError
from wmproxy.security import ca_policy
from wmproxy.security.dn import slash_dn
from wmproxy.security.pci import (
    INDEPENDENT_OID,
    INHERIT_ALL_OID,
    LIMITED_PROXY_OID,
    PROXY_CERT_INFO_OID,
    decode_pci,
    proxy_cert_info,
)

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"
#: The files of a grid CA directory read: ``<hash>.N`` (CA certificates), ``<hash>.rN`` (CRLs) and
#: the namespace policies ``<hash>.namespaces`` and ``<hash>.signing_policy`` (:mod:`ca_policy`).
_CA_FILE_RE = re.compile(r"^[0-9a-f]{8}\.(?:r?\d+|namespaces|signing_policy)$")


def load_pem_chain(data: bytes, *, new_leaf: bool = False) -> list[x509.Certificate]:
    """Parse every ``CERTIFICATE`` PEM block of ``data``, in file order.

    Other blocks (private keys of a grid proxy file) and text between blocks are ignored.
    Certificates are kept per process by their block (the issuers of chains repeat); with
    ``new_leaf`` the first one is not (a putProxy's new proxy: it would only push issuers out).

    Every certificate returned has its extensions, subject and issuer read (cryptography parses
    them lazily, on first use): one that cannot be read is refused here, once per distinct block,
    not as a ValueError from :func:`is_proxy` or :func:`end_entity` later.

    Raises:
        ProxyError: no certificate block, or a block that is not a valid certificate
            ("unreadable PEM certificate: ..."), an unreadable extension included.
    """
    blocks = _pem_blocks(data)
    if not blocks:
        raise ProxyError("no PEM certificate found")
    try:
        if new_leaf:
            return _new_leaf_chain(blocks)
        return [_load_pem_certificate(block) for block in blocks]
    except ValueError as exc:
        raise ProxyError(f"unreadable PEM certificate: {exc}") from None


def _new_leaf_chain(blocks: list[bytes]) -> list[x509.Certificate]:
    """The certificates of ``blocks``, the first one not kept (:func:`load_pem_chain` with
    ``new_leaf``), read as :func:`_parse_pem_certificate` reads them, the same errors raised first.

    The new leaf's subject and issuer are not read when its DER shows them readable: its issuer
    the bytes of the next certificate's subject, which was read, and its subject those plus one
    plain CN (:func:`extends_issuer`). Issue 14: cryptography builds a name's Python objects
    when it is first read, about 230,000 instructions of a putProxy for the leaf's two."""
    leaf = _parse_pem_certificate(blocks[0], names=False)
    try:
        issuers = [_load_pem_certificate(block) for block in blocks[1:]]
    except ValueError:
        _check_readable(leaf)  # the leaf's error is the one raised first
        raise
    if not issuers or not extends_issuer(leaf, issuers[0]):
        _check_readable(leaf)
    return [leaf, *issuers]


#: Certificates parsed from PEM blocks, by the block's bytes: the issuers of a delegated or
#: client chain (the user's certificate, the client's proxy) repeat from call to call. Bounded
#: LRU, per process; certificates are immutable, so the threads share them.
#: Entries kept in :data:`_pem_certificates`.
PEM_CERTIFICATES_MAX = 256
_pem_certificates: LRUCache[bytes, x509.Certificate] = LRUCache(PEM_CERTIFICATES_MAX)
_pem_certificates_lock = threading.Lock()


def _load_pem_certificate(block: bytes) -> x509.Certificate:
    """The certificate of one PEM block, parsed once per distinct block (issue 14: the
    parse of the chain's repeated issuers). Raises ValueError for an unreadable block
    (never cached)."""
    with _pem_certificates_lock:
        found = _pem_certificates.get(block)
    if found is not None:
        return found
    cert = _parse_pem_certificate(block)
    with _pem_certificates_lock:
        _pem_certificates[block] = cert
    return cert


def _parse_pem_certificate(block: bytes, *, names: bool = True) -> x509.Certificate:
    """The certificate of one PEM block, read (:func:`_check_readable`; without ``names``, its
    extensions only: the caller reads its names). Raises ValueError."""
    cert = _from_plain_block(block)
    if cert is None:
        cert = x509.load_pem_x509_certificate(block)
    _check_readable(cert, names=names)
    return cert


def _check_readable(cert: x509.Certificate, *, names: bool = True) -> None:
    """Read what cryptography parses lazily and every check of a chain uses: the extensions (a
    malformed keyUsage, ``UnrecognizedExtension(2.5.29.15, b"\\x01\\x02")``, raises ValueError
    at the first ``cert.extensions``), then (``names``) the subject and the issuer. Raises ValueError."""
    try:
        cert.extensions  # noqa: B018 - parsed (and kept by cryptography) for its error
        if names:
            cert.subject  # noqa: B018
            cert.issuer  # noqa: B018
    except ValueError as exc:
        raise ValueError(f"unreadable extension or name: {exc}") from None


@dataclass(frozen=True)
class _SignedParts:
    """Elements of a certificate's DER: ``Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
    ... }`` and, in ``TBSCertificate``, its ``signature`` (algorithm), ``issuer`` and ``subject``."""

    tbs: bytes
    outer_algorithm: bytes
    inner_algorithm: bytes
    issuer: bytes
    subject: bytes


def _signed_parts(cert: x509.Certificate) -> _SignedParts | None:
    """The :class:`_SignedParts` of ``cert``, read from its kept DER (:func:`certificate_der`:
    ``tbs_certificate_bytes`` encodes the signed part again, about 85,000 instructions), or None
    when they are not where DER puts them; read once per certificate object, kept with its
    encodings."""
    key = id(cert)
    with _encodings_lock:
        entry = _encodings.get(key)
    if entry is not None and entry[0] is cert and entry[3] is not _UNREAD:
        return cast("_SignedParts | None", entry[3])
    parts = _read_signed_parts(certificate_der(cert))
    with _encodings_lock:
        entry = _encodings.get(key)
        if entry is not None and entry[0] is cert:
            entry[3] = parts
    return parts


def _read_signed_parts(der: bytes) -> _SignedParts | None:
    """:func:`_signed_parts` of the certificate whose DER is ``der``."""
    try:
        tbs = der_element(der, 0)[0]  # Certificate ::= SEQUENCE {
        tbs_end = der_element(der, tbs)[1]
        outer_end = der_element(der, tbs_end)[1]
        position = der_element(der, tbs)[0]  # TBSCertificate ::= SEQUENCE { [0] version OPTIONAL,
        if der[position] == 0xA0:
            position = der_element(der, position)[1]
        inner = der_element(der, position)[1]  # serialNumber
        issuer = der_element(der, inner)[1]  # signature
        issuer_end = der_element(der, issuer)[1]  # issuer
        subject = der_element(der, issuer_end)[1]  # validity
        subject_end = der_element(der, subject)[1]  # subject
    except (IndexError, ValueError):
        return None
    if not der[tbs] == der[tbs_end] == der[inner] == der[issuer] == der[subject] == 0x30 or subject_end > tbs_end:
        return None
    return _SignedParts(der[tbs:tbs_end], der[tbs_end:outer_end], der[inner:issuer], der[issuer:issuer_end],
                        der[subject:subject_end])


def _tbs_names(cert: x509.Certificate) -> tuple[bytes, bytes] | None:
    """The DER of the issuer and subject names of ``cert`` (:func:`_signed_parts`), or None."""
    parts = _signed_parts(cert)
    return None if parts is None else (parts.issuer, parts.subject)


#: RSA PKCS#1 v1.5 signature algorithms :func:`verify_issued_by` checks itself, with their hashes.
_RSA_PKCS1_HASHES: dict[x509.ObjectIdentifier, type[hashes.HashAlgorithm]] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: hashes.SHA256,
    SignatureAlgorithmOID.RSA_WITH_SHA384: hashes.SHA384,
    SignatureAlgorithmOID.RSA_WITH_SHA512: hashes.SHA512,
}


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """``cert.verify_directly_issued_by(issuer)``: the same answer, the same exceptions.

    For an RSA PKCS#1 v1.5 signature with SHA-2 (what clients sign proxies with), whose
    ``AlgorithmIdentifier`` is the same bytes inside and outside the signed part, by an issuer
    whose subject is the bytes of ``cert``'s issuer, with an RSA key: the signature is checked
    here with the issuer's public key, as ``verify_directly_issued_by`` checks it once it found
    the algorithms and the names equal, over the signed part as received (cryptography's strict
    DER reader encodes what it read to the same bytes; OpenSSL checks these bytes). Issue 14:
    ``verify_directly_issued_by`` encodes the signed part again and calls back into Python, about
    185,000 instructions of a putProxy beside the RSA operation. Any other certificate goes to
    ``verify_directly_issued_by``.

    Raises:
        InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm: as ``verify_directly_issued_by``.
    """
    hash_type = _RSA_PKCS1_HASHES.get(cert.signature_algorithm_oid)
    if hash_type is not None:
        own = _signed_parts(cert)
        theirs = _signed_parts(issuer)
        if own is not None and theirs is not None and own.inner_algorithm == own.outer_algorithm \
                and own.issuer == theirs.subject:
            key = issuer.public_key()
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(cert.signature, own.tbs, padding.PKCS1v15(), hash_type())
                return
    cert.verify_directly_issued_by(issuer)


#: The value of a CN that any reader of a name takes as the same text (PrintableString and
#: UTF8String alike), no longer than cryptography's limit for a CN (64): a proxy's serial number.
_PLAIN_CN = re.compile(rb"[A-Za-z0-9]{1,64}").fullmatch
#: The start of an AttributeTypeAndValue of a CN: SEQUENCE { OBJECT IDENTIFIER 2.5.4.3, ...
_CN_OID = b"\x06\x03\x55\x04\x03"


def extends_issuer(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether the DER shows that ``cert``'s issuer is ``issuer``'s subject (the same bytes) and
    ``cert``'s subject ``issuer``'s plus one RDN, a single CN whose value is letters and digits
    (PrintableString or UTF8String, 1-64 characters): a proxy's names as clients make them.

    Then, ``issuer``'s names having been read (:func:`load_pem_chain`), ``cert``'s read alike:
    ``cert.issuer == issuer.subject``, ``cert.subject.rdns[:-1] == issuer.subject.rdns``, the last
    RDN one CN of that text. False says nothing: the names are then compared as names.

    A putProxy asks this of its new leaf and chain[1] several times: the last answer is kept,
    by the two (immutable) objects."""
    last = _last_extends
    if last[0] is cert and last[1] is issuer:
        return last[2]
    answer = _extends_issuer(cert, issuer)
    globals()["_last_extends"] = (cert, issuer, answer)
    return answer


_last_extends: tuple[Any, Any, bool] = (None, None, False)


def _extends_issuer(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    own = _tbs_names(cert)
    theirs = _tbs_names(issuer)
    if own is None or theirs is None:
        return False
    cert_issuer, subject = own
    issuer_subject = theirs[1]
    if cert_issuer != issuer_subject:
        return False
    try:
        start, end = der_element(subject, 0)
        prefix_start = der_element(issuer_subject, 0)[0]
        prefix = issuer_subject[prefix_start:]
        if end != len(subject) or subject[start:start + len(prefix)] != prefix:
            return False
        rdn = subject[start + len(prefix):]  # SET { SEQUENCE { OID, value } }
        if rdn[:1] != b"\x31" or der_element(rdn, 0)[1] != len(rdn):
            return False
        pair_start = der_element(rdn, 0)[0]
        pair = rdn[pair_start:]
        if pair[:1] != b"\x30" or der_element(pair, 0)[1] != len(pair):
            return False
        inner = pair[der_element(pair, 0)[0]:]
        if not inner.startswith(_CN_OID):
            return False
        value = inner[len(_CN_OID):]
        value_start, value_end = der_element(value, 0)
    except (IndexError, ValueError):
        return False
    return value[:1] in (b"\x13", b"\x0c") and value_end == len(value) and bool(_PLAIN_CN(value[value_start:]))


def _from_plain_block(block: bytes) -> x509.Certificate | None:
    """The certificate of a block :func:`_plain_der` reads, parsed from that DER (kept as its
    encoding, and the block as its PEM when it is laid out as :func:`_pem_of_der` writes it), or
    None (another block, or a DER cryptography refuses: its PEM reader then raises the same
    error)."""
    plain = _plain_der(block)
    if plain is None:
        return None
    der, pem_layout = plain
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    _remember_der(cert, der, block + b"\n" if pem_layout else None)
    return cert


def _plain_der(block: bytes) -> tuple[bytes, bool] | None:
    """The DER of a ``CERTIFICATE`` block (:func:`_pem_blocks`) whose body is canonical base64
    in non-empty lines (``\n`` or ``\r\n`` ends, no header, nothing else), or None for any other body
    (cryptography's PEM reader then parses the block); and whether the block is what
    :func:`_pem_of_der` writes for it, its last line end left out (``\n`` ends, lines of 64
    characters but the last).

    ``load_pem_x509_certificate`` decodes such a body to the same DER and parses it with
    ``load_der_x509_certificate``: parsing the DER here gives the same certificate and the same
    errors, and keeps the DER (issue 14: a new delegated proxy was encoded again to DER for
    OpenSSL and to PEM for the stored credential, about 35 us of a putProxy). A character
    outside base64's alphabet and the line ends fails the strict decode.
    """
    body = block[len(_BEGIN):-len(_END)]
    lines = body.split(b"\n")
    if lines[0] not in (b"", b"\r") or lines[-1] != b"":
        return None
    inner = lines[1:-1]
    crlf = b"\r" in body
    if crlf:
        inner = [line[:-1] if line.endswith(b"\r") else line for line in inner]
    if not inner or not all(inner):  # cryptography refuses an empty line
        return None
    text = b"".join(inner)
    if b"\r" in text:
        return None
    der = canonical_base64(text)
    if der is None:
        return None
    return der, not crlf and max(map(len, inner)) <= 64 and len(text) == 64 * (len(inner) - 1) + len(inner[-1])


def canonical_base64(text: bytes) -> bytes | None:
    """The bytes ``text`` encodes if it is canonical base64 (the standard alphabet, padded, no
    line ends, no non-zero bits after the last byte: what cryptography's PEM reader decodes, and
    what ``b2a_base64`` writes again), else None.

    A strict decode leaves only the last group's unused bits unchecked, so only the last group
    is encoded again (issue 14: encoding a whole certificate again cost a putProxy about 25,000
    instructions)."""
    try:
        der = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    tail = len(der) % 3 or 3  # the bytes of the last group of four characters
    return der if binascii.b2a_base64(der[-tail:], newline=False) == text[-4:] else None


def _pem_of_der(der: bytes) -> bytes:
    """``cert.public_bytes(Encoding.PEM)`` of the certificate whose DER is ``der``: the base64 in
    lines of 64 characters between the ``CERTIFICATE`` lines, ``\n`` line ends, as the standard
    library's ``ssl.DER_cert_to_PEM_cert`` writes it."""
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")


def _pem_blocks(data: bytes) -> list[bytes]:
    """The ``CERTIFICATE`` blocks of ``data``: ``-----BEGIN CERTIFICATE-----``, a line end
    (``\n`` or ``\r\n``), at least one byte, a line end, ``-----END CERTIFICATE-----``; each
    block ends at the first such END line (what the regular expression
    ``-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----`` with DOTALL finds,
    in about a fifteenth of its time: its lazy ``.+?`` cost 0.1-0.3 ms per chain, issue 14)."""
    blocks: list[bytes] = []
    pos = 0
    while True:
        start = data.find(_BEGIN, pos)
        if start < 0:
            return blocks
        body = start + len(_BEGIN)
        if data.startswith(b"\n", body):
            body += 1
        elif data.startswith(b"\r\n", body):
            body += 2
        else:
            pos = start + 1
            continue
        end = data.find(b"\n" + _END, body + 1)  # at least one byte of body before the line end
        if end < 0:
            return blocks
        pos = end + 1 + len(_END)
        blocks.append(data[start:pos])


def chain_pem(chain: list[x509.Certificate]) -> bytes:
    """The PEM concatenation of ``chain``, in order."""
    return b"".join(certificate_pem(cert) for cert in chain)


#: Encodings of certificate objects, by identity: ``id(cert)`` -> ``[cert, DER or None, PEM or
#: None, its _SignedParts (None: not found in its DER) or _UNREAD]``. The entry holds the
#: certificate, so its id cannot be reused while the entry exists.
#: Bounded LRU, per process. Entries kept in :data:`_encodings`.
CERT_ENCODINGS_MAX = 256
_encodings: LRUCache[int, list[Any]] = LRUCache(CERT_ENCODINGS_MAX)
_encodings_lock = threading.Lock()
#: An entry's signed parts not read yet.
_UNREAD = object()


def _encoding(cert: x509.Certificate, index: int, encoding: Encoding) -> bytes:
    """``cert.public_bytes(encoding)``, encoded once per certificate object (``index`` 1: DER,
    2: PEM). cryptography encodes a certificate again on every call, about 15 µs for a
    2048-bit one (issue 14); the issuers of the chains a process sees are the same objects from
    call to call (:func:`load_pem_chain` keeps them)."""
    key = id(cert)
    with _encodings_lock:
        entry = _encodings.get(key)
    if entry is not None and entry[0] is cert and entry[index] is not None:
        return cast(bytes, entry[index])
    if index == 2 and entry is not None and entry[0] is cert and entry[1] is not None:
        value = _pem_of_der(entry[1])
    else:
        value = cert.public_bytes(encoding)
    with _encodings_lock:
        entry = _encodings.get(key)
        if entry is None or entry[0] is not cert:
            entry = _encodings[key] = [cert, None, None, _UNREAD]
        entry[index] = value
    return value


def _remember_der(cert: x509.Certificate, der: bytes, pem: bytes | None = None) -> None:
    """Keep ``der``, the bytes ``cert`` was parsed from (strict DER: the same bytes as
    ``cert.public_bytes(Encoding.DER)``), as its DER encoding, and ``pem`` (``_pem_of_der(der)``)
    as its PEM when given."""
    with _encodings_lock:
        entry = _encodings.get(id(cert))
        if entry is None or entry[0] is not cert:
            entry = _encodings[id(cert)] = [cert, None, None, _UNREAD]
        entry[1] = der
        if pem is not None:
            entry[2] = pem


def forget_certificate(cert: x509.Certificate) -> None:
    """Drop what this module keeps of ``cert`` (its encodings, its OpenSSL copy): a certificate
    used once, such as a putProxy's new proxy, would otherwise take a place of the issuers these
    caches are for."""
    with _encodings_lock:
        entry = _encodings.get(id(cert))
        if entry is not None and entry[0] is cert:
            del _encodings[id(cert)]
        der = entry[1] if entry is not None and entry[0] is cert else None
    if der is not None:
        with _openssl_certs_lock:
            _openssl_certs.pop(der, None)


def certificate_der(cert: x509.Certificate) -> bytes:
    """The DER of ``cert`` (``cert.public_bytes(Encoding.DER)``, kept per certificate object)."""
    return _encoding(cert, 1, Encoding.DER)


def certificate_pem(cert: x509.Certificate) -> bytes:
    """The PEM of ``cert`` (``cert.public_bytes(Encoding.PEM)``, kept per certificate object)."""
    return _encoding(cert, 2, Encoding.PEM)


def der_chain_to_pem(ders: list[bytes]) -> bytes:
    """Turn DER certificates (e.g. ``SSLSocket.get_verified_chain()``) into one PEM chain.

    Raises:
        ProxyError: a DER blob is not a certificate.
    """
    try:
        certs = [x509.load_der_x509_certificate(der) for der in ders]
        for cert in certs:
            _check_readable(cert)
        return chain_pem(certs)
    except ValueError as exc:
        raise ProxyError(f"unreadable DER certificate: {exc}") from None


def is_proxy(cert: x509.Certificate) -> bool:
    """True when ``cert`` carries the RFC 3820 proxyCertInfo extension (1.3.6.1.5.5.7.1.14).

    Legacy GT2 (``CN=proxy``) and pre-RFC draft proxies are *not* proxies here; OpenSSL 3
    refuses them anyway.
    """
    return any(ext.oid == PROXY_CERT_INFO_OID for ext in cert.extensions)


#: Last CN of a legacy (GT2) limited proxy's subject.
LEGACY_LIMITED_CN = "limited proxy"


def is_limited_proxy(cert: x509.Certificate) -> bool:
    """True for a limited proxy: an RFC 3820 proxy whose policy language is the Globus
    limited-proxy OID (1.3.6.1.4.1.3536.1.1.1.9), or a legacy GT2 proxy whose subject is
    its issuer's plus ``CN=limited proxy``.

    A proxy whose rights cannot be read as the issuer's counts as limited too, so it gets the
    least: a malformed proxyCertInfo (the TLS layer refuses such certificates anyway), and any
    policy language but id-ppl-inheritAll (:data:`PROXY_POLICIES`: id-ppl-independent, or a
    language the service does not understand). Those are refused outright where a chain comes
    in (:func:`check_proxy_policies`); counting them as limited only keeps a chain that got past
    it (a proxy stored by an earlier release) from the owner's full rights.
    """
    try:
        info = proxy_cert_info(cert)
    except ValueError:
        return True
    if info is not None:
        return info.policy_language != INHERIT_ALL_OID
    return _legacy_proxy_cn(cert) == LEGACY_LIMITED_CN


def has_limited_proxy(chain: list[x509.Certificate]) -> bool:
    """True when a certificate of the leaf-first ``chain`` is a limited proxy
    (:func:`is_limited_proxy`). A proxy signed by a limited proxy is limited too
    (RFC 3820 §3.8: a proxy never has more rights than its issuer)."""
    return any(is_limited_proxy(cert) for cert in chain)


#: The RFC 3820 policy languages the service understands: id-ppl-inheritAll (an impersonation
#: proxy, the owner's rights) and the Globus limited proxy (data access only, ``LIMITED_PROXY_REFUSED``
#: of :mod:`wmproxy.services.authz`). A proxy of any other language is refused
#: (:func:`check_proxy_policies`).
PROXY_POLICIES = frozenset({INHERIT_ALL_OID, LIMITED_PROXY_OID})


def unknown_proxy_policy(chain: list[x509.Certificate]) -> str | None:
    """The policy language (dotted OID) of the leaf-most RFC 3820 proxy of the leaf-first
    ``chain`` whose language is not one of :data:`PROXY_POLICIES`, None when there is none.

    A malformed proxyCertInfo names no language: it is left to :func:`is_limited_proxy` (limited)
    and to the TLS layer and OpenSSL, which refuse it.
    """
    for cert in chain:
        # a loop, not proxy_cert_info: its ExtensionNotFound for the end-entity certificate cost
        # about 3 µs (issue 14)
        ext = next((e for e in cert.extensions if e.oid == PROXY_CERT_INFO_OID), None)
        if ext is None or not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        try:
            language = decode_pci(ext.value.value).policy_language
        except ValueError:
            continue
        if language not in PROXY_POLICIES:
            return language
    return None


def check_proxy_policies(chain: list[x509.Certificate]) -> None:
    """Refuse a leaf-first ``chain`` holding an RFC 3820 proxy whose policy language is neither
    id-ppl-inheritAll nor the Globus limited proxy (:func:`unknown_proxy_policy`).

    RFC 3820: an id-ppl-independent proxy (1.3.6.1.5.5.7.21.2) has none of its issuer's rights,
    and a relying party that does not understand a policy language must not take the proxy for
    one with its issuer's rights. This service has no rights to give but the owner's, whole or
    limited, so it refuses both: the caller's chain at the TLS edge, a delegated chain at
    putProxy, a proxy MyProxy or a VOMS refresh returns, a chain the client would delegate from.

    Raises:
        ProxyPolicyError: such a proxy; the message names its language.
    """
    language = unknown_proxy_policy(chain)
    if language is None:
        return
    if language == INDEPENDENT_OID:
        what = (f"an independent proxy (RFC 3820 policy language id-ppl-independent, {language}) has none of "
                "its issuer's rights")
    else:
        what = (f"a proxy of RFC 3820 policy language {language}, which this service does not understand, "
                "cannot be granted its issuer's rights")
    raise ProxyPolicyError(
        f"{what}; only impersonation (inheritAll, {INHERIT_ALL_OID}) and limited ({LIMITED_PROXY_OID}) proxies "
        "are accepted", policy_language=language)


def proxy_depth(chain: list[x509.Certificate]) -> int:
    """Proxy certificates above the end-entity certificate of the leaf-first ``chain``:
    0 for a plain certificate, 1 for ``grid-proxy-init``'s proxy, 2 for a proxy of it...

    Counts RFC 3820 proxies and legacy GT2 proxies (subject = issuer + one CN) from the leaf
    down to the first certificate that is neither.
    """
    depth = 0
    for cert in chain:
        if not (is_proxy(cert) or _legacy_proxy_cn(cert) in ("proxy", LEGACY_LIMITED_CN)):
            break
        depth += 1
    return depth


def _legacy_proxy_cn(cert: x509.Certificate) -> str | None:
    """The last CN of a certificate whose subject is its issuer's plus one CN (the shape of a
    legacy GT2 proxy), else None."""
    rdns = cert.subject.rdns
    if len(rdns) < 2 or rdns[:-1] != cert.issuer.rdns:
        return None
    last = list(rdns[-1])
    if len(last) != 1 or last[0].oid != NameOID.COMMON_NAME:
        return None
    return str(last[0].value)


def end_entity(chain: list[x509.Certificate]) -> x509.Certificate:
    """The first non-proxy certificate of the leaf-first ``chain`` (the user's certificate).

    Raises:
        ProxyError: the chain is empty or holds proxies only.
    """
    for cert in chain:
        if not is_proxy(cert):
            return cert
    raise ProxyError(NO_END_ENTITY)


#: :func:`end_entity`'s refusal.
NO_END_ENTITY = "the certificate chain has no end-entity certificate"


@dataclass(frozen=True, eq=False)
class ChainFacts:
    """What :func:`proxy_depth`, :func:`has_limited_proxy`, :func:`end_entity` and the slash DN of
    its subject say of one leaf-first chain (``user`` and ``dn`` None when :func:`end_entity`
    raises)."""

    certs: tuple[x509.Certificate, ...]
    depth: int
    limited: bool
    user: x509.Certificate | None
    dn: str | None


#: :class:`ChainFacts` of the issuer chains of delegated proxies (chain[1:], the objects
#: :func:`load_pem_chain` keeps), per process, by the certificates' ids (the entry holds them,
#: so an id is not reused while it is kept). Entries kept in :data:`_chain_facts`.
CHAIN_FACTS_MAX = 256
_chain_facts: LRUCache[tuple[int, ...], ChainFacts] = LRUCache(CHAIN_FACTS_MAX)
_chain_facts_lock = threading.Lock()


def chain_facts(chain: list[x509.Certificate]) -> ChainFacts:
    """The :class:`ChainFacts` of ``chain``, found once per process for the same certificate
    objects (they are immutable): a putProxy's issuers are the caller's chain from one
    delegation to the next (issue 14: about 150,000 instructions of each putProxy)."""
    key = tuple(map(id, chain))
    with _chain_facts_lock:
        found = _chain_facts.get(key)
    if found is not None and all(a is b for a, b in zip(found.certs, chain, strict=True)):
        return found
    try:
        user: x509.Certificate | None = end_entity(chain)
    except ProxyError:
        user = None
    facts = ChainFacts(tuple(chain), proxy_depth(chain), has_limited_proxy(chain), user,
                       None if user is None else slash_dn(user.subject))
    with _chain_facts_lock:
        _chain_facts[key] = facts
    return facts


def identity_dn(chain: list[x509.Certificate]) -> str:
    """Slash DN of :func:`end_entity` (proxy CNs not included). Raises ProxyError like it."""
    return slash_dn(end_entity(chain).subject)


# --- verification against a grid CA directory ---


# (directory mtime, ((file name, mtime, size), ...)): a CA directory unchanged since it was parsed
_Stamp = tuple[int, tuple[tuple[str, int, int], ...]]


@dataclass(frozen=True, eq=False)
class _CaDir:
    certs: tuple[crypto.X509, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    #: What the files were when parsed: (directory mtime, ((name, mtime, size), ...)).
    stamp: _Stamp = (0, ())
    #: The parsed file names by subject name hash (8 hex digits): that of the file's name
    #: (``<hash>.N``, ``<hash>.rN``, the policy files) and that of what it holds (a CA's subject,
    #: a CRL's issuer); a CA's policy files named by its old-style hash also under its hash.
    by_hash: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The CA namespace policies of the directory (its ``.namespaces`` and ``.signing_policy`` files).
    policies: ca_policy.Policies = field(default_factory=ca_policy.Policies)
    #: The directory's CA certificates met on verified paths, as ``cryptography`` certificates, by DER.
    converted: dict[bytes, x509.Certificate] = field(default_factory=dict)
    #: The names a directory CA's policy files may have (:mod:`ca_policy`), by its subject name
    #: hash: that hash, then its old-style hash (:func:`ca_policy.old_name_hash`).
    policy_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @functools.cached_property
    def files(self) -> dict[str, tuple[int, int]]:
        """Each file's (mtime, size) when parsed, by name (:attr:`stamp`'s files)."""
        return {name: (mtime, size) for name, mtime, size in self.stamp[1]}


@dataclass(frozen=True)
class _Parsed:
    """A CA directory as last parsed: ``names`` the listing it was checked against (the kept
    listing object of :func:`_ca_names`), ``walked`` when (``time.monotonic()``) every file of it
    was last found unchanged."""

    loaded: _CaDir
    names: list[str]
    walked: float


#: Seconds a CA directory's parse is used without a ``stat`` of each of its files, while the
#: directory itself is unchanged (a file added, removed or renamed is seen at once): every
#: verification still ``stat``-s the files of the CAs its path goes through (:func:`_path_files_changed`),
#: so a CRL or CA certificate of the path rewritten in place is seen at once, and a file of
#: another CA within this time. Issue 14: a ``stat`` of each of the 400-odd files of an IGTF
#: directory cost about 1 ms of every putProxy and every VOMS AC verification.
CA_FILES_RESTAT = 1.0

_cache: dict[str, _Parsed] = {}
_cache_lock = threading.Lock()


def _signature(ca_dir: str, names: list[str], directory_mtime_ns: int) -> _Stamp:
    stamps = []
    for name in names:
        try:
            st = os.stat(os.path.join(ca_dir, name))
        except FileNotFoundError:
            continue
        stamps.append((name, st.st_mtime_ns, st.st_size))
    return (directory_mtime_ns, tuple(stamps))


#: A directory whose last change (mtime, ctime) is this many nanoseconds old or more is settled:
#: its listing is kept until its stat changes. A more recent one is listed again on every call,
#: because a second change within the file system's timestamp granularity would leave the same
#: times.
SETTLED_NS = 2_000_000_000
#: Per CA directory path: (its (st_dev, st_ino, st_mtime_ns, st_ctime_ns) when listed, settled,
#: the names of its CA certificates and CRLs, sorted).
_listings: dict[str, tuple[tuple[int, int, int, int], list[str]]] = {}


def _ca_names(ca_dir: str) -> tuple[list[str], int]:
    """The sorted ``<hash>.N`` and ``<hash>.rN`` names of ``ca_dir`` and its mtime (ns).

    A directory's entries change only with its mtime and ctime: while its ``stat`` is the one
    of a settled directory (:data:`SETTLED_NS`) listed before, that listing is used (issue 14:
    listing and matching an IGTF directory of a thousand entries cost every putProxy a listing;
    a ``stat`` of each listed file still tells a CRL or CA rewritten in place).
    """
    try:
        st = os.stat(ca_dir)
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        with _cache_lock:
            kept = _listings.get(ca_dir)
        if kept is not None and kept[0] == stamp:
            return kept[1], st.st_mtime_ns
        names = sorted(n for n in os.listdir(ca_dir) if _CA_FILE_RE.match(n))
    except OSError as exc:
        raise ProxyVerificationError(f"cannot read CA directory {ca_dir}: {exc}") from None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= SETTLED_NS:
        with _cache_lock:
            _listings[ca_dir] = (stamp, names)
    return names, st.st_mtime_ns


def _load_ca_dir(ca_dir: str, *, walk: bool = False) -> _CaDir:
    """Parsed CA certificates (``<hash>.N``) and CRLs (``<hash>.rN``) of ``ca_dir``.

    Cached per path and (directory mtime, per-file mtime and size): a new CA, or one removed, is
    picked up on the next call (the directory's ``stat``), a file rewritten in place once its
    own ``stat`` is taken: on every call after :data:`CA_FILES_RESTAT` seconds, or with
    ``walk=True``. Unreadable files are skipped (as OpenSSL's hash-dir lookup does).
    """
    names, directory_mtime_ns = _ca_names(ca_dir)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(ca_dir)
    if hit is not None and not walk and hit.names is names and now - hit.walked < CA_FILES_RESTAT:
        return hit.loaded
    key = _signature(ca_dir, names, directory_mtime_ns)
    if hit is not None and hit.loaded.stamp == key:
        with _cache_lock:
            _cache[ca_dir] = _Parsed(hit.loaded, names, now)
        return hit.loaded
    certs: list[crypto.X509] = []
    crls: list[x509.CertificateRevocationList] = []
    # A file belongs to the hash of its name and to that of what it holds: a CA certificate's
    # subject, a CRL's issuer (a CA's subject): fetch-crl also writes each CRL under the
    # old-style hash, which the path's (new-style) hashes would not name.
    by_hash: dict[str, set[str]] = {}
    subject_hashes: dict[x509.Name, str] = {}
    old_hashes: set[tuple[str, str]] = set()  # (a CA certificate's subject hash, its old-style hash)
    crl_files: list[tuple[str, x509.Name]] = []
    for name in names:
        by_hash.setdefault(name.split(".", 1)[0], set()).add(name)
        if name.endswith(_POLICY_SUFFIXES):  # parsed below, once per file version (ca_policy.load_file)
            continue
        try:
            with open(os.path.join(ca_dir, name), "rb") as fh:
                data = fh.read()
            if name.rsplit(".", 1)[1].startswith("r"):  # <hash>.rN (names matched _CA_FILE_RE)
                crl = x509.load_pem_x509_crl(data)
                crls.append(crl)
                crl_files.append((name, crl.issuer))
            else:
                for cert in load_pem_chain(data):
                    converted = crypto.X509.from_cryptography(cert)
                    certs.append(converted)
                    digest = f"{converted.subject_name_hash():08x}"
                    if cert.subject not in subject_hashes:
                        subject_hashes[cert.subject] = digest
                        old_hashes.add((digest, ca_policy.old_name_hash(cert.subject.public_bytes())))
                    by_hash.setdefault(digest, set()).add(name)
        except (OSError, ValueError, ProxyError):
            continue
    for name, issuer in crl_files:
        issued_by = subject_hashes.get(issuer)
        if issued_by is not None:
            by_hash.setdefault(issued_by, set()).add(name)
    # a CA's policy files named by its old-style hash are its files too (ca_policy reads both names),
    # but for a link to one of its files (as IGTF bundles install them): that file's stat tells
    # An old-style hash that is also a directory CA's (new-style) hash names that CA's files, not
    # this one's (a collision would apply the other CA's SELF rules here): not looked up.
    listed = set(names)
    policy_names: dict[str, tuple[str, ...]] = {}
    new_hashes = set(subject_hashes.values())
    for digest, old in sorted(old_hashes):
        if old in new_hashes:
            policy_names.setdefault(digest, (digest,))
            continue
        own = by_hash[digest]
        own.update(name for name in (old + suffix for suffix in _POLICY_SUFFIXES)
                   if name in listed and not _links_to(ca_dir, name, own))
        policy_names[digest] = (*policy_names.get(digest, (digest,)), old)
    files = {name: (mtime, size) for name, mtime, size in key[1]}
    policies = ca_policy.Policies.of(ca_dir, {n: stamp for n, stamp in files.items() if n.endswith(_POLICY_SUFFIXES)})
    loaded = _CaDir(tuple(certs), tuple(crls), key, {h: tuple(sorted(found)) for h, found in by_hash.items()},
                    policies, policy_names=policy_names)
    with _cache_lock:
        _cache[ca_dir] = _Parsed(loaded, names, now)
    return loaded


_POLICY_SUFFIXES = ("." + ca_policy.NAMESPACES, "." + ca_policy.SIGNING_POLICY)


def _links_to(ca_dir: str, name: str, names: set[str]) -> bool:
    """Whether the file ``name`` of ``ca_dir`` is a symbolic link to one of ``names`` of the same
    directory (written as a bare name): rewritten through the link, that file changes; the link
    replaced, the directory does."""
    try:
        target = os.readlink(os.path.join(ca_dir, name))
    except OSError:  # not a link
        return False
    return os.path.dirname(target) in ("", ".") and os.path.basename(target) in names


def ca_dir_state(ca_dir: str) -> object:
    """An object that stays the same (``is``) while ``ca_dir`` is as last parsed: what a result
    remembered of a verification against it is kept with (a CA added, removed or rewritten
    gives another). As cheap as a verification's own look-up (:func:`_load_ca_dir`).

    Raises:
        ProxyVerificationError: the directory cannot be read.
    """
    return _load_ca_dir(ca_dir)


def _path_files_changed(ca_dir: str, loaded: _CaDir, hashes: Iterable[str]) -> bool:
    """Whether a file of ``loaded`` of one of ``hashes`` (the subject name hashes of a verified
    path's certificates: the files of its CA certificates and of their CRLs, by file name or
    by content, :attr:`_CaDir.by_hash`) is no longer as parsed: rewritten, removed or replaced.
    A ``stat`` of those few files, not of the whole directory (:data:`CA_FILES_RESTAT`)."""
    for name in {name for digest in hashes for name in loaded.by_hash.get(digest, ())}:
        try:
            st = os.stat(os.path.join(ca_dir, name))
        except OSError:
            return True
        if loaded.files.get(name) != (st.st_mtime_ns, st.st_size):
            return True
    return False


def _name_hashes(path: Iterable[crypto.X509]) -> tuple[str, ...]:
    """The OpenSSL subject name hashes (``%08x``, the CA directory's file names) of ``path``."""
    return tuple(f"{cert.subject_name_hash():08x}" for cert in path)


def _policy_names(cas: Sequence[crypto.X509], loaded: _CaDir) -> tuple[tuple[str, ...], ...]:
    """The names the policy files of each CA certificate of ``cas`` may have: its subject name
    hash, then its old-style hash (:func:`ca_policy.old_name_hash`): as the CA directory's parse
    found them for its CAs (:attr:`_CaDir.policy_names`), else (an intermediate CA the chain sent)
    read from the certificate, but for an old-style hash that is a directory CA's hash (that CA's
    files)."""
    names: list[tuple[str, ...]] = []
    for cert, digest in zip(cas, _name_hashes(cas), strict=True):
        known = loaded.policy_names.get(digest)
        if known is None:
            old = ca_policy.old_name_hash(cert.to_cryptography().subject.public_bytes())
            known = (digest,) if old in loaded.policy_names else (digest, old)
        names.append(known)
    return tuple(names)


#: Verification times within this many seconds of the clock are verified at the clock's time.
CURRENT_TIME_TOLERANCE = 1.0
#: Per (CA directory path, whether CRLs are checked): (the parsed directory, the X509Store of it
#: that verifies at the clock's time).
_current_stores: dict[tuple[str, bool], tuple[_CaDir, crypto.X509Store]] = {}

_FLAGS = (
    crypto.X509StoreFlags.ALLOW_PROXY_CERTS | crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL
)
#: :data:`_FLAGS` without the revocation checks (``check_crl=False``).
_FLAGS_WITHOUT_CRL = crypto.X509StoreFlags.ALLOW_PROXY_CERTS


def _new_store(loaded: _CaDir, at: datetime | None, check_crl: bool = True) -> crypto.X509Store:
    store = crypto.X509Store()
    if at is not None:
        store.set_time(at)  # before set_flags: set_time replaces the store's parameters
    store.set_flags(_FLAGS if check_crl else _FLAGS_WITHOUT_CRL)
    for cert in loaded.certs:
        store.add_cert(cert)
    if check_crl:
        for crl in loaded.crls:
            store.add_crl(crl)
    return store


def _store(ca_dir: str, loaded: _CaDir, at: datetime | None, check_crl: bool = True) -> crypto.X509Store:
    """An X509Store of ``loaded`` (the parsed ``ca_dir``) that verifies at ``at`` (UTC-aware
    or naive UTC; None: the clock's time).

    A time within :data:`CURRENT_TIME_TOLERANCE` seconds of the clock (a request's own
    "now") is verified at the clock's time (OpenSSL reads it during the verification; both
    have a resolution of one second) by a store built once per parsed CA directory and shared
    by the threads (OpenSSL's stores are made to be shared). Building a store, with every
    CRL converted for OpenSSL, cost about 0.1 ms per verification (issue 14). Any other
    time gets a new store set to it (OpenSSL keeps a store's first time: it cannot be reused).
    """
    if at is not None and _current_time(at) is None:
        return _new_store(loaded, _utc(at), check_crl)
    with _cache_lock:
        entry = _current_stores.get((ca_dir, check_crl))
    if entry is not None and entry[0] is loaded:
        return entry[1]
    store = _new_store(loaded, None, check_crl)
    with _cache_lock:
        _current_stores[(ca_dir, check_crl)] = (loaded, store)
    return store


#: OpenSSL copies of certificates seen in chains, by DER (the issuers of delegated proxies and
#: of VOMS servers repeat from call to call); bounded LRU, per process.
#: Entries kept in :data:`_openssl_certs`.
OPENSSL_CERTS_MAX = 256
_openssl_certs: LRUCache[bytes, crypto.X509] = LRUCache(OPENSSL_CERTS_MAX)
_openssl_certs_lock = threading.Lock()


def _openssl_cert(cert: x509.Certificate) -> crypto.X509:
    """``cert`` as a pyOpenSSL X509, parsed once per distinct DER (about 0.06 ms each)."""
    der = certificate_der(cert)
    with _openssl_certs_lock:
        found = _openssl_certs.get(der)
    if found is not None:
        return found
    converted = crypto.load_certificate(crypto.FILETYPE_ASN1, der)
    with _openssl_certs_lock:
        _openssl_certs[der] = converted
    return converted


def verify_chain(
    chain: list[x509.Certificate], ca_dir: str, at: datetime | None = None
) -> None:
    """Verify a leaf-first chain (RFC 3820 proxies allowed) against a grid CA directory.

    Args:
        chain: leaf first; ``chain[1:]`` are untrusted intermediates (user cert, proxies).
        ca_dir: grid CA directory with PEM ``<hash>.N`` CA certs and ``<hash>.rN`` CRLs.
        at: verification time (aware, or naive meaning UTC); default now.

    OpenSSL flags: ALLOW_PROXY_CERTS | CRL_CHECK | CRL_CHECK_ALL, so every CA must
    publish a CRL and a revoked user's proxies are refused too.

    A chain OpenSSL verified (the same DER in the same order) at the clock's time, at most
    :data:`VERIFIED_ISSUERS_TTL` seconds ago, against the CA directory as it still is (no file
    of its path's CAs changed, none added or removed), none of whose certificates or CRLs has
    ended since, is not verified again: a VOMS server's certificate is verified for every AC
    check (each jobSubmit of a VOMS proxy), a kept-alive client's chain once a minute (issue 14).

    Raises:
        ProxyVerificationError: the OpenSSL reason, e.g. "certificate revoked",
            "certificate has expired", "unable to get local issuer certificate",
            "unable to get certificate CRL"; or an empty chain / unreadable CA dir.
    """
    current = _current_time(at) if chain else None
    if current is None:
        _verified_path(chain, ca_dir, at)
        return
    now = current.timestamp()
    ders = tuple(certificate_der(cert) for cert in chain)
    known, loaded = _proof_of(_verified_chains, ca_dir, ders, _load_ca_dir(ca_dir), now)
    if known is not None:
        return
    verified, loaded = _verified_path_of(chain, ca_dir, at, True, loaded)
    _remember_proof(_verified_chains, ca_dir, ders, (), verified, loaded, now, leaf=True)


def verify_delegated_chain(chain: list[x509.Certificate], ca_dir: str,
                           at: datetime | None = None) -> tuple[bool, list[x509.Certificate]]:
    """:func:`verify_chain`, and the path OpenSSL verified as certificates of ``chain``.

    Returns ``(proven, path)``:

    * ``proven``: the verified path goes from ``chain[0]`` to ``chain[1]`` (the same DER): then
      OpenSSL has checked that ``chain[1]``'s subject is ``chain[0]``'s issuer and ``chain[0]``'s
      signature with ``chain[1]``'s public key. False when OpenSSL took another of the untrusted
      certificates as the issuer (it picks them by name), or the chain has one certificate.
    * ``path``: the verified path, leaf first, from ``chain[0]`` up to and including its first
      non-proxy certificate (the end-entity certificate; the CA certificates after it belong to
      the CA directory), each one the object of ``chain`` with its DER (the first such); a
      certificate OpenSSL took from the CA directory instead is converted. Certificates of
      ``chain`` beside the path are not in it.

    A chain whose issuers (``chain[1:]``, the same DER in the same order) OpenSSL verified with
    another leaf through ``chain[1]``, at most :data:`VERIFIED_ISSUERS_TTL` seconds ago, against the
    CA directory as it still is (no CA or CRL file changed since), verified at the clock's time,
    and none of whose certificates or CRLs has ended since, has only its leaf checked: as OpenSSL
    checks a proxy over a verified issuer (:func:`_leaf_fits`; a leaf of another shape is verified
    by OpenSSL with its issuers). Issue 14: OpenSSL's verification was about a fifth of a
    delegation's service CPU, and a user delegates again with the same proxy.

    Raises:
        ProxyVerificationError: as :func:`verify_chain`.
    """
    current = _current_time(at) if len(chain) > 1 else None
    loaded = _load_ca_dir(ca_dir) if current is not None else None
    issuers = tuple(certificate_der(cert) for cert in chain[1:])
    sent: dict[bytes, x509.Certificate] = {}
    for der, cert in zip(issuers, chain[1:], strict=True):
        sent.setdefault(der, cert)
    known = None
    if current is not None and loaded is not None:
        known, loaded = _verified_issuers_of(ca_dir, issuers, loaded, current.timestamp())
        if known is not None and _leaf_fits(chain[0], chain[1], current):
            return True, [chain[0], *(sent[der] for der in known)]
    verified, loaded = _verified_path_of(chain, ca_dir, at, True, loaded)
    path = [chain[0]]
    ders: list[bytes] = []
    for issuer in verified[1:]:
        if not is_proxy(path[-1]):
            break
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, issuer)
        found = sent.get(der)
        path.append(found if found is not None else issuer.to_cryptography())
        ders.append(der)
    proven = len(chain) > 1 and len(path) > 1 and path[1] is chain[1]
    if proven and known is None and current is not None and all(der in sent for der in ders):
        _remember_verified_issuers(ca_dir, issuers, tuple(ders), verified, loaded, current.timestamp())
    return proven, path


# --- issuers of delegated proxies verified once (issue 14) ---
#
# A putProxy's chain is a new leaf over the caller's own chain, the same from one delegation to
# the next (a user delegates again for each submission: ``glite-wms-job-submit -a``). Once OpenSSL
# verified a whole chain whose path went through chain[1], the issuers (chain[1:]) are known to
# form a verified path to a trusted CA, CRLs included, with one proxy below chain[1]. A later
# chain with the same issuers needs only its new leaf checked: what OpenSSL checks of such a
# leaf is done here (signature, validity, extensions), for the plain shapes clients send; any
# other leaf goes through OpenSSL as before, which gives its refusal.


@dataclass(frozen=True)
class _IssuerProof:
    loaded: _CaDir  # the parsed CA directory it was verified against (a changed file: another object)
    path: tuple[bytes, ...]  # DER of the verified path from chain[1] through the end-entity certificate
    until: float  # POSIX seconds: the end of its first certificate, CA or CRL to end, or the TTL
    hashes: tuple[str, ...] = ()  # subject name hashes of the whole verified path (its CAs' files)


#: Issuer chains of delegated proxies verified by OpenSSL, per process; by (CA directory, the
#: DER of chain[1:]). Entries kept in :data:`_verified_issuers`.
VERIFIED_ISSUERS_MAX = 256
#: Longest time (seconds) an issuer chain's verification is reused, as the caller's own chain is
#: (``wmproxy.soap.auth.CACHE_TTL``); a changed CA directory file (a CRL) ends it at once.
VERIFIED_ISSUERS_TTL = 60.0
_verified_issuers: LRUCache[tuple[str, tuple[bytes, ...]], _IssuerProof] = LRUCache(VERIFIED_ISSUERS_MAX)
#: Whole chains :func:`verify_chain` had OpenSSL verify, per process, by (CA directory, the DER of
#: the chain), kept as the issuers are (the proof's ``path`` is empty): a chain proven here is
#: not an issuer proven, so the two are apart.
_verified_chains: LRUCache[tuple[str, tuple[bytes, ...]], _IssuerProof] = LRUCache(VERIFIED_ISSUERS_MAX)
_verified_issuers_lock = threading.Lock()

#: Extensions OpenSSL handles and a delegated proxy's leaf commonly has; a leaf with any other
#: is verified by OpenSSL.
_LEAF_EXTENSIONS = frozenset({
    PROXY_CERT_INFO_OID, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
})
#: Extensions that make OpenSSL's verification depend on the leaf's names or policies (name
#: constraints, policy constraints and mappings): a path holding one is never reused.
_PATH_DEPENDENT = frozenset({
    ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.POLICY_CONSTRAINTS,
    ExtensionOID.POLICY_MAPPINGS, ExtensionOID.INHIBIT_ANY_POLICY,
})
#: Signature algorithms that ``cryptography``'s ``verify_directly_issued_by`` and OpenSSL both
#: check alike: for these, OpenSSL's verification of a leaf by ``chain[1]`` is the same proof, and
#: a leaf over known issuers is checked with ``verify_directly_issued_by``.
SIGNATURES_BOTH_CHECK = frozenset({
    SignatureAlgorithmOID.RSA_WITH_SHA256, SignatureAlgorithmOID.RSA_WITH_SHA384,
    SignatureAlgorithmOID.RSA_WITH_SHA512, SignatureAlgorithmOID.RSASSA_PSS,
    SignatureAlgorithmOID.ECDSA_WITH_SHA256, SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
})
#: SHA-1 signatures (RSA PKCS#1 v1.5, ECDSA), which :func:`sha1_signed_by` verifies (gridsite
#: clients sign with SHA-1; ``verify_directly_issued_by`` refuses it).
SHA1_SIGNATURES = frozenset({SignatureAlgorithmOID.RSA_WITH_SHA1, SignatureAlgorithmOID.ECDSA_WITH_SHA1})


def _current_time(at: datetime | None) -> datetime | None:
    """The clock's time (UTC-aware) when ``at`` is None or within :data:`CURRENT_TIME_TOLERANCE`
    of it (the verification then runs at the clock's time), else None."""
    now = datetime.now(UTC)
    if at is None:
        return now
    return now if abs((now - _utc(at)).total_seconds()) <= CURRENT_TIME_TOLERANCE else None


def _utc(at: datetime) -> datetime:
    """``at`` UTC-aware (a naive ``at`` means UTC)."""
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _verified_issuers_of(ca_dir: str, issuers: tuple[bytes, ...], loaded: _CaDir,
                         now: float) -> tuple[tuple[bytes, ...] | None, _CaDir]:
    """The verified path of the issuer chain ``issuers`` (DER, chain[1:]) kept for ``ca_dir`` as
    it is now parsed (``loaded``), or None (not kept, ended, or the directory changed); and the
    parsed directory to verify against: ``loaded``, or the directory parsed again when a file of
    the kept path's CAs changed (a CRL rewritten in place)."""
    return _proof_of(_verified_issuers, ca_dir, issuers, loaded, now)


def _proof_of(kept: LRUCache[tuple[str, tuple[bytes, ...]], _IssuerProof], ca_dir: str,
              ders: tuple[bytes, ...], loaded: _CaDir, now: float) -> tuple[tuple[bytes, ...] | None, _CaDir]:
    """:func:`_verified_issuers_of` for the proofs ``kept`` (:data:`_verified_issuers` or
    :data:`_verified_chains`) of the chain ``ders``."""
    key = (ca_dir, ders)
    with _verified_issuers_lock:
        proof = kept.get(key)
        if proof is None:
            return None, loaded
        if proof.loaded is not loaded or now >= proof.until:
            del kept[key]
            return None, loaded
    if _path_files_changed(ca_dir, loaded, proof.hashes):
        with _verified_issuers_lock:
            kept.pop(key, None)
        return None, _load_ca_dir(ca_dir, walk=True)
    return proof.path, loaded


def _remember_verified_issuers(ca_dir: str, issuers: tuple[bytes, ...], path: tuple[bytes, ...],
                               verified: list[crypto.X509], loaded: _CaDir, now: float) -> None:
    """Keep the issuers of a chain OpenSSL just verified (``verified``: its whole path, leaf
    first, CA included) against ``loaded`` through chain[1], unless a certificate of the path
    has an extension of :data:`_PATH_DEPENDENT` (or one cryptography cannot read); until the
    first of them or of the CA directory's CRLs ends, and at most :data:`VERIFIED_ISSUERS_TTL`
    seconds."""
    _remember_proof(_verified_issuers, ca_dir, issuers, path, verified, loaded, now, leaf=False)


def _remember_proof(kept: LRUCache[tuple[str, tuple[bytes, ...]], _IssuerProof], ca_dir: str,
                    ders: tuple[bytes, ...], path: tuple[bytes, ...], verified: list[crypto.X509],
                    loaded: _CaDir, now: float, *, leaf: bool) -> None:
    """Keep in ``kept`` the proof that ``ders`` verified (``verified``: the path OpenSSL verified,
    leaf first, CA included) against ``loaded``, as :func:`_remember_verified_issuers` says,
    judged on the certificates of the path, its leaf included only when ``leaf`` (a whole chain
    proven; not an issuer chain, whose leaf is the new proxy of one delegation)."""
    certs = [cert.to_cryptography() for cert in (verified if leaf else verified[1:])]
    try:
        if any(ext.oid in _PATH_DEPENDENT for cert in certs for ext in cert.extensions):
            return
    except ValueError:
        return
    ends = [now + VERIFIED_ISSUERS_TTL, *(cert.not_valid_after_utc.timestamp() for cert in certs)]
    ends += [crl.next_update_utc.timestamp() for crl in loaded.crls if crl.next_update_utc is not None]
    hashes = _name_hashes(verified)
    with _verified_issuers_lock:
        # proofs of this directory made against an older parse of it, or ended, are dropped: each
        # would hold a whole parsed CA directory until its key came again or the LRU pushed it out
        for key in [key for key, proof in kept.items()
                    if key[0] == ca_dir and (proof.loaded is not loaded or proof.until <= now)]:
            del kept[key]
        kept[(ca_dir, ders)] = _IssuerProof(loaded, path, min(ends), hashes)


def _leaf_fits(leaf: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    """Whether what OpenSSL checks of a proxy ``leaf`` signed by ``issuer`` (whose own path is
    verified) holds, for a leaf of the plain shape (else False, and OpenSSL decides): an RFC 3820
    proxy with a readable proxyCertInfo, only :data:`_LEAF_EXTENSIONS`, not a CA, an authority
    key identifier by key only, naming ``issuer``'s subject key identifier if both have one
    (``X509_check_akid``); its subject ``issuer``'s plus one CN; valid at
    ``now``; signed by ``issuer``'s key with an algorithm of :data:`SIGNATURES_BOTH_CHECK` or SHA-1
    (:func:`sha1_signed_by`)."""
    algorithm = leaf.signature_algorithm_oid
    if algorithm not in SIGNATURES_BOTH_CHECK and algorithm not in SHA1_SIGNATURES:
        return False
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return False
    extensions = leaf.extensions
    if any(ext.oid not in _LEAF_EXTENSIONS for ext in extensions):
        return False
    for ext in extensions:
        # an extension of these OIDs is read as its class (cryptography), compared by OID: an
        # isinstance of an ExtensionType is an ABC's check (issue 14)
        oid = ext.oid
        if oid == ExtensionOID.BASIC_CONSTRAINTS and cast(x509.BasicConstraints, ext.value).ca:
            return False
        if oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            value = cast(x509.AuthorityKeyIdentifier, ext.value)
            if value.authority_cert_issuer is not None or value.authority_cert_serial_number is not None:
                return False
            issuer_key = _key_identifier(issuer)  # OpenSSL compares them only when both are there
            if value.key_identifier is not None and issuer_key is not None and value.key_identifier != issuer_key:
                return False
    try:
        if proxy_cert_info(leaf) is None:
            return False
    except ValueError:
        return False
    if not extends_issuer(leaf, issuer):  # else the names are so, the leaf's not read (issue 14)
        rdns = leaf.subject.rdns
        if not rdns or rdns[:-1] != issuer.subject.rdns or len(rdns[-1]) != 1:
            return False
        if next(iter(rdns[-1])).oid != NameOID.COMMON_NAME:
            return False
    if leaf.signature_algorithm_oid in SHA1_SIGNATURES:
        return sha1_signed_by(leaf, issuer)
    try:
        verify_issued_by(leaf, issuer)
    except Exception:  # noqa: BLE001 - any failure (signature, name, key type): OpenSSL decides
        return False
    return True



def _one_signature_algorithm(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names the same signature algorithm (DER ``AlgorithmIdentifier``) inside its
    signed part (``TBSCertificate.signature``) as outside it (``Certificate.signatureAlgorithm``),
    as OpenSSL requires ("certificate signature failure" otherwise). ``cryptography`` names the
    outer one; ``verify_directly_issued_by`` compares them, a SHA-1 check by hand must too.
    Read from the DER's first elements (:func:`_signed_parts`; pyasn1 decodes a whole certificate
    in about 0.7 ms), whose signed part must be ``tbs_certificate_bytes``; anything unexpected
    gives False."""
    parts = _signed_parts(cert)
    return (parts is not None and parts.inner_algorithm == parts.outer_algorithm
            and parts.tbs == cert.tbs_certificate_bytes)


def der_element(data: bytes, position: int) -> tuple[int, int]:
    """Where the content of the DER element at ``position`` of ``data`` starts and where the element
    ends (definite lengths only). Raises ValueError (or IndexError) for what is not one."""
    length = data[position + 1]
    start = position + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("DER element past the end")
    return start, end


def sha1_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``cert`` has a SHA-1 signature (RSA PKCS#1 v1.5, or ECDSA) made with ``issuer``'s
    key, of the same kind, names the same algorithm inside and outside its signed part, and
    names ``issuer``'s subject as its issuer.

    gridsite's clients (htproxyput, the gLite UI's delegation) sign the proxies they delegate
    with SHA-1 to this day (``peers.md`` §6.3) and OpenSSL's verification of a chain accepts it;
    ``cryptography``'s ``verify_directly_issued_by`` refuses SHA-1 outright (``peers.md`` §2.4).
    """
    algorithm = cert.signature_algorithm_oid
    if algorithm not in SHA1_SIGNATURES or cert.issuer != issuer.subject or not _one_signature_algorithm(cert):
        return False
    try:
        public_key = issuer.public_key()
        if algorithm == SignatureAlgorithmOID.RSA_WITH_SHA1 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - gridsite signs SHA-1
        elif algorithm == SignatureAlgorithmOID.ECDSA_WITH_SHA1 and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - as above
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _key_identifier(cert: x509.Certificate) -> bytes | None:
    """The subject key identifier of ``cert``, None when it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def verify_exact_chain(chain: list[x509.Certificate], ca_dir: str, at: datetime | None = None, *,
                       check_crl: bool = True) -> None:
    """:func:`verify_chain`, and ``chain`` must be the path OpenSSL verified, in order: each
    certificate signed by the next, nothing beside the path, up to the end-entity certificate
    at least (the CA certificates after it may be left out, as stored proxies leave them out).

    OpenSSL builds its path from the untrusted certificates by name and ignores the others: a
    chain ``[proxy, Victim's certificate, Attacker's proxy, Attacker's certificate]`` verifies
    through Attacker's certificates while its first non-proxy certificate is Victim's. Here the
    chain's :func:`end_entity` is the path's.

    ``check_crl=False`` leaves revocation out (the trust of the chain, not whether a CA revoked
    it: for a decision a stale or missing CRL must not make, such as whether a job's own proxy
    copy has ended).

    Raises:
        ProxyVerificationError: as :func:`verify_chain`, or the chain is not the verified path.
    """
    path = _verified_path(chain, ca_dir, at, check_crl)
    ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in path]
    if len(chain) > len(ders) or any(certificate_der(c) != der for c, der in zip(chain, ders, strict=False)):
        raise ProxyVerificationError("the certificates are not the verified path, in order (another or an "
                                     "extra certificate)")
    if all(is_proxy(c) for c in chain):
        raise ProxyVerificationError("the certificate chain stops before its end-entity certificate")


def _verified_path(chain: list[x509.Certificate], ca_dir: str, at: datetime | None,
                   check_crl: bool = True, *, loaded: _CaDir | None = None) -> list[crypto.X509]:
    """The verification of :func:`verify_chain` (against ``loaded``, the parsed ``ca_dir``, when
    given); returns the path OpenSSL verified, leaf first."""
    return _verified_path_of(chain, ca_dir, at, check_crl, loaded)[0]


def _verified_path_of(chain: list[x509.Certificate], ca_dir: str, at: datetime | None, check_crl: bool,
                      loaded: _CaDir | None) -> tuple[list[crypto.X509], _CaDir]:
    """:func:`_verified_path`, and the parsed CA directory it was verified against: ``loaded``
    (or the directory as parsed) while the files of the path's CAs are unchanged; else, and when
    the verification fails, the directory parsed again after a ``stat`` of every file
    (:data:`CA_FILES_RESTAT`), verified against again if it changed."""
    if not chain:
        raise ProxyVerificationError("empty certificate chain")
    if loaded is None:
        loaded = _load_ca_dir(ca_dir)
    try:
        path = _trusted_path(chain, ca_dir, loaded, at, check_crl)
    except ProxyVerificationError:
        fresh = _load_ca_dir(ca_dir, walk=True)
        if fresh is loaded:
            raise
        return _trusted_path(chain, ca_dir, fresh, at, check_crl), fresh
    if _path_files_changed(ca_dir, loaded, _name_hashes(path)):
        fresh = _load_ca_dir(ca_dir, walk=True)
        return _trusted_path(chain, ca_dir, fresh, at, check_crl), fresh
    return path, loaded


def _trusted_path(chain: list[x509.Certificate], ca_dir: str, loaded: _CaDir, at: datetime | None,
                  check_crl: bool) -> list[crypto.X509]:
    """:func:`_openssl_path`, and every certificate of the path a CA issued (the end-entity
    certificate, an intermediate CA; not a proxy, not the self-signed root) within the namespace
    policy of its issuer (:mod:`wmproxy.security.ca_policy`, ``loaded``'s policy files).

    Raises:
        ProxyVerificationError: as :func:`_openssl_path`; ca_policy.CaPolicyError for a
            certificate outside its issuer's namespace.
    """
    path = _openssl_path(chain, ca_dir, loaded, at, check_crl)
    _check_namespaces(path, chain, loaded)
    return path


def _check_namespaces(path: list[crypto.X509], chain: list[x509.Certificate], loaded: _CaDir) -> None:
    """:func:`_trusted_path`'s policy check of the verified ``path`` (leaf first) of ``chain``,
    from the CA certificates down to the end-entity certificate (the proxies below it are
    issued by it, not by a CA): a certificate of ``chain`` is read as the object sent, one
    of the CA directory converted."""
    if len(path) < 2 or ca_policy.mode_of(loaded.policies.ca_dir) == "ignore":
        return
    hashes = _policy_names(path[1:], loaded)  # the issuer of path[position] is path[position + 1]
    sent = {certificate_der(cert): cert for cert in chain}
    for position in range(len(path) - 2, -1, -1):  # the last one is the trust anchor
        issued = path[position]
        der = certificate_der(chain[0]) if position == 0 else crypto.dump_certificate(crypto.FILETYPE_ASN1, issued)
        cert = chain[0] if position == 0 else sent.get(der)  # OpenSSL's leaf is the chain's
        if cert is None:  # a CA certificate of the directory
            cert = loaded.converted.get(der) or loaded.converted.setdefault(der, issued.to_cryptography())
        if is_proxy(cert):
            return
        loaded.policies.check(cert, hashes[position:], der)


def _openssl_path(chain: list[x509.Certificate], ca_dir: str, loaded: _CaDir, at: datetime | None,
                  check_crl: bool) -> list[crypto.X509]:
    """OpenSSL's verification of ``chain`` against ``loaded``; the path it verified, leaf first."""
    store = _store(ca_dir, loaded, at, check_crl)
    leaf = _openssl_cert(chain[0])
    untrusted = [_openssl_cert(c) for c in chain[1:]]
    try:
        return crypto.X509StoreContext(store, leaf, untrusted).get_verified_chain()
    except crypto.X509StoreContextError as exc:
        depth = ""
        if exc.certificate is not None:
            depth = f" ({slash_dn(exc.certificate.to_cryptography().subject)})"
        raise ProxyVerificationError(f"{exc}{depth}") from None
