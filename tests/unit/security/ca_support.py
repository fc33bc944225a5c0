"""CA helpers shared by the chain and CA policy tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509


def intermediate_ca(root, name):
    """A CA ``name`` (slash DN) signed by the CA ``root``, written into ``root``'s directory with
    its CRL: a CertificateAuthority issuing users."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding as Enc

    from wmproxy.security.dn import parse_slash_dn
    from wmproxy.security.pki import CertificateAuthority

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(parse_slash_dn(name)).issuer_name(root.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False)
            .sign(root.key, hashes.SHA256()))
    intermediate = CertificateAuthority(cert, key, root.directory)
    intermediate.cert_path.write_bytes(cert.public_bytes(Enc.PEM))
    intermediate.write_crl()
    return intermediate
