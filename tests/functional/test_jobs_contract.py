"""The jobs-1 extension WSDL (``wsdl/wmproxy-jobs.wsdl``) and its Spyne port agree, and the
reference WSDL stays without it (issue 12)."""

from __future__ import annotations

from spyne.interface.wsdl import Wsdl11

from wmproxy.soap.contract import WSDL_FILE, operations_by_namespace
from wmproxy.soap.dispatch import SoapDispatcher
from wmproxy.soap.jobs_port import DECLARED_FAULTS
from wmproxy.soap.namespaces import JOBS_1

JOBS_WSDL = WSDL_FILE.parent / "wmproxy-jobs.wsdl"


def test_the_extension_wsdl_declares_the_served_operations_and_faults() -> None:
    declared = operations_by_namespace(JOBS_WSDL)
    assert set(declared) == {JOBS_1}
    assert set(declared[JOBS_1]) == SoapDispatcher().operations[JOBS_1] == {"getJobEvents", "listJobs"}
    assert all(faults == DECLARED_FAULTS for faults in declared[JOBS_1].values())


def test_the_reference_wsdl_does_not_know_the_extension() -> None:
    assert JOBS_1 not in operations_by_namespace()
    assert "getJobEvents" not in WSDL_FILE.read_text()


def _spyne_parts(operation: str) -> list[str]:
    """Part names of the request Spyne expects for ``operation`` of the jobs-1 port."""
    app = SoapDispatcher().ports[JOBS_1].app
    wsdl = Wsdl11(app.interface)
    wsdl.build_interface_document("https://localhost/x")
    method = app.interface.service_method_map[f"{{{JOBS_1}}}{operation}"][0]
    return list(method.in_message._type_info)


def test_the_parts_are_the_wsdl_parts_in_order() -> None:
    from lxml import etree

    tree = etree.parse(str(JOBS_WSDL))
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/"}
    for operation in ("getJobEvents", "listJobs"):
        parts = tree.xpath(f"//wsdl:message[@name='{operation}Request']/wsdl:part/@name", namespaces=ns)
        assert parts == _spyne_parts(operation)
