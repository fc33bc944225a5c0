"""The CLI's questions, asked as gLite's ``Utils::answerYes`` and ``Utils::saveToFile`` do:
on stderr (stdout stays parseable), one line read from stdin, and an end of input (a script
without a terminal, ``< /dev/null``) taken as the question's default instead of an abort."""

from __future__ import annotations

import click


def read_answer(question: str) -> str | None:
    """Print ``question`` on stderr and read one line from stdin: the line stripped, or None at
    the end of input."""
    click.echo(question, nl=False, err=True)
    try:
        return input().strip()
    except EOFError:
        click.echo(err=True)
        return None


def yes_no(question: str, default: bool) -> bool:
    """Ask ``<question> [y/n]<default> :`` until the answer starts with y or n (either case); an
    empty answer or the end of input is ``default`` (gLite ``answerYes``)."""
    shown = "y" if default else "n"
    while True:
        answer = read_answer(f"{question} [y/n]{shown} : ")
        if not answer:
            return default
        if answer[0] in "yY":
            return True
        if answer[0] in "nN":
            return False
