"""The progress bar shows file names the server gives as written: their rich markup is not
interpreted (``[link=mailto:...]`` made the name a hyperlink, ``[reverse]`` restyled it), nor
are their control characters. On a real pseudo-terminal, where the bar is drawn."""

from __future__ import annotations

import os
import pty
import sys

import pytest

from wmproxy.cli import common

NAME = "[link=mailto:a@b][reverse]FAKE-NAME\x1b[2J"


def test_a_file_name_with_markup_is_shown_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "200")
    try:
        with common.progress_bar() as task:
            advance = task(NAME, 10)
            advance(5)
        terminal.flush()
    finally:
        terminal.close()
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal side is closed and everything was read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    shown = drawn.decode("utf-8", "replace")
    assert "[link=mailto:a@b][reverse]FAKE-NAME\\x1b[2J" in shown, shown
    assert "\x1b]8;" not in shown  # no hyperlink
    assert "\x1b[7m" not in shown  # no reverse video
    assert "\x1b[2J" not in shown  # the name's own escape is not sent
