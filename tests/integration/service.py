"""Start a real wmproxy deployment for tests: gunicorn over TLS + the execution worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.port_support import ADDRESS_IN_USE, PortInUseError, on_free_port, wait_until_listening
from tests.port_support import free_port as free_port  # benchmarks/ import it from here
from tests.support import WAIT_TIMEOUT, wait_for

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOG_MODE = 0o600


def write_config(path: Path, *, db_url: str, ca_dir: Path, host_cert: Path, host_key: Path, state: Path,
                 port: int, max_isb: int = 1_000_000, execution: str = "", extra: str = "") -> None:
    """The deployment's INI file; ``execution`` adds lines to ``[execution]``, ``extra`` adds sections.

    The pool of getProxyReq keys holds 2 (16 by default): each deployment's gunicorn workers
    fill it in the background, 14 RSA-2048 keys more cost about a second of CPU per deployment
    (three on a slow machine) that no test here uses; an empty pool's fallback and the pool
    itself are tested in tests/unit/services/test_delegation_keys.py."""
    path.write_text(
        f"""[database]
url = {db_url}
[security]
ca_dir = {ca_dir}
host_cert = {host_cert}
host_key = {host_key}
store_key_file = {state}/store.key
vomsdir = {state}/vomsdir
delegation_key_pool = 2
authorized_users = /C=XX/O=wmproxy-demo/OU=Users/CN=[!M]*, /atlas*
[service]
host = localhost
port = {port}
drain_file = {state}/drain
bind = 127.0.0.1:{port}
workers = 2
threads = 4
max_input_sandbox_size = {max_isb}
[sandbox]
root = {state}/sandbox
[execution]
work_dir = {state}/work
poll_interval = 0.2
{execution}
[jobs]
quota_soft_limit = 40000000
quota_hard_limit = 50000000
min_perusal_interval = 1
max_perusal_files = 3
ce_catalogue = {state}/ce-catalogue.ads
{extra}"""
    )
    (state / "ce-catalogue.ads").write_text(CE_CATALOGUE)


#: The CEs jobListMatch sees in the integration tests.
CE_CATALOGUE = """
[ GlueCEUniqueID = "ce1.example.org:8443/cream-pbs-short"; GlueCEStateFreeCPUs = 12;
  GlueCEStateStatus = "Production"; GlueHostMainMemoryRAMSize = 4096 ]
[ GlueCEUniqueID = "ce2.example.org:8443/cream-pbs-long"; GlueCEStateFreeCPUs = 40;
  GlueCEStateStatus = "Production"; GlueHostMainMemoryRAMSize = 16384 ]
[ GlueCEUniqueID = "ce3.example.org:8443/cream-lsf-grid"; GlueCEStateFreeCPUs = 0;
  GlueCEStateStatus = "Draining"; GlueHostMainMemoryRAMSize = 8192 ]
[ GlueCEUniqueID = "ce4.example.org:8443/cream-pbs-atlas"; GlueCEStateFreeCPUs = 100;
  GlueCEStateStatus = "Production"; GlueHostMainMemoryRAMSize = 4096;
  Requirements = other.VirtualOrganisation == "atlas" ]
"""


@dataclass
class Deployment:
    """A running service: its endpoint, config and processes."""

    config: Path
    state: Path
    port: int
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: argv prefixes that switch identity (``setpriv ...``) for gunicorn and for the execution worker.
    service_prefix: list[str] = field(default_factory=list)
    worker_prefix: list[str] = field(default_factory=list)
    #: interpreter for ``-m`` runs when the virtualenv's scripts cannot be used (another user); "" = the scripts.
    python: str = ""
    #: a directory jobs can read and write (release files, markers); pytest's tmp_path is not reachable by
    #: a job that runs as another user than root.
    shared: Path | None = None
    #: the virtualenv whose scripts run the deployment (another one: e.g. a wheel installed outside the
    #: source tree, tests/packaging) and the processes' working directory.
    bin_dir: Path = BIN
    cwd: Path = REPO
    #: gunicorn has listened on :attr:`port`: clients and job ids name it, so a new start keeps it
    #: (until then a port found taken is replaced by another, :meth:`start_gunicorn`).
    port_known: bool = field(default=False, init=False, repr=False)

    def scratch(self, fallback: Path) -> Path:
        """A fresh directory the deployment's jobs can read and write (release files, markers):
        under :attr:`shared` when jobs run as another account, else ``fallback`` (pytest's tmp_path)."""
        if self.shared is None:
            return fallback
        path = Path(tempfile.mkdtemp(dir=self.shared))
        path.chmod(0o1777)
        return path

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}/glite_wms_wmproxy_server"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120, check=False,
                              cwd=self.cwd)

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output appended to ``<state>/<log_name>``; stopped by :meth:`stop`."""
        # 0600: the state dir is traversable by job accounts, the logs are not for them.
        fd = os.open(self.state / log_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_MODE)
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def start_listening(self, argv: list[str], log_name: str, port: int, what: str,
                        in_use: Sequence[str] = (ADDRESS_IN_USE,)) -> subprocess.Popen[bytes]:
        """:meth:`start`, once the process listens on ``port``.

        Raises:
            PortInUseError: its log says ``in_use`` (another process has ``port``; the process is ended
                and forgotten).
            AssertionError: it exited, or did not listen in time (its log attached).
        """
        log = self.state / log_name
        offset = log.stat().st_size if log.exists() else 0
        proc = self.start(argv, log_name)
        try:
            wait_until_listening(proc, port, log, offset=offset, in_use=in_use, what=what)
        except PortInUseError:
            self.processes.remove(proc)
            raise
        return proc

    def start_gunicorn(self) -> subprocess.Popen[bytes]:
        """``wmproxy-server``: gunicorn with the packaged configuration (as ``service_prefix`` says: e.g.
        setpriv to the service user), once it listens.

        Its first start takes another port (:meth:`use_port`) while another process has the one
        chosen; a later start (after :meth:`stop`) keeps the port its clients know, and leaves it
        to gunicorn to try a port in use again (for five seconds)."""
        command = [*self.service_prefix, *self.python_command("wmproxy.serve", self.bin_dir / "wmproxy-server")]
        if self.port_known:
            return self.start_listening(command, "gunicorn.log", self.port, "wmproxy-server", in_use=())

        def on(port: int) -> subprocess.Popen[bytes]:
            if port != self.port:
                self.use_port(port)
            return self.start_listening(command, "gunicorn.log", port, "wmproxy-server")

        proc = on_free_port(on, first=self.port)
        self.port_known = True
        return proc

    def use_port(self, port: int) -> None:
        """Move the service to ``port``: the configuration's ``[service] port`` and ``bind``."""
        text = self.config.read_text()
        for key, value in (("port", ""), ("bind", "127.0.0.1:")):
            text, found = re.subn(rf"^{key} = {value}{self.port}$", f"{key} = {value}{port}", text, flags=re.M)
            assert found == 1, f"{self.config}: no line {key} = {value}{self.port}"
        self.config.write_text(text)
        self.port = port

    def start_worker(self, name: str = "worker-1") -> subprocess.Popen[bytes]:
        """The execution worker ``name`` (as ``worker_prefix`` says: e.g. the service user with capabilities)."""
        command = [*self.worker_prefix, *self.python_command("wmproxy.execution", self.bin_dir / "wmproxy-worker"),
                   "--name", name]
        return self.start(command, f"{name}.log")

    def python_command(self, module: str, script: Path) -> list[str]:
        """How to run ``module``: the virtualenv's ``script``, or ``<python> -m module`` when ``python`` is set."""
        return [self.python, "-m", module] if self.python else [str(script)]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()


def wait_for_tls(port: int, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until something accepts TCP on ``port`` (the TLS handshake needs a client cert)."""

    def accepts() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(accepts, what=f"the service to listen on port {port}", timeout=timeout, interval=0.1)


def tls_client_context(ca_dir: Path, cert: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(capath=str(ca_dir))
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return ctx


def closed_by_peer(sock: ssl.SSLSocket) -> bool:
    """The service closed this connection (EOF or reset); False while it is open and silent."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
