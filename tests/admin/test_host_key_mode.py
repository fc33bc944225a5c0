"""``wmproxy-admin`` on a host key that group or others can read: ``check`` reports it (not
"ok") with the ``chmod 400`` fix, and the commands that check the private files refuse to run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from tests.admin.support import write_ini
from wmproxy.admin import cli, initialise
from wmproxy.config import Settings


def test_a_host_key_others_can_read_is_a_problem_and_refuses_commands(settings: Settings, tmp_path: Path) -> None:
    key = tmp_path / "hostkey.pem"
    shutil.copyfile(settings.security.host_key, key)
    key.chmod(0o644)
    placed = dataclasses.replace(settings, security=dataclasses.replace(settings.security, host_key=str(key)))
    initialise(placed)
    config = write_ini(placed, tmp_path / "wmproxy.conf")
    runner = CliRunner()
    result = runner.invoke(cli, ["-c", str(config), "check", "--json"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    found = {c["check"]: c for c in json.loads(result.stdout)}
    assert not found["host key"]["ok"], found["host key"]
    assert f"chmod 400 {key}" in found["host key"]["detail"]
    assert found["file modes"]["ok"], found["file modes"]  # said once, in the host key's row
    refused = runner.invoke(cli, ["-c", str(config), "stats"], catch_exceptions=False)
    assert refused.exit_code == 1 and f"chmod 400 {key}" in refused.output, refused.output
    key.chmod(0o400)
    result = runner.invoke(cli, ["-c", str(config), "check", "--json"], catch_exceptions=False)
    found = {c["check"]: c for c in json.loads(result.stdout)}
    assert found["host key"]["ok"], found["host key"]
