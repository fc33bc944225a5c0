"""SIGHUP to ``wmproxy-worker``, ``wmproxy-renewal`` and ``wmproxy-metrics``: one line, and they
carry on. Before, Python's default ended them (status 129) without a word, and systemd, which
counts a death by SIGHUP as clean, did not restart them (``Restart=on-failure``)."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.admin.support import BIN, run, write_ini
from tests.integration.service import free_port
from tests.support import wait_for
from wmproxy.config import Settings

pytestmark = pytest.mark.any_database  # the signal's handling, not the database's

IGNORED = "SIGHUP ignored: it re-reads nothing while it runs"


def metrics_answer(port: int) -> Callable[[], bool]:
    def healthz() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as reply:
            return bool(reply.status == 200)
    return healthz


@pytest.mark.parametrize(("argv", "started", "stopped"), [
    (["wmproxy-worker", "--name", "w-hup"], "execution worker w-hup started",
     "execution worker w-hup stopped on SIGTERM"),
    (["wmproxy-renewal", "--name", "r-hup"], "renewal worker r-hup started", "renewal worker r-hup stopped"),
    (["wmproxy-metrics"], "wmproxy-metrics listening on", None),
])
def test_sighup_is_logged_and_the_process_carries_on(settings: Settings, tmp_path: Path, argv: list[str],
                                                     started: str, stopped: str | None) -> None:
    config = write_ini(settings, tmp_path / "wmproxy.conf")
    done = run("wmproxy-admin", "init", config=config)
    assert done.returncode == 0, done.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env.update(WMPROXY_CONFIG=str(config), WMPROXY_METRICS_BIND=f"127.0.0.1:{port}")
    log = tmp_path / "process.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], env=env, stdout=subprocess.DEVNULL, stderr=err)

    def text() -> str:
        assert proc.poll() is None, f"{argv[0]} exited with {proc.returncode}:\n{log.read_text()}"
        return log.read_text(errors="replace")

    try:
        wait_for(text, lambda got: started in got, what=f"{argv[0]} to start")
        proc.send_signal(signal.SIGHUP)
        got = wait_for(text, lambda got: IGNORED in got, what="the SIGHUP line")
        assert got.count(IGNORED) == 1 and f"systemctl restart {argv[0]}" in got, got
        if stopped is None:
            assert metrics_answer(port)()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 0, log.read_text()
    if stopped is not None:  # its loop went on after the HUP, to its stop
        assert stopped in log.read_text()
