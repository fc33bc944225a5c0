"""How the job wrapper writes ``started.json``: a new file (``O_EXCL``, no temporary name),
read back by the worker as written; an entry planted under that name (the job runs as the
same account) is replaced, never followed. Its final status goes into that file, renamed to
``status.json``. Likewise the ``wrapper.log`` a wrapper forked by the zygote creates when it
first writes. What a trivial job's wrapper asks of the file system: one fsync (of an empty
``started.json``), two new inodes (``tmp/`` and ``started.json``). What a host crash can leave of
the final status, which is not synced, is a deep failure, never another outcome."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_peer
from tests.unit.execution.wrapper_support import DEADLINE, JOB, PYTHON
from wmproxy.domain import JobState
from wmproxy.execution import identity
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import WRAPPER_PATH
from wmproxy.execution.jobwrapper import (
    LOG_NAME,
    STARTED_NAME,
    STATE_DIR,
    STATUS_NAME,
    JobSpec,
    _finish_started,
    _write_new,
)

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
    fd = _write_new(state, STARTED_NAME, DATA)
    assert fd is not None
    os.close(fd)
    assert json.loads((tmp_path / STATE_DIR / STARTED_NAME).read_text()) == DATA
    assert identity.payload_started(tmp_path, None)
    assert os.listdir(tmp_path / STATE_DIR) == [STARTED_NAME]  # no temporary file left


def test_started_json_is_synced_while_empty(tmp_path: Path, state: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Synced with its content, the file has a block allocated on disk, whose discard the worker's
    # unlink of status.json waited for on a file system mounted with discard (stop 52); synced
    # empty, its name is as durable and its content stays in the page cache.
    sizes: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        sizes.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fd = _write_new(state, STARTED_NAME, DATA)
    assert fd is not None
    os.close(fd)
    assert sizes == [0]
    assert json.loads((tmp_path / STATE_DIR / STARTED_NAME).read_text()) == DATA


def test_a_planted_entry_is_replaced_not_followed(tmp_path: Path, state: int) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / STATE_DIR / STARTED_NAME).symlink_to(target)
    assert _write_new(state, STARTED_NAME, DATA) is None  # written aside and renamed: nothing kept open
    started = tmp_path / STATE_DIR / STARTED_NAME
    assert not started.is_symlink() and json.loads(started.read_text()) == DATA
    assert target.read_text() == "untouched"


def test_the_final_status_is_started_json_renamed(tmp_path: Path, state: int) -> None:
    fd = _write_new(state, STARTED_NAME, DATA)
    assert fd is not None
    inode = (tmp_path / STATE_DIR / STARTED_NAME).stat().st_ino
    final = {**DATA, "payload_started": True, "notes": ["a longer record than the first " * 20]}
    _finish_started(state, fd, final)
    assert os.listdir(tmp_path / STATE_DIR) == [STATUS_NAME]
    assert (tmp_path / STATE_DIR / STATUS_NAME).stat().st_ino == inode
    assert json.loads((tmp_path / STATE_DIR / STATUS_NAME).read_text()) == final
    short = {"version": 1}
    fd = _write_new(state, STARTED_NAME, final)
    assert fd is not None
    _finish_started(state, fd, short)  # shorter than what was there: nothing of it left
    assert json.loads((tmp_path / STATE_DIR / STATUS_NAME).read_text()) == short


def test_a_trivial_jobs_wrapper_makes_two_inodes_and_one_fsync(tmp_path: Path) -> None:
    if not os.path.exists("/usr/bin/strace"):
        need_peer("strace counts the wrapper's system calls")
    work = identity.prepare_work_dir(tmp_path, "job", None)
    identity.write_spec(work, JobSpec(job_id=JOB, executable="/bin/true"), None)  # no StdOutput/StdError
    trace = tmp_path / "trace"
    traced = "trace=fsync,fdatasync,openat,mkdirat,mkdir"
    wrapper = [PYTHON, "-I", "-S", str(WRAPPER_PATH), str(work)]
    subprocess.run(["/usr/bin/strace", "-f", "-qq", "-o", str(trace), "-e", traced, *wrapper],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=DEADLINE, check=True)
    calls = trace.read_text().splitlines()
    assert identity.read_status(work, None) is not None
    syncs = [c for c in calls if "fsync(" in c or "fdatasync(" in c or "sync_file_range(" in c]
    assert len(syncs) == 1, syncs  # started.json's: the payload is never taken for not started
    created = [c for c in calls if ("O_CREAT" in c and "= -1" not in c and "/dev/null" not in c) or "mkdir" in c]
    assert len(created) == 2, created  # tmp/ and started.json, which becomes status.json
    assert sorted(os.listdir(work / STATE_DIR)) == ["job.marshal", STATUS_NAME]


@pytest.mark.parametrize("left", [
    pytest.param({STARTED_NAME: json.dumps(DATA)}, id="the-rename-lost"),
    pytest.param({STATUS_NAME: json.dumps(DATA)}, id="the-rename-kept-the-content-not"),
    pytest.param({STATUS_NAME: ""}, id="an-empty-status"),
    pytest.param({STATUS_NAME: '{"version": 1, "payload_started": true, "exit_c'}, id="a-torn-status"),
])
def test_what_a_host_crash_leaves_of_the_final_status_is_a_deep_failure(tmp_path: Path, left: dict[str, str]) -> None:
    work = tmp_path / "job"
    (work / STATE_DIR).mkdir(parents=True)
    for name, text in left.items():
        (work / STATE_DIR / name).write_text(text)
    backend = LocalExecutionBackend(tmp_path, "node1.example.org", zygotes=False)
    handle = RunHandle(ref="local:node1.example.org:-:job", work_dir=work, account=None)
    outcome = backend.poll(handle)  # the wrapper is gone: the worker reads what is there
    assert outcome is not None
    assert (outcome.state, outcome.payload_started, outcome.exit_code) == (JobState.ABORTED, True, None)
    assert backend.started(handle)  # never prepared or run again as a job that did not start


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


def test_a_wrapper_makes_itself_non_dumpable_without_the_ctypes_package() -> None:
    """A job with an inspection agent has its wrapper call ``prctl(PR_SET_DUMPABLE, 0)``
    (``_guard_secret``): through ``_ctypes``, which the zygote has loaded, not the ``ctypes``
    package, whose import cost each such wrapper about 1.5 ms of CPU and 200 page faults."""
    probe = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(WRAPPER_PATH.parent)!r})
        import jobwrapper, _ctypes
        before = _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl"), (3, 0, 0, 0, 0))
        made = jobwrapper._make_non_dumpable()
        after = _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl"), (3, 0, 0, 0, 0))
        print(before, made, after, "ctypes" in sys.modules)
    """)
    out = subprocess.run([PYTHON, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=DEADLINE,
                         check=True).stdout.split()
    assert out == ["1", "True", "0", "False"], out  # PR_GET_DUMPABLE: 1 before, 0 after; no ctypes package


def test_a_wrapper_leading_its_session_finds_its_leftovers_without_listing_proc(tmp_path: Path) -> None:
    """The wrapper adopts its job's orphans, so what the job left in its session is among its
    descendants: it reads its children's list, not ``/proc``'s listing (a ``getsid`` of every
    process of the host, and a string each in a freshly forked wrapper)."""
    work = identity.prepare_work_dir(tmp_path, "job", None)
    identity.write_spec(work, JobSpec(job_id=JOB, executable="/bin/true"), None)
    trace = tmp_path / "trace"
    wrapper = ["setsid", PYTHON, "-I", "-S", str(WRAPPER_PATH), str(work)]  # setsid: it leads its session
    subprocess.run(["/usr/bin/strace", "-f", "-qq", "-o", str(trace), "-e", "trace=openat", *wrapper],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=DEADLINE, check=True)
    status = identity.read_status(work, None)
    assert status is not None and status.exit_code == 0
    calls = trace.read_text().splitlines()
    assert not [c for c in calls if '"/proc", ' in c], calls
    assert [c for c in calls if c.split('"')[1:2] and c.split('"')[1].endswith("/children")], calls


def test_a_trivial_jobs_wrapper_reads_its_children_twice_through_bare_descriptors(tmp_path: Path) -> None:
    """A job that left nothing costs its wrapper two reads of its children's list (before and
    after the one pass of the leftovers' kill, which starts from the first read), each an
    ``openat``, ``read``s and a ``close``: no buffered file object's ``fstat``, ``ioctl`` and
    ``lseek``s (docs/performance.md, stop 56)."""
    if not os.path.exists("/usr/bin/strace"):
        need_peer("strace counts the wrapper's system calls")
    work = identity.prepare_work_dir(tmp_path, "job", None)
    identity.write_spec(work, JobSpec(job_id=JOB, executable="/bin/true"), None)
    trace = tmp_path / "trace"
    wrapper = ["setsid", PYTHON, "-I", "-S", str(WRAPPER_PATH), str(work)]  # setsid: it leads its session
    traced = "trace=openat,read,close,ioctl,lseek,newfstatat,fstat,statx"
    subprocess.run(["/usr/bin/strace", "-f", "-qq", "-y", "-o", str(trace), "-e", traced, *wrapper],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=DEADLINE, check=True)
    status = identity.read_status(work, None)
    assert status is not None and status.exit_code == 0
    calls = [c for c in trace.read_text().splitlines() if "/children" in c]
    opened = [c for c in calls if "openat(" in c]
    assert len(opened) == 2, calls
    kinds = {c.split("(", 1)[0].split()[-1] for c in calls}
    assert kinds <= {"openat", "read", "close", "newfstatat"}, calls  # newfstatat: _adopt_orphans' exists()
    assert len([c for c in calls if "newfstatat(" in c]) <= 1, calls
