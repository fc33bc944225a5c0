"""The local backend's copy of the input sandbox into a job's work dir (``local._stage_in``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wmproxy.execution import identity
from wmproxy.execution.backends import local


def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real = os.open

    def counted(path: str | os.PathLike[str], *args: object, **kwargs: object) -> int:
        opened.append(os.fspath(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counted)
    return opened


def test_a_job_without_input_files_opens_neither_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most jobs have no input sandbox (and no ``input/``): nothing to copy, nothing opened (no
    failed lookup of ``input/`` and no error made for it; docs/performance.md, stop 56)."""
    for made in (True, False):
        input_dir, work = tmp_path / f"input-{made}", tmp_path / f"work-{made}"
        work.mkdir()
        if made:
            input_dir.mkdir()
        opened = _counting_opens(monkeypatch)
        local._stage_in(input_dir, work, (), None)
        monkeypatch.undo()
        assert opened == []
        assert os.listdir(work) == []


def test_input_files_are_still_copied_and_checked(tmp_path: Path) -> None:
    input_dir, work = tmp_path / "input", tmp_path / "work"
    input_dir.mkdir()
    work.mkdir()
    (input_dir / "data.txt").write_bytes(b"payload")
    local._stage_in(input_dir, work, ("data.txt",), None)
    assert (work / "data.txt").read_bytes() == b"payload"
    with pytest.raises(identity.IdentityError, match="has not been uploaded"):
        local._stage_in(input_dir, work, ("missing.txt",), None)
    with pytest.raises(identity.IdentityError, match="has not been uploaded"):
        local._stage_in(tmp_path / "none", work, ("data.txt",), None)
