"""``init`` checks every path before it creates or changes any: run as root without ``--user``
on a deployment made with ``init --user``, it refuses with nothing created (a new sandbox root
included, on either database) and names ``--user <owner>``, the likely fix, before the text about
a replaced path."""

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
def test_init_without_user_on_a_live_deployment_creates_nothing_and_names_the_user(
        service_settings: Settings) -> None:
    """A new sandbox root in the service user's directory: on PostgreSQL (no database file of
    the service user's to refuse) it was made root's, which the service cannot use."""
    top = Path(service_settings.sandbox.root).parent  # the service user's
    moved = top / "sandbox-new"
    settings = dataclasses.replace(service_settings, sandbox=SandboxSettings(root=str(moved)))
    config = write_ini(settings, top.parent / "wmproxy.conf")
    result = CliRunner().invoke(cli, ["-c", str(config), "init"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert not moved.exists()
    assert result.output.startswith(
        f"Error: {moved} would be created in {top}, which belongs to {SERVICE_USER}: if {SERVICE_USER} is the "
        f"service user, run `wmproxy-admin init --user {SERVICE_USER}` (nothing was changed)"), result.output
    assert "Traceback" not in result.output
    done = CliRunner().invoke(cli, ["-c", str(config), "init", "--user", SERVICE_USER], env={"WMPROXY_CONFIG": None})
    assert done.exit_code == 0, done.output
    assert moved.stat().st_uid == top.stat().st_uid


@needs_root
@pytest.mark.sqlite_only  # the refused path is the database's directory
def test_init_without_user_names_the_user_of_an_existing_path(service_settings: Settings) -> None:
    config = write_ini(service_settings, Path(service_settings.sandbox.root).parent.parent / "wmproxy.conf")
    result = CliRunner().invoke(cli, ["-c", str(config), "init"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    db_dir = Path(service_settings.database.url.removeprefix("sqlite:///")).parent  # the service user's, in root's
    assert result.output.startswith(
        f"Error: {db_dir} belongs to {SERVICE_USER}: if {SERVICE_USER} is the service user, run "
        f"`wmproxy-admin init --user {SERVICE_USER}` (nothing was changed)"), result.output


@needs_root
def test_a_root_owned_link_into_the_service_users_directory_is_no_way_round(service_settings: Settings) -> None:
    """The new path is checked where its directory is made, links followed as the walk follows
    a root-owned one: the check looked at the link itself (root's) and let root make the
    sandbox root inside the service user's directory."""
    top = Path(service_settings.sandbox.root).parent  # the service user's
    link = top.parent / "state-link"  # root's, in root's directory
    link.symlink_to(top)
    settings = dataclasses.replace(service_settings, sandbox=SandboxSettings(root=str(link / "sandbox-new")))
    config = write_ini(settings, top.parent / "wmproxy.conf")
    result = CliRunner().invoke(cli, ["-c", str(config), "init"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert not (top / "sandbox-new").exists()
    assert result.output.startswith(
        f"Error: {link / 'sandbox-new'} would be created in {link}, which belongs to {SERVICE_USER}: "), result.output
