"""What the project's WSDL (``wsdl/wmproxy.wsdl``) promises, read once at import.

The ports use it to send only faults an operation declares; the contract tests use it
to prove that the WSDL and the Spyne ports describe the same operations.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

WSDL_FILE = Path(__file__).resolve().parents[1] / "wsdl" / "wmproxy.wsdl"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"


@cache
def operations_by_namespace(wsdl_file: Path = WSDL_FILE) -> dict[str, dict[str, frozenset[str]]]:
    """``{rpc wrapper namespace: {operation: fault names declared}}`` for every binding.

    Raises ValueError when the WSDL lacks a name, type, soap:body or namespace it needs.
    """
    tree = etree.parse(str(wsdl_file))
    port_types = {_attr(pt, "name"): pt for pt in tree.iterfind(f"{{{_WSDL}}}portType")}
    result: dict[str, dict[str, frozenset[str]]] = {}
    for binding in tree.iterfind(f"{{{_WSDL}}}binding"):
        port_type = port_types[etree.QName(_attr(binding, "type").split(":")[-1]).localname]
        faults = {
            _attr(op, "name"): frozenset(_attr(f, "name") for f in op.iterfind(f"{{{_WSDL}}}fault"))
            for op in port_type.iterfind(f"{{{_WSDL}}}operation")
        }
        for op in binding.iterfind(f"{{{_WSDL}}}operation"):
            body = op.find(f"{{{_WSDL}}}input/{{{_SOAP}}}body")
            if body is None:
                raise ValueError(f"{wsdl_file}: operation {_attr(op, 'name')} has no soap:body")
            result.setdefault(_attr(body, "namespace"), {})[_attr(op, "name")] = faults[_attr(op, "name")]
    return result


def _attr(element: etree._Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        where = f"{etree.QName(element).localname} (line {element.sourceline})"
        raise ValueError(f"WSDL element {where} has no {name} attribute")
    return value
