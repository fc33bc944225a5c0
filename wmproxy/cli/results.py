"""Where a verb's result goes: stdout, or the file of ``-o/--output`` (gLite UI)."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

import click

from wmproxy.cli.common import echo
from wmproxy.cli.errors import CliError

F = TypeVar("F", bound=Callable[..., Any])


def write_result(text: str, output_file: str | None) -> None:
    """Print ``text`` as is, or append it to ``output_file`` and say where it went (stderr).

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    if not output_file:
        echo(text, nl=False)
        return
    append_text(text, output_file)
    echo(f"The result has been written to {output_file}", err=True)


def append_text(text: str, output_file: str) -> None:
    """Append ``text`` to ``output_file``.

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    try:
        with open(output_file, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise CliError("Output", f"cannot write {output_file}: {exc.strerror}") from None


def result_file_option(func: F) -> F:
    """``-o/--output FILE``: the verb's result (its stdout) is appended to FILE instead of
    printed (gLite UI). Errors still go to stderr. Put it below ``common_options`` and the
    error reporting decorator (a verb that fails as a whole prints its error, not to FILE).

    A batch that partly failed prints the result of the jobs that succeeded, then exits 1
    (:func:`wmproxy.cli.history_opts.finish_batch`): that result is appended to FILE too."""

    @functools.wraps(func)
    def wrapper(*args: Any, output_file: str | None = None, **kwargs: Any) -> Any:
        if not output_file:
            return func(*args, **kwargs)
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                result = func(*args, **kwargs)
        except SystemExit:
            if buffer.getvalue():
                write_result(buffer.getvalue(), output_file)
            raise
        write_result(buffer.getvalue(), output_file)
        return result

    option = click.option("-o", "--output", "output_file", metavar="FILE",
                          help="Append the result to FILE instead of printing it.")
    return option(wrapper)  # type: ignore[return-value]
