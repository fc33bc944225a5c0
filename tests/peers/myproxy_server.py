"""A real Debian ``myproxy-server`` on loopback for tests and benchmarks.

``start_myproxy_server`` writes a private configuration and a 0700 credential store under
a directory, gives the server its own host credential (CN=localhost) from a test CA, and
runs ``/usr/sbin/myproxy-server`` in its normal (forking, many connections) mode; ``-d``
would serve a single connection and exit (``peers.md`` §5.1).
``store_renewable_credential`` runs the real ``myproxy-init -x -R '<renewer DN>'`` so that a
service with that DN may renew the credential (the WMS way).

For conftest: ``from tests.peers.myproxy_server import myproxy_server_factory``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.port_support import listens
from wmproxy.security.chain import identity_dn, load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import CertificateAuthority

MYPROXY_SERVER = "/usr/sbin/myproxy-server"
MYPROXY_INIT = "myproxy-init"
START_TIMEOUT = 60.0  # seconds: generous, the machine is shared


class MyProxyPeerError(RuntimeError):
    """The helper could not start the server or store a credential (output attached)."""


def server_config(
    authorized_renewers: Sequence[str],
    *,
    default_renewers: Sequence[str] | None = None,
    accepted_credentials: str = "*",
    max_proxy_lifetime: int | None = None,
) -> str:
    """Text of a ``myproxy-server.config`` for renewal by the given DNs.

    Args:
        authorized_renewers: DN regexes that may renew (server-wide); none disables renewal.
        default_renewers: per-credential default when ``myproxy-init`` sets no ``-R``
            (default: ``authorized_renewers``).
        accepted_credentials: DN regex of clients that may store credentials.
        max_proxy_lifetime: server-wide cap of retrieved proxies, in hours.
    """
    lines = [f'accepted_credentials "{accepted_credentials}"']
    lines += [f'authorized_renewers "{dn}"' for dn in authorized_renewers]
    defaults = authorized_renewers if default_renewers is None else default_renewers
    lines += [f'default_renewers "{dn}"' for dn in defaults]
    if max_proxy_lifetime is not None:
        lines.append(f"max_proxy_lifetime {max_proxy_lifetime}")
    return "\n".join(lines) + "\n"


@dataclass
class MyProxyServer:
    """A running myproxy-server: connect to ``host``:``port``; ``stop()`` ends it."""

    host: str
    port: int
    ca_dir: Path
    directory: Path
    dn: str
    pid: int
    log: Path
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """SIGTERM the server (the forked daemon recorded in its pid file) and wait for it."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _gone(self.pid):
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)

    def env(self) -> dict[str, str]:
        """Environment for the MyProxy command line tools talking to this server."""
        return {
            "X509_CERT_DIR": str(self.ca_dir),
            "MYPROXY_SERVER": self.host,
            "MYPROXY_SERVER_PORT": str(self.port),
        }


def _gone(pid: int) -> bool:
    """The daemon has exited: no such process, or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def have_myproxy() -> bool:
    """Whether the server and client tools of Debian's myproxy packages are installed."""
    return os.access(MYPROXY_SERVER, os.X_OK) and shutil.which(MYPROXY_INIT) is not None


def start_myproxy_server(
    directory: str | os.PathLike,
    *,
    ca: CertificateAuthority,
    ca_dir: str | os.PathLike,
    authorized_renewers: Sequence[str],
    default_renewers: Sequence[str] | None = None,
    max_proxy_lifetime: int | None = None,
) -> MyProxyServer:
    """Start ``myproxy-server`` on a free 127.0.0.1 port with a private config and store.

    The server binds port 0 (the kernel picks a free port, which nobody can take before the
    server has it) and writes the port it got to its port file (``-z``).

    Args:
        directory: created; holds ``myproxy-server.config``, ``store/`` (0700), ``host/``
            (a fresh CN=localhost host credential issued by ``ca``), the pid and port files and the log.
        ca: issues the server's host credential.
        ca_dir: grid CA directory (``X509_CERT_DIR`` of the server).
        authorized_renewers, default_renewers, max_proxy_lifetime (hours): see :func:`server_config`.

    Raises:
        MyProxyPeerError: the server did not come up within
            :data:`START_TIMEOUT` seconds (its log is attached).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    store = root / "store"
    store.mkdir(mode=0o700, exist_ok=True)
    os.chmod(store, 0o700)
    host_cert, host_key = ca.issue_host("localhost", root / "host")
    config = root / "myproxy-server.config"
    config.write_text(server_config(authorized_renewers, default_renewers=default_renewers,
                                    max_proxy_lifetime=max_proxy_lifetime))
    pid_file, port_file, log = root / "myproxy-server.pid", root / "myproxy-server.port", root / "myproxy-server.log"
    pid_file.unlink(missing_ok=True)
    port_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "MYPROXY_"))}
    env.update(X509_CERT_DIR=str(ca_dir), X509_USER_CERT=str(host_cert), X509_USER_KEY=str(host_key))
    with open(log, "ab") as out:
        launcher = subprocess.run(
            [MYPROXY_SERVER, "-v", "-l", "127.0.0.1", "-p", "0", "-z", str(port_file), "-c", str(config),
             "-s", str(store), "-P", str(pid_file)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=START_TIMEOUT, check=False,
        )
    started = _wait_until_listening(pid_file, port_file) if launcher.returncode == 0 else None
    if started is None:
        raise MyProxyPeerError(f"myproxy-server did not start (status {launcher.returncode}; it logs to syslog); "
                               f"log:\n{log.read_text(errors='replace')}")
    pid, port = started
    dn = slash_dn(load_pem_chain(host_cert.read_bytes())[0].subject)
    return MyProxyServer("localhost", port, Path(ca_dir), root, dn, pid, log)


def _number(path: Path) -> int | None:
    """The number a pid or port file holds, None while it is not written yet."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _wait_until_listening(pid_file: Path, port_file: Path) -> tuple[int, int] | None:
    """The daemon's pid and port once it listens there, None when it does not in time or exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid, port = _number(pid_file), _number(port_file)
        if pid is not None and port is not None:
            if listens(pid, port):
                return pid, port
            if _gone(pid):
                return None
        time.sleep(0.05)
    return None


def store_renewable_credential(
    server: MyProxyServer,
    user_proxy_path: str | os.PathLike,
    renewer_dn: str,
    username: str | None = None,
    lifetime_hours: int = 24,
    *,
    proxy_lifetime_hours: int = 12,
) -> str:
    """Store a renewable credential with the real ``myproxy-init``, acting as the user.

    Runs ``myproxy-init -C <proxy> -y <proxy> -n -c <lifetime_hours> -t <proxy_lifetime_hours>
    -x -R '<renewer_dn>'`` plus ``-d`` (DN as username) when ``username`` is None, else
    ``-l <username>``. ``-x`` matters: without it the renewer is CN-matched and a full DN
    matches nothing (``peers.md`` §5.2).

    Args:
        lifetime_hours: lifetime of the stored credential (``-c``), in hours.
        proxy_lifetime_hours: longest proxy the server hands out from it (``-t``), in hours.

    Returns the username the credential is stored under (the user's DN for ``-d``).

    Raises:
        MyProxyPeerError: myproxy-init failed (its output attached).
    """
    args = [MYPROXY_INIT, "-s", server.host, "-p", str(server.port), "-C", str(user_proxy_path),
            "-y", str(user_proxy_path), "-n", "-c", str(lifetime_hours), "-t", str(proxy_lifetime_hours),
            "-x", "-R", renewer_dn]
    if username is None:
        username = identity_dn(load_pem_chain(Path(user_proxy_path).read_bytes()))
        args.append("-d")
    else:
        args += ["-l", username]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "MYPROXY_"))}
    env.update(server.env(), X509_USER_PROXY=str(user_proxy_path))
    result = subprocess.run(
        args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise MyProxyPeerError(f"myproxy-init failed ({result.returncode}): {result.stdout}{result.stderr}")
    return username


@pytest.fixture(scope="session")
def myproxy_server_factory(pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Callable ``start(authorized_renewers, **kwargs) -> MyProxyServer`` on the session ``pki``.

    Keyword arguments are those of :func:`start_myproxy_server` (not ``ca``/``ca_dir``).
    Every server started is stopped at the end of the session. Without the Debian
    ``myproxy-server`` / ``myproxy`` packages: :func:`tests.conftest.need_peer`.
    """
    from tests.conftest import need_peer

    if not have_myproxy():
        need_peer("myproxy-server / myproxy-init not installed (Debian packages myproxy-server, myproxy)")
    servers: list[MyProxyServer] = []

    def start(authorized_renewers: Sequence[str], **kwargs) -> MyProxyServer:
        server = start_myproxy_server(tmp_path_factory.mktemp("myproxy"), ca=pki.ca, ca_dir=pki.ca_dir,
                                      authorized_renewers=authorized_renewers, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
