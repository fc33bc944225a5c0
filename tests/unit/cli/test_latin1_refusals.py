"""A file the CLI reads as text that holds a NUL byte or starts with a UTF-16 byte order mark
(a UTF-16 JDL from a Windows editor, a binary file) is refused with the reason, not read as
Latin-1 (which made a syntax error quoting the whole NUL-studded text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy.cli.errors import read_text_file, unreadable


@pytest.mark.parametrize("data", ['[ Executable = "/bin/true"; ]'.encode("utf-16"),
                                  '[ Executable = "/bin/true"; ]'.encode("utf-16-le"),
                                  b"\x7fELF\x02\x01\x01\x00\x00"])
def test_utf16_or_binary_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "job.jdl"
    path.write_bytes(data)
    with pytest.raises(OSError, match="UTF-16 or binary") as raised:
        read_text_file(path)
    assert unreadable(raised.value).startswith("not UTF-8 or Latin-1 text: UTF-16 or binary (byte 0x")


def test_latin1_without_nul_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "job.jdl"
    path.write_bytes(b'[ Arguments = "caf\xe9"; ]')
    assert read_text_file(path) == '[ Arguments = "café"; ]'
