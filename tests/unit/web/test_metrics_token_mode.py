"""``[metrics] token_file`` must be the service user's alone, as the store key: a token others can
read is handed to every local process, grid jobs included (before, a 0644 file was accepted)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wmproxy.config import MetricsSettings, Settings
from wmproxy.monitoring.server import TokenFileModeError, read_token
from wmproxy.services.startup import EXIT_REFUSED, exit_status


def settings_with(token_file: Path) -> Settings:
    return dataclasses.replace(Settings(), metrics=MetricsSettings(token_file=str(token_file)))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_token_file_group_or_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "metrics.token"
    path.write_text("s3cret\n")
    path.chmod(mode)
    with pytest.raises(TokenFileModeError) as refused:
        read_token(settings_with(path))
    assert f"Fix: chmod 600 {path}" in str(refused.value) and f"mode {mode:04o}" in str(refused.value)
    assert "s3cret" not in str(refused.value)
    assert exit_status(refused.value) == EXIT_REFUSED


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_the_service_users_token_file_is_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "metrics.token"
    path.write_text("s3cret\n")
    path.chmod(mode)
    assert read_token(settings_with(path)) == "s3cret"
