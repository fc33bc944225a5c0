"""Where a verb's result goes: stdout, or the file of ``-o/--output`` (gLite UI)."""

from __future__ import annotations

import click

from wmproxy.cli.errors import CliError


def write_result(text: str, output_file: str | None) -> None:
    """Print ``text`` as is, or append it to ``output_file`` and say where it went (stderr).

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    if not output_file:
        click.echo(text, nl=False)
        return
    try:
        with open(output_file, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise CliError("Output", f"cannot write {output_file}: {exc.strerror}") from None
    click.echo(f"The result has been written to {output_file}", err=True)
