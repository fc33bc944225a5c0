"""Ports for the servers the tests start (gunicorn, ``wmproxy-metrics``, voms...), and ports where
nothing listens.

A port probed free (bind port 0, read it, close) can be taken before the server binds it: by a
parallel test process, another session's server, an outgoing connection's ephemeral port. So a
server started on a probed port is started through :func:`on_free_port`, which starts it again
on another port when, and only when, the server says its port is in use
(:func:`wait_until_listening` reads its output); any other failure fails at once. A port that must
stay refused (nothing listening) is held bound, not listening, by :func:`closed_port`: nobody can
take it while the test runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Starts on a fresh port before a port taken every time fails the start.
PORT_TRIES = 5
#: What a server's output says when its port is taken (strerror(EADDRINUSE): gunicorn, wmproxy-metrics, Python).
ADDRESS_IN_USE = "Address already in use"
#: Seconds a server gets to listen: far above what an idle machine needs.
START_TIMEOUT = 120.0
#: TCP state LISTEN in /proc/net/tcp.
_LISTEN = "0A"


class PortInUseError(Exception):
    """The server could not bind its port: another process has it. The server is ended."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that was free a moment ago (see :func:`on_free_port`)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port of ``host`` where nothing listens, for as long as the block runs: bound here but
    not listening, so a connection is refused and no other process can bind it meanwhile."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a socket listening on TCP ``port`` (not another
    process that took the port)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[len("socket:["):-1] in inodes:
            return True
    return False


def _said(output: Path, offset: int) -> str:
    try:
        with output.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def end(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc`` (its process group when it leads its session) and reap it."""
    if proc.poll() is None:
        try:
            leads = os.getsid(proc.pid) == proc.pid
        except OSError:
            leads = False
        try:
            if leads:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def wait_until_listening(proc: subprocess.Popen[Any], port: int, output: Path, *, offset: int = 0,
                         in_use: Sequence[str] = (ADDRESS_IN_USE,), what: str,
                         timeout: float = START_TIMEOUT) -> None:
    """Wait until ``proc`` itself listens on ``port``.

    Args:
        output: the file its output goes to, read from ``offset`` (what an earlier start wrote
            before it is not this start's).
        in_use: what its output says when the port is taken.

    Raises:
        PortInUseError: its output says the port is in use (``proc`` is ended: gunicorn would try
            the same port again for five seconds).
        AssertionError: it exited, or did not listen within ``timeout`` seconds (its output attached).
    """
    deadline = time.monotonic() + timeout
    while True:
        said = _said(output, offset)
        if any(text in said for text in in_use):
            end(proc)
            raise PortInUseError(f"{what}: port {port} is taken:\n{said[-2000:]}")
        if listens(proc.pid, port):
            return
        if proc.poll() is not None:
            said = _said(output, offset)  # all of it: the process has ended
            if any(text in said for text in in_use):
                raise PortInUseError(f"{what}: port {port} is taken:\n{said[-2000:]}")
            raise AssertionError(f"{what} exited with status {proc.returncode} before listening on port {port}:\n"
                                 f"{said[-4000:]}")
        if time.monotonic() > deadline:
            end(proc)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} to listen on port {port}:\n"
                                 f"{_said(output, offset)[-4000:]}")
        time.sleep(0.05)


def on_free_port(start: Callable[[int], T], *, first: int | None = None, host: str = "127.0.0.1",
                 tries: int = PORT_TRIES) -> T:
    """``start(port)`` on a port probed free (``first``: the port chosen already, e.g. written in a
    configuration, first); again on another one while it raises :class:`PortInUseError` (which ``start``
    raises having ended what it started), ``tries`` times in all.

    Raises:
        AssertionError: the port was taken every time.
    """
    taken = []
    for attempt in range(tries):
        try:
            return start(first if attempt == 0 and first is not None else free_port(host))
        except PortInUseError as exc:
            taken.append(str(exc))
    raise AssertionError(f"{tries} ports in a row were taken before the server bound them; the last:\n{taken[-1]}")
