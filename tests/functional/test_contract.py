"""The project's WSDL and the Spyne ports describe the same contract (no drift)."""

from __future__ import annotations

from lxml import etree

from wmproxy.soap.app import published_wsdl
from wmproxy.soap.contract import WSDL_FILE, operations_by_namespace
from wmproxy.soap.dispatch import SoapDispatcher
from wmproxy.soap.inspection_port import WSDL_FILE as INSPECTION_WSDL
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY


def test_every_wsdl_operation_is_served_and_nothing_else() -> None:
    served = SoapDispatcher().operations
    declared = {ns: set(ops) for ns, ops in operations_by_namespace().items()}
    declared |= {ns: set(ops) for ns, ops in operations_by_namespace(WSDL_FILE.parent / "wmproxy-jobs.wsdl").items()}
    declared.update({ns: set(ops) for ns, ops in operations_by_namespace(INSPECTION_WSDL).items()})
    assert declared == served


def test_the_wsdl_has_the_three_ports_of_the_reference() -> None:
    assert set(operations_by_namespace()) == {WMPROXY, DELEGATION_1, DELEGATION_2}


def test_published_wsdl_is_the_committed_file_with_this_endpoint() -> None:
    published = etree.fromstring(published_wsdl("https://wms.example.org:8443/glite_wms_wmproxy_server"))
    committed = etree.parse(str(WSDL_FILE)).getroot()
    addresses = published.findall(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert len(addresses) == 3
    assert {a.get("location") for a in addresses} == {"https://wms.example.org:8443/glite_wms_wmproxy_server"}
    for address in committed.findall(".//{http://schemas.xmlsoap.org/wsdl/soap/}address"):
        address.set("location", "https://wms.example.org:8443/glite_wms_wmproxy_server")
    assert etree.tostring(published, method="c14n") == etree.tostring(committed, method="c14n")
