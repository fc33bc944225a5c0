"""``wmproxy-admin init`` sets the modes of the private state; every other process refuses
to start on a store key or SQLite file that group/others can read."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.accounts import AccountSet, local_accounts
from tests.conftest import IN_CI
from wmproxy.admin import cli, initialise
from wmproxy.config import (
    ConfigError,
    DatabaseSettings,
    ExecutionSettings,
    MappingSettings,
    SandboxSettings,
    SecuritySettings,
    Settings,
)
from wmproxy.security.filemodes import FileModeError

BIN = Path(sys.executable).parent
#: A mode init would never set, on a directory that exists before init.
EXISTING_DIR_MODE = 0o751


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def settings_under(root: Path, mapping: str = "gridmap") -> Settings:
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{root}/db/wmproxy.db"),
        security=SecuritySettings(store_key_file=str(root / "keys" / "store.key")),
        sandbox=SandboxSettings(root=str(root / "sandbox")),
        execution=ExecutionSettings(work_dir=str(root / "work")),
        mapping=MappingSettings(mode=mapping),
    )


def write_config(root: Path) -> Path:
    config = root / "wmproxy.conf"
    config.write_text(
        f"[database]\nurl = sqlite:///{root}/db/wmproxy.db\n[security]\nstore_key_file = {root}/keys/store.key\n"
        f"[sandbox]\nroot = {root}/sandbox\n[execution]\nwork_dir = {root}/work\n[mapping]\nmode = gridmap\n"
    )
    return config


@pytest.fixture
def service_user() -> Iterator[AccountSet]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root: the --user tests need it")
        pytest.skip("needs root to create a service account")
    with local_accounts({"svc": ["svc"]}) as accounts:
        yield accounts


class TestInitialise:
    def test_sets_the_modes_of_the_private_state(self, tmp_path: Path) -> None:
        old = os.umask(0o022)
        try:
            initialise(settings_under(tmp_path))
        finally:
            os.umask(old)
        assert mode(tmp_path / "keys" / "store.key") == 0o600
        assert mode(tmp_path / "db" / "wmproxy.db") == 0o600
        assert mode(tmp_path / "sandbox") == 0o700
        assert mode(tmp_path / "work") == 0o711
        assert mode(tmp_path / "keys") == 0o711 and mode(tmp_path / "db") == 0o711
        for companion in ("-wal", "-shm", "-journal"):
            path = tmp_path / "db" / f"wmproxy.db{companion}"
            assert not path.exists() or mode(path) == 0o600

    def test_repairs_modes_that_were_opened_and_keeps_the_key(self, tmp_path: Path) -> None:
        settings = settings_under(tmp_path)
        initialise(settings)
        key = tmp_path / "keys" / "store.key"
        before = key.read_bytes()
        for path, loose in ((key, 0o644), (tmp_path / "db" / "wmproxy.db", 0o664), (tmp_path / "sandbox", 0o755),
                            (tmp_path / "work", 0o777)):
            os.chmod(path, loose)
        initialise(settings)
        assert key.read_bytes() == before
        assert mode(key) == 0o600 and mode(tmp_path / "db" / "wmproxy.db") == 0o600
        assert mode(tmp_path / "sandbox") == 0o700 and mode(tmp_path / "work") == 0o711

    def test_existing_parent_directories_are_left_alone(self, tmp_path: Path) -> None:
        os.chmod(tmp_path, EXISTING_DIR_MODE)
        initialise(settings_under(tmp_path))
        assert mode(tmp_path) == EXISTING_DIR_MODE

    def test_user_owns_the_state(self, tmp_path: Path, service_user: AccountSet) -> None:
        entry = service_user.passwd("svc")
        initialise(settings_under(tmp_path), user=entry.pw_name)
        for path in (tmp_path / "keys" / "store.key", tmp_path / "db" / "wmproxy.db", tmp_path / "sandbox",
                     tmp_path / "work", tmp_path / "keys", tmp_path / "db"):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (entry.pw_uid, entry.pw_gid), path
        assert tmp_path.stat().st_uid == 0  # existed before: not handed over

    def test_unknown_user_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            initialise(settings_under(tmp_path), user="no-such-wmproxy-user")
        assert not (tmp_path / "keys").exists()


class TestAdminCommand:
    def test_init_then_migrate(self, tmp_path: Path) -> None:
        config = write_config(tmp_path)
        runner = CliRunner()
        result = runner.invoke(cli, ["-c", str(config), "init"])
        assert result.exit_code == 0, result.output
        assert mode(tmp_path / "keys" / "store.key") == 0o600
        result = runner.invoke(cli, ["-c", str(config), "migrate"])
        assert result.exit_code == 0, result.output

    def test_init_user_as_command_line_option(self, tmp_path: Path, service_user: AccountSet) -> None:
        config = write_config(tmp_path)
        entry = service_user.passwd("svc")
        result = CliRunner().invoke(cli, ["-c", str(config), "init", "--user", entry.pw_name])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "keys" / "store.key").stat().st_uid == entry.pw_uid
        assert "warning" not in result.output

    @pytest.mark.skipif(os.geteuid() != 0, reason="root's init without --user")
    def test_init_as_root_without_user_warns_that_root_owns_the_state(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(cli, ["-c", str(write_config(tmp_path)), "init"])
        assert result.exit_code == 0, result.output
        assert "warning: the state belongs to root (no --user)" in result.output
        assert "wmproxy-admin init --user <service user>" in result.output

    def test_other_commands_refuse_a_readable_store_key(self, tmp_path: Path) -> None:
        config = write_config(tmp_path)
        runner = CliRunner()
        assert runner.invoke(cli, ["-c", str(config), "init"]).exit_code == 0
        key = tmp_path / "keys" / "store.key"
        os.chmod(key, 0o644)
        result = runner.invoke(cli, ["-c", str(config), "migrate"])
        assert result.exit_code == 1
        assert f"chmod 600 {key}" in result.output and "wmproxy-admin init" in result.output
        assert "Traceback" not in result.output
        assert runner.invoke(cli, ["-c", str(config), "init"]).exit_code == 0  # init is the fix
        assert runner.invoke(cli, ["-c", str(config), "migrate"]).exit_code == 0

    def test_migrate_without_a_configuration_creates_no_database(self, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """No -c, no WMPROXY_CONFIG, in an empty directory: the default ``sqlite:///wmproxy.db`` is
        no wmproxy database, and ``migrate`` says so (status 3) instead of creating one there."""
        for name in [n for n in os.environ if n.startswith("WMPROXY_")]:
            monkeypatch.delenv(name)
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(cli, ["migrate"])
        assert result.exit_code == 3, result.output
        assert f"no wmproxy database at sqlite:///wmproxy.db ({tmp_path / 'wmproxy.db'})" in result.stderr
        assert "`wmproxy-admin init` creates one" in result.stderr
        assert "no configuration file was read" in result.stderr and "Traceback" not in result.output
        assert os.listdir(tmp_path) == []


def test_a_commands_help_needs_neither_the_configuration_nor_the_store(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    runner = CliRunner()
    for args in (["jobs", "--help"], ["jobs", "list", "--help"], ["purge", "--help"], ["migrate", "--help"]):
        result = runner.invoke(cli, ["-c", missing, *args])
        assert (result.exit_code, result.output.split(" ", 1)[0]) == (0, "Usage:"), args
    # not a help: "--help" as an option's value, or after "--"; the configuration is read then
    for args in (["jobs", "list"], ["jobs", "list", "--owner", "--help"], ["jobs", "show", "--", "--help"]):
        result = runner.invoke(cli, ["-c", missing, *args])
        assert result.exit_code == 1 and "configuration file not found" in result.output, args
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert os.listdir(tmp_path) == []  # no database made

class TestProcessesRefuseToStart:
    """The real entry points, as separate processes, on a store key left 0644."""

    @pytest.fixture
    def loose(self, tmp_path: Path) -> Path:
        config = write_config(tmp_path)
        initialise(settings_under(tmp_path))
        os.chmod(tmp_path / "db" / "wmproxy.db", 0o644)
        return config

    def run(self, config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
        env["WMPROXY_CONFIG"] = str(config)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False,
                              cwd=config.parent)

    def test_renewal_worker(self, loose: Path) -> None:
        done = self.run(loose, str(BIN / "wmproxy-renewal"), "--once")
        assert done.returncode != 0
        assert f"chmod 600 {loose.parent}/db/wmproxy.db" in done.stderr and "Traceback" not in done.stderr

    def test_execution_worker(self, loose: Path) -> None:
        """Needs the lead's wiring of check_private_files into wmproxy/execution/__main__.py, first
        thing after load_settings (before the privilege checks)."""
        done = self.run(loose, str(BIN / "wmproxy-worker"), "--name", "modes")
        assert done.returncode != 0
        assert f"chmod 600 {loose.parent}/db/wmproxy.db" in done.stderr and "Traceback" not in done.stderr

    def test_gunicorn(self, loose: Path) -> None:
        repo = Path(__file__).resolve().parents[3]
        done = self.run(loose, str(BIN / "gunicorn"), "-c", str(repo / "deploy" / "gunicorn.conf.py"),
                        "--bind", "127.0.0.1:0", "wmproxy.soap.app:application")
        assert done.returncode != 0
        assert "refusing to start" in done.stderr and f"chmod 600 {loose.parent}/db/wmproxy.db" in done.stderr

    def test_create_app(self, tmp_path: Path, loose: Path) -> None:
        from wmproxy.soap.app import create_app

        with pytest.raises(FileModeError):
            create_app(settings_under(tmp_path))


class TestUnmappedWarning:
    def test_app_start_warns_with_mapping_none(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        from wmproxy.soap.app import _warned, check_start

        settings = settings_under(tmp_path, mapping="none")
        initialise(settings)
        _warned.clear()
        with caplog.at_level(logging.WARNING, logger="wmproxy.soap.app"):
            check_start(settings)
        assert any("mode = none" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    def test_no_warning_when_mapped(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        from wmproxy.soap.app import _warned, check_start

        settings = settings_under(tmp_path)
        initialise(settings)
        _warned.clear()
        with caplog.at_level(logging.WARNING, logger="wmproxy.soap.app"):
            check_start(settings)
        assert not caplog.records
