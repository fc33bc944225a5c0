"""``wmproxy-worker``: run the execution worker until SIGTERM/SIGINT (SIGHUP is logged and ignored).

Usage::

    wmproxy-worker [-c CONFIG] [--name NAME] [--cancel-running-on-exit]

Options:
    -c, --config FILE            the configuration file (else ``WMPROXY_CONFIG``).
    --name NAME                  the worker's stable name (default: the host name).
                                 Give each worker on one host its own name; a worker
                                 restarted under the same name adopts the jobs of its
                                 previous life at once. Refused while another live
                                 process heartbeats under that name.
    --cancel-running-on-exit     on SIGTERM/SIGINT, cancel the running jobs (their
                                 wrappers get SIGTERM, then SIGKILL after
                                 ``[execution] kill_grace``; the jobs end Aborted)
                                 before exiting. Without it the worker drains: it stops
                                 claiming and exits, leaving running jobs to their
                                 wrappers; they are adopted when a worker (re)starts on
                                 the host.

Privileges: with ``[mapping] mode`` other than ``none`` the worker runs every job as
its mapped account and needs exactly the effective capabilities CAP_CHOWN, CAP_SETUID,
CAP_SETGID, CAP_KILL and CAP_DAC_OVERRIDE (``wmproxy.execution.identity``; e.g.
systemd ``AmbientCapabilities=``, with ``KillMode=process`` so stopping the worker
leaves the jobs' wrappers alive); it refuses to start without them. With
``mode = none`` it runs jobs as its own user and needs no capability; as root it
refuses to start (jobs would run as root). The work root (``[execution] work_dir``) is
created 0755 if missing and must be owned by the worker's user, not writable by group
or others.

Exit status: 0 after a drain, 2 for a usage or configuration error, 3 when it refused to
start (privileges, work root, file modes, store key, schema, or the name in use), 1 when the
database could not be reached at start (:mod:`wmproxy.services.startup`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from wmproxy.config import ConfigError, Settings, load_settings
from wmproxy.errors import WMProxyError
from wmproxy.execution.backends import ExecutionBackend
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.cgroups import CgroupError, JobCgroups, MemoryLimitError, check_root
from wmproxy.execution.identity import IdentityError, check_work_root
from wmproxy.execution.purging import purge_tasks
from wmproxy.execution.worker import ExecutionWorker, PeriodicTask
from wmproxy.security.filemodes import FileModeError, check_private_files, unmapped_exposure
from wmproxy.security.writable import UnwritableDirectoryError, check_writable_dir
from wmproxy.services.brokering import refresh_ce_states
from wmproxy.services.hangup import ignore_hangup
from wmproxy.services.runtime import Runtime
from wmproxy.services.startup import EXIT_REFUSED, refuse
from wmproxy.services.storekey import StoreStateError, check_store


#: CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7).
class StartupError(click.ClickException):
    """The worker cannot run as configured (privileges, work root, name); exit status 3."""

    exit_code = EXIT_REFUSED


#: Backend kinds ``[execution] backend`` may list.
BACKEND_KINDS = ("local", "slurm")
REQUIRED_CAPABILITIES = {0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID"}


def missing_capabilities(status_text: str | None = None) -> list[str]:
    """The capabilities of :data:`REQUIRED_CAPABILITIES` this process lacks, from the
    ``CapEff`` line of ``/proc/self/status`` (or ``status_text``); all of them when it
    cannot be read."""
    if status_text is None:
        try:
            status_text = Path("/proc/self/status").read_text()
        except OSError:
            return list(REQUIRED_CAPABILITIES.values())
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
            return [name for bit, name in REQUIRED_CAPABILITIES.items() if not effective >> bit & 1]
    return list(REQUIRED_CAPABILITIES.values())


def check_privileges(settings: Settings) -> None:
    """Refuse to run without what the configuration needs (see the module doc).

    Raises:
        StartupError: mapping is on and capabilities are missing, or mapping is off
            and the worker runs as root (every job would run as root).
    """
    if settings.mapping.mode == "none":
        if os.geteuid() == 0:
            raise StartupError("[mapping] mode = none runs jobs as the worker's own user, and this worker runs as "
                               "root: run it as the service user, or configure the mapping")
        return
    missing = missing_capabilities()
    if missing:
        raise StartupError(
            f"[mapping] mode = {settings.mapping.mode} runs jobs as their mapped accounts, but this worker lacks "
            f"{', '.join(missing)} (grant them as ambient capabilities, e.g. systemd AmbientCapabilities=)")


def ensure_work_root(path: str) -> Path:
    """Create the work root (0755) if it is missing, check it, and return it.

    Raises:
        StartupError: it cannot be created, or is not a directory owned by this user
            and closed to group and others (``identity.check_work_root``).
    """
    root = Path(os.path.abspath(path))
    try:
        if not root.exists():
            root.mkdir(mode=0o755, parents=True)
            root.chmod(0o755)
        check_work_root(root)
    except (OSError, IdentityError) as exc:
        raise StartupError(f"unusable work root {root}: {exc}") from exc
    return root


def backend_kinds(text: str) -> list[str]:
    """The backend kinds of ``[execution] backend`` (comma-separated: ``local``, ``slurm``).

    Raises:
        click.UsageError: an empty list or an unknown kind (exit status 2).
    """
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in BACKEND_KINDS]
    if not kinds or unknown:
        raise click.UsageError(f"[execution] backend: expected a comma-separated list of {', '.join(BACKEND_KINDS)}, "
                               f"not {text!r}")
    return kinds


def build_backends(settings: Settings, kinds: list[str]) -> dict[str, ExecutionBackend]:
    """The backends of ``kinds``, sharing the one work root ``[execution] work_dir`` (created
    and checked), so a job's work dir and proxy copy are where its registered JDL says
    (``X509UserProxy``) whichever backend runs it; with Slurm it must be on the filesystem
    the nodes share. Released work dirs are removed in the background; the local backend's
    are emptied and reused by their account's next jobs when they can be.

    Raises:
        StartupError: a work root or the cgroup root is unusable.
    """
    backends: dict[str, ExecutionBackend] = {}
    root = ensure_work_root(settings.execution.work_dir)
    if "local" in kinds:
        backends["local"] = LocalExecutionBackend(root, kill_grace=settings.execution.kill_grace,
                                                  background_removal=True, reuse_work_dirs=True,
                                                  cgroups=job_cgroups(settings))
    if "slurm" in kinds:
        slurm = settings.slurm
        backends["slurm"] = SlurmExecutionBackend(
            root, slurm_conf=slurm.conf or None, bin_dir=slurm.bin_dir or None,
            python=slurm.python, max_pending=slurm.max_pending, kill_grace=settings.execution.kill_grace,
            background_removal=True, max_array=slurm.max_array, submit_settle=slurm.submit_settle)
    return backends


def job_cgroups(settings: Settings) -> JobCgroups | None:
    """The job cgroups of ``[execution] cgroup_root`` (with ``max_job_memory``), checked; None
    when it is empty (off).

    Raises:
        StartupError: the cgroup root is unusable, or ``max_job_memory`` is set and the jobs'
            cgroups cannot have it (or there are none).
    """
    execution = settings.execution
    if not execution.cgroup_root:
        if execution.max_job_memory:
            raise StartupError(f"refusing to start: [execution] max_job_memory = {execution.max_job_memory}: a "
                               "local job's memory is limited in its cgroup, and [execution] cgroup_root is empty: "
                               "set it to a cgroup v2 directory with the memory controller (docs/execution.md), "
                               "or set max_job_memory = 0 (no limit)")
        return None
    try:
        return check_root(execution.cgroup_root, execution.work_dir, execution.max_job_memory)
    except MemoryLimitError as exc:
        raise StartupError(f"refusing to start: [execution] max_job_memory = {execution.max_job_memory}: "
                           f"{exc}") from None
    except CgroupError as exc:
        raise StartupError(f"refusing to start: [execution] cgroup_root: {exc}") from None


def ce_refreshers(rt: Runtime, backends: dict[str, ExecutionBackend]) -> list[PeriodicTask]:
    """The worker's periodic tasks: with a Slurm backend, recording the dynamic state of the
    catalogue's Slurm CEs (``sinfo``/``squeue``) every ``[slurm] refresh_interval`` seconds."""
    slurm = backends.get("slurm")
    if not isinstance(slurm, SlurmExecutionBackend):
        return []
    commands = slurm.commands
    return [PeriodicTask("refreshing the Slurm CEs' state", rt.settings.slurm.refresh_interval,
                         lambda: refresh_ce_states(rt, "slurm", commands.partition_states))]


@click.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
@click.option("--name", default=None, help="stable worker name (default: the host name)")
@click.option("--cancel-running-on-exit", is_flag=True, default=False,
              help="cancel running jobs on SIGTERM instead of leaving them to be adopted")
def main(config_file: str | None, name: str | None, cancel_running_on_exit: bool) -> None:
    """Take started jobs from the database queue and run them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        refuse(exc, prefix="")
    try:
        check_private_files(settings)
    except FileModeError as exc:
        raise StartupError(f"refusing to start: {exc}") from None
    if (warning := unmapped_exposure(settings)) is not None:
        logging.getLogger(__name__).warning("%s", warning)
    kinds = backend_kinds(settings.execution.backend)
    check_privileges(settings)
    backends = build_backends(settings, kinds)
    try:
        check_store(settings)
        check_writable_dir(settings.execution.work_dir, "[execution] work_dir", "wmproxy-worker.service")
        check_writable_dir(settings.sandbox.root, "[sandbox] root", "wmproxy-worker.service")  # outputs
    except (StoreStateError, UnwritableDirectoryError) as exc:
        refuse(exc)  # status 3, or 1 for a database not reachable yet: the unit restarts it
    rt = Runtime.from_settings(settings)
    worker = ExecutionWorker(rt, backends, name, cancel_running_on_exit=cancel_running_on_exit,
                             periodic=[*ce_refreshers(rt, backends), *purge_tasks(rt)])
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    ignore_hangup("wmproxy-worker")
    try:
        worker.run(stop)
    except WMProxyError as exc:
        click.echo(f"wmproxy-worker: {exc}", err=True)
        sys.exit(3)
    logging.getLogger(__name__).info("execution worker %s stopped on %s (%s)", worker.name, received[0] if received
                                     else "request", "running jobs cancelled" if cancel_running_on_exit
                                     else "running jobs left to their wrappers")


if __name__ == "__main__":
    main()
