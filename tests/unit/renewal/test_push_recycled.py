"""The renewal worker's push of a renewed proxy into a job's work dir while the execution
worker ends the job and recycles its work dir for the next job of the account
(``reuse_work_dirs``, as ``wmproxy-worker`` runs): the proxy of the ended job's owner must never
land in the next job's work dir (with a static account, another user's job). The push and the
recycling take turns on the work dir's ``flock`` (:func:`identity.renew_proxy`,
:func:`identity.recycle_work_dir`); each test puts the execution worker's step at one point of
the push, deterministically."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import Pki
from tests.unit.execution.wrapper_support import DEADLINE, HOST, flock_held_elsewhere, launch, run
from wmproxy.domain import to_filename
from wmproxy.errors import SandboxError
from wmproxy.execution import identity
from wmproxy.execution.backends import JobLaunch
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.renewal.jobfiles import push_job_proxy
from wmproxy.sandbox.storage import FilesystemSandboxStorage

JOB_X = "https://lb.example.org:9000/JobXaaaaaaaaaaaaaaaaaa"  # alice's job, ending
JOB_Y = "https://lb.example.org:9000/JobYbbbbbbbbbbbbbbbbbb"  # bob's, next job of the same account
WORKTREE = Path(identity.__file__).resolve().parents[2]


@pytest.fixture
def rt(tmp_path: Path, work_root: Path) -> SimpleNamespace:
    return SimpleNamespace(storage=FilesystemSandboxStorage(tmp_path / "sandbox", work_root=work_root))


@pytest.fixture
def backend(work_root: Path) -> Iterator[LocalExecutionBackend]:
    backend = LocalExecutionBackend(work_root, HOST, reuse_work_dirs=True, zygotes=False)
    yield backend
    backend.close()


def _launch(input_dir: Path, account: Account, job_id: str, proxy_pem: bytes) -> JobLaunch:
    return dataclasses.replace(launch(input_dir, account, "exit 0", proxy_pem=proxy_pem, job_id=job_id),
                               job_id=job_id)


def _strays(work_dir: Path) -> list[str]:
    return [name for name in os.listdir(work_dir) if name.startswith(".user.proxy")]


def test_a_push_that_opened_the_work_dir_before_it_was_recycled_writes_nothing(
    rt: SimpleNamespace, backend: LocalExecutionBackend, input_dir: Path, job_account: Account, pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The execution worker releases job X and gives its emptied work dir (the same inode) to job
    Y just after the push for X opened it: the push finds the directory no longer at X's name."""
    alice, bob = pki.users["alice"].proxy.read_bytes(), pki.users["bob"].proxy.read_bytes()
    hx, _ = run(backend, _launch(input_dir, job_account, JOB_X, alice))
    inode = os.stat(hx.work_dir).st_ino
    real_enter = identity._DirFd.__enter__
    taken: dict[str, Any] = {}

    def opened_then_recycled(self: identity._DirFd) -> int:
        monkeypatch.setattr(identity._DirFd, "__enter__", real_enter)  # once: the push's open of X's work dir
        fd = real_enter(self)
        assert os.fstat(fd).st_ino == inode
        backend.release(hx)  # X's work dir emptied and kept as a spare...
        taken["y"] = backend.prepare(_launch(input_dir, job_account, JOB_Y, bob))  # ...Y's now, with bob's proxy
        return fd

    monkeypatch.setattr(identity._DirFd, "__enter__", opened_then_recycled)
    written = push_job_proxy(rt, JOB_X, alice)  # type: ignore[arg-type]
    hy = taken["y"]
    assert os.stat(hy.work_dir).st_ino == inode  # the interleaving that matters: Y got X's directory
    assert (hy.work_dir / "user.proxy").read_bytes() == bob
    assert not written and _strays(hy.work_dir) == []
    assert not os.path.lexists(hx.work_dir)
    backend.release(hy)


#: The execution worker, in its own process: it ends job X (unlinks its proxy copy, recycles
#: its work dir when it can, else removes it as release does) and prepares job Y (a spare of
#: the account if there is one) with bob's proxy.
_EXECUTION_WORKER = """
import json, os, sys
from pathlib import Path
from wmproxy.execution import identity
root, x_name, y_name, uid, gid, bob = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), \
    int(sys.argv[5]), Path(sys.argv[6]).read_bytes()
account = identity.Account(uid, gid, str(uid))
os.unlink(root / x_name / identity.PROXY_NAME)
spare = identity.recycle_work_dir(root, x_name, account)
if spare is None:
    identity.discard_work_dir(root, x_name)
if spare is None or not identity.reuse_work_dir(root, spare, y_name, account):
    identity.prepare_work_dir(root, y_name, account)
identity.install_proxy(root / y_name, bob, account, fresh=True)
print(json.dumps({"recycled": spare is not None, "inode": os.stat(root / y_name).st_ino}))
"""


def test_the_work_dir_is_not_recycled_while_a_push_writes_into_it(
    rt: SimpleNamespace, backend: LocalExecutionBackend, input_dir: Path, work_root: Path, job_account: Account,
    pki: Pki, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The execution worker (another process) ends job X and prepares job Y while the push for X
    has checked X's work dir and is writing into it: the push holds the work dir's lock, so the
    worker does not recycle it for Y (it sets it aside for removal, as a work dir it cannot reuse)."""
    alice, bob = pki.users["alice"].proxy.read_bytes(), pki.users["bob"]
    hx, _ = run(backend, _launch(input_dir, job_account, JOB_X, alice))
    inode = os.stat(hx.work_dir).st_ino
    real_replace = identity._replace_file
    worker: dict[str, Any] = {}

    def racing_replace(*args: Any, **kw: Any) -> None:
        monkeypatch.setattr(identity, "_replace_file", real_replace)  # once: the push's write
        done = subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(WORKTREE)!r})\n{_EXECUTION_WORKER}",
             str(work_root), to_filename(JOB_X), to_filename(JOB_Y), str(job_account.uid), str(job_account.gid),
             str(bob.proxy)],
            capture_output=True, text=True, timeout=DEADLINE, check=False, cwd="/",
        )
        assert done.returncode == 0, done.stderr
        worker.update(json.loads(done.stdout))
        real_replace(*args, **kw)

    monkeypatch.setattr(identity, "_replace_file", racing_replace)
    push_job_proxy(rt, JOB_X, alice)  # type: ignore[arg-type]
    y_dir = work_root / to_filename(JOB_Y)
    assert worker == {"recycled": False, "inode": os.stat(y_dir).st_ino}
    assert worker["inode"] != inode
    assert (y_dir / "user.proxy").read_bytes() == bob.proxy.read_bytes() and _strays(y_dir) == []
    identity.remove_work_dir(work_root, to_filename(JOB_Y))


def test_a_work_dir_locked_by_another_process_is_not_pushed_into(
    rt: SimpleNamespace, backend: LocalExecutionBackend, input_dir: Path, job_account: Account, pki: Pki,
) -> None:
    """A push never waits for the lock (the job's account can hold it for ever): it fails, the
    old copy intact, and the next pass tries again."""
    alice = pki.users["alice"].proxy.read_bytes()
    hx, _ = run(backend, _launch(input_dir, job_account, JOB_X, alice))
    with flock_held_elsewhere(hx.work_dir):
        with pytest.raises(SandboxError, match="locked by another process"):
            push_job_proxy(rt, JOB_X, b"renewed")  # type: ignore[arg-type]
        assert (hx.work_dir / "user.proxy").read_bytes() == alice and _strays(hx.work_dir) == []
    assert push_job_proxy(rt, JOB_X, b"renewed")  # type: ignore[arg-type]
    assert (hx.work_dir / "user.proxy").read_bytes() == b"renewed"
    backend.release(hx)
