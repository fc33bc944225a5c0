"""A fake jobs-1 extension client (getJobEvents, listJobs) for the CLI unit tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from wmproxy.client import WMProxyClientError
from wmproxy.domain import JobEvent, JobHistory, JobPage, JobSummary

T0 = dt.datetime(2026, 11, 5, 5, 39, 0, tzinfo=dt.UTC)


def summary(job_id: str, state: str = "Running", **kwargs: Any) -> JobSummary:
    values: dict[str, Any] = {
        "job_id": job_id, "state": state, "status": state, "owner_dn": "/C=XX/O=Grid/CN=Alice",
        "submitted": T0, "last_update": T0 + dt.timedelta(seconds=70), "destination": "localhost:7443/local-default",
        "state_times": {"Submitted": T0, "Waiting": T0 + dt.timedelta(seconds=1)},
    }
    values.update(kwargs)
    return JobSummary(**values)


class FakeJobsClient:
    """Answers from ``histories`` (job id → JobHistory; default: a Running job with two events)
    and ``jobs`` (listJobs); ``fail`` maps a job id to the error getJobEvents raises for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.histories: dict[str, JobHistory] = {}
        self.jobs: list[JobSummary] = []
        self.fail: dict[str, WMProxyClientError] = {}

    def get_job_events(self, job_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                       kinds: Sequence[str] = ()) -> JobHistory:
        self.calls.append(("get_job_events", (job_id, since, until, tuple(kinds))))
        if job_id in self.fail:
            raise self.fail[job_id]
        return self.histories.get(job_id) or JobHistory(summary(job_id), (
            JobEvent(T0, "registered", "Submitted", "user"),
            JobEvent(T0 + dt.timedelta(seconds=1), "enqueued", "Waiting", "service"),
        ))

    def list_all_jobs(self, page_size: int = 1000, **filters: Any) -> list[JobSummary]:
        self.calls.append(("list_all_jobs", filters))
        return list(self.jobs)

    def list_jobs(self, **filters: Any) -> JobPage:
        return JobPage(tuple(self.jobs), len(self.jobs))
