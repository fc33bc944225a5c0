"""JobSpec, the wrapper's input, as a plain class (no ``dataclasses``: the wrapper's start
costs every job), and what the wrapper imports when a backend starts it."""

from __future__ import annotations

import json
import marshal
import subprocess

import pytest

from tests.unit.execution.wrapper_support import PYTHON
from wmproxy.execution import identity
from wmproxy.execution.jobwrapper import DEFAULT_KILL_GRACE, DEFAULT_UMASK, JobSpec, WrapperError, evaluated_environment
from wmproxy.execution.worker import needs_shell, shell_fields


def test_defaults_are_fresh_per_spec() -> None:
    first, second = JobSpec(job_id="j1", executable="/bin/true"), JobSpec(job_id="j2", executable="/bin/true")
    assert first.arguments == [] and first.environment == {} and first.base_environment == {}
    assert first.arguments is not second.arguments and first.environment is not second.environment
    assert (first.umask, first.kill_grace, first.stdin, first.proxy) == (DEFAULT_UMASK, DEFAULT_KILL_GRACE, None, None)


def test_a_spec_is_frozen_and_compared_by_value() -> None:
    spec = JobSpec(job_id="j", executable="run.sh", arguments=["a"], environment={"A": "1"})
    with pytest.raises(AttributeError):
        spec.executable = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del spec.job_id  # type: ignore[misc]
    assert spec == JobSpec(job_id="j", executable="run.sh", arguments=["a"], environment={"A": "1"})
    assert spec != JobSpec(job_id="j", executable="run.sh", arguments=["b"], environment={"A": "1"})
    assert "executable='run.sh'" in repr(spec)


def test_json_round_trip_and_unknown_fields() -> None:
    spec = JobSpec(job_id="j", executable="run.sh", arguments=["a b"], stdout="out", stderr="out",
                   environment={"A": "1"}, proxy="user.proxy", prologue="pro.sh", prologue_arguments=["x"],
                   umask=0o027, kill_grace=2.5, base_environment={"LANG": "C"})
    assert JobSpec.from_json(spec.to_json()) == spec
    assert spec.as_dict()["arguments"] is not spec.arguments
    with pytest.raises(WrapperError, match="unknown job description fields"):
        JobSpec.from_json('{"version": 1, "job_id": "j", "executable": "x", "colour": "red"}')
    with pytest.raises(WrapperError, match="lacks job_id or executable"):
        JobSpec.from_json('{"version": 1, "job_id": "j"}')


def test_the_wrapper_starts_without_site_and_heavy_modules() -> None:
    done = subprocess.run([PYTHON, "-I", "-S", "-X", "importtime", str(identity.WRAPPER_PATH), "/nonexistent/work"],
                          capture_output=True, text=True, timeout=60, check=False)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "pwd" in imported and "_signal" in imported  # the measurement saw the wrapper's imports
    # children start through os.posix_spawn: neither subprocess nor contextlib (nor what they import);
    # the spec is marshal, the status JSON is jobwrapper.dumps, signals come from _signal: no json, re, enum
    assert not imported & {"site", "dataclasses", "inspect", "typing", "socket", "datetime", "shutil", "subprocess",
                           "contextlib", "threading", "selectors", "json", "re", "enum", "functools", "collections",
                           "signal"}
    assert done.returncode != 0


def test_a_spec_without_shell_fields_is_written_as_before_and_an_older_one_is_read() -> None:
    """``shell_arguments`` and ``shell_environment`` are written only when set: the spec of a job
    needing no shell is what a wrapper older than them reads, and a spec an older worker wrote
    (without them) runs as before (no shell)."""
    plain = JobSpec(job_id="j", executable="run.sh", arguments=["a"], environment={"A": "1"})
    written = marshal.loads(plain.to_bytes())  # noqa: S302 - the test's own bytes
    assert not {"shell_arguments", "shell_environment"} & set(written)
    assert not {"shell_arguments", "shell_environment"} & set(json.loads(plain.to_json()))
    older = JobSpec.from_bytes(marshal.dumps(written, 4))
    assert older == plain and older.shell_arguments is None and older.shell_environment == []
    shell = JobSpec(job_id="j", executable="run.sh", shell_arguments="$HOME", shell_environment=["A=$B"])
    assert JobSpec.from_bytes(shell.to_bytes()) == shell and JobSpec.from_json(shell.to_json()) == shell
    with pytest.raises(WrapperError, match="invalid shell_arguments"):
        JobSpec(job_id="j", executable="x", arguments=["a"], shell_arguments="b").check()
    with pytest.raises(WrapperError, match="invalid shell_environment"):
        JobSpec(job_id="j", executable="x", shell_environment=["A=\0"]).check()


@pytest.mark.parametrize(("environment", "arguments", "fields"), [
    (["A=1", "B=/opt/x:/y", "C=a=b", "D=é"], "-n 5 file.txt x=1",
     {"environment": {"A": "1", "B": "/opt/x:/y", "C": "a=b", "D": "é"}, "arguments": ["-n", "5", "file.txt", "x=1"]}),
    ([], "", {"environment": {}, "arguments": []}),
    (["A=1", "PATH=$PATH:/opt/bin"], "plain", {"environment": {}, "shell_environment": ["A=1", "PATH=$PATH:/opt/bin"],
                                               "arguments": ["plain"]}),
    (["A=hello world"], "a\tb", {"environment": {}, "shell_environment": ["A=hello world"], "arguments": ["a", "b"]}),
    (["A=1"], "$HOME/in 'a b'", {"environment": {"A": "1"}, "shell_arguments": "$HOME/in 'a b'"}),
], ids=["plain", "empty", "dollar", "blank", "quoted-arguments"])
def test_only_text_with_shell_syntax_goes_to_the_shell(environment: list[str], arguments: str,
                                                        fields: dict[str, object]) -> None:
    assert shell_fields(environment, arguments) == fields


@pytest.mark.parametrize("text", ["$X", "`x`", "a\\b", "'a'", '"a"', "*", "?", "[a]", "~", "#c", "a;b", "a&b", "a|b",
                                  "<a", ">a", "(a)", "a\nb", "a\rb", "a\xa0b"])
def test_every_shell_syntax_character_needs_the_shell(text: str) -> None:
    assert needs_shell(text, blanks=False) and needs_shell(text, blanks=True)
    assert needs_shell("a b", blanks=True) and not needs_shell("a b", blanks=False)


def test_the_evaluated_environment_leaves_out_what_the_shell_exports_of_itself() -> None:
    """dash exports ``PWD``, bash as ``sh`` also ``SHLVL``/``_``: not the job's unless given or named by an entry."""
    output = b"A=1 2\0SHLVL=0\0_=/usr/bin/env\0PWD=/w\0OLDPWD=/o\0E=x=y\0WMPROXY_ENVIRONMENT_EVALUATED=1\0"
    assert evaluated_environment(output, {"OLDPWD": "/o"}, ["A='1 2'", "PWD=/w"]) == {
        "A": "1 2", "PWD": "/w", "OLDPWD": "/o", "E": "x=y"}
    assert evaluated_environment(b"A=1\0", {}, []) is None  # no end mark: the evaluation did not finish
