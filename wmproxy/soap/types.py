"""Spyne models of the WMProxy WSDL types (``WMProxy.wsdl`` ``glitenstypes``).

``sub_ns=""`` makes every member unqualified on the wire, as the reference schema
(no elementFormDefault) and gSOAP clients require.
"""

from __future__ import annotations

from typing import Any

from spyne import Boolean, ComplexModel, DateTime, Integer, Integer32, Long, Unicode
from spyne.model.complex import SelfReference

from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY


def Part(model: Any = Unicode, **kwargs: Any) -> Any:
    """A part accessor or member: unqualified."""
    return model.customize(sub_ns="", **kwargs)


String = Part(Unicode)


class StringList(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("Item", Part(Unicode, max_occurs="unbounded"))]


class JobIdStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [
        ("id", Part(Unicode, min_occurs=1)),
        ("name", Part(Unicode, min_occurs=1, nillable=True)),
        ("path", Part(Unicode, min_occurs=1, nillable=True)),
        ("childrenJob", SelfReference.customize(sub_ns="", max_occurs="unbounded")),
    ]


class DestURIStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("id", Part(Unicode, min_occurs=1)), ("Item", Part(Unicode, max_occurs="unbounded"))]


class DestURIsStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("Item", Part(DestURIStructType, max_occurs="unbounded"))]


class StringAndLongType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("name", Part(Unicode, min_occurs=1)), ("size", Part(Long, min_occurs=1))]


class StringAndLongList(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("file", Part(StringAndLongType, max_occurs="unbounded"))]


class JobStatusStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [
        ("jobid", Part(Unicode, min_occurs=1)),
        ("status", Part(Unicode, min_occurs=1)),
        ("childrenJob", SelfReference.customize(sub_ns="", max_occurs="unbounded")),
    ]


class VOProxyInfoStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [
        *[(name, Part(Unicode, min_occurs=1)) for name in
          ("User", "UserCA", "Server", "ServerCA", "VOName", "URI", "StartTime", "EndTime")],
        ("Attribute", Part(Unicode, min_occurs=1, max_occurs="unbounded")),
    ]


class ProxyInfoStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [
        *[(name, Part(Unicode, min_occurs=1)) for name in
          ("Subject", "Issuer", "Identity", "Type", "Strength", "StartTime", "EndTime")],
        ("VOsInfo", Part(VOProxyInfoStructType, max_occurs="unbounded")),
    ]


class ProxyRenewalInfoStructType(ComplexModel):
    """Extension (getProxyRenewalInfo): the MyProxy renewal of a job's proxy (not in the reference)."""

    __namespace__ = WMPROXY
    _type_info = [
        ("myProxyServer", Part(Unicode, min_occurs=1, nillable=True)),
        ("registered", Part(Boolean, min_occurs=1, nillable=False)),
        ("lastAttempt", Part(DateTime, min_occurs=1, nillable=True)),
        ("lastResult", Part(Unicode, min_occurs=1, nillable=True)),
        ("lastError", Part(Unicode, min_occurs=1, nillable=True)),
        ("renewals", Part(Integer32, min_occurs=1, nillable=False)),
        ("proxyEndTime", Part(Unicode, min_occurs=1, nillable=False)),
    ]


class JobTypeList(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [("jobType", Part(Unicode, max_occurs="unbounded"))]


class GraphStructType(ComplexModel):
    __namespace__ = WMPROXY
    _type_info = [
        ("name", Part(Unicode, min_occurs=1, nillable=True)),
        ("childrenJob", SelfReference.customize(sub_ns="", max_occurs="unbounded")),
    ]


class NewProxyReq(ComplexModel):
    __namespace__ = DELEGATION_2
    _type_info = [
        ("proxyRequest", Part(Unicode, min_occurs=1, nillable=True)),
        ("delegationID", Part(Unicode, min_occurs=1, nillable=True)),
    ]


class NewProxyReq1(ComplexModel):
    """The same structure in the delegation-1 namespace (gridsite extension)."""

    __namespace__ = DELEGATION_1
    _type_info = NewProxyReq._type_info


Long_ = Part(Long)
Integer_ = Part(Integer)
Boolean_ = Part(Boolean)
DateTime_ = Part(DateTime)
