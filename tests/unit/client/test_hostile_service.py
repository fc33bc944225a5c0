"""The client against a hostile service of the test's own: a real TLS server (werkzeug's) with
host certificates of a CA made here. Every case is run on both client paths: the light
standard-library POST (``getVersion``: :mod:`wmproxy.client.direct`) and zeep over the requests
session (``getJDL``, delegation, sandbox transfers).

* trust: a revoked host certificate, a CA without its CRL, a certificate naming the host only in
  its subject CN are refused;
* redirects (to a plain-http peer) are never followed: nothing reaches that peer;
* bounds: a download stops at the size the service listed, a reply at ``MAX_REPLY`` bytes (a
  gzip body too), a call at its timeout however slowly the reply drips; a reply zeep refuses is
  an ``InvalidResponse`` that says why.
"""

from __future__ import annotations

import datetime as dt
import gzip
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import Pki
from tests.unit.cli.https_server import https_server
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.client.connection import MAX_REPLY
from wmproxy.client.session import grid_session
from wmproxy.client.transfer import download_file, upload_file
from wmproxy.security.chain import chain_pem
from wmproxy.security.delegation import new_proxy_request
from wmproxy.security.pki import CertificateAuthority, _key, _write, create_ca, key_pem

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WMP = "http://glite.org/wms/wmproxy"
JOB = "https://localhost:9000/AbCdEfGhIjKlMnOpQrStUv"
JDL = '[ Executable = "/bin/true"; ]'

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def reply(operation: str, inner: str, ns: str = WMP) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{SOAP_ENV}"><S:Body>'
            f'<ns:{operation}Response xmlns:ns="{ns}">{inner}</ns:{operation}Response></S:Body></S:Envelope>').encode()


def operation_of(environ: dict[str, Any]) -> str:
    """The operation a SOAP request calls (its body's first element after ``Body>``)."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    after = body.split(b"Body>", 1)[-1]
    return after.split(b">", 1)[0].split(b" ", 1)[0].rsplit(b":", 1)[-1].decode()


def service(answers: dict[str, App] | None = None) -> App:
    """A WMProxy answering getVersion and getJDL (and getProxyReq with a 2048-bit CSR), any other
    operation (or one of ``answers``) as its app there; a GET with ``hello``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"hello"]
        operation = operation_of(environ)
        if answers and operation in answers:
            return answers[operation](environ, start_response)
        body = {
            "getVersion": reply("getVersion", "<version>3.5.0</version>"),
            "getJDL": reply("getJDL", f"<jdl>{JDL}</jdl>"),
            "getProxyReq": reply("getProxyReq", f"<request>{new_proxy_request()[1].decode()}</request>"),
        }.get(operation, reply(operation, ""))
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def answer(status: str, headers: list[tuple[str, str]], body: Iterable[bytes] = (b"",)) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, headers)
        return body

    return app


@pytest.fixture
def own_ca(tmp_path: Path) -> CertificateAuthority:
    """A CA of this test (its CRL may be changed or removed), with ``<hash>.r0`` as grid CAs have."""
    return create_ca(tmp_path / "certificates", key_path=tmp_path / "ca" / "ca-key.pem")


def clients(pki: Pki, base: str, ca_dir: Path, timeout: float = 30.0) -> dict[str, Callable[[], object]]:
    """A fresh call of each path: ``light`` (getVersion, standard library), ``zeep`` (getJDL)."""

    def client() -> WMProxyClient:
        return WMProxyClient(f"{base}/glite_wms_wmproxy_server", str(pki.users["alice"].proxy), str(ca_dir),
                             timeout)

    return {"light": lambda: client().get_version(), "zeep": lambda: client().get_jdl(JOB)}


def failure(call: Callable[[], object]) -> WMProxyClientError:
    with pytest.raises(WMProxyClientError) as err:
        call()
    return err.value


def cn_only_host(ca: CertificateAuthority, out: Path) -> tuple[Path, Path]:
    """A host certificate of ``ca`` whose subject CN is ``localhost``, without subjectAltName."""
    key, now = _key(), dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wmproxy-test"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    out.mkdir(parents=True)
    _write(out / "hostkey.pem", key_pem(key), 0o600)
    _write(out / "hostcert.pem", chain_pem([cert]))
    return out / "hostcert.pem", out / "hostkey.pem"


class TestTrust:
    def test_a_revoked_service_certificate_is_refused(self, pki: Pki, own_ca: CertificateAuthority,
                                                      tmp_path: Path) -> None:
        cert, key = own_ca.issue_host("localhost", tmp_path / "host")
        with https_server(pki, service(), cert=cert, key=key) as (_, base):
            calls = clients(pki, base, own_ca.directory)
            assert (calls["light"](), calls["zeep"]()) == ("3.5.0", JDL)  # trusted until revoked
            own_ca.revoke(x509.load_pem_x509_certificate(cert.read_bytes()))
            for name, call in calls.items():
                error = failure(call)
                assert error.fault_type == "TLSError", name
                assert error.description.startswith(
                    f"the certificate of {base.removeprefix('https://')} is not trusted by the CA directory "
                    "(X509_CERT_DIR) or its CRL: "), (name, error.description)
                assert "certificate revoked" in error.description, (name, error.description)

    def test_a_ca_without_its_crl_is_refused(self, pki: Pki, own_ca: CertificateAuthority, tmp_path: Path) -> None:
        """As the service refuses a client whose CA has no CRL (CRL_CHECK_ALL): fetch-crl keeps them."""
        cert, key = own_ca.issue_host("localhost", tmp_path / "host")
        own_ca.crl_path.unlink()
        with https_server(pki, service(), cert=cert, key=key) as (_, base):
            for name, call in clients(pki, base, own_ca.directory).items():
                error = failure(call)
                assert error.fault_type == "TLSError", name
                assert "unable to get certificate CRL" in error.description, (name, error.description)

    def test_a_host_named_only_by_the_subject_cn_is_refused(self, pki: Pki, own_ca: CertificateAuthority,
                                                            tmp_path: Path) -> None:
        cert, key = cn_only_host(own_ca, tmp_path / "cn-only")
        with https_server(pki, service(), cert=cert, key=key) as (_, base):
            for name, call in clients(pki, base, own_ca.directory).items():
                error = failure(call)
                assert error.fault_type == "TLSError", name
                assert error.description.startswith(
                    f"the certificate of {base.removeprefix('https://')} does not match its host name"), \
                    (name, error.description)


@pytest.fixture
def plain_peer() -> Iterator[tuple[socket.socket, str]]:
    """A plain-http listener that never answers: ``(its socket, its URL)``."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def reached(sock: socket.socket) -> bool:
    """Whether anyone connected to ``sock`` (a connection waiting to be accepted)."""
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def redirect_to(url: str, status: str = "307 Temporary Redirect") -> App:
    return answer(status, [("Location", url), ("Content-Length", "0")])


class TestRedirects:
    def test_soap_calls_refuse_a_redirect(self, pki: Pki, plain_peer: tuple[socket.socket, str]) -> None:
        sock, plain = plain_peer
        location = f"{plain}/glite_wms_wmproxy_server"
        with https_server(pki, service({"getVersion": redirect_to(location), "getJDL": redirect_to(location)})) \
                as (_, base):
            for name, call in clients(pki, base, pki.ca_dir).items():
                error = failure(call)
                expected = (f"{base.removeprefix('https://')} answered HTTP 307 redirecting to {location}: "
                            "redirects are not followed")
                assert (error.fault_type, error.description) == ("ConnectionError", expected), name
        assert not reached(sock)

    def test_a_put_proxy_redirected_to_plain_http_sends_no_proxy(
            self, pki: Pki, plain_peer: tuple[socket.socket, str]) -> None:
        sock, plain = plain_peer
        with https_server(pki, service({"putProxy": redirect_to(f"{plain}/deleg")})) as (_, base):
            client = WMProxyClient(f"{base}/glite_wms_wmproxy_server", str(pki.users["alice"].proxy),
                                   str(pki.ca_dir), 30.0)
            error = failure(lambda: client.delegate("d", port="wmproxy"))
        assert (error.fault_type, error.method) == ("ConnectionError", "putProxy")
        assert f"redirecting to {plain}/deleg: redirects are not followed" in error.description
        assert not reached(sock)

    def test_sandbox_transfers_refuse_a_redirect(self, pki: Pki, plain_peer: tuple[socket.socket, str],
                                                 tmp_path: Path) -> None:
        sock, plain = plain_peer
        (tmp_path / "in.txt").write_text("secret input")
        with https_server(pki, redirect_to(f"{plain}/x.txt", "302 Found")) as (_, base):
            session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
            download = failure(lambda: download_file(session, f"{base}/out/x.txt", tmp_path / "out", size=5))
            upload = failure(lambda: upload_file(session, f"{base}/in", tmp_path / "in.txt", timeout=30))
        for error in (download, upload):
            assert error.fault_type == "ConnectionError"
            assert error.description.endswith(f"answered HTTP 302 redirecting to {plain}/x.txt: redirects are not "
                                              "followed"), error.description
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
        assert not reached(sock)


def endless(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """4 MiB in 64 KiB chunks, with a Content-Length when the query asks for it."""
    headers = [("Content-Type", "application/octet-stream")]
    if environ.get("QUERY_STRING") == "declared":
        headers.append(("Content-Length", str(4 * 1024 * 1024)))
    start_response("200 OK", headers)
    return (b"B" * 65536 for _ in range(64))


def drip(body: bytes, pause: float) -> App:
    """``body`` (its length announced) a byte at a time, ``pause`` seconds apart."""

    def chunks() -> Iterator[bytes]:
        for i in range(len(body)):
            yield body[i:i + 1]
            time.sleep(pause)

    return answer("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))], chunks())


class TestBounds:
    @pytest.mark.parametrize("query", ["declared", "undeclared"])
    def test_a_download_stops_at_the_listed_size(self, pki: Pki, tmp_path: Path, query: str) -> None:
        with https_server(pki, endless) as (_, base):
            session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
            uri = f"{base}/out/small.txt?{query}"
            error = failure(lambda: download_file(session, uri, tmp_path / "out", size=10))
        assert error.fault_type == "TransferError"
        assert error.description.startswith(f"refused {uri}: the service listed it with 10 bytes and "), \
            error.description
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []

    def test_a_download_of_the_listed_size_is_stored(self, pki: Pki, tmp_path: Path) -> None:
        with https_server(pki, service()) as (_, base):
            session = grid_session(str(pki.users["alice"].proxy), str(pki.ca_dir))
            path = download_file(session, f"{base}/out/hello.txt", tmp_path / "out", size=5)
        assert path.read_bytes() == b"hello"

    def test_a_reply_over_the_limit_is_not_read(self, pki: Pki) -> None:
        """Announced (light path), streamed without a length (both) or gzip-encoded (zeep decodes it)."""
        head, tail = reply("getJDL", "<jdl>@</jdl>").split(b"@")
        pad = MAX_REPLY - len(head) - len(tail) + 1

        def streamed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "text/xml")])
            yield head
            for _ in range(pad // 65536 + 1):
                yield b" " * 65536
            yield tail

        bomb = gzip.compress(head + b" " * pad + tail, compresslevel=1)
        gzipped = answer("200 OK", [("Content-Type", "text/xml"), ("Content-Encoding", "gzip"),
                                    ("Content-Length", str(len(bomb)))], [bomb])
        announced = answer("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(MAX_REPLY + 1))], [head])
        for app, paths in ((announced, ["light"]), (streamed, ["light", "zeep"]), (gzipped, ["zeep"])):
            with https_server(pki, service({"getVersion": app, "getJDL": app})) as (_, base):
                calls = clients(pki, base, pki.ca_dir)
                for name in paths:
                    error = failure(calls[name])
                    expected = f"the reply of {base.removeprefix('https://')} is larger than {MAX_REPLY // 2**20} MiB"
                    assert (error.fault_type, error.description) == ("InvalidResponse", f"{expected}: not read"), name

    def test_a_call_ends_within_its_timeout(self, pki: Pki) -> None:
        """Each byte comes well within the timeout (1 s), the whole reply would take 60 s."""
        slow_version = drip(reply("getVersion", "<version>3.5.0</version>"), 0.2)
        slow_jdl = drip(reply("getJDL", f"<jdl>{JDL}</jdl>"), 0.2)
        with https_server(pki, service({"getVersion": slow_version, "getJDL": slow_jdl})) as (_, base):
            for name, call in clients(pki, base, pki.ca_dir, timeout=1.0).items():
                error = failure(call)
                assert error.fault_type == "ConnectionError", (name, error)
                assert error.description.startswith(f"no answer from {base.removeprefix('https://')} in time: "), \
                    (name, error.description)

    @pytest.mark.parametrize(("body", "says"), [
        (b'<?xml version="1.0"?><!DOCTYPE S:Envelope [<!ENTITY a "AAAA">]>'
         + reply("getJDL", "<jdl>&a;</jdl>").split(b"?>", 1)[1], "the reply declares XML entities, refused"),
        (reply("getJDL", "<jdl>x</jdl>")[:-12], "the service's reply (HTTP 200) is not valid XML: "),
    ])
    def test_a_reply_zeep_refuses_says_why(self, pki: Pki, body: bytes, says: str) -> None:
        bad = answer("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))], [body])
        with https_server(pki, service({"getJDL": bad})) as (_, base):
            error = failure(clients(pki, base, pki.ca_dir)["zeep"])
        assert error.fault_type == "InvalidResponse" and error.description.startswith(says), error.description
