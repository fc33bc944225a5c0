"""The lean request loop (``wmproxy.soap.dispatch._Port.serve``) and the constant replies
(``CONSTANT_REPLIES``) answer byte for byte what Spyne's own ``WsgiApplication`` answers:
the same requests, successes and faults of every kind, through both paths of one application."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.conftest import Pki
from tests.support import ECHO_JDL, Reply, SoapApp, delegate_in_process
from wmproxy.domain import Principal
from wmproxy.soap.dispatch import CONSTANT_REPLIES
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, JOBS_1, SOAP_ENV, WMPROXY

#: The only part of an answer that may differ between two calls a moment apart.
_TIMESTAMP = re.compile(rb"<Timestamp>[^<]*</Timestamp>")
UNKNOWN_JOB = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"


def _same(reply: Reply) -> tuple[str, dict[str, str], bytes]:
    return reply.status, reply.headers, _TIMESTAMP.sub(b"<Timestamp/>", reply.body)


def _raw(namespace: str, inner: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{SOAP_ENV}" xmlns:n="{namespace}">'
            f"{header}<e:Body>{inner}</e:Body></e:Envelope>").encode()


Send = Callable[[SoapApp], Reply]


def _requests(job_id: str, alice: Principal, mallory: Principal) -> dict[str, Send]:
    """At least fifteen operations on the ports, answers and faults (name → request)."""

    def call(namespace: str, operation: str, caller: Principal | None = alice, **parts: str) -> Send:
        return lambda soap: soap.call(namespace, operation, caller, **parts)

    def raw(body: bytes, caller: Principal | None = alice) -> Send:
        return lambda soap: soap.request(body, caller)

    return {
        "getVersion": call(WMPROXY, "getVersion"),
        "getVersion, other prefix": call(WMPROXY, "getVersion", prefix="wm"),
        "getVersion with a Header": raw(_raw(WMPROXY, "<n:getVersion/>", "<e:Header/>")),
        "getVersion with an extra part": raw(_raw(WMPROXY, "<n:getVersion><x>1</x></n:getVersion>")),
        "getMaxInputSandboxSize": call(WMPROXY, "getMaxInputSandboxSize"),
        "getTransferProtocols": call(WMPROXY, "getTransferProtocols"),
        "delegation-1 getVersion": call(DELEGATION_1, "getVersion"),
        "delegation-2 getVersion": call(DELEGATION_2, "getVersion"),
        "delegation-2 getInterfaceVersion": call(DELEGATION_2, "getInterfaceVersion"),
        "delegation-2 getServiceMetadata (fault)": call(DELEGATION_2, "getServiceMetadata", key="x"),
        "delegation-2 getTerminationTime": call(DELEGATION_2, "getTerminationTime", delegationID="lean"),
        "delegation-2 getTerminationTime (unknown)": call(DELEGATION_2, "getTerminationTime", delegationID="none"),
        "getJobTemplate": raw(_raw(WMPROXY, "<n:getJobTemplate><jobType><jobType>NORMAL</jobType></jobType>"
                                            "<executable>/bin/ls</executable><arguments>-l</arguments>"
                                            "<requirements>true</requirements><rank>0</rank></n:getJobTemplate>")),
        "getCollectionTemplate": call(WMPROXY, "getCollectionTemplate", jobNumber="3", requirements="true",
                                      rank="0"),
        "getIntParametricJobTemplate (bad int)": call(WMPROXY, "getIntParametricJobTemplate", attributes="x",
                                                      param="abc", parameterStart="1", parameterStep="1",
                                                      requirements="true", rank="0"),
        "getJDL": call(WMPROXY, "getJDL", jobId=job_id, type="ORIGINAL"),
        "getJDL (unknown job)": call(WMPROXY, "getJDL", jobId=UNKNOWN_JOB, type="ORIGINAL"),
        "getJobStatus": call(WMPROXY, "getJobStatus", jobId=job_id),
        "getSandboxDestURI": call(WMPROXY, "getSandboxDestURI", jobId=job_id, protocol="all"),
        "getSandboxBulkDestURI": call(WMPROXY, "getSandboxBulkDestURI", jobId=job_id, protocol="https"),
        "getOutputFileList (not done)": call(WMPROXY, "getOutputFileList", jobId=job_id, protocol="all"),
        "getTotalQuota": call(WMPROXY, "getTotalQuota"),
        "getFreeQuota": call(WMPROXY, "getFreeQuota"),
        "getACLItems": call(WMPROXY, "getACLItems", jobId=job_id),
        "getDelegatedProxyInfo": call(WMPROXY, "getDelegatedProxyInfo", delegationId="lean"),
        "getJobProxyInfo": call(WMPROXY, "getJobProxyInfo", jobId=job_id),
        "jobStart (unknown job)": call(WMPROXY, "jobStart", jobId=UNKNOWN_JOB),
        "jobRegister (bad JDL)": call(WMPROXY, "jobRegister", jdl="[ Executable = ; ]", delegationId="lean"),
        "jobRegister (no delegation)": call(WMPROXY, "jobRegister", jdl=ECHO_JDL, delegationId="never"),
        "jobs-1 listJobs": raw(_raw(JOBS_1, "<n:listJobs/>")),
        "getVersion, unauthenticated": call(WMPROXY, "getVersion", caller=None),
        "getVersion, not admitted": call(WMPROXY, "getVersion", caller=mallory),
        "unknown operation": call(WMPROXY, "noSuchOperation"),
        "malformed": raw(b"<e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'><e:Body><n:getVersion"),
        "missing part": raw(_raw(WMPROXY, "<n:getJDL><jobId>x</jobId></n:getJDL>")),
    }


@pytest.fixture
def job_id(soap: SoapApp, alice: Principal, pki: Pki) -> str:
    delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "lean")
    reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="lean")
    assert reply.status.startswith("200"), reply.body
    return reply.element.findtext("jobIdStruct/id")


def test_lean_loop_answers_as_spyne(soap: SoapApp, alice: Principal, mallory: Principal, job_id: str) -> None:
    requests = _requests(job_id, alice, mallory)
    assert len(requests) >= 15
    statuses = set()
    for name, send in requests.items():
        soap.app.soap.lean = False
        reference = _same(send(soap))
        soap.app.soap.lean = True
        first, second = _same(send(soap)), _same(send(soap))  # the second may be a kept reply
        assert first == reference, (name, first, reference)
        assert second == reference, (name, second, reference)
        statuses.add(reference[0][:3])
    assert statuses == {"200", "500"}


def test_constant_replies_are_kept_per_runtime_and_only_for_a_bare_request(soap: SoapApp, alice: Principal) -> None:
    dispatcher = soap.app.soap
    assert (WMPROXY, "getVersion") in CONSTANT_REPLIES
    with_header = soap.request(_raw(WMPROXY, "<n:getVersion/>", "<e:Header/>"), alice)
    assert with_header.status.startswith("200")
    assert not dispatcher._memo  # a Header: not kept
    reply = soap.call(WMPROXY, "getVersion", alice)
    assert (WMPROXY, "getVersion") in dispatcher._memo
    assert soap.call(WMPROXY, "getVersion", alice).body == reply.body
    # a refusal is never kept, and a kept reply does not skip the caller's checks
    assert soap.call(WMPROXY, "getVersion", None).status.startswith("500")
    kept = dict(dispatcher._memo)
    assert soap.call(WMPROXY, "getTransferProtocols", None).status.startswith("500")
    assert (WMPROXY, "getTransferProtocols") not in dispatcher._memo
    assert dispatcher._memo == kept


def test_access_log_names_a_kept_reply(soap: SoapApp, alice: Principal, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="wmproxy.access"):
        soap.call(WMPROXY, "getVersion", alice)
        soap.call(WMPROXY, "getVersion", alice)
    lines = [r.getMessage() for r in caplog.records if r.name == "wmproxy.access"]
    assert len(lines) == 2 and all("getVersion" in line and "ok" in line for line in lines), lines
