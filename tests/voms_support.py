"""VOMS helpers shared by test modules: a fake VOMS server (host cert from the test CA and a
vomsdir trusting it) and VOMS proxies made by the real ``voms-proxy-fake`` (``peers.md`` §4.1).

Forged ACs (issue 10): :func:`untrusted_voms_server` (certified by the test CA, but no .lsc
names it) and :func:`fake_ca_voms_server` (a fake CA with the test CA's DN and another key
certifies a server with the trusted server's DN, so every DN of the .lsc matches); pass
them to :func:`fake_voms_proxy` to get a proxy carrying a forged AC.

AC extensions voms-proxy-fake cannot write (its ``-target`` crashes): :func:`with_ac_extension`
adds one to the AC of a voms-proxy-fake proxy and signs the AC again with the trusted VOMS
server's key and the proxy with the user's key, so the AC verifies in every other respect;
:func:`targets_extension` encodes AC Targets (RFC 5755 §4.3.2, or as VOMS writes them)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import char, tag, univ
from pyasn1_modules import rfc5280, rfc5755

from tests.conftest import Pki, need_peer
from wmproxy.security.chain import chain_pem, load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import CertificateAuthority, create_ca
from wmproxy.security.voms import VOMS_AC_OID

#: The FQANs :func:`fake_voms_proxy` puts in the AC by default, the primary one first.
FQANS = ("/atlas/Role=production/Capability=NULL", "/atlas/Role=NULL/Capability=NULL",
         "/atlas/uk/Role=NULL/Capability=NULL")
#: The VOMS server URI (host:port) written into the AC.
URI = "voms.localhost:15001"


@dataclass
class VomsServer:
    """A fake VOMS server: host cert issued by the test CA, and a vomsdir trusting it."""

    cert: Path
    key: Path
    dn: str
    vomsdir: Path


def fake_voms_server(pki: Pki, root: Path) -> VomsServer:
    """Issue the ``voms.localhost`` host cert under ``root / "voms"`` and write an LSC for it
    into ``root / "vomsdir"`` (VO atlas)."""
    return voms_server_of(pki.ca, root)


def voms_server_of(ca: CertificateAuthority, root: Path) -> VomsServer:
    """:func:`fake_voms_server` for any ``ca`` (a benchmark's, say), not only the tests' PKI."""
    cert, key = ca.issue_host("voms.localhost", root / "voms")
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    vomsdir = root / "vomsdir"
    write_lsc(vomsdir, dn, ca.dn)
    return VomsServer(cert, key, dn, vomsdir)


def other_vo_voms_server(pki: Pki, root: Path, vomsdir: Path, vo: str = "cms") -> VomsServer:
    """A VOMS server of another VO (``voms-<vo>.localhost``, certified by the test CA) that
    ``vomsdir`` trusts for ``vo`` only (``<vomsdir>/<vo>/voms-<vo>.localhost.lsc``), as a site
    trusting several VOs does; pass ``vo`` and :func:`other_vo_uri` to :func:`fake_voms_proxy`."""
    host = f"voms-{vo}.localhost"
    cert, key = pki.ca.issue_host(host, root / host)
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    write_lsc(vomsdir, dn, pki.ca.dn, vo=vo, host=host)
    return VomsServer(cert, key, dn, vomsdir)


def other_vo_uri(vo: str = "cms") -> str:
    """The URI (host:port) of :func:`other_vo_voms_server`'s server for ``vo``."""
    return f"voms-{vo}.localhost:15002"


def untrusted_voms_server(pki: Pki, root: Path) -> VomsServer:
    """A VOMS server certified by the test CA (``.../CN=voms-impostor.localhost``) whose DN no
    .lsc lists; its ``vomsdir`` is empty (use the trusted server's)."""
    cert, key = pki.ca.issue_host("voms-impostor.localhost", root / "impostor")
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    return VomsServer(cert, key, dn, root / "impostor-vomsdir")


def fake_ca_voms_server(pki: Pki, root: Path) -> VomsServer:
    """A VOMS server with the trusted ``voms.localhost`` DN, certified by a fake CA that has the
    test CA's DN but its own key: the .lsc DN list matches, only the signatures tell."""
    fake = create_ca(root / "fake-ca" / "certificates", pki.ca.dn)
    cert, key = fake.issue_host("voms.localhost", root / "fake-voms")
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    return VomsServer(cert, key, dn, root / "fake-vomsdir")


def write_lsc(vomsdir: Path, dn: str, ca_dn: str, vo: str = "atlas", host: str = "voms.localhost") -> Path:
    """Write ``vomsdir/<vo>/<host>.lsc`` naming the server ``dn`` and its issuer ``ca_dn``; return its path."""
    path = vomsdir / vo / f"{host}.lsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{dn}\n{ca_dn}\n")
    return path


def fake_voms_proxy(pki: Pki, server: VomsServer, out: Path, *args: str, user: str = "alice",
                    fqans: tuple[str, ...] = FQANS, vo: str = "atlas", uri: str = URI) -> Path:
    """Run voms-proxy-fake (``peers.md`` §4.1) for a test user; extra ``args`` are appended. The AC
    is of VO ``vo`` from the server at ``uri`` (its policy authority ``<vo>://<uri>``)."""
    binary = shutil.which("voms-proxy-fake")
    if binary is None:
        need_peer("voms-proxy-fake (voms-clients) is not installed")
    home = pki.root / pki.users[user].name
    proc = run_voms_proxy_fake(binary, home, pki.ca_dir, server, out, fqans, args, vo=vo, uri=uri)
    assert proc.returncode == 0, proc.stderr
    return out


def run_voms_proxy_fake(binary: str, home: Path, ca_dir: Path, server: VomsServer, out: Path,
                        fqans: tuple[str, ...] = FQANS, args: tuple[str, ...] = (),
                        hours: int = 24, vo: str = "atlas", uri: str = URI) -> subprocess.CompletedProcess[str]:
    """Run ``binary`` (voms-proxy-fake) for the user whose ``usercert.pem`` and ``userkey.pem``
    are in ``home``: an RFC 3820 proxy with an AC of VO ``vo`` (server ``uri``) carrying ``fqans``
    (the first is the primary one), valid ``hours``, written to ``out``; ``args`` are appended."""
    cmd = [binary, "-rfc", "-q", "-cert", str(home / "usercert.pem"), "-key", str(home / "userkey.pem"),
           "-certdir", str(ca_dir), "-hostcert", str(server.cert), "-hostkey", str(server.key),
           "-voms", vo, "-uri", uri, "-hours", str(hours), "-vomslife", str(hours), "-out", str(out)]
    for fqan in fqans:
        cmd += ["-fqan", fqan]
    env = {**os.environ, "X509_CERT_DIR": str(ca_dir), "HOME": str(out.parent)}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


#: AC Targets extension (RFC 5755 §4.3.2).
TARGETS_OID = "2.5.29.55"


def targets_extension(*hosts: str, voms: bool = False) -> bytes:
    """The DER value of an AC Targets extension naming ``hosts``: as RFC 5755 §4.3.2 writes it
    (``SEQUENCE OF Targets``, each ``targetName [0]`` a dNSName), or with ``voms`` as
    ``voms-proxy-init --target`` does (libvomsapi's ``AC_TARGETS { SEQUENCE OF AC_TARGET {
    [0] GeneralName } }``, each name a uniformResourceIdentifier)."""
    if not voms:
        targets = rfc5755.Targets()
        for host in hosts:
            target = rfc5755.Target()
            target["targetName"]["dNSName"] = host
            targets.append(target)
        outer = univ.SequenceOf(componentType=rfc5755.Targets())
        outer.append(targets)
        return encoder.encode(outer)
    items = b"".join(_tlv(0x30, _tlv(0xA0, encoder.encode(char.IA5String(host).subtype(
        implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 6))))) for host in hosts)
    return _tlv(0x30, _tlv(0x30, items))


def _tlv(tag_byte: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag_byte]) + length + content


class _ACs(univ.SequenceOf):
    componentType = rfc5755.AttributeCertificate()


class _ACSeqs(univ.SequenceOf):  # the VOMS extension: SEQUENCE OF SEQUENCE OF AttributeCertificate
    componentType = _ACs()


_AC_HASHES = {"1.2.840.113549.1.1.5": hashes.SHA1, "1.2.840.113549.1.1.11": hashes.SHA256,
              "1.2.840.113549.1.1.12": hashes.SHA384, "1.2.840.113549.1.1.13": hashes.SHA512}


def with_ac_extension(pki: Pki, server: VomsServer, proxy: Path, out: Path, oid: str, value: bytes, *,
                      critical: bool, user: str = "alice") -> Path:
    """Write to ``out`` the voms-proxy-fake proxy file ``proxy`` of ``user`` with an extension
    ``oid`` = ``value`` added to its AC: the AC signed again with ``server``'s key, the proxy
    certificate with the user's key (the proxy key and the rest of the file kept); return ``out``."""
    pem = proxy.read_bytes()
    chain = load_pem_chain(pem)
    leaf = chain[0]
    ext = leaf.extensions.get_extension_for_oid(VOMS_AC_OID)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    seqs, _ = decoder.decode(ext.value.value, asn1Spec=_ACSeqs())
    ac = seqs[0][0]
    added = rfc5280.Extension()
    added["extnID"] = univ.ObjectIdentifier(oid)
    added["critical"] = critical
    added["extnValue"] = value
    ac["acinfo"]["extensions"].append(added)
    voms_key = serialization.load_pem_private_key(server.key.read_bytes(), None)
    assert isinstance(voms_key, rsa.RSAPrivateKey)
    digest = _AC_HASHES[str(ac["signatureAlgorithm"]["algorithm"])]()
    ac["signatureValue"] = univ.BitString.fromOctetString(
        voms_key.sign(encoder.encode(ac["acinfo"]), padding.PKCS1v15(), digest))
    builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
               .public_key(leaf.public_key()).serial_number(leaf.serial_number)
               .not_valid_before(leaf.not_valid_before_utc).not_valid_after(leaf.not_valid_after_utc))
    for extension in leaf.extensions:
        new = (x509.UnrecognizedExtension(VOMS_AC_OID, encoder.encode(seqs)) if extension.oid == VOMS_AC_OID
               else extension.value)
        builder = builder.add_extension(new, critical=extension.critical)
    resigned = builder.sign(pki.users[user].credential.key, hashes.SHA256())
    old = chain_pem([leaf])
    assert pem.startswith(old)
    out.write_bytes(chain_pem([resigned]) + pem[len(old):])
    return out


def ac_extensions(proxy: Path) -> list[tuple[str, bool]]:
    """(OID, critical) of each extension of the first AC of the proxy file ``proxy``."""
    ext = load_pem_chain(proxy.read_bytes())[0].extensions.get_extension_for_oid(VOMS_AC_OID)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    seqs, _ = decoder.decode(ext.value.value, asn1Spec=_ACSeqs())
    return [(str(e["extnID"]), bool(e["critical"])) for e in seqs[0][0]["acinfo"]["extensions"]]
