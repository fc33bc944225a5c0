"""The jobs-1 extension port (namespace :data:`~wmproxy.soap.namespaces.JOBS_1`): job history
and job listing (issue 12), rpc/literal like the WMProxy port, described in
``wsdl/wmproxy-jobs.wsdl``. Clients generated from the reference WSDL never see it.

Faults are the WMProxy ``BaseFaultType`` faults (``JobUnknownFault``, ``AuthorizationFault``,
``InvalidArgumentFault``, ``AuthenticationFault``, ``GenericFault``), as on the WMProxy port.
"""

from __future__ import annotations

from spyne import ComplexModel, DateTime, Integer, ServiceBase, Unicode, rpc

from wmproxy.domain import JobSummary
from wmproxy.services import history, listing
from wmproxy.soap.calls import wmproxy_call
from wmproxy.soap.namespaces import JOBS_1
from wmproxy.soap.types import Part, String

#: Faults the jobs-1 operations declare (``wsdl/wmproxy-jobs.wsdl``).
DECLARED_FAULTS = frozenset(
    {"AuthenticationFault", "AuthorizationFault", "InvalidArgumentFault", "JobUnknownFault", "GenericFault"}
)


def _many(model):
    return Part(model, max_occurs="unbounded")


class NameValueType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("name", Part(Unicode, min_occurs=1)), ("value", Part(Unicode, min_occurs=1))]


class StateTimeType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("state", Part(Unicode, min_occurs=1)), ("time", Part(DateTime, min_occurs=1))]


class StateCountType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("state", Part(Unicode, min_occurs=1)), ("count", Part(Integer, min_occurs=1))]


class MissingFileType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("name", Part(Unicode, min_occurs=1)), ("reason", Part(Unicode, min_occurs=1))]


class JobSummaryType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [
        ("jobId", Part(Unicode, min_occurs=1)),
        ("parentJobId", Part(Unicode)),
        ("nodeName", Part(Unicode)),
        ("state", Part(Unicode, min_occurs=1)),
        ("status", Part(Unicode, min_occurs=1)),
        ("owner", Part(Unicode, min_occurs=1)),
        ("submitted", Part(DateTime, min_occurs=1)),
        ("lastUpdate", Part(DateTime, min_occurs=1)),
        ("exitCode", Part(Integer)),
        ("reason", Part(Unicode)),
        ("destination", Part(Unicode)),
        ("userTag", _many(NameValueType)),
        ("stateTime", _many(StateTimeType)),
        ("nodeState", _many(StateCountType)),
        ("missingOutput", _many(MissingFileType)),
    ]


class JobEventType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [
        ("time", Part(DateTime, min_occurs=1)),
        ("kind", Part(Unicode, min_occurs=1)),
        ("state", Part(Unicode, min_occurs=1)),
        ("source", Part(Unicode, min_occurs=1)),
        ("reason", Part(Unicode)),
    ]


class EventKindList(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("kind", _many(Unicode))]


class JobEventsType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("job", Part(JobSummaryType, min_occurs=1)), ("event", _many(JobEventType))]


class JobFilterType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [
        ("state", _many(Unicode)),
        ("excludeState", _many(Unicode)),
        ("fromTime", Part(DateTime)),
        ("toTime", Part(DateTime)),
        ("userTag", _many(NameValueType)),
        ("offset", Part(Integer)),
        ("limit", Part(Integer)),
    ]


class JobListType(ComplexModel):
    __namespace__ = JOBS_1
    _type_info = [("job", _many(JobSummaryType)), ("total", Part(Integer, min_occurs=1))]


def summary_type(s: JobSummary) -> JobSummaryType:
    return JobSummaryType(
        jobId=s.job_id, parentJobId=s.parent_id, nodeName=s.node_name, state=s.state, status=s.status,
        owner=s.owner_dn, submitted=s.submitted, lastUpdate=s.last_update, exitCode=s.exit_code,
        reason=s.reason, destination=s.destination,
        userTag=[NameValueType(name=k, value=v) for k, v in s.user_tags.items()],
        stateTime=[StateTimeType(state=k, time=v) for k, v in s.state_times.items()],
        nodeState=[StateCountType(state=k, count=v) for k, v in s.node_states.items()],
        missingOutput=[MissingFileType(name=n, reason=r) for n, r in s.missing_outputs],
    )


def _filter(value: JobFilterType | None) -> listing.JobFilter:
    if value is None:
        return listing.JobFilter()
    return listing.JobFilter(
        states=tuple(s for s in value.state or () if s),
        exclude_states=tuple(s for s in value.excludeState or () if s),
        since=value.fromTime,
        until=value.toTime,
        user_tags={t.name: t.value for t in value.userTag or () if t is not None and t.name},
        offset=0 if value.offset is None else value.offset,
        limit=100 if value.limit is None else value.limit,
    )


def _call(ctx, method, fn):
    return wmproxy_call(ctx, method, DECLARED_FAULTS, fn)


class JobsPort(ServiceBase):
    """getJobEvents and listJobs."""

    @rpc(String, Part(DateTime), Part(DateTime), Part(EventKindList),
         _returns=Part(JobEventsType), _out_variable_name="events")
    def getJobEvents(ctx, jobId, fromTime, toTime, kinds):
        def run(rt, p):
            wanted = [k for k in (kinds.kind if kinds is not None else None) or () if k]
            found = history.job_history(rt, p, jobId or "", since=fromTime, until=toTime, kinds=wanted)
            return JobEventsType(
                job=summary_type(found.job),
                event=[JobEventType(time=e.at, kind=e.kind, state=e.state, source=e.source, reason=e.reason)
                       for e in found.events],
            )

        return _call(ctx, "getJobEvents", run)

    @rpc(Part(JobFilterType), _returns=Part(JobListType), _out_variable_name="jobs")
    def listJobs(ctx, filter):  # noqa: A002 - the WSDL part's name
        def run(rt, p):
            page = listing.list_jobs(rt, p, _filter(filter))
            return JobListType(job=[summary_type(s) for s in page.jobs], total=page.total)

        return _call(ctx, "listJobs", run)
