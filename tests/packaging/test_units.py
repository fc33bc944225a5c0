"""The systemd units in deploy/: valid for systemd, hardened, programs from the installed package."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import need_peer
from tests.integration.service import BIN, REPO

DEPLOY = REPO / "deploy"
UNITS = ("wmproxy.service", "wmproxy-worker.service", "wmproxy-renewal.service", "wmproxy-metrics.service")
#: Where the units expect the virtualenv (WMPROXY_VENV; deploy/install-units.sh writes another).
DEFAULT_VENV = "/usr/lib/wmproxy/venv"
#: What the execution worker needs to switch identity (wmproxy.execution.identity), and nothing else.
WORKER_CAPS = {"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE"}


def directives(unit: Path) -> dict[str, list[str]]:
    """``{"Section.Key": [values...]}`` of a unit file (comments and blank lines skipped)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def one(unit: str, key: str) -> str:
    (value,) = directives(DEPLOY / unit)[f"Service.{key}"]
    return value


def install_units(venv: Path | str, unit_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DEPLOY / "install-units.sh"), str(venv), str(unit_dir)], capture_output=True,
                          text=True, timeout=60, check=False)


class TestHardening:
    def test_the_service_is_confined_without_privilege(self) -> None:
        assert one("wmproxy.service", "ProtectSystem") == "strict"
        assert one("wmproxy.service", "ReadWritePaths") == "/var/lib/wmproxy"
        for key in ("PrivateTmp", "NoNewPrivileges", "ProtectHome", "PrivateDevices", "RestrictSUIDSGID"):
            assert one("wmproxy.service", key) == "yes", key
        assert one("wmproxy.service", "CapabilityBoundingSet") == ""
        assert one("wmproxy.service", "AmbientCapabilities") == ""
        assert one("wmproxy.service", "User") == "wmproxy"

    def test_the_worker_has_only_the_capabilities_it_switches_identity_with(self) -> None:
        assert set(one("wmproxy-worker.service", "CapabilityBoundingSet").split()) == WORKER_CAPS
        assert set(one("wmproxy-worker.service", "AmbientCapabilities").split()) == WORKER_CAPS
        assert one("wmproxy-worker.service", "NoNewPrivileges") == "yes"
        assert one("wmproxy-worker.service", "KillMode") == "process"

    def test_the_renewal_worker_has_fewer_capabilities_than_the_worker(self) -> None:
        caps = set(one("wmproxy-renewal.service", "CapabilityBoundingSet").split())
        assert caps < WORKER_CAPS
        assert one("wmproxy-renewal.service", "ProtectSystem") == "strict"

    def test_the_metrics_listener_has_no_capability(self) -> None:
        assert one("wmproxy-metrics.service", "CapabilityBoundingSet") == ""
        assert one("wmproxy-metrics.service", "AmbientCapabilities") == ""
        assert one("wmproxy-metrics.service", "ProtectSystem") == "strict"
        assert one("wmproxy-metrics.service", "NoNewPrivileges") == "yes"

    @pytest.mark.parametrize("unit", UNITS)
    def test_a_process_that_refused_to_start_is_not_restarted(self, unit: str) -> None:
        """Exit status 2 (configuration) and 3 (refused), as every process exits on them
        (wmproxy.services.startup); a restart would repeat the refusal, once a second."""
        from wmproxy.services.startup import EXIT_CONFIG, EXIT_REFUSED

        assert one(unit, "Restart") == "on-failure"
        assert one(unit, "RestartPreventExitStatus").split() == [str(EXIT_CONFIG), str(EXIT_REFUSED)]

    @pytest.mark.parametrize("unit", UNITS)
    def test_a_failure_is_restarted_for_as_long_as_it_lasts(self, unit: str) -> None:
        """systemd's defaults (RestartSec 100 ms, 5 starts within StartLimitIntervalSec 10 s): a
        process exiting 1 at once while PostgreSQL refused hit the start limit and stayed down. A
        restart every RestartSec never makes StartLimitBurst starts within StartLimitIntervalSec."""
        found = directives(DEPLOY / unit)
        restart_sec = float(one(unit, "RestartSec").removesuffix("s"))
        interval = float(found.get("Unit.StartLimitIntervalSec", ["10s"])[-1].removesuffix("s"))
        burst = int(found.get("Unit.StartLimitBurst", ["5"])[-1])
        assert interval == 0 or restart_sec * (burst - 1) > interval, (restart_sec, interval, burst)

    @pytest.mark.parametrize("unit", UNITS)
    def test_it_starts_once_the_network_is_up(self, unit: str) -> None:
        """The database may be on another host: a start before the network is configured failed."""
        found = directives(DEPLOY / unit)
        assert "network-online.target" in " ".join(found["Unit.After"]).split()
        assert "network-online.target" in " ".join(found["Unit.Wants"]).split()

    def test_the_workers_tasks_hold_every_local_job_of_the_shipped_configuration(self) -> None:
        """The unit's TasksMax is above max_running x max_job_processes of the shipped example
        configuration plus room for the worker and its zygotes (docs/execution.md, "Limits of a
        local job"): one job's fork loop must not take the tasks the worker needs to fork. The
        unit said 20,000 while the example runs 8 jobs of 4,096 processes each."""
        import configparser

        from wmproxy.config import ExecutionSettings

        example = configparser.ConfigParser(interpolation=None)
        example.read(DEPLOY / "wmproxy.conf.example")
        running = example.getint("execution", "max_running", fallback=ExecutionSettings().max_running)
        per_job = example.getint("execution", "max_job_processes", fallback=ExecutionSettings().max_job_processes)
        assert int(one("wmproxy-worker.service", "TasksMax")) >= running * per_job + 500


class TestPrograms:
    @pytest.mark.parametrize("unit", UNITS)
    def test_programs_are_the_packages_entry_points(self, unit: str) -> None:
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        found = directives(DEPLOY / unit)
        commands = [v for k, values in found.items() if k.startswith("Service.Exec") for v in values]
        programs = [c.split()[0].lstrip("+-!@:") for c in commands if "wmproxy" in c.split()[0]]
        assert programs
        for program in programs:
            assert program.startswith(f"{DEFAULT_VENV}/bin/") and Path(program).name in scripts, program
        text = (DEPLOY / unit).read_text()
        assert not [bad for bad in ("/opt/wmproxy", ".venv", "gunicorn.conf", "deploy/") if bad in
                    "\n".join(commands)], commands
        assert "wmproxy-admin init" not in "\n".join(commands) and "migrate" not in "\n".join(commands), text

    def test_install_units_writes_the_venv_path(self, tmp_path: Path) -> None:
        done = install_units(BIN.parent, tmp_path)
        assert done.returncode == 0, done.stderr
        for unit in UNITS:
            (command,) = directives(tmp_path / unit)["Service.ExecStart"]
            assert command.startswith(f"{BIN}/wmproxy-"), command

    def test_install_units_takes_a_venv_with_a_trailing_slash(self, tmp_path: Path) -> None:
        done = install_units(f"{BIN.parent}/", tmp_path)  # a str: a Path drops the slash
        assert done.returncode == 0, done.stderr
        (command,) = directives(tmp_path / "wmproxy.service")["Service.ExecStart"]
        assert command.startswith(f"{BIN}/wmproxy-server"), command

    @pytest.mark.parametrize("name", ["a b", "a|b", "a&b", "a'b"])
    def test_install_units_refuses_a_venv_path_it_cannot_write_into_a_unit(self, tmp_path: Path, name: str) -> None:
        """The path goes into ExecStart= through sed: a space would split the command, a | end
        sed's expression, a & stand for the matched text."""
        done = install_units(tmp_path / name, tmp_path / "units")
        assert done.returncode == 2 and "may hold only letters, digits" in done.stderr, done.stderr
        assert not (tmp_path / "units").exists()

    def test_install_units_refuses_a_venv_without_the_server(self, tmp_path: Path) -> None:
        done = install_units(tmp_path / "no-venv", tmp_path / "units")
        assert done.returncode == 1 and "pip install 'wmproxy[server]'" in done.stderr
        assert not (tmp_path / "units").exists()


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` of the units as installed for this checkout's virtualenv: no
    warning at all (an unknown or misspelt directive is only a warning to systemd)."""
    if shutil.which("systemd-analyze") is None:
        need_peer("systemd-analyze (Debian package systemd) verifies the units")
    done = install_units(BIN.parent, tmp_path)
    assert done.returncode == 0, done.stderr
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *(f"./{unit}" for unit in UNITS)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
