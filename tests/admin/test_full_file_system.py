"""``init`` and ``migrate`` on a full or read-only file system end with one line (the reason and
the file or database), exit 1, no traceback. Root only: the file systems are tmpfs mounts."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.admin.support import settings_for, write_ini
from tests.conftest import Pki
from wmproxy.admin import cli, upgrade_database
from wmproxy.config import DatabaseSettings, Settings
from wmproxy.store.migrations import head_revision, schema_revisions

#: What the migrate test leaves free: room to open the database, not to migrate it.
LEAVE_KB = 64
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    path.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(path: Path, leave_kb: int = 0) -> None:
    """Write ``path`` until its file system is full, then give ``leave_kb`` back."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 512)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_kb * 1024))
    finally:
        os.close(fd)


def deployment(top: Path, pki: Pki) -> Settings:
    settings = settings_for(top / "state", f"sqlite:///{top}/db/wmproxy.db", pki)
    return Settings(**{**vars(settings), "database": DatabaseSettings(url=f"sqlite:///{top}/db/wmproxy.db")})


def admin(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args], env={"WMPROXY_CONFIG": None})


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an exception the command let out
    (line,) = result.output.splitlines()
    assert "Traceback" not in result.output
    return line


@needs_root
def test_init_on_a_full_file_system_says_so_in_one_line(tmp_path: Path, pki: Pki) -> None:
    with tmpfs(tmp_path / "full", 64) as top:
        settings = deployment(top, pki)
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        line = one_line(admin(config, "init"))
        assert line.startswith("Error: init failed: database or disk is full: the database "), line
        assert f"({top}/db/wmproxy.db)" in line, line


@needs_root
def test_init_on_a_read_only_file_system_names_the_path(tmp_path: Path, pki: Pki) -> None:
    with tmpfs(tmp_path / "ro", 256) as top:
        subprocess.run(["mount", "-o", "remount,ro", str(top)], check=True)
        config = write_ini(deployment(top, pki), tmp_path / "wmproxy.conf")
        line = one_line(admin(config, "init"))
        assert line == f"Error: init failed: Read-only file system: {top}/state/sandbox", line


@needs_root
def test_migrate_on_a_full_file_system_says_so_in_one_line(tmp_path: Path, pki: Pki) -> None:
    with tmpfs(tmp_path / "full", 2048) as top:
        settings = deployment(top, pki)
        (top / "db").mkdir()
        upgrade_database(settings, "0010")
        (top / "db" / "wmproxy.db").chmod(0o600)
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        fill(top / "filler", LEAVE_KB)
        line = one_line(admin(config, "migrate"))
        assert line.startswith("Error: migrate failed: "), line
        assert "full" in line and str(top) in line, line
        assert schema_revisions(settings.database.url) == ("0010", head_revision())  # one transaction: undone
