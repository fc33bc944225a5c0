"""``/metrics`` while the database cannot be read: ``wmproxy_database_up 0`` and the rest.

Before, the database collector's error aborted the whole scrape: a 503 for everything (the request
counters of the files too) and a full traceback in the log at every scrape.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wmproxy.config import DatabaseSettings, MetricsSettings
from wmproxy.monitoring.server import MetricsApp
from wmproxy.services.runtime import Runtime


def scrape(app: MetricsApp) -> tuple[str, dict[str, float]]:
    seen: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    if seen[0] != "200 OK":
        return seen[0], {}
    values = {s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    return seen[0], values


def count_a_request(directory: Path) -> None:
    """A service process's request counted into ``directory`` (a process of its own: the
    multiprocess mode is set per process)."""
    code = ("import sys; from pathlib import Path; from wmproxy.monitoring import metrics\n"
            "metrics.enable_request_metrics(Path(sys.argv[1])); metrics.observe_request('getVersion', 'ok', 0.01)\n")
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True, timeout=120)


def test_a_database_that_cannot_be_read_is_a_gauge_not_a_failed_scrape(
        rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = tmp_path / "gone"
    metrics = tmp_path / "metrics"
    settings = dataclasses.replace(rt.settings, database=DatabaseSettings(url=f"sqlite:///{gone}/wmproxy.db"),
                                   metrics=MetricsSettings(dir=str(metrics)))
    down = Runtime.from_settings(settings)
    app = MetricsApp(down)
    count_a_request(metrics)
    caplog.set_level(logging.INFO, logger="wmproxy.monitoring")
    try:
        for _ in range(3):
            status, values = scrape(app)
            assert status == "200 OK"
            assert values["wmproxy_database_up"] == 0
            assert values["wmproxy_requests_total,operation=getVersion,outcome=ok"] == 1  # the files' families
            assert "wmproxy_sandbox_bytes" in values
            assert not [name for name in values if name.startswith(("wmproxy_jobs", "wmproxy_execution_queue"))]
        logged = [r for r in caplog.records if r.name.startswith("wmproxy.monitoring")]
        assert len(logged) == 1 and logged[0].levelno == logging.WARNING, [r.getMessage() for r in logged]
        assert "the database cannot be read" in logged[0].getMessage() and logged[0].exc_info is None
        assert "\n" not in logged[0].getMessage()

        gone.mkdir()  # the database is back
        shutil.copyfile(Path(rt.settings.database.url.removeprefix("sqlite:///")), gone / "wmproxy.db")
        status, values = scrape(app)
        assert status == "200 OK" and values["wmproxy_database_up"] == 1
        assert "wmproxy_execution_queue_depth" in values
        logged = [r for r in caplog.records if r.name.startswith("wmproxy.monitoring")]
        assert [r.getMessage() for r in logged[1:]] == [
            "metrics: the database can be read again (wmproxy_database_up 1)"]
    finally:
        down.session_factory.kw["bind"].dispose()
