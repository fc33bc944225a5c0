"""jobRegister and jobSubmit served without Spyne's per-call machinery (issue 14).

A jobSubmit spent about a fifth of its in-process CPU in Spyne: the method context and its
events, the deserialisation of two string parts, and the serialisation of the
JobIdStructType reply. For the request shape every client sends (see
:func:`string_parts`), the dispatcher (``wmproxy.soap.dispatch``) reads the two parts
from the envelope it has already parsed and checked, calls the same service function as
the Spyne method (``wmproxy.soap.wmproxy_port``), and writes the reply with lxml in the
steps Spyne takes (:class:`JobIdReply`), so the bytes are Spyne's. Any other shape (a
SOAP Header, a qualified, repeated or attributed part, anything nested in a part) returns
None before anything is done, and Spyne serves the request as before; so every fault Spyne
raises while reading a request stays its own. Faults of the call are the port's own
(:func:`wmproxy.soap.faults.wmproxy_fault` with the operation's declared faults).
``tests/unit/soap/test_direct.py`` compares both paths byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from lxml import etree
from spyne import Fault
from spyne.application import get_fault_string_from_exception

from wmproxy.domain import Principal
from wmproxy.services import submission
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import RegisteredJob
from wmproxy.soap.faults import TypedFault, port_fault, spyne_error, wmproxy_fault
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY, XSI
from wmproxy.soap.wmproxy_port import DECLARED_FAULTS, create_job

#: The HTTP status and content type of a reply, as the lean Spyne loop sends them.
STATUS = "200 OK"
CONTENT_TYPE = "text/xml; charset=utf-8"

_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_BODY = f"{{{SOAP_ENV}}}Body"
_NIL = f"{{{XSI}}}nil"
#: Text that lxml writes as it is (ASCII, no markup character, no control character): a job id
#: and a job's relative input path always are (``wmproxy.domain.to_filename``).
_VERBATIM = re.compile(r"[A-Za-z0-9._~:/%+=@,;!$*()' -]*").fullmatch
_ID_MARK = "JOB-ID-MARK"
_PATH_MARK = "JOB-PATH-MARK"

#: ``handler(envelope, runtime, principal)`` → the reply's body (HTTP :data:`STATUS`), the typed
#: fault to send instead, or None when the request is not of the shape the handler serves
#: (then Spyne serves it: nothing was done).
Handler = Callable[[etree._Element, Runtime, Principal], "bytes | TypedFault | None"]


def string_parts(root: etree._Element, names: Sequence[str]) -> list[str | None] | None:
    """The text of the string parts ``names`` of a request, as Spyne would read them, or
    None when the request is not of the plain shape.

    The plain shape: ``Envelope`` → ``Body`` → the operation element → unqualified elements
    named in ``names`` (any order, each at most once), with no attribute anywhere and no
    element below a part. Spyne reads such a part as its text (``""`` for an empty element)
    and an absent part as None. Anything else (a Header, a ``href``/``id`` reference, ``xsi:nil``
    or ``xsi:type``, a repeated or namespace-qualified part, an unknown element) is left to
    Spyne, whose answer to it (a value, a validation fault) stays the reference.

    Args:
        root: the checked envelope (``wmproxy.soap.request.SoapRequest.root``, comments dropped).
        names: the operation's part names.
    """
    if len(root) != 1 or root.attrib:
        return None
    body = root[0]
    if body.tag != _BODY or len(body) != 1 or body.attrib:
        return None
    operation = body[0]
    if operation.attrib:
        return None
    values: list[str | None] = [None] * len(names)
    seen = 0
    for part in operation:
        tag = part.tag
        if tag not in names or len(part) or part.attrib:
            return None
        index = names.index(tag)
        if seen & (1 << index):
            return None
        seen |= 1 << index
        values[index] = part.text or ""
    return values


class JobIdReply:
    """Writes the reply of an operation that returns one JobIdStructType, as Spyne's ``Soap11``
    out protocol does: the envelope with the application's namespace map, a separately built
    Body appended last, ``cleanup_namespaces``, ``tostring`` with the XML declaration.

    Args:
        nsmap: the port application's ``interface.nsmap``.
        response: the response wrapper's tag (``{ns}jobSubmitResponse``).
        accessor: the part's element name (``jobIdStruct``, unqualified).
    """

    def __init__(self, nsmap: dict[str | None, str], response: str, accessor: str) -> None:
        self.nsmap = dict(nsmap)
        self.response = response
        self.accessor = accessor
        # A simple job's reply (no nodes, no name, an id and a path that need no escaping) is
        # these bytes around its id and path: written once by write() around two marks.
        head, rest = self.write(RegisteredJob(_ID_MARK, None, _PATH_MARK)).split(_ID_MARK.encode())
        middle, tail = rest.split(_PATH_MARK.encode())
        self._simple = (head, middle, tail)

    def __call__(self, job: RegisteredJob) -> bytes:
        """The reply for ``job``: what :meth:`write` makes, for a simple job from the kept bytes."""
        if job.name is None and not job.children and job.path is not None and _VERBATIM(job.job_id) \
                and _VERBATIM(job.path):
            head, middle, tail = self._simple
            return b"".join((head, job.job_id.encode(), middle, job.path.encode(), tail))
        return self.write(job)

    def write(self, job: RegisteredJob) -> bytes:
        """The reply for ``job``, built with lxml as Spyne builds it.

        Raises:
            ValueError: a value lxml refuses (a control character), as in Spyne.
        """
        envelope = etree.Element(_ENVELOPE, nsmap=self.nsmap)
        body = etree.Element(_BODY)
        _job_struct(etree.SubElement(etree.SubElement(body, self.response), self.accessor), job)
        envelope.append(body)
        etree.cleanup_namespaces(envelope)
        return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


def _job_struct(element: etree._Element, job: RegisteredJob) -> None:
    """The members of JobIdStructType (``wmproxy.soap.types``) below ``element``: ``id``,
    ``name``, ``path`` (``xsi:nil`` when None), then one ``childrenJob`` per node."""
    for name, value in (("id", job.job_id), ("name", job.name), ("path", job.path)):
        member = etree.SubElement(element, name)
        if value is None:
            member.set(_NIL, "true")
        else:
            member.text = value
    for child in job.children:
        _job_struct(etree.SubElement(element, "childrenJob"), child)


def job_creating(method: str, create: Callable[[Runtime, Principal, str, str | None], RegisteredJob],
                 reply: JobIdReply) -> Handler:
    """The handler of jobRegister or jobSubmit (parts ``jdl``, ``delegationId``): ``create``
    called as the Spyne method calls it, its errors the operation's typed faults."""
    declared = DECLARED_FAULTS.get(method, frozenset({"GenericFault"}))
    names = ("jdl", "delegationId")

    def handle(root: etree._Element, rt: Runtime, principal: Principal) -> bytes | TypedFault | None:
        parts = string_parts(root, names)
        if parts is None:
            return None
        jdl, delegation_id = parts
        try:
            job = create_job(create, rt, principal, jdl or "", delegation_id)
        except Exception as exc:  # noqa: BLE001 - every error must become a typed fault, as in wmproxy_call
            return wmproxy_fault(method, exc, declared)
        try:
            return reply(job)
        except Exception as exc:  # noqa: BLE001 - as the lean loop: a serialisation error is a Server fault
            return port_fault(WMPROXY, method, spyne_error(Fault("Server", get_fault_string_from_exception(exc))))

    return handle


def handlers(port_app: Any) -> dict[str, Handler]:
    """The direct handlers of the WMProxy port, by operation, for its Spyne application
    ``port_app`` (its namespace map and the response elements its methods declare)."""
    out: dict[str, Handler] = {}
    for method, create in (("jobRegister", submission.register_job), ("jobSubmit", submission.submit_job)):
        descriptor = port_app.interface.service_method_map[f"{{{WMPROXY}}}{method}"][0]
        message = descriptor.out_message
        (accessor,) = message._type_info
        response = f"{{{message.get_namespace()}}}{message.get_type_name()}"
        out[method] = job_creating(method, create, JobIdReply(port_app.interface.nsmap, response, accessor))
    return out
