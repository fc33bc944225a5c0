"""The gridsite delegation ports served at the same endpoint (``wmproxy-behaviour.md`` §1.4, §5.2).

Both namespaces offer the same six proxy operations, built once by :func:`_proxy_operations`:
getProxyReq, putProxy, getNewProxyReq, renewProxyReq, getTerminationTime, destroy. In
delegation-1 the last four are a gridsite extension that ``htproxyput``, ``htproxyrenew``,
``htproxytime``/``htproxyunixtime`` and ``htproxydestroy`` call (peers.md §6.2); the
WMProxy WSDL's delegation-1 has only the first two. Delegation-2 adds getVersion,
getInterfaceVersion and getServiceMetadata. Faults are ``DelegationException`` with
``message`` (delegation-1) or ``msg`` (delegation-2).
"""

from __future__ import annotations

from typing import Any

from spyne import ServiceBase, rpc

from wmproxy.errors import NotSupportedError
from wmproxy.services import delegation
from wmproxy.soap.calls import delegation_call
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2
from wmproxy.soap.types import DateTime_, NewProxyReq, NewProxyReq1, Part, String

INTERFACE_VERSION = "2.0.0"


def _proxy_operations(namespace: str, new_proxy_req: Any) -> dict[str, Any]:
    """The six proxy operations of a delegation port in ``namespace``, as Spyne methods."""

    @rpc(String, _returns=String, _out_variable_name="getProxyReqReturn")
    def getProxyReq(ctx, delegationID):
        return delegation_call(
            ctx, namespace, "getProxyReq", lambda rt, p: delegation.create_proxy_request(rt, p, delegationID)[1]
        )

    @rpc(String, String)
    def putProxy(ctx, delegationID, proxy):
        delegation_call(
            ctx, namespace, "putProxy", lambda rt, p: delegation.store_proxy(rt, p, delegationID, proxy or "")
        )

    @rpc(_returns=Part(new_proxy_req), _out_variable_name="getNewProxyReqReturn")
    def getNewProxyReq(ctx):
        def new_request(rt, p):
            delegation_id, csr = delegation.create_new_proxy_request(rt, p)
            return new_proxy_req(proxyRequest=csr, delegationID=delegation_id)

        return delegation_call(ctx, namespace, "getNewProxyReq", new_request)

    @rpc(String, _returns=String, _out_variable_name="renewProxyReqReturn")
    def renewProxyReq(ctx, delegationID):
        return delegation_call(
            ctx, namespace, "renewProxyReq", lambda rt, p: delegation.renew_proxy_request(rt, p, delegationID)
        )

    @rpc(String, _returns=DateTime_, _out_variable_name="getTerminationTimeReturn")
    def getTerminationTime(ctx, delegationID):
        return delegation_call(
            ctx, namespace, "getTerminationTime", lambda rt, p: delegation.termination_time(rt, p, delegationID)
        )

    @rpc(String)
    def destroy(ctx, delegationID):
        delegation_call(ctx, namespace, "destroy", lambda rt, p: delegation.destroy(rt, p, delegationID))

    return {
        "getProxyReq": getProxyReq,
        "putProxy": putProxy,
        "getNewProxyReq": getNewProxyReq,
        "renewProxyReq": renewProxyReq,
        "getTerminationTime": getTerminationTime,
        "destroy": destroy,
    }


@rpc(_returns=String, _out_variable_name="getVersionReturn")
def _get_version(ctx):
    return INTERFACE_VERSION


@rpc(_returns=String, _out_variable_name="getInterfaceVersionReturn")
def _get_interface_version(ctx):
    return INTERFACE_VERSION


@rpc(String, _returns=String, _out_variable_name="getServiceMetadataReturn")
def _get_service_metadata(ctx, key):
    def unsupported(rt, p):
        raise NotSupportedError("Method not supported")

    return delegation_call(ctx, DELEGATION_2, "getServiceMetadata", unsupported)


Delegation1Port = type(
    "Delegation1Port",
    (ServiceBase,),
    {
        "__doc__": "gridsite delegation-1 (with the gridsite extension).",
        **_proxy_operations(DELEGATION_1, NewProxyReq1),
    },
)

Delegation2Port = type(
    "Delegation2Port",
    (ServiceBase,),
    {
        "__doc__": "gridsite delegation-2.",
        **_proxy_operations(DELEGATION_2, NewProxyReq),
        "getVersion": _get_version,
        "getInterfaceVersion": _get_interface_version,
        "getServiceMetadata": _get_service_metadata,
    },
)
