"""The host key is a private file: group or other access to it refuses every start and fails
the ``host key`` check (whoever reads it can pose as the service)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.config import DatabaseSettings, SecuritySettings, Settings
from wmproxy.monitoring.health import host_key_check, host_pair_problem
from wmproxy.security.filemodes import FileModeError, check_private_files


def host_pair(tmp_path: Path, pki: Pki, mode: int) -> tuple[Path, Path]:
    cert, key = tmp_path / "hostcert.pem", tmp_path / "hostkey.pem"
    shutil.copyfile(pki.host_cert, cert)
    shutil.copyfile(pki.host_key, key)
    os.chmod(key, mode)
    return cert, key


def settings_for(tmp_path: Path, cert: Path, key: Path) -> Settings:
    return Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path}/wmproxy.db"),
                    security=SecuritySettings(store_key_file=str(tmp_path / "store.key"), host_cert=str(cert),
                                              host_key=str(key)))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o440])
def test_a_host_key_open_to_group_or_others_refuses_the_start(tmp_path: Path, pki: Pki, mode: int) -> None:
    cert, key = host_pair(tmp_path, pki, mode)
    with pytest.raises(FileModeError) as err:
        check_private_files(settings_for(tmp_path, cert, key))
    assert err.value.path == key and err.value.mode == mode
    assert f"chmod 400 {key}" in str(err.value) and "wmproxy-admin init" not in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_host_key_passes(tmp_path: Path, pki: Pki, mode: int) -> None:
    cert, key = host_pair(tmp_path, pki, mode)
    check_private_files(settings_for(tmp_path, cert, key))
    assert host_pair_problem(cert, key) is None


def test_the_host_key_check_fails_on_a_key_others_can_read(tmp_path: Path, pki: Pki) -> None:
    cert, key = host_pair(tmp_path, pki, 0o644)
    problem = host_pair_problem(cert, key)
    assert problem is not None and f"the host key {key} is accessible to group/others (mode 0644)" in problem
    assert f"chmod 400 {key}" in problem
    found = host_key_check(cert, key)
    assert not found.ok and f"chmod 400 {key}" in found.detail
