"""Server side of gridsite delegation (delegation-1/-2, WMProxy getProxyReq + putProxy).

getProxyReq: :func:`new_proxy_request` makes the pending key and the CSR.
putProxy: :func:`accept_delegated_proxy` checks the signed chain against the pending
key, the caller and the CA directory, and assembles the stored credential
(``wmproxy-behaviour.md`` §5).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import LRUCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from wmproxy.errors import InvalidDelegationIdError, LimitedProxyError, ProxyError, ProxyVerificationError
from wmproxy.security.chain import (
    NO_END_ENTITY,
    SHA1_SIGNATURES,
    SIGNATURES_BOTH_CHECK,
    canonical_base64,
    chain_facts,
    chain_pem,
    check_proxy_policies,
    der_element,
    extends_issuer,
    forget_certificate,
    is_limited_proxy,
    is_proxy,
    load_pem_chain,
    sha1_signed_by,
    verify_delegated_chain,
    verify_issued_by,
)
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import key_pem as _key_pem
from wmproxy.security.proxy import utc_now
from wmproxy.security.voms import verified_fqans
from wmproxy.text import log_text, xml_text

CLOCK_SKEW = timedelta(seconds=5)
#: Proxy levels a delegated chain may have by default (``[limits] max_proxy_chain_depth``).
MAX_PROXY_CHAIN_DEPTH = 10
#: Longest delegation id, in UTF-8 bytes: the original kept each delegation in a directory named
#: by its id (``proxycache/<DN>/<id>/``, §5.1), so an id longer than a file name may be
#: (NAME_MAX, 255 bytes on Linux file systems) never worked there. The store's columns hold
#: 255 characters.
MAX_DELEGATION_ID_BYTES = 255
_RSA_KEY_PEM = b"-----BEGIN RSA PRIVATE KEY-----\n"
_RSA_KEY_END = b"-----END RSA PRIVATE KEY-----\n"
#: Signature algorithms ``verify_directly_issued_by`` verifies (it refuses SHA-1 and MD5 ones).
_SIGNATURES_VERIFIED = SIGNATURES_BOTH_CHECK | {
    SignatureAlgorithmOID.RSA_WITH_SHA224, SignatureAlgorithmOID.ECDSA_WITH_SHA224,
    SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448,
    SignatureAlgorithmOID.DSA_WITH_SHA224, SignatureAlgorithmOID.DSA_WITH_SHA256,
}

#: Signature algorithms whose check by chain[1]'s key a path proven by
#: :func:`~wmproxy.security.chain.verify_delegated_chain` makes as :func:`_check_signature` does.
_SIGNATURES_PROVEN = SIGNATURES_BOTH_CHECK | SHA1_SIGNATURES


@dataclass(frozen=True)
class DelegatedProxy:
    """A proxy accepted by putProxy.

    Attributes:
        pem: grid proxy file layout: leaf cert, unencrypted private key, issuer chain.
        dn: caller identity (slash DN of the end-entity cert).
        not_before, not_after: validity of the stored chain (the path OpenSSL verified, from the
            leaf through the user certificate, as in ``pem``), UTC-aware: the latest notBefore and
            the earliest notAfter. OpenSSL does not require a proxy to end before its issuer, so
            a leaf may outlive the user certificate; the proxy is usable only while all are valid.
        fqans: the FQANs of the chain's VOMS ACs that verified at putProxy time (first =
            primary; :func:`wmproxy.security.voms.verified_fqans`).
    """

    pem: bytes
    dn: str
    not_before: datetime
    not_after: datetime
    fqans: tuple[str, ...] = ()


def new_proxy_request(bits: int = 2048) -> tuple[bytes, bytes]:
    """Make the pending key and CSR of getProxyReq / getNewProxyReq / renewProxyReq.

    Args:
        bits: RSA key size.

    Returns ``(private key PEM, CSR PEM)``; the CSR (``-----BEGIN CERTIFICATE
    REQUEST-----``) has subject ``CN=proxy`` and a SHA-256 signature. Clients ignore the
    subject: the proxy subject derives from their own DN.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")]))
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def _refuse(message: str) -> ProxyVerificationError:
    return ProxyVerificationError(message)


def accept_delegated_proxy(
    key_pem: bytes, proxy_pem: bytes, caller_dn: str, ca_dir: str, now: datetime | None = None, *,
    vomsdir: str | None = None, max_depth: int = MAX_PROXY_CHAIN_DEPTH, host_names: Collection[str] = (),
) -> DelegatedProxy:
    """Check what a client sent to putProxy and build the credential to store.

    Args:
        key_pem: the pending private key made by :func:`new_proxy_request`.
        proxy_pem: PEM chain, leaf (the new proxy) first, then the signer's chain.
        caller_dn: slash DN of the authenticated caller (proxy CNs stripped).
        ca_dir: grid CA directory for :func:`~wmproxy.security.chain.verify_chain`.
        now: UTC time of the check (default now).
        vomsdir: VOMS trust anchors; the stored FQANs are those of the ACs that verify
            against it and ``ca_dir`` (none without it).
        max_depth: most proxy levels the chain may have, the new proxy included.
        host_names: the service's names, which an AC with targets must name to verify
            (:func:`~wmproxy.security.voms.service_host_names`).

    Checks, in order: the leaf certifies the pending key; it is an RFC 3820 proxy
    (gridsite ``htproxyput`` sends proxies without proxyCertInfo, refused here); it is
    signed by the next cert and its subject is that cert's plus one CN; the chain has at
    most ``max_depth`` proxy levels; no certificate of it is a proxy of another RFC 3820
    policy language than inheritAll and the Globus limited proxy (an independent proxy, or a
    language not understood: :func:`~wmproxy.security.chain.check_proxy_policies`); none is a
    limited proxy (a proxy signed by a limited proxy is limited, and limited proxies grant data
    access only); the
    chain's identity is the caller; it is within its validity period (5 s clock skew); the
    whole chain verifies against ``ca_dir`` (CRLs included); the end-entity certificate of the
    path OpenSSL verified is the caller's too.

    What is stored, and its validity, is that verified path from the leaf through the user
    certificate: a certificate sent beside it (an old copy of a CA or user certificate, a
    stray proxy) is not stored, handed on to jobs or counted in the validity, and the CA
    certificates are left to the CA directory (as in a ``grid-proxy-init`` proxy file).

    Raises:
        ProxyVerificationError: any check fails; the message says which.
        ProxyPolicyError: a proxy of another policy language (a ProxyVerificationError naming it).
        LimitedProxyError: the chain holds a limited proxy (AuthorizationFault 1207).
    """
    now = utc_now(now)
    try:
        chain = load_pem_chain(proxy_pem, new_leaf=True)
    except ProxyError as exc:
        raise _refuse(f"the delegated credential is unreadable: {exc.args[0]}") from None
    try:
        return _accept_chain(chain, key_pem, caller_dn, ca_dir, now, vomsdir, max_depth, host_names)
    finally:  # the new proxy is used once: its encodings would only push issuers out of the caches
        forget_certificate(chain[0])


def _accept_chain(chain: list[x509.Certificate], key_pem: bytes, caller_dn: str, ca_dir: str, now: datetime,
                  vomsdir: str | None, max_depth: int, host_names: Collection[str]) -> DelegatedProxy:
    """:func:`accept_delegated_proxy` after the chain's parse."""
    try:
        # Our own key, made by new_proxy_request and opened from its authenticated seal:
        # OpenSSL's RSA consistency check (tens of ms per 2048-bit key) would only re-prove that.
        key = _pending_key(key_pem)
    except (ValueError, TypeError) as exc:
        raise _refuse(f"the pending delegation key is unreadable: {exc}") from None
    leaf = chain[0]
    # Keys compared as keys (OpenSSL's EVP_PKEY_eq: same type, same public values), not as their
    # SubjectPublicKeyInfo encodings made for the purpose (issue 14: two encodings, 7 us): the
    # pending key is RSA, so a leaf's key of another type is not equal.
    if leaf.public_key() != key.public_key():
        raise _refuse("the delegated proxy does not match the proxy request key")
    if not is_proxy(leaf):
        raise _refuse("the delegated credential is not an RFC 3820 proxy")
    if len(chain) < 2:
        raise _refuse("the delegated proxy comes without its issuer certificate")
    # The leaf's signature by chain[1] is checked first of what follows. OpenSSL's verification
    # proves it too when its path goes through chain[1] (issue 14: about 60 us of a putProxy), so
    # it runs on its own only when that is not known: when a later check fails (its error is
    # then raised first, as before), or OpenSSL took another issuer or another algorithm. A SHA-1
    # signature (gridsite's clients) counts as proven too: OpenSSL checks it with the key, and one
    # algorithm inside and outside the signed part, as sha1_signed_by does (over known issuers
    # sha1_signed_by itself made it, chain._leaf_fits). OpenSSL matches the leaf's issuer to
    # chain[1]'s subject case-folded and spaces collapsed, the two checks exactly: so the
    # names must be equal here too.
    try:
        dn, user = _check_chain(chain, leaf, caller_dn, now, max_depth)
        proven, stored = verify_delegated_chain(chain, ca_dir, at=now)
        _check_path_identity(stored, user, dn)
        not_before, not_after = _chain_validity(stored, now)
    except Exception:
        _check_signature(leaf, chain[1])
        raise
    if not (proven and leaf.signature_algorithm_oid in _SIGNATURES_PROVEN
            and (extends_issuer(leaf, chain[1]) or leaf.issuer == chain[1].subject)):
        _check_signature(leaf, chain[1])
    try:
        fqans = verified_fqans(stored, vomsdir=vomsdir, ca_dir=ca_dir, at=now,  # what is stored: the path
                               host_names=host_names)
    except ProxyError as exc:
        raise _refuse(str(exc.args[0])) from None
    # The pending key as made by new_proxy_request (traditional RSA PEM) is stored as it is:
    # serialising it again gives the same bytes.
    stored_key = key_pem if key_pem.startswith(_RSA_KEY_PEM) else _key_pem(key)
    return DelegatedProxy(
        pem=chain_pem([leaf]) + stored_key + chain_pem(stored[1:]),
        dn=dn,
        not_before=not_before,
        not_after=not_after,
        fqans=fqans,
    )


def _pending_key(key_pem: bytes) -> PrivateKeyTypes:
    """``load_pem_private_key(key_pem)`` (RSA consistency check skipped, as the caller says why):
    the same key, or the same error.

    The key :func:`new_proxy_request` makes, one ``RSA PRIVATE KEY`` block (PKCS#1) of canonical
    base64 lines, is decoded here and read as DER: cryptography's PEM reader took about 150,000
    instructions of a putProxy to find and decode the block, a fifth of them to read its DER
    (issue 14). Any other text, or a DER that is not a PKCS#1 RSA key, goes to the PEM reader.
    """
    der = _pkcs1_der(key_pem)
    if der is not None:
        try:
            key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            pass  # the PEM reader raises its own error
        else:
            if isinstance(key, rsa.RSAPrivateKey):
                return key
    return serialization.load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)


def _pkcs1_der(key_pem: bytes) -> bytes | None:
    """The DER of ``key_pem`` when it is exactly one ``RSA PRIVATE KEY`` block without headers,
    its base64 canonical in non-empty ``\n``-ended lines, and the DER a SEQUENCE whose first two
    elements are INTEGERs (PKCS#1's version and modulus: not a PKCS#8 ``PrivateKeyInfo``, whose
    second element is a SEQUENCE, which the DER reader would take and the PEM reader of an ``RSA
    PRIVATE KEY`` block would refuse); else None."""
    if not key_pem.startswith(_RSA_KEY_PEM) or not key_pem.endswith(_RSA_KEY_END):
        return None
    lines = key_pem[len(_RSA_KEY_PEM):-len(_RSA_KEY_END)].split(b"\n")
    if len(lines) < 2 or lines[-1] != b"" or not all(lines[:-1]):
        return None
    der = canonical_base64(b"".join(lines[:-1]))
    if der is None or der[:1] != b"\x30":
        return None
    try:
        start, end = der_element(der, 0)
        if end != len(der) or der[start:start + 1] != b"\x02":
            return None
        second = der_element(der, start)[1]
    except (IndexError, ValueError):
        return None
    return der if der[second:second + 1] == b"\x02" else None


def _check_chain(chain: list[x509.Certificate], leaf: x509.Certificate, caller_dn: str, now: datetime,
                 max_depth: int) -> tuple[str, x509.Certificate]:
    """The checks of :func:`accept_delegated_proxy` after the leaf's signature and before the CA
    directory's verification, in order; returns the chain's identity DN and its end-entity
    certificate."""
    _check_subject(leaf, chain[1])
    # The leaf is a proxy (checked before): what the chain's depth, limited proxies and end-entity
    # certificate are follows from its issuers', which are found once per process (chain_facts).
    issuers = chain_facts(chain[1:])
    depth = 1 + issuers.depth
    if depth > max_depth:
        raise _refuse(f"the delegated proxy chain is too long: {depth} proxy levels, at most {max_depth} allowed")
    if is_limited_proxy(leaf) or issuers.limited:
        # a proxy of another language than inheritAll counts as limited: refused as what it is
        check_proxy_policies(chain)
        raise LimitedProxyError(
            "Authorization error: a limited proxy cannot be delegated: the delegated chain holds a limited "
            "proxy, which grants data access only"
        )
    user, dn = issuers.user, issuers.dn
    if user is None or dn is None:
        raise _refuse(NO_END_ENTITY)
    if dn != caller_dn:
        if _is_legacy_proxy_of(user, caller_dn):
            raise _refuse("a legacy (pre-RFC 3820) proxy cannot sign a delegation")
        raise _refuse("delegated proxy does not belong to the caller")
    if leaf.not_valid_before_utc > now + CLOCK_SKEW:
        raise _refuse("proxy validity starting time in the future; please check client date/time")
    if leaf.not_valid_after_utc <= now:
        raise _refuse("the delegated proxy has expired")
    return dn, user


#: The last CN of a legacy (Globus GT2, ``grid-proxy-init -old``) proxy's subject.
_LEGACY_PROXY_CNS = frozenset({"proxy", "limited proxy"})


def _is_legacy_proxy_of(cert: x509.Certificate, caller_dn: str) -> bool:
    """True when ``cert`` (no proxyCertInfo, so taken for the end-entity certificate) is a legacy
    GT2 proxy of the caller: its subject is its issuer's plus ``CN=proxy`` (or ``CN=limited
    proxy``) and that issuer is the caller. Names only: it picks the message of a refusal."""
    rdns = cert.subject.rdns
    if len(rdns) < 2 or rdns[:-1] != cert.issuer.rdns or len(rdns[-1]) != 1:
        return False
    last = next(iter(rdns[-1]))
    return (last.oid == NameOID.COMMON_NAME and last.value in _LEGACY_PROXY_CNS
            and slash_dn(cert.issuer) == caller_dn)


def _check_path_identity(path: list[x509.Certificate], user: x509.Certificate, dn: str) -> None:
    """The end-entity certificate of the verified ``path`` is ``user``, the first of the sent
    chain (whose identity ``dn`` is the caller's), or one of the same identity: else the proxy
    is another user's, sent with the caller's certificate before its own user certificate."""
    last = path[-1]
    if last is user:
        return
    if is_proxy(last) or slash_dn(last.subject) != dn:
        raise _refuse("delegated proxy does not belong to the caller")


def _chain_validity(stored: list[x509.Certificate], now: datetime) -> tuple[datetime, datetime]:
    """The validity of the chain stored for a delegated proxy (the latest notBefore, the
    earliest notAfter), checked at ``now`` as the leaf's is (the 5 s clock skew for a start)."""
    not_before = max(c.not_valid_before_utc for c in stored)
    not_after = min(c.not_valid_after_utc for c in stored)
    if not_before > now + CLOCK_SKEW:
        raise _refuse("proxy validity starting time in the future; please check client date/time")
    if not_after <= now:
        raise _refuse("the delegated proxy has expired")
    return not_before, not_after


def _check_signature(leaf: x509.Certificate, issuer: x509.Certificate) -> None:
    """Refuse ``leaf`` unless ``issuer`` (the next certificate sent) signed it.

    SHA-1 signatures are verified, not refused: gridsite's clients, htproxyput and the gLite
    UI's delegation (``GRSTx509MakeProxyCert``), sign the proxies they delegate with SHA-1 by
    default to this day (``peers.md`` §6.3; Debian gridsite-clients 3.0.0), and OpenSSL's
    verification of the chain (``X509_verify_cert`` without a TLS security level) accepts them.
    ``cryptography``'s ``verify_directly_issued_by`` refuses SHA-1 outright (``peers.md`` §2.4),
    so these are checked with the issuer's public key directly (RSA PKCS#1 v1.5 or ECDSA, as the
    signature algorithm says). Such a proxy stays usable by the service (MyProxy renewal
    authenticates with the host certificate); a job presenting it as a TLS client certificate
    under OpenSSL 3's default security level is refused there ("ca md too weak").

    Other algorithms that library refuses (MD5, the 512-bit gridsite's own) are refused with
    their name rather than as a wrong signer.

    Raises:
        ProxyVerificationError: "the delegated proxy is not signed by the next certificate of
            the chain"; "the delegated proxy is signed with <algorithm>, which is not accepted;
            sign it with SHA-256 (the CSR's own algorithm)".
    """
    algorithm = leaf.signature_algorithm_oid
    if algorithm not in SHA1_SIGNATURES:
        if algorithm not in _SIGNATURES_VERIFIED:
            raise _refuse(f"the delegated proxy is signed with {_algorithm_name(leaf)}, which is not accepted; "
                          "sign it with SHA-256 (the CSR's own algorithm)")
        try:
            verify_issued_by(leaf, issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise _refuse("the delegated proxy is not signed by the next certificate of the chain") from None
        return
    if not sha1_signed_by(leaf, issuer):
        raise _refuse("the delegated proxy is not signed by the next certificate of the chain")


def _algorithm_name(cert: x509.Certificate) -> str:
    """The signature algorithm of ``cert`` as a message names it (``md5WithRSAEncryption``...)."""
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", "") or ""
    return name if name and not name.startswith("Unknown") else oid.dotted_string


def _check_subject(leaf: x509.Certificate, issuer: x509.Certificate) -> None:
    # The DER shows the leaf's subject the issuer's plus one CN of letters and digits (issue 14:
    # the leaf's names are then not read): only the issuer's values are left to look at.
    if extends_issuer(leaf, issuer) and _safe_subject(issuer):
        return
    rdns = leaf.subject.rdns
    last = rdns[-1] if rdns else None
    if (
        last is None
        or rdns[:-1] != issuer.subject.rdns
        or len(last) != 1
        or next(iter(last)).oid != NameOID.COMMON_NAME
    ):
        raise _refuse("the delegated proxy subject is not its issuer's subject plus one CN")
    # A name the proxy info answers and the logs quote: a control character (U+0001, a line end)
    # or another character XML cannot carry has no place in it.
    if any(_unsafe(str(attribute.value)) for attribute in leaf.subject):
        shown = log_text(xml_text(slash_dn(leaf.subject)))
        raise _refuse(f"the delegated proxy subject holds a control character: {shown}")


#: :func:`_safe_subject`'s answers, per process, by the certificate's id (the entry holds the
#: certificate, so its id is not reused while it is kept). Entries kept in :data:`_safe_subjects`.
SAFE_SUBJECTS_MAX = 256
_safe_subjects: LRUCache[int, tuple[x509.Certificate, bool]] = LRUCache(SAFE_SUBJECTS_MAX)
_safe_subjects_lock = threading.Lock()


def _safe_subject(cert: x509.Certificate) -> bool:
    """True when no value of ``cert``'s subject holds a character :func:`_unsafe` finds; found
    once per process for the same certificate object (immutable): a putProxy's issuer is the
    caller's chain[1], kept parsed from one delegation to the next (issue 14: its names' Python
    objects and two escapes per value, about 13 us of each putProxy)."""
    with _safe_subjects_lock:
        found = _safe_subjects.get(id(cert))
    if found is not None and found[0] is cert:
        return found[1]
    answer = not any(_unsafe(str(attribute.value)) for attribute in cert.subject)
    with _safe_subjects_lock:
        _safe_subjects[id(cert)] = (cert, answer)
    return answer


def _unsafe(value: str) -> bool:
    """True when ``value`` holds a character :func:`xml_text` or :func:`log_text` escapes."""
    return log_text(value) != value or xml_text(value) != value


def default_delegation_id(dn: str, fqans: Sequence[str] = ()) -> str:
    """The delegation id used when the client sends an empty one.

    16 lowercase hex chars: the first 8 bytes of SHA-1 over the UTF-8 of the DN followed
    by the FQANs (concatenated, in order). This mirrors the shape of GridSite's
    ``GRSTx509MakeDelegationID`` (SHA-1 over the credential strings, first 8 bytes in
    hex) and FTS's ``generate_delegation_id``; it is stable per (DN, FQANs).
    """
    digest = hashlib.sha1("".join([dn, *fqans]).encode()).digest()  # noqa: S324 - an id, not security
    return digest[:8].hex()


def check_delegation_id(delegation_id: str) -> str:
    """Return ``delegation_id`` if it can name a stored credential (§5.1).

    Args:
        delegation_id: the id the client sent, not empty: callers replace an empty id by
            :func:`default_delegation_id` *before* calling this.

    Allowed, as the original allowed them: any printable characters but ``/`` (``user@host``,
    ``a:b``, ``x+y``, ``a b``...), at most :data:`MAX_DELEGATION_ID_BYTES` bytes of UTF-8.
    Refused besides: control characters (a line end, U+0085, U+2028), other characters XML 1.0
    cannot carry (the id is answered in SOAP replies and quoted in logs), and ``.`` / ``..``
    (the original's directory names of themselves and their parent). The id never names a file
    here (the store keys delegations by (DN, id)).

    Raises:
        InvalidDelegationIdError: "invalid delegation id" (1215), e.g. for ids with ``/``.
    """
    if (
        not isinstance(delegation_id, str)
        or not delegation_id
        or "/" in delegation_id
        or delegation_id in (".", "..")
        or not delegation_id.isprintable()
        or _unsafe(delegation_id)
        or len(delegation_id.encode()) > MAX_DELEGATION_ID_BYTES
    ):
        raise InvalidDelegationIdError("invalid delegation id")
    return delegation_id
