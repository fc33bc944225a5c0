"""jobRegisterJSDL, jobListMatchJSDL and jobRegister on the wire: the JDL registered for a
JSDL part and the typed faults of what cannot be registered (wmproxy/soap/wmproxy_port.py,
wmproxy/jdl/jsdl.py, wmproxy/jdl/registered.py; wmproxy-behaviour.md §12, §1.5)."""

from __future__ import annotations

import classad2
import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import Reply, SoapApp, delegate_in_process
from wmproxy.domain import Principal
from wmproxy.jdl.parse import parse_stored_jdl
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY

JSDL = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
POSIX = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"
ECHO = "<p:Executable>/bin/echo</p:Executable>"


def _description(application: str = ECHO, rest: str = "") -> str:
    return (f"<jsdl:JobDescription><jsdl:Application><p:POSIXApplication>{application}"
            f"</p:POSIXApplication></jsdl:Application>{rest}</jsdl:JobDescription>")


def _resources(inner: str) -> str:
    return f"<jsdl:Resources>{inner}</jsdl:Resources>"


def _jsdl_request(operation: str, part: str) -> bytes:
    """``<ns:operation><jsdl>part</jsdl><delegationId>d</delegationId></ns:operation>``."""
    return (f'<S:Envelope xmlns:S="{SOAP_ENV}" xmlns:ns="{WMPROXY}" xmlns:jsdl="{JSDL}" xmlns:p="{POSIX}">'
            f"<S:Body><ns:{operation}><jsdl>{part}</jsdl><delegationId>d</delegationId></ns:{operation}>"
            f"</S:Body></S:Envelope>").encode()


@pytest.fixture
def delegated(soap: SoapApp, alice: Principal, pki: Pki) -> str:
    return delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "d")


def _registered(soap: SoapApp, caller: Principal, reply: Reply) -> str:
    """The registered JDL (getJDL REGISTERED) of the job ``reply`` registered."""
    assert reply.status.startswith("200"), reply.body
    job_id = reply.element.findtext(".//jobIdStruct/id")
    answer = soap.call(WMPROXY, "getJDL", caller, jobId=job_id, type="REGISTERED")
    assert answer.status.startswith("200"), answer.body
    return answer.element.findtext("jdl") or ""


def _invalid_argument(reply: Reply, method: str, code: str = "1225") -> str:
    """The Description of the InvalidArgumentFault (``code``, BaseFaultType filled) ``reply`` is."""
    assert reply.status.startswith("500"), reply.body
    assert b"Traceback" not in reply.body
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, "InvalidArgumentFault"), reply.body
    assert [c.tag for c in detail][:4] == ["methodName", "Timestamp", "ErrorCode", "Description"]
    assert detail.findtext("methodName") == method and detail.findtext("ErrorCode") == code
    return detail.findtext("Description") or ""


class TestStringLiteralsKeptAsWritten:
    """Runs of spaces in a string literal of an expression were collapsed to one when the
    JDL was registered: ``"ce  01"`` became ``"ce 01"``, another host."""

    def test_jsdl_host_name_with_two_spaces(self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        hosts = _resources("<jsdl:CandidateHosts><jsdl:HostName>ce  01</jsdl:HostName></jsdl:CandidateHosts>")
        reply = soap.request(_jsdl_request("jobRegisterJSDL", _description(rest=hosts)), alice)

        ad = parse_stored_jdl(_registered(soap, alice, reply))

        assert str(ad.lookup("Requirements")) == 'other.GlueCEInfoHostName == "ce  01"'

    def test_jdl_requirements_over_several_lines(self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        jdl = ('[ Executable = "/bin/echo";\n  Requirements = other.GlueCEInfoHostName == "ce  01"\n'
               '    && member("a \\"  b", { "a \\"  b",\n  "c" }); ]')
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=jdl, delegationId=delegated)

        text = _registered(soap, alice, reply)

        line = next(line for line in text.splitlines() if line.lstrip().startswith("Requirements"))
        assert line == ('  Requirements = other.GlueCEInfoHostName == "ce  01" && '
                        'member("a \\"  b", { "a \\"  b", "c" });'), line
        assert parse_stored_jdl(text).lookup("Requirements") == classad2.ClassAd(jdl).lookup("Requirements")


class TestNumbersBeyondWhatTheJdlHolds:
    """classad2 refused a Python int beyond 64 bits (SystemError: GenericFault 1201) and reads
    an integer literal beyond 64 bits as 0."""

    CPU_1E19 = _resources("<jsdl:TotalCPUCount><jsdl:Exact>1e19</jsdl:Exact></jsdl:TotalCPUCount>")

    @pytest.mark.parametrize("operation", ["jobRegisterJSDL", "jobListMatchJSDL"])
    def test_total_cpu_count_beyond_32_bits_is_an_invalid_argument(
            self, soap: SoapApp, alice: Principal, delegated: str, operation: str) -> None:
        reply = soap.request(_jsdl_request(operation, _description(rest=self.CPU_1E19)), alice)

        assert _invalid_argument(reply, operation) == (
            "Invalid Argument: JSDL cannot be converted to JDL: "
            "jsdl:Resources/jsdl:TotalCPUCount: 1e+19 is not an integer from 1 to 2147483647")

    def test_a_memory_bound_beyond_64_bits_keeps_its_meaning(
            self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        memory = _resources("<jsdl:IndividualPhysicalMemory><jsdl:LowerBoundedRange>1e20"
                            "</jsdl:LowerBoundedRange></jsdl:IndividualPhysicalMemory>")
        reply = soap.request(_jsdl_request("jobRegisterJSDL", _description(rest=memory)), alice)

        ad = parse_stored_jdl(_registered(soap, alice, reply))

        assert str(ad.lookup("Requirements")) == "other.GlueHostMainMemoryRAMSize * 1048576 >= 1.000000000000000E+20"

    def test_jdl_cpu_number_beyond_64_bits_is_refused(self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        jdl = '[ Executable = "/bin/echo"; CpuNumber = 10000000000000000000; ]'
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=jdl, delegationId=delegated)

        assert _invalid_argument(reply, "jobRegister", "1219") == (
            "Unable to parse JDL: the integer 10000000000000000000 is out of range (at most 9223372036854775807; "
            "a real number is written with a decimal point)")


class TestRepeatedElements:
    """Spyne hands over only the part's first child: a second JobDescription was dropped; a
    second Executable overwrote the first (``/bin/echo`` then ``/bin/rm`` registered ``/bin/rm``)."""

    @pytest.mark.parametrize("operation", ["jobRegisterJSDL", "jobSubmitJSDL", "jobListMatchJSDL"])
    def test_a_second_job_description_is_refused(
            self, soap: SoapApp, alice: Principal, delegated: str, operation: str) -> None:
        part = _description() + _description("<p:Executable>/bin/rm</p:Executable>")

        reply = soap.request(_jsdl_request(operation, part), alice)

        assert _invalid_argument(reply, operation) == (
            "Invalid Argument: JSDL must contain exactly one jsdl:JobDescription")

    def test_a_job_definition_in_the_part_is_still_read(self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        part = f"<!-- the definition --><jsdl:JobDefinition>{_description()}</jsdl:JobDefinition>"
        reply = soap.request(_jsdl_request("jobRegisterJSDL", part), alice)

        assert parse_stored_jdl(_registered(soap, alice, reply))["Executable"] == "/bin/echo"

    def test_a_second_executable_is_refused(self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        part = _description(ECHO + "<p:Executable>/bin/rm</p:Executable>")

        reply = soap.request(_jsdl_request("jobRegisterJSDL", part), alice)

        assert _invalid_argument(reply, "jobRegisterJSDL") == (
            "Invalid Argument: JSDL cannot be converted to JDL: "
            "jsdl:Application/jsdl-posix:POSIXApplication/jsdl-posix:Executable is given more than once")


class TestRanges:
    def test_exclusive_bounds_of_a_range_are_registered_strict(
            self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        """Range 2..8 with both bounds exclusive was registered ``>= 2 && <= 8``."""
        count = _resources('<jsdl:IndividualCPUCount><jsdl:Range><jsdl:LowerBound exclusiveBound="true">2'
                           '</jsdl:LowerBound><jsdl:UpperBound exclusiveBound="true">8</jsdl:UpperBound>'
                           "</jsdl:Range></jsdl:IndividualCPUCount>")
        reply = soap.request(_jsdl_request("jobRegisterJSDL", _description(rest=count)), alice)

        ad = parse_stored_jdl(_registered(soap, alice, reply))

        assert str(ad.lookup("Requirements")) == (
            "(other.GlueHostArchitectureSMPSize > 2 && other.GlueHostArchitectureSMPSize < 8)")


class TestDescriptiveElements:
    def test_application_name_and_version_are_accepted_and_ignored(
            self, soap: SoapApp, alice: Principal, delegated: str) -> None:
        """Application_Type allows ApplicationName and ApplicationVersion: they were refused (1225)."""
        part = ("<jsdl:JobDescription><jsdl:Application><jsdl:ApplicationName>echo</jsdl:ApplicationName>"
                "<jsdl:ApplicationVersion>8.32</jsdl:ApplicationVersion>"
                f"<p:POSIXApplication>{ECHO}</p:POSIXApplication></jsdl:Application></jsdl:JobDescription>")
        reply = soap.request(_jsdl_request("jobRegisterJSDL", part), alice)

        text = _registered(soap, alice, reply)

        assert parse_stored_jdl(text)["Executable"] == "/bin/echo"
        assert "8.32" not in text
