"""gridsite's delegation clients (Debian gridsite-clients: htproxyput, htproxyrenew, htproxyinfo,
htproxytime, htproxyunixtime, htproxydestroy) against the real deployment, with
X509_USER_PROXY and X509_CERT_DIR set as a user would (``peers.md`` §6).

They speak delegation-1 with gridsite's extensions (getNewProxyReq, renewProxyReq,
getTerminationTime, destroy; §6.2), which the service serves at its one endpoint.

Decided and asserted behaviour:

* **htproxyput** signs a proxy that is not an RFC 3820 proxy (no proxyCertInfo, SHA-1;
  §6.3). putProxy refuses it with a DelegationException "the delegated credential is not an
  RFC 3820 proxy", but htproxyput sends putProxy one-way and never reads the reply, so it
  still prints the delegation id the server chose in getNewProxyReq (the caller's default
  id; ``--delegation-id`` is ignored) and exits 0. Nothing is stored: htproxyunixtime for
  that id then fails with "Client delegated proxy not found:  get termination time not
  allowed". While a valid proxy is stored under the default id, htproxyput fails (exit 1)
  at getNewProxyReq with "Previous client delegated proxy still valid".
* **htproxyunixtime / htproxytime** on a delegation made properly (zeep +
  ``sign_proxy_request``) print its notAfter: epoch seconds, and the ``date``-style local
  time (``Sat Nov 21 12:16:07 UTC 2026`` with TZ=UTC).
* **htproxyrenew** calls renewProxyReq (which succeeds), prints the id and exits 0; the
  proxy it signs is non-RFC like htproxyput's, so its putProxy is refused and the stored
  delegation is kept unchanged (a renewal never discards the current proxy). For an unknown
  id it exits 1 with "No previous client delegated proxy found".
* **htproxydestroy** deletes the delegation (exit 0, no output); afterwards the time tools
  fail, and a second destroy exits 1 with the DelegationException message.
* **htproxyinfo** never contacts the server (it still wants a URL argument): it prints the
  local credential chain, CA, EEC and proxy (PC), with status OK and the validity dates.
* **htcp** (the reference UI's https transfer tool, ``wmproxy-behaviour.md`` §4.2) uploads input
  sandbox files to the URIs of the registered JDL, which percent-encode the file names
  (``res%231.txt``): the files are stored under their own names and the job reads them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import zeep
from cryptography import x509

from tests.conftest import Pki, need_peer
from tests.integration.refclient import ReferenceClient, forget_default_delegation, reference_client
from tests.integration.service import Deployment
from tests.support import delegate, outputs, wait_for
from wmproxy.jdl import parse_jdl
from wmproxy.security.delegation import default_delegation_id
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import load_credential, sign_proxy_request

pytestmark = pytest.mark.integration

TOOLS = ("htproxyput", "htproxyrenew", "htproxyinfo", "htproxytime", "htproxyunixtime", "htproxydestroy", "htcp")
NOT_RFC = "the delegated credential is not an RFC 3820 proxy"


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        need_peer(f"gridsite-clients binaries missing: {', '.join(missing)}")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def run(tools: dict[str, str], deployment: Deployment, pki: Pki, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("htproxy-home")

    def run(tool: str, *args: str, user: str = "alice", url: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "WMPROXY_"))}
        env.update(X509_USER_PROXY=str(pki.users[user].proxy), X509_CERT_DIR=str(pki.ca_dir), TZ="UTC",
                   HOME=str(home))
        argv = [tools[tool], *args, *([deployment.endpoint] if url else [])]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)


@pytest.fixture(scope="module", autouse=True)
def no_default_delegation(alice: ReferenceClient, pki: Pki) -> None:
    """htproxyput asks getNewProxyReq, which is refused while alice's default delegation is
    valid: the module starts without one (the shared deployment may hold one that an earlier
    module made)."""
    with contextlib.suppress(zeep.exceptions.Fault):
        alice.deleg2.destroy(default_delegation_id(pki.users["alice"].dn))


def server_log(deployment: Deployment) -> str:
    return (deployment.state / "gunicorn.log").read_text(errors="replace")


def wait_for_log(deployment: Deployment, text: str, count: int) -> None:
    """htproxyput/htproxyrenew do not wait for putProxy's reply: wait for the server's refusal."""
    wait_for(lambda: server_log(deployment).count(text), lambda seen: seen >= count,
             what=f"the server to log {text!r} {count} times")


def ctime(epoch: int, zone: str | None = None) -> str:
    """``Sat Nov 21 12:16:07 [UTC ]2026`` (C ctime/date layout), whitespace-normalised."""
    parts = time.asctime(time.gmtime(epoch)).split()
    if zone:
        parts.insert(4, zone)
    return " ".join(parts)


def normalised(text: str) -> str:
    return " ".join(text.split())


def put_properly(alice: ReferenceClient, pki: Pki, delegation_id: str, lifetime: int = 4 * 3600) -> int:
    """Delegate with zeep + sign_proxy_request (an RFC 3820 proxy); returns its notAfter epoch."""
    delegate(alice, pki.users["alice"].proxy, delegation_id, lifetime=lifetime)
    return int(alice.deleg2.getTerminationTime(delegation_id).timestamp())


def htproxyput_refusals(deployment: Deployment) -> int:
    return server_log(deployment).count(NOT_RFC)


class TestHtproxyput:
    def test_non_rfc_proxy_is_refused_though_htproxyput_reports_success(
        self, run, deployment: Deployment, pki: Pki, alice: ReferenceClient
    ) -> None:
        default_id = default_delegation_id(pki.users["alice"].dn)
        before = htproxyput_refusals(deployment)
        put = run("htproxyput", "--delegation-id", "ignored-by-htproxyput")
        assert put.returncode == 0, put.stderr
        assert put.stdout.strip() == default_id  # the id getNewProxyReq chose, not ours
        wait_for_log(deployment, NOT_RFC, before + 1)  # putProxy's DelegationException

        for delegation_id in (default_id, "ignored-by-htproxyput"):
            unixtime = run("htproxyunixtime", "--delegation-id", delegation_id)
            assert unixtime.returncode != 0
            assert unixtime.stdout.strip() == ""
            assert "Client delegated proxy not found:  get termination time not allowed" in unixtime.stderr
            assert "DelegationException" in unixtime.stderr

    def test_htproxyput_fails_while_the_default_delegation_is_valid(
        self, run, deployment: Deployment, pki: Pki, alice: ReferenceClient
    ) -> None:
        forget_default_delegation(alice, pki.users["alice"].dn)  # another module's may be left
        csr = alice.deleg2.getNewProxyReq()
        signed = sign_proxy_request(csr.proxyRequest.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600)
        alice.deleg2.putProxy(csr.delegationID, signed.decode())
        try:
            put = run("htproxyput")
            assert put.returncode != 0
            assert "Previous client delegated proxy still valid" in put.stderr
            unixtime = run("htproxyunixtime", "--delegation-id", csr.delegationID)
            assert unixtime.returncode == 0, unixtime.stderr
            assert int(unixtime.stdout) == int(x509.load_pem_x509_certificate(signed).not_valid_after_utc.timestamp())
        finally:
            alice.deleg2.destroy(csr.delegationID)


class TestTimeTools:
    def test_htproxyunixtime_prints_not_after(self, run, alice: ReferenceClient, pki: Pki) -> None:
        end = put_properly(alice, pki, "gs-unixtime")
        result = run("htproxyunixtime", "--delegation-id", "gs-unixtime")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(end)

    def test_htproxytime_prints_not_after_as_local_time(self, run, alice: ReferenceClient, pki: Pki) -> None:
        end = put_properly(alice, pki, "gs-time")
        result = run("htproxytime", "--delegation-id", "gs-time")
        assert result.returncode == 0, result.stderr
        assert normalised(result.stdout) == ctime(end, "UTC")

    def test_unknown_delegation(self, run) -> None:
        for tool in ("htproxytime", "htproxyunixtime"):
            result = run(tool, "--delegation-id", "never-delegated")
            assert result.returncode != 0
            # the reference's text (§5.2), two spaces included
            assert "Client delegated proxy not found:  get termination time not allowed" in result.stderr

    def test_another_user_does_not_see_the_delegation(self, run, alice: ReferenceClient, pki: Pki) -> None:
        put_properly(alice, pki, "gs-private")
        result = run("htproxyunixtime", "--delegation-id", "gs-private", user="bob")
        assert result.returncode != 0
        assert "Client delegated proxy not found:  get termination time not allowed" in result.stderr


class TestHtproxyrenew:
    def test_renew_request_succeeds_but_its_non_rfc_proxy_is_refused_and_the_delegation_kept(
        self, run, deployment: Deployment, alice: ReferenceClient, pki: Pki
    ) -> None:
        end = put_properly(alice, pki, "gs-renew", lifetime=2 * 3600)
        before = htproxyput_refusals(deployment)
        result = run("htproxyrenew", "--delegation-id", "gs-renew")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "gs-renew"
        wait_for_log(deployment, NOT_RFC, before + 1)
        # the refused renewal left the stored proxy as it was, still usable
        assert int(alice.deleg2.getTerminationTime("gs-renew").timestamp()) == end
        unixtime = run("htproxyunixtime", "--delegation-id", "gs-renew")
        assert unixtime.returncode == 0 and unixtime.stdout.strip() == str(end)
        info = alice.wmproxy.getDelegatedProxyInfo("gs-renew")
        assert info.Type == "proxy" and int(info.EndTime) == end

    def test_renew_of_unknown_delegation_fails(self, run) -> None:
        result = run("htproxyrenew", "--delegation-id", "never-delegated")
        assert result.returncode != 0
        assert result.stdout.strip() == ""
        assert "No previous client delegated proxy found" in result.stderr


class TestHtproxydestroy:
    def test_destroy_removes_the_delegation(self, run, alice: ReferenceClient, pki: Pki) -> None:
        put_properly(alice, pki, "gs-destroy")
        result = run("htproxydestroy", "--delegation-id", "gs-destroy")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ""
        assert run("htproxyunixtime", "--delegation-id", "gs-destroy").returncode != 0
        again = run("htproxydestroy", "--delegation-id", "gs-destroy")
        assert again.returncode != 0
        assert "Unable to get delegated Proxy for delegation id 'gs-destroy'" in again.stderr

    def test_another_user_cannot_destroy(self, run, alice: ReferenceClient, pki: Pki) -> None:
        end = put_properly(alice, pki, "gs-keep")
        result = run("htproxydestroy", "--delegation-id", "gs-keep", user="bob")
        assert result.returncode != 0
        assert int(alice.deleg2.getTerminationTime("gs-keep").timestamp()) == end


class TestHtproxyinfo:
    def test_prints_the_local_proxy_chain(self, run, pki: Pki) -> None:
        # htproxyinfo wants a URL argument but never contacts it
        result = run("htproxyinfo", "unused-url", url=False)
        assert result.returncode == 0, result.stderr
        blocks = [b for b in result.stdout.strip().split("\n\n") if b.strip()]
        heads = [b.splitlines()[0] for b in blocks]
        proxy = x509.load_pem_x509_certificate(pki.users["alice"].proxy.read_bytes())
        assert heads == [f"0 (CA) {pki.ca.dn}", f"1 (EEC) {pki.users['alice'].dn}", f"2 (PC) {slash_dn(proxy.subject)}"]
        fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in blocks[2].splitlines()[1:]}
        assert fields["Status"] == "0 ( OK )"
        assert fields["Issuer"] == pki.users["alice"].dn
        assert normalised(fields["Finish"]) == ctime(int(proxy.not_valid_after_utc.timestamp()))
        assert normalised(fields["Start"]) == ctime(int(proxy.not_valid_before_utc.timestamp()))
        assert int(fields["Serial"]) == proxy.serial_number

    def test_another_credential_with_cert_option(self, run, pki: Pki) -> None:
        result = run("htproxyinfo", "--cert", str(pki.users["bob"].proxy), "unused-url", url=False)
        assert result.returncode == 0, result.stderr
        assert f"1 (EEC) {pki.users['bob'].dn}" in result.stdout
        assert re.search(rf"2 \(PC\) {re.escape(pki.users['bob'].dn)}/CN=[0-9]+", result.stdout)


class TestHtcp:
    def test_input_files_named_with_uri_delimiters_are_uploaded_to_the_registered_uris(
        self, run, alice: ReferenceClient, pki: Pki, tmp_path: Path
    ) -> None:
        put_properly(alice, pki, "gs-htcp")
        files = {"run.sh": "cat 'res#1.txt' 'a b%.txt'\n", "res#1.txt": "first\n", "a b%.txt": "second\n"}
        jdl = ('[ Executable = "/bin/sh"; Arguments = "run.sh"; StdOutput = "out.txt"; OutputSandbox = { "out.txt" };'
               ' InputSandbox = { "run.sh", "res#1.txt", "a b%.txt" }; ]')
        job = alice.wmproxy.jobRegister(jdl, "gs-htcp")
        dest = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
        entries = parse_jdl(alice.wmproxy.getJDL(job.id, "REGISTERED"))["InputSandbox"]
        assert entries == [f"{dest}/run.sh", f"{dest}/res%231.txt", f"{dest}/a%20b%25.txt"]
        for (name, text), uri in zip(files.items(), entries, strict=True):
            (tmp_path / name).write_text(text)
            put = run("htcp", str(tmp_path / name), uri, url=False)
            assert put.returncode == 0, put.stderr
        alice.wmproxy.jobStart(job.id)
        final = wait_for(lambda: alice.wmproxy.getJobStatus(job.id).status,
                         lambda status: status.startswith(("Done", "Aborted")), what=f"{job.id} to end")
        assert final == "Done (Exit Code 0)"
        assert outputs(alice, job.id)["out.txt"] == b"first\nsecond\n"


def test_every_tool_is_exercised() -> None:
    source = Path(__file__).read_text()
    for tool in TOOLS:
        assert source.count(f'run("{tool}"') >= 1, tool
