"""PEM certificate chains: parsing, RFC 3820 proxy tests, identity DN and verification.

Chains are lists of ``cryptography`` certificates, **leaf first** (proxy, its issuer
proxies, the user's end-entity certificate; the CA is optional). Verification uses
pyOpenSSL's ``X509Store`` because ``cryptography.x509.verification`` refuses the
critical proxyCertInfo extension (``peers.md`` §0, §2.4).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from wmproxy.errors import ProxyError, ProxyVerificationError
from wmproxy.security.dn import slash_dn
from wmproxy.security.pci import LIMITED_PROXY_OID, PROXY_CERT_INFO_OID, proxy_cert_info

_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_CA_FILE_RE = re.compile(r"^[0-9a-f]{8}\.(r?)\d+$")


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Parse every ``CERTIFICATE`` PEM block of ``data``, in file order.

    Other blocks (private keys of a grid proxy file) and text between blocks are ignored.

    Raises:
        ProxyError: no certificate block, or a block that is not a valid certificate.
    """
    blocks = _CERT_RE.findall(data)
    if not blocks:
        raise ProxyError("no PEM certificate found")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise ProxyError(f"unreadable PEM certificate: {exc}") from None


def chain_pem(chain: list[x509.Certificate]) -> bytes:
    """The PEM concatenation of ``chain``, in order."""
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in chain)


def der_chain_to_pem(ders: list[bytes]) -> bytes:
    """Turn DER certificates (e.g. ``SSLSocket.get_verified_chain()``) into one PEM chain.

    Raises:
        ProxyError: a DER blob is not a certificate.
    """
    try:
        return chain_pem([x509.load_der_x509_certificate(der) for der in ders])
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

    A malformed proxyCertInfo counts as limited: what it grants cannot be known, so the
    proxy gets the least (the TLS layer refuses such certificates anyway).
    """
    try:
        info = proxy_cert_info(cert)
    except ValueError:
        return True
    if info is not None:
        return info.policy_language == LIMITED_PROXY_OID
    return _legacy_proxy_cn(cert) == LEGACY_LIMITED_CN


def has_limited_proxy(chain: list[x509.Certificate]) -> bool:
    """True when a certificate of the leaf-first ``chain`` is a limited proxy
    (:func:`is_limited_proxy`). A proxy signed by a limited proxy is limited too
    (RFC 3820 §3.8: a proxy never has more rights than its issuer)."""
    return any(is_limited_proxy(cert) for cert in chain)


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
    raise ProxyError("the certificate chain has no end-entity certificate")


def identity_dn(chain: list[x509.Certificate]) -> str:
    """Slash DN of :func:`end_entity` (proxy CNs not included). Raises ProxyError like it."""
    return slash_dn(end_entity(chain).subject)


# --- verification against a grid CA directory ---


# (directory mtime, ((file name, mtime, size), ...)): a CA directory unchanged since it was parsed
_Stamp = tuple[int, tuple[tuple[str, int, int], ...]]


@dataclass(frozen=True)
class _CaDir:
    certs: tuple[crypto.X509, ...]
    crls: tuple[x509.CertificateRevocationList, ...]


_cache: dict[str, tuple[_Stamp, _CaDir]] = {}
_cache_lock = threading.Lock()


def _signature(ca_dir: str, names: list[str]) -> _Stamp:
    stamps = []
    for name in names:
        try:
            st = os.stat(os.path.join(ca_dir, name))
        except FileNotFoundError:
            continue
        stamps.append((name, st.st_mtime_ns, st.st_size))
    return (os.stat(ca_dir).st_mtime_ns, tuple(stamps))


def _load_ca_dir(ca_dir: str) -> _CaDir:
    """Parsed CA certificates (``<hash>.N``) and CRLs (``<hash>.rN``) of ``ca_dir``.

    Cached per path and (directory mtime, per-file mtime and size), so a rewritten CRL
    or a new CA is picked up on the next call while repeated calls only ``stat``.
    Unreadable files are skipped (as OpenSSL's hash-dir lookup does).
    """
    try:
        names = sorted(n for n in os.listdir(ca_dir) if _CA_FILE_RE.match(n))
    except OSError as exc:
        raise ProxyVerificationError(f"cannot read CA directory {ca_dir}: {exc}") from None
    key = _signature(ca_dir, names)
    with _cache_lock:
        hit = _cache.get(ca_dir)
        if hit and hit[0] == key:
            return hit[1]
    certs: list[crypto.X509] = []
    crls: list[x509.CertificateRevocationList] = []
    for name in names:
        try:
            with open(os.path.join(ca_dir, name), "rb") as fh:
                data = fh.read()
            if name.rsplit(".", 1)[1].startswith("r"):  # <hash>.rN (names matched _CA_FILE_RE)
                crls.append(x509.load_pem_x509_crl(data))
            else:
                certs.extend(crypto.X509.from_cryptography(c) for c in load_pem_chain(data))
        except (OSError, ValueError, ProxyError):
            continue
    loaded = _CaDir(tuple(certs), tuple(crls))
    with _cache_lock:
        _cache[ca_dir] = (key, loaded)
    return loaded


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

    Raises:
        ProxyVerificationError: the OpenSSL reason, e.g. "certificate revoked",
            "certificate has expired", "unable to get local issuer certificate",
            "unable to get certificate CRL"; or an empty chain / unreadable CA dir.
    """
    if not chain:
        raise ProxyVerificationError("empty certificate chain")
    loaded = _load_ca_dir(ca_dir)
    store = crypto.X509Store()
    if at is not None:
        if at.tzinfo is not None:
            at = at.astimezone(UTC)
        store.set_time(at)  # before set_flags: set_time replaces the store's parameters
    store.set_flags(
        crypto.X509StoreFlags.ALLOW_PROXY_CERTS
        | crypto.X509StoreFlags.CRL_CHECK
        | crypto.X509StoreFlags.CRL_CHECK_ALL
    )
    for cert in loaded.certs:
        store.add_cert(cert)
    for crl in loaded.crls:
        store.add_crl(crl)
    leaf = crypto.X509.from_cryptography(chain[0])
    untrusted = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    try:
        crypto.X509StoreContext(store, leaf, untrusted).verify_certificate()
    except crypto.X509StoreContextError as exc:
        depth = ""
        if exc.certificate is not None:
            depth = f" ({slash_dn(exc.certificate.to_cryptography().subject)})"
        raise ProxyVerificationError(f"{exc}{depth}") from None
