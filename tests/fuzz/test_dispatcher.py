"""Property: whatever body is POSTed to the endpoint, the answer is a success or a typed fault in
the one format, never a 500 without a fault; and a fault means nothing was written (issue 10)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from tests.conftest import Pki
from tests.fuzz.support import (
    DELEGATION_NAMESPACES,
    SOAP_ENV,
    WMPROXY,
    FuzzService,
    fuzz_settings,
    store_footprint,
    tree_footprint,
    tried,
    typed_fault,
)
from tests.support import ECHO_JDL, principal_of
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.dispatch import SoapDispatcher

DECLARED = operations_by_namespace()[WMPROXY]
_DISPATCHER = SoapDispatcher()
SERVED = _DISPATCHER.operations
#: (namespace, operation, its part names in order) of every operation served.
SIGNATURES = sorted(
    (ns, key.partition("}")[2], tuple(methods[0].in_message._type_info))
    for ns, port in _DISPATCHER.ports.items() for key, methods in port.app.interface.service_method_map.items()
)
NAMESPACES = [WMPROXY, *DELEGATION_NAMESPACES, "urn:elsewhere", ""]
OPERATIONS = sorted({op for ops in SERVED.values() for op in ops} | {"noSuchOperation", "Envelope"})
PART_NAMES = ["jobId", "jdl", "delegationId", "delegationID", "type", "protocol", "jobNumber", "requirements",
              "rank", "proxy", "items", "Item", "item", "file", "fileList", "allChunks", "jobType", "executable",
              "arguments", "param", "parameterStart", "parameterStep", "attributes", "dependencies", "jsdl", "x"]

#: Values a part may take: random text, and values that reach deeper into the services.
#: Characters XML 1.0 allows (random text with the others mostly gives "invalid character").
XML_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters=[
    chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\ufffe", "\uffff"])
values = st.one_of(
    st.text(XML_CHARS, max_size=60),
    st.text(XML_CHARS, max_size=60),
    st.text(max_size=20),
    st.sampled_from(["ORIGINAL", "REGISTERED", "https", "gsiftp", "fuzz", "", "true", "false", "0", "-1", "1e99",
                     "99999999999999999999", "NORMAL", ECHO_JDL, "[ Executable = 1 ]", "/atlas", "*",
                     "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA", "../../etc/passwd", "\u00e9\u00e8"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


def _xml_text(value: str) -> str:
    return escape(value)


@st.composite
def part(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(st.sampled_from(PART_NAMES))
    if depth < 2 and draw(st.booleans()):
        inner = "".join(draw(st.lists(part(depth + 1), max_size=3)))
    else:
        inner = _xml_text(draw(values))
    attrs = "".join(f" a{i}={quoteattr(draw(values))}" for i in range(draw(st.integers(0, 2))))
    return f"<{name}{attrs}>{inner}</{name}>"


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Envelopes of real and unknown operations with random parts, sometimes decorated with what
    the edge refuses (DTD, processing instruction, deep nesting, many attributes, encodings)."""
    if draw(st.booleans()):  # a real operation with its own parts, random values
        namespace, operation, names = draw(st.sampled_from(SIGNATURES))
        parts = "".join(f"<{name}>{_xml_text(draw(values))}</{name}>" for name in names if draw(st.integers(0, 5)))
    else:
        namespace = draw(st.sampled_from(NAMESPACES))
        operation = draw(st.sampled_from(OPERATIONS))
        parts = "".join(draw(st.lists(part(), max_size=5)))
    extra = draw(st.sampled_from(["", "", "", "pi", "doctype", "deep", "attributes", "header", "two-ops"]))
    body = f'<w:{operation} xmlns:w="{namespace}">{parts}</w:{operation}>' if namespace else f"<{operation}/>"
    if extra == "pi":
        body = body.replace(">", "><?x y?>", 1)
    elif extra == "deep":
        body = "<d>" * 70 + body + "</d>" * 70
    elif extra == "attributes":
        body = body.replace(f"<w:{operation}", f"<w:{operation}" + "".join(f' b{i}="1"' for i in range(80)), 1)
    elif extra == "two-ops":
        body = body + body
    header = "<e:Header><h>1</h></e:Header>" if extra == "header" else ""
    text = f'<e:Envelope xmlns:e="{SOAP_ENV}">{header}<e:Body>{body}</e:Body></e:Envelope>'
    if extra == "doctype":
        text = '<!DOCTYPE e [<!ENTITY z "zz">]>' + text
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "iso-8859-1"]))
    if encoding != "utf-8":
        declared_text = f'<?xml version="1.0" encoding="{encoding}"?>' + text
        return declared_text.encode(encoding, errors="replace")
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated envelope with bytes inserted, deleted or replaced."""
    data = bytearray(draw(envelopes()))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"<", b">", b"&", b"]]>", b"<!--",
                                                                          b"\x00", b"\xff", b"<?", b"'", b'"']))
        if action == "insert":
            data[at:at] = chunk
        elif action == "delete":
            del data[at:at + len(chunk)]
        else:
            data[at:at + len(chunk)] = chunk
    return bytes(data)


def check_reply(service: FuzzService, pki: Pki, body: bytes, caller_name: str) -> None:
    soap = service.soap
    sandbox = Path(soap.rt.settings.sandbox.root)
    before = store_footprint(soap.rt), tree_footprint(sandbox)
    reply = soap.request(body, principal_of(pki, caller_name))
    tried("dispatcher")
    if reply.status.startswith("200"):
        root = etree.fromstring(reply.body)
        element = root.find(f"{{{SOAP_ENV}}}Body")
        assert element is not None and len(element) == 1 and element[0].tag != f"{{{SOAP_ENV}}}Fault"
        return
    typed_fault(reply.status, reply.body, DECLARED)
    assert (store_footprint(soap.rt), tree_footprint(sandbox)) == before, "a refused request wrote something"


CALLERS = st.sampled_from(["alice", "alice", "bob", "mallory"])


@fuzz_settings()
@given(body=envelopes(), caller=CALLERS)
def test_generated_envelopes(service: FuzzService, pki: Pki, body: bytes, caller: str) -> None:
    check_reply(service, pki, body, caller)


@fuzz_settings()
@given(body=mutated(), caller=CALLERS)
def test_mutated_envelopes(service: FuzzService, pki: Pki, body: bytes, caller: str) -> None:
    check_reply(service, pki, body, caller)


@fuzz_settings(0.5)
@given(body=st.binary(max_size=512))
def test_random_bytes(service: FuzzService, pki: Pki, body: bytes) -> None:
    check_reply(service, pki, body, "alice")
