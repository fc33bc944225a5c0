"""Client library of the WMProxy SOAP service: zeep over the local ``wsdl/wmproxy.wsdl``.

Owns the client side of the wire contract: building requests for the three ports
(WMProxy, GridSite delegation-1 and -2), turning zeep results into plain dataclasses
(:mod:`.models`) and SOAP faults into :class:`WMProxyClientError` (:mod:`.faults`),
signing delegation requests (:mod:`.delegation`) and HTTPS sandbox transfers
(:mod:`.transfer`). No zeep object leaves this package.
"""

from __future__ import annotations

from wmproxy.client.client import WMProxyClient
from wmproxy.client.faults import WMProxyClientError
from wmproxy.client.models import (
    CEMatch,
    GraphNode,
    JobIds,
    JobStatus,
    OutputFile,
    ProxyInfo,
    Quota,
    RenewalInfo,
    VOInfo,
)

__all__ = [
    "CEMatch",
    "GraphNode",
    "JobIds",
    "JobStatus",
    "OutputFile",
    "ProxyInfo",
    "Quota",
    "RenewalInfo",
    "VOInfo",
    "WMProxyClient",
    "WMProxyClientError",
]
