"""Finding the local InputSandbox files of a JDL."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy.cli.common import CliError
from wmproxy.cli.sandbox import input_sandbox_entries, local_input_files


class TestInputSandboxEntries:
    def test_list_and_single_string(self) -> None:
        assert input_sandbox_entries('[InputSandbox = {"a.sh", "b.txt"};]') == ["a.sh", "b.txt"]
        assert input_sandbox_entries('Executable = "x"; InputSandbox = "a.sh";') == ["a.sh"]

    def test_absent_or_unparsable_means_nothing_to_upload(self) -> None:
        assert input_sandbox_entries('[Executable = "/bin/true";]') == []
        assert input_sandbox_entries("this is not a JDL [") == []


class TestLocalInputFiles:
    def test_relative_paths_resolve_against_the_jdl_directory(self, tmp_path: Path) -> None:
        (tmp_path / "a.sh").write_text("echo")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b.txt").write_text("b")
        jdl = '[InputSandbox = {"a.sh", "sub/b.txt"};]'
        assert local_input_files(jdl, tmp_path) == [tmp_path / "a.sh", tmp_path / "sub" / "b.txt"]

    def test_remote_uris_are_skipped_and_file_uris_are_local(self, tmp_path: Path) -> None:
        (tmp_path / "c.txt").write_text("c")
        jdl = f'[InputSandbox = {{"gsiftp://se/x", "https://h/y", "file://{tmp_path}/c.txt"}};]'
        assert local_input_files(jdl, "/elsewhere") == [tmp_path / "c.txt"]

    def test_wildcards_expand(self, tmp_path: Path) -> None:
        for name in ("in1.dat", "in2.dat", "other"):
            (tmp_path / name).write_text(name)
        assert local_input_files('[InputSandbox = {"in*.dat"};]', tmp_path) == [
            tmp_path / "in1.dat",
            tmp_path / "in2.dat",
        ]

    def test_missing_file_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(CliError) as err:
            local_input_files('[InputSandbox = {"nope.sh"};]', tmp_path)
        assert err.value.kind == "InputSandbox"
        assert "nope.sh" in err.value.description
