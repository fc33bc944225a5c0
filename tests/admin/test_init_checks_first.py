"""``init`` checks every path before it creates or changes any: run as root without ``--user``
on a deployment made with ``init --user``, it refuses with nothing created (a new sandbox root
included) and names ``--user <owner>``, the likely fix, before the text about a replaced path."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.admin.support import SERVICE_USER, write_ini
from wmproxy.admin import cli
from wmproxy.config import SandboxSettings, Settings

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a deployment of another user needs root")


@needs_root
@pytest.mark.sqlite_only  # the refused path is the database's directory
def test_init_without_user_on_a_live_deployment_creates_nothing_and_names_the_user(
        service_settings: Settings) -> None:
    top = Path(service_settings.sandbox.root).parent
    moved = top / "sandbox-new"
    settings = dataclasses.replace(service_settings, sandbox=SandboxSettings(root=str(moved)))
    config = write_ini(settings, top.parent / "wmproxy.conf")
    result = CliRunner().invoke(cli, ["-c", str(config), "init"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert not moved.exists()  # before: made (root's), then the work root refused
    db_dir = Path(service_settings.database.url.removeprefix("sqlite:///")).parent  # the service user's, in root's
    assert result.output.startswith(
        f"Error: {db_dir} belongs to {SERVICE_USER}: if {SERVICE_USER} is the service user, run "
        f"`wmproxy-admin init --user {SERVICE_USER}` (nothing was changed)"), result.output
    assert "Traceback" not in result.output
    done = CliRunner().invoke(cli, ["-c", str(config), "init", "--user", SERVICE_USER], env={"WMPROXY_CONFIG": None})
    assert done.exit_code == 0, done.output
    assert moved.stat().st_uid == db_dir.stat().st_uid
