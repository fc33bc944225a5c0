"""Where the client's WSDL lives and what its ports are called.

The canonical file is ``wmproxy/wsdl/wmproxy.wsdl`` (also what the service serves
at ``GET /glite_wms_wmproxy_server?wsdl``). When the package runs from a place
without it (an installed wheel), :func:`wsdl_path` returns None and the client falls
back to ``<endpoint>?wsdl``.
"""

from __future__ import annotations

from pathlib import Path

WMP_NS = "http://glite.org/wms/wmproxy"
DELEGATION1_NS = "http://www.gridsite.org/namespaces/delegation-1"
DELEGATION2_NS = "http://www.gridsite.org/namespaces/delegation-2"

#: port key -> binding QName in wsdl/wmproxy.wsdl
BINDINGS = {
    "wmproxy": f"{{{WMP_NS}}}WMProxy",
    "delegation1": f"{{{WMP_NS}}}Delegation1SoapBinding",
    "delegation2": f"{{{WMP_NS}}}DelegationSoapBinding",
}

_FILE_NAME = "wmproxy.wsdl"


def wsdl_path() -> Path | None:
    """The local WSDL file, or None when not found.

    Package data (``wmproxy/wsdl/wmproxy.wsdl``), in the wheel and the source tree alike.
    """
    candidate = Path(__file__).resolve().parents[1] / "wsdl" / _FILE_NAME
    return candidate if candidate.is_file() else None
