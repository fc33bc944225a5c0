"""The ``jsdl`` part of jobRegisterJSDL, jobSubmitJSDL and jobListMatchJSDL.

The part is typed ``jsdl:JobDefinition_Type`` (JSDL 1.0, namespace
``http://schemas.ggf.org/jsdl/2005/11/jsdl``). ``wsdl/wmproxy.wsdl`` declares that type
with an open content model, so zeep takes its children as lxml elements and the wire is
the reference one::

    <ns:jobRegisterJSDL>
      <jsdl><jsdl:JobDescription>...</jsdl:JobDescription></jsdl>
      <delegationId>...</delegationId>
    </ns:jobRegisterJSDL>

The gLite server cuts the text between the literal ``<jsdl:JobDescription>`` and
``</jsdl:JobDescription>`` out of the request (``wmproxy-behaviour.md`` §12), so the JSDL
namespace is always written with the prefix ``jsdl`` whatever the caller's document used.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from wmproxy.client.faults import WMProxyClientError

JSDL_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
JSDL_POSIX_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"

JsdlInput = etree._Element | etree._ElementTree | bytes | str


def _parse(value: JsdlInput, method: str) -> etree._Element:
    if isinstance(value, etree._ElementTree):
        return value.getroot()
    if isinstance(value, etree._Element):
        return value
    data = value.encode() if isinstance(value, str) else value
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise WMProxyClientError("InvalidJSDL", f"not well-formed XML: {exc}", None, method) from None


def _copy_into(parent: etree._Element, node: etree._Element) -> None:
    if not isinstance(node.tag, str):  # comment or processing instruction
        copy = etree.Comment(node.text) if isinstance(node, etree._Comment) else None
        if copy is not None:
            copy.tail = node.tail
            parent.append(copy)
        elif node.tail:
            last = parent[-1] if len(parent) else None
            if last is not None:
                last.tail = (last.tail or "") + node.tail
            else:
                parent.text = (parent.text or "") + node.tail
        return
    child = etree.SubElement(parent, node.tag, attrib=dict(node.attrib))
    child.text, child.tail = node.text, node.tail
    for grandchild in node:
        _copy_into(child, grandchild)


def _with_jsdl_prefix(root: etree._Element) -> etree._Element:
    """A copy of ``root`` whose JSDL elements use the prefix ``jsdl`` (other prefixes kept)."""
    nsmap: dict[str, str] = {"jsdl": JSDL_NS}
    for el in root.iter(tag=etree.Element):
        for prefix, href in el.nsmap.items():
            if prefix is None or prefix in nsmap or href in nsmap.values():
                continue
            nsmap[prefix] = href
    if JSDL_POSIX_NS not in nsmap.values() and "jsdl-posix" not in nsmap:
        nsmap["jsdl-posix"] = JSDL_POSIX_NS
    copy = etree.Element(root.tag, attrib=dict(root.attrib), nsmap=nsmap)
    copy.text = root.text
    for child in root:
        _copy_into(copy, child)
    etree.cleanup_namespaces(copy, keep_ns_prefixes=["jsdl"])
    return copy


def jsdl_part(value: JsdlInput, method: str) -> dict[str, Any]:
    """The zeep value of the ``jsdl`` part for a JSDL job definition.

    Args:
        value: a ``jsdl:JobDefinition`` (or bare ``jsdl:JobDescription``) as an lxml
            element/tree, or the XML document as bytes/str. Never modified.
        method: the operation, for errors.

    Raises:
        WMProxyClientError: ``InvalidJSDL`` when the XML is not well formed or its root
            is neither JobDefinition nor JobDescription in the JSDL namespace.
    """
    root = _parse(value, method)
    qname = etree.QName(root)
    if qname.namespace != JSDL_NS or qname.localname not in ("JobDefinition", "JobDescription"):
        raise WMProxyClientError(
            "InvalidJSDL",
            f"the root element must be {{{JSDL_NS}}}JobDefinition, not {qname.text}",
            None,
            method,
        )
    if qname.localname == "JobDescription":
        wrapper = etree.Element(f"{{{JSDL_NS}}}JobDefinition", nsmap={"jsdl": JSDL_NS})
        wrapper.append(_with_jsdl_prefix(root))
        root = wrapper
    definition = _with_jsdl_prefix(root)
    other_attrs = {k: v for k, v in definition.attrib.items() if k.startswith("{")}
    return {
        "_value_1": [child for child in definition if isinstance(child.tag, str)],
        "id": definition.get("id"),
        "_attr_1": other_attrs,
    }
