"""The start check on the service's private files (store key, SQLite database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wmproxy.config import ConfigError, DatabaseSettings, SecuritySettings, Settings
from wmproxy.security.filemodes import FileModeError, check_private_files, sqlite_path, unmapped_exposure


def settings_for(tmp_path: Path, db_url: str | None = None) -> Settings:
    return Settings(
        database=DatabaseSettings(url=db_url or f"sqlite:///{tmp_path}/wmproxy.db"),
        security=SecuritySettings(store_key_file=str(tmp_path / "store.key")),
    )


def make(path: Path, mode: int) -> Path:
    path.write_bytes(b"x")
    os.chmod(path, mode)
    return path


class TestCheckPrivateFiles:
    def test_private_files_pass(self, tmp_path: Path) -> None:
        make(tmp_path / "store.key", 0o600)
        make(tmp_path / "wmproxy.db", 0o600)
        check_private_files(settings_for(tmp_path))

    def test_stricter_modes_pass(self, tmp_path: Path) -> None:
        make(tmp_path / "store.key", 0o400)
        make(tmp_path / "wmproxy.db", 0o600)
        check_private_files(settings_for(tmp_path))

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
    def test_store_key_open_to_group_or_others_is_refused_with_file_and_fix(self, tmp_path: Path, mode: int) -> None:
        key = make(tmp_path / "store.key", mode)
        make(tmp_path / "wmproxy.db", 0o600)
        with pytest.raises(FileModeError) as err:
            check_private_files(settings_for(tmp_path))
        assert err.value.path == key and err.value.mode == mode
        message = str(err.value)
        assert str(key) in message
        assert f"chmod 600 {key}" in message and "wmproxy-admin init" in message
        assert isinstance(err.value, ConfigError)

    def test_sqlite_file_readable_by_others_is_refused(self, tmp_path: Path) -> None:
        make(tmp_path / "store.key", 0o600)
        db = make(tmp_path / "wmproxy.db", 0o644)
        with pytest.raises(FileModeError, match=f"chmod 600 {db}"):
            check_private_files(settings_for(tmp_path))

    @pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
    def test_sqlite_companions_are_checked_when_present(self, tmp_path: Path, suffix: str) -> None:
        make(tmp_path / "store.key", 0o600)
        make(tmp_path / "wmproxy.db", 0o600)
        companion = make(tmp_path / f"wmproxy.db{suffix}", 0o644)
        with pytest.raises(FileModeError) as err:
            check_private_files(settings_for(tmp_path))
        assert err.value.path == companion

    def test_missing_files_are_left_to_the_process(self, tmp_path: Path) -> None:
        check_private_files(settings_for(tmp_path))

    def test_postgresql_has_no_database_file_to_check(self, tmp_path: Path) -> None:
        make(tmp_path / "store.key", 0o600)
        make(tmp_path / "wmproxy.db", 0o666)  # not the configured database
        check_private_files(settings_for(tmp_path, "postgresql+psycopg://postgres@127.0.0.1/wmproxy"))

    def test_symlinked_key_is_judged_by_its_target(self, tmp_path: Path) -> None:
        target = make(tmp_path / "real.key", 0o644)
        (tmp_path / "store.key").symlink_to(target)
        with pytest.raises(FileModeError):
            check_private_files(settings_for(tmp_path))


class TestSqlitePath:
    @pytest.mark.parametrize(
        ("url", "path"),
        [
            ("sqlite:////var/lib/wmproxy/wmproxy.db", "/var/lib/wmproxy/wmproxy.db"),
            ("sqlite:///wmproxy.db", "wmproxy.db"),
            ("sqlite+pysqlite:////srv/w.db?timeout=5", "/srv/w.db"),
        ],
    )
    def test_file_urls(self, url: str, path: str) -> None:
        assert sqlite_path(url) == Path(path)

    @pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "postgresql+psycopg://u@h/db", "nonsense"])
    def test_no_file(self, url: str) -> None:
        assert sqlite_path(url) is None


class TestUnmappedExposure:
    def test_mapping_none_names_what_jobs_can_reach(self, tmp_path: Path) -> None:
        text = unmapped_exposure(settings_for(tmp_path))
        assert text is not None
        assert "mode = none" in text and str(tmp_path / "store.key") in text and "gridmap" in text

    def test_mapping_on_has_no_warning(self, tmp_path: Path) -> None:
        from dataclasses import replace

        from wmproxy.config import MappingSettings

        settings = replace(settings_for(tmp_path), mapping=MappingSettings(mode="gridmap"))
        assert unmapped_exposure(settings) is None
