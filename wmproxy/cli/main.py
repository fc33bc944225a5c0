"""Entry point of the ``wmproxy`` console script.

Verbs are imported only when run (:class:`LazyGroup`), so ``wmproxy --help`` and each verb
load no more than they need (issue 14: start-up time).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
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


class CliUsageError(click.ClickException):
    """A usage error (an unknown option, a missing argument, options that exclude each other) or
    an interrupted run, shown as any error of the CLI: ``Error - <kind>: <message>`` on stderr
    (the JSON error object on stdout with ``--json``), exit status 1, as gLite's commands return
    1 for their option errors (instead of click's ``Usage:`` text, ``Error: ...`` and exit 2, or
    ``Aborted!``)."""

    exit_code = 1

    def __init__(self, kind: str, message: str, as_json: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        from wmproxy.cli.common import echo, error_json

        message = " ".join(self.message.split())
        if self.as_json:
            click.echo(error_json(self.kind, message))
        else:
            echo(f"Error - {self.kind}: {message}", err=True)


class _NoVerb(click.exceptions.NoArgsIsHelpError):
    """``wmproxy`` without a verb: the help, exit 1 as gLite's commands without arguments."""

    exit_code = 1


def _usage_message(exc: click.UsageError) -> str:
    """The usage error's message and where the options are described."""
    path = exc.ctx.command_path if exc.ctx is not None else "wmproxy"
    return f"{exc.format_message().rstrip('.')} (see {path} --help)"


@contextlib.contextmanager
def _cli_errors(args: list[str]) -> Iterator[None]:
    """Raise click's usage errors and aborts of the block as :class:`CliUsageError`; ``args``:
    the command line, for ``--json``."""
    try:
        yield
    except CliUsageError:
        raise
    except click.exceptions.NoArgsIsHelpError as exc:
        raise _NoVerb(exc.ctx) from None
    except click.UsageError as exc:
        raise CliUsageError("Usage", _usage_message(exc), "--json" in args) from None
    except (click.Abort, KeyboardInterrupt, EOFError):
        raise CliUsageError("Aborted", "the command was interrupted", "--json" in args) from None


#: ``ctx.meta`` key of the group's command line (the verb's options included)
_ARGS = "wmproxy.args"


class LazyGroup(click.Group):
    """A click group whose :data:`VERBS` are imported on first use; commands added with
    ``add_command`` work as usual. Usage errors and interruptions are reported as the CLI's
    other errors (:class:`CliUsageError`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _cli_errors(list(args)):
            return super().make_context(info_name, list(args), parent, **extra)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _cli_errors(ctx.meta.get(_ARGS, [])):
            return super().invoke(ctx)

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
