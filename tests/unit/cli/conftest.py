"""A fake WMProxyClient and a CliRunner wired to it; ``service``: the service in-process behind a
real TLS server (:mod:`.https_server`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wmproxy.cli import common, history_opts
from wmproxy.client import (
    CEMatch,
    GraphNode,
    JobIds,
    JobStatus,
    OutputFile,
    ProxyInfo,
    RenewalInfo,
    WMProxyClientError,
)

from .fake_jobs import FakeJobsClient
from .https_server import service  # noqa: F401 - the fixture, for the modules here

ENDPOINT = "https://wms.example.org:7443/glite_wms_wmproxy_server"
JOB = "https://wms.example.org:9000/AbCdEfGhIjKlMnOpQrStUv"


class FakeClient:
    """Records calls; answers like a healthy service unless ``fail`` names an operation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, WMProxyClientError] = {}
        self.session = object()
        self.timeout = 5.0
        self.outputs: list[OutputFile] = []
        self.status = JobStatus(JOB, "Running")
        self.registered: JobIds = JobIds(JOB, path="SandboxDir/Ab/x/input")
        self.jdls: dict[tuple[str, str], str] = {}
        self.matches: list[CEMatch] = []
        self.perusal_uris: list[str] = []
        self.proxy = ProxyInfo("/C=XX/CN=Alice/CN=123", "/C=XX/CN=Alice", "/C=XX/CN=Alice", "proxy", "2048",
                               "1700000000", "1700003725")
        self.outputs_by_job: dict[str, list[OutputFile]] = {}
        self.renewal = RenewalInfo(None, False, proxy_end_time="1700003725")
        self.endpoint = ENDPOINT
        self.default_id: str | None = None

    def default_delegation_id(self) -> str | None:
        return self.default_id

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def delegate(self, delegation_id: str | None = None) -> str:
        self._record("delegate", delegation_id)
        return delegation_id or ""

    def job_submit(self, jdl: str, delegation_id: str) -> JobIds:
        self._record("job_submit", jdl, delegation_id)
        return JobIds(JOB)

    def job_register(self, jdl: str, delegation_id: str) -> JobIds:
        self._record("job_register", jdl, delegation_id)
        return self.registered

    def get_max_input_sandbox_size(self) -> int:
        self._record("get_max_input_sandbox_size")
        return 10_000_000

    def get_sandbox_dest_uri(self, job_id: str, protocol: str = "https") -> list[str]:
        self._record("get_sandbox_dest_uri", job_id, protocol)
        return ["https://wms.example.org:7443/SandboxDir/Ab/x/input"]

    def job_start(self, job_id: str) -> None:
        self._record("job_start", job_id)

    def job_cancel(self, job_id: str) -> None:
        self._record("job_cancel", job_id)

    def job_purge(self, job_id: str) -> None:
        self._record("job_purge", job_id)

    def get_job_status(self, job_id: str) -> JobStatus:
        self._record("get_job_status", job_id)
        return JobStatus(job_id, self.status.status, self.status.children)

    def get_output_file_list(self, job_id: str, protocol: str = "https") -> list[OutputFile]:
        self._record("get_output_file_list", job_id, protocol)
        return self.outputs_by_job.get(job_id, self.outputs)

    def get_jdl(self, job_id: str, kind: str = "ORIGINAL") -> str:
        self._record("get_jdl", job_id, kind)
        return self.jdls.get((job_id, kind), "[ Executable = \"/bin/true\" ]")

    def job_list_match(self, jdl: str, delegation_id: str) -> list[CEMatch]:
        self._record("job_list_match", jdl, delegation_id)
        return self.matches

    def enable_file_perusal(self, job_id: str, files: list[str]) -> None:
        self._record("enable_file_perusal", job_id, list(files))

    def get_perusal_files(self, job_id: str, file: str, all_chunks: bool = False, protocol: str = "https") -> list[str]:
        self._record("get_perusal_files", job_id, file, all_chunks, protocol)
        return self.perusal_uris

    def get_job_proxy_info(self, job_id: str) -> ProxyInfo:
        self._record("get_job_proxy_info", job_id)
        return self.proxy

    def get_proxy_renewal_info(self, job_id: str) -> RenewalInfo:
        self._record("get_proxy_renewal_info", job_id)
        return self.renewal

    def get_delegated_proxy_info(self, delegation_id: str) -> ProxyInfo:
        self._record("get_delegated_proxy_info", delegation_id)
        return self.proxy

    def get_job_template(self, job_types: Any, executable: str, arguments: str, requirements: str, rank: str) -> str:
        self._record("get_job_template", tuple(job_types), executable, arguments, requirements, rank)
        return "[ Executable = \"x\" ]"

    def get_dag_template(self, graph: GraphNode, requirements: str, rank: str) -> str:
        self._record("get_dag_template", graph, requirements, rank)
        return "[ Type = \"dag\" ]"

    def get_collection_template(self, job_number: int, requirements: str, rank: str) -> str:
        self._record("get_collection_template", job_number, requirements, rank)
        return "[ Type = \"collection\" ]"

    def get_int_parametric_job_template(self, attributes: Any, param: int, start: int, step: int,
                                        requirements: str, rank: str) -> str:
        self._record("get_int_parametric_job_template", tuple(attributes), param, start, step, requirements, rank)
        return "[ JobType = \"parametric\" ]"

    def get_string_parametric_job_template(self, attributes: Any, params: Any, requirements: str, rank: str) -> str:
        self._record("get_string_parametric_job_template", tuple(attributes), tuple(params), requirements, rank)
        return "[ JobType = \"parametric\" ]"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(common, "make_client", lambda env, **kw: client)
    monkeypatch.setattr(history_opts, "jobs_client", lambda c: FakeJobsClient())
    # the light summary read of ``status`` goes to whatever jobs_client a test installs
    monkeypatch.setattr(history_opts, "job_summary",
                        lambda c, job_id: history_opts.jobs_client(c).get_job_events(job_id, kinds=["registered"]).job)
    monkeypatch.setenv("GLITE_WMS_WMPROXY_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "proxy.pem"))
    return client


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@contextmanager
def local_time_zone(name: str) -> Iterator[None]:
    """The process's local time zone (``$TZ``, POSIX form) is ``name`` while it lasts."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture
def utc_local_time() -> Iterator[None]:
    """Local time is UTC for the test: the gLite ``[MM:DD:]hh:mm`` times are read as local time."""
    with local_time_zone("UTC0"):
        yield
