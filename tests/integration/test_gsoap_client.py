"""The service against a gSOAP C++ client generated from the REFERENCE WSDL (tests/gsoap/).

gSOAP reads only reply elements whose name and namespace match the WSDL (unqualified parts and
members, typed fault details in the port's namespace) and leaves the rest empty, so every field
the client prints is checked for its value. Each call runs with ``--dump`` and a failing
assertion shows the raw HTTP exchange; ``WMPROXY_GSOAP_WIRE_LOG=<file>`` appends every exchange to
that file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Pki, need_peer
from tests.gsoap.build import BuildFailed, ToolchainMissing, build
from tests.integration.refclient import forget_default_delegation, reference_client
from tests.integration.service import Deployment
from tests.support import ECHO_JDL, wait_for_job_state
from wmproxy.security.proxy import load_credential, sign_proxy_request

pytestmark = pytest.mark.integration

JDL = ECHO_JDL
JOB_ID = re.compile(r"^https://[^/:]+:\d+/[A-Za-z0-9_-]{22}$")
UNKNOWN_JOB = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"


@dataclass
class Reply:
    argv: list[str]
    returncode: int
    fields: dict[str, str]
    stdout: str
    stderr: str = field(repr=False)

    def __getitem__(self, key: str) -> str:
        assert key in self.fields, f"wmpclient printed no {key!r}\n{self}"
        return self.fields[key]

    def items(self, key: str) -> list[str]:
        return [self[f"{key}[{i}]"] for i in range(int(self[f"{key}.count"]))]

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv[1:])}\nexit {self.returncode}\n--- stdout\n{self.stdout}"
                f"--- wire (stderr)\n{self.stderr}")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


@dataclass
class GSoapClient:
    binary: Path
    endpoint: str
    proxy: Path
    ca_dir: Path
    scratch: Path

    def run(self, op: str, *args: str) -> Reply:
        argv = [str(self.binary), "--dump", self.endpoint, str(self.proxy), str(self.ca_dir), op, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        fields = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = _unescape(value)
        reply = Reply(argv, result.returncode, fields, result.stdout, result.stderr)
        if log := os.environ.get("WMPROXY_GSOAP_WIRE_LOG"):
            with open(log, "a") as out:
                out.write(f"{reply}\n\n")
        return reply

    def ok(self, op: str, *args: str) -> Reply:
        reply = self.run(op, *args)
        assert reply.returncode == 0, f"{op} failed\n{reply}"
        return reply

    def fault(self, op: str, *args: str) -> Reply:
        reply = self.run(op, *args)
        assert reply.returncode == 2, f"{op}: expected a SOAP fault\n{reply}"
        return reply

    def file(self, name: str, content: str) -> str:
        path = self.scratch / name
        path.write_text(content)
        return str(path)

    def delegate(self, delegation_id: str, port: str = "", lifetime: int = 6 * 3600,
                 signer: Path | None = None) -> Reply:
        """getProxyReq + putProxy through gSOAP on one namespace ('' = delegation-2, '1', 'W')."""
        key = "request" if port == "W" else "getProxyReqReturn"
        csr = self.ok(f"getProxyReq{port}", delegation_id)[key]
        assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----"), csr
        signed = sign_proxy_request(csr.encode(), load_credential(signer or self.proxy), lifetime=lifetime)
        return self.run(f"putProxy{port}", delegation_id, self.file(f"signed-{delegation_id}.pem", signed.decode()))


@pytest.fixture(scope="session")
def wmpclient() -> Path:
    try:
        return build()
    except ToolchainMissing as exc:
        need_peer(f"gSOAP toolchain: {exc}")
    except BuildFailed as exc:
        pytest.fail(str(exc))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def alice(wmpclient: Path, deployment: Deployment, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> GSoapClient:
    return GSoapClient(wmpclient, deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir,
                       tmp_path_factory.mktemp("gsoap"))


@pytest.fixture(scope="module")
def delegation(alice: GSoapClient) -> str:
    reply = alice.delegate("gsoap-jobs")
    assert reply.returncode == 0, str(reply)
    return "gsoap-jobs"


def register(client: GSoapClient, delegation: str) -> Reply:
    return client.ok("jobRegister", client.file("job.jdl", JDL), delegation)


def wait_for_final(client: GSoapClient, job_id: str) -> str:
    """The job's status text through the gSOAP client once it has ended."""
    return wait_for_job_state(lambda: str(client.ok("getJobStatus", job_id)["status"]), job=job_id)


def assert_base_fault(reply: Reply, element: str, code: str, method: str) -> None:
    assert reply["fault.detail"] == "1", f"fault without a <detail> gSOAP could read\n{reply}"
    assert reply["fault.element"] == element, str(reply)
    assert reply["fault.ns"] == "http://glite.org/wms/wmproxy"
    assert reply["fault.ErrorCode"] == code, str(reply)
    assert reply["fault.methodName"] == method, str(reply)
    assert reply["fault.Description"] and reply["fault.Description"] == reply["fault.string"], str(reply)
    assert abs(int(reply["fault.Timestamp"]) - time.time()) < 300, str(reply)


class TestVersions:
    def test_wmproxy_version(self, alice: GSoapClient) -> None:
        assert alice.ok("getVersion")["version"] == "3.5.0"

    def test_delegation2_version(self, alice: GSoapClient) -> None:
        assert alice.ok("getVersion2")["getVersionReturn"] == "2.0.0"

    def test_delegation2_interface_version(self, alice: GSoapClient) -> None:
        assert alice.ok("getInterfaceVersion")["getInterfaceVersionReturn"] == "2.0.0"

    def test_transfer_protocols(self, alice: GSoapClient) -> None:
        reply = alice.ok("getTransferProtocols")
        assert reply["items.nil"] == "0", str(reply)
        assert reply.items("items.Item") == ["https"], str(reply)

    def test_max_input_sandbox_size(self, alice: GSoapClient) -> None:
        assert alice.ok("getMaxInputSandboxSize")["size"] == "1000000"


class TestDelegation:
    @pytest.mark.parametrize("port", ["", "1", "W"], ids=["delegation-2", "delegation-1", "wmproxy"])
    def test_get_proxy_req_put_proxy_and_termination_time(self, alice: GSoapClient, port: str) -> None:
        reply = alice.delegate(f"gsoap-d{port or '2'}", port=port)
        assert reply.returncode == 0 and reply["ok"] == "1", str(reply)
        end = dt.datetime.fromtimestamp(int(alice.ok("getTerminationTime", f"gsoap-d{port or '2'}")
                                            ["getTerminationTimeReturn"]), dt.UTC)
        now = dt.datetime.now(dt.UTC)
        assert now + dt.timedelta(hours=5) < end <= now + dt.timedelta(hours=6, minutes=5)

    def test_new_proxy_req_renew_and_destroy(self, alice: GSoapClient, deployment: Deployment, pki: Pki) -> None:
        forget_default_delegation(reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir),
                                  pki.users["alice"].dn)  # another module's may be left
        new = alice.ok("getNewProxyReq")
        assert new["getNewProxyReqReturn.nil"] == "0", str(new)
        assert (new["proxyRequest.nil"], new["delegationID.nil"]) == ("0", "0"), str(new)
        assert new["proxyRequest"].startswith("-----BEGIN CERTIFICATE REQUEST-----"), str(new)
        delegation_id = new["delegationID"]
        assert len(delegation_id) == 16, str(new)
        signed = sign_proxy_request(new["proxyRequest"].encode(), load_credential(alice.proxy), lifetime=3600)
        alice.ok("putProxy", delegation_id, alice.file("new.pem", signed.decode()))
        csr = alice.ok("renewProxyReq", delegation_id)["renewProxyReqReturn"]
        assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        signed = sign_proxy_request(csr.encode(), load_credential(alice.proxy), lifetime=7200)
        alice.ok("putProxy", delegation_id, alice.file("renewed.pem", signed.decode()))
        end = int(alice.ok("getTerminationTime", delegation_id)["getTerminationTimeReturn"])
        assert end > time.time() + 5400
        assert alice.ok("destroy", delegation_id)["ok"] == "1"
        assert alice.fault("getTerminationTime", delegation_id)["fault.element"] == "DelegationException"

    def test_put_proxy_signed_by_another_user_gives_delegation_exception(self, alice: GSoapClient, pki: Pki) -> None:
        reply = alice.delegate("gsoap-stolen", signer=pki.users["bob"].proxy, lifetime=3600)
        assert reply.returncode == 2, str(reply)
        assert reply["fault.element"] == "DelegationException", str(reply)
        assert reply["fault.ns"] == "http://www.gridsite.org/namespaces/delegation-2"
        assert reply["fault.msg.nil"] == "0" and "does not belong to the caller" in reply["fault.msg"], str(reply)

    def test_unknown_delegation_termination_time(self, alice: GSoapClient) -> None:
        reply = alice.fault("getTerminationTime", "gsoap-never-delegated")
        assert reply["fault.element"] == "DelegationException", str(reply)
        assert reply["fault.msg"], str(reply)

    def test_delegation1_fault_carries_message(self, alice: GSoapClient) -> None:
        reply = alice.fault("putProxy1", "gsoap-never-requested", alice.file("garbage.pem", "garbage"))
        assert reply["fault.element"] == "DelegationException", str(reply)
        assert reply["fault.ns"] == "http://www.gridsite.org/namespaces/delegation-1"
        assert reply["fault.message.nil"] == "0" and reply["fault.message"], str(reply)


class TestJobs:
    def test_register_returns_id_nil_name_and_path(self, alice: GSoapClient, delegation: str,
                                                   deployment: Deployment) -> None:
        reply = register(alice, delegation)
        assert reply["jobIdStruct.nil"] == "0", str(reply)
        job_id = reply["id"]
        assert JOB_ID.match(job_id), str(reply)
        assert reply["name.nil"] == "1", str(reply)
        assert reply["path.nil"] == "0", str(reply)
        assert re.match(r"^SandboxDir/[^/]{2}/[^/]+/input$", reply["path"]), str(reply)
        assert reply["childrenJob.count"] == "0"
        status = alice.ok("getJobStatus", job_id)
        assert status["JobStatusStruct.nil"] == "0", str(status)
        assert (status["jobid"], status["status"], status["childrenJob.count"]) == (job_id, "Submitted", "0")
        for protocol in ("", "https"):
            uris = alice.ok("getSandboxDestURI", job_id, protocol)
            assert uris["path.nil"] == "0", str(uris)
            assert uris.items("path.Item") == [f"https://localhost:{deployment.port}/{reply['path']}"], str(uris)

    def test_bulk_dest_uri_nests_item_in_item(self, alice: GSoapClient, delegation: str,
                                              deployment: Deployment) -> None:
        job = register(alice, delegation)
        bulk = alice.ok("getSandboxBulkDestURI", job["id"], "https")
        assert (bulk["DestURIsStructType.nil"], bulk["Item.count"]) == ("0", "1"), str(bulk)
        assert bulk["Item[0].id"] == job["id"], str(bulk)
        assert bulk.items("Item[0].Item") == [f"https://localhost:{deployment.port}/{job['path']}"], str(bulk)

    def test_submit_runs_the_job(self, alice: GSoapClient, delegation: str) -> None:
        job = alice.ok("jobSubmit", alice.file("job.jdl", JDL), delegation)
        assert JOB_ID.match(job["id"]) and job["name.nil"] == "1" and job["path"].endswith("/input"), str(job)
        assert wait_for_final(alice, job["id"]) == "Done (Exit Code 0)"

    def test_start_run_output_jdl_and_purge(self, alice: GSoapClient, delegation: str) -> None:
        job_id = register(alice, delegation)["id"]
        assert alice.ok("jobStart", job_id)["ok"] == "1"
        assert wait_for_final(alice, job_id) == "Done (Exit Code 0)"
        files = alice.ok("getOutputFileList", job_id, "")
        assert files["OutputFileAndSizeList.nil"] == "0", str(files)
        count = int(files["file.count"])
        sizes = {files[f"file[{i}].name"].rsplit("/", 1)[-1]: int(files[f"file[{i}].size"]) for i in range(count)}
        assert sizes == {"std.out": len("hello grid\n"), "std.err": 0}, str(files)
        assert all(files[f"file[{i}].name"].startswith("https://") for i in range(count)), str(files)
        original = alice.ok("getJDL", job_id, "ORIGINAL")["jdl"]
        assert "/bin/echo" in original and "edg_jobid" not in original
        registered = alice.ok("getJDL", job_id, "REGISTERED")["jdl"]
        for attribute in ("edg_jobid", "CertificateSubject", "WMPInputSandboxBaseURI", "OutputSandboxPath"):
            assert attribute in registered, registered
        assert job_id in registered
        assert alice.ok("jobPurge", job_id)["ok"] == "1"
        assert alice.ok("getJobStatus", job_id)["status"] == "Cleared"

    def test_second_start_reads_operation_not_allowed_detail(self, alice: GSoapClient, delegation: str) -> None:
        job_id = register(alice, delegation)["id"]
        alice.ok("jobStart", job_id)
        assert_base_fault(alice.fault("jobStart", job_id), "OperationNotAllowedFault", "1226", "jobStart")

    def test_cancel_of_a_registered_job(self, alice: GSoapClient, delegation: str) -> None:
        job_id = register(alice, delegation)["id"]
        assert alice.ok("jobCancel", job_id)["ok"] == "1"
        assert alice.ok("getJobStatus", job_id)["status"] == "Cancelled (Cancelled by user)"
        assert_base_fault(alice.fault("jobCancel", job_id), "OperationNotAllowedFault", "1226", "jobCancel")

    @pytest.mark.parametrize(
        ("op", "args"),
        [("jobStart", ()), ("jobCancel", ()), ("jobPurge", ()), ("getJDL", ("ORIGINAL",)),
         ("getOutputFileList", ("",)), ("getSandboxDestURI", ("https",))],
    )
    def test_unknown_job_reads_job_unknown_detail(self, alice: GSoapClient, op: str, args: tuple[str, ...]) -> None:
        assert_base_fault(alice.fault(op, UNKNOWN_JOB, *args), "JobUnknownFault", "1218", op)

    def test_register_with_unknown_delegation_reads_authorization_detail(self, alice: GSoapClient) -> None:
        reply = alice.fault("jobRegister", alice.file("job.jdl", JDL), "gsoap-no-such-delegation")
        assert reply["fault.element"] == "AuthorizationFault", str(reply)
        assert reply["fault.ErrorCode"].startswith("12"), str(reply)
