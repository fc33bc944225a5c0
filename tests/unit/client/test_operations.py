"""WMProxyClient, the rest of the WMProxy port: quota, matchmaking, JSDL, templates, ACLs,
proxy info and perusal. Replies are hand-written in the reference wire format (gSOAP:
wrapper ``ns1:<op>Response`` in the wmproxy namespace, parts and fields unqualified)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests
from lxml import etree

from wmproxy.client import (
    CEMatch,
    GraphNode,
    JobIds,
    ProxyInfo,
    Quota,
    RenewalInfo,
    VOInfo,
    WMProxyClient,
    WMProxyClientError,
)

from .conftest import FakeSession, envelope, response

WMP = "http://glite.org/wms/wmproxy"
D1 = "http://www.gridsite.org/namespaces/delegation-1"
JSDL = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
JSDL_POSIX = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"
JOB = "https://lb.example.org:9000/AbC"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

Answer = Callable[..., None]


def wrapper(session: FakeSession, n: int = -1) -> etree._Element:
    return session.posts[n][1]


def children(el: etree._Element) -> list[tuple[str, str]]:
    return [(c.tag, c.text or "") for c in el]


def items(el: etree._Element | None) -> list[str]:
    assert el is not None
    assert all(c.tag == "Item" for c in el)
    return [c.text or "" for c in el]


class TestQuota:
    @pytest.mark.parametrize(("method", "op"),
                             [("get_total_quota", "getTotalQuota"), ("get_free_quota", "getFreeQuota")])
    def test_two_longs(self, client: WMProxyClient, session: FakeSession, answer: Answer, method: str, op: str) -> None:
        answer(f"<ns1:{op}Response><softLimit>1073741824</softLimit><hardLimit>2147483648</hardLimit></ns1:{op}Response>")
        quota = getattr(client, method)()
        assert quota == Quota(1073741824, 2147483648)
        assert quota == (1073741824, 2147483648)
        assert (quota.soft, quota.hard) == (1073741824, 2147483648)
        el = wrapper(session)
        assert (el.tag, len(el)) == (f"{{{WMP}}}{op}", 0)

    def test_no_quota_is_minus_one(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getFreeQuotaResponse><softLimit>-1</softLimit><hardLimit>-1</hardLimit></ns1:getFreeQuotaResponse>")
        assert client.get_free_quota() == (-1, -1)

    def test_quota_fault(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode><faultstring>Unable to get total quota</faultstring>"
            "<detail><ns1:GetQuotaManagementFault><methodName>getTotalQuota</methodName>"
            "<Timestamp>2013-01-01T10:00:00Z</Timestamp><ErrorCode>1203</ErrorCode>"
            "<Description>Unable to get total quota</Description></ns1:GetQuotaManagementFault></detail>"
            "</SOAP-ENV:Fault>"
        )
        with pytest.raises(WMProxyClientError) as err:
            client.get_total_quota()
        assert (err.value.fault_type, err.value.error_code, err.value.description) == (
            "GetQuotaManagementFault", "1203", "Unable to get total quota",
        )


class TestListMatch:
    def test_job_list_match(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(
            "<ns1:jobListMatchResponse><CEIdAndRankList>"
            "<file><name>ce1.example.org:8443/cream-pbs-short</name><size>10</size></file>"
            "<file><name>ce2.example.org:2119/jobmanager-lcgpbs-long</name><size>-52</size></file>"
            "</CEIdAndRankList></ns1:jobListMatchResponse>"
        )
        matches = client.job_list_match('[Executable="/bin/true";]', "dg")
        assert matches == [
            CEMatch("ce1.example.org:8443/cream-pbs-short", 10),
            CEMatch("ce2.example.org:2119/jobmanager-lcgpbs-long", -52),
        ]
        assert matches[0].ce_id == "ce1.example.org:8443/cream-pbs-short" and matches[1].rank == -52
        assert wrapper(session).tag == f"{{{WMP}}}jobListMatch"
        assert children(wrapper(session)) == [("jdl", '[Executable="/bin/true";]'), ("delegationId", "dg")]

    def test_no_match_is_an_empty_list(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:jobListMatchResponse><CEIdAndRankList/></ns1:jobListMatchResponse>")
        assert client.job_list_match("[]", "dg") == []

    def test_no_suitable_resources(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode><faultstring>no resources</faultstring>"
            "<detail><ns1:NoSuitableResourcesFault><methodName>jobListMatch</methodName>"
            "<Timestamp>2013-01-01T10:00:00Z</Timestamp><ErrorCode>1226</ErrorCode>"
            "<Description>no resources</Description></ns1:NoSuitableResourcesFault></detail></SOAP-ENV:Fault>"
        )
        with pytest.raises(WMProxyClientError) as err:
            client.job_list_match("[]", "dg")
        assert err.value.fault_type == "NoSuitableResourcesFault"


JSDL_DOC = (
    f'<JobDefinition xmlns="{JSDL}" xmlns:posix="{JSDL_POSIX}">'
    "<JobDescription><JobIdentification><JobName>hello</JobName></JobIdentification>"
    "<Application><posix:POSIXApplication><posix:Executable>/bin/echo</posix:Executable>"
    "<posix:Argument>hi</posix:Argument></posix:POSIXApplication></Application>"
    "</JobDescription></JobDefinition>"
)
JOB_ID_STRUCT = ('<jobIdStruct><id>https://lb:9000/J</id><name xsi:nil="true"/>'
                 "<path>SandboxDir/J/x/input</path></jobIdStruct>")


class TestJsdl:
    @pytest.mark.parametrize(
        ("method", "op", "order"),
        [
            ("job_register_jsdl", "jobRegisterJSDL", ["jsdl", "delegationId"]),
            ("job_submit_jsdl", "jobSubmitJSDL", ["delegationId", "jsdl"]),
        ],
    )
    @pytest.mark.parametrize("form", ["element", "tree", "bytes", "str"])
    def test_register_and_submit(
        self, client: WMProxyClient, session: FakeSession, answer: Answer, method: str, op: str, order: list[str],
        form: str,
    ) -> None:
        answer(f"<ns1:{op}Response>{JOB_ID_STRUCT}</ns1:{op}Response>")
        doc = etree.fromstring(JSDL_DOC)
        value = {
            "element": doc, "tree": doc.getroottree(), "bytes": JSDL_DOC.encode(), "str": JSDL_DOC,
        }[form]
        job = getattr(client, method)(value, "dg")
        assert job == JobIds("https://lb:9000/J", None, "SandboxDir/J/x/input")
        el = wrapper(session)
        assert el.tag == f"{{{WMP}}}{op}"
        assert [c.tag for c in el] == order
        assert el.findtext("delegationId") == "dg"
        (description,) = el.find("jsdl")
        assert (description.tag, description.prefix) == (f"{{{JSDL}}}JobDescription", "jsdl")
        assert description.findtext(f"{{{JSDL}}}JobIdentification/{{{JSDL}}}JobName") == "hello"
        posix = description.find(f"{{{JSDL}}}Application/{{{JSDL_POSIX}}}POSIXApplication")
        assert [(etree.QName(c).localname, c.text) for c in posix] == [("Executable", "/bin/echo"), ("Argument", "hi")]
        assert etree.tostring(doc) == etree.tostring(etree.fromstring(JSDL_DOC))  # caller's copy untouched

    def test_list_match_jsdl_and_the_document_can_be_reused(
        self, client: WMProxyClient, session: FakeSession, answer: Answer
    ) -> None:
        answer("<ns1:jobListMatchJSDLResponse><CEIdAndRankList><file><name>ce:8443/cream-pbs-q</name><size>3</size>"
               "</file></CEIdAndRankList></ns1:jobListMatchJSDLResponse>")
        doc = etree.fromstring(JSDL_DOC)
        assert client.job_list_match_jsdl(doc, "dg") == [CEMatch("ce:8443/cream-pbs-q", 3)]
        assert client.job_list_match_jsdl(doc, "dg") == [CEMatch("ce:8443/cream-pbs-q", 3)]
        for n in (0, 1):
            el = wrapper(session, n)
            assert el.tag == f"{{{WMP}}}jobListMatchJSDL"
            assert [c.tag for c in el] == ["jsdl", "delegationId"]
            assert len(el.find("jsdl")) == 1

    def test_bare_job_description_is_accepted(self, client: WMProxyClient, session: FakeSession,
                                              answer: Answer) -> None:
        answer(f"<ns1:jobRegisterJSDLResponse>{JOB_ID_STRUCT}</ns1:jobRegisterJSDLResponse>")
        client.job_register_jsdl(f'<JobDescription xmlns="{JSDL}"><JobIdentification/></JobDescription>', "dg")
        (description,) = wrapper(session).find("jsdl")
        assert description.tag == f"{{{JSDL}}}JobDescription"

    def test_job_definition_id_is_kept(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(f"<ns1:jobRegisterJSDLResponse>{JOB_ID_STRUCT}</ns1:jobRegisterJSDLResponse>")
        client.job_register_jsdl(JSDL_DOC.replace("<JobDefinition ", '<JobDefinition id="j1" '), "dg")
        assert wrapper(session).find("jsdl").get("id") == "j1"

    @pytest.mark.parametrize("doc", ["<not-xml", "<JobDefinition/>", f'<Job xmlns="{JSDL}"/>'])
    def test_invalid_jsdl_is_refused_before_sending(self, client: WMProxyClient, session: FakeSession,
                                                    doc: str) -> None:
        with pytest.raises(WMProxyClientError) as err:
            client.job_submit_jsdl(doc, "dg")
        assert (err.value.fault_type, err.value.method) == ("InvalidJSDL", "jobSubmitJSDL")
        assert session.posts == []


class TestTemplates:
    def test_get_job_template(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer('<ns1:getJobTemplateResponse><jdl>[ Executable = "/bin/ls"; JobType = { "mpich" } ]</jdl>'
               "</ns1:getJobTemplateResponse>")
        jdl = client.get_job_template(["normal", "MPI"], "/bin/ls", "-l", "true",
                                      "-other.GlueCEStateEstimatedResponseTime")
        assert jdl == '[ Executable = "/bin/ls"; JobType = { "mpich" } ]'
        el = wrapper(session)
        assert el.tag == f"{{{WMP}}}getJobTemplate"
        assert [c.tag for c in el] == ["jobType", "executable", "arguments", "requirements", "rank"]
        assert children(el.find("jobType")) == [("jobType", "NORMAL"), ("jobType", "MPI")]
        assert children(el)[1:] == [
            ("executable", "/bin/ls"), ("arguments", "-l"), ("requirements", "true"),
            ("rank", "-other.GlueCEStateEstimatedResponseTime"),
        ]

    def test_get_dag_template(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer('<ns1:getDAGTemplateResponse><jdl>[ Type = "dag" ]</jdl></ns1:getDAGTemplateResponse>')
        graph = GraphNode(None, (GraphNode("a", (GraphNode("b"), GraphNode("c"))), GraphNode("d")))
        assert client.get_dag_template(graph, "true", "0") == '[ Type = "dag" ]'
        el = wrapper(session)
        assert [c.tag for c in el] == ["dependencies", "requirements", "rank"]

        def tree(node: etree._Element) -> tuple[str | None, list]:
            name = node.find("name")
            assert name is not None and next(c.tag for c in node) == "name"
            value = None if name.get(XSI_NIL) == "true" else name.text
            return value, [tree(c) for c in node.findall("childrenJob")]

        assert tree(el.find("dependencies")) == (None, [("a", [("b", []), ("c", [])]), ("d", [])])

    def test_get_collection_template(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer('<ns1:getCollectionTemplateResponse><jdl>[ Type = "collection" ]</jdl>'
               "</ns1:getCollectionTemplateResponse>")
        assert client.get_collection_template(3, "true", "0") == '[ Type = "collection" ]'
        assert children(wrapper(session)) == [("jobNumber", "3"), ("requirements", "true"), ("rank", "0")]

    def test_get_int_parametric_job_template(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:getIntParametricJobTemplateResponse><jdl>[ Parameters = 20 ]</jdl>"
               "</ns1:getIntParametricJobTemplateResponse>")
        jdl = client.get_int_parametric_job_template(["test.sh", "input_PARAM_.txt"], 20, 100, 10, "true", "0")
        assert jdl == "[ Parameters = 20 ]"
        el = wrapper(session)
        assert [c.tag for c in el] == ["attributes", "param", "parameterStart", "parameterStep", "requirements", "rank"]
        assert items(el.find("attributes")) == ["test.sh", "input_PARAM_.txt"]
        assert children(el)[1:4] == [("param", "20"), ("parameterStart", "100"), ("parameterStep", "10")]

    def test_get_string_parametric_job_template(self, client: WMProxyClient, session: FakeSession,
                                                answer: Answer) -> None:
        answer('<ns1:getStringParametricJobTemplateResponse><jdl>[ Parameters = { "one" } ]</jdl>'
               "</ns1:getStringParametricJobTemplateResponse>")
        assert client.get_string_parametric_job_template(["Arguments"], ["one", "two", "three"], "true", "0") == (
            '[ Parameters = { "one" } ]'
        )
        el = wrapper(session)
        assert [c.tag for c in el] == ["attributes", "param", "requirements", "rank"]
        assert items(el.find("attributes")) == ["Arguments"]
        assert items(el.find("param")) == ["one", "two", "three"]


class TestAcl:
    def test_get_acl_items(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:getACLItemsResponse><items><Item>/C=XX/O=Grid/CN=Owner</Item><Item>/C=XX/O=Grid/CN=Friend</Item>"
               "</items></ns1:getACLItemsResponse>")
        assert client.get_acl_items(JOB) == ["/C=XX/O=Grid/CN=Owner", "/C=XX/O=Grid/CN=Friend"]
        assert children(wrapper(session)) == [("jobId", JOB)]

    def test_empty_acl(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getACLItemsResponse><items/></ns1:getACLItemsResponse>")
        assert client.get_acl_items(JOB) == []

    def test_add_acl_items(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:addACLItemsResponse/>")
        assert client.add_acl_items(JOB, ("/C=XX/CN=a", "/C=XX/CN=b")) is None
        el = wrapper(session)
        assert (el.tag, [c.tag for c in el]) == (f"{{{WMP}}}addACLItems", ["jobId", "items"])
        assert items(el.find("items")) == ["/C=XX/CN=a", "/C=XX/CN=b"]

    def test_remove_acl_item(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:removeACLItemResponse/>")
        assert client.remove_acl_item(JOB, "/C=XX/CN=a") is None
        assert children(wrapper(session)) == [("jobId", JOB), ("item", "/C=XX/CN=a")]

    def test_removing_the_owner_is_not_allowed(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode><faultstring>not allowed</faultstring>"
            "<detail><ns1:OperationNotAllowedFault><methodName>removeACLItem</methodName>"
            "<Timestamp>2013-01-01T10:00:00Z</Timestamp><ErrorCode>1226</ErrorCode><Description>Removal of the item "
            "representing user that has registered the job is not allowed</Description>"
            "</ns1:OperationNotAllowedFault></detail></SOAP-ENV:Fault>"
        )
        with pytest.raises(WMProxyClientError) as err:
            client.remove_acl_item(JOB, "/C=XX/CN=Owner")
        assert (err.value.fault_type, err.value.error_code, err.value.method) == (
            "OperationNotAllowedFault", "1226", "removeACLItem",
        )


PROXY_INFO = (
    "<items><Subject>/C=XX/O=Grid/CN=Test User/CN=1234</Subject><Issuer>/C=XX/O=Grid/CN=Test User</Issuer>"
    "<Identity>/C=XX/O=Grid/CN=Test User</Identity><Type>proxy</Type><Strength>2048</Strength>"
    "<StartTime>1300000000</StartTime><EndTime>1300043200</EndTime>"
    "{vos}</items>"
)
VO = (
    "<VOsInfo><User>/C=XX/O=Grid/CN=Test User</User><UserCA>/C=XX/O=Grid/CN=Grid CA</UserCA>"
    "<Server>/C=XX/O=Grid/CN=voms.example.org</Server><ServerCA>/C=XX/O=Grid/CN=Grid CA</ServerCA>"
    "<VOName>dteam</VOName><URI>voms.example.org:15004</URI>"
    "<StartTime>1300000100</StartTime><EndTime>1300040000</EndTime>"
    "<Attribute>/dteam/Role=NULL/Capability=NULL</Attribute><Attribute>/dteam/uk/Role=NULL/Capability=NULL</Attribute>"
    "</VOsInfo>"
)


class TestProxyInfo:
    def test_get_delegated_proxy_info(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(f"<ns1:getDelegatedProxyInfoResponse>{PROXY_INFO.format(vos=VO)}</ns1:getDelegatedProxyInfoResponse>")
        info = client.get_delegated_proxy_info("dg")
        assert children(wrapper(session)) == [("delegationID", "dg")]
        assert info == ProxyInfo(
            subject="/C=XX/O=Grid/CN=Test User/CN=1234",
            issuer="/C=XX/O=Grid/CN=Test User",
            identity="/C=XX/O=Grid/CN=Test User",
            type="proxy",
            strength="2048",
            start_time="1300000000",
            end_time="1300043200",
            vos=(
                VOInfo(
                    user="/C=XX/O=Grid/CN=Test User",
                    user_ca="/C=XX/O=Grid/CN=Grid CA",
                    server="/C=XX/O=Grid/CN=voms.example.org",
                    server_ca="/C=XX/O=Grid/CN=Grid CA",
                    vo_name="dteam",
                    uri="voms.example.org:15004",
                    start_time="1300000100",
                    end_time="1300040000",
                    attributes=("/dteam/Role=NULL/Capability=NULL", "/dteam/uk/Role=NULL/Capability=NULL"),
                ),
            ),
        )
        assert info.start == datetime(2011, 3, 13, 7, 6, 40, tzinfo=UTC)
        assert info.end == datetime(2011, 3, 13, 19, 6, 40, tzinfo=UTC)
        assert info.strength_bits == 2048
        assert info.vos[0].end == datetime.fromtimestamp(1300040000, tz=UTC)

    def test_get_job_proxy_info_without_voms(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(f"<ns1:getJobProxyInfoResponse>{PROXY_INFO.format(vos='')}</ns1:getJobProxyInfoResponse>")
        info = client.get_job_proxy_info(JOB)
        assert wrapper(session).tag == f"{{{WMP}}}getJobProxyInfo"
        assert children(wrapper(session)) == [("jobId", JOB)]
        assert info.vos == () and info.subject.endswith("/CN=1234")

    def test_unparsable_times_and_strength(self) -> None:
        info = ProxyInfo("s", "i", "i", "proxy", "?", "", "soon")
        assert (info.start, info.end, info.strength_bits) == (None, None, None)


class TestProxyRenewalInfo:
    """getProxyRenewalInfo, the project's extension (not in the reference WSDL)."""

    def test_registered_and_renewed(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer(
            "<ns1:getProxyRenewalInfoResponse><renewal>"
            "<myProxyServer>myproxy.example.org:7512</myProxyServer><registered>true</registered>"
            "<lastAttempt>2011-03-13T07:06:40+00:00</lastAttempt><lastResult>renewed</lastResult>"
            '<lastError xsi:nil="true"/><renewals>2</renewals><proxyEndTime>1300043200</proxyEndTime>'
            "</renewal></ns1:getProxyRenewalInfoResponse>"
        )
        info = client.get_proxy_renewal_info(JOB)
        el = wrapper(session)
        assert el.tag == f"{{{WMP}}}getProxyRenewalInfo"
        assert children(el) == [("jobId", JOB)]
        assert info == RenewalInfo(
            myproxy_server="myproxy.example.org:7512", registered=True,
            last_attempt=datetime(2011, 3, 13, 7, 6, 40, tzinfo=UTC), last_result="renewed",
            last_error=None, renewals=2, proxy_end_time="1300043200",
        )
        assert info.proxy_end == datetime(2011, 3, 13, 19, 6, 40, tzinfo=UTC)

    def test_not_registered(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<ns1:getProxyRenewalInfoResponse><renewal>"
            '<myProxyServer xsi:nil="true"/><registered>false</registered><lastAttempt xsi:nil="true"/>'
            '<lastResult xsi:nil="true"/><lastError xsi:nil="true"/><renewals>0</renewals>'
            "<proxyEndTime>1300043200</proxyEndTime></renewal></ns1:getProxyRenewalInfoResponse>"
        )
        assert client.get_proxy_renewal_info(JOB) == RenewalInfo(None, False, None, None, None, 0, "1300043200")

    def test_failed_attempt_in_another_zone_is_given_in_utc(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<ns1:getProxyRenewalInfoResponse><renewal>"
            "<myProxyServer>mp:7512</myProxyServer><registered>true</registered>"
            "<lastAttempt>2011-03-13T09:06:40+02:00</lastAttempt><lastResult>refused</lastResult>"
            "<lastError>MyProxy server refused the renewal</lastError><renewals>0</renewals>"
            "<proxyEndTime>1300043200</proxyEndTime></renewal></ns1:getProxyRenewalInfoResponse>"
        )
        info = client.get_proxy_renewal_info(JOB)
        assert info.last_attempt == datetime(2011, 3, 13, 7, 6, 40, tzinfo=UTC)
        assert info.last_attempt.utcoffset().total_seconds() == 0
        assert (info.last_result, info.last_error) == ("refused", "MyProxy server refused the renewal")

    def test_unknown_job(self, client: WMProxyClient, answer: Answer) -> None:
        answer(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode><faultstring>Unknown job</faultstring>"
            "<detail><ns1:JobUnknownFault><methodName>getProxyRenewalInfo</methodName>"
            "<Timestamp>2011-03-13T07:06:40Z</Timestamp><ErrorCode>1218</ErrorCode>"
            "<Description>Unknown job</Description></ns1:JobUnknownFault></detail></SOAP-ENV:Fault>"
        )
        with pytest.raises(WMProxyClientError) as err:
            client.get_proxy_renewal_info(JOB)
        assert (err.value.fault_type, err.value.error_code) == ("JobUnknownFault", "1218")

    def test_old_glite_server_without_the_operation(self, client: WMProxyClient, session: FakeSession) -> None:
        session.reply = lambda _el: response(500, envelope(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode>"
            "<faultstring>Method 'ns1:getProxyRenewalInfo' not implemented</faultstring></SOAP-ENV:Fault>"
        ))
        with pytest.raises(WMProxyClientError) as err:
            client.get_proxy_renewal_info(JOB)
        assert err.value.fault_type == "WMProxy Server Error"
        assert "not implemented" in err.value.description

    def test_wsdl_of_a_service_without_the_operation(self, client: WMProxyClient, session: FakeSession) -> None:
        class OldPort:
            def __getitem__(self, name: str) -> object:
                raise AttributeError(f"Service has no operation {name!r}")

        client._ports["wmproxy"] = OldPort()  # what zeep builds from an older <endpoint>?wsdl
        with pytest.raises(WMProxyClientError) as err:
            client.get_proxy_renewal_info(JOB)
        assert (err.value.fault_type, err.value.method) == ("UnsupportedOperation", "getProxyRenewalInfo")
        assert session.posts == []


class TestPerusal:
    def test_enable_file_perusal(self, client: WMProxyClient, session: FakeSession, answer: Answer) -> None:
        answer("<ns1:enableFilePerusalResponse/>")
        assert client.enable_file_perusal(JOB, ["out.txt", "err.txt"]) is None
        el = wrapper(session)
        assert (el.tag, [c.tag for c in el]) == (f"{{{WMP}}}enableFilePerusal", ["jobId", "fileList"])
        assert items(el.find("fileList")) == ["out.txt", "err.txt"]

    def test_disable_file_perusal_sends_an_empty_list(self, client: WMProxyClient, session: FakeSession,
                                                      answer: Answer) -> None:
        answer("<ns1:enableFilePerusalResponse/>")
        client.enable_file_perusal(JOB, [])
        assert items(wrapper(session).find("fileList")) == []

    @pytest.mark.parametrize(("all_chunks", "text"), [(True, "true"), (False, "false")])
    def test_get_perusal_files(
        self, client: WMProxyClient, session: FakeSession, answer: Answer, all_chunks: bool, text: str
    ) -> None:
        answer("<ns1:getPerusalFilesResponse><fileList>"
               "<Item>https://wms:7443/SandboxDir/Ab/x/peek/out.txt-1300000000-1300000300</Item>"
               "</fileList></ns1:getPerusalFilesResponse>")
        assert client.get_perusal_files(JOB, "out.txt", all_chunks, "https") == [
            "https://wms:7443/SandboxDir/Ab/x/peek/out.txt-1300000000-1300000300"
        ]
        assert children(wrapper(session)) == [
            ("jobId", JOB), ("file", "out.txt"), ("allChunks", text), ("protocol", "https")]

    def test_nothing_new(self, client: WMProxyClient, answer: Answer) -> None:
        answer("<ns1:getPerusalFilesResponse><fileList/></ns1:getPerusalFilesResponse>")
        assert client.get_perusal_files(JOB, "out.txt") == []


class TestDelegation1Extension:
    """The GridSite delegation-1 extras are in the WSDL (not in the client API): zeep reads
    the replies htproxyput accepts (peers.md §6.2)."""

    def test_replies_parse(self, client: WMProxyClient, session: FakeSession) -> None:
        replies = {
            "getNewProxyReq": "<getNewProxyReqReturn><proxyRequest>CSR</proxyRequest>"
                              "<delegationID>dlg1</delegationID></getNewProxyReqReturn>",
            "renewProxyReq": "<renewProxyReqReturn>CSR2</renewProxyReqReturn>",
            "getTerminationTime": "<getTerminationTimeReturn>2026-11-21T17:39:00Z</getTerminationTimeReturn>",
            "destroy": "",
        }

        def reply(el: etree._Element) -> requests.Response:
            name = etree.QName(el).localname
            return response(200, envelope(f"<ns1:{name}Response>{replies[name]}</ns1:{name}Response>", D1))

        session.reply = reply
        port = client._ports["delegation1"]
        new = port.getNewProxyReq()
        assert (new.proxyRequest, new.delegationID) == ("CSR", "dlg1")
        assert port.renewProxyReq("dlg1") == "CSR2"
        assert port.getTerminationTime("dlg1") == datetime(2026, 11, 21, 17, 39, tzinfo=UTC)
        assert port.destroy("dlg1") is None
        assert [(etree.QName(w).namespace, etree.QName(w).localname, children(w)) for _u, w, _h in session.posts] == [
            (D1, "getNewProxyReq", []),
            (D1, "renewProxyReq", [("delegationID", "dlg1")]),
            (D1, "getTerminationTime", [("delegationID", "dlg1")]),
            (D1, "destroy", [("delegationID", "dlg1")]),
        ]
