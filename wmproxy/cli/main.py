"""Entry point of the ``wmproxy`` console script.

Verbs are imported only when run (:class:`LazyGroup`), so ``wmproxy --help`` and each verb
load no more than they need (issue 14: start-up time).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

#: verb name -> "module:attribute" of its click command
VERBS = {
    "delegate-proxy": "wmproxy.cli.delegate:delegate_proxy",
    "submit": "wmproxy.cli.submit:submit",
    "status": "wmproxy.cli.status:status",
    "cancel": "wmproxy.cli.cancel:cancel",
    "output": "wmproxy.cli.output:output",
    "list-match": "wmproxy.cli.listmatch:list_match",
    "perusal": "wmproxy.cli.perusal:perusal",
    "info": "wmproxy.cli.info:info",
    "templates": "wmproxy.cli.templates:templates",
    "logging-info": "wmproxy.cli.logginginfo:logging_info",
    "inspect": "wmproxy.cli.inspect:inspect",
}

#: one-line help of each verb, shown by ``wmproxy --help`` without importing the verb
SUMMARIES = {
    "delegate-proxy": "Delegate the user proxy to the WMProxy (getProxyReq, sign, putProxy).",
    "submit": "Submit the job described by JDLFILE (or the collection in --collection DIR).",
    "status": "Print the status of jobs (and of their nodes).",
    "cancel": "Cancel jobs (jobCancel).",
    "output": "Retrieve the output sandbox of jobs (of every node for a compound job).",
    "list-match": "List the CEs matching a JDL (jobListMatch).",
    "perusal": "Peek at job output files while the job runs (file perusal).",
    "info": "Show a job's JDL or proxy, or a delegated proxy.",
    "templates": "Print JDL templates made by the service.",
    "logging-info": "Print the event history of jobs (registration, matching, running, retries, ...).",
    "inspect": "Run a command inside a running job and print its output (live inspection).",
}


class LazyGroup(click.Group):
    """A click group whose :data:`VERBS` are imported on first use; commands added with
    ``add_command`` work as usual."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*VERBS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = VERBS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name) or self._short_help(ctx, name)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str) -> str:
        command = self.get_command(ctx, name)
        return command.get_short_help_str() if command is not None else ""


def _version() -> str:
    from wmproxy.cli.common import client_version

    return client_version()


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"wmproxy version {_version()}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the client version and exit (a verb's --version also asks the service).")
def cli() -> None:
    """gLite WMS-style job submission to a WMProxy service."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; unexpected exceptions become one ``Error - <type>: <message>`` line (a JSON
    error object with ``--json``), exit 1."""
    try:
        cli.main(args=argv, prog_name="wmproxy", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - never show a traceback to users
        args: list[Any] = list(sys.argv[1:] if argv is None else argv)
        message = " ".join(str(exc).split())
        if "--json" in args:
            from wmproxy.cli.common import error_json

            click.echo(error_json(type(exc).__name__, message))
        else:
            from wmproxy.cli.common import echo

            echo(f"Error - {type(exc).__name__}: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
