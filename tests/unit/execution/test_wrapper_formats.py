"""The job wrapper's file formats without ``json``: the spec as ``marshal``
(``JobSpec.to_bytes``/``from_bytes``, the legacy ``job.json`` still read) and the status
files' JSON text from ``jobwrapper.dumps``, character for character ``json.dumps(value,
indent=1, sort_keys=True)``."""

from __future__ import annotations

import json
import marshal
import math
import random
import subprocess
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import DEADLINE, PYTHON, sh
from wmproxy.execution import identity
from wmproxy.execution.jobwrapper import SPEC_NAME, JobSpec, WrapperError, dumps

# --- the spec ------------------------------------------------------------------------------------


def _full_spec(shell: bool = False) -> JobSpec:
    """Every field set (``shell``: with ``shell_arguments`` and ``shell_environment``, else without)."""
    more: dict[str, object] = {"arguments": ["a b", "é\n"]}
    if shell:
        more = {"shell_arguments": "$HOME 'a b'", "shell_environment": ["P=$PATH:/x", "Q='☃ é'"]}
    return JobSpec(job_id="https://lb.example.org:9000/AbC-x_1yz", executable="run.sh",  # type: ignore[arg-type]
                   stdin="in", stdout="out", stderr="out", environment={"A": "1", "UNI": "☃"}, proxy="user.proxy",
                   prologue="pro.sh", prologue_arguments=["x"], epilogue="epi.sh", epilogue_arguments=[],
                   umask=0o027, kill_grace=2.5, base_environment={"LANG": "C"}, **more)


def _written(spec: JobSpec) -> dict[str, object]:
    """What ``spec`` is written as: its fields, the shell ones only when set (an older wrapper reads the rest)."""
    fields = {key: value for key, value in spec.as_dict().items()
              if key not in ("shell_arguments", "shell_environment") or value not in (None, [])}
    return {"version": 1, **fields}


@pytest.mark.parametrize("shell", [False, True], ids=["plain", "shell"])
def test_marshal_round_trip_is_plain_data_of_version_4(shell: bool) -> None:
    spec = _full_spec(shell)
    raw = spec.to_bytes()
    assert JobSpec.from_bytes(raw) == spec
    data = marshal.loads(raw)  # noqa: S302 - the test's own bytes
    assert data == _written(spec) and ("shell_environment" in data) == shell
    assert all(type(value) in (str, int, float, list, dict, type(None)) for value in data.values())
    assert SPEC_NAME == "job.marshal"


def test_integer_kill_grace_and_defaults_round_trip() -> None:
    spec = JobSpec(job_id="j", executable="/bin/true", kill_grace=3)
    assert JobSpec.from_bytes(spec.to_bytes()) == spec


@pytest.mark.parametrize(("data", "message"), [
    ({"version": 2, "job_id": "j", "executable": "x"}, "version"),
    (["version", 1], "version"),
    ({"job_id": "j", "executable": "x"}, "version"),
    ({"version": 1, "job_id": "j", "executable": "x", "colour": "red"}, "unknown job description fields"),
    ({"version": 1, "job_id": "j", "executable": "x", 7: "seven"}, "unknown job description fields"),
    ({"version": 1, "job_id": "j"}, "lacks job_id or executable"),
    ({"version": 1, "job_id": "j", "executable": "x", "arguments": ("a",)}, "invalid arguments"),
    ({"version": 1, "job_id": "j", "executable": b"x"}, "invalid executable"),
    ({"version": 1, "job_id": "j", "executable": "x", "umask": True}, "invalid umask"),
    ({"version": 1, "job_id": "j", "executable": "x", "kill_grace": complex(1, 1)}, "invalid kill_grace"),
    ({"version": 1, "job_id": "j", "executable": "x", "environment": {"A": 1}}, "must be strings"),
    ({"version": 1, "job_id": "j", "executable": "x", "environment": frozenset()}, "invalid environment"),
    ({"version": 1, "job_id": "j", "executable": "x", "stdout": "../out"}, "not a file name"),
])
def test_marshalled_specs_are_checked(data: object, message: str) -> None:
    with pytest.raises(WrapperError, match=message):
        JobSpec.from_bytes(marshal.dumps(data, 4))


@pytest.mark.parametrize("raw", [b"", b"\x00garbage", b"{", marshal.dumps({"version": 1}, 4)[:-3]])
def test_unreadable_bytes_are_a_wrapper_error(raw: bytes) -> None:
    with pytest.raises(WrapperError, match="job description"):
        JobSpec.from_bytes(raw)


def test_a_code_object_is_refused() -> None:
    code = compile("print('no')", "spec", "exec")
    with pytest.raises(WrapperError, match="version"):
        JobSpec.from_bytes(marshal.dumps(code, 4))
    with pytest.raises(WrapperError, match="invalid executable"):
        JobSpec.from_bytes(marshal.dumps({"version": 1, "job_id": "j", "executable": code}, 4))


@pytest.mark.parametrize("shell", [False, True], ids=["plain", "shell"])
def test_legacy_json_round_trip(shell: bool) -> None:
    spec = _full_spec(shell)
    assert JobSpec.from_json(spec.to_json()) == spec
    assert spec.to_json() == json.dumps(_written(spec), indent=1, sort_keys=True)


def test_the_worker_writes_job_marshal(tmp_path: Path) -> None:
    work = identity.prepare_work_dir(tmp_path, "job1", None)
    spec = _full_spec()
    identity.write_spec(work, spec, None)
    assert JobSpec.from_bytes((work / ".wmproxy" / "job.marshal").read_bytes()) == spec
    assert not (work / ".wmproxy" / "job.json").exists()


def test_the_wrapper_runs_a_work_dir_with_only_the_legacy_job_json(tmp_path: Path) -> None:
    """A work dir an older worker prepared (``job.json``, no ``job.marshal``) still runs."""
    work = tmp_path / "work"
    (work / ".wmproxy").mkdir(parents=True)
    (work / ".wmproxy" / "job.json").write_text(sh("echo legacy").to_json())
    done = subprocess.run([PYTHON, "-I", "-S", str(identity.WRAPPER_PATH), str(work)], cwd=work, env={},
                          capture_output=True, timeout=DEADLINE, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert (work / "std.out").read_text() == "legacy\n"
    status = json.loads((work / ".wmproxy" / "status.json").read_text())
    assert status["exit_code"] == 0 and status["payload_started"] is True


# --- the JSON encoder ----------------------------------------------------------------------------

STRINGS = [
    "", "plain", "with space", 'quote " inside', "back\\slash", "/slashes/", "tab\tnew\nline\rcr",
    "\b\f", "\x00\x01\x1f", "\x7f", "\x80\xff", "é", "naïve ☃", "日本語", "\u2028\u2029", "\ufeff",
    "\U0001f600 emoji", "\U00010000", "\U0010ffff", "\ud800 lone high", "\udfff lone low",
    "Job Wrapper error: the executable /bin/nö was not found", "~ tilde and space ",
]

VALUES: list[object] = [
    None, True, False, 0, 1, -1, 2**63, -(2**70), 0.0, -0.0, 1.5, 1e300, 1e-300, 0.1, 123456789.123,
    float("inf"), float("-inf"), float("nan"), [], {}, (), [None], {"": ""}, ["a", 1, None, True, [], {}],
    (1, "two", (3,)), {"b": 1, "a": [1, {"z": None, "y": [[]]}], "A": {}, "é": "é", "\u0000": 0},
    {"version": 1, "job_id": "https://lb.example.org:9000/AbC", "wrapper_pid": 4242, "hostname": "node-1",
     "started_at": "2026-12-02T06:20:00.123456Z", "ended_at": None, "payload_started": True,
     "payload_started_at": "2026-12-02T06:20:00.223456Z", "exit_code": 0, "signal": None, "cancelled_by": 15,
     "prologue": {"exit_code": None, "signal": 9, "failure": None},
     "epilogue": {"exit_code": None, "signal": None, "failure": "Job Wrapper error: the epilogue e.sh was not found"},
     "failure": None, "notes": ["LD_PRELOAD entry ./x.so does not exist: dropped", "ü"]},
    *STRINGS, [STRINGS], {s: s for s in STRINGS},
]


def _reference(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:40])
def test_dumps_is_json_dumps_indent_1_sort_keys(value: object) -> None:
    assert dumps(value) == _reference(value)


def _random_value(rng: random.Random, depth: int) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**80), 2**80)
    if kind == 2:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-300, 300), math.pi])
    if kind in (3, 4, 5):
        return "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0x20, 0x7f), rng.randrange(0x80, 0x800),
                                       rng.randrange(0x800, 0x110000)])) for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {str(_random_value(rng, 4)): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_dumps_matches_json_on_random_values() -> None:
    rng = random.Random(20261203)  # noqa: S311 - reproducible test values
    for _ in range(2000):
        value = _random_value(rng, 0)
        assert dumps(value) == _reference(value)


def test_dumps_refuses_what_it_does_not_write() -> None:
    with pytest.raises(TypeError):
        dumps({1: "int key"})
    with pytest.raises(TypeError):
        dumps({"set": {1}})
    with pytest.raises(TypeError):
        dumps(b"bytes")
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        dumps(loop)
