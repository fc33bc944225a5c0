"""A caller the site refuses is checked before its request body is read, and its body is read
no further than a bounded prefix (docs/load.md, "Callers the site refuses"): its connection
cannot hold a request thread at its pace. An admitted caller's request is read whole, as before.

In process, the deadline a real connection gets (``wmproxy.soap.tls_worker.read_deadline``) is
played by a body stream that raises, as that deadline does, once its client "stopped" sending.
"""

from __future__ import annotations

import io
from typing import Any

from lxml import etree

from tests.conftest import Pki
from tests.support import ECHO_JDL, SoapApp, delegate_in_process
from wmproxy.config import LimitsSettings
from wmproxy.domain import Principal
from wmproxy.soap import dispatch
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY
from wmproxy.soap.request import PREFIX_BYTES, operation_of, read_prefix
from wmproxy.soap.tls_worker import ReadDeadlineError

#: A jobRegister whose JDL makes it larger than the prefix a refused caller's body is read to.
LARGE_JDL = ECHO_JDL.rstrip().rstrip("]") + f'; Padding = "{"x" * (4 * PREFIX_BYTES)}"; ]'


def envelope(operation: str, **parts: str) -> bytes:
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in parts.items())
    return (f'<e:Envelope xmlns:e="{SOAP_ENV}" xmlns:w="{WMPROXY}"><e:Body><w:{operation}>{inner}'
            f"</w:{operation}></e:Body></e:Envelope>").encode()


class Stream(io.BytesIO):
    """A request body of which the client sent the first ``sent`` bytes (then a read raises as a
    passed deadline does); remembers how far it was read."""

    def __init__(self, body: bytes, sent: int | None = None) -> None:
        super().__init__(body)
        self.sent = len(body) if sent is None else sent
        self.furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.sent:
            raise ReadDeadlineError("the read deadline has passed")
        wanted = self.sent - self.tell() if size is None or size < 0 else min(size, self.sent - self.tell())
        data = super().read(wanted)
        self.furthest = max(self.furthest, self.tell())
        return data

    def readinto(self, buffer: Any) -> int:  # werkzeug's LimitedStream reads through it
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def fault_kind(body: bytes) -> tuple[str, str]:
    """(local name of the fault's detail element, its Description)."""
    detail = etree.fromstring(body).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/detail")
    assert detail is not None and len(detail) == 1, body
    return etree.QName(detail[0]).localname, detail[0].findtext("Description") or ""


class TestSoap:
    def test_a_large_body_of_a_caller_not_admitted_is_read_no_further_than_the_prefix(
            self, soap: SoapApp, alice: Principal, mallory: Principal) -> None:
        body = envelope("jobRegister", jdl=LARGE_JDL, delegationId="d")
        stream = Stream(body)
        reply = soap.request(body, mallory, stream=stream)
        assert reply.status.startswith("500")
        assert fault_kind(reply.body) == ("AuthorizationFault", "Authorization error: user not authorized")
        assert stream.furthest <= PREFIX_BYTES < len(body)
        # an admitted caller's large body is read whole, as before
        stream = Stream(body.replace(b"<delegationId>d<", b"<delegationId>none<"))
        reply = soap.request(stream.getvalue(), alice, stream=stream)
        assert stream.furthest == len(stream.getvalue())
        assert "user not authorized" not in fault_kind(reply.body)[1]  # the unknown delegation, not the caller
        # a small body of a caller not admitted is read whole and answered as before: its
        # operation's fault, an InvalidArgumentFault when it is malformed
        small = envelope("getJobStatus", jobId="https://localhost:9000/x")
        stream = Stream(small)
        assert fault_kind(soap.request(small, mallory, stream=stream).body) == (
            "AuthorizationFault", "Authorization error: user not authorized")
        assert stream.furthest == len(small)
        malformed = small.replace(b"<e:Body>", b"<e:Body><?pi?>")
        assert fault_kind(soap.request(malformed, mallory).body)[0] == "InvalidArgumentFault"

    def test_an_unauthenticated_body_that_stops_coming_gets_the_fault_its_first_bytes_name(
            self, soap: SoapApp) -> None:
        body = envelope("jobRegister", jdl=ECHO_JDL, delegationId="d")
        reply = soap.request(body, None, stream=Stream(body, sent=len(body) // 2))
        assert fault_kind(reply.body)[0] == "AuthenticationFault"
        assert b"jobRegister" in reply.body  # the fault names the operation


    def test_while_a_thread_reads_a_refused_body_the_next_refused_caller_is_answered_unread(
            self, soap: SoapApp, mallory: Principal, alice: Principal) -> None:
        """A peer the site does not admit reconnecting at once after each bounded read kept every
        request thread reading: one thread a process reads refused bodies, the others answer
        from no body."""
        small = envelope("getJobStatus", jobId="https://localhost:9000/x")
        assert dispatch._refused_readers.acquire(blocking=False)  # another thread is reading one
        try:
            stream = Stream(small)
            reply = soap.request(small, mallory, stream=stream)
            assert stream.furthest == 0
            assert fault_kind(reply.body) == ("AuthorizationFault", "Authorization error: user not authorized")
            # an admitted caller is read and served as ever
            answered = soap.request(envelope("getVersion"), alice)
            assert answered.status.startswith("200"), answered.body[:300]
        finally:
            dispatch._refused_readers.release()
        stream = Stream(small)
        assert fault_kind(soap.request(small, mallory, stream=stream).body)[0] == "AuthorizationFault"
        assert stream.furthest == len(small)


class TestPrefix:
    def environ(self, stream: Any, length: int | None) -> dict[str, Any]:
        return {"wsgi.input": stream, "CONTENT_LENGTH": "" if length is None else str(length)}

    def test_a_whole_body(self) -> None:
        assert read_prefix(self.environ(Stream(b"abc"), 3), 100) == (b"abc", True)

    def test_a_body_cut_by_the_deadline(self) -> None:
        assert read_prefix(self.environ(Stream(b"abcdef", sent=2), 6), 100) == (b"ab", False)

    def test_a_body_longer_than_the_prefix(self) -> None:
        assert read_prefix(self.environ(Stream(b"abcdef"), 6), 100, prefix_bytes=4) == (b"abcd", False)

    def test_a_chunked_body_ends_before_the_prefix_or_not(self) -> None:
        assert read_prefix(self.environ(io.BytesIO(b"abc"), None), 100, prefix_bytes=4) == (b"abc", True)
        assert read_prefix(self.environ(io.BytesIO(b"abcd"), None), 100, prefix_bytes=4) == (b"abcd", False)

    def test_the_operation_of_a_prefix(self) -> None:
        limits = LimitsSettings()
        body = envelope("jobRegister", jdl=ECHO_JDL)
        assert operation_of(body[:len(body) // 2], limits) == (WMPROXY, "jobRegister")
        assert operation_of(body[:20], limits) == ("", "")
        assert operation_of(b"<not xml", limits) == ("", "")


class TestSandbox:
    def test_a_refused_upload_of_a_caller_not_admitted_is_not_drained(self, soap: SoapApp, pki: Pki,
                                                                     alice: Principal, mallory: Principal) -> None:
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "d")
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="d")
        path = reply.element.find("jobIdStruct").findtext("path")
        body = b"x" * 100_000
        stream = Stream(body)
        refused = soap.request(body, mallory, method="PUT", path=f"/{path}/data.txt", stream=stream)
        assert refused.status.startswith("403")
        assert stream.furthest == 0
        # an admitted caller's refused upload (not the job's owner) is still drained
        drained = Stream(body)
        assert soap.request(body, Principal(pki.users["bob"].dn), method="PUT", path=f"/{path}/data.txt",
                            stream=drained).status.startswith("403")
        assert drained.furthest == len(body)
