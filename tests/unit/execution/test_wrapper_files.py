"""How the job wrapper writes ``started.json``: a new file (``O_EXCL``, no temporary name),
read back by the worker as written; an entry planted under that name (the job runs as the
same account) is replaced, never followed. Likewise the ``wrapper.log`` a wrapper forked by
the zygote creates when it first writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import DEADLINE, PYTHON
from wmproxy.execution import identity
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import WRAPPER_PATH
from wmproxy.execution.jobwrapper import LOG_NAME, STARTED_NAME, STATE_DIR, _write_new

DATA = {"version": 1, "job_id": "https://lb.example.org:9000/AbC", "wrapper_pid": 7, "payload_pid": 8,
        "payload_started_at": "2026-12-03T10:00:00.000000Z"}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[int]:
    (tmp_path / STATE_DIR).mkdir()
    fd = os.open(tmp_path / STATE_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_started_json_is_created_as_the_worker_reads_it(tmp_path: Path, state: int) -> None:
    _write_new(state, STARTED_NAME, DATA)
    assert json.loads((tmp_path / STATE_DIR / STARTED_NAME).read_text()) == DATA
    assert identity.payload_started(tmp_path, None)
    assert os.listdir(tmp_path / STATE_DIR) == [STARTED_NAME]  # no temporary file left


def test_a_planted_entry_is_replaced_not_followed(tmp_path: Path, state: int) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / STATE_DIR / STARTED_NAME).symlink_to(target)
    _write_new(state, STARTED_NAME, DATA)
    started = tmp_path / STATE_DIR / STARTED_NAME
    assert not started.is_symlink() and json.loads(started.read_text()) == DATA
    assert target.read_text() == "untouched"


def test_an_empty_started_json_counts_as_started(tmp_path: Path) -> None:
    work = tmp_path / "job"
    (work / STATE_DIR).mkdir(parents=True)
    (work / STATE_DIR / STARTED_NAME).write_bytes(b"")  # a crash between its creation and its fsync
    backend = LocalExecutionBackend(tmp_path, "node1.example.org", zygotes=False)
    assert backend.started(RunHandle(ref="local:node1.example.org:-:job", work_dir=work, account=None))


def test_the_deferred_log_replaces_a_planted_entry_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / STATE_DIR
    state.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (state / LOG_NAME).symlink_to(target)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(WRAPPER_PATH.parent)!r})
        import jobwrapper
        os.umask(0o777)
        jobwrapper._DEFERRED_LOG.append(os.open({str(state)!r}, os.O_RDONLY | os.O_DIRECTORY))
        jobwrapper._log("first line")
        print("then the prologue's", flush=True)
    """)
    done = subprocess.run([PYTHON, "-I", "-S", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=DEADLINE, check=True)
    assert done.returncode == 0
    log = state / LOG_NAME
    assert not log.is_symlink() and stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_text().endswith("first line\nthen the prologue's\n")
    assert target.read_text() == "untouched"
