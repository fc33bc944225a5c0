"""wsdl/wmproxy.wsdl against the gLite reference WSDLs.

Two views of "the same wire contract":

* structure: every operation of the three reference ports, with its parts (name
  and type), faults (name and element) and soap:body namespace, is in ours, read
  with lxml; plus the four GridSite delegation-1 extensions (getNewProxyReq,
  renewProxyReq, getTerminationTime, destroy), shaped like their delegation-2
  namesakes, and the one WMProxy extension (getProxyRenewalInfo), shaped like
  getJobProxyInfo;
* behaviour: zeep builds byte-for-byte the same request body (modulo prefixes)
  from both files, with the rpc wrapper in the port's namespace and unqualified
  children, for a call of every operation (JSDL ones included: our open
  JobDefinition_Type fed by the client's converter gives the same XML as the
  reference's typed JSDL schema).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree

from tests.conftest import need_peer
from wmproxy.client.jsdl import jsdl_part
from wmproxy.client.wsdl import wsdl_path

#: The reference WSDLs beside the checkout (``../shared/reference``), as tests/integration/refclient.py finds them.
REFERENCE_DIR = Path(__file__).resolve().parents[4] / "shared" / "reference" / "wsdl"
REFERENCE = REFERENCE_DIR / "WMProxy.wsdl"

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
WMP = "http://glite.org/wms/wmproxy"
D1 = "http://www.gridsite.org/namespaces/delegation-1"
D2 = "http://www.gridsite.org/namespaces/delegation-2"
JSDL = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
JSDL_POSIX = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"

# Every operation of the reference ports (TestStructure checks this list against the files).
WMP_OPS = ["getVersion", "getJDL", "jobRegister", "jobStart", "jobSubmit", "jobCancel", "jobPurge",
           "getMaxInputSandboxSize", "getSandboxDestURI", "getSandboxBulkDestURI", "getTransferProtocols",
           "getOutputFileList", "getJobStatus", "getProxyReq", "putProxy", "getTotalQuota", "getFreeQuota",
           "jobListMatch", "jobRegisterJSDL", "jobSubmitJSDL", "jobListMatchJSDL", "getJobTemplate", "getDAGTemplate",
           "getCollectionTemplate", "getIntParametricJobTemplate", "getStringParametricJobTemplate", "getACLItems",
           "addACLItems", "removeACLItem", "getDelegatedProxyInfo", "getJobProxyInfo", "enableFilePerusal",
           "getPerusalFiles"]
D1_OPS = ["getProxyReq", "putProxy"]
D2_OPS = ["getProxyReq", "putProxy", "getTerminationTime", "destroy", "getVersion", "getInterfaceVersion",
          "getNewProxyReq", "renewProxyReq", "getServiceMetadata"]
# GridSite extension: htproxyput & co. call these in the delegation-1 namespace.
D1_EXTRAS = ["getNewProxyReq", "renewProxyReq", "getTerminationTime", "destroy"]
# Project extension (issue 4): the MyProxy renewal state ProxyInfoStructType cannot carry.
WMP_EXTRAS = ["getProxyRenewalInfo"]

# port name (same in both files) -> (namespace, operations of the reference)
PORTS = {
    "WMProxy_PortType": (WMP, WMP_OPS),
    "WMProxyDelegation_PortType": (D1, D1_OPS),
    "WMProxyDelegation2_PortType": (D2, D2_OPS),
}
# port name -> every operation of ours
OUR_OPS = {
    "WMProxy_PortType": WMP_OPS + WMP_EXTRAS,
    "WMProxyDelegation_PortType": D1_OPS + D1_EXTRAS,
    "WMProxyDelegation2_PortType": D2_OPS,
}

def needs_reference(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` against the reference WSDL: without it, a failure under CI (``need_peer``), a skip elsewhere."""

    @functools.wraps(test)
    def checked(*args: Any, **kwargs: Any) -> None:
        if not REFERENCE.is_file():
            need_peer(f"the reference WSDL {REFERENCE} is missing")
        test(*args, **kwargs)

    return checked


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


def _binding_ops(model: WsdlModel, port: str) -> list[str]:
    return [op.get("name") for op in model.port_binding(port).findall(f"{{{WSDL_NS}}}operation")]


class TestStructure:
    @needs_reference
    @pytest.mark.parametrize("port", list(PORTS))
    def test_operation_lists_are_those_of_the_reference(self, reference: WsdlModel, port: str) -> None:
        assert sorted(_binding_ops(reference, port)) == sorted(PORTS[port][1])

    @needs_reference
    @pytest.mark.parametrize(
        ("port", "op"), [(p, o) for p, (_, ops) in PORTS.items() for o in ops]
    )
    def test_operation_matches_reference(self, ours: WsdlModel, reference: WsdlModel, port: str, op: str) -> None:
        assert ours.operation(port, op) == reference.operation(port, op)

    @pytest.mark.parametrize("port", list(PORTS))
    def test_port_has_exactly_the_reference_operations_and_the_extensions(self, ours: WsdlModel, port: str) -> None:
        assert sorted(_binding_ops(ours, port)) == sorted(OUR_OPS[port])

    @pytest.mark.parametrize("op", D1_EXTRAS)
    def test_delegation1_extension_is_shaped_like_delegation2(self, ours: WsdlModel, op: str) -> None:
        """peers.md §6.2: same parts as delegation-2, delegation-1 body namespace and fault."""
        d1 = ours.operation("WMProxyDelegation_PortType", op)
        d2 = ours.operation("WMProxyDelegation2_PortType", op)
        as_d2 = lambda parts: [(n, t.replace(f"{{{D1}}}", f"{{{D2}}}")) for n, t in parts]  # noqa: E731
        assert as_d2(d1["input"]) == d2["input"]
        assert as_d2(d1["output"]) == d2["output"]
        assert d1["faults"] == [("DelegationException", f"{{{D1}}}DelegationException")]
        assert d1["body"] == [("literal", D1)]

    def test_delegation1_extension_parts(self, ours: WsdlModel) -> None:
        port = "WMProxyDelegation_PortType"
        assert ours.operation(port, "getNewProxyReq")["output"] == [("getNewProxyReqReturn", f"{{{D1}}}NewProxyReq")]
        assert ours.operation(port, "renewProxyReq")["output"] == [("renewProxyReqReturn", f"{{{XSD_NS}}}string")]
        assert ours.operation(port, "getTerminationTime")["output"] == [
            ("getTerminationTimeReturn", f"{{{XSD_NS}}}dateTime")
        ]
        assert ours.operation(port, "destroy")["output"] == []

    def test_wmproxy_extension_is_shaped_like_get_job_proxy_info(self, ours: WsdlModel) -> None:
        """getProxyRenewalInfo: jobId in, one ProxyRenewalInfoStructType out, getJobProxyInfo's faults."""
        port = "WMProxy_PortType"
        extension = ours.operation(port, "getProxyRenewalInfo")
        model = ours.operation(port, "getJobProxyInfo")
        assert extension["input"] == model["input"] == [("jobId", f"{{{XSD_NS}}}string")]
        assert extension["output"] == [("renewal", f"{{{WMP}}}ProxyRenewalInfoStructType")]
        assert extension["faults"] == model["faults"]
        assert extension["binding_faults"] == model["binding_faults"]
        assert extension["body"] == [("literal", WMP)]

    def test_wmproxy_extension_type(self) -> None:
        (schema,) = _schemas(wsdl_path())[WMP]
        xsd = lambda name: f"{{{XSD_NS}}}{name}"  # noqa: E731
        assert _shape_of_type(_find([schema], "complexType", "ProxyRenewalInfoStructType")) == [
            ("myProxyServer", xsd("string"), "1", "1", "true"),
            ("registered", xsd("boolean"), "1", "1", "false"),
            ("lastAttempt", xsd("dateTime"), "1", "1", "true"),
            ("lastResult", xsd("string"), "1", "1", "true"),
            ("lastError", xsd("string"), "1", "1", "true"),
            ("renewals", xsd("int"), "1", "1", "false"),
            ("proxyEndTime", xsd("string"), "1", "1", "false"),
        ]

    @needs_reference
    def test_wmproxy_extension_is_not_in_the_reference(self, reference: WsdlModel) -> None:
        assert not set(WMP_EXTRAS) & set(_binding_ops(reference, "WMProxy_PortType"))
        for f in (REFERENCE, REFERENCE_DIR / "WMProxy-gridsite-delegation-1.0.0.wsdl",
                  REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl"):
            assert b"ProxyRenewalInfo" not in f.read_bytes()

    @pytest.mark.parametrize("port", list(PORTS))
    def test_every_operation_is_rpc_literal_in_the_port_namespace(self, ours: WsdlModel, port: str) -> None:
        ns = PORTS[port][0]
        for op in OUR_OPS[port]:
            info = ours.operation(port, op)
            assert info["style"] == "rpc"
            assert info["body"] == [("literal", ns)]
            assert info["binding_faults"] == sorted(name for name, _ in info["faults"])

    def test_soap_action_is_empty_everywhere(self) -> None:
        root = etree.parse(str(wsdl_path())).getroot()
        actions = root.findall(f".//{{{SOAP_NS}}}operation")
        assert len(actions) == sum(len(ops) for ops in OUR_OPS.values())
        assert {a.get("soapAction") for a in actions} == {""}

    def test_schemas_are_unqualified_and_self_contained(self) -> None:
        root = etree.parse(str(wsdl_path())).getroot()
        schemas = root.findall(f".//{{{XSD_NS}}}schema")
        assert {s.get("targetNamespace") for s in schemas} == {WMP, D1, D2, JSDL}
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
    # --- the rest of the WMProxy port ---
    ("WMProxy_PortType", "getTotalQuota", {}),
    ("WMProxy_PortType", "getFreeQuota", {}),
    ("WMProxy_PortType", "jobListMatch", {"jdl": "[Executable=\"/bin/true\";]", "delegationId": "d1"}),
    ("WMProxy_PortType", "getJobTemplate", {
        "jobType": {"jobType": ["NORMAL", "MPI"]}, "executable": "/bin/ls", "arguments": "-l",
        "requirements": "true", "rank": "-other.GlueCEStateEstimatedResponseTime",
    }),
    ("WMProxy_PortType", "getDAGTemplate", {
        "dependencies": {"name": None, "childrenJob": [
            {"name": "a", "childrenJob": [{"name": "b", "childrenJob": []}, {"name": "c"}]},
        ]},
        "requirements": "true", "rank": "0",
    }),
    ("WMProxy_PortType", "getCollectionTemplate", {"jobNumber": 3, "requirements": "true", "rank": "0"}),
    ("WMProxy_PortType", "getIntParametricJobTemplate", {
        "attributes": {"Item": ["Arguments", "StdInput"]}, "param": 20, "parameterStart": 100,
        "parameterStep": 10, "requirements": "true", "rank": "0",
    }),
    ("WMProxy_PortType", "getStringParametricJobTemplate", {
        "attributes": {"Item": ["Arguments"]}, "param": {"Item": ["one", "two", "three"]},
        "requirements": "true", "rank": "0",
    }),
    ("WMProxy_PortType", "getACLItems", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "addACLItems",
     {"jobId": "https://h:9000/abc", "items": {"Item": ["/C=XX/CN=a", "/C=XX/CN=b"]}}),
    ("WMProxy_PortType", "removeACLItem", {"jobId": "https://h:9000/abc", "item": "/C=XX/CN=a"}),
    ("WMProxy_PortType", "getDelegatedProxyInfo", {"delegationID": "d1"}),
    ("WMProxy_PortType", "getJobProxyInfo", {"jobId": "https://h:9000/abc"}),
    ("WMProxy_PortType", "enableFilePerusal", {"jobId": "https://h:9000/abc", "fileList": {"Item": ["out.txt"]}}),
    ("WMProxy_PortType", "enableFilePerusal", {"jobId": "https://h:9000/abc", "fileList": {"Item": []}}),
    ("WMProxy_PortType", "getPerusalFiles", {
        "jobId": "https://h:9000/abc", "file": "out.txt", "allChunks": True, "protocol": "https",
    }),
]

# JSDL operations: ours takes the open JobDefinition_Type from the client's converter,
# the reference its typed JSDL 1.0 schema; both must give the same XML.
JSDL_DOC = (
    f'<jsdl:JobDefinition xmlns:jsdl="{JSDL}" xmlns:jsdl-posix="{JSDL_POSIX}">'
    "<jsdl:JobDescription>"
    "<jsdl:JobIdentification><jsdl:JobName>hello</jsdl:JobName></jsdl:JobIdentification>"
    "<jsdl:Application><jsdl:ApplicationName>echo</jsdl:ApplicationName>"
    "<jsdl-posix:POSIXApplication><jsdl-posix:Executable>/bin/echo</jsdl-posix:Executable>"
    "<jsdl-posix:Argument>hi</jsdl-posix:Argument></jsdl-posix:POSIXApplication>"
    "</jsdl:Application>"
    "</jsdl:JobDescription></jsdl:JobDefinition>"
)


def _posix_application() -> etree._Element:
    return etree.fromstring(
        f'<jsdl-posix:POSIXApplication xmlns:jsdl-posix="{JSDL_POSIX}">'
        "<jsdl-posix:Executable>/bin/echo</jsdl-posix:Executable>"
        "<jsdl-posix:Argument>hi</jsdl-posix:Argument></jsdl-posix:POSIXApplication>"
    )


REFERENCE_JSDL = {
    "JobDescription": {
        "JobIdentification": {"JobName": "hello"},
        "Application": {"ApplicationName": "echo", "_value_1": [_posix_application()]},
    }
}
JSDL_CALLS: list[tuple[str, list[str]]] = [
    ("jobRegisterJSDL", ["jsdl", "delegationId"]),
    ("jobSubmitJSDL", ["delegationId", "jsdl"]),  # gLite's part order
    ("jobListMatchJSDL", ["jsdl", "delegationId"]),
]

# GridSite delegation-1 extension: not in the reference; the request shapes of peers.md §6.2.
EXTRA_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("WMProxyDelegation_PortType", "getNewProxyReq", {}),
    ("WMProxyDelegation_PortType", "renewProxyReq", {"delegationID": "dlg1"}),
    ("WMProxyDelegation_PortType", "getTerminationTime", {"delegationID": "dlg1"}),
    ("WMProxyDelegation_PortType", "destroy", {"delegationID": "dlg1"}),
    # project extension: not in the reference
    ("WMProxy_PortType", "getProxyRenewalInfo", {"jobId": "https://h:9000/abc"}),
]


def _fresh(value: Any) -> Any:
    """A deep copy of a zeep call value (zeep moves lxml elements into the envelope)."""
    if isinstance(value, etree._Element):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _body(client: zeep.Client, port: str, op: str, kwargs: dict[str, Any]) -> etree._Element:
    service = client.bind("WMProxy", port)
    envelope = client.create_message(service, op, **_fresh(kwargs))
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
    def test_every_operation_has_a_call(self) -> None:
        called = {(p, o) for p, o, _ in CALLS + EXTRA_CALLS} | {("WMProxy_PortType", o) for o, _ in JSDL_CALLS}
        assert called == {(p, o) for p, ops in OUR_OPS.items() for o in ops}

    @pytest.mark.parametrize(
        ("port", "op", "kwargs"), CALLS + EXTRA_CALLS, ids=[f"{p}.{o}" for p, o, _ in CALLS + EXTRA_CALLS]
    )
    def test_wrapper_is_in_port_namespace_with_unqualified_children(
        self, our_client: zeep.Client, port: str, op: str, kwargs: dict[str, Any]
    ) -> None:
        wrapper = _body(our_client, port, op, kwargs)
        assert wrapper.tag == f"{{{PORTS[port][0]}}}{op}"
        assert [c.tag for c in wrapper] == list(kwargs)
        for child, value in zip(wrapper, kwargs.values(), strict=True):
            if isinstance(value, dict):
                assert all(etree.QName(el).namespace is None for el in child.iter(tag=etree.Element))
            else:
                assert (child.text or "") == _text(value)

    def test_dag_root_name_is_nil(self, our_client: zeep.Client) -> None:
        kwargs = next(k for _p, o, k in CALLS if o == "getDAGTemplate")
        root = _body(our_client, "WMProxy_PortType", "getDAGTemplate", kwargs)[0]
        assert root[0].tag == "name"
        assert root[0].get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
        assert [c.tag for c in root] == ["name", "childrenJob"]

    @pytest.mark.parametrize(("op", "order"), JSDL_CALLS)
    def test_jsdl_part_carries_the_jsdl_namespace_children(
        self, our_client: zeep.Client, op: str, order: list[str]
    ) -> None:
        source = etree.fromstring(JSDL_DOC)
        before = etree.tostring(source)
        kwargs = {"jsdl": jsdl_part(source, op), "delegationId": "d1"}
        wrapper = _body(our_client, "WMProxy_PortType", op, kwargs)
        assert etree.tostring(source) == before  # the caller's document is untouched
        assert wrapper.tag == f"{{{WMP}}}{op}"
        assert [c.tag for c in wrapper] == order
        jsdl = wrapper.find("jsdl")
        assert jsdl is not None and not jsdl.attrib
        (description,) = jsdl
        assert description.tag == f"{{{JSDL}}}JobDescription"
        assert description.prefix == "jsdl"  # gLite cuts the literal "<jsdl:JobDescription>"
        path = f"{{{JSDL}}}Application/{{{JSDL_POSIX}}}POSIXApplication/{{{JSDL_POSIX}}}Executable"
        assert description.findtext(path) == "/bin/echo"
        assert wrapper.findtext("delegationId") == "d1"

    def test_jsdl_prefix_is_normalised(self, our_client: zeep.Client) -> None:
        doc = JSDL_DOC.replace("jsdl:", "j:").replace("xmlns:jsdl=", "xmlns:j=")
        kwargs = {"jsdl": jsdl_part(doc.encode(), "jobRegisterJSDL"), "delegationId": ""}
        wrapper = _body(our_client, "WMProxy_PortType", "jobRegisterJSDL", kwargs)
        assert b"<jsdl:JobDescription" in etree.tostring(wrapper)

    @needs_reference
    @pytest.mark.parametrize(("op", "_order"), JSDL_CALLS)
    def test_jsdl_same_xml_as_reference(
        self, our_client: zeep.Client, reference_client: zeep.Client, op: str, _order: list[str]
    ) -> None:
        ours = _body(our_client, "WMProxy_PortType", op, {"jsdl": jsdl_part(JSDL_DOC, op), "delegationId": "d1"})
        ref = _body(reference_client, "WMProxy_PortType", op, {"jsdl": REFERENCE_JSDL, "delegationId": "d1"})
        assert _shape(ours) == _shape(ref)

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
        "ObjectType", "JobType", "JobTypeList", "GraphStructType", "VOProxyInfoStructType",
        "ProxyInfoStructType",
        *(f"{k}FaultType" for k in (
            "Authentication", "Authorization", "InvalidArgument", "Generic", "GetQuotaManagement",
            "NoSuitableResources", "JobUnknown", "OperationNotAllowed", "ServerOverloaded",
        )),
    ],
    D1: ["DelegationExceptionType"],
    D2: ["NewProxyReq"],
}
SIMPLE_TYPES = {"JdlType", "ObjectType", "JobType"}
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
        kind = "simpleType" if name in SIMPLE_TYPES else "complexType"
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

    @needs_reference
    def test_delegation1_new_proxy_req_is_the_delegation2_one(self) -> None:
        ours = _find(_schemas(wsdl_path())[D1], "complexType", "NewProxyReq")
        ref = _find(_schemas(REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl")[D2], "complexType",
                    "NewProxyReq")
        assert _shape_of_type(ours) == _shape_of_type(ref)

    def test_jsdl_job_definition_is_open(self) -> None:
        """JobDefinition_Type in the JSDL namespace: any element (lax), the id attribute, others'."""
        (schema,) = _schemas(wsdl_path())[JSDL]
        assert [etree.QName(c).localname for c in schema if isinstance(c.tag, str)] == ["complexType"]
        jd = _find([schema], "complexType", "JobDefinition_Type")
        (any_,) = jd.iter(f"{{{XSD_NS}}}any")
        assert (any_.get("namespace"), any_.get("processContents"), any_.get("minOccurs"), any_.get("maxOccurs")) == (
            "##any", "lax", "0", "unbounded",
        )
        assert [a.get("name") for a in jd.iter(f"{{{XSD_NS}}}attribute")] == ["id"]
        assert jd.find(f"{{{XSD_NS}}}anyAttribute") is not None

    @needs_reference
    def test_jsdl_attributes_match_reference(self) -> None:
        ref = _find(_schemas(REFERENCE_DIR / "jsdl.xsd-18.xsd")[JSDL], "complexType", "JobDefinition_Type")
        ours = _find(_schemas(wsdl_path())[JSDL], "complexType", "JobDefinition_Type")
        attrs = lambda t: [(a.get("name"), a.get("type"), a.get("use")) for a in t.iter(f"{{{XSD_NS}}}attribute")]  # noqa: E731
        assert attrs(ours) == attrs(ref)
        assert ours.find(f"{{{XSD_NS}}}anyAttribute").attrib == ref.find(f"{{{XSD_NS}}}anyAttribute").attrib
