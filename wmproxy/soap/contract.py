"""What the project's WSDL (``wsdl/wmproxy.wsdl``) promises, read once at import.

The ports use it to send only faults an operation declares; the contract tests use it
to prove that the WSDL and the Spyne ports describe the same operations.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

WSDL_FILE = Path(__file__).resolve().parents[2] / "wsdl" / "wmproxy.wsdl"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"


@cache
def operations_by_namespace(wsdl_file: Path = WSDL_FILE) -> dict[str, dict[str, frozenset[str]]]:
    """``{rpc wrapper namespace: {operation: fault names declared}}`` for every binding."""
    tree = etree.parse(str(wsdl_file))
    port_types = {pt.get("name"): pt for pt in tree.iterfind(f"{{{_WSDL}}}portType")}
    result: dict[str, dict[str, frozenset[str]]] = {}
    for binding in tree.iterfind(f"{{{_WSDL}}}binding"):
        port_type = port_types[etree.QName(binding.get("type").split(":")[-1]).localname]
        faults = {
            op.get("name"): frozenset(f.get("name") for f in op.iterfind(f"{{{_WSDL}}}fault"))
            for op in port_type.iterfind(f"{{{_WSDL}}}operation")
        }
        for op in binding.iterfind(f"{{{_WSDL}}}operation"):
            body = op.find(f"{{{_WSDL}}}input/{{{_SOAP}}}body")
            namespace = body.get("namespace")
            result.setdefault(namespace, {})[op.get("name")] = faults[op.get("name")]
    return result
