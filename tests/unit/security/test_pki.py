from __future__ import annotations

import os
import subprocess

import pytest
from cryptography import x509

from wmproxy.security.chain import load_pem_chain, verify_chain
from wmproxy.security.pki import create_ca, main
from wmproxy.security.proxy import load_credential


class TestCreateCa:
    def test_layout_and_openssl_hash(self, ca):
        files = sorted(p.name for p in ca.directory.iterdir())
        assert files == [f"{ca.hash}.0", f"{ca.hash}.namespaces", f"{ca.hash}.r0", f"{ca.hash}.signing_policy"]
        out = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca.cert_path)],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == ca.hash
        crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
        assert len(crl) == 0 and crl.is_signature_valid(ca.cert.public_key())
        assert "access_id_CA      X509         '/C=XX/O=wmproxy-demo/CN=wmproxy Demo CA'" in (
            ca.directory / f"{ca.hash}.signing_policy").read_text()

    def test_key_not_in_ca_dir(self, tmp_path):
        with pytest.raises(ValueError, match="must not be written into the CA directory"):
            create_ca(tmp_path / "certs", key_path=tmp_path / "certs" / "ca.key")

    def test_host_cert(self, ca, tmp_path):
        cert_path, key_path = ca.issue_host("wms.example.org", tmp_path)
        cert = load_pem_chain(cert_path.read_bytes())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["wms.example.org", "localhost"]
        assert os.stat(key_path).st_mode & 0o777 == 0o600
        verify_chain([cert], str(ca.directory))


def test_cli_writes_demo_pki(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"X509_USER_PROXY='{tmp_path / 'user' / 'x509up'}'" in out
    proxy = load_credential(tmp_path / "user" / "x509up")
    verify_chain(proxy.full_chain, str(tmp_path / "certificates"))
    assert os.stat(tmp_path / "user" / "x509up").st_mode & 0o777 == 0o600
    assert (tmp_path / "host" / "hostcert.pem").exists() and (tmp_path / "user" / "userkey.pem").exists()
    assert not any("key" in p.name for p in (tmp_path / "certificates").iterdir())
