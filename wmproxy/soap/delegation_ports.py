"""The gridsite delegation ports served at the same endpoint (``wmproxy-behaviour.md`` §1.4, §5.2).

Delegation-1 (``getProxyReq``, ``putProxy``) and delegation-2 (getVersion,
getInterfaceVersion, getServiceMetadata, getProxyReq, getNewProxyReq, renewProxyReq,
putProxy, getTerminationTime, destroy). Faults are ``DelegationException`` with
``message`` (delegation-1) or ``msg`` (delegation-2).
"""

from __future__ import annotations

from spyne import ServiceBase, rpc

from wmproxy.errors import NotSupportedError
from wmproxy.services import delegation
from wmproxy.soap.calls import delegation_call
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2
from wmproxy.soap.types import DateTime_, NewProxyReq, NewProxyReq1, Part, String

INTERFACE_VERSION = "2.0.0"


class Delegation1Port(ServiceBase):
    """gridsite delegation-1: what the WMProxy WSDL imports (getProxyReq, putProxy)."""

    @rpc(String, _returns=String, _out_variable_name="getProxyReqReturn")
    def getProxyReq(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_1, "getProxyReq", lambda rt, p: delegation.create_proxy_request(rt, p, delegationID)[1]
        )

    @rpc(String, String)
    def putProxy(ctx, delegationID, proxy):  # noqa: N802, N803
        delegation_call(
            ctx, DELEGATION_1, "putProxy", lambda rt, p: delegation.store_proxy(rt, p, delegationID, proxy or "")
        )


    # gridsite extension: htproxyput, htproxyrenew, htproxytime/htproxyunixtime and
    # htproxydestroy call these in the delegation-1 namespace (peers.md §6.2).

    @rpc(_returns=Part(NewProxyReq1), _out_variable_name="getNewProxyReqReturn")
    def getNewProxyReq(ctx):  # noqa: N802, N805
        def new_request(rt, p):  # type: ignore[no-untyped-def]
            delegation_id, csr = delegation.create_new_proxy_request(rt, p)
            return NewProxyReq1(proxyRequest=csr, delegationID=delegation_id)

        return delegation_call(ctx, DELEGATION_1, "getNewProxyReq", new_request)

    @rpc(String, _returns=String, _out_variable_name="renewProxyReqReturn")
    def renewProxyReq(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_1, "renewProxyReq", lambda rt, p: delegation.renew_proxy_request(rt, p, delegationID)
        )

    @rpc(String, _returns=DateTime_, _out_variable_name="getTerminationTimeReturn")
    def getTerminationTime(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_1, "getTerminationTime", lambda rt, p: delegation.termination_time(rt, p, delegationID)
        )

    @rpc(String)
    def destroy(ctx, delegationID):  # noqa: N802, N803
        delegation_call(ctx, DELEGATION_1, "destroy", lambda rt, p: delegation.destroy(rt, p, delegationID))


class Delegation2Port(ServiceBase):
    """gridsite delegation-2."""

    @rpc(_returns=String, _out_variable_name="getVersionReturn")
    def getVersion(ctx):  # noqa: N802, N805
        return INTERFACE_VERSION

    @rpc(_returns=String, _out_variable_name="getInterfaceVersionReturn")
    def getInterfaceVersion(ctx):  # noqa: N802, N805
        return INTERFACE_VERSION

    @rpc(String, _returns=String, _out_variable_name="getServiceMetadataReturn")
    def getServiceMetadata(ctx, key):  # noqa: N802
        def unsupported(rt, p):  # type: ignore[no-untyped-def]
            raise NotSupportedError("Method not supported")

        return delegation_call(ctx, DELEGATION_2, "getServiceMetadata", unsupported)

    @rpc(String, _returns=String, _out_variable_name="getProxyReqReturn")
    def getProxyReq(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_2, "getProxyReq", lambda rt, p: delegation.create_proxy_request(rt, p, delegationID)[1]
        )

    @rpc(_returns=Part(NewProxyReq), _out_variable_name="getNewProxyReqReturn")
    def getNewProxyReq(ctx):  # noqa: N802, N805
        def new_request(rt, p):  # type: ignore[no-untyped-def]
            delegation_id, csr = delegation.create_new_proxy_request(rt, p)
            return NewProxyReq(proxyRequest=csr, delegationID=delegation_id)

        return delegation_call(ctx, DELEGATION_2, "getNewProxyReq", new_request)

    @rpc(String, _returns=String, _out_variable_name="renewProxyReqReturn")
    def renewProxyReq(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_2, "renewProxyReq", lambda rt, p: delegation.renew_proxy_request(rt, p, delegationID)
        )

    @rpc(String, String)
    def putProxy(ctx, delegationID, proxy):  # noqa: N802, N803
        delegation_call(
            ctx, DELEGATION_2, "putProxy", lambda rt, p: delegation.store_proxy(rt, p, delegationID, proxy or "")
        )

    @rpc(String, _returns=DateTime_, _out_variable_name="getTerminationTimeReturn")
    def getTerminationTime(ctx, delegationID):  # noqa: N802, N803
        return delegation_call(
            ctx, DELEGATION_2, "getTerminationTime", lambda rt, p: delegation.termination_time(rt, p, delegationID)
        )

    @rpc(String)
    def destroy(ctx, delegationID):  # noqa: N802, N803
        delegation_call(ctx, DELEGATION_2, "destroy", lambda rt, p: delegation.destroy(rt, p, delegationID))
