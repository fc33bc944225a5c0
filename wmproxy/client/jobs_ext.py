"""Client of the jobs-1 extension port (``wsdl/wmproxy-jobs.wsdl``): job history
(getJobEvents) and job listing (listJobs), plain values in and out.

Only this implementation of WMProxy serves the port; a gLite WMProxy answers its
operations with a fault (reported as :class:`~wmproxy.client.WMProxyClientError`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zeep
from zeep import xsd
from zeep.transports import Transport

from wmproxy.client.faults import translated_errors
from wmproxy.client.session import grid_session
from wmproxy.domain import JobEvent, JobHistory, JobPage, JobSummary

JOBS_NS = "http://wmproxy.org/namespaces/jobs-1"
BINDING = f"{{{JOBS_NS}}}WMProxyJobs"


def jobs_wsdl_path() -> Path:
    """The extension port's WSDL, shipped with the package."""
    return Path(__file__).resolve().parents[1] / "wsdl" / "wmproxy-jobs.wsdl"


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _part(value: Any) -> Any:
    """An rpc part left out of the request when None (zeep requires every part otherwise)."""
    return xsd.SkipValue if value is None else value


def _summary(s: Any) -> JobSummary:
    submitted = _utc(s.submitted)
    last_update = _utc(s.lastUpdate)
    assert submitted is not None and last_update is not None  # noqa: S101 - required by the schema
    return JobSummary(
        job_id=s.jobId, state=s.state, status=s.status, owner_dn=s.owner, submitted=submitted,
        last_update=last_update, parent_id=s.parentJobId, node_name=s.nodeName,
        exit_code=None if s.exitCode is None else int(s.exitCode), reason=s.reason, destination=s.destination,
        user_tags={t.name: t.value for t in s.userTag or ()},
        state_times={t.state: _utc(t.time) for t in s.stateTime or () if t.time is not None},  # type: ignore[misc]
        node_states={c.state: int(c.count) for c in s.nodeState or ()},
        missing_outputs=tuple((m.name, m.reason) for m in s.missingOutput or ()),
    )


class JobsClient:
    """The jobs-1 port of a WMProxy endpoint.

    Args:
        endpoint: service URL, ``https://host:7443/glite_wms_wmproxy_server``.
        proxy_file: the user's proxy (PEM), the TLS client credential.
        ca_dir: grid CA directory used to verify the service.
        timeout: seconds for connecting and for each read.
        session: an already configured requests Session (e.g. a WMProxyClient's).

    Every method raises :class:`~wmproxy.client.WMProxyClientError` on a SOAP fault, a
    transport/TLS failure or an unreadable response.
    """

    def __init__(self, endpoint: str, proxy_file: str, ca_dir: str, timeout: float = 120.0, *,
                 session: Any = None) -> None:
        self.endpoint = endpoint
        self.session = session if session is not None else grid_session(proxy_file, ca_dir)
        transport = Transport(session=self.session, timeout=timeout, operation_timeout=timeout)
        with translated_errors("wsdl"):
            self._zeep = zeep.Client(str(jobs_wsdl_path()), transport=transport)
        self._port = self._zeep.create_service(BINDING, endpoint)

    def get_job_events(self, job_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                       kinds: Sequence[str] = ()) -> JobHistory:
        """getJobEvents: the job's summary and its events in ``[since, until]`` (UTC) of ``kinds``.

        Args:
            job_id: the job (or node) id.
            since, until: inclusive bounds of the event times (aware), None = open.
            kinds: event kinds to keep; empty = all.
        """
        with translated_errors("getJobEvents"):
            result = self._port.getJobEvents(job_id, _part(since), _part(until),
                                             {"kind": list(kinds)} if kinds else xsd.SkipValue)
        return JobHistory(
            _summary(result.job),
            tuple(JobEvent(_utc(e.time) or dt.datetime.min.replace(tzinfo=dt.UTC), e.kind, e.state, e.source,
                           e.reason) for e in result.event or ()),
        )

    def list_jobs(self, *, states: Sequence[str] = (), exclude_states: Sequence[str] = (),
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  user_tags: dict[str, str] | None = None, offset: int = 0, limit: int = 100) -> JobPage:
        """listJobs: the caller's jobs and those shared with it, newest first.

        Args:
            states, exclude_states: L&B state names (any case) to keep / to leave out.
            since, until: registration time bounds, inclusive (aware), None = open.
            user_tags: ``name -> value`` the JDL ``UserTags`` must all hold.
            offset, limit: paging (limit 1..1000).
        """
        flt = {
            "state": list(states), "excludeState": list(exclude_states), "fromTime": since, "toTime": until,
            "userTag": [{"name": k, "value": v} for k, v in (user_tags or {}).items()],
            "offset": offset, "limit": limit,
        }
        with translated_errors("listJobs"):
            result = self._port.listJobs(flt)
        return JobPage(tuple(_summary(s) for s in result.job or ()), int(result.total))

    def list_all_jobs(self, page_size: int = 1000, **filters: Any) -> list[JobSummary]:
        """Every job :meth:`list_jobs` matches, page after page."""
        jobs: list[JobSummary] = []
        while True:
            page = self.list_jobs(offset=len(jobs), limit=page_size, **filters)
            jobs += page.jobs
            if not page.jobs or len(jobs) >= page.total:
                return jobs
