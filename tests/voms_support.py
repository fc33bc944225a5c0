"""VOMS helpers shared by test modules: a fake VOMS server (host cert from the test CA and a
vomsdir trusting it) and VOMS proxies made by the real ``voms-proxy-fake`` (``peers.md`` §4.1).

Forged ACs (issue 10): :func:`untrusted_voms_server` (certified by the test CA, but no .lsc
names it) and :func:`fake_ca_voms_server` (a fake CA with the test CA's DN and another key
certifies a server with the trusted server's DN, so every DN of the .lsc matches); pass
them to :func:`fake_voms_proxy` to get a proxy carrying a forged AC."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tests.conftest import Pki, need_peer
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca

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
    cert, key = pki.ca.issue_host("voms.localhost", root / "voms")
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    vomsdir = root / "vomsdir"
    write_lsc(vomsdir, dn, pki.ca.dn)
    return VomsServer(cert, key, dn, vomsdir)


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
                    fqans: tuple[str, ...] = FQANS) -> Path:
    """Run voms-proxy-fake (``peers.md`` §4.1) for a test user; extra ``args`` are appended."""
    binary = shutil.which("voms-proxy-fake")
    if binary is None:
        need_peer("voms-proxy-fake (voms-clients) is not installed")
    home = pki.root / pki.users[user].name
    cmd = [binary, "-rfc", "-q", "-cert", str(home / "usercert.pem"), "-key", str(home / "userkey.pem"),
           "-certdir", str(pki.ca_dir), "-hostcert", str(server.cert), "-hostkey", str(server.key),
           "-voms", "atlas", "-uri", URI, "-hours", "24", "-vomslife", "24", "-out", str(out)]
    for fqan in fqans:
        cmd += ["-fqan", fqan]
    env = {**os.environ, "X509_CERT_DIR": str(pki.ca_dir), "HOME": str(out.parent)}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return out
