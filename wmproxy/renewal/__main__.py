"""``wmproxy-renewal``: renew delegated proxies from MyProxy until SIGTERM/SIGINT.

SIGUSR1 starts a pass at once (as it forced a renewal in the original daemon); SIGHUP is
logged and ignored (:func:`wmproxy.services.hangup.ignore_hangup`). Several
workers may run against one database. Refuses to start when the store key or the SQLite
file is readable by group/others (:func:`wmproxy.security.filemodes.check_private_files`),
or when it cannot write the execution work root, where it puts renewed proxies
(:func:`wmproxy.security.writable.check_writable_dir`): then it exits with the status of
:func:`wmproxy.services.startup.exit_status` (2: configuration, 3: refused, 1: the database
unreachable). Exits 1 when the store key is rotated while it runs (it would seal with the
retired key): restart it with the new key file. ``--once`` logs what its pass did.
"""

from __future__ import annotations

import logging
import signal
import threading

import click

from wmproxy.config import ConfigError, load_settings
from wmproxy.renewal.worker import PassReport, RenewalWorker
from wmproxy.security.filemodes import check_private_files
from wmproxy.security.writable import check_writable_dir
from wmproxy.services.hangup import ignore_hangup
from wmproxy.services.runtime import Runtime
from wmproxy.services.startup import refuse
from wmproxy.services.storekey import RetiredKeyError, check_store


@click.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
@click.option("--name", default=None, help="worker name recorded on claimed renewal records")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="MyProxy exchanges run at once")
@click.option("--once", is_flag=True, help="run one pass and exit")
def main(config_file: str | None, name: str | None, threads: int, once: bool) -> None:
    """Renew the proxies of long jobs from MyProxy and abort the jobs whose proxy expired."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_file)
        check_private_files(settings)
        check_store(settings)
        check_writable_dir(settings.execution.work_dir, "[execution] work_dir", "wmproxy-renewal.service")
    except ConfigError as exc:
        refuse(exc)
    worker = RenewalWorker(Runtime.from_settings(settings), name, threads)
    try:
        if once:
            log_pass(worker.step())
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGUSR1, lambda *_: worker.wake.set())
        ignore_hangup("wmproxy-renewal")
        worker.run(stop)
    except RetiredKeyError as exc:  # a rotation forced while it ran (logged by the worker)
        raise click.ClickException(f"stopped: {exc}") from None


def log_pass(report: PassReport) -> None:
    """The one line ``--once`` logs, also when its pass did nothing."""
    logging.getLogger("wmproxy.renewal").info(
        "renewal pass done: %d renewal(s) attempted, %d renewed, %d job proxy file(s) rewritten, %d job(s) aborted "
        "(proxy expired), %d record(s) removed", report.attempted, report.renewed, report.pushed, report.aborted,
        report.deregistered)


if __name__ == "__main__":
    main()
