"""The inspection extension port (namespace ``http://wmproxy.org/namespaces/inspection-1``),
rpc/literal, described by ``wsdl/wmproxy-inspection.wsdl`` (not part of the reference).

``inspectJob(jobId, command, timeLimit)`` asks a running job to run ``command`` (a list of
words, no shell) and returns a request id; ``getInspectionResult(requestId, timeout)``
waits up to ``timeout`` seconds (at most 30) and returns the request's state, with the
output, exit code and UTC times once it has finished (``wmproxy.services.inspection``).
Faults are the WMProxy BaseFaultType elements (namespace ``http://glite.org/wms/wmproxy``):
AuthenticationFault, AuthorizationFault, JobUnknownFault, InvalidArgumentFault,
OperationNotAllowedFault, GenericFault.
"""

from __future__ import annotations

from pathlib import Path

from spyne import Boolean, ByteArray, ComplexModel, DateTime, Integer, ServiceBase, Unicode, rpc

from wmproxy.domain import InspectionResult
from wmproxy.services import inspection
from wmproxy.soap.calls import wmproxy_call
from wmproxy.soap.namespaces import INSPECTION
from wmproxy.soap.types import Part, String

#: The port's WSDL (package data), served to nobody: clients use their copy.
WSDL_FILE = Path(__file__).resolve().parents[1] / "wsdl" / "wmproxy-inspection.wsdl"


class CommandType(ComplexModel):
    """The command's words (argv), the program first."""

    __namespace__ = INSPECTION
    _type_info = [("word", Part(Unicode, min_occurs=1, max_occurs="unbounded"))]


class InspectionResultType(ComplexModel):
    __namespace__ = INSPECTION
    _type_info = [
        ("requestId", Part(Unicode, min_occurs=1)),
        ("jobId", Part(Unicode, min_occurs=1)),
        ("state", Part(Unicode, min_occurs=1)),
        ("command", Part(CommandType, min_occurs=1)),
        ("askedAt", Part(DateTime, min_occurs=1)),
        ("startedAt", Part(DateTime, min_occurs=1, nillable=True)),
        ("endedAt", Part(DateTime, min_occurs=1, nillable=True)),
        ("exitCode", Part(Integer, min_occurs=1, nillable=True)),
        ("timedOut", Part(Boolean, min_occurs=1)),
        ("truncated", Part(Boolean, min_occurs=1)),
        ("output", Part(ByteArray, min_occurs=1)),
        ("message", Part(Unicode, min_occurs=1)),
        ("jobState", Part(Unicode, min_occurs=1)),
    ]


#: Faults of ``wsdl/wmproxy-inspection.wsdl`` (any other kind is sent as GenericFault).
DECLARED_FAULTS = frozenset({"AuthenticationFault", "AuthorizationFault", "InvalidArgumentFault", "JobUnknownFault",
                             "OperationNotAllowedFault", "ServerOverloadedFault", "GenericFault"})


def _call(ctx, method, fn):
    return wmproxy_call(ctx, method, DECLARED_FAULTS, fn)


def _result(r: InspectionResult) -> InspectionResultType:
    return InspectionResultType(
        requestId=r.request_id, jobId=r.job_id, state=r.state, command=CommandType(word=r.command),
        askedAt=r.asked_at, startedAt=r.started_at, endedAt=r.ended_at, exitCode=r.exit_code,
        timedOut=r.timed_out, truncated=r.truncated, output=[r.output], message=r.message, jobState=r.job_state,
    )


class InspectionPort(ServiceBase):
    """Operations of ``Inspection_PortType``."""

    @rpc(String, Part(CommandType), Part(Integer), _returns=String, _out_variable_name="requestId")
    def inspectJob(ctx, jobId, command, timeLimit):
        words = list(command.word or []) if command is not None else []
        return _call(ctx, "inspectJob",
                     lambda rt, p: inspection.ask(rt, p, jobId or "", [w or "" for w in words], timeLimit))

    @rpc(String, Part(Integer), _returns=Part(InspectionResultType), _out_variable_name="result")
    def getInspectionResult(ctx, requestId, timeout):
        return _call(ctx, "getInspectionResult",
                     lambda rt, p: _result(inspection.result(rt, p, requestId or "", timeout)))
