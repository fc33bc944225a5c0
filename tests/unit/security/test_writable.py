"""The start probe of the directories a process writes (``wmproxy.security.writable``): a
directory read-only for the process (what ``ProtectSystem=strict`` without it in
``ReadWritePaths=`` makes it) stops the service, the execution worker and the renewal worker
at start with one line naming the directory and ``ReadWritePaths``.

The read-only directory is real: a read-only bind mount in a mount namespace of the
process's own (``unshare -m``, as root), as systemd makes it; the rest of the system and
the test keep the directory writable."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.admin.support import BIN, settings_for, write_ini
from tests.conftest import IN_CI, Pki
from wmproxy.admin import initialise
from wmproxy.config import Settings
from wmproxy.security.writable import PROBE_PREFIX, UnwritableDirectoryError, check_writable_dir

#: Run "$@" with the directory $1 bind-mounted read-only over itself, in a mount namespace of its own.
READ_ONLY = 'd="$1"; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" && exec "$@"'


@functools.cache
def _read_only_mounts() -> str | None:
    """Why read-only bind mounts in a namespace of their own cannot be made here (None: they can)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1)"
    done = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", "/", "true"], capture_output=True,
                          text=True, check=False, timeout=60)
    return None if done.returncode == 0 else f"unshare -m cannot bind-mount: {done.stderr.strip()}"


@pytest.fixture
def read_only_mounts() -> None:
    reason = _read_only_mounts()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI runs as root with unshare: {reason}")
        pytest.skip(reason)


def run_with_read_only(directory: Path, config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env["WMPROXY_CONFIG"] = str(config)
    return subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(directory), str(BIN / argv[0]),
                           *argv[1:]], env=env, capture_output=True, text=True, timeout=120, check=False,
                          cwd=config.parent)


@pytest.fixture
def deployment(tmp_path: Path, pki: Pki) -> tuple[Settings, Path]:
    settings = settings_for(tmp_path / "state", f"sqlite:///{tmp_path}/state/db/wmproxy.db", pki)
    initialise(settings)
    for directory in (settings.execution.work_dir, settings.sandbox.root):
        Path(directory).mkdir(mode=0o755, exist_ok=True)
    return settings, write_ini(settings, tmp_path / "wmproxy.conf")


@pytest.mark.usefixtures("read_only_mounts")
@pytest.mark.parametrize(("argv", "setting"), [
    (("wmproxy-renewal", "--once"), "[execution] work_dir"),
    (("wmproxy-worker", "--name", "probe"), "[execution] work_dir"),
    (("wmproxy-worker", "--name", "probe"), "[sandbox] root"),
    (("wmproxy-server", "--bind", "127.0.0.1:0"), "[sandbox] root"),
], ids=["renewal-work-dir", "worker-work-dir", "worker-sandbox-root", "server-sandbox-root"])
def test_a_read_only_directory_stops_the_process_with_one_line(deployment: tuple[Settings, Path],
                                                               argv: tuple[str, ...], setting: str) -> None:
    settings, config = deployment
    directory = Path(settings.execution.work_dir if setting == "[execution] work_dir" else settings.sandbox.root)
    done = run_with_read_only(directory, config, *argv)
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "refusing to start" in line]
    assert len(lines) == 1, done.stderr
    assert f"{setting} {directory} is not writable by this process" in lines[0]
    assert "Read-only file system" in lines[0] and "ReadWritePaths=" in lines[0]


@pytest.mark.usefixtures("read_only_mounts")
def test_the_renewal_worker_starts_with_the_directories_writable(deployment: tuple[Settings, Path]) -> None:
    """The same run with an unrelated directory read-only: the probe is what stopped it above."""
    settings, config = deployment
    elsewhere = config.parent / "elsewhere"
    elsewhere.mkdir()
    done = run_with_read_only(elsewhere, config, "wmproxy-renewal", "--once")
    assert done.returncode == 0, done.stderr
    assert not list(Path(settings.execution.work_dir).glob(PROBE_PREFIX + "*"))


def test_a_missing_directory_is_probed_where_it_will_be_created(tmp_path: Path) -> None:
    check_writable_dir(str(tmp_path / "a" / "b"), "[sandbox] root", "wmproxy.service")
    assert os.listdir(tmp_path) == []  # the probe is gone, nothing created


@pytest.mark.usefixtures("read_only_mounts")
def test_a_missing_directory_under_a_read_only_parent_is_named(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    code = ("import sys\nfrom wmproxy.security.writable import check_writable_dir\n"
            f"check_writable_dir({str(parent / 'work')!r}, '[execution] work_dir', 'wmproxy-renewal.service')\n")
    done = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(parent), str(BIN / "python"), "-c",
                           code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert done.returncode != 0
    assert UnwritableDirectoryError.__name__ in done.stderr
    assert f"[execution] work_dir {parent / 'work'} is not writable" in done.stderr
    assert f"its parent {parent} is not writable either" in done.stderr
