"""WMProxyClient: what goes on the wire for each method and what comes back (no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests
from lxml import etree

from wmproxy.client import JobIds, JobStatus, OutputFile, WMProxyClient
from wmproxy.client import client as client_module
from wmproxy.client.delegation import delegation_port, parse_version
from wmproxy.client.session import grid_session

from .conftest import ENDPOINT, FakeSession, envelope, response

WMP = "http://glite.org/wms/wmproxy"
D1 = "http://www.gridsite.org/namespaces/delegation-1"
D2 = "http://www.gridsite.org/namespaces/delegation-2"
JOB = "https://lb.example.org:9000/AbC"

Answer = Callable[..., None]


def sent(session: FakeSession, n: int = -1) -> tuple[str, list[tuple[str, str]]]:
    """(wrapper tag, [(child tag, text)]) of the n-th request."""
    _url, wrapper, _headers = session.posts[n]
    return wrapper.tag, [(c.tag, c.text or "") for c in wrapper]


class TestConstruction:
    def test_all_ports_are_bound_to_the_endpoint(self, client: WMProxyClient, session: FakeSession,
                                                 answer: Answer) -> None:
        answer("<ns1:jobStartResponse/>")
        client.job_start(JOB)
        url, _wrapper, headers = session.posts[0]
        assert url == ENDPOINT
        assert headers["SOAPAction"] == '""'

    def test_session_is_grid_configured(self) -> None:
        s = grid_session("/tmp/x509up_u1", "/etc/grid-security/certificates")
        assert (s.verify, s.trust_env, s.max_redirects) == ("/etc/grid-security/certificates", False, 0)
        assert s.cert is None  # the proxy is the credential of the https:// adapter's own SSLContext

    def test_wsdl_falls_back_to_the_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from wmproxy.client.wsdl import wsdl_path

        local = wsdl_path()
        assert local is not None and local.name == "wmproxy.wsdl"
        fetched: list[str] = []

        class WsdlSession(FakeSession):
            def get(self, url: str, **_: object) -> requests.Response:  # type: ignore[override]
                fetched.append(url)
                return response(200, local.read_bytes())

        monkeypatch.setattr(client_module, "wsdl_path", lambda: None)
        client = WMProxyClient(ENDPOINT, "/p", "/ca", session=WsdlSession())
        assert fetched == []  # the WSDL is read when a call first needs zeep
        assert "getACLItems" in dir(client._ports["wmproxy"])
        assert fetched == [f"{ENDPOINT}?wsdl"]

    def test_default_session(self) -> None:
        c = WMProxyClient(ENDPOINT, "/p", "/ca")
        assert isinstance(c.session, requests.Session)
        assert c.session.trust_env is False


class TestJobs:
    def test_job_register(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(
            "<ns1:jobRegisterResponse><jobIdStruct><id>https://lb:9000/P</id><name xsi:nil=\"true\"/>"
            "<path>SandboxDir/P/x/input</path>"
            "<childrenJob><id>https://lb:9000/C</id><name>node1</name><path>SandboxDir/C/y/input</path></childrenJob>"
            "</jobIdStruct></ns1:jobRegisterResponse>"
        )
        job = client.job_register("[Executable=\"/bin/true\";]", "dg")
        assert sent(session) == (f"{{{WMP}}}jobRegister",
                                 [("jdl", "[Executable=\"/bin/true\";]"), ("delegationId", "dg")])
        assert job == JobIds(
            "https://lb:9000/P", None, "SandboxDir/P/x/input",
            (JobIds("https://lb:9000/C", "node1", "SandboxDir/C/y/input"),),
        )
        assert [j.id for j in job.walk()] == ["https://lb:9000/P", "https://lb:9000/C"]

    def test_job_submit(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(f"<ns1:jobSubmitResponse><jobIdStruct><id>{JOB}</id><name/><path/></jobIdStruct></ns1:jobSubmitResponse>")
        assert client.job_submit("[]", "").id == JOB
        assert sent(session)[0] == f"{{{WMP}}}jobSubmit"

    @pytest.mark.parametrize(("method", "op"),
                             [("job_start", "jobStart"), ("job_cancel", "jobCancel"), ("job_purge", "jobPurge")])
    def test_job_operations_without_result(
        self, client: WMProxyClient, session: FakeSession, answer: Answer, method: str, op: str
    ) -> None:
        answer(f"<ns1:{op}Response/>")
        assert getattr(client, method)(JOB) is None
        assert sent(session) == (f"{{{WMP}}}{op}", [("jobId", JOB)])

    def test_get_job_status(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(
            "<ns1:getJobStatusResponse><JobStatusStruct><jobid>P</jobid><status>Running</status>"
            "<childrenJob><jobid>C</jobid><status>Done (Exit Code 2)</status></childrenJob>"
            "<childrenJob><jobid>D</jobid><status>Aborted (proxy expired)</status></childrenJob>"
            "</JobStatusStruct></ns1:getJobStatusResponse>"
        )
        assert client.get_job_status("P") == JobStatus(
            "P",
            "Running",
            (
                JobStatus("C", "Done (Exit Code 2)", exit_code=2),
                JobStatus("D", "Aborted (proxy expired)", reason="proxy expired"),
            ),
        )

    def test_get_jdl(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:getJDLResponse><jdl>[ a = 1 ]</jdl></ns1:getJDLResponse>")
        assert client.get_jdl(JOB, "REGISTERED") == "[ a = 1 ]"
        assert sent(session) == (f"{{{WMP}}}getJDL", [("jobId", JOB), ("type", "REGISTERED")])


class TestSandboxAndInfo:
    def test_get_sandbox_dest_uri(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:getSandboxDestURIResponse><path><Item>gsiftp://h/x</Item><Item>https://h/x</Item></path>"
               "</ns1:getSandboxDestURIResponse>")
        assert client.get_sandbox_dest_uri(JOB) == ["gsiftp://h/x", "https://h/x"]
        assert sent(session) == (f"{{{WMP}}}getSandboxDestURI", [("jobId", JOB), ("protocol", "https")])

    def test_get_sandbox_bulk_dest_uri(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getSandboxBulkDestURIResponse><DestURIsStructType>"
               "<Item><id>P</id><Item>https://h/p</Item></Item><Item><id>C</id><Item>https://h/c</Item></Item>"
               "</DestURIsStructType></ns1:getSandboxBulkDestURIResponse>")
        assert client.get_sandbox_bulk_dest_uri(JOB, "all") == {"P": ["https://h/p"], "C": ["https://h/c"]}

    def test_get_output_file_list(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getOutputFileListResponse><OutputFileAndSizeList>"
               "<file><name>https://h/o/std.out</name><size>12</size></file>"
               "<file><name>https://h/o/std.err</name><size>0</size></file>"
               "</OutputFileAndSizeList></ns1:getOutputFileListResponse>")
        assert client.get_output_file_list(JOB) == [OutputFile("https://h/o/std.out", 12),
                                                    OutputFile("https://h/o/std.err", 0)]

    def test_empty_output_file_list(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getOutputFileListResponse><OutputFileAndSizeList/></ns1:getOutputFileListResponse>")
        assert client.get_output_file_list(JOB) == []

    def test_info_operations(self, client: WMProxyClient, session: FakeSession) -> None:
        replies = {
            "getVersion": "<version>3.5.0</version>",
            "getMaxInputSandboxSize": "<size>100000000</size>",
            "getTransferProtocols": "<items><Item>gsiftp</Item><Item>https</Item></items>",
        }
        session.reply = lambda el: response(
            200, envelope(f"<ns1:{etree.QName(el).localname}Response>{replies[etree.QName(el).localname]}"
                          f"</ns1:{etree.QName(el).localname}Response>")
        )
        assert client.get_version() == "3.5.0"
        assert client.get_version() == "3.5.0"
        assert len(session.posts) == 1  # cached
        assert client.get_max_input_sandbox_size() == 100_000_000
        assert client.get_transfer_protocols() == ["gsiftp", "https"]


class TestDelegation:
    @pytest.mark.parametrize(
        ("version", "port"),
        [("3.5.0", "delegation2"), ("2.9.0", "delegation2"), ("2.8.9", "wmproxy"), ("garbage", "wmproxy")],
    )
    def test_port_follows_the_glite_ui(self, version: str, port: str) -> None:
        assert delegation_port(parse_version(version)) == port

    def test_parse_version(self) -> None:
        assert parse_version("3.5.0") == (3, 5, 0)
        assert parse_version("3.4") == (3, 4, 0)
        assert parse_version("3.3.1-2") == (3, 3, 1)

    def _server(self, session: FakeSession, version: str) -> list[str]:
        """A fake service answering getVersion, getProxyReq and putProxy in any namespace."""
        seen: list[str] = []

        def reply(el: etree._Element) -> requests.Response:
            q = etree.QName(el)
            seen.append(f"{q.namespace} {q.localname}")
            body = {
                "getVersion": f"<version>{version}</version>",
                "getProxyReq": (
                    "<request>CSR</request>" if q.namespace == WMP else "<getProxyReqReturn>CSR</getProxyReqReturn>"
                ),
                "putProxy": "",
            }[q.localname]
            return response(200, envelope(f"<ns1:{q.localname}Response>{body}</ns1:{q.localname}Response>",
                                          q.namespace))

        session.reply = reply
        return seen

    def test_delegate_uses_delegation2_on_recent_servers(
        self, client: WMProxyClient, session: FakeSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen = self._server(session, "3.5.0")
        monkeypatch.setattr(client_module, "sign_request", lambda csr, proxy: f"SIGNED({csr},{proxy})")
        assert client.delegate("mine") == "mine"
        assert seen == [f"{WMP} getVersion", f"{D2} getProxyReq", f"{D2} putProxy"]
        assert sent(session) == (f"{{{D2}}}putProxy",
                                 [("delegationID", "mine"), ("proxy", "SIGNED(CSR,/nonexistent/proxy)")])

    def test_delegate_uses_wmproxy_port_on_old_servers(
        self, client: WMProxyClient, session: FakeSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen = self._server(session, "2.2.0")
        monkeypatch.setattr(client_module, "sign_request", lambda csr, proxy: "SIGNED")
        client.delegate("mine")
        assert seen[1:] == [f"{WMP} getProxyReq", f"{WMP} putProxy"]

    def test_automatic_delegation_sends_an_empty_id(
        self, client: WMProxyClient, session: FakeSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._server(session, "3.5.0")
        monkeypatch.setattr(client_module, "sign_request", lambda csr, proxy: "SIGNED")
        assert client.delegate(None) == ""
        assert sent(session, 1) == (f"{{{D2}}}getProxyReq", [("delegationID", "")])

    def test_explicit_delegation1_port(self, client: WMProxyClient, session: FakeSession) -> None:
        seen = self._server(session, "3.5.0")
        assert client.get_proxy_req("x", port="delegation1") == "CSR"
        assert seen == [f"{D1} getProxyReq"]

    def test_delegation2_extras(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:getTerminationTimeResponse><getTerminationTimeReturn>2030-01-02T03:04:05Z"
               "</getTerminationTimeReturn></ns1:getTerminationTimeResponse>", D2)
        assert client.get_termination_time("x") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        answer("<ns1:destroyResponse/>", D2)
        assert client.destroy("x") is None
        assert sent(session) == (f"{{{D2}}}destroy", [("delegationID", "x")])
        answer("<ns1:getNewProxyReqResponse><getNewProxyReqReturn><proxyRequest>CSR</proxyRequest>"
               "<delegationID>abc</delegationID></getNewProxyReqReturn></ns1:getNewProxyReqResponse>", D2)
        new = client.get_new_proxy_req()
        assert (new.proxy_request, new.delegation_id) == ("CSR", "abc")
