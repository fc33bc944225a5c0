"""Fault envelopes in the reference wire formats → WMProxyClientError (wmproxy-behaviour.md §1.5.1)."""

from __future__ import annotations

import pytest
import requests
from zeep import exceptions as zeep_exceptions

from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.client.faults import SERVER_ERROR, translated_errors

from .conftest import FakeSession, response

# A pre-2011 gSOAP WMProxy fault: faultstring plus a typed detail element in the
# wmproxy namespace whose BaseFaultType fields are unqualified.
JOB_UNKNOWN = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" \
xmlns:ns1="http://glite.org/wms/wmproxy" \
xmlns:ns2="http://www.gridsite.org/namespaces/delegation-1" \
xmlns:ns3="http://www.gridsite.org/namespaces/delegation-2">
<SOAP-ENV:Body>
<SOAP-ENV:Fault>
<faultcode>SOAP-ENV:Server</faultcode>
<faultstring>The job has not been registered from this Workload Manager Proxy server \
(https://wms.example.org:7443/glite_wms_wmproxy_server) or it has been purged</faultstring>
<detail>
<ns1:JobUnknownFault>
<methodName>jobStart</methodName>
<Timestamp>2013-01-01T10:00:00Z</Timestamp>
<ErrorCode>1218</ErrorCode>
<Description>The job has not been registered from this Workload Manager Proxy server \
(https://wms.example.org:7443/glite_wms_wmproxy_server) or it has been purged</Description>
<FaultCause>The job has not been registered from this Workload Manager Proxy server</FaultCause>
<FaultCause>jobStart: checkJobDirectoryExistence</FaultCause>
</ns1:JobUnknownFault>
</detail>
</SOAP-ENV:Fault>
</SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

# gLite HEAD: every error is a Server fault with only a faultstring.
NO_DETAIL = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>
<faultstring>Authorization error: user not authorized</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

DELEGATION2 = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:ns3="http://www.gridsite.org/namespaces/delegation-2">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>
<faultstring>DelegationException</faultstring>
<detail><ns3:DelegationException><msg>Client delegated proxy not found:  get termination time not allowed</msg>\
</ns3:DelegationException></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>
"""

DELEGATION1 = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:ns2="http://www.gridsite.org/namespaces/delegation-1">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode><faultstring></faultstring>
<detail><ns2:DelegationException><message>invalid delegation id</message></ns2:DelegationException></detail>
</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>
"""


def _raise(client: WMProxyClient, session: FakeSession, envelope: bytes, call: str, *args: str) -> WMProxyClientError:
    session.reply = lambda _el: response(500, envelope)
    with pytest.raises(WMProxyClientError) as err:
        getattr(client, call)(*args)
    return err.value


class TestFaultMapping:
    def test_typed_detail_gives_type_code_method_description_and_causes(
        self, client: WMProxyClient, session: FakeSession
    ) -> None:
        err = _raise(client, session, JOB_UNKNOWN, "job_start", "https://lb:9000/x")
        assert err.fault_type == "JobUnknownFault"
        assert err.error_code == "1218"
        assert err.method == "jobStart"
        assert err.description.startswith("The job has not been registered from this Workload Manager Proxy server")
        assert err.causes == (
            "The job has not been registered from this Workload Manager Proxy server",
            "jobStart: checkJobDirectoryExistence",
        )

    def test_no_detail_falls_back_to_faultstring(self, client: WMProxyClient, session: FakeSession) -> None:
        err = _raise(client, session, NO_DETAIL, "job_cancel", "https://lb:9000/x")
        assert (err.fault_type, err.description) == (SERVER_ERROR, "Authorization error: user not authorized")
        assert err.error_code is None
        assert err.method == "jobCancel"  # the operation called

    def test_delegation2_exception_msg(self, client: WMProxyClient, session: FakeSession) -> None:
        err = _raise(client, session, DELEGATION2, "get_termination_time", "d")
        assert err.fault_type == "DelegationException"
        assert err.description == "Client delegated proxy not found:  get termination time not allowed"
        assert err.method == "getTerminationTime"

    def test_delegation1_exception_message(self, client: WMProxyClient, session: FakeSession) -> None:
        session.reply = lambda _el: response(500, DELEGATION1)
        with pytest.raises(WMProxyClientError) as err:
            client.put_proxy("d/x", "PEM", port="delegation1")
        assert (err.value.fault_type, err.value.description) == ("DelegationException", "invalid delegation id")
        assert err.value.method == "putProxy"

    def test_str_is_type_and_description(self) -> None:
        assert str(WMProxyClientError("GenericFault", "boom")) == "GenericFault: boom"


class TestTransportErrors:
    def test_http_error_status(self, client: WMProxyClient, session: FakeSession) -> None:
        session.reply = lambda _el: response(503, b"busy", "text/plain")
        with pytest.raises(WMProxyClientError) as err:
            client.job_purge("j")
        assert (err.value.fault_type, err.value.method) == ("ConnectionError", "jobPurge")
        assert "503" in err.value.description

    def test_connection_refused(self, client: WMProxyClient, session: FakeSession) -> None:
        def refuse(_el: object) -> requests.Response:
            raise requests.exceptions.ConnectionError("Connection refused")

        session.reply = refuse
        with pytest.raises(WMProxyClientError) as err:
            client.get_version()
        assert err.value.fault_type == "ConnectionError"
        assert "connection refused (no service listening there)" in err.value.description

    def test_tls_failure(self) -> None:
        with pytest.raises(WMProxyClientError) as err, translated_errors("getVersion"):
            raise requests.exceptions.SSLError("certificate verify failed")
        assert err.value.fault_type == "TLSError"
        assert err.value.description.startswith("the certificate of the service is not trusted by the CA directory")

    def test_garbage_response(self, client: WMProxyClient, session: FakeSession) -> None:
        session.reply = lambda _el: response(200, b"<html>not soap</html>", "text/html")
        with pytest.raises(WMProxyClientError) as err:
            client.get_version()
        assert err.value.fault_type == "InvalidResponse"

    def test_zeep_fault_outside_a_call(self) -> None:
        with pytest.raises(WMProxyClientError) as err, translated_errors("jobSubmit"):
            raise zeep_exceptions.Fault("plain")
        assert (err.value.fault_type, err.value.description, err.value.method) == (SERVER_ERROR, "plain", "jobSubmit")
