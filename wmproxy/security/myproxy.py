"""The X.509 side of the MyProxy protocol (gridcf/gct ``myproxy/source/PROTOCOL``; ``peers.md`` §5.3).

Pure helpers for the MyProxy client (:mod:`wmproxy.renewal.myproxy`), which keeps the wire
framing and the network: MyProxy's server identity rule, the proof of possession of the
user's proxy (a signature of the server's challenge), and the delegation step (a fresh key
and its certificate request, then the returned chain put together with that key).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from wmproxy.errors import ProxyError
from wmproxy.security.proxy import Credential, credential_pem, public_key_der

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}


def names_myproxy_server(cert: x509.Certificate, server: str) -> bool:
    """MyProxy's server identity rule: ``server`` (host name or IP address) is a
    subjectAltName DNS (one ``*.`` wildcard level) or IP entry, or the certificate's CN is
    ``host``, ``host/<host>`` or ``myproxy/<host>``."""
    host = server.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        if address is not None and address in san.get_values_for_type(x509.IPAddress):
            return True
        for dns_name in san.get_values_for_type(x509.DNSName):
            name = dns_name.lower().rstrip(".")
            if name == host or (
                name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]
            ):
                return True
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(str(cn).lower() in (host, f"host/{host}", f"myproxy/{host}") for cn in cns)


def sign_challenge(user: Credential, challenge: bytes, hash_name: str) -> bytes:
    """Sign the server's challenge with the user's proxy key (proof of possession).

    Args:
        user: the user's proxy with its private key.
        challenge: the challenge text as sent by the server.
        hash_name: ``"sha256"`` or ``"sha1"`` (by the authorization method offered).

    RSA keys sign PKCS#1 v1.5, EC keys ECDSA.

    Raises:
        ProxyError: no key, or a key type that cannot sign the challenge.
    """
    algorithm = _HASHES[hash_name]()
    key = user.key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(challenge, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(challenge, ec.ECDSA(algorithm))
    raise ProxyError("the user proxy key type cannot answer a MyProxy challenge")


def chain_der(chain: Sequence[x509.Certificate]) -> list[bytes]:
    """The DER encoding of each certificate, in order."""
    return [c.public_bytes(serialization.Encoding.DER) for c in chain]


def load_der_certificate(der: bytes) -> x509.Certificate:
    """One DER certificate.

    Raises:
        ProxyError: not a valid certificate.
    """
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise ProxyError("malformed certificate") from None


@dataclass(frozen=True)
class RenewalRequest:
    """A fresh RSA key and its DER certificate request (subject ``CN=proxy``, SHA-256), sent
    to MyProxy in the delegation step. The key never leaves this process."""

    key: rsa.RSAPrivateKey
    csr_der: bytes

    @classmethod
    def new(cls, key_bits: int = 2048) -> RenewalRequest:
        """A request for a new ``key_bits`` RSA key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")]))
            .sign(key, hashes.SHA256())
        )
        return cls(key, csr.public_bytes(serialization.Encoding.DER))

    def credential(self, certs: Sequence[x509.Certificate]) -> bytes:
        """The returned chain (new proxy first) with this key, in the grid proxy file layout.

        Raises:
            ProxyError: no certificate, or the first one certifies another key.
        """
        if not certs:
            raise ProxyError("no certificate returned")
        if public_key_der(certs[0].public_key()) != public_key_der(self.key.public_key()):
            raise ProxyError("a proxy for another key")
        return credential_pem(Credential(certs[0], self.key, list(certs[1:])))
