"""getProxyReq and putProxy served without Spyne's per-call machinery (issue 14).

A delegation is two requests (getProxyReq, then putProxy with the signed proxy), and Spyne's
per-call work (the method context and its events, the deserialisation of the string parts,
the serialisation of the reply) cost about 1.1 ms of each in process, against 0.09 ms for a
whole getVersion. As for jobRegister and jobSubmit (:mod:`wmproxy.soap.direct`), the
dispatcher (``wmproxy.soap.dispatch``) hands the envelope it has already parsed and checked
(caller authenticated, authorised and load-checked) to a handler of this module, which:

- reads the string parts of the plain request shape with :func:`wmproxy.soap.direct.string_parts`
  (anything else: a Header, ``xsi:nil``, a ``href``, a qualified, repeated, attributed or unknown
  part, returns None before anything is done, and Spyne serves the request as before, with its
  own validation faults);
- calls the same service function with the same arguments as the Spyne method
  (``wmproxy.soap.delegation_ports``, ``wmproxy.soap.wmproxy_port``): ``create_proxy_request``
  with the ``delegationID`` part (None when absent), ``store_proxy`` with ``delegationID`` and
  ``proxy or ""``;
- turns any error into the port's typed fault as the Spyne path does: ``DelegationException``
  with ``message`` (delegation-1) or ``msg`` (delegation-2), the operation's declared
  BaseFaultType fault on the WMProxy port (:mod:`wmproxy.soap.faults`);
- answers with the bytes Spyne's ``Soap11`` out protocol writes for the port
  (:class:`StringReply`): kept once, around a mark, for the values lxml writes as they are (a
  PEM CSR always is), and written by Spyne's own serialiser for any other value.

Served: getProxyReq and putProxy of delegation-1, delegation-2 and the WMProxy port.
``tests/unit/soap/test_direct_delegation.py`` compares both paths byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from lxml import etree
from spyne import Fault, MethodContext
from spyne.application import get_fault_string_from_exception

from wmproxy.domain import Principal
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime
from wmproxy.soap.direct import Handler, string_parts
from wmproxy.soap.faults import TypedFault, delegation_fault, port_fault, spyne_error, wmproxy_fault
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY
from wmproxy.soap.wmproxy_port import DECLARED_FAULTS

#: Text that lxml writes as it is in element content: PEM (base64, ``-``, spaces, line feeds).
#: Not ``\r`` (written ``&#13;``), not ``&``, ``<``, ``>``, nor any non-ASCII character.
_VERBATIM = re.compile(r"[A-Za-z0-9+/= \n-]*").fullmatch
_MARK = "DELEGATION-REPLY-MARK"

#: ``call(runtime, principal, *parts)`` → the operation's return value.
Call = Callable[..., Any]


class StringReply:
    """The reply of an operation of ``port`` (a Spyne WSGI port of ``wmproxy.soap.dispatch``)
    returning one string part or nothing, byte for byte as its ``Soap11`` out protocol writes it.

    Args:
        port: the port (its application's out protocol and namespace map serialise the reply).
        method: the operation's local name (``getProxyReq``, ``putProxy``).
    """

    def __init__(self, port: Any, method: str) -> None:
        self.port = port
        self.descriptor = port.app.interface.service_method_map[f"{{{port.app.tns}}}{method}"][0]
        self.returns = bool(self.descriptor.out_message._type_info)
        if self.returns:
            head, tail = self.spyne(_MARK).split(_MARK.encode())
            self._kept: tuple[bytes, ...] = (head, tail)
        else:
            self._kept = (self.spyne(None),)

    def __call__(self, value: str | None) -> bytes:
        """The reply for ``value`` (the operation's return value: a ``str``, or None).

        Raises:
            ValueError: a value lxml refuses (a control character), as in Spyne.
        """
        if not self.returns:
            return self._kept[0]
        if isinstance(value, str) and _VERBATIM(value):
            head, tail = self._kept
            return b"".join((head, value.encode(), tail))
        return self.spyne(value)

    def spyne(self, value: str | None) -> bytes:
        """The reply for ``value`` as the port's out protocol serialises it (the reference)."""
        ctx = MethodContext(self.port, MethodContext.SERVER)
        ctx.descriptor = self.descriptor
        ctx.out_object = [value]
        protocol = self.port.app.out_protocol
        protocol.serialize(ctx, protocol.RESPONSE)
        protocol.create_out_string(ctx)
        return b"".join(ctx.out_string)


def string_call(namespace: str, method: str, names: Sequence[str], call: Call,
                fault: Callable[[Exception], TypedFault], reply: StringReply) -> Handler:
    """The handler of ``method`` of the port of ``namespace`` whose parts ``names`` are strings:
    ``call(runtime, principal, *parts)`` (a part absent from the request is None), any error it
    raises ``fault(exc)``, its value written by ``reply``; None for a request not of the plain
    shape (Spyne serves it)."""

    def handle(root: etree._Element, rt: Runtime, principal: Principal) -> bytes | TypedFault | None:
        parts = string_parts(root, names)
        if parts is None:
            return None
        try:
            value = call(rt, principal, *parts)
        except Exception as exc:  # noqa: BLE001 - every error must become a typed fault, as in delegation_call
            return fault(exc)
        try:
            return reply(value)
        except Exception as exc:  # noqa: BLE001 - as the lean loop: a serialisation error is a Server fault
            return port_fault(namespace, method, spyne_error(Fault("Server", get_fault_string_from_exception(exc))))

    return handle


def _proxy_request(rt: Runtime, principal: Principal, delegation_id: str | None) -> str:
    return delegation.create_proxy_request(rt, principal, delegation_id)[1]


def _put_proxy(rt: Runtime, principal: Principal, delegation_id: str | None, proxy: str | None) -> None:
    delegation.store_proxy(rt, principal, delegation_id, proxy or "")


#: The operations served here: name → (parts, service call).
OPERATIONS: dict[str, tuple[tuple[str, ...], Call]] = {
    "getProxyReq": (("delegationID",), _proxy_request),
    "putProxy": (("delegationID", "proxy"), _put_proxy),
}


def _fault_of(namespace: str, method: str) -> Callable[[Exception], TypedFault]:
    """The typed fault the Spyne method of ``method`` raises on ``namespace``'s port for an error."""
    if namespace == WMPROXY:
        declared = DECLARED_FAULTS.get(method, frozenset({"GenericFault"}))
        return lambda exc: wmproxy_fault(method, exc, declared)
    return lambda exc: delegation_fault(namespace, method, exc)


def handlers(ports: dict[str, Any]) -> dict[tuple[str, str], Handler]:
    """The direct handlers of getProxyReq and putProxy, by (namespace, operation), for the ports
    of ``ports`` (namespace → Spyne WSGI port) that take their lean loop (``port.lean``)."""
    out: dict[tuple[str, str], Handler] = {}
    for namespace in (DELEGATION_1, DELEGATION_2, WMPROXY):
        port = ports.get(namespace)
        if port is None or not getattr(port, "lean", False):
            continue
        for method, (names, call) in OPERATIONS.items():
            out[(namespace, method)] = string_call(namespace, method, names, call, _fault_of(namespace, method),
                                                   StringReply(port, method))
    return out
