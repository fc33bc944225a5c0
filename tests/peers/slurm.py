"""A throwaway one-node Slurm cluster (Debian ``slurm-wlm`` + ``munge``) for tests and the demo.

:class:`SlurmCluster` runs its own ``munged`` (own key, socket, pid, log and seed files) and
its own ``slurmctld`` and ``slurmd`` on free ports with a ``slurm.conf`` under one directory,
so it never touches a system munged or Slurm (``peers.md`` §13). The daemons run in the
foreground of processes it starts (``munged -F``, ``slurmctld -D``, ``slurmd -D``), each in a
session of its own; their pids and start times are recorded in ``<root>/daemons.json`` so that
``stop()`` — in this process or in another one (``python -m tests.peers.slurm stop DIR``) —
ends exactly those processes (SIGTERM, then SIGKILL) after cancelling the cluster's jobs, plus
any job step or job process left behind by this cluster (recognised by the ``WMPROXY_SLURM_ROOT``
marker the daemons pass on, or by the cluster's unique ``SLURM_CLUSTER_NAME`` in a job's
environment).

Client commands need ``SLURM_CONF`` (see :attr:`SlurmCluster.env`); :meth:`SlurmCluster.run`
adds it. As root, ``sbatch --uid=<account> --gid=<gid>`` runs a job as that account; the
cluster directory is made 0755 so that job steps of any account can reach the spool.

For conftest: ``from tests.peers.slurm import slurm_cluster`` (a session fixture).

Command line, for the demo and for humans::

    python -m tests.peers.slurm start DIR [--partition debug --partition long]
    export SLURM_CONF=DIR/slurm.conf      # printed by start
    python -m tests.peers.slurm stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.port_support import ADDRESS_IN_USE, PORT_TRIES
from wmproxy.execution.slurm import CpuCounts, parse_cpus, parse_job_states, parse_scontrol

DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "munge")
START_TIMEOUT = 60.0  # seconds: munged up, then the node idle in sinfo (about 3 s when idle)
STOP_TIMEOUT = 15.0  # seconds a daemon gets between SIGTERM and SIGKILL
MARKER = "WMPROXY_SLURM_ROOT"
RECORD = "daemons.json"
SESSION_PREFIX = "wmpslurm-"  # the session fixture's directories in the temporary directory
OWNER = "pytest.pid"  # in such a directory: the pid of the pytest process that owns it


class SlurmPeerError(RuntimeError):
    """The cluster could not start or a client command failed (logs or output attached)."""


def have_slurm() -> str | None:
    """None when the Slurm and munge programs are installed, else what is missing."""
    missing = [path for path in DAEMONS.values() if not os.access(path, os.X_OK)]
    missing += [name for name in CLIENTS if shutil.which(name) is None]
    return f"not installed: {', '.join(missing)} (Debian packages slurm-wlm, munge)" if missing else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (all held open while probing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _wait_gone(pid: int, start: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _start_time(pid) != start:
            return True
        time.sleep(0.05)
    return _start_time(pid) != start


def _end(pid: int, start: str) -> None:
    """SIGTERM the process if it is still the one recorded, then SIGKILL after STOP_TIMEOUT."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        if _start_time(pid) != start:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, start, wait):
            return


def _marked_processes(markers: Sequence[bytes]) -> list[tuple[int, str]]:
    """Processes (not this one) whose environment holds one of the ``NAME=value`` ``markers``."""
    needles = [b"\0" + marker + b"\0" for marker in markers]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        start = _start_time(int(entry.name))
        if start is not None and any(needle in environ for needle in needles):
            found.append((int(entry.name), start))
    return found


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmPeerError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    """A one-node Slurm cluster under ``root_dir``; a context manager (``with SlurmCluster(d) as c``).

    Args:
        root_dir: created if needed and made 0755 (job accounts must traverse it, so its
            parents must be traversable too); holds ``slurm.conf``, the munge key and socket,
            state, spool, pid and log files, and the record of started daemons.
        partitions: partition names, all on the one node; the first is the default.
        cpus: CPUs the node offers (default: this machine's); more than the machine has
            overcommits it (``SlurmdParameters=config_overrides``), for many trivial jobs.
        extra_config: further ``slurm.conf`` lines (e.g. ``SchedulerParameters=...``).

    Attributes:
        node: the node name (``hostname -s``), reached at 127.0.0.1.
        conf: path of ``slurm.conf``.
    """

    def __init__(self, root_dir: str | os.PathLike[str], partitions: Sequence[str] = ("debug", "long"), *,
                 cpus: int | None = None, extra_config: Sequence[str] = ()) -> None:
        if not partitions:
            raise ValueError("at least one partition is needed")
        self.root = Path(root_dir).resolve()
        self.partitions = list(partitions)
        self.node_cpus = cpus
        self.extra_config = list(extra_config)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge-run" / "munge.socket"
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    # -- environment and client commands ------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Variables every client command needs: ``SLURM_CONF`` and the cluster marker."""
        return {"SLURM_CONF": str(self.conf), MARKER: str(self.root)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a client command (``sbatch``, ``squeue``, ...) against this cluster.

        Args:
            cmd: program and arguments.
            check: raise on a non-zero exit status.
            timeout: seconds before the command is killed.

        Raises:
            SlurmPeerError: ``check`` and the command failed (its output attached).
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env.update(self.env)
        result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise SlurmPeerError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def sbatch(self, script: str | os.PathLike[str], *options: str) -> str:
        """Submit ``script`` with ``sbatch --parsable`` and extra options; returns the job id."""
        return self.run("sbatch", "--parsable", *options, str(script)).stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of ``job_id`` as ``Key=Value`` pairs (``JobState``, ``ExitCode``...)."""
        return parse_scontrol(self.run("scontrol", "show", "job", "--oneliner", job_id).stdout)

    def node_state(self) -> str:
        """The node's state as ``sinfo -h -N -o %T`` prints it (``idle``, ``down``, ``allocated``...)."""
        return self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T").stdout.split()[0]

    def cpus(self, partition: str | None = None) -> CpuCounts:
        """CPU counts of the cluster, or of one partition."""
        where = ["-p", partition] if partition else []
        return parse_cpus(self.run("sinfo", "-h", "-N", *where, "-o", "%N %C").stdout)

    def queue(self) -> dict[str, str]:
        """Job id → state of the jobs squeue lists (pending, running, completing)."""
        return parse_job_states(self.run("squeue", "-h", "-o", "%i %T").stdout)

    def logs(self) -> str:
        """The daemons' log files, for error messages."""
        parts = []
        for log in self._log_files():
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # -- start and stop -------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        """Write the key and configuration, start munged, slurmctld and slurmd, wait for the node.

        Returns self once ``sinfo`` shows the node idle (within 60 s). A start whose daemon found
        its port taken (another process bound it after the probe: the daemon's log says so) is
        stopped and tried again with fresh ports and state, :data:`tests.port_support.PORT_TRIES`
        times in all; any other failure fails at once.

        Raises:
            SlurmPeerError: a program is missing or the cluster did not come up (logs attached);
                whatever was started is stopped again.
        """
        missing = have_slurm()
        if missing:
            raise SlurmPeerError(missing)
        if (self.root / RECORD).exists():
            raise SlurmPeerError(f"a cluster is already recorded in {self.root}; stop it first")
        for attempt in range(PORT_TRIES):  # a probed port may be taken before a daemon binds it
            logged = self._log_sizes()
            try:
                self._prepare()
                self._start_munged()
                self._wait(self._munge_works, "munged to answer")
                for name in ("slurmctld", "slurmd"):
                    self._spawn(name, [DAEMONS[name], "-D", "-f", str(self.conf)]
                                + (["-N", self.node] if name == "slurmd" else []))
                self._wait(lambda: self.node_state() == "idle", f"node {self.node} to be idle")
                return self
            except SlurmPeerError:
                self.stop()
                if attempt == PORT_TRIES - 1 or not self._port_was_taken(logged):
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _log_files(self) -> list[Path]:
        return sorted([*self.root.glob("*.log"), *self.root.glob("*.out")])

    def _log_sizes(self) -> dict[Path, int]:
        return {log: log.stat().st_size for log in self._log_files()}

    def _port_was_taken(self, logged: dict[Path, int]) -> bool:
        """A daemon logged, after the sizes ``logged``, that its port is in use."""
        for log in self._log_files():
            with log.open("rb") as file:
                file.seek(logged.get(log, 0))
                if ADDRESS_IN_USE.encode() in file.read():
                    return True
        return False

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        munge_dir = self.root / "munge"
        munge_dir.mkdir(mode=0o700, exist_ok=True)
        self.munge_socket.parent.mkdir(mode=0o755, exist_ok=True)
        for sub in ("state", "spool"):  # fresh: the state of a failed attempt names another cluster
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(mode=0o755)
        key = munge_dir / "munge.key"
        key.unlink(missing_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(1024))
        ctld_port, slurmd_port = free_ports(2)
        self.conf.write_text(self._config(ctld_port, slurmd_port))

    def _config(self, ctld_port: int, slurmd_port: int) -> str:
        """``slurm.conf`` text: peers.md §13 values, own ports, every path under the root."""
        root = self.root
        real = os.cpu_count() or 1
        cpus = self.node_cpus or real
        memory = _memory_mb() * 8 // 10
        lines = [
            f"ClusterName=wmp{secrets.token_hex(3)}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MailProg=/bin/true",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "ReturnToService=1",  # a node an admin (or a test) set DOWN stays down until RESUME
            "KillWait=5",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN",
        ]
        if cpus != real:  # more job slots than cores (benchmarks of trivial jobs): slurmd trusts the config
            lines.append("SlurmdParameters=config_overrides")
        lines += self.extra_config
        for index, name in enumerate(self.partitions):
            default = "YES" if index == 0 else "NO"
            lines.append(f"PartitionName={name} Nodes={self.node} Default={default} MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def crash_node(self) -> None:
        """Kill the node as a power cut would: SIGKILL to slurmd, its job steps and every process
        of the cluster's jobs (nothing gets to write a last word); slurmctld and munged keep
        running. :meth:`start_slurmd` brings the node's daemon back."""
        keep = {(int(str(r["pid"])), str(r["start"])) for r in self._records() if r["name"] != "slurmd"}
        victims = [(pid, start) for pid, start in _marked_processes(self._markers()) if (pid, start) not in keep]
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # all frozen first: none sees another die
            for pid, start in victims:
                if _start_time(pid) == start:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        for name, child in self._children:
            if name == "slurmd":
                child.wait()
        self._children = [(name, child) for name, child in self._children if name != "slurmd"]

    def start_slurmd(self) -> None:
        """Start slurmd again (after :meth:`crash_node`) and wait until the controller hears it
        (the node no longer marked not responding); a node set DOWN stays down until RESUME."""
        self._spawn("slurmd", [DAEMONS["slurmd"], "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(lambda: not self.node_state().endswith("*"), f"slurmd on {self.node} to respond")

    def stop_controller(self) -> None:
        """Stop slurmctld (SIGTERM, as an administrator's restart does: it saves its state and
        exits) and wait until it is gone; slurmd, munged and the jobs on the node keep running.
        :meth:`start_controller` starts it again on its saved state."""
        records = self._records()
        for record in records:
            if record["name"] == "slurmctld":
                _end(int(str(record["pid"])), str(record["start"]))
        for name, child in self._children:
            if name == "slurmctld":
                child.wait()
        self._children = [(name, child) for name, child in self._children if name != "slurmctld"]
        (self.root / RECORD).write_text(json.dumps([r for r in records if r["name"] != "slurmctld"]))

    def start_controller(self) -> None:
        """Start slurmctld again (after :meth:`stop_controller`), on the state it saved, and
        wait until it answers squeue."""
        self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-f", str(self.conf)])
        self._wait(lambda: self.run("squeue", "-h", check=False, timeout=30).returncode == 0
                   and not self.node_state().startswith("unknown"), "slurmctld to answer again and hear the node")

    def restart_controller(self) -> None:
        """Stop and start slurmctld once the queue is empty. Slurm 22.05's sinfo keeps showing
        the node ``mixed`` (scontrol: IDLE, no CPU allocated) after a restart that recovered a
        running job, once that job has ended, until the controller starts again without it."""
        self._wait(lambda: not self.queue(), "the queue to be empty")
        self.stop_controller()
        self.start_controller()

    @contextlib.contextmanager
    def controller_down(self) -> Iterator[None]:
        """slurmctld stopped inside the block (:meth:`stop_controller`), started again after it."""
        self.stop_controller()
        try:
            yield
        finally:
            self.start_controller()

    def _start_munged(self) -> None:
        munge_dir = self.root / "munge"
        self._spawn("munged", [
            DAEMONS["munged"], "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={munge_dir / 'munge.key'}",
            f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ])

    def _munge_works(self) -> bool:
        if not self.munge_socket.exists():
            return False
        credential = self.run("munge", "-n", f"--socket={self.munge_socket}", check=False, timeout=10)
        return credential.returncode == 0 and credential.stdout.startswith("MUNGE:")

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env.update(self.env)
        with open(self.root / f"{name}.out", "ab") as out:
            child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True, cwd=self.root)
        self._children.append((name, child))
        start = _start_time(child.pid)
        records = self._records()
        records.append({"name": name, "pid": child.pid, "start": start})
        (self.root / RECORD).write_text(json.dumps(records))

    def _records(self) -> list[dict[str, object]]:
        try:
            records: list[dict[str, object]] = json.loads((self.root / RECORD).read_text())
        except FileNotFoundError:
            return []
        return records

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, child in self._children:
                if child.poll() is not None:
                    raise SlurmPeerError(f"{name} exited ({child.returncode}) while waiting for "
                                         f"{what}; logs:\n{self.logs()}")
            try:
                if condition():
                    return
            except (SlurmPeerError, IndexError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)
        raise SlurmPeerError(f"gave up after {START_TIMEOUT:.0f} s waiting for {what}; logs:\n{self.logs()}")

    def _cancel_all(self) -> None:
        """scancel every job and wait (up to STOP_TIMEOUT) until squeue lists none."""
        listed = self.run("squeue", "-h", "-o", "%i", check=False, timeout=30)
        job_ids = listed.stdout.split()
        if listed.returncode != 0 or not job_ids:
            return
        self.run("scancel", *job_ids, check=False, timeout=30)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            listed = self.run("squeue", "-h", "-o", "%i", check=False, timeout=30)
            if listed.returncode != 0 or not listed.stdout.split():
                return
            time.sleep(0.2)

    def _markers(self) -> list[bytes]:
        """Environment entries that only this cluster's daemons, job steps and jobs carry."""
        markers = [f"{MARKER}={self.root}".encode()]
        try:
            conf = self.conf.read_text()
        except FileNotFoundError:
            return markers
        for line in conf.splitlines():
            if line.startswith("ClusterName="):
                markers.append(f"SLURM_CLUSTER_NAME={line.partition('=')[2]}".encode())
        return markers

    def stop(self) -> None:
        """Stop exactly what this cluster started; safe to call twice and from another process.

        Cancels the cluster's jobs (waiting up to 15 s for squeue to be empty), stops slurmd,
        slurmctld and munged in that order by the pids and start times in ``daemons.json``
        (SIGTERM, SIGKILL after 15 s), then ends any job step or job process still carrying
        this cluster's markers, and removes the record.
        """
        records = self._records()
        running = {str(r["name"]): r for r in records if _start_time(int(str(r["pid"]))) == r["start"]}
        if "slurmctld" in running and "munged" in running:
            self._cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            for record in records:
                if record["name"] == name:
                    _end(int(str(record["pid"])), str(record["start"]))
        for pid, start in _marked_processes(self._markers()):
            _end(pid, start)
        for _name, child in self._children:
            child.wait()
        self._children.clear()
        (self.root / RECORD).unlink(missing_ok=True)


def remove_stale_clusters() -> None:
    """Stop and delete the clusters of test sessions whose pytest process is gone (killed)."""
    for owner in Path(tempfile.gettempdir()).glob(f"{SESSION_PREFIX}*/{OWNER}"):
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        SlurmCluster(owner.parent).stop()
        shutil.rmtree(owner.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """One throwaway cluster (partitions ``debug``, ``long``) for the whole test session.

    Its directory is a fresh 0755 ``/tmp/wmpslurm-*`` (job accounts must reach the spool;
    pytest's tmp_path is 0700 root), removed afterwards; the cluster is stopped even when
    tests fail, and the next session stops one left by a killed session. Without Slurm,
    without root, or when the cluster cannot start: :func:`tests.conftest.need_peer` (fails
    under ``CI=true``, skips elsewhere).
    """
    from tests.conftest import need_peer

    missing = have_slurm()
    if missing:
        need_peer(missing)
    if os.geteuid() != 0:
        need_peer("the Slurm peer runs its daemons and sbatch --uid as root")
    remove_stale_clusters()
    root = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
    (root / OWNER).write_text(str(os.getpid()))
    cluster = SlurmCluster(root)
    try:
        try:
            cluster.start()
        except SlurmPeerError as exc:
            need_peer(f"the throwaway Slurm cluster did not start: {exc}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``start DIR [--partition NAME ...]`` or ``stop DIR``; start prints the ``SLURM_CONF`` to export."""
    parser = argparse.ArgumentParser(prog="python -m tests.peers.slurm", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--partition", action="append", dest="partitions",
                        help="partition name (repeatable; default: debug and long)")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.directory, args.partitions or ("debug", "long"))
    if args.action == "stop":
        cluster.stop()
        print(f"stopped the Slurm cluster in {cluster.root}")
        return 0
    try:
        cluster.start()
    except SlurmPeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cluster._children.clear()  # the daemons outlive this command; `stop DIR` ends them
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
