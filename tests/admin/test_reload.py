"""``systemctl reload wmproxy``: SIGHUP to the running ``wmproxy-server`` master.

Before, gunicorn read the packaged configuration module once (cached) and reloaded by starting new
workers that read the wmproxy file themselves: a typo made them fail to boot and the master exit 2,
which the unit does not restart (an outage), and a valid change of ``[service] workers`` left the
old count. Now the master reads and checks the file on SIGHUP: a bad one changes nothing (one line
says why), a good one is applied whole.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.support import BIN, run, write_ini
from tests.conftest import Pki
from tests.integration.service import REPO, free_port, tls_client_context, wait_for_tls
from tests.support import wait_for
from wmproxy.config import Settings

pytestmark = pytest.mark.any_database  # the master's reload, before any database work


class Server:
    """``wmproxy-server`` on a scratch deployment, its stderr in a file."""

    def __init__(self, config: Path, port: int, log: Path, pki: Pki) -> None:
        self.config, self.port, self.log, self.pki = config, port, log, pki
        env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
        with log.open("wb") as err:
            self.proc = subprocess.Popen([str(BIN / "wmproxy-server")], stdout=subprocess.DEVNULL, stderr=err,
                                         env={**env, "WMPROXY_CONFIG": str(config), "WMPROXY_MAPPING_MODE": "none"},
                                         cwd=config.parent)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"the master exited with {self.proc.returncode}:\n{self.text()}"
        return True

    def workers(self) -> set[int]:
        """The master's children (gunicorn's workers)."""
        self.alive()
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid:
                    found.add(int(entry.name))
        return found

    def wsdl(self) -> bytes:
        """A request over TLS (alice's proxy) to the service, answered by a worker."""
        context = tls_client_context(self.pki.ca_dir, self.pki.users["alice"].proxy)
        with urllib.request.urlopen(f"https://localhost:{self.port}/glite_wms_wmproxy_server?wsdl", timeout=60,
                                    context=context) as reply:
            assert reply.status == 200
            return bytes(reply.read())

    def handshake(self) -> None:
        """A TLS handshake with the service (alice's proxy): a worker has booted and serves."""
        context = tls_client_context(self.pki.ca_dir, self.pki.users["alice"].proxy)
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as raw, \
                context.wrap_socket(raw, server_hostname="localhost"):
            pass

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text
        self.config.write_text(text.replace(old, new))

    def hup_until_logged(self, line: str) -> str:
        start = len(self.text())
        os.kill(self.proc.pid, signal.SIGHUP)
        return wait_for(lambda: self.alive() and self.text()[start:], lambda got: line in got,
                        what=f"{line!r} in the log after SIGHUP")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(settings: Settings, tmp_path: Path, pki: Pki) -> Iterator[Server]:
    """A running service with one worker (``[service] workers = 1`` in its file)."""
    config = write_ini(settings, tmp_path / "wmproxy.conf")
    done = run("wmproxy-admin", "init", config=config)
    assert done.returncode == 0, done.stderr
    port = free_port()
    config.write_text(config.read_text().replace("[service]\n", f"[service]\nbind = 127.0.0.1:{port}\nworkers = 1\n"))
    running = Server(config, port, tmp_path / "server.log", pki)
    try:
        wait_for_tls(port)
        wait_for(running.workers, lambda got: len(got) == 1, what="one worker")
        yield running
    finally:
        running.stop()


def test_a_bad_edit_and_sighup_change_nothing_and_say_why(server: Server) -> None:
    before = server.workers()
    assert b"wsdl:definitions" in server.wsdl()
    server.edit("[service]\n", "[service]\nthread = 4\n")
    got = server.hup_until_logged("configuration not reloaded")
    (line,) = [line for line in got.splitlines() if "configuration not reloaded" in line]
    assert "unknown key(s) [service] thread" in line and "keep serving with the previous settings" in line, line
    assert "Traceback" not in got and "refusing to start" not in got, got
    assert b"wsdl:definitions" in server.wsdl()  # the same master, the same worker
    assert server.workers() == before


def test_a_worker_replaced_after_a_bad_edit_boots(server: Server) -> None:
    """The master's replacement of a worker that died takes the master's settings: before, it read
    the edited file, failed to boot and the master exited 2."""
    (before,) = server.workers()
    server.edit("[service]\n", "[service]\nthread = 4\n")
    os.kill(before, signal.SIGKILL)
    (after,) = wait_for(server.workers, lambda got: len(got) == 1 and before not in got, what="a new worker")
    server.handshake()  # by the one worker: it booted
    assert server.workers() == {after}
    assert "failed to boot" not in server.text()
    # and its application is built from the master's settings too, not from the edited file
    # (which answered 503 "the application could not be built" until the file was mended)
    assert b"wsdl:definitions" in server.wsdl()


def test_a_good_edit_and_sighup_apply_the_workers_count(server: Server) -> None:
    before = server.workers()
    server.edit("workers = 1\n", "workers = 3\n")
    got = server.hup_until_logged("configuration reloaded")
    assert "workers 3" in got, got
    after = wait_for(server.workers, lambda got: len(got) == 3 and not got & before, what="three new workers")
    assert len(after) == 3
    assert b"wsdl:definitions" in server.wsdl()


def test_a_changed_bind_needs_a_restart_and_the_old_address_keeps_serving(server: Server) -> None:
    other = free_port()
    server.edit(f"bind = 127.0.0.1:{server.port}\n", f"bind = 127.0.0.1:{other}\n")
    got = server.hup_until_logged("configuration reloaded")
    assert f"[service] bind changed to 127.0.0.1:{other}: only a restart applies it" in got, got
    assert b"wsdl:definitions" in server.wsdl()


def test_check_config_says_what_is_wrong_and_the_unit_runs_it_before_the_hup(settings: Settings,
                                                                              tmp_path: Path) -> None:
    config = write_ini(settings, tmp_path / "wmproxy.conf")
    good = run("wmproxy-server", "--check-config", config=config)
    assert good.returncode == 0 and "the configuration is valid" in good.stdout, good.stderr
    config.write_text(config.read_text().replace("[service]\n", "[service]\nthread = 4\n"))
    bad = run("wmproxy-server", "--check-config", config=config)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().endswith("unknown key(s) [service] thread (docs/configuration.md)"), bad.stderr
    config.write_text(config.read_text().replace("thread = 4\n", "").replace(
        f"host_key = {settings.security.host_key}", f"host_key = {tmp_path / 'missing.pem'}"))
    tls = run("wmproxy-server", "--check-config", config=config)
    assert tls.returncode == 3 and "missing.pem" in tls.stderr, tls.stderr
    reload = [line.partition("=")[2] for line in (REPO / "deploy" / "wmproxy.service").read_text().splitlines()
              if line.startswith("ExecReload=")]
    assert reload == ["/usr/lib/wmproxy/venv/bin/wmproxy-server --check-config", "/bin/kill -HUP $MAINPID"]
