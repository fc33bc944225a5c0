"""Where a verb's result goes: stdout, or the file of ``-o/--output`` (gLite UI)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from wmproxy.cli.common import echo, json_requested, run_options
from wmproxy.cli.errors import CliError
from wmproxy.cli.prompts import read_answer, yes_no

F = TypeVar("F", bound=Callable[..., Any])


def write_result(text: str, output_file: str | None) -> None:
    """Print ``text`` as is, or save it to ``output_file`` (:func:`save_text`) and say where it
    went (stderr); when the user chose not to save it, print it.

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    if not output_file or not save_text(text, output_file):
        echo(text, nl=False)
        return
    echo(f"The result has been written to {output_file}", err=True)


def append_text(text: str, output_file: str) -> None:
    """Append ``text`` to ``output_file`` (``perusal -o``: gLite ``Utils::saveListToFile``
    appends, unlike :func:`save_text`).

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    _write(text, output_file, "a")


def _write(text: str, output_file: str, mode: Literal["a", "w"]) -> None:
    """Write ``text`` to ``output_file`` opened with ``mode`` (``"a"`` appends, ``"w"``
    overwrites).

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    try:
        with open(output_file, mode, encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise CliError("Output", f"cannot write {output_file}: {exc.strerror}") from None


#: the question asked for an ``-o FILE`` that exists (gLite ``Utils::saveToFile``)
_EXISTS = ("\n\n{path} file already exists\nDo you want to append (a) or to overwrite (o) ?\n"
           "Press the 'q' key for not saving.\n ")


def save_text(text: str, output_file: str) -> bool:
    """Write ``text`` to ``output_file`` as gLite's ``Utils::saveToFile``: a new file is created;
    an existing one is overwritten under ``--noint`` or ``--json`` (each run's result alone in
    the file: a script reads the last status, a JSON document stays one document); else the user
    is asked to append (a), overwrite (o) or not save (q), again until one of them is answered;
    the end of input (no terminal) overwrites, as without a question.

    Returns:
        False when the user chose not to save (q), else True.

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    append = False
    if os.path.isfile(output_file) and not (run_options().noint or json_requested()):
        while True:
            answer = read_answer(_EXISTS.format(path=os.path.abspath(output_file)))
            if answer is None or answer in ("a", "o"):
                append = answer == "a"
                break
            if answer == "q":
                return False
    _write(text, output_file, "a" if append else "w")
    return True


def confirm_overwrite(output_file: str | None) -> None:
    """``cancel`` and ``list-match`` before anything is done, as gLite's
    ``Utils::askForFileOverwriting``: an ``-o FILE`` that exists (without ``--noint`` or
    ``--json``) is to be overwritten? Declined, or no answer (the default: no), it prints
    ``bye`` and exits 1 (gLite: ECONNABORTED). Accepted, :func:`save_text` asks again at the
    end whether to append, overwrite or not save, as gLite does."""
    if not output_file or not os.path.isfile(output_file) or run_options().noint or json_requested():
        return
    question = f"\n\n{os.path.abspath(output_file)} file already exists\nDo you want to overwrite it ?"
    if not yes_no(question, default=False):
        echo("bye", err=True)
        raise SystemExit(1)


def result_file_option(func: F) -> F:
    """``-o/--output FILE``: the verb's result (its stdout) is saved to FILE instead of printed
    (:func:`save_text`: overwritten under ``--noint``/``--json``, else the user is asked).
    Errors still go to stderr. Put it below ``common_options`` and the error reporting decorator
    (a verb that fails as a whole prints its error, not to FILE).

    A batch that partly failed prints the result of the jobs that succeeded, then exits 1
    (:func:`wmproxy.cli.history_opts.finish_batch`): that result is saved to FILE too."""

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
                          help="Write the result to FILE instead of printing it.")
    return option(wrapper)  # type: ignore[return-value]
