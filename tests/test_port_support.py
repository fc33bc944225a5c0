"""Servers started on a probed port (tests/port_support.py): a port another process took is
replaced by another one, any other failure is not tried again; a closed port stays closed."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import port_support
from tests.integration.service import Deployment, write_config
from tests.port_support import PORT_TRIES, closed_port, listens, on_free_port, wait_until_listening

#: A server on ``argv[1]``: ``exits`` when the port is in use, ``lingers`` (as gunicorn, which tries
#: again for five seconds), ``broken``: refuses to start for another reason.
SERVER = """
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "broken":
    print("refusing to start: no configuration", flush=True)
    sys.exit(2)
sock = socket.socket()
try:
    sock.bind(("127.0.0.1", port))
except OSError as exc:
    print(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", flush=True)
    if mode == "lingers":
        time.sleep(600)
    sys.exit(1)
sock.listen()
print("listening", flush=True)
time.sleep(600)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test servers started; ended afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        port_support.end(proc)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process has: bound and listening here."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def chooser(monkeypatch: pytest.MonkeyPatch, *ports: int) -> list[int]:
    """Make the port probe hand out ``ports`` first (then probe as usual); the ports handed out."""
    given: list[int] = []
    probe = port_support.free_port

    def choose(host: str = "127.0.0.1") -> int:
        port = ports[len(given)] if len(given) < len(ports) else probe(host)
        given.append(port)
        return port

    monkeypatch.setattr(port_support, "free_port", choose)
    return given


def server(tmp_path: Path, mode: str,
           started: list[subprocess.Popen[bytes]]) -> Callable[[int], tuple[int, subprocess.Popen[bytes]]]:
    def start(port: int) -> tuple[int, subprocess.Popen[bytes]]:
        output = tmp_path / f"server-{len(started)}.log"
        with output.open("wb") as sink:
            proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), mode], stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        wait_until_listening(proc, port, output, what="the test server")
        return port, proc

    return start


@pytest.mark.parametrize("mode", ["exits", "lingers"])
def test_a_server_whose_port_was_taken_starts_again_on_another_port(
        mode: str, taken: int, started: list[subprocess.Popen[bytes]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    given = chooser(monkeypatch, taken)
    port, proc = on_free_port(server(tmp_path, mode, started))
    assert given == [taken, port] and port != taken
    assert listens(proc.pid, port)
    first = started[0]
    assert first.returncode is not None  # ended, also the one that would have tried again
    assert "Address already in use" in (tmp_path / "server-0.log").read_text()
    assert started == [first, proc]


def test_the_port_chosen_already_is_tried_first(started: list[subprocess.Popen[bytes]], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    given = chooser(monkeypatch)
    with closed_port() as chosen:
        pass  # free again, as a port written in a configuration
    port, proc = on_free_port(server(tmp_path, "exits", started), first=chosen)
    assert (port, given) == (chosen, [])
    assert listens(proc.pid, chosen)


def test_a_start_that_fails_otherwise_is_not_tried_again(started: list[subprocess.Popen[bytes]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    given = chooser(monkeypatch)
    with pytest.raises(AssertionError, match=r"(?s)exited with status 2 before listening on port .*no configuration"):
        on_free_port(server(tmp_path, "broken", started))
    assert len(given) == 1 and len(started) == 1


def test_a_port_taken_every_time_fails_after_the_tries(taken: int, started: list[subprocess.Popen[bytes]],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = chooser(monkeypatch, *[taken] * PORT_TRIES)
    with pytest.raises(AssertionError, match=f"{PORT_TRIES} ports in a row were taken"):
        on_free_port(server(tmp_path, "lingers", started))
    assert given == [taken] * PORT_TRIES
    assert all(proc.returncode is not None for proc in started) and len(started) == PORT_TRIES


def test_a_port_listens_for_the_process_that_holds_it_only(taken: int,
                                                           started: list[subprocess.Popen[bytes]]) -> None:
    """A server started on a port another process took must not pass for listening."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    started.append(other)
    assert listens(os.getpid(), taken)
    assert not listens(other.pid, taken)


def test_a_closed_port_refuses_connections_and_cannot_be_taken() -> None:
    with closed_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=30).close()
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="Address already in use") as failed:
                other.bind(("127.0.0.1", port))
        assert failed.value.errno == errno.EADDRINUSE


def test_a_deployment_moved_to_another_port_names_it_in_its_configuration(tmp_path: Path) -> None:
    """What :meth:`Deployment.start_gunicorn` does when the port chosen was taken: the
    configuration's ``[service] port`` and ``bind`` name the new port, nothing else changes."""
    config = tmp_path / "wmproxy.conf"
    write_config(config, db_url="sqlite://", ca_dir=tmp_path, host_cert=tmp_path / "cert", host_key=tmp_path / "key",
                 state=tmp_path, port=41234, extra="# a comment naming the old port = 41234\n")
    before = config.read_text().splitlines()
    dep = Deployment(config=config, state=tmp_path, port=41234, env={})
    dep.use_port(42345)
    after = config.read_text().splitlines()
    assert dep.port == 42345 and dep.endpoint == "https://localhost:42345/glite_wms_wmproxy_server"
    assert [line for line in after if line not in before] == ["port = 42345", "bind = 127.0.0.1:42345"]
    assert [line for line in before if line not in after] == ["port = 41234", "bind = 127.0.0.1:41234"]
