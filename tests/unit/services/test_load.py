"""The load limiter (services/load.py; anchors.md §1.3): the reference's trip rules, the
sampling cache, and the refusals through the SOAP edge in-process, thresholds forced low
through the settings (never depending on how loaded this machine really is)."""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import (
    ECHO_JDL,
    SoapApp,
    build_runtime,
    caller_from_environ,
    close_runtime,
    delegate_in_process,
    principal_of,
)
from wmproxy.config import ConfigError, LoadSettings
from wmproxy.domain import Principal
from wmproxy.errors import ServerOverloadedError
from wmproxy.jdl import compound, parametric
from wmproxy.services.load import (
    LoadMonitor,
    SystemSample,
    check_submission_size,
    disk_percent,
    sample_system,
    tripped,
)
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import DELEGATION_2, WMPROXY

CALM = SystemSample(load1=1.0, load5=1.0, load15=1.0, memory_usage=10.0, swap_usage=0.0, disk_usage=10.0,
                    free_fds=10_000)

COLLECTION_OF_3 = """[
  Type = "collection";
  Nodes = { [ Executable = "/bin/true"; ], [ Executable = "/bin/true"; ], [ Executable = "/bin/true"; ] };
]"""
COLLECTION_OF_2 = """[
  Type = "collection";
  Nodes = { [ Executable = "/bin/true"; ], [ Executable = "/bin/true"; ] };
]"""


def sample(**values: Any) -> SystemSample:
    return dataclasses.replace(CALM, **values)


class TestTripRules:
    def test_nothing_trips_with_every_threshold_off(self) -> None:
        hot = sample(load1=99, load5=99, load15=99, memory_usage=100, swap_usage=100, disk_usage=100, free_fds=0)
        assert tripped(LoadSettings(), hot) is None

    def test_load1_trips_at_the_threshold(self) -> None:
        assert tripped(LoadSettings(load1=10), sample(load1=9.99)) is None
        assert tripped(LoadSettings(load1=10), sample(load1=10.0)) == "load1 10.00 >= 10"

    def test_load5_trips_only_while_rising(self) -> None:
        limits = LoadSettings(load5=10)
        assert tripped(limits, sample(load1=9, load5=12)) is None  # falling
        assert (tripped(limits, sample(load1=13, load5=12))
                == "load5 12.00 >= 10 and rising (load1 13.00)")

    def test_load15_trips_only_while_rising_over_both(self) -> None:
        limits = LoadSettings(load15=10)
        assert tripped(limits, sample(load1=13, load5=11, load15=12)) is None  # load5 below load15
        assert tripped(limits, sample(load1=11, load5=13, load15=12)) is None  # load1 below load15
        reason = tripped(limits, sample(load1=14, load5=13, load15=12))
        assert reason is not None and reason.startswith("load15 12.00 >= 10 and rising")

    @pytest.mark.parametrize("name", ["memory_usage", "swap_usage", "disk_usage"])
    def test_usage_percentages(self, name: str) -> None:
        limits = LoadSettings(**{name: 95})
        assert tripped(limits, sample(**{name: 94.9})) is None
        assert tripped(limits, sample(**{name: 95.0})) == f"{name} 95.0% >= 95%"

    def test_free_fds_trips_at_or_below(self) -> None:
        assert tripped(LoadSettings(free_fds=500), sample(free_fds=501)) is None
        assert tripped(LoadSettings(free_fds=500), sample(free_fds=500)) == "free_fds 500 <= 500"

    @pytest.mark.parametrize("bad", [{"load1": -1}, {"memory_usage": 101}, {"sample_interval": 0},
                                     {"handshake_timeout": 0}, {"io_timeout": 0}, {"io_timeout": -1},
                                     {"max_live_jobs": -2}])
    def test_bad_settings_are_refused(self, bad: dict[str, float]) -> None:
        with pytest.raises(ConfigError, match=r"\[load\]"):
            LoadSettings(**bad)


class TestSampling:
    def test_sample_of_this_host_is_plausible(self, tmp_path: Path) -> None:
        found = sample_system(str(tmp_path / "not" / "yet"))
        assert min(found.load1, found.load5, found.load15) >= 0
        for value in (found.memory_usage, found.swap_usage, found.disk_usage):
            assert 0 <= value <= 100
        assert found.memory_usage > 0  # this process alone uses some
        assert found.free_fds > 0

    def test_disk_usage_is_dfs_use_percent(self, tmp_path: Path) -> None:
        # df's Use% of the same file system, through the real sampling (statvfs): df rounds up,
        # and the file system may change between the two reads (other writers), by a little.
        df = shutil.which("df")
        if df is None:
            pytest.skip("no df")
        ours = sample_system(str(tmp_path)).disk_usage
        out = subprocess.run([df, "--output=pcent", str(tmp_path)], capture_output=True, text=True, check=True)
        theirs = int(out.stdout.splitlines()[-1].strip().rstrip("%"))
        assert theirs - 1.5 < ours <= theirs + 0.5

    def test_disk_usage_leaves_out_the_blocks_reserved_for_root(self) -> None:
        # ext4's default 5 % reserve, 1,000,000 blocks: nothing left for the service user is 100 %
        # (used / total said 95 %); df's 97 % is 97 %; no blocks at all is 0.
        def statvfs(blocks: int, bfree: int, bavail: int) -> os.statvfs_result:
            return os.statvfs_result((4096, 4096, blocks, bfree, bavail, 1000, 500, 500, 0, 255))

        assert disk_percent(statvfs(1_000_000, 50_000, 0)) == 100.0
        assert disk_percent(statvfs(1_000_000, 78_500, 28_500)) == 97.0
        assert disk_percent(statvfs(1_000_000, 1_000_000, 950_000)) == 0.0
        assert disk_percent(statvfs(0, 0, 0)) == 0.0

    def test_the_disk_threshold_trips_on_dfs_use_percent(self, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
        # 95.5 % for df (the service user's writes nearly fail), 90.7 % of the raw blocks.
        full = os.statvfs_result((4096, 4096, 1_000_000, 92_750, 42_750, 1000, 500, 500, 0, 255))
        monkeypatch.setattr(os, "statvfs", lambda path: full)
        found = sample_system(str(tmp_path))
        assert found.disk_usage == pytest.approx(95.5)
        assert tripped(LoadSettings(disk_usage=95), found) == "disk_usage 95.5% >= 95%"

    def test_value_is_reused_within_the_interval(self) -> None:
        now = [100.0]
        reads: list[int] = []
        monitor = LoadMonitor(clock=lambda: now[0])

        def read() -> int:
            reads.append(1)
            return len(reads)

        assert monitor.cached("k", 5.0, read) == 1
        now[0] += 4.9
        assert monitor.cached("k", 5.0, read) == 1
        assert monitor.cached("other", 5.0, read) == 2
        now[0] += 0.2
        assert monitor.cached("k", 5.0, read) == 3


@pytest.fixture
def loaded(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[Any]:
    """``make(**load)``: the SOAP app in-process with ``[load]`` = ``load``, alice and bob
    delegated as ``unit``; sampling is never reused (``sample_interval`` tiny)."""
    made: list[SoapApp] = []

    def make(**load: Any) -> SoapApp:
        rt = build_runtime(tmp_path / f"state{len(made)}", pki, template_db)
        rt.settings = dataclasses.replace(rt.settings, load=LoadSettings(sample_interval=1e-9, **load))
        for user in ("alice", "bob"):
            delegate_in_process(rt, principal_of(pki, user), pki.users[user].proxy, "unit")
        app = SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
        made.append(app)
        return app

    yield make
    for app in made:
        close_runtime(app.rt)


def overloaded(reply: Any, method: str) -> str:
    """The Description of the ServerOverloadedFault ``reply`` must be (BaseFaultType filled)."""
    assert reply.status.startswith("500"), reply.body
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, "ServerOverloadedFault"), reply.body
    assert detail.findtext("methodName") == method
    assert detail.findtext("ErrorCode") == str(ServerOverloadedError.code)
    assert detail.findtext("Timestamp")
    description = detail.findtext("Description") or ""
    assert description.startswith("System load is too high: ")
    assert detail.findtext("FaultCause") == description
    return description


def job_id_of(reply: Any) -> str:
    assert reply.status.startswith("200"), reply.body
    return str(reply.element.find("jobIdStruct").findtext("id"))


class TestRefusals:
    def test_load_average_over_threshold_refuses_new_work_only(self, loaded: Any, alice: Principal) -> None:
        soap = loaded()
        job_id = job_id_of(soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="unit"))
        soap.rt.settings = dataclasses.replace(soap.rt.settings, load=LoadSettings(load1=0.0001,
                                                                                    sample_interval=1e-9))
        for operation in ("jobRegister", "jobSubmit", "jobListMatch"):
            description = overloaded(soap.call(WMPROXY, operation, alice, jdl=ECHO_JDL, delegationId="unit"),
                                     operation)
            assert description.startswith("System load is too high: load1 ")
            assert description.endswith(" >= 0.0001")
        # What is not new work keeps working: status, start (bug #40370), cancel, delegation.
        for operation in ("getJobStatus", "jobStart", "getOutputFileList"):
            assert "ServerOverloaded" not in soap.call(WMPROXY, operation, alice, jobId=job_id).body.decode()
        assert soap.call(WMPROXY, "getVersion", alice).status.startswith("200")
        assert soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="more").status.startswith("200")
        assert soap.call(WMPROXY, "jobCancel", alice, jobId=job_id).status.startswith("200")

    def test_queued_jobs_over_threshold(self, loaded: Any, alice: Principal) -> None:
        soap = loaded(queued_jobs=1)
        for _ in range(2):
            job_id_of(soap.call(WMPROXY, "jobSubmit", alice, jdl=ECHO_JDL, delegationId="unit"))
        description = overloaded(soap.call(WMPROXY, "jobSubmit", alice, jdl=ECHO_JDL, delegationId="unit"),
                                 "jobSubmit")
        assert description == "System load is too high: queued_jobs 2 > 1"

    def test_live_jobs_per_user(self, loaded: Any, alice: Principal, bob: Principal) -> None:
        soap = loaded(max_live_jobs=1)
        first = job_id_of(soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="unit"))
        description = overloaded(soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="unit"),
                                 "jobRegister")
        assert description == "System load is too high: max_live_jobs: 1 live jobs of this user, at most 1"
        job_id_of(soap.call(WMPROXY, "jobRegister", bob, jdl=ECHO_JDL, delegationId="unit"))  # per user
        assert soap.call(WMPROXY, "jobListMatch", alice, jdl=ECHO_JDL, delegationId="unit").status.startswith("200")
        assert soap.call(WMPROXY, "jobCancel", alice, jobId=first).status.startswith("200")
        job_id_of(soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="unit"))

    def test_jobs_per_submission(self, loaded: Any, alice: Principal) -> None:
        soap = loaded(max_jobs_per_submission=2)
        description = overloaded(
            soap.call(WMPROXY, "jobSubmit", alice, jdl=COLLECTION_OF_3, delegationId="unit"), "jobSubmit")
        assert description == "System load is too high: max_jobs_per_submission: 3 nodes, at most 2"
        with soap.rt.uow() as uow:
            assert list(uow.jobs.owned_by(alice.dn)) == []  # nothing half-written
        job_id_of(soap.call(WMPROXY, "jobRegister", alice, jdl=COLLECTION_OF_2, delegationId="unit"))
        job_id_of(soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="unit"))

    def test_the_nodes_are_counted_without_being_made(self, loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """The check ran the whole expansion (every value substituted, every node inheriting)
        to count the nodes, and registration did it again."""
        made: list[str] = []
        parse, inherit = parametric.parse_jdl, compound._inherit
        monkeypatch.setattr(parametric, "parse_jdl", lambda text: made.append("substituted") or parse(text))
        monkeypatch.setattr(compound, "_inherit",
                            lambda node, parent: made.append("inherited") or inherit(node, parent))
        settings = loaded(max_jobs_per_submission=2).rt.settings
        parametric_jdl = '[ JobType = "parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_"; Parameters = 3 ]'
        for jdl in (parametric_jdl, COLLECTION_OF_3):
            with pytest.raises(ServerOverloadedError, match="max_jobs_per_submission: 3 nodes, at most 2"):
                check_submission_size(settings, jdl)
        check_submission_size(settings, COLLECTION_OF_2)
        assert made == []

    def test_a_store_error_in_the_check_is_an_internal_error_fault(self, loaded: Any, alice: Principal,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
        """The live-job count fails (its table gone from this throwaway database, as a
        database restarting or locked past the busy timeout would fail it): the caller gets a
        GenericFault with an error id, the traceback goes to the log, and the access line is written."""
        soap = loaded(max_live_jobs=5)
        database = soap.rt.settings.database.url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(database)) as other:
            other.execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
        caplog.set_level(logging.INFO)
        reply = soap.call(WMPROXY, "jobSubmit", alice, jdl=ECHO_JDL, delegationId="unit")
        assert reply.status.startswith("500"), reply.body
        detail = reply.fault_detail
        assert etree.QName(detail) == etree.QName(WMPROXY, "GenericFault"), reply.body
        assert detail.findtext("methodName") == "jobSubmit"
        assert detail.findtext("ErrorCode") == "1201"
        description = detail.findtext("Description") or ""
        assert description.startswith("Internal server error (error id "), description
        assert "jobs" not in description  # nothing of the store's error on the wire
        error_id = description.split("error id ", 1)[1].split(")", 1)[0]
        (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR and error_id in r.getMessage()]
        assert logged.exc_info is not None and "no such table" in str(logged.exc_info[1])
        (line,) = [r.getMessage() for r in caplog.records if r.name == "wmproxy.access"]
        assert line.startswith(f'op=jobSubmit dn="{alice.dn}" job=- outcome=GenericFault '), line
        with closing(sqlite3.connect(database)) as other:
            other.execute("ALTER TABLE jobs_elsewhere RENAME TO jobs")
        job_id_of(soap.call(WMPROXY, "jobSubmit", alice, jdl=ECHO_JDL, delegationId="unit"))


#: The open-files limits systemd gives a unit without LimitNOFILE=: soft 1024, a higher hard one.
SYSTEMD_SOFT = 1024


def _served_process(tmp_path: Path, template_db: Path, pki: Pki, script: str, limits: tuple[int, int],
                    **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a Python process started with the open-files ``limits`` that first loads
    the packaged gunicorn configuration of a deployment in ``tmp_path`` and runs its start checks,
    as gunicorn's master does (the configuration with ``[load] free_fds = 1000`` as deploy/wmproxy.conf.example)."""
    from wmproxy.admin import initialise
    from wmproxy.config import load_settings

    conf = tmp_path / "wmproxy.conf"
    (tmp_path / "db").mkdir()
    shutil.copy(template_db, tmp_path / "db" / "wmproxy.db")
    conf.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db/wmproxy.db\n[security]\n"
                    f"store_key_file = {tmp_path}/keys/store.key\nca_dir = {pki.ca_dir}\n"
                    f"host_cert = {pki.host_cert}\nhost_key = {pki.host_key}\n[sandbox]\nroot = {tmp_path}/sandbox\n"
                    f"[execution]\nwork_dir = {tmp_path}/work\n[load]\nfree_fds = 1000\n")
    initialise(load_settings(conf, environ={}))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    environ.update(WMPROXY_CONFIG=str(conf), **env)
    return subprocess.run(
        [sys.executable, "-c", "import resource, wmproxy.gunicorn_conf as conf\nconf.start_checks()\n"
         + textwrap.dedent(script)],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits))


class TestOpenFilesLimit:
    """``free_fds`` counts a worker's headroom against its limit: gunicorn's processes raise the
    soft limit to the hard one, so systemd's default soft 1024 does not refuse every job."""

    def test_the_master_and_each_worker_raise_the_soft_limit_and_free_fds_no_longer_trips(
            self, tmp_path: Path, template_db: Path, pki: Pki) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < SYSTEMD_SOFT + 2000:
            pytest.skip(f"hard open-files limit {hard}: too low to tell the limits apart")
        done = _served_process(tmp_path, template_db, pki, f"""
            from wmproxy.config import LoadSettings
            from wmproxy.services.load import sample_system, tripped
            print("master", resource.getrlimit(resource.RLIMIT_NOFILE) == ({hard}, {hard}))
            print("tripped", tripped(LoadSettings(free_fds=1000), sample_system({str(tmp_path)!r})))
            resource.setrlimit(resource.RLIMIT_NOFILE, ({SYSTEMD_SOFT}, {hard}))
            conf.post_fork(None, None)  # a worker, should its limit be lower
            print("worker", resource.getrlimit(resource.RLIMIT_NOFILE) == ({hard}, {hard}))
            """, (SYSTEMD_SOFT, hard))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[-4:] == ["master True", "tripped None", "worker True", ""], done.stdout
        assert "free_fds" not in done.stderr

    def test_a_hard_limit_that_leaves_free_fds_tripping_is_named_at_start(self, tmp_path: Path,
                                                                       template_db: Path, pki: Pki) -> None:
        done = _served_process(tmp_path, template_db, pki, "print('started')", (512, 512))
        assert done.returncode == 0, done.stderr
        assert ("[load] free_fds = 1000 refuses every new job: this process may open only 512 files"
                in done.stderr and "LimitNOFILE=" in done.stderr)
