"""RFC 3820 proxy credentials: loading, writing, making and signing proxies.

Grid proxy file layout (``X509_USER_PROXY``, stored delegated credentials): the proxy
certificate, its unencrypted private key, then the issuer chain without the CA.
What a client sends to putProxy is the same without the key.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from wmproxy.errors import ProxyError
from wmproxy.security.chain import chain_pem, load_pem_chain
from wmproxy.security.pci import INHERIT_ALL_OID, LIMITED_PROXY_OID, ProxyCertInfo, pci_extension

_KEY_RE = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n.+?\r?\n-----END \1-----", re.DOTALL
)
BACKDATE = timedelta(minutes=5)
_ISSUER_KEY_TYPES = (
    rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dsa.DSAPrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey,
)


@dataclass
class Credential:
    """A certificate, its private key (None when the key is elsewhere) and its issuer chain.

    ``chain`` holds the certificates after ``cert`` (proxies, the user certificate), not the CA.
    """

    cert: x509.Certificate
    key: PrivateKeyTypes | None
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def full_chain(self) -> list[x509.Certificate]:
        """``[cert, *chain]``, leaf first."""
        return [self.cert, *self.chain]


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (naive means UTC); the current time when None."""
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def load_credential(
    source: str | os.PathLike[str] | bytes, key_source: str | os.PathLike[str] | bytes | None = None,
    *, password: bytes | None = None,
) -> Credential:
    """Load a credential from PEM.

    Args:
        source: a grid proxy file (cert, key, chain), a file with cert + key, or a
            certificate file; a path or the PEM bytes themselves.
        key_source: separate key file or bytes (``usercert.pem`` + ``userkey.pem``).
        password: passphrase of an encrypted key.

    The first certificate is ``cert``, the others form ``chain``; without any key block
    ``key`` is None.

    Raises:
        ProxyError: unreadable file, no certificate, bad key or key not matching the cert.
    """
    data = _read(source)
    certs = load_pem_chain(data)
    key_data = _read(key_source) if key_source is not None else data
    match = _KEY_RE.search(key_data)
    key = None
    if match:
        try:
            # OpenSSL's RSA consistency check (primality of p and q: tens of ms a key) skipped:
            # every key loaded here is the caller's own or one the service made (the user's proxy
            # or certificate key in the CLI, a stored or renewed proxy in the renewal worker),
            # never a peer's, and a key not matching its certificate is still refused below
            key = serialization.load_pem_private_key(match.group(0), password=password,
                                                     unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError) as exc:
            raise ProxyError(f"unreadable private key: {exc}") from None
        if public_key_der(key.public_key()) != public_key_der(certs[0].public_key()):
            raise ProxyError("the private key does not match the certificate")
    elif key_source is not None:
        raise ProxyError("no private key found")
    return Credential(certs[0], key, certs[1:])


def _read(source: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ProxyError(f"cannot read credential {source}: {exc.strerror}") from None


def public_key_der(public_key: PublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo of a public key, for comparing keys."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PEM of a private key: traditional ``RSA PRIVATE KEY`` for RSA (what Globus
    and VOMS tools write), PKCS#8 otherwise."""
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def credential_pem(cred: Credential) -> bytes:
    """Grid proxy file layout: cert PEM, unencrypted key PEM (if any), then the chain PEMs."""
    key = key_pem(cred.key) if cred.key is not None else b""
    return chain_pem([cred.cert]) + key + chain_pem(cred.chain)


def make_proxy(
    issuer: Credential,
    *,
    lifetime: int,
    public_key: CertificatePublicKeyTypes | None = None,
    key_bits: int = 2048,
    limited: bool = False,
    path_len: int | None = None,
    now: datetime | None = None,
    extensions: Sequence[x509.ExtensionType] = (),
) -> Credential:
    """Make an RFC 3820 impersonation proxy signed by ``issuer`` (a user cert or a proxy).

    Args:
        issuer: credential with a private key.
        lifetime: seconds from ``now``; capped at the issuer's (and its chain's) notAfter.
        public_key: certify this key (delegation: the key of a server's CSR); the result
            then has ``key=None``. Default: a fresh RSA key of ``key_bits``.
        limited: use the Globus limited-proxy policy instead of id-ppl-inheritAll.
        path_len: optional pCPathLenConstraint.
        now: UTC time of issue (default now); notBefore is 5 minutes earlier but never
            before the issuer's notBefore.
        extensions: further non-critical extensions (the VOMS AC extension of a renewed
            proxy, :func:`wmproxy.security.voms.voms_extension`).

    The proxy subject is the issuer's plus ``CN=<serial in decimal>``; it carries
    critical proxyCertInfo, critical keyUsage digitalSignature+keyEncipherment and an
    AKID, and is signed with SHA-256. Returns ``Credential(proxy, key, [issuer.cert,
    *issuer.chain])``.

    Raises:
        ProxyError: the issuer has no key, a key that cannot sign certificates (e.g. X25519), or has
            already expired at ``now``.
    """
    if issuer.key is None:
        raise ProxyError("the issuing credential has no private key")
    if not isinstance(issuer.key, _ISSUER_KEY_TYPES):
        raise ProxyError("the issuing credential's key type cannot sign certificates")
    signing_key = issuer.key
    now = utc_now(now)
    ancestors = [issuer.cert, *issuer.chain]
    not_after = min([now + timedelta(seconds=lifetime)] + [c.not_valid_after_utc for c in ancestors])
    not_before = max(now - BACKDATE, issuer.cert.not_valid_before_utc)
    if not_after <= now:
        raise ProxyError("the issuing credential has expired")
    key = None
    if public_key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
        public_key = key.public_key()
    serial = secrets.randbits(31) | 1 << 30  # positive, 10 decimal digits
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    subject = x509.Name([*issuer.cert.subject.rdns, cn])
    policy = LIMITED_PROXY_OID if limited else INHERIT_ALL_OID
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(pci_extension(ProxyCertInfo(policy, path_len)), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_akid(issuer.cert, signing_key), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(signing_key, _hash_for(signing_key))
    return Credential(cert, key, ancestors)


def _akid(issuer: x509.Certificate, issuer_key: CertificateIssuerPrivateKeyTypes) -> x509.AuthorityKeyIdentifier:
    """From the issuer's SKI, else from its public key (the public half of ``issuer_key``)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


#: The smallest RSA key a proxy request may carry to be signed (NIST SP 800-131A; the service's
#: delegation keys are 2048 bits unless configured larger; ``wmproxy.config.MIN_DELEGATION_KEY_BITS``
#: keeps the service's setting at least this).
MIN_REQUEST_RSA_BITS = 2048
#: The elliptic curves a proxy request's key may be on.
REQUEST_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
#: The largest RSA public exponent accepted (as ``wmproxy.security.renewed`` accepts in a chain).
_MAX_RSA_EXPONENT = 2**32


def _check_request_key(key: CertificatePublicKeyTypes) -> None:
    """Refuse to certify a key an attacker could break or the grid does not use: RSA under
    :data:`MIN_REQUEST_RSA_BITS` bits or with an unusable exponent, EC off :data:`REQUEST_EC_CURVES`,
    any other type (DSA, Ed25519, ...).

    Raises:
        ProxyError: naming the key.
    """
    if isinstance(key, rsa.RSAPublicKey):
        exponent = key.public_numbers().e
        if key.key_size < MIN_REQUEST_RSA_BITS:
            raise ProxyError(f"refused to sign the proxy request: its RSA key has {key.key_size} bits, "
                             f"at least {MIN_REQUEST_RSA_BITS} required")
        if exponent < 3 or exponent % 2 == 0 or exponent > _MAX_RSA_EXPONENT:
            raise ProxyError(f"refused to sign the proxy request: its RSA key has the public exponent {exponent}")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in REQUEST_EC_CURVES:
            raise ProxyError(f"refused to sign the proxy request: its EC key is on the curve {key.curve.name}, "
                             f"not one of {', '.join(REQUEST_EC_CURVES)}")
        return
    raise ProxyError(f"refused to sign the proxy request: its key type {type(key).__name__} is not RSA or EC")


def sign_proxy_request(csr_pem: bytes, signer: Credential, *, lifetime: int) -> bytes:
    """Client side of getProxyReq/putProxy (gridsite delegation): sign a server's CSR.

    Args:
        csr_pem: PEM ``CERTIFICATE REQUEST`` returned by getProxyReq / getNewProxyReq.
        signer: the user's proxy (or certificate) with its key.
        lifetime: seconds the new proxy should live (capped by the signer's notAfter).

    Returns the PEM for putProxy: new proxy cert, signer cert, signer chain (no key).
    The CSR subject is ignored; the proxy subject derives from the signer.

    Raises:
        ProxyError: not a CSR, its self-signature is invalid, its key is refused (RSA under
            :data:`MIN_REQUEST_RSA_BITS` bits, an EC curve off :data:`REQUEST_EC_CURVES`, another
            type), or the signer cannot sign.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.strip() + b"\n")
    except ValueError as exc:
        raise ProxyError(f"invalid proxy request: {exc}") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # unsupported algorithm  # noqa: BLE001
        valid = False
    if not valid:
        raise ProxyError("invalid proxy request: bad signature")
    public_key = csr.public_key()
    _check_request_key(public_key)
    proxy = make_proxy(signer, lifetime=lifetime, public_key=public_key)
    return chain_pem(proxy.full_chain)


def time_left(cert: x509.Certificate, now: datetime | None = None) -> float:
    """Seconds until ``cert``'s notAfter (negative once expired); ``now`` is UTC, default now."""
    return (cert.not_valid_after_utc - utc_now(now)).total_seconds()
