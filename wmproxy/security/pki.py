"""A throwaway grid PKI for demos and tests: a CA directory, host and user certs, proxies.

Everything is generated at run time; no key is ever committed. The CA directory has
the grid layout (``peers.md`` §3): ``<hash>.0`` CA cert, ``<hash>.r0`` CRL,
``<hash>.signing_policy`` (Globus) and ``<hash>.namespaces`` (EUGridPMA): both confine the CA to
its own name minus its last CN (``/C=XX/O=wmproxy-demo/...``), where its users and hosts are, and
the service enforces them (:mod:`wmproxy.security.ca_policy`).

Command line: ``python -m wmproxy.security.pki DIR`` creates ``DIR/certificates``,
``DIR/host/hostcert.pem`` + ``hostkey.pem`` (CN localhost), ``DIR/user/usercert.pem`` +
``userkey.pem`` (CN "Demo User") and ``DIR/user/x509up`` (12 h RFC 3820 proxy), and
prints them as shell assignments.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from wmproxy.security.chain import chain_pem
from wmproxy.security.dn import parse_slash_dn, slash_dn
from wmproxy.security.proxy import Credential, credential_pem, key_pem, make_proxy

DEFAULT_CA_NAME = "/C=XX/O=wmproxy-demo/CN=wmproxy Demo CA"
CRL_DAYS = 30


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomic write with ``mode`` (temp file + rename, so readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _ku(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL subject name hash (``openssl x509 -hash``) as 8 lowercase hex digits."""
    return f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


def _validity(lifetime_days: float, not_after: datetime | None) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a certificate issued now: from 5 minutes ago for
    ``lifetime_days`` days, or the ``lifetime_days`` days up to ``not_after`` (UTC) when given
    (a past one: already expired)."""
    if not_after is None:
        now = datetime.now(UTC)
        return now - timedelta(minutes=5), now + timedelta(days=lifetime_days)
    return not_after - timedelta(days=lifetime_days), not_after


class CertificateAuthority:
    """A test CA writing its grid CA directory; the key stays in memory.

    Attributes: ``cert``, ``key``, ``directory`` (the CA dir), ``hash`` (8 hex digits),
    ``revoked`` (serial → revocation time).
    """

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey, directory: Path) -> None:
        self.cert, self.key, self.directory = cert, key, Path(directory)
        self.hash = subject_hash(cert)
        self.revoked: dict[int, datetime] = {}

    @property
    def dn(self) -> str:
        return slash_dn(self.cert.subject)

    @property
    def cert_path(self) -> Path:
        return self.directory / f"{self.hash}.0"

    @property
    def crl_path(self) -> Path:
        return self.directory / f"{self.hash}.r0"

    def _base_dn(self) -> list[x509.RelativeDistinguishedName]:
        rdns = list(self.cert.subject.rdns)
        return rdns[:-1] if rdns and next(iter(rdns[-1])).oid == NameOID.COMMON_NAME else rdns

    def _subject(self, ou: str, cn: str) -> x509.Name:
        extra = [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)]),
                 x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])]
        return x509.Name(self._base_dn() + extra)

    def _issue(
        self, subject: x509.Name, public_key: rsa.RSAPublicKey, not_before: datetime, not_after: datetime,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(self.key, hashes.SHA256())

    def issue_host(self, cn: str, out_dir: str | os.PathLike[str], *, lifetime_days: int = 365,
                   not_after: datetime | None = None) -> tuple[Path, Path]:
        """Host credential ``/…/OU=Hosts/CN=<cn>`` with SAN DNS=cn, DNS=localhost, IP=127.0.0.1 and
        EKU serverAuth+clientAuth. Writes ``hostcert.pem`` (0644) and ``hostkey.pem`` (0600,
        unencrypted) in ``out_dir`` (created) and returns their paths.

        Args:
            lifetime_days: validity length in days (from 5 minutes ago; with ``not_after``,
                notBefore = notAfter - lifetime_days).
            not_after: UTC end of validity (default now + lifetime_days); a past value makes an
                already expired host credential for tests.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        key = _key()
        not_before, not_after = _validity(lifetime_days, not_after)
        names: list[x509.GeneralName] = [x509.DNSName(cn)]
        if cn != "localhost":
            names.append(x509.DNSName("localhost"))
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = self._issue(self._subject("Hosts", cn), key.public_key(), not_before, not_after, [
            (x509.SubjectAlternativeName(names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (_ku(digital_signature=True, key_encipherment=True), True),
        ])
        cert_path, key_path = out / "hostcert.pem", out / "hostkey.pem"
        _write(key_path, key_pem(key), 0o600)
        _write(cert_path, chain_pem([cert]))
        return cert_path, key_path

    def issue_user(
        self, cn: str, out_dir: str | os.PathLike[str] | None = None, *, lifetime_days: float = 365,
        not_after: datetime | None = None,
    ) -> Credential:
        """User credential ``/…/OU=Users/CN=<cn>`` (EKU clientAuth).

        Args:
            lifetime_days: validity length; notBefore = notAfter - lifetime_days.
            not_after: UTC end of validity (default now + lifetime_days); a past value
                makes an already expired user for tests.
            out_dir: if given (created), writes ``usercert.pem`` and ``userkey.pem``, both 0600.
        """
        key = _key()
        not_before, not_after = _validity(lifetime_days, not_after)
        cert = self._issue(self._subject("Users", cn), key.public_key(), not_before, not_after, [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (_ku(digital_signature=True, key_encipherment=True, data_encipherment=True), True),
        ])
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            _write(out / "userkey.pem", key_pem(key), 0o600)
            _write(out / "usercert.pem", chain_pem([cert]), 0o600)
        return Credential(cert, key, [])

    def revoke(self, cert: x509.Certificate, when: datetime | None = None) -> None:
        """Add ``cert`` to the CRL and rewrite ``<hash>.r0``."""
        self.revoked[cert.serial_number] = when or datetime.now(UTC)
        self.write_crl()

    def write_crl(self) -> None:
        """(Re)write ``<hash>.r0``: the revoked serials, valid for 30 days from now."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=CRL_DAYS))
            .add_extension(x509.CRLNumber(len(self.revoked) + int(now.timestamp())), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        for serial, when in self.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        _write(self.crl_path, crl.public_bytes(Encoding.PEM))


def create_ca(
    directory: str | os.PathLike[str], name: str = DEFAULT_CA_NAME, *,
    key_path: str | os.PathLike[str] | None = None, lifetime_days: int = 3650,
) -> CertificateAuthority:
    """Create a self-signed CA and write its grid CA directory layout into ``directory``.

    Args:
        directory: the CA dir (created); gets ``<hash>.0``, ``<hash>.r0`` (empty CRL,
            30 days), ``<hash>.signing_policy`` and ``<hash>.namespaces``.
        name: CA subject as a slash DN; users and hosts get ``name`` minus its last CN
            plus ``OU=Users``/``OU=Hosts``.
        key_path: also write the CA key there (0600); must be outside ``directory``.

    Raises:
        ValueError: ``key_path`` inside ``directory`` or a bad ``name``.
    """
    directory = Path(directory)
    if key_path is not None and Path(key_path).resolve().parent == directory.resolve():
        raise ValueError("the CA key must not be written into the CA directory")
    directory.mkdir(parents=True, exist_ok=True)
    key, now = _key(), datetime.now(UTC)
    subject = parse_slash_dn(name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=lifetime_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True, digital_signature=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(cert, key, directory)
    _write(ca.cert_path, chain_pem([cert]))
    ca.write_crl()
    dn = slash_dn(cert.subject)
    base = slash_dn(x509.Name(ca._base_dn()))
    _write(directory / f"{ca.hash}.signing_policy", (
        f"access_id_CA      X509         '{dn}'\n"
        "pos_rights        globus        CA:sign\n"
        f"cond_subjects     globus       '\"{base}/*\"'\n"
    ).encode())
    _write(directory / f"{ca.hash}.namespaces", (
        f'TO Issuer "{dn}" \\\n  PERMIT Subject "{base}/.*"\n'
    ).encode())
    if key_path is not None:
        _write(Path(key_path), key_pem(key), 0o600)
    return ca


def write_proxy(
    user: Credential, path: str | os.PathLike[str], lifetime: int = 12 * 3600, limited: bool = False
) -> Credential:
    """Make an RFC 3820 proxy of ``user`` (lifetime in seconds) and write it in the grid
    proxy file layout with mode 0600. Raises ProxyError like :func:`make_proxy`."""
    proxy = make_proxy(user, lifetime=lifetime, limited=limited)
    _write(Path(path), credential_pem(proxy), 0o600)
    return proxy


def main(argv: list[str] | None = None) -> int:
    """``python -m wmproxy.security.pki DIR``: write the demo PKI under DIR, print the paths."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m wmproxy.security.pki DIR", file=sys.stderr)
        return 2
    root = Path(args[0]).resolve()
    (root / "ca").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "ca", 0o700)
    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    host_cert, host_key = ca.issue_host("localhost", root / "host")
    user = ca.issue_user("Demo User", root / "user")
    proxy_path = root / "user" / "x509up"
    write_proxy(user, proxy_path, lifetime=12 * 3600)
    for var, value in [
        ("X509_CERT_DIR", root / "certificates"), ("HOST_CERT", host_cert), ("HOST_KEY", host_key),
        ("USER_CERT", root / "user" / "usercert.pem"), ("USER_KEY", root / "user" / "userkey.pem"),
        ("X509_USER_PROXY", proxy_path), ("USER_DN", slash_dn(user.cert.subject)),
    ]:
        print(f"{var}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
