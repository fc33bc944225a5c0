"""jobRegister and jobSubmit served without Spyne (``wmproxy.soap.direct``) answer byte for byte
what Spyne answers: the reply writer against Spyne's own serialiser, and whole requests (plain
ones, which take the direct path, and every other shape, which Spyne serves) through both paths
of one application."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from spyne import MethodContext

from tests.conftest import Pki
from tests.support import ECHO_JDL, Reply, SoapApp, bytes_or_refusal, delegate_in_process
from wmproxy.domain import Principal
from wmproxy.services.submission import RegisteredJob
from wmproxy.soap import convert, direct
from wmproxy.soap.dispatch import SoapDispatcher
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY

#: What differs between two answers to the same request: new job ids, their areas, the time.
_VARYING = re.compile(rb"<(id|path|Timestamp)>[^<]*</\1>")

COLLECTION = '[ Type = "collection"; nodes = { [ Executable = "/bin/true"; ], [ Executable = "/bin/false"; ] }; ]'


def _spyne_reply(dispatcher: SoapDispatcher, method: str, job: RegisteredJob) -> bytes:
    """The WMProxy port's out protocol serialising ``method``'s JobIdStructType for ``job``."""
    port = dispatcher.ports[WMPROXY]
    ctx = MethodContext(port, MethodContext.SERVER)
    ctx.descriptor = port.app.interface.service_method_map[f"{{{WMPROXY}}}{method}"][0]
    ctx.out_object = [convert.job_id_struct(job)]
    port.app.out_protocol.serialize(ctx, port.app.out_protocol.RESPONSE)
    port.app.out_protocol.create_out_string(ctx)
    return b"".join(ctx.out_string)


JOBS = {
    "simple": RegisteredJob("https://h:9000/AbC-x_1", None, "SandboxDir/Ab/https_3a_2f_2fh_3a9000_2fAbC-x_5f1/input"),
    "odd values": RegisteredJob("", "", None),
    "nodes": RegisteredJob("https://h:9000/p", None, "p/input", (
        RegisteredJob("https://h:9000/c", "Node_0", "c/input"),
        RegisteredJob("https://h:9000/d", "a<&>\"'\r\n\t\u00e9\U0001f600 ]]>", "d/input",
                      (RegisteredJob("e", "f", None),)),
    )),
}


class TestReplyWriter:
    @pytest.mark.parametrize("method", ["jobRegister", "jobSubmit"])
    @pytest.mark.parametrize("name", list(JOBS))
    def test_bytes_are_spynes(self, method: str, name: str) -> None:
        dispatcher = SoapDispatcher()
        assert _writer(dispatcher, method)(JOBS[name]) == _spyne_reply(dispatcher, method, JOBS[name])

    def test_a_value_lxml_refuses_fails_as_in_spyne(self) -> None:
        dispatcher = SoapDispatcher()
        job = RegisteredJob("https://h:9000/p", "bad\x01name", "p")
        with pytest.raises(ValueError, match="XML compatible") as spyne:
            _spyne_reply(dispatcher, "jobSubmit", job)
        with pytest.raises(ValueError, match="XML compatible") as ours:
            _writer(dispatcher, "jobSubmit")(job)
        assert str(ours.value) == str(spyne.value)


_DISPATCHER = SoapDispatcher()


#: Text of every kind: what lxml writes as it is (the kept bytes), what it escapes, what it refuses.
_TEXT = st.one_of(st.text(alphabet="Aa0._~:/%+=@,;!$*()' -", max_size=40), st.text(max_size=20))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_id=_TEXT, path=st.one_of(st.none(), _TEXT), name=st.one_of(st.none(), _TEXT))
def test_kept_bytes_and_lxml_write_what_spyne_writes(job_id: str, path: str | None, name: str | None) -> None:
    job = RegisteredJob(job_id, name, path)
    writer = _writer(_DISPATCHER, "jobSubmit")
    expected = bytes_or_refusal(_spyne_reply, _DISPATCHER, "jobSubmit", job)
    got = bytes_or_refusal(writer, job)
    assert got == expected
    if isinstance(got, bytes):
        assert writer.write(job) == got


def _writer(dispatcher: SoapDispatcher, method: str) -> direct.JobIdReply:
    port = dispatcher.ports[WMPROXY]
    message = port.app.interface.service_method_map[f"{{{WMPROXY}}}{method}"][0].out_message
    return direct.JobIdReply(port.app.interface.nsmap, f"{{{WMPROXY}}}{method}Response", next(iter(message._type_info)))


def _envelope(inner: str, header: str = "", operation_attributes: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{SOAP_ENV}" xmlns:n="{WMPROXY}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{header}<e:Body>'
            f"<n:OP{operation_attributes}>{inner}</n:OP></e:Body></e:Envelope>").encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: name → (operation element's content, header, attributes of the operation, served directly)
SHAPES: dict[str, tuple[str, str, str, bool]] = {
    "plain": (f"<jdl>{_escape(ECHO_JDL)}</jdl><delegationId>direct</delegationId>", "", "", True),
    "parts swapped": (f"<delegationId>direct</delegationId><jdl>{_escape(ECHO_JDL)}</jdl>", "", "", True),
    "collection": (f"<jdl>{_escape(COLLECTION)}</jdl><delegationId>direct</delegationId>", "", "", True),
    "CDATA and a comment": (f"<jdl><![CDATA[{ECHO_JDL}]]></jdl><!-- c --><delegationId>direct</delegationId>",
                            "", "", True),
    "empty delegationId (the default id)": (f"<jdl>{_escape(ECHO_JDL)}</jdl><delegationId/>", "", "", True),
    "no delegationId": (f"<jdl>{_escape(ECHO_JDL)}</jdl>", "", "", True),
    "no part at all": ("", "", "", True),
    "empty jdl": ("<jdl></jdl><delegationId>direct</delegationId>", "", "", True),
    "bad JDL": ("<jdl>[ Executable = ; ]</jdl><delegationId>direct</delegationId>", "", "", True),
    "unknown delegation": (f"<jdl>{_escape(ECHO_JDL)}</jdl><delegationId>never</delegationId>", "", "", True),
    "a Header": (f"<jdl>{_escape(ECHO_JDL)}</jdl><delegationId>direct</delegationId>", "<e:Header/>", "", False),
    "qualified parts": (f"<n:jdl>{_escape(ECHO_JDL)}</n:jdl><n:delegationId>direct</n:delegationId>", "", "", False),
    "jdl twice": (f"<jdl>{_escape(ECHO_JDL)}</jdl><jdl>x</jdl><delegationId>direct</delegationId>", "", "", False),
    "nil delegationId": (f'<jdl>{_escape(ECHO_JDL)}</jdl><delegationId xsi:nil="true"/>', "", "", False),
    "an attribute on the operation": (f"<jdl>{_escape(ECHO_JDL)}</jdl>", "", ' a="1"', False),
    "an unknown part": (f"<jdl>{_escape(ECHO_JDL)}</jdl><x>1</x><delegationId>direct</delegationId>", "", "", False),
    "an element in a part": ("<jdl>[ a = 1; ]<b/></jdl><delegationId>direct</delegationId>", "", "", False),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_string_parts_takes_only_the_plain_shape(name: str) -> None:
    inner, header, attributes, plain = SHAPES[name]
    from wmproxy.config import LimitsSettings
    from wmproxy.soap.request import check_request

    root = check_request(_envelope(inner, header, attributes).replace(b"OP", b"jobSubmit"), LimitsSettings()).root
    parts = direct.string_parts(root, ("jdl", "delegationId"))
    assert (parts is not None) == plain
    if name == "empty delegationId (the default id)":
        assert parts == [ECHO_JDL, ""]
    if name == "no part at all":
        assert parts == [None, None]


@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_both_paths_answer_alike(soap: SoapApp, alice: Principal, pki: Pki, operation: str) -> None:
    delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "direct")
    delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "")  # the default id
    dispatcher = soap.app.soap
    assert {(WMPROXY, "jobRegister"), (WMPROXY, "jobSubmit")} <= set(dispatcher.direct)  # and the delegation ones
    statuses = set()
    for name, (inner, header, attributes, _) in SHAPES.items():
        body = _envelope(inner, header, attributes).replace(b"OP", operation.encode())
        dispatcher.lean = False
        reference = _masked(soap.request(body, alice))
        dispatcher.lean = True
        answer = _masked(soap.request(body, alice))
        assert answer == reference, (name, answer, reference)
        statuses.add(reference[0][:3])
    assert statuses == {"200", "500"}


def test_a_submitted_job_is_stored_as_by_spyne(soap: SoapApp, alice: Principal, pki: Pki) -> None:
    """The direct path calls the same service: the job it answers is there, Waiting."""
    delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "direct")
    reply = soap.request(_envelope(f"<jdl>{_escape(ECHO_JDL)}</jdl><delegationId>direct</delegationId>")
                         .replace(b"OP", b"jobSubmit"), alice)
    job_id = etree.fromstring(reply.body).findtext(".//jobIdStruct/id")
    assert job_id
    with soap.rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None and job.state == "Waiting" and job.owner_dn == alice.dn


def _masked(reply: Reply) -> tuple[str, dict[str, str], bytes]:
    body = _VARYING.sub(lambda match: b"<" + match.group(1) + b"/>", reply.body)
    headers = dict(reply.headers)
    headers["Content-Length"] = "masked"  # a job's directory name is as long as its id's underscores make it
    return reply.status, headers, body
