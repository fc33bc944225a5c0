"""wsdl/wmproxy.wsdl against the gLite reference WSDLs.

Two views of "the same wire contract":

* structure: every operation, part (name and type), fault (name and element) and
  soap:body namespace of the reference is in ours, read with lxml;
* behaviour: zeep builds byte-for-byte the same request body (modulo prefixes)
  from both files, with the rpc wrapper in the port's namespace and unqualified
  children.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree

from wmproxy.client.wsdl import wsdl_path

REFERENCE_DIR = Path("/work/shared/reference/wsdl")
REFERENCE = REFERENCE_DIR / "WMProxy.wsdl"

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
WMP = "http://glite.org/wms/wmproxy"
D1 = "http://www.gridsite.org/namespaces/delegation-1"
D2 = "http://www.gridsite.org/namespaces/delegation-2"

WMP_OPS = (
    "getVersion getJDL jobRegister jobStart jobSubmit jobCancel jobPurge getMaxInputSandboxSize "
    "getSandboxDestURI getSandboxBulkDestURI getTransferProtocols getOutputFileList getJobStatus "
    "getProxyReq putProxy"
).split()
D1_OPS = ["getProxyReq", "putProxy"]
D2_OPS = (
    "getProxyReq putProxy getTerminationTime destroy getVersion getInterfaceVersion "
    "getNewProxyReq renewProxyReq getServiceMetadata"
).split()

# port name (same in both files) -> (namespace, operations of this issue)
PORTS = {
    "WMProxy_PortType": (WMP, WMP_OPS),
    "WMProxyDelegation_PortType": (D1, D1_OPS),
    "WMProxyDelegation2_PortType": (D2, D2_OPS),
}

needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason="reference WSDL not available")


# --- a tiny WSDL 1.1 reader over one or more files --------------------------------------


class WsdlModel:
    """Definitions of several WSDL files indexed by (kind, QName)."""

    def __init__(self, *files: Path) -> None:
        self.defs: dict[tuple[str, str], etree._Element] = {}
        self.services: list[etree._Element] = []
        for f in files:
            root = etree.parse(str(f)).getroot()
            tns = root.get("targetNamespace")
            for kind in ("message", "portType", "binding"):
                for el in root.findall(f"{{{WSDL_NS}}}{kind}"):
                    self.defs[(kind, f"{{{tns}}}{el.get('name')}")] = el
            self.services += root.findall(f"{{{WSDL_NS}}}service")

    @staticmethod
    def qname(el: etree._Element, value: str) -> str:
        prefix, _, local = value.rpartition(":")
        return f"{{{el.nsmap[prefix or None]}}}{local}"

    def port_binding(self, port_name: str) -> etree._Element:
        for svc in self.services:
            for port in svc.findall(f"{{{WSDL_NS}}}port"):
                if port.get("name") == port_name:
                    return self.defs[("binding", self.qname(port, port.get("binding")))]
        raise KeyError(port_name)

    def _parts(self, el: etree._Element) -> list[tuple[str, str]]:
        msg = self.defs[("message", self.qname(el, el.get("message")))]
        return [
            (p.get("name"), self.qname(p, p.get("type") or p.get("element")))
            for p in msg.findall(f"{{{WSDL_NS}}}part")
        ]

    def operation(self, port_name: str, op_name: str) -> dict[str, Any]:
        """Everything about one operation that shows on the wire."""
        binding = self.port_binding(port_name)
        port_type = self.defs[("portType", self.qname(binding, binding.get("type")))]
        pt_op = port_type.find(f"{{{WSDL_NS}}}operation[@name='{op_name}']")
        b_op = binding.find(f"{{{WSDL_NS}}}operation[@name='{op_name}']")
        assert pt_op is not None and b_op is not None, (port_name, op_name)
        bodies = b_op.findall(f"{{{WSDL_NS}}}*/{{{SOAP_NS}}}body")
        return {
            "style": binding.find(f"{{{SOAP_NS}}}binding").get("style"),
            "input": self._parts(pt_op.find(f"{{{WSDL_NS}}}input")),
            "output": self._parts(pt_op.find(f"{{{WSDL_NS}}}output")),
            "faults": sorted(
                (f.get("name"), self._parts(f)[0][1]) for f in pt_op.findall(f"{{{WSDL_NS}}}fault")
            ),
            "binding_faults": sorted(
                f.get("name") for f in b_op.findall(f"{{{WSDL_NS}}}fault/{{{SOAP_NS}}}fault")
            ),
            "body": sorted({(b.get("use"), b.get("namespace")) for b in bodies}),
        }


@pytest.fixture(scope="module")
def ours() -> WsdlModel:
    return WsdlModel(wsdl_path())


@pytest.fixture(scope="module")
def reference() -> WsdlModel:
    return WsdlModel(
        REFERENCE,
        REFERENCE_DIR / "WMProxy-gridsite-delegation-1.0.0.wsdl",
        REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl",
    )


# --- structure ---------------------------------------------------------------------------


class TestStructure:
    @needs_reference
    @pytest.mark.parametrize(
        ("port", "op"), [(p, o) for p, (_, ops) in PORTS.items() for o in ops]
    )
    def test_operation_matches_reference(self, ours: WsdlModel, reference: WsdlModel, port: str, op: str) -> None:
        assert ours.operation(port, op) == reference.operation(port, op)

    @pytest.mark.parametrize("port", list(PORTS))
    def test_port_has_exactly_the_operations_of_this_issue(self, ours: WsdlModel, port: str) -> None:
        binding = ours.port_binding(port)
        names = [op.get("name") for op in binding.findall(f"{{{WSDL_NS}}}operation")]
        assert sorted(names) == sorted(PORTS[port][1])

    @pytest.mark.parametrize("port", list(PORTS))
    def test_every_operation_is_rpc_literal_in_the_port_namespace(self, ours: WsdlModel, port: str) -> None:
        ns = PORTS[port][0]
        for op in PORTS[port][1]:
            info = ours.operation(port, op)
            assert info["style"] == "rpc"
            assert info["body"] == [("literal", ns)]
            assert info["binding_faults"] == sorted(name for name, _ in info["faults"])

    def test_soap_action_is_empty_everywhere(self) -> None:
        root = etree.parse(str(wsdl_path())).getroot()
        actions = root.findall(f".//{{{SOAP_NS}}}operation")
        assert len(actions) == len(WMP_OPS) + len(D1_OPS) + len(D2_OPS)
        assert {a.get("soapAction") for a in actions} == {""}

    def test_schemas_are_unqualified_and_self_contained(self) -> None:
        root = etree.parse(str(wsdl_path())).getroot()
        schemas = root.findall(f".//{{{XSD_NS}}}schema")
        assert {s.get("targetNamespace") for s in schemas} == {WMP, D1, D2}
        for s in schemas:
            assert s.get("elementFormDefault") in (None, "unqualified")
        assert not root.findall(f".//{{{XSD_NS}}}import") and not root.findall(f".//{{{XSD_NS}}}include")
        assert not root.findall(f"{{{WSDL_NS}}}import")

    def test_one_service_three_ports_one_address(self) -> None:
        root = etree.parse(str(wsdl_path())).getroot()
        (service,) = root.findall(f"{{{WSDL_NS}}}service")
        assert service.get("name") == "WMProxy"
        ports = service.findall(f"{{{WSDL_NS}}}port")
        assert [p.get("name") for p in ports] == list(PORTS)
        addresses = {p.find(f"{{{SOAP_NS}}}address").get("location") for p in ports}
        assert addresses == {"https://localhost:7443/glite_wms_wmproxy_server"}


# --- what zeep puts on the wire ------------------------------------------------------------

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("WMProxy_PortType", "getVersion", {}),
    ("WMProxy_PortType", "getJDL", {"jobId": "https://h:9000/abc", "type": "REGISTERED"}),
    ("WMProxy_PortType", "jobRegister", {"jdl": "[Executable=\"/bin/true\";]", "delegationId": "d1"}),
    ("WMProxy_PortType", "jobStart", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "jobSubmit", {"jdl": "[]", "delegationId": ""}),
    ("WMProxy_PortType", "jobCancel", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "jobPurge", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "getMaxInputSandboxSize", {}),
    ("WMProxy_PortType", "getSandboxDestURI", {"jobId": "https://h:9000/abc", "protocol": "https"}),
    ("WMProxy_PortType", "getSandboxBulkDestURI", {"jobId": "https://h:9000/abc", "protocol": "all"}),
    ("WMProxy_PortType", "getTransferProtocols", {}),
    ("WMProxy_PortType", "getOutputFileList", {"jobId": "https://h:9000/abc", "protocol": "https"}),
    ("WMProxy_PortType", "getJobStatus", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "getProxyReq", {"delegationID": "d1"}),
    ("WMProxy_PortType", "putProxy", {"delegationID": "d1", "proxy": "-----BEGIN CERTIFICATE-----"}),
    ("WMProxyDelegation_PortType", "getProxyReq", {"delegationID": "d1"}),
    ("WMProxyDelegation_PortType", "putProxy", {"delegationID": "d1", "proxy": "PEM"}),
    ("WMProxyDelegation2_PortType", "getProxyReq", {"delegationID": ""}),
    ("WMProxyDelegation2_PortType", "putProxy", {"delegationID": "d1", "proxy": "PEM"}),
    ("WMProxyDelegation2_PortType", "getTerminationTime", {"delegationID": "d1"}),
    ("WMProxyDelegation2_PortType", "destroy", {"delegationID": "d1"}),
    ("WMProxyDelegation2_PortType", "getVersion", {}),
    ("WMProxyDelegation2_PortType", "getInterfaceVersion", {}),
    ("WMProxyDelegation2_PortType", "getNewProxyReq", {}),
    ("WMProxyDelegation2_PortType", "renewProxyReq", {"delegationID": "d1"}),
    ("WMProxyDelegation2_PortType", "getServiceMetadata", {"key": "k"}),
]


def _body(client: zeep.Client, port: str, op: str, kwargs: dict[str, Any]) -> etree._Element:
    service = client.bind("WMProxy", port)
    envelope = client.create_message(service, op, **kwargs)
    body = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    (wrapper,) = list(body)
    return wrapper


def _shape(el: etree._Element) -> tuple[Any, ...]:
    """Tag (Clark notation), text, attributes and children: the XML modulo prefixes."""
    return (el.tag, (el.text or "").strip(), sorted(el.attrib.items()), [_shape(c) for c in el])


@pytest.fixture(scope="module")
def our_client() -> zeep.Client:
    return zeep.Client(str(wsdl_path()))


@pytest.fixture(scope="module")
def reference_client() -> zeep.Client:
    return zeep.Client(str(REFERENCE))


class TestZeepRequests:
    @pytest.mark.parametrize(("port", "op", "kwargs"), CALLS, ids=[f"{p}.{o}" for p, o, _ in CALLS])
    def test_wrapper_is_in_port_namespace_with_unqualified_children(
        self, our_client: zeep.Client, port: str, op: str, kwargs: dict[str, Any]
    ) -> None:
        wrapper = _body(our_client, port, op, kwargs)
        assert wrapper.tag == f"{{{PORTS[port][0]}}}{op}"
        assert [c.tag for c in wrapper] == list(kwargs)
        assert [c.text or "" for c in wrapper] == list(kwargs.values())

    @needs_reference
    @pytest.mark.parametrize(("port", "op", "kwargs"), CALLS, ids=[f"{p}.{o}" for p, o, _ in CALLS])
    def test_same_xml_as_reference(
        self,
        our_client: zeep.Client,
        reference_client: zeep.Client,
        port: str,
        op: str,
        kwargs: dict[str, Any],
    ) -> None:
        assert _shape(_body(our_client, port, op, kwargs)) == _shape(
            _body(reference_client, port, op, kwargs)
        )


# --- schema types --------------------------------------------------------------------------

TYPES = {
    WMP: [
        "JdlType", "StringList", "DestURIStructType", "DestURIsStructType", "StringAndLongType",
        "StringAndLongList", "JobStatusStructType", "JobIdStructType", "BaseFaultType",
        *(f"{k}FaultType" for k in (
            "Authentication", "Authorization", "InvalidArgument", "Generic", "GetQuotaManagement",
            "NoSuitableResources", "JobUnknown", "OperationNotAllowed", "ServerOverloaded",
        )),
    ],
    D1: ["DelegationExceptionType"],
    D2: ["NewProxyReq"],
}
ELEMENTS = {
    WMP: [f"{k}Fault" for k in (
        "Authentication", "Authorization", "InvalidArgument", "Generic", "GetQuotaManagement",
        "NoSuitableResources", "JobUnknown", "OperationNotAllowed", "ServerOverloaded",
    )],
    D1: ["DelegationException"],
    D2: ["DelegationException"],
}


def _schemas(*files: Path) -> dict[str, list[etree._Element]]:
    found: dict[str, list[etree._Element]] = {}
    for f in files:
        for schema in etree.parse(str(f)).getroot().iter(f"{{{XSD_NS}}}schema"):
            found.setdefault(schema.get("targetNamespace"), []).append(schema)
    return found


def _shape_of_type(el: etree._Element) -> list[Any]:
    """Particles and derivations of a type, with QName-resolved types and default occurrences."""
    shape: list[Any] = []
    for node in el.iter(f"{{{XSD_NS}}}element", f"{{{XSD_NS}}}extension", f"{{{XSD_NS}}}enumeration"):
        local = etree.QName(node).localname
        if local == "enumeration":
            shape.append(("enum", node.get("value")))
        elif local == "extension":
            shape.append(("extends", WsdlModel.qname(node, node.get("base"))))
        else:
            shape.append((
                node.get("name"),
                WsdlModel.qname(node, node.get("type")) if node.get("type") else None,
                node.get("minOccurs", "1"),
                node.get("maxOccurs", "1"),
                node.get("nillable", "false"),
            ))
    return shape


def _find(schemas: list[etree._Element], kind: str, name: str) -> etree._Element:
    for schema in schemas:
        for child in schema:
            if isinstance(child.tag, str) and etree.QName(child).localname == kind and child.get("name") == name:
                return child
    raise KeyError(name)


class TestTypes:
    @needs_reference
    @pytest.mark.parametrize(("ns", "name"), [(ns, n) for ns, names in TYPES.items() for n in names])
    def test_type_matches_reference(self, ns: str, name: str) -> None:
        ours = _schemas(wsdl_path())[ns]
        ref = _schemas(
            REFERENCE, REFERENCE_DIR / "WMProxy-gridsite-delegation-1.0.0.wsdl",
            REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl",
        )[ns]
        kind = "simpleType" if name == "JdlType" else "complexType"
        assert _shape_of_type(_find(ours, kind, name)) == _shape_of_type(_find(ref, kind, name))

    @needs_reference
    @pytest.mark.parametrize(("ns", "name"), [(ns, n) for ns, names in ELEMENTS.items() for n in names])
    def test_fault_element_matches_reference(self, ns: str, name: str) -> None:
        ours = _find(_schemas(wsdl_path())[ns], "element", name)
        ref = _find(
            _schemas(REFERENCE, REFERENCE_DIR / "WMProxy-gridsite-delegation-1.0.0.wsdl",
                     REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl")[ns],
            "element", name,
        )
        assert _shape_of_type(ours) == _shape_of_type(ref)
        assert (WsdlModel.qname(ours, ours.get("type")) if ours.get("type") else None) == (
            WsdlModel.qname(ref, ref.get("type")) if ref.get("type") else None
        )
