"""A forged ``ended.`` request id is an InvalidArgumentFault, never a GenericFault with a
traceback (a red-team review, L2).

An ended job's request id is URL-safe base64 of JSON the service decodes
(``inspection.ended_request_id``). A forged one holding deeply nested JSON took ``json.loads``
past the recursion limit: ``RecursionError`` was not caught, the caller got GenericFault 1201
and the service logged a traceback. An id longer than any the service makes is now refused
before it is decoded, and a ``RecursionError`` is an invalid argument like any other bad id.
"""

from __future__ import annotations

import base64
import datetime as dt
from xml.sax.saxutils import escape

import pytest
from lxml import etree

from tests.support import SoapApp
from wmproxy.domain import Principal
from wmproxy.services import inspection
from wmproxy.soap.namespaces import INSPECTION, SOAP_ENV


def forged(payload: bytes) -> str:
    return inspection.ENDED_PREFIX + base64.urlsafe_b64encode(payload).decode()


@pytest.mark.parametrize("payload", [
    b"[" * 200_000,  # past the length: refused before decoding
    b"[" * 30_000,  # within it: json.loads' RecursionError
    b'["a",["x"],' + b"1" * 5000 + b"]", b'["a",["x"],1e400]', b'["a",["x"],"nan"]', b'{"a":1}', b"\xff\xfe",
], ids=["nested-long", "nested", "long-number", "huge-float", "nan", "object", "not-utf8"])
def test_a_forged_ended_id_is_an_invalid_argument_fault(soap: SoapApp, alice: Principal, payload: bytes,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    envelope = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:i="{INSPECTION}"><SOAP-ENV:Body>'
                f"<i:getInspectionResult><requestId>{escape(forged(payload))}</requestId><timeout>0</timeout>"
                "</i:getInspectionResult></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    with caplog.at_level("DEBUG"):
        reply = soap.request(envelope.encode(), alice)
    assert reply.status.startswith("500"), reply.body[:400]
    detail = reply.fault_detail
    assert etree.QName(detail).localname == "InvalidArgumentFault", etree.tostring(detail)[:400]
    assert detail.findtext("Description") == "Invalid Argument: unknown inspection request"
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


def test_the_longest_ended_id_the_service_makes_is_read_back() -> None:
    job_id = "https://" + "x" * 247  # the jobs.id column's 255 characters
    command = ["\x01" * 16] * inspection.MAX_ARGS  # MAX_ARGV_BYTES of what JSON writes longest (\u0001)
    assert sum(len(word.encode()) for word in command) == inspection.MAX_ARGV_BYTES
    asked = dt.datetime(2026, 12, 7, 18, 0, 0, 123456, tzinfo=dt.UTC)
    request_id = inspection.ended_request_id(job_id, command, asked)
    assert len(request_id) <= inspection.MAX_ENDED_ID_CHARS
    assert inspection._ended_request(request_id) == (job_id, command, asked)
