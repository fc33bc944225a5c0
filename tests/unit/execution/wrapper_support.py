"""Helpers shared by the job wrapper's and the identity layer's tests: the job id, the system
python, a throwaway local account, job specs running ``/bin/sh -c``, and process probes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import support
from tests.accounts import local_accounts
from tests.conftest import need_peer
from tests.deep_trees import remove_deep
from wmproxy.execution.backends import JobLaunch, JobOutcome, RunHandle
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import PROXY_NAME, Account
from wmproxy.execution.jobwrapper import JobSpec

JOB = "https://lb.example.org:9000/AbC-x_1yz"
PYTHON = "/usr/bin/python3"
DEADLINE = 60.0  # seconds; generous, the machine is shared


def create_account(short: str) -> Iterator[Account]:
    """Create a throwaway local account for a test session, delete it afterwards.

    The real name is ``short`` behind the session's random tag (:func:`tests.accounts.local_accounts`),
    so two test sessions on one machine never share an account.
    """
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        need_peer("running as another account needs root and useradd")
    try:
        with local_accounts({short: [short]}) as accounts:
            yield Account.from_name(accounts.name(short))
    except (OSError, subprocess.CalledProcessError) as exc:
        need_peer(f"useradd for {short} failed: {getattr(exc, 'stderr', '') or exc}")


def sh(script: str, **kw: object) -> JobSpec:
    """A job spec running ``/bin/sh -c script`` into std.out/std.err; ``kw`` overrides any field."""
    args: dict[str, object] = {"job_id": JOB, "executable": "/bin/sh", "arguments": ["-c", script],
                               "stdout": "std.out", "stderr": "std.err"}
    args.update(kw)
    return JobSpec(**args)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` every 0.05 s for up to :data:`DEADLINE` seconds (tests.support.wait_for)."""
    support.wait_for(condition, what=what, timeout=DEADLINE, interval=0.05)


#: Holds the exclusive ``flock`` of the directory ``argv[1]`` until its stdin ends.
_HOLD_FLOCK = ("import fcntl, os, sys\n"
               "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY); fcntl.flock(fd, fcntl.LOCK_EX)\n"
               "print('locked', flush=True); sys.stdin.read()")


@contextlib.contextmanager
def flock_held_elsewhere(directory: Path) -> Iterator[None]:
    """The ``flock`` of ``directory`` (a work dir) held by another process until the block ends."""
    holder = subprocess.Popen([sys.executable, "-I", "-c", _HOLD_FLOCK, str(directory)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.communicate("", timeout=DEADLINE)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or gone between the open and the read (ESRCH)
        return False


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session ``sid`` (a wrapper started by a test), until a look
    at ``/proc`` finds none alive: a process born after a look (a payload the wrapper was
    spawning as it was killed) is killed by the next, never left looping with its work dir gone."""
    deadline = time.monotonic() + DEADLINE
    while _kill_session_once(sid):
        assert time.monotonic() < deadline, f"processes of session {sid} outlived {DEADLINE} s of SIGKILLs"
        time.sleep(0.01)


def _kill_session_once(sid: int) -> bool:
    """SIGKILL the processes of session ``sid`` listed now; whether any of them was not a zombie."""
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                os.kill(int(entry), signal.SIGKILL)
                found = True
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return found


@pytest.fixture(scope="session")
def job_account() -> Iterator[Account]:
    yield from create_account("wrap")


@pytest.fixture
def work_root() -> Iterator[Path]:
    """A work root every account can traverse (pytest's tmp_path is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="wmpwrap-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        remove_deep(root)  # a job's tree may be deeper than shutil.rmtree can go


#: The host name the local backend tests record in references.
HOST = "node1.example.org"


@pytest.fixture
def account(request: pytest.FixtureRequest) -> Account | None:
    """The mapped account as root (a root worker never runs a job as itself), else None."""
    if os.geteuid() == 0:
        return request.getfixturevalue("job_account")  # type: ignore[no-any-return]
    return None


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    path = tmp_path / "input"
    path.mkdir()
    return path


def launch(input_dir: Path, account: Account | None, script: str, *, proxy_pem: bytes = b"",
           isb: tuple[str, ...] = (), **spec: object) -> JobLaunch:
    fields: dict[str, object] = {"job_id": JOB, "executable": "/bin/sh", "arguments": ["-c", script],
                                 "stdout": "out", "stderr": "err", "proxy": PROXY_NAME if proxy_pem else None}
    fields.update(spec)
    return JobLaunch(job_id=JOB, account=account, spec=JobSpec(**fields),  # type: ignore[arg-type]
                     input_dir=input_dir, isb_files=isb, proxy_pem=proxy_pem)


def run(backend: LocalExecutionBackend, job: JobLaunch) -> tuple[RunHandle, JobOutcome]:
    handle = backend.spawn(backend.prepare(job))
    deadline = time.monotonic() + DEADLINE
    while (outcome := backend.poll(handle)) is None:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    return handle, outcome
