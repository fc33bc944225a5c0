"""Entry point of the ``wmproxy`` console script."""

from __future__ import annotations

import sys
from importlib import metadata

import click

from wmproxy.cli.cancel import cancel
from wmproxy.cli.delegate import delegate_proxy
from wmproxy.cli.info import info
from wmproxy.cli.inspect import inspect
from wmproxy.cli.listmatch import list_match
from wmproxy.cli.logginginfo import logging_info
from wmproxy.cli.output import output
from wmproxy.cli.perusal import perusal
from wmproxy.cli.status import status
from wmproxy.cli.submit import submit
from wmproxy.cli.templates import templates


def _version() -> str:
    try:
        return metadata.version("wmproxy")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="wmproxy", message="%(prog)s version %(version)s")
def cli() -> None:
    """gLite WMS-style job submission to a WMProxy service."""


for _command in (delegate_proxy, submit, status, cancel, output, list_match, perusal, info, templates):
    cli.add_command(_command)
cli.add_command(logging_info)
cli.add_command(inspect)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; unexpected exceptions become one ``Error - <type>: <message>`` line, exit 1."""
    try:
        cli.main(args=argv, prog_name="wmproxy", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - never show a traceback to users
        click.echo(f"Error - {type(exc).__name__}: {' '.join(str(exc).split())}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
