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

from wmproxy.client import envelope
from wmproxy.client.faults import WMProxyClientError, translated_errors
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
    from zeep import xsd

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
        import zeep  # here, not at import: ``wmproxy status`` reads summaries without zeep (job_summary)

        from wmproxy.client.session import grid_session, soap_transport

        self.endpoint = endpoint
        self.session = session if session is not None else grid_session(proxy_file, ca_dir)
        transport = soap_transport(self.session, timeout, timeout)
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
                                             {"kind": list(kinds)} if kinds else _part(None))
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


# --- the light path: getJobEvents without zeep (``wmproxy status``, issue 14) ---


def job_summary(post: envelope.Post, job_id: str) -> JobSummary:
    """getJobEvents of the job's registration event only, read for its summary: one POST
    through :func:`wmproxy.client.envelope.call` (no WSDL, no zeep).

    Args:
        post: sends the request (:meth:`wmproxy.client.WMProxyClient.post`).
        job_id: the job (or node) id.

    Raises:
        WMProxyClientError: the service's fault (a gLite WMProxy has no such operation), a
            transport failure, or a reply without the summary (``InvalidResponse``).
    """
    events = envelope.call(post, JOBS_NS, "getJobEvents", [("jobId", job_id), ("kinds", [("kind", "registered")])])
    job = events.get("job") if isinstance(events, dict) else None
    if not isinstance(job, dict):
        raise WMProxyClientError("InvalidResponse", "getJobEvents: no job summary in the reply", None, "getJobEvents")
    return _summary_of(job)


def _many(value: Any) -> list[dict[str, Any]]:
    """A repeated element of :func:`envelope._value` (absent, one dict or a list) as a list."""
    if value is None or value == "":
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]


def _text(value: Any) -> str | None:
    """An optional (nillable) string element: None when absent or empty."""
    return value if isinstance(value, str) and value != "" else None


def _time(value: Any) -> dt.datetime | None:
    text = _text(value)
    return None if text is None else _utc(dt.datetime.fromisoformat(text))


def _summary_of(s: dict[str, Any]) -> JobSummary:
    """The JobSummaryType of a light reply (element name -> text or nested dict)."""
    submitted, last_update = _time(s.get("submitted")), _time(s.get("lastUpdate"))
    if submitted is None or last_update is None:
        raise WMProxyClientError("InvalidResponse", "getJobEvents: a summary without its times", None, "getJobEvents")
    exit_code = _text(s.get("exitCode"))
    return JobSummary(
        job_id=str(s.get("jobId", "")), state=str(s.get("state", "")), status=str(s.get("status", "")),
        owner_dn=str(s.get("owner", "")), submitted=submitted, last_update=last_update,
        parent_id=_text(s.get("parentJobId")), node_name=_text(s.get("nodeName")),
        exit_code=None if exit_code is None else int(exit_code), reason=_text(s.get("reason")),
        destination=_text(s.get("destination")),
        user_tags={str(t.get("name", "")): str(t.get("value", "")) for t in _many(s.get("userTag"))},
        state_times={str(t.get("state")): when for t in _many(s.get("stateTime"))
                     if (when := _time(t.get("time"))) is not None},
        node_states={str(c.get("state")): int(c.get("count", 0)) for c in _many(s.get("nodeState"))},
        missing_outputs=tuple((str(m.get("name", "")), str(m.get("reason", "")))
                              for m in _many(s.get("missingOutput"))),
    )
