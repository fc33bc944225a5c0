"""``wmproxy-worker``: run the execution worker until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

import click

from wmproxy.config import load_settings
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services.runtime import Runtime


@click.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
@click.option("--name", default=None, help="worker name recorded on claimed jobs")
def main(config_file: str | None, name: str | None) -> None:
    """Take started jobs from the database queue and run them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(config_file)
    if settings.execution.backend != "local":
        raise click.UsageError(f"unknown execution backend {settings.execution.backend!r}")
    worker = ExecutionWorker(Runtime.from_settings(settings), LocalExecutionBackend(), name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)


if __name__ == "__main__":
    main()
