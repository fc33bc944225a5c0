"""Bad input gets a typed fault or HTTP error and leaves no row or file behind."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zeep
from lxml import etree

from tests.conftest import Pki
from tests.fuzz.support import deployment_footprint
from tests.integration.refclient import (
    SOAP,
    WMP,
    ReferenceClient,
    fault_detail,
    reference_client,
    session_for,
)
from tests.integration.service import Deployment
from tests.support import ECHO_JDL as JDL
from tests.support import delegate
from wmproxy.config import load_settings

pytestmark = pytest.mark.integration

BASE_FAULT_FIELDS = ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "bad-input")
    return ref


@pytest.fixture
def footprint(deployment: Deployment):
    """Rows (jobs, queue, delegations, requests) and the sandbox tree, to compare before/after."""
    return lambda: deployment_footprint(deployment.config)


def post_raw(deployment: Deployment, pki: Pki, body: bytes) -> tuple[int, etree._Element]:
    session = session_for(pki.users["alice"].proxy, pki.ca_dir)
    reply = session.post(deployment.endpoint, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
    return reply.status_code, etree.fromstring(reply.content)


def typed_fault(envelope: etree._Element) -> etree._Element:
    fault = envelope.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None
    assert fault.findtext("faultstring")
    detail = fault.find("detail")
    assert detail is not None and len(detail) == 1
    assert [c.tag for c in detail[0]] == BASE_FAULT_FIELDS
    return detail[0]


class TestMalformedRequests:
    def test_malformed_xml_gets_invalid_argument_fault(self, deployment: Deployment, pki: Pki) -> None:
        status, envelope = post_raw(deployment, pki, b"<not-xml")
        assert status == 500
        detail = typed_fault(envelope)
        assert etree.QName(detail) == etree.QName(WMP, "InvalidArgumentFault")
        assert "Malformed SOAP request" in detail.findtext("Description")

    def test_unknown_operation_gets_typed_fault(self, deployment: Deployment, pki: Pki) -> None:
        body = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:noSuchOperation xmlns:w="{WMP}"/></e:Body>'
                "</e:Envelope>").encode()
        status, envelope = post_raw(deployment, pki, body)
        assert status == 500
        detail = typed_fault(envelope)
        assert detail.findtext("methodName") == "noSuchOperation"
        assert "Unknown operation" in detail.findtext("Description")

    def test_unknown_namespace_gets_typed_fault(self, deployment: Deployment, pki: Pki) -> None:
        body = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><x:getVersion xmlns:x="urn:other"/></e:Body>'
                "</e:Envelope>").encode()
        status, envelope = post_raw(deployment, pki, body)
        assert status == 500
        typed_fault(envelope)

    def test_entity_expansion_is_not_performed(self, deployment: Deployment, pki: Pki) -> None:
        body = (
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getJDL xmlns:w="{WMP}"><jobId>&x;</jobId>'
            "<type>ORIGINAL</type></w:getJDL></e:Body></e:Envelope>"
        ).encode()
        status, envelope = post_raw(deployment, pki, body)
        assert b"root:" not in etree.tostring(envelope)
        assert status == 500
        assert "DTD" in typed_fault(envelope).findtext("Description")


class TestRejectedRegistrations:
    @pytest.mark.parametrize(
        ("jdl", "fault", "text"),
        [
            ("[ Executable = ; ]", "InvalidArgumentFault", "Unable to parse JDL"),
            ('[ Arguments = "x"; ]', "InvalidArgumentFault", "Mandatory attribute Executable not set"),
            ('[ Type = "weird"; Executable = "/bin/true"; ]', "GenericFault", "Invalid Job Type"),
            ('[ Executable = "/bin/true"; edg_jobid = "x"; ]', "InvalidArgumentFault",
             "jobid attribute already exists"),
        ],
    )
    def test_bad_jdl(self, alice: ReferenceClient, footprint, jdl: str, fault: str, text: str) -> None:
        before = footprint()
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(jdl, "bad-input")
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == fault
        assert text in detail.findtext("Description")
        assert detail.findtext("methodName") == "jobRegister"
        assert footprint() == before

    def test_missing_delegation(self, alice: ReferenceClient, footprint) -> None:
        before = footprint()
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobSubmit(JDL, "never-delegated")
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == "AuthorizationFault"
        assert detail.findtext("ErrorCode") == "1215"
        assert footprint() == before

    def test_short_lived_delegated_proxy_is_refused(self, alice: ReferenceClient, pki: Pki, footprint) -> None:
        delegate(alice, pki.users["alice"].proxy, "short", lifetime=10 * 60)
        before = footprint()
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(JDL, "short")
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == "AuthorizationFault"
        assert "The delegated Proxy has expired" in detail.findtext("Description")
        assert detail.findtext("ErrorCode") == "1213"
        assert footprint() == before

    def test_invalid_delegation_id(self, alice: ReferenceClient, footprint) -> None:
        before = footprint()
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(JDL, "../etc")
        assert etree.QName(fault_detail(err.value)).localname == "AuthorizationFault"
        assert footprint() == before


class TestUnknownJobs:
    @pytest.mark.parametrize(
        ("operation", "args", "fault"),
        [
            ("jobStart", (), "JobUnknownFault"),
            ("jobCancel", (), "JobUnknownFault"),
            ("jobPurge", (), "JobUnknownFault"),
            ("getJDL", ("ORIGINAL",), "JobUnknownFault"),
            ("getSandboxDestURI", ("",), "JobUnknownFault"),
            ("getOutputFileList", ("",), "JobUnknownFault"),
            ("getJobStatus", (), "GenericFault"),  # its WSDL declares no JobUnknownFault
        ],
    )
    def test_unknown_job_id(self, alice: ReferenceClient, operation: str, args: tuple, fault: str) -> None:
        unknown = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(alice.wmproxy, operation)(unknown, *args)
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == fault
        assert detail.findtext("ErrorCode") == "1218"

    def test_malformed_job_id(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobStart("not a job id")
        assert etree.QName(fault_detail(err.value)).localname == "InvalidArgumentFault"


class TestSandboxHttp:
    @pytest.fixture
    def job(self, alice: ReferenceClient):
        job = alice.wmproxy.jobRegister(JDL, "bad-input")
        return job, alice.wmproxy.getSandboxDestURI(job.id, "https")[0]

    def test_upload_and_download_by_owner(self, alice: ReferenceClient, job) -> None:
        _, uri = job
        assert alice.session.put(f"{uri}/data.txt", data=b"payload").status_code in (200, 201, 204)
        reply = alice.session.get(f"{uri}/data.txt")
        assert reply.status_code == 200 and reply.content == b"payload"

    def test_oversized_upload_is_refused_and_leaves_nothing(self, alice: ReferenceClient, job, deployment) -> None:
        job_struct, uri = job
        reply = alice.session.put(f"{uri}/big.bin", data=b"x" * 1_000_001)
        assert reply.status_code == 413
        assert alice.session.get(f"{uri}/big.bin").status_code == 404
        settings = load_settings(deployment.config)
        input_dir = Path(settings.sandbox.root) / job_struct.path  # made by the first accepted upload
        leftovers = list(input_dir.iterdir()) if input_dir.exists() else []
        assert leftovers == []

    @pytest.mark.parametrize("suffix", ["/../output/x", "/../../../etc/passwd", "/%2e%2e/user.proxy", "/../user.proxy"])
    def test_paths_escaping_the_sandbox_are_refused(self, alice: ReferenceClient, job, suffix: str) -> None:
        _, uri = job
        reply = alice.session.put(f"{uri}{suffix}", data=b"x")
        assert reply.status_code in (400, 403, 404)
        assert alice.session.get(f"{uri}{suffix}").status_code in (400, 403, 404)

    def test_another_user_cannot_read_or_write(self, alice: ReferenceClient, job, deployment, pki: Pki) -> None:
        _, uri = job
        alice.session.put(f"{uri}/secret.txt", data=b"mine")
        bob = session_for(pki.users["bob"].proxy, pki.ca_dir)
        assert bob.get(f"{uri}/secret.txt").status_code == 403
        assert bob.put(f"{uri}/evil.txt", data=b"x").status_code == 403


class TestTlsAuthentication:
    def _call(self, deployment: Deployment, pki: Pki, cert: Path | None) -> int:
        ctx = ssl.create_default_context(capath=str(pki.ca_dir))
        if cert is not None:
            ctx.load_cert_chain(str(cert))
        body = f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getVersion xmlns:w="{WMP}"/></e:Body></e:Envelope>'.encode()
        request = urllib.request.Request(  # noqa: S310 - the deployment's https endpoint
            deployment.endpoint, data=body, headers={"Content-Type": "text/xml"})
        with urllib.request.urlopen(request, context=ctx, timeout=10) as reply:  # noqa: S310 - https, as above
            return reply.status

    def test_valid_proxy_is_served(self, deployment: Deployment, pki: Pki) -> None:
        assert self._call(deployment, pki, pki.users["alice"].proxy) == 200

    def _refused(self, deployment: Deployment, pki: Pki, cert: Path | None) -> None:
        """The TLS layer refuses the caller (an alert, or the connection closed after a TLS 1.3
        handshake): no HTTP answer at all, not even an error page from the application."""
        with pytest.raises((ssl.SSLError, OSError)) as info:
            self._call(deployment, pki, cert)
        assert not isinstance(info.value, urllib.error.HTTPError), info.value

    def test_no_client_certificate_is_refused(self, deployment: Deployment, pki: Pki) -> None:
        self._refused(deployment, pki, None)

    def test_revoked_user_proxy_is_refused(self, deployment: Deployment, pki: Pki) -> None:
        self._refused(deployment, pki, pki.users["carol"].proxy)

    def test_expired_user_certificate_is_refused(self, deployment: Deployment, pki: Pki) -> None:
        cred = pki.users["dave"].credential
        from wmproxy.security.proxy import credential_pem

        path = pki.root / "dave-cert-and-key.pem"
        path.write_bytes(credential_pem(cred))
        self._refused(deployment, pki, path)


class TestServiceAuthorization:
    """[security] authorized_users admits only CNs not starting with M here; mallory is refused."""

    @pytest.fixture(scope="class")
    @classmethod
    def mallory(cls, deployment: Deployment, pki: Pki) -> ReferenceClient:
        return reference_client(deployment.endpoint, pki.users["mallory"].proxy, pki.ca_dir)

    @pytest.mark.parametrize(
        ("operation", "args", "fault"),
        [
            ("getVersion", (), "GenericFault"),  # getVersion declares no AuthorizationFault
            ("getTransferProtocols", (), "AuthorizationFault"),
            ("getMaxInputSandboxSize", (), "AuthorizationFault"),
            ("jobRegister", (JDL, "x"), "AuthorizationFault"),
            ("getProxyReq", ("x",), "AuthorizationFault"),
        ],
    )
    def test_a_caller_the_site_does_not_admit_is_refused(
        self, mallory: ReferenceClient, operation: str, args: tuple, fault: str
    ) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(mallory.wmproxy, operation)(*args)
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == fault
        assert detail.findtext("ErrorCode") == "1207"
        assert detail.findtext("Description") == "Authorization error: user not authorized"

    @pytest.mark.parametrize(
        ("port", "operation", "args", "field"),
        [
            ("deleg2", "getProxyReq", ("x",), "msg"),
            ("deleg2", "getVersion", (), "msg"),
            ("deleg2", "getInterfaceVersion", (), "msg"),
            ("deleg2", "getTerminationTime", ("x",), "msg"),
            ("deleg1", "getProxyReq", ("x",), "message"),
        ],
    )
    def test_refused_on_the_delegation_ports_too(
        self, mallory: ReferenceClient, port: str, operation: str, args: tuple, field: str
    ) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(getattr(mallory, port), operation)(*args)
        detail = fault_detail(err.value)
        assert etree.QName(detail).localname == "DelegationException"
        assert detail.findtext(field) == "Authorization error: user not authorized"

    def test_refused_on_the_sandbox(self, mallory: ReferenceClient, alice: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(JDL, "bad-input")
        uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
        assert mallory.session.put(f"{uri}/x.txt", data=b"x").status_code == 403


class TestDrain:
    def test_new_work_is_refused_while_drained_and_the_rest_works(
        self, alice: ReferenceClient, deployment: Deployment
    ) -> None:
        job = alice.wmproxy.jobRegister(JDL, "bad-input")
        drain = deployment.state / "drain"
        drain.write_text("maintenance\n")
        try:
            for call in (lambda: alice.wmproxy.jobSubmit(JDL, "bad-input"), lambda: alice.wmproxy.jobStart(job.id)):
                with pytest.raises(zeep.exceptions.Fault) as err:
                    call()
                detail = fault_detail(err.value)
                assert etree.QName(detail).localname == "AuthorizationFault"
                assert detail.findtext("Description") == "Unavailable service (the server is temporarily drained)"
            assert alice.wmproxy.getJobStatus(job.id).status == "Submitted"
        finally:
            drain.unlink()
        alice.wmproxy.jobStart(job.id)
