"""Job cgroups end to end (``[execution] cgroup_root``), on SQLite and PostgreSQL: the real
worker, as the service user with its five capabilities (no systemd delegation: the root is a
directory the test makes in the cgroup v2 hierarchy and gives to the service user), runs alice's
jobs as her mapped account; a job leaves a process that called ``setsid`` and a double-forked
one behind, and both are gone once the job is Done, or Cancelled. Under ``CI=true`` a missing
cgroup v2 hierarchy fails the test.

With ``[execution] max_job_memory`` (and the memory controller given to the root's children) a
job that allocates beyond it ends Aborted, saying so; skipped where the cgroup v2 hierarchy has
no memory controller (a hybrid host binds it to cgroup v1)."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki, need_peer
from tests.integration.isolated import SYSTEM_PYTHON, Isolated, client, isolated_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.support import delegate, wait_for, wait_for_final

pytestmark = pytest.mark.integration

#: Leaves a ``setsid`` process and a double-forked ``sleep``, their pids in the shared directory
#: (each written from inside its new session, so neither can still be in the wrapper's when the
#: job goes on), then ends (``{end}``: ``exit 0``) or waits to be cancelled.
ESCAPING_JOB = (
    '[ Executable = "/bin/sh"; Arguments = "-c \\"'
    "setsid sh -c 'echo \\\\$$ > {shared}/{name}.setsid; exec sleep 1000' & "  # \\$: for the inner shell, not the one
    "(setsid sh -c 'sleep 1000 & echo \\\\$! > {shared}/{name}.double' &); "  # that reads Arguments (as gLite's eval)
    "while [ ! -s {shared}/{name}.double ] || [ ! -s {shared}/{name}.setsid ]; do sleep 0.05; done; {end}"
    '\\""; ]'
)


def _v2_mount() -> Path | None:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _dev, where, fstype, options = line.split()[:4]
            if fstype == "cgroup2" and "rw" in options.split(","):
                return Path(where)
    return None


@pytest.fixture(scope="module")
def cgroup_iso(pki: Pki, database_url: str) -> Iterator[tuple[Isolated, Path]]:
    mount = _v2_mount()
    if mount is None or os.geteuid() != 0:
        need_peer("a read-write cgroup v2 hierarchy and root to make a cgroup root in it")
    root = mount / f"wmptest-{secrets.token_hex(4)}"
    try:
        with isolated_deployment(pki, database_url, start_worker=False,
                                 extra_env={"WMPROXY_EXECUTION_CGROUP_ROOT": str(root)}) as iso:
            try:
                root.mkdir(mode=0o755)
            except OSError as exc:
                need_peer(f"cannot make a cgroup in {mount}: {exc}")
            os.chown(root, iso.service.pw_uid, iso.service.pw_gid)
            iso.start_worker()
            yield iso, root
    finally:  # the deployment stopped and its accounts' processes killed
        _remove(root)


def _remove(root: Path) -> None:
    """Kill what is left below ``root`` and remove it (deepest first)."""
    if not root.exists():
        return
    for directory in [*sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), root]:
        for pid in (directory / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                continue
        wait_for(lambda d=directory: _rmdir(d), bool, what=f"the test cgroup {directory} to go")


def _rmdir(directory: Path) -> bool:
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def alice(cgroup_iso: tuple[Isolated, Path], pki: Pki) -> ReferenceClient:
    iso, _root = cgroup_iso
    ref = reference_client(iso.deployment.endpoint, pki.users["alice"].proxy, iso.root / "certificates")
    delegate(ref, pki.users["alice"].proxy, "cg")
    return ref


def _pid(path: Path) -> int:
    text = wait_for(lambda: path.read_text().strip() if path.exists() else "", str.isdigit,
                    what=f"{path.name} to be written")
    return int(text)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class TestJobCgroups:
    @pytest.mark.parametrize("ending", ["done", "cancelled"])
    def test_what_left_the_session_goes_with_the_job(self, cgroup_iso: tuple[Isolated, Path],
                                                     alice: ReferenceClient, ending: str) -> None:
        iso, root = cgroup_iso
        name = f"{ending}-{secrets.token_hex(3)}"
        end = "exit 0" if ending == "done" else "while :; do sleep 0.1; done"
        job_id = alice.wmproxy.jobSubmit(ESCAPING_JOB.format(shared=iso.shared, name=name, end=end), "cg").id
        escaped = [_pid(iso.shared / f"{name}.setsid"), _pid(iso.shared / f"{name}.double")]
        try:
            uid = iso.mapped["alice"].pw_uid
            for pid in escaped:
                assert os.stat(f"/proc/{pid}").st_uid == uid
                assert f"/{root.name}/" in Path(f"/proc/{pid}/cgroup").read_text()
            if ending == "cancelled":
                alice.wmproxy.jobCancel(job_id)
                assert wait_for_final(alice, job_id).startswith("Cancelled")
            else:
                assert wait_for_final(alice, job_id) == "Done (Exit Code 0)"
            wait_for(lambda: all(_gone(pid) for pid in escaped), bool,
                     what="the processes that left the job's session to be killed")
            wait_for(lambda: not any(p.name.startswith("https") for p in root.rglob("*")), bool,
                     what="the job's cgroup to be removed")
        finally:
            for pid in escaped:
                if not _gone(pid):
                    os.kill(pid, signal.SIGKILL)


#: ``[execution] max_job_memory`` of :func:`memory_iso`'s worker: 64 MiB.
LIMIT = 64 << 20
#: A payload that fills four times :data:`LIMIT` with bytes (every page written: resident).
GREEDY = f'b = b"x" * {4 * LIMIT}\n'


@pytest.fixture(scope="module")
def memory_iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    """A deployment whose worker limits each job to :data:`LIMIT` in its cgroup, below a root
    with the memory controller for its children (``+memory``, as an operator enables it)."""
    mount = _v2_mount()
    if mount is None or os.geteuid() != 0:
        need_peer("a read-write cgroup v2 hierarchy and root to make a cgroup root in it")
    if "memory" not in (mount / "cgroup.subtree_control").read_text().split():
        pytest.skip("the cgroup v2 hierarchy gives no memory controller to its children here (a hybrid "
                    "host binds it to cgroup v1)")
    root = mount / f"wmptest-{secrets.token_hex(4)}"
    try:
        with isolated_deployment(pki, database_url, start_worker=False,
                                 extra_env={"WMPROXY_EXECUTION_CGROUP_ROOT": str(root),
                                            "WMPROXY_EXECUTION_MAX_JOB_MEMORY": str(LIMIT)}) as iso:
            root.mkdir(mode=0o755)
            (root / "cgroup.subtree_control").write_text("+memory")
            os.chown(root, iso.service.pw_uid, iso.service.pw_gid)
            (iso.root / "greedy.py").write_text(GREEDY)
            os.chmod(iso.root / "greedy.py", 0o644)
            iso.start_worker()
            yield iso
    finally:
        _remove(root)


class TestJobMemory:
    def test_a_job_beyond_its_memory_limit_ends_aborted_saying_so(self, memory_iso: Isolated, pki: Pki) -> None:
        bob = client(memory_iso, pki, "bob")
        greedy = bob.wmproxy.jobSubmit(f'[ Executable = "{SYSTEM_PYTHON}"; '
                                       f'Arguments = "-I -S {memory_iso.root / "greedy.py"}"; ]', "iso").id
        modest = bob.wmproxy.jobSubmit('[ Executable = "/bin/true"; ]', "iso").id
        final = wait_for_final(bob, greedy)
        assert final.startswith("Aborted") and "the job exceeded its memory limit of 64 MiB" in final, final
        assert wait_for_final(bob, modest) == "Done (Exit Code 0)"
