"""The XML edge: every SOAP request is read and checked here before Spyne sees it.

What a request may be (``[limits]``, :class:`wmproxy.config.LimitsSettings`):

* at most ``max_request_bytes`` bytes (16 MiB by default, the documented JDL limit);
* one XML document whose root is a SOAP 1.1 ``Envelope`` with a ``Body`` holding the
  operation element;
* no DTD (``<!DOCTYPE``), so no entity can be declared or expanded, and no processing
  instruction anywhere (comments are dropped);
* at most ``max_xml_depth`` levels of elements, ``max_xml_elements`` elements in all and
  ``max_xml_attributes`` attributes plus namespace declarations on any one element;
* in any encoding the XML specification allows and libxml2 knows, named by the XML
  declaration or a byte order mark (UTF-8 without either); the HTTP charset is not used.
  The parsed document itself is handed to Spyne (``wmproxy.soap.dispatch``), which does not
  parse the request a second time.

The document is read in one pass by an ``lxml`` pull parser in 64 KiB slices, each limit
checked as the elements arrive, so the work is linear in the request size and a refused
request is abandoned at the first element over a limit. This matters: Spyne reads an
element's attributes through ``lxml``'s ``attrib.items()``, which looks each attribute up by
name again (quadratic: 100,000 attributes took 108 s of CPU in one request); with at most
``max_xml_attributes`` per element that cost is bounded.

Refusals are :class:`MalformedRequestError` (InvalidArgumentFault 1225) carrying the
operation when it was already known, so that the fault is the one the operation declares.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from wmproxy.config import LimitsSettings
from wmproxy.errors import InvalidArgumentError
from wmproxy.soap.namespaces import SOAP_ENV

#: Bytes handed to the parser at a time.
FEED_BYTES = 64 * 1024
#: Characters of client text (names, parser messages) quoted in a refusal.
QUOTE_CHARS = 120

_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_BODY = f"{{{SOAP_ENV}}}Body"


class MalformedRequestError(InvalidArgumentError):
    """A request that is not a SOAP request the service accepts (1225, InvalidArgumentFault).

    Attributes:
        namespace, operation: the operation element's namespace and local name when the
            parser had reached it, else ``""``.
    """

    def __init__(self, message: str, namespace: str = "", operation: str = "") -> None:
        super().__init__(f"Malformed SOAP request: {message}")
        self.namespace = namespace
        self.operation = operation


@dataclass(frozen=True)
class SoapRequest:
    """A checked request: the parsed envelope (without comments), the bytes received and
    the operation it names."""

    root: etree._Element
    body: bytes
    namespace: str
    operation: str

    def job_id(self) -> str | None:
        """The text of the first ``jobId`` element (any namespace) among the first
        :data:`JOB_ID_SEARCH_ELEMENTS` elements of the operation's parts, or None: the job
        the access log names."""
        body = self.root.find(_BODY)
        operation = body[0] if body is not None and len(body) else None
        if operation is None:
            return None
        for seen, element in enumerate(operation.iter()):
            if seen > JOB_ID_SEARCH_ELEMENTS:
                return None
            tag = element.tag
            if isinstance(tag, str) and (tag == "jobId" or tag.endswith("}jobId")):
                text = (element.text or "").strip()
                return text[:512] or None
        return None


#: Elements of a request searched for its ``jobId`` (every operation that names a job has it as
#: its first part; the bound keeps the search cheap whatever the request holds).
JOB_ID_SEARCH_ELEMENTS = 64


#: Media types of a SOAP request: ``text/xml`` (SOAP 1.1 over HTTP, what gSOAP, zeep and
#: gridsite send) and ``application/soap+xml`` (SOAP 1.2, answered with its fault).
SOAP_MEDIA_TYPES = frozenset({"text/xml", "application/soap+xml"})


def check_media_type(content_type: str | None, request: SoapRequest) -> None:
    """Refuse a request whose ``Content-Type`` is not one of :data:`SOAP_MEDIA_TYPES`.

    The endpoint authenticates by the TLS client certificate, which a browser sends on its
    own: a web page could make a visitor's browser post a SOAP request (a form with
    ``enctype="text/plain"``, or ``fetch`` without a type: requests a browser sends across
    sites without asking the server first, CORS "simple requests") and act as the visitor
    (cross-site request forgery: jobSubmit, jobCancel, addACLItems...). A ``text/xml`` POST
    from another site needs the server's CORS consent first, which this service never gives.

    Raises:
        MalformedRequestError: another or no media type (1225, named with the request's
            operation).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in SOAP_MEDIA_TYPES:
        shown = (content_type or "none")[:QUOTE_CHARS]
        raise MalformedRequestError(f"Content-Type {shown!r}: a SOAP request is sent as text/xml",
                                    request.namespace, request.operation)


def read_body(environ: dict[str, Any], max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes`` bytes (``Content-Length`` or chunked).

    Raises:
        MalformedRequestError: a bad ``Content-Length`` or a larger body.
    """
    length = _content_length(environ, max_bytes)
    stream = environ["wsgi.input"]
    body: bytes = stream.read(length) if length is not None else stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise MalformedRequestError(f"the request is larger than {max_bytes} bytes")
    return body


def _content_length(environ: dict[str, Any], max_bytes: int) -> int | None:
    """The request's ``Content-Length``, None when it has none (chunked).

    Raises:
        MalformedRequestError: not a number, or more than ``max_bytes``.
    """
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise MalformedRequestError(f"invalid Content-Length {raw[:QUOTE_CHARS]!r}")
    length = int(raw)
    if length > max_bytes:
        raise MalformedRequestError(f"the request is larger than {max_bytes} bytes")
    return length


#: Bytes of the body of a refused caller's request that are read at most (:func:`read_prefix`):
#: enough for any request's operation element, and for the whole of the usual small request.
PREFIX_BYTES = 64 * 1024
#: Bytes :func:`read_prefix` asks for at a time: what a read cut by its deadline loses.
PREFIX_STEP = 1024


def read_prefix(environ: dict[str, Any], max_bytes: int, prefix_bytes: int = PREFIX_BYTES) -> tuple[bytes, bool]:
    """At most ``prefix_bytes`` of the request body, read until the first read that fails (a
    deadline of the caller: ``wmproxy.soap.tls_worker.read_deadline``, a closed connection).

    Returns:
        the bytes read, and whether they are the whole body.

    Raises:
        MalformedRequestError: as :func:`read_body`, for the ``Content-Length`` (nothing read).
    """
    length = _content_length(environ, max_bytes)
    want = prefix_bytes if length is None else min(length, prefix_bytes)
    stream = environ["wsgi.input"]
    body = bytearray()
    try:
        while len(body) < want and (chunk := stream.read(min(PREFIX_STEP, want - len(body)))):
            body += chunk
    except OSError:  # the deadline (ReadDeadlineError, a TimeoutError), a reset
        return bytes(body), False
    return bytes(body), len(body) == length if length is not None else len(body) < want


def operation_of(prefix: bytes, limits: LimitsSettings) -> tuple[str, str]:
    """The (namespace, local name) of the operation element of a request's first bytes, as far
    as they show it under ``limits``; ``("", "")`` when they do not."""
    parser = _pull_parser()
    checker = _Checker(limits)
    with contextlib.suppress(etree.XMLSyntaxError):  # the events before the error are read below
        parser.feed(prefix)
    with contextlib.suppress(etree.XMLSyntaxError):
        _learn_operation(checker, parser)
    return checker.namespace, checker.operation


class _Checker:
    """Applies the limits to the pull parser's events; remembers the operation element."""

    def __init__(self, limits: LimitsSettings) -> None:
        self.limits = limits
        self.stack: list[str] = []
        self.elements = 0
        self.pending_ns = 0
        self.namespace = ""
        self.operation = ""

    def refuse(self, message: str) -> MalformedRequestError:
        return MalformedRequestError(message, self.namespace, self.operation)

    def event(self, kind: str, item: Any) -> None:
        if kind == "start-ns":
            self.pending_ns += 1
        elif kind == "start":
            self.start(item)
        elif kind == "end":
            self.stack.pop()
        else:  # "pi"
            raise self.refuse("processing instructions (<?...?>) are not allowed")

    def start(self, element: etree._Element) -> None:
        limits = self.limits
        if not self.stack:
            docinfo = element.getroottree().docinfo
            if docinfo.doctype or docinfo.internalDTD is not None:
                raise self.refuse("a document type declaration (DTD, <!DOCTYPE ...>) is not allowed")
            if element.tag != _ENVELOPE:
                raise self.refuse("not a SOAP 1.1 Envelope")
        if len(self.stack) == 2 and self.stack[-1] == _BODY and not self.operation:
            tag = str(element.tag)  # not etree.QName: it refuses a tag with an undeclared prefix
            if tag.startswith("{") and "}" in tag:
                self.namespace, _, self.operation = tag[1:].partition("}")
            else:
                self.namespace, self.operation = "", tag
        self.elements += 1
        if self.elements > limits.max_xml_elements:
            raise self.refuse(f"more than {limits.max_xml_elements} elements")
        if len(self.stack) >= limits.max_xml_depth:
            raise self.refuse(f"elements nested more than {limits.max_xml_depth} levels deep")
        attributes = len(element.attrib) + self.pending_ns
        self.pending_ns = 0
        if attributes > limits.max_xml_attributes:
            raise self.refuse(
                f"an element with more than {limits.max_xml_attributes} attributes and namespace declarations"
            )
        self.stack.append(str(element.tag))


def check_request(body: bytes, limits: LimitsSettings) -> SoapRequest:
    """Parse and check a SOAP request (see the module docstring); linear in its size.

    Returns:
        :class:`SoapRequest`: the parsed envelope, without comments, ``body`` itself, and
        the (namespace, local name) of the Body's first element.

    Raises:
        MalformedRequestError: not well-formed XML (the parser's reason), an unknown
            encoding, a DTD, a processing instruction, a limit exceeded, not a SOAP 1.1
            Envelope, or an empty Body.
    """
    parser = _pull_parser()
    checker = _Checker(limits)
    if not body.strip():
        raise checker.refuse("empty request")
    try:
        for offset in range(0, len(body), FEED_BYTES):
            parser.feed(body[offset:offset + FEED_BYTES])
            for kind, item in parser.read_events():
                checker.event(kind, item)
        root = parser.close()
        for kind, item in parser.read_events():
            checker.event(kind, item)
    except etree.XMLSyntaxError as exc:
        reason = str(exc).replace(" (<string>, line 1)", "") or "not well-formed XML"
        _learn_operation(checker, parser)
        raise checker.refuse(reason[:QUOTE_CHARS]) from None
    if not checker.operation:
        raise checker.refuse("no operation element in the SOAP Body")
    return SoapRequest(root, body, checker.namespace, checker.operation)


def _pull_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end", "start-ns", "pi"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        remove_comments=True,
        collect_ids=False,
        huge_tree=True,  # a JDL text may exceed libxml2's 10 MB text limit; our limits apply instead
    )


def _learn_operation(checker: _Checker, parser: etree.XMLPullParser) -> None:
    """Let ``checker`` see the events parsed before a syntax error, so that the refusal
    names the operation if the parser had reached it (a refusal they raise is dropped: the
    syntax error is the one reported)."""
    try:
        for kind, item in parser.read_events():
            checker.event(kind, item)
    except MalformedRequestError:
        return
