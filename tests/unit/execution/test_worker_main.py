"""``wmproxy-worker``: the capability check for mapped jobs, and how a wrapper's status
becomes the job's outcome."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_peer
from wmproxy.domain import JobState
from wmproxy.execution.__main__ import REQUIRED_CAPABILITIES, missing_capabilities
from wmproxy.execution.backends import JobOutcome, out_of_memory, outcome_of
from wmproxy.execution.identity import PhaseOutcome, WrapperStatus

BIN = Path(sys.executable).parent
NOW = dt.datetime(2026, 12, 2, 7, 0, tzinfo=dt.UTC)


class TestCapabilities:
    def test_the_five_documented_capabilities_are_exactly_what_is_checked(self) -> None:
        assert missing_capabilities("Name:\tx\nCapEff:\t00000000000000e3\n") == []
        assert missing_capabilities("CapEff:\t000001ffffffffff\n") == []
        assert missing_capabilities("CapEff:\t0000000000000000\n") == list(REQUIRED_CAPABILITIES.values())
        assert missing_capabilities("CapEff:\t00000000000000e1\n") == ["CAP_DAC_OVERRIDE"]
        assert missing_capabilities("no such line") == list(REQUIRED_CAPABILITIES.values())

    def test_a_mapping_worker_without_a_capability_refuses_to_start(self, tmp_path: Path) -> None:
        if shutil.which("setpriv") is None:
            need_peer("setpriv (util-linux) runs the worker without CAP_CHOWN")
        (tmp_path / "grid-mapfile").write_text("")
        config = tmp_path / "wmproxy.conf"
        config.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db.sqlite\n[execution]\nwork_dir = {tmp_path}/work\n"
                          f"[mapping]\nmode = gridmap\ngridmap_file = {tmp_path}/grid-mapfile\n")
        done = subprocess.run(
            ["setpriv", "--inh-caps=-all", "--bounding-set=-chown", str(BIN / "wmproxy-worker"), "-c", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 3, done.stderr
        assert "lacks CAP_CHOWN" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "work").exists()


def _worker(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "wmproxy-worker"), "-c", str(config)], capture_output=True, text=True,
                          timeout=120, check=False)


class TestStartupRefusals:
    def test_a_root_worker_without_mapping_refuses_to_start(self, tmp_path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("only a root worker is refused")
        config = tmp_path / "wmproxy.conf"
        config.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db.sqlite\n[execution]\nwork_dir = {tmp_path}/w\n")
        done = _worker(config)
        assert done.returncode == 3 and "runs as root" in done.stderr, done.stderr

    def test_a_work_root_open_to_others_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "grid-mapfile").write_text("")
        (tmp_path / "work").mkdir()
        (tmp_path / "work").chmod(0o777)
        config = tmp_path / "wmproxy.conf"
        config.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db.sqlite\n[execution]\nwork_dir = {tmp_path}/work\n"
                          f"[mapping]\nmode = gridmap\ngridmap_file = {tmp_path}/grid-mapfile\n")
        if missing_capabilities():
            pytest.skip("the privilege check comes first")
        done = _worker(config)
        assert done.returncode == 3 and "unusable work root" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def _status(**changes: object) -> WrapperStatus:
    fields: dict[str, object] = {
        "job_id": "j", "wrapper_pid": 1, "hostname": "h", "started_at": NOW, "ended_at": NOW,
        "payload_started": True, "payload_started_at": NOW, "exit_code": 0, "signal": None, "cancelled_by": None,
        "prologue": None, "epilogue": None, "failure": None, "notes": (),
    }
    fields.update(changes)
    return WrapperStatus(**fields)  # type: ignore[arg-type]


class TestOutcome:
    @pytest.mark.parametrize(("status", "started", "expected"), [
        (_status(exit_code=3), True, JobOutcome(JobState.DONE, 3, None, True)),
        (_status(exit_code=None, signal=9), True, JobOutcome(JobState.DONE, 137, None, True)),
        (_status(epilogue=PhaseOutcome(None, 15, None)), True,
         JobOutcome(JobState.ABORTED, 0, "epilogue killed by signal 15", True)),
        (_status(epilogue=PhaseOutcome(None, None, "Job Wrapper error: no epilogue")), True,
         JobOutcome(JobState.ABORTED, 0, "epilogue failed: Job Wrapper error: no epilogue", True)),
        (_status(exit_code=3, epilogue=PhaseOutcome(0, None, None)), True, JobOutcome(JobState.DONE, 3, None, True)),
        (_status(payload_started=False, exit_code=None, failure="Job Wrapper error: prologue failed"), False,
         JobOutcome(JobState.ABORTED, None, "Job Wrapper error: prologue failed", False)),
        (_status(cancelled_by=15, exit_code=None, signal=15), True, JobOutcome(JobState.CANCELLED, 143, None, True)),
    ])
    def test_a_recorded_status(self, status: WrapperStatus, started: bool, expected: JobOutcome) -> None:
        assert outcome_of(status, started) == expected

    def test_no_status_is_a_deep_or_shallow_failure(self) -> None:
        deep, shallow = outcome_of(None, True), outcome_of(None, False)
        assert (deep.state, deep.payload_started, deep.recorded) == (JobState.ABORTED, True, False)
        assert deep.reason is not None and "deep failure" in deep.reason
        assert (shallow.state, shallow.payload_started, shallow.recorded) == (JobState.ABORTED, False, False)
        assert shallow.reason is not None and "shallow failure" in shallow.reason


#: What :meth:`JobCgroups.oom_killed <wmproxy.execution.cgroups.JobCgroups.oom_killed>` says.
OOM = "the job exceeded its memory limit of 64 MiB: the kernel killed one of its processes (out of memory)"


class TestOutOfMemory:
    """A job some of whose processes the kernel's OOM killer killed (its cgroup's ``memory.events``)
    is a failure that says so, not a mystery exit code 137."""

    @pytest.mark.parametrize(("status", "started", "expected"), [
        (_status(exit_code=None, signal=9), True, JobOutcome(JobState.ABORTED, 137, f"{OOM} (deep failure)", True)),
        (_status(exit_code=137), True, JobOutcome(JobState.ABORTED, 137, f"{OOM} (deep failure)", True)),
        (None, True, JobOutcome(JobState.ABORTED, None, f"{OOM} (deep failure)", True, recorded=False)),
        (None, False, JobOutcome(JobState.ABORTED, None, f"{OOM} (shallow failure)", False, recorded=False)),
        (_status(payload_started=False, exit_code=None, failure="Job Wrapper error: prologue failed"), False,
         JobOutcome(JobState.ABORTED, None, f"{OOM} (shallow failure); Job Wrapper error: prologue failed", False)),
        (_status(epilogue=PhaseOutcome(None, 9, None)), True,
         JobOutcome(JobState.ABORTED, 0, f"{OOM} (deep failure); epilogue killed by signal 9", True)),
        (_status(exit_code=0), True, JobOutcome(JobState.DONE, 0, OOM, True)),
        (_status(cancelled_by=15, exit_code=None, signal=9), True, JobOutcome(JobState.CANCELLED, 137, None, True)),
    ], ids=["payload-killed", "payload-exit-137", "no-status", "no-status-not-started", "prologue", "epilogue",
            "payload-exit-0", "cancelled"])
    def test_the_outcome_says_the_job_ran_out_of_memory(
        self, status: WrapperStatus | None, started: bool, expected: JobOutcome
    ) -> None:
        assert out_of_memory(outcome_of(status, started), status, OOM) == expected
