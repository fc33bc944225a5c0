"""The gLite options of every verb, the client configuration with failover, batches that go on
past a bad job, and errors a person understands (issue 12), against the real service and worker
(both databases). The texts are pinned: scripts and users read them."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.service import Deployment
from tests.support import wait_for_cli_status

pytestmark = pytest.mark.integration

CE = "ce2.example.org:8443/cream-pbs-long"
#: a well-formed job id (an id that is not one is refused before any connection)
SOME_JOB = "https://localhost:9000/AbCdEfGhIjKlMnOpQrStUv"


@pytest.fixture(scope="module")
def delegated(deployment: Deployment) -> str:
    rc, _, err = run_cli(deployment, "delegate-proxy", "-d", "opts")
    assert rc == 0, err
    return "opts"


def run_cli(deployment: Deployment, *args: str, proxy: Path | None = None, endpoint: bool = True,
            ca_dir: str | None = None) -> tuple[int, str, str]:
    """``wmproxy <args>`` as alice (or with ``proxy``); without ``$GLITE_WMS_WMPROXY_ENDPOINT``
    when ``endpoint`` is False, with ``$X509_CERT_DIR`` = ``ca_dir`` when given."""
    import subprocess

    from tests.integration.service import BIN

    env = dict(deployment.env)
    if endpoint:
        env["GLITE_WMS_WMPROXY_ENDPOINT"] = deployment.endpoint
    if proxy is not None:
        env["X509_USER_PROXY"] = str(proxy)
    if ca_dir is not None:
        env["X509_CERT_DIR"] = ca_dir
    done = subprocess.run([str(BIN / "wmproxy"), *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    return done.returncode, done.stdout, done.stderr


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def submit(deployment: Deployment, jdl: Path, *args: str) -> str:
    rc, out, err = run_cli(deployment, "submit", "--json", *args, str(jdl))
    assert rc == 0, err + out
    reply = json.loads(out)
    return str(reply.get("jobid") or reply["parent"])


def registered_jdl(deployment: Deployment, job_id: str) -> str:
    rc, out, err = run_cli(deployment, "info", "--jdl", job_id)
    assert rc == 0, err
    return out


def write_proxy_at(pki: Pki, path: Path, *, start: datetime, lifetime: int) -> Path:
    """A proxy issued at ``start`` (back-dated: no sleeping) of a user valid since long before."""
    from wmproxy.security.pki import _write
    from wmproxy.security.proxy import credential_pem, make_proxy

    user = pki.ca.issue_user("Olduser", not_after=datetime.now(UTC) + timedelta(days=30))
    proxy = make_proxy(user, lifetime=lifetime, now=start)
    _write(path, credential_pem(proxy), 0o600)
    return path


class TestProxyCheckedFirst:
    """The CLI says what is wrong with the proxy in words, before any connection."""

    def test_missing(self, deployment: Deployment, tmp_path: Path) -> None:
        rc, _out, err = run_cli(deployment, "status", "https://localhost:1/x", proxy=tmp_path / "absent")
        assert rc == 1
        assert err == (f"Error - ProxyError: no proxy file {tmp_path / 'absent'}: create one with voms-proxy-init "
                       "or grid-proxy-init, or set X509_USER_PROXY\n")

    def test_expired(self, deployment: Deployment, pki: Pki, tmp_path: Path) -> None:
        start = datetime.now(UTC) - timedelta(hours=3)
        proxy = write_proxy_at(pki, tmp_path / "old.pem", start=start, lifetime=3600)
        rc, _, err = run_cli(deployment, "status", "https://localhost:1/x", proxy=proxy)
        end = (start + timedelta(hours=1)).replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert rc == 1
        assert err == (f"Error - ProxyError: the proxy {proxy} expired at {end}: create one with voms-proxy-init "
                       "or grid-proxy-init\n")

    def test_not_a_proxy(self, deployment: Deployment, pki: Pki, tmp_path: Path) -> None:
        from wmproxy.security.proxy import credential_pem

        cert = tmp_path / "usercert-and-key.pem"
        cert.write_bytes(credential_pem(pki.users["alice"].credential))
        cert.chmod(0o600)
        rc, _, err = run_cli(deployment, "status", "https://localhost:1/x", proxy=cert)
        assert rc == 1
        assert err == (f"Error - ProxyError: {cert} holds a certificate that is not a proxy: create one with "
                       "voms-proxy-init or grid-proxy-init, or set X509_USER_PROXY\n")
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        junk.chmod(0o600)
        rc, _, err = run_cli(deployment, "status", "https://localhost:1/x", proxy=junk)
        assert rc == 1 and err.startswith(f"Error - ProxyError: {junk} is not a proxy file (")

    def test_another_users_or_an_open_proxy_is_refused(self, deployment: Deployment, pki: Pki,
                                                        tmp_path: Path) -> None:
        """Globus' rule (owner only, mode 0600 or 0400): another user's proxy, planted where the
        user's is looked for, is not used; nor is one others can read."""
        import os

        planted = pki.proxy("mallory", 3600)
        planted.chmod(0o644)
        rc, out, err = run_cli(deployment, "status", SOME_JOB, proxy=planted)
        assert (rc, out) == (1, "")
        assert err == (f"Error - ProxyError: the proxy file {planted} has mode 0644: a proxy must be readable and "
                       "writable by its owner only, as Globus requires (no permission for the group or others, no "
                       "execute bit): chmod 600 the file, or remove it and create a new proxy\n")
        if os.geteuid() == 0:
            planted.chmod(0o600)
            os.chown(planted, 65534, 65534)  # nobody's, as if nobody had written it
            rc, out, err = run_cli(deployment, "status", SOME_JOB, proxy=planted)
            assert (rc, out) == (1, "")
            assert err.startswith(f"Error - ProxyError: the proxy file {planted} belongs to uid 65534 (nobody), "
                                  "not to you (uid 0 (root)): it is not used")
        link = tmp_path / "x509up_link"
        link.symlink_to(pki.users["alice"].proxy)
        rc, out, err = run_cli(deployment, "status", SOME_JOB, proxy=link)
        assert (rc, out) == (1, "")
        assert err.startswith(f"Error - ProxyError: the proxy file {link} is a symbolic link, which is not followed")

    def test_less_than_the_service_minimum(self, deployment: Deployment, pki: Pki, tmp_path: Path,
                                           delegated: str) -> None:
        short = pki.proxy("alice", 10 * 60)
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        rc, out, err = run_cli(deployment, "submit", "-a", str(tmp_path / "j.jdl"), proxy=short)
        assert (rc, out) == (1, "")
        assert re.fullmatch(
            rf"Error - ProxyError: the proxy {re.escape(str(short))} has [0-9] minutes left; the service needs at "
            r"least 20 minutes \(default \[jobs\] min_proxy_lifetime\) to register jobs with it: renew it with "
            r"voms-proxy-init or grid-proxy-init\n", err)
        # delegating it is only a warning (a service may be configured for short proxies); reading needs
        # no minimum, nor does submitting with a proxy delegated earlier
        rc, out, err = run_cli(deployment, "delegate-proxy", "-d", "short", proxy=short)
        assert rc == 0 and err.startswith(f"Warning - the proxy {short} has ")
        rc, _, err = run_cli(deployment, "status", "--version", proxy=short)
        assert (rc, err) == (0, "")
        rc, _, err = run_cli(deployment, "submit", "-d", delegated, str(tmp_path / "j.jdl"), proxy=short)
        assert rc == 0, err


class TestConnectionErrors:
    def test_http_scheme(self, deployment: Deployment) -> None:
        url = deployment.endpoint.replace("https://", "http://")
        rc, _, err = run_cli(deployment, "status", "--endpoint", url, "https://localhost/x")
        assert rc == 1
        assert err == (f"Error - Configuration: the endpoint {url} uses http://: a WMProxy is reached over https:// "
                       f"only ({deployment.endpoint})\n")

    def test_unreachable(self, deployment: Deployment) -> None:
        port = closed_port()
        rc, _, err = run_cli(deployment, "status", "--endpoint", f"https://localhost:{port}/glite_wms_wmproxy_server",
                             SOME_JOB)
        assert rc == 1
        assert err == (f"Error - ConnectionError: cannot connect to localhost:{port}: connection refused "
                       "(no service listening there)\n")

    def test_untrusted_service_and_json_error(self, deployment: Deployment, tmp_path: Path) -> None:
        from wmproxy.security.pki import create_ca

        other = create_ca(tmp_path / "other-ca", key_path=tmp_path / "other-key.pem")
        del other
        env_dir = str(tmp_path / "other-ca")
        rc, out, err = run_cli(deployment, "status", "--json", "https://localhost/x", ca_dir=env_dir)
        assert rc == 1 and err == ""
        error = json.loads(out)["error"]
        assert error["type"] == "TLSError"
        assert error["message"].startswith(
            f"the certificate of localhost:{deployment.port} is not trusted by the CA directory (X509_CERT_DIR)")
        rc, out, err = run_cli(deployment, "status", "https://localhost/x", ca_dir=env_dir)
        assert rc == 1 and len(err.splitlines()) == 1 and err.startswith("Error - TLSError: the certificate of ")


class TestConfiguration:
    def test_failover_to_the_next_endpoint_and_version(self, deployment: Deployment, tmp_path: Path) -> None:
        dead = f"https://localhost:{closed_port()}/glite_wms_wmproxy_server"
        conf = tmp_path / "client.conf"
        conf.write_text(f"[client]\nendpoints = {dead}\n            {deployment.endpoint}\n")
        rc, out, err = run_cli(deployment, "status", "--version", "-c", str(conf), endpoint=False)
        assert rc == 0, err
        assert err.startswith(f"Warning - {dead}: cannot connect to localhost:")
        assert "switching to the next WMProxy server" in err
        assert f"Connecting to the service {deployment.endpoint}\n" in out
        assert re.search(r"^WMProxy Version: \d+\.\d+\.\d+$", out, re.MULTILINE)
        rc, out, err = run_cli(deployment, "cancel", "--version", "--json", "-c", str(conf), endpoint=False)
        assert rc == 0, err
        assert json.loads(out)["endpoint"] == deployment.endpoint

    def test_no_endpoint_answers(self, deployment: Deployment, tmp_path: Path) -> None:
        dead = [f"https://localhost:{closed_port()}/w", f"https://localhost:{closed_port()}/w"]
        conf = tmp_path / "client.conf"
        conf.write_text(f"[client]\nendpoints = {dead[0]}, {dead[1]}\n")
        rc, _, err = run_cli(deployment, "status", "-c", str(conf), SOME_JOB, endpoint=False)
        assert rc == 1
        assert err.splitlines()[-1].startswith(f"Error - ConnectionError: unable to contact any specified endpoint: "
                                               f"{dead[0]} (cannot connect to")

    def test_glite_classad_configuration_sets_vo_and_defaults(
        self, deployment: Deployment, delegated: str, tmp_path: Path
    ) -> None:
        conf = tmp_path / "glite_wms.conf"
        conf.write_text('[ WmsClient = [ VirtualOrganisation = "dteam";\n'
                        f'  WMProxyEndpoints = {{"{deployment.endpoint}"}};\n'
                        '  JdlDefaultAttributes = [ RetryCount = 2; ShallowRetryCount = 1; ]; ]; ]\n')
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; RetryCount = 0; ]')
        job = submit(deployment, tmp_path / "j.jdl", "-c", str(conf), "-d", delegated)
        jdl = registered_jdl(deployment, job)
        assert 'VirtualOrganisation = "dteam"' in jdl
        assert "ShallowRetryCount = 1" in jdl and "RetryCount = 0" in jdl  # the JDL's own value wins

    def test_bad_configuration_file(self, deployment: Deployment, tmp_path: Path) -> None:
        conf = tmp_path / "bad.conf"
        conf.write_text("[client]\nendpoint = https://x\n")
        rc, _, err = run_cli(deployment, "status", "-c", str(conf), SOME_JOB)
        assert (rc, err) == (1, f"Error - Configuration: {conf}: unknown key(s) in [client]: endpoint\n")


class TestSubmitOptions:
    def test_resource_and_valid(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        before = int(time.time())
        job = submit(deployment, tmp_path / "j.jdl", "-d", delegated, "-r", CE, "--valid", "01:30")
        jdl = registered_jdl(deployment, job)
        assert f'SubmitTo = "{CE}"' in jdl
        expiry = int(re.search(r"ExpiryTime = (\d+)", jdl).group(1))  # type: ignore[union-attr]
        assert before + 5400 <= expiry <= int(time.time()) + 5400
        wait_for_cli_status(deployment, job, ("Done",))

    def test_ce_file_and_to(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
        (tmp_path / "ces").write_text(f"# CEs\n{CE}\nce1.example.org:8443/cream-pbs-short\n")
        job = submit(deployment, tmp_path / "j.jdl", "-d", delegated, "--noint", "-i", str(tmp_path / "ces"),
                     "--to", "23:59:2099")
        jdl = registered_jdl(deployment, job)
        assert f'SubmitTo = "{CE}"' in jdl
        expiry = int(re.search(r"ExpiryTime = (\d+)", jdl).group(1))  # type: ignore[union-attr]
        local = datetime.fromtimestamp(expiry).astimezone()
        assert (local.hour, local.minute, local.year) == (23, 59, 2099)
        rc, _, err = run_cli(deployment, "submit", "-d", delegated, "--valid", "1h", str(tmp_path / "j.jdl"))
        assert rc == 1 and "'1h' is not hh:mm" in err

    def test_default_jdl_and_nodes_resource(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "defaults.jdl").write_text('[ VirtualOrganisation = "dteam"; MyProxyServer = ""; ]')
        (tmp_path / "c.jdl").write_text('[ Type = "collection"; Nodes = { [ Executable = "/bin/true"; ], '
                                        '[ Executable = "/bin/true"; ] }; ]')
        job = submit(deployment, tmp_path / "c.jdl", "-d", delegated, "--default-jdl", str(tmp_path / "defaults.jdl"),
                     "--nodes-resource", CE)
        rc, out, err = run_cli(deployment, "info", "-j", job)
        assert rc == 0, err
        assert out.count(f'SubmitTo = "{CE}"') == 2
        assert 'VirtualOrganisation = "dteam"' in out

    def test_register_only_names_the_files_to_transfer(
        self, deployment: Deployment, delegated: str, tmp_path: Path
    ) -> None:
        (tmp_path / "in.txt").write_text("data\n")
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/cat"; Arguments = "in.txt"; InputSandbox = {"in.txt"}; ]')
        rc, out, err = run_cli(deployment, "submit", "-d", delegated, "--register-only", str(tmp_path / "j.jdl"))
        assert rc == 0, err
        assert re.search(r"The following local input sandbox file\(s\) must be transferred to\nhttps://\S+/input\n"
                         rf"before the job is started:\n - {re.escape(str(tmp_path / 'in.txt'))}\n", out)

    def test_delegate_automatic_prints_the_id(self, deployment: Deployment, pki: Pki) -> None:
        from wmproxy.security.delegation import default_delegation_id

        rc, out, err = run_cli(deployment, "delegate-proxy", "-a")
        assert rc == 0, err
        did = default_delegation_id(pki.users["alice"].dn)
        assert f"with the delegation identifier: {did}\n" in out


class TestBatches:
    def test_output_of_a_jobid_file_twice(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/echo"; Arguments = "hi"; StdOutput = "o.txt";'
                                        ' OutputSandbox = {"o.txt"}; ]')
        ids = tmp_path / "jobs.txt"
        first = [submit(deployment, tmp_path / "j.jdl", "-d", delegated, "-o", str(ids)) for _ in range(2)]
        for job in first:
            wait_for_cli_status(deployment, job, ("Done",))
        rc, out, err = run_cli(deployment, "output", "-i", str(ids), "--dir", str(tmp_path / "out"))
        assert rc == 0, err
        assert out.count("have been successfully retrieved and stored in the directory:") == 2
        third = submit(deployment, tmp_path / "j.jdl", "-d", delegated, "-o", str(ids))
        wait_for_cli_status(deployment, third, ("Done",))
        rc, out, err = run_cli(deployment, "output", "-i", str(ids), "--dir", str(tmp_path / "out"))
        assert rc == 0, err
        for job in first:
            assert f"Note - {job}: the output was already retrieved (job Cleared): skipped\n" in err
        assert out.count("have been successfully retrieved") == 1 and third in out
        unique = third.rsplit("/", 1)[-1]
        assert next((tmp_path / "out").glob(f"*_{unique}")).joinpath("o.txt").read_text() == "hi\n"
        rc, out, err = run_cli(deployment, "output", first[0], "--dir", str(tmp_path / "again"))
        assert rc == 1 and "the output of this job has already been retrieved (the job is Cleared)" in err

    def test_cancel_goes_on_past_a_bad_id(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/sleep"; Arguments = "300"; ]')
        jobs = [submit(deployment, tmp_path / "j.jdl", "-d", delegated) for _ in range(2)]
        bad = jobs[0].rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAAAAAAAA"
        rc, out, err = run_cli(deployment, "cancel", "--noint", jobs[0], bad, jobs[1])
        assert rc == 1
        assert f"- {jobs[0]}\n- {jobs[1]}\n" in out
        assert f"Error - {bad}: JobUnknownFault: " in err
        assert err.endswith("Error - 1 of 3 job(s) could not be cancelled\n")
        for job in jobs:
            wait_for_cli_status(deployment, job, ("Cancelled",))


class TestOutputOptions:
    def test_missing_declared_file_list_only_and_nosubdir(
        self, deployment: Deployment, delegated: str, tmp_path: Path
    ) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/echo"; Arguments = "x"; StdOutput = "o.txt";'
                                        ' OutputSandbox = {"o.txt", "never.txt"}; ]')
        job = submit(deployment, tmp_path / "j.jdl", "-d", delegated)
        wait_for_cli_status(deployment, job, ("Done",))
        rc, out, err = run_cli(deployment, "output", "--list-only", job)
        assert rc == 0, err
        assert re.search(rf"Output sandbox files for the job:\n{re.escape(job)}\n\n - https://\S+/o\.txt\n"
                         r"   size \(bytes\): 2\n", out)
        rc, out, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "flat"), job)
        assert rc == 0, err
        assert (tmp_path / "flat" / "o.txt").read_text() == "x\n"
        assert "successfully retrieved" not in out
        assert (f"have been retrieved and stored in the directory:\n{tmp_path / 'flat'}\n"
                "but these declared output files are missing: never.txt\n") in out
        assert (f"Warning - {job}: output file never.txt declared in OutputSandbox was not produced by the job "
                "(missing)\n") in err


class TestJdlOnTheClient:
    def test_syntax_error_has_line_and_column(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "bad.jdl").write_text('[\n  Executable = "/bin/true";\n  Arguments = ;\n]\n')
        rc, out, err = run_cli(deployment, "submit", "-d", delegated, str(tmp_path / "bad.jdl"))
        assert rc == 1 and out == ""
        assert err.startswith(f"Error - JDL: {tmp_path / 'bad.jdl'}: syntax error at line 3, column 3: "
                              "'Arguments = ;' (")

    def test_file_nodes_environment_and_param_directories(
        self, deployment: Deployment, delegated: str, tmp_path: Path
    ) -> None:
        (tmp_path / "a.jdl").write_text('[ Executable = "/bin/sh"; Arguments = "-c \\"echo $GREETING\\"";'
                                        ' Environment = {"GREETING=\'hi there\'"}; StdOutput = "a.out";'
                                        ' OutputSandbox = {"a.out"}; ]')
        (tmp_path / "dag.jdl").write_text('[ Type = "dag"; Nodes = { [ NodeName = "A"; file = "a.jdl"; ],\n'
                                          '  [ NodeName = "B"; Executable = "/bin/true"; ] };\n'
                                          '  Dependencies = { { A, B } }; ]\n')
        dag = submit(deployment, tmp_path / "dag.jdl", "-d", delegated)
        wait_for_cli_status(deployment, dag, ("Done",))
        rc, _, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "dag-out"), dag)
        assert rc == 0, err
        assert (tmp_path / "dag-out" / "A" / "a.out").read_text() == "hi there\n"
        for value in ("1", "2"):
            (tmp_path / f"run{value}").mkdir()
            (tmp_path / f"run{value}" / f"in{value}.txt").write_text(f"input {value}\n")
        (tmp_path / "p.jdl").write_text('[ JobType = "parametric"; Parameters = {"1", "2"}; Executable = "/bin/cat";'
                                        ' Arguments = "in_PARAM_.txt"; InputSandbox = {"run_PARAM_/in_PARAM_.txt"};'
                                        ' StdOutput = "o_PARAM_.txt"; OutputSandbox = {"o_PARAM_.txt"}; ]')
        parametric = submit(deployment, tmp_path / "p.jdl", "-d", delegated)
        wait_for_cli_status(deployment, parametric, ("Done",))
        rc, _out, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "p-out"), parametric)
        assert rc == 0, err
        got = sorted(p.read_text() for p in (tmp_path / "p-out").glob("*/o*.txt"))
        assert got == ["input 1\n", "input 2\n"]

    def test_input_sandbox_base_uri(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; InputSandboxBaseURI = "gsiftp://se.example.org/d";'
                                        ' InputSandbox = {"rel/in.txt"}; ]')
        rc, out, err = run_cli(deployment, "submit", "-d", delegated, "--register-only", "--json",
                               str(tmp_path / "j.jdl"))
        refused = json.loads(out)  # nothing registered: the service fetches no remote input sandbox file
        assert rc != 0 and refused["result"] == "failure" and refused["error"]["type"] == "JDL", out
        assert "InputSandboxBaseURI 'gsiftp://se.example.org/d' is not allowed" in refused["error"]["message"]

        (tmp_path / "d" / "rel").mkdir(parents=True)
        (tmp_path / "d" / "rel" / "in.txt").write_text("in\n")
        (tmp_path / "f.jdl").write_text(f'[ Executable = "/bin/true"; InputSandboxBaseURI = "file://{tmp_path / "d"}";'
                                        ' InputSandbox = {"rel/in.txt"}; ]')
        rc, out, err = run_cli(deployment, "submit", "-d", delegated, "--register-only", "--json",
                               str(tmp_path / "f.jdl"))
        assert rc == 0, err  # a file:// base names local files, uploaded as any other
        assert "in.txt" in registered_jdl(deployment, json.loads(out)["jobid"])


def test_logfile_and_debug(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    rc, _, err = run_cli(deployment, "delegate-proxy", "-d", delegated, "--logfile", str(log), "--debug")
    assert rc == 0, err
    text = log.read_text()
    assert f"wmproxy delegate-proxy -d {delegated} --logfile {log} --debug" in text
    assert "putProxy" in text and "putProxy" in err
    assert "PRIVATE KEY" not in text + err and "BEGIN CERTIFICATE" not in text + err
