"""Prometheus metrics (prometheus_client), safe for gunicorn's several worker processes.

Request metrics are counted in the process that served the request, in prometheus_client's
multiprocess mode: each process writes its values to files in ``[metrics] dir``, and
``wmproxy-metrics`` adds them up at scrape time (``MultiProcessCollector``). The database
gauges (jobs by state, execution queue depth, renewals, purges) and the sandbox area's size
are computed at scrape time by :class:`SiteCollector`, so they are right whichever process
changed the rows; ``wmproxy_database_up`` says whether the database could be read (while it
cannot, its gauges are left out and the rest is served). No label holds a DN, FQAN, job id or
file name.

Metric names: ``docs/monitoring.md``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmproxy.config import Settings

log = logging.getLogger(__name__)

#: Buckets of ``wmproxy_request_duration_seconds`` (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def metrics_dir(settings: Settings) -> Path:
    """``[metrics] dir``, default ``metrics`` next to the sandbox root."""
    return Path(settings.metrics.dir) if settings.metrics.dir else Path(settings.sandbox.root).parent / "metrics"


@dataclass
class _RequestMetrics:
    requests: Any
    duration: Any
    sandbox_bytes: Any
    #: The labelled children already looked up, by label values (``labels()`` checks and locks
    #: on every call; the label values are bounded: operations, outcomes, directions).
    children: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def child(self, metric: str, *labels: str) -> Any:
        key = (metric, *labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = getattr(self, metric).labels(*labels)
        return found


_current: _RequestMetrics | None = None


def enable_request_metrics(directory: Path) -> None:
    """Count this process's requests into ``directory`` (created 0700 if missing).

    Must run before any request is counted; the service runs it once per worker process.
    """
    global _current  # noqa: PLW0603 - one set of metrics per process
    if _current is not None:
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:  # the service still serves; its requests are not counted
        log.warning("request metrics off: cannot create [metrics] dir %s: %s", directory, exc.strerror)
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import CollectorRegistry, Counter, Histogram, values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call] # multiprocess values, even if imported before
    registry = CollectorRegistry(auto_describe=True)  # not the global one: nothing else exports it
    _current = _RequestMetrics(
        requests=Counter("wmproxy_requests", "SOAP operations and sandbox requests served, by outcome",
                         ["operation", "outcome"], registry=registry),
        duration=Histogram("wmproxy_request_duration_seconds", "Time from a request's arrival to its answer",
                           ["operation"], buckets=DURATION_BUCKETS, registry=registry),
        sandbox_bytes=Counter("wmproxy_sandbox_transfer_bytes", "Bytes moved by sandbox HTTP requests",
                              ["direction"], registry=registry),
    )


def observe_request(operation: str, outcome: str, duration: float, size: int | None = None) -> None:
    """Count one request (nothing when :func:`enable_request_metrics` has not run)."""
    current = _current
    if current is None:
        return
    current.child("requests", operation, outcome).inc()
    current.child("duration", operation).observe(duration)
    if size:
        current.child("sandbox_bytes", "out" if operation == "sandbox_GET" else "in").inc(size)


def directory_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (0 when it does not exist)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _one_line(exc: BaseException) -> str:
    """A database error in one line: the driver's message (SQLAlchemy's adds its own lines)."""
    orig = getattr(exc, "orig", None)
    return " ".join(f"{type(orig or exc).__name__}: {orig or exc}".split())


class SiteCollector:
    """The scrape-time metrics: whether the database answers, jobs by state, queue depth,
    renewals, purges, sandbox bytes.

    While the database cannot be read (an outage, a restart), ``wmproxy_database_up`` is 0 and the
    database's families are left out; the scrape still answers with the others (the request
    metrics of the files, the sandbox's size). Before, the error aborted the whole scrape: a 503
    and a traceback in the log at each one. The change of state is logged once (WARNING, then
    INFO when it can be read again), as ``/readyz`` logs its checks."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._sandbox: tuple[float, int] | None = None  # (monotonic time of the walk, bytes)
        self._database_error: str | None = None  # the error last logged while the database is down

    def sandbox_bytes(self) -> int:
        """Bytes of the sandbox area, walked at most every ``[metrics] sandbox_scan_interval`` s."""
        now = time.monotonic()
        if self._sandbox is None or now - self._sandbox[0] >= self.runtime.settings.metrics.sandbox_scan_interval:
            self._sandbox = (now, directory_bytes(Path(self.runtime.settings.sandbox.root)))
        return self._sandbox[1]

    def _site_totals(self) -> Any:
        """The database's totals, or None when it cannot be read (logged when that changes)."""
        from sqlalchemy.exc import SQLAlchemyError

        from wmproxy.services.monitor import site_totals

        try:
            totals = site_totals(self.runtime)
        except SQLAlchemyError as exc:
            if self._database_error is None:
                self._database_error = _one_line(exc)
                log.warning("metrics: the database cannot be read, /metrics leaves its families out "
                            "(wmproxy_database_up 0) until it can: %s", self._database_error)
            return None
        if self._database_error is not None:
            self._database_error = None
            log.info("metrics: the database can be read again (wmproxy_database_up 1)")
        return totals

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        totals = self._site_totals()
        yield GaugeMetricFamily("wmproxy_database_up", "1 when the database could be read for this scrape, else 0 "
                                "(its families are then left out)", value=0 if totals is None else 1)
        if totals is not None:
            jobs = GaugeMetricFamily("wmproxy_jobs", "Jobs and nodes in the database, by state", labels=["state"])
            for state, count in sorted(totals.jobs_by_state.items()):
                jobs.add_metric([state], count)
            yield jobs
            yield GaugeMetricFamily("wmproxy_execution_queue_depth",
                                    "Execution requests (start, cancel) not yet done", value=totals.queue_depth)
            renewals = CounterMetricFamily("wmproxy_proxy_renewals",
                                           "MyProxy renewals of delegated proxies, by result", labels=["result"])
            renewals.add_metric(["ok"], totals.renewals_ok)
            renewals.add_metric(["failed"], totals.renewals_failed)
            yield renewals
            yield CounterMetricFamily("wmproxy_purges",
                                      "Jobs cleared, and jobs removed by the purger (tombstones kept)",
                                      value=totals.purges)
        yield GaugeMetricFamily("wmproxy_sandbox_bytes", "Bytes of the files in the sandbox area",
                                value=self.sandbox_bytes())


def scrape_registry(runtime: Any, directory: Path) -> Any:
    """A registry with the request metrics of every service process in ``directory`` and the
    :class:`SiteCollector` of ``runtime``'s database."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(SiteCollector(runtime))
    return registry
