"""Job cgroups (``[execution] cgroup_root``, wmproxy.execution.cgroups): every process of a job
run by the local backend, also one that left the wrapper's session (``setsid``) or was
double-forked, is killed when the job ends, is cancelled, is released by a later worker life,
or is found by the sweep after its work dir is gone; the job cannot leave its cgroup nor write
to any file of the tree. Real cgroups in a root each test creates under /sys/fs/cgroup (as
root) and removes; both the cgroup v2 hierarchy and the v1 freezer one, with and without
zygotes."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_peer
from tests.unit.execution.wrapper_support import (
    DEADLINE,
    HOST,
    alive,
    kill_session,
    launch,
    run,
    wait_for,
)
from wmproxy.domain import JobState
from wmproxy.execution.backends import RunHandle, local
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.cgroups import CgroupError, JobCgroups, check_root
from wmproxy.execution.identity import Account

BIN = Path(sys.executable).parent


def _mount(kind: str) -> str | None:
    """Where the cgroup v2 hierarchy (``v2``) or the cgroup v1 freezer hierarchy (``v1``) is
    mounted read-write, None if it is not."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _dev, where, fstype, options = line.split()[:4]
            opts = options.split(",")
            if "rw" not in opts:
                continue
            if kind == "v2" and fstype == "cgroup2":
                return where
            if kind == "v1" and fstype == "cgroup" and "freezer" in opts:
                return where
    return None


def _remove_tree(root: Path) -> None:
    """Kill everything in the cgroups below ``root`` (and in it), then remove them, deepest first."""
    if not root.exists():
        return
    deadline = time.monotonic() + DEADLINE
    for directory in [*sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), root]:
        while True:
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                (directory / "freezer.state").write_text("THAWED")
            try:
                directory.rmdir()
                break
            except OSError:
                assert time.monotonic() < deadline, f"cannot remove the test cgroup {directory}"
                time.sleep(0.05)


@pytest.fixture(params=["v2", "v1"])
def cgroup_root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh cgroup root (0755, root's) in the hierarchy of the parameter, removed afterwards."""
    if os.geteuid() != 0:
        need_peer("creating a cgroup root needs root")
    mount = _mount(request.param)
    if mount is None:
        need_peer(f"no read-write cgroup {request.param} hierarchy"
                  + (" with the freezer controller" if request.param == "v1" else ""))
    root = Path(mount) / f"wmptest-{secrets.token_hex(4)}"
    try:
        root.mkdir(mode=0o755)
    except OSError as exc:
        need_peer(f"cannot create a cgroup in {mount}: {exc}")
    try:
        yield root
    finally:
        _remove_tree(root)


@pytest.fixture(params=[True, False], ids=["zygote", "direct"])
def backend(request: pytest.FixtureRequest, work_root: Path, cgroup_root: Path) -> Iterator[LocalExecutionBackend]:
    (work_root / "jobs").mkdir(mode=0o755)
    backend = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=2.0, zygotes=request.param,
                                    cgroups=check_root(cgroup_root))
    yield backend
    backend.close()


#: A payload leaving two processes that the wrapper's session kill misses: one that called
#: ``setsid`` (its pid in bg.pid) and one double-forked into a session of its own (dbl.pid).
ESCAPES = ("setsid sleep 1000 & echo $! > bg.pid; "
           "(setsid sh -c 'sleep 1000 & echo $! > dbl.pid; exit 0' &); "
           "while [ ! -s dbl.pid ]; do sleep 0.05; done; echo up > up; ")


def _pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip().isdigit(), f"{path.name} to be written")
    return int(path.read_text())


def _cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def _cg(backend: LocalExecutionBackend, name: str) -> Path:
    """The cgroup ``name`` of the backend's jobs."""
    assert backend.cgroups is not None
    return Path(backend.cgroups.path(name))


def _gone(pid: int) -> bool:
    return not alive(pid)


def _end(backend: LocalExecutionBackend, handle: RunHandle) -> None:
    wait_for(lambda: backend.poll(handle) is not None, "the job to end")


def _release(backend: LocalExecutionBackend, handle: RunHandle, state: JobState) -> None:
    """Wait for the job's end, check its state, release it."""
    _end(backend, handle)
    outcome = backend.poll(handle)
    assert outcome is not None and outcome.state == state, outcome
    backend.release(handle)


@contextlib.contextmanager
def _escapes(handle: RunHandle) -> Iterator[tuple[int, int]]:
    """The two escaped processes' pids; whatever a failed test leaves is killed."""
    pids: list[int] = []
    try:
        pids = [_pid_in(handle.work_dir / "bg.pid"), _pid_in(handle.work_dir / "dbl.pid")]
        yield pids[0], pids[1]
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if handle.pid is not None and alive(handle.pid):
            kill_session(handle.pid)


class TestEscapedProcesses:
    def test_a_setsid_and_a_double_forked_process_are_killed_when_the_job_ends(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, ESCAPES + "exit 0")))
        with _escapes(handle) as (setsid, double):
            job_cgroup = cgroup_root / handle.work_dir.name
            assert f"/{cgroup_root.name}/{handle.work_dir.name}\n" in _cgroup_of(setsid)
            assert os.getsid(setsid) != handle.pid and os.getsid(double) != handle.pid  # out of the session
            _release(backend, handle, JobState.DONE)
            assert not alive(setsid) and not alive(double)
            assert not job_cgroup.exists()

    def test_they_are_killed_when_the_job_is_cancelled(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, ESCAPES + "while :; do sleep 0.1; done")))
        with _escapes(handle) as (setsid, double):
            wait_for((handle.work_dir / "up").exists, "the job to start")
            backend.cancel(handle)
            _release(backend, handle, JobState.CANCELLED)
            assert not alive(setsid) and not alive(double)
            assert not (cgroup_root / handle.work_dir.name).exists()

    def test_a_later_worker_life_kills_them_when_it_finds_the_ended_job(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        """The job ended while no worker followed it: the worker that finds it again releases it,
        and its cgroup with everything left in it goes."""
        handle = backend.spawn(backend.prepare(launch(input_dir, account, ESCAPES + "exit 0")))
        with _escapes(handle) as (setsid, double):
            _end(backend, handle)
            assert alive(setsid) and alive(double)
            heir = LocalExecutionBackend(backend.work_root, HOST, cgroups=check_root(cgroup_root))
            found = heir.attach(handle.ref, account)
            assert found is not None
            _release(heir, found, JobState.DONE)
            assert not alive(setsid) and not alive(double)
            assert not (cgroup_root / handle.work_dir.name).exists()

    def test_a_cgroup_whose_work_dir_is_gone_is_killed_by_tidy(
        self, backend: LocalExecutionBackend, cgroup_root: Path
    ) -> None:
        """A job that ended while the worker was down and whose work dir was purged since: its
        leftover cgroup is emptied and removed by the sweep; a job's cgroup with a work dir stays."""
        orphan, kept = cgroup_root / "https_3a_2f_2fgone", cgroup_root / "https_3a_2f_2fstill"
        orphan.mkdir()
        kept.mkdir()
        (backend.work_root / kept.name).mkdir()
        sleeper = subprocess.Popen(["/bin/sh", "-c", f'echo 0 > "{orphan}/cgroup.procs" && exec sleep 1000'],
                                   start_new_session=True)
        try:
            wait_for(lambda: str(sleeper.pid) in (orphan / "cgroup.procs").read_text().split(), "the leftover")
            backend.tidy()
            sleeper.wait(timeout=DEADLINE)
            assert not orphan.exists() and kept.exists()
        finally:
            sleeper.kill()
            sleeper.wait()


class TestConfinement:
    def test_the_job_cannot_leave_its_cgroup_nor_write_any_cgroup_file(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        if account is None:
            pytest.skip("a job of the worker's own user owns what the worker owns")
        parent = cgroup_root.parent
        script = ("for f in " + " ".join(f'"{d}"/cgroup.procs' for d in (cgroup_root, parent)) + " "
                  f'"{cgroup_root}"/*/cgroup.procs "{cgroup_root}"/*/cgroup.kill "{cgroup_root}"/*/cgroup.freeze '
                  f'"{cgroup_root}"/*/freezer.state "{cgroup_root}"/*/tasks "{cgroup_root}"/cgroup.* '
                  f'"{cgroup_root}"/*/cgroup.*; do '
                  '[ -e "$f" ] || continue; echo "$f" >> tried; '
                  'if (echo $$ > "$f") 2>/dev/null; then echo "$f" >> wrote; fi; done; '
                  f'mkdir "{cgroup_root}"/mine 2>/dev/null && echo mkdir >> wrote; '
                  "cat /proc/self/cgroup > cgroup")
        handle, outcome = run(backend, launch(input_dir, account, script))
        assert outcome.state == JobState.DONE, outcome
        tried = (handle.work_dir / "tried").read_text().split()
        assert f"{cgroup_root}/cgroup.procs" in tried and f"{parent}/cgroup.procs" in tried
        assert f"{cgroup_root}/{handle.work_dir.name}/cgroup.procs" in tried
        assert not (handle.work_dir / "wrote").exists(), (handle.work_dir / "wrote").read_text()
        assert f"/{cgroup_root.name}/{handle.work_dir.name}\n" in (handle.work_dir / "cgroup").read_text()
        backend.release(handle)


class TestZygoteCgroup:
    def test_the_zygote_runs_in_a_cgroup_of_its_own_killed_whole_when_it_is_closed(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        """A job of the account may trace its zygote (same uid) and fork from it: such a process
        starts in the zygote's cgroup, not outside the tree, and goes when the zygote is closed;
        the account's running jobs, in their own cgroups, do not."""
        (work_root / "jobs").mkdir(mode=0o755)
        backend = LocalExecutionBackend(work_root / "jobs", HOST, cgroups=check_root(cgroup_root))
        handle = backend.spawn(backend.prepare(launch(input_dir, account, "echo up > up; sleep 1000")))
        (launcher,) = backend._zygotes.values()
        zygote_cgroup = cgroup_root / local.zygote_cgroup(None if account is None else (account.uid, account.gid))
        forked = None
        try:
            wait_for((handle.work_dir / "up").exists, "the job to start")
            assert f"/{cgroup_root.name}/{zygote_cgroup.name}\n" in _cgroup_of(launcher.process.pid)
            assert f"/{cgroup_root.name}/{handle.work_dir.name}\n" in _cgroup_of(handle.pid or 0)
            user = [] if account is None else ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
                                               "--clear-groups"]
            forked = subprocess.Popen(  # what a job could make its zygote fork, as the account
                ["/bin/sh", "-c", f'echo 0 > "{zygote_cgroup}/cgroup.procs" && exec "$@"', "sh", *user,
                 "sleep", "1000"], start_new_session=True)
            wait_for(lambda: str(forked.pid) in (zygote_cgroup / "cgroup.procs").read_text().split(),
                     "the process in the zygote's cgroup")
            backend.close()
            forked.wait(timeout=DEADLINE)
            assert not zygote_cgroup.exists()
            assert handle.pid is not None and alive(handle.pid)  # the job runs on
        finally:
            if forked is not None:
                forked.kill()
                forked.wait()
            if handle.pid is not None and alive(handle.pid):
                kill_session(handle.pid)
            backend.cgroups.kill(handle.work_dir.name)  # type: ignore[union-attr]


class TestRoot:
    def test_a_missing_or_foreign_root_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(CgroupError, match="not usable"):
            JobCgroups(tmp_path / "nothing").check()
        with pytest.raises(CgroupError, match="not a directory of a cgroup hierarchy"):
            JobCgroups(tmp_path).check()

    def test_a_root_open_to_others_is_refused(self, cgroup_root: Path) -> None:
        cgroup_root.chmod(0o777)
        with pytest.raises(CgroupError, match="not writable by group or others"):
            check_root(cgroup_root)

    def test_the_kind_of_hierarchy_is_found_and_the_probe_removed(self, cgroup_root: Path) -> None:
        cgroups = check_root(cgroup_root)
        assert cgroups.version in (1, 2)
        assert [p for p in cgroup_root.iterdir() if p.is_dir()] == []

    def test_the_worker_refuses_to_start_with_an_unusable_cgroup_root(self, tmp_path: Path) -> None:
        (tmp_path / "grid-mapfile").write_text("")
        config = tmp_path / "wmproxy.conf"
        config.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db.sqlite\n[execution]\nwork_dir = {tmp_path}/work\n"
                          f"cgroup_root = {tmp_path}\n"
                          f"[mapping]\nmode = gridmap\ngridmap_file = {tmp_path}/grid-mapfile\n")
        done = subprocess.run([str(BIN / "wmproxy-worker"), "-c", str(config)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 3, done.stderr
        assert "cgroup_root" in done.stderr and "not a directory of a cgroup hierarchy" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


class TestJobsStartedWithoutCgroups:
    """A worker life with job cgroups adopts jobs an earlier life started without: they have no
    cgroup, and are killed by their session as without cgroups (review of the job cgroups, E1)."""

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_a_job_that_stopped_its_wrapper_is_killed_by_the_cancel_escalation(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        (work_root / "jobs").mkdir(mode=0o755)
        before = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=0.5)  # cgroups off
        handle = before.spawn(before.prepare(launch(input_dir, account,
                                                    "echo up > up; kill -STOP $PPID; sleep 1000")))
        pid = handle.pid
        assert pid is not None
        try:
            wait_for(lambda: _stopped(pid), "the wrapper to be stopped by its job")
            heir = LocalExecutionBackend(work_root / "jobs", HOST, kill_grace=0.5, cgroups=check_root(cgroup_root))
            found = heir.attach(handle.ref, account)
            assert found is not None
            heir.cancel(found)
            assert found.cancel_sent_at is not None
            found.cancel_sent_at -= 1000  # past the grace and the margin
            heir.cancel(found)
            wait_for(lambda: not alive(pid), "the escalated cancel to kill the stopped wrapper")
            wait_for(lambda: heir.poll(found) is not None, "the job to end")
            heir.release(found)
            heir.close()
        finally:
            if alive(pid):
                kill_session(pid)
            before.close()

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_what_a_killed_wrapper_left_in_its_session_is_killed_at_release(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        (work_root / "jobs").mkdir(mode=0o755)
        before = LocalExecutionBackend(work_root / "jobs", HOST)  # cgroups off
        handle = before.spawn(before.prepare(launch(input_dir, account,
                                                    "sleep 1000 & echo $! > bg.pid; sleep 1000")))
        assert handle.pid is not None
        left = _pid_in(handle.work_dir / "bg.pid")
        try:
            os.kill(handle.pid, signal.SIGKILL)  # the wrapper dies without a status; its session lives on
            heir = LocalExecutionBackend(work_root / "jobs", HOST, cgroups=check_root(cgroup_root))
            found = heir.attach(handle.ref, account)
            assert found is not None
            wait_for(lambda: heir.poll(found) is not None, "the wrapper's end to be seen")
            assert alive(left)
            heir.release(found)
            wait_for(lambda: not alive(left), "the session's leftover to be killed")
            heir.close()
        finally:
            if alive(left):
                os.kill(left, signal.SIGKILL)
            before.close()

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_a_job_in_its_cgroup_is_still_killed_whole(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """The cancel escalation of a job in its cgroup kills the cgroup, also what left the session."""
        handle = backend.spawn(backend.prepare(launch(input_dir, account,
                                                      ESCAPES + "kill -STOP $PPID; sleep 1000")))
        with _escapes(handle) as (setsid, double):
            pid = handle.pid
            assert pid is not None
            wait_for(lambda: _stopped(pid), "the wrapper to be stopped by its job")
            backend.cancel(handle)
            assert handle.cancel_sent_at is not None
            handle.cancel_sent_at -= 1000
            backend.cancel(handle)
            wait_for(lambda: not alive(pid) and _gone(setsid) and _gone(double), "the job's cgroup to be killed")
            _end(backend, handle)  # Aborted: the wrapper was killed before it could record the cancel
            backend.release(handle)


class TestFirstSweep:
    def test_the_first_tidy_sweeps_even_soon_after_boot(
        self, backend: LocalExecutionBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``time.monotonic()`` counts from boot: a worker started less than a minute after boot
        sweeps at its first tidy too."""
        orphan = _cg(backend, "https_3a_2f_2fgone")
        orphan.parent.mkdir(exist_ok=True)
        orphan.mkdir()
        with monkeypatch.context() as patch:
            patch.setattr(local.time, "monotonic", lambda: 5.0)
            backend.tidy()
        assert not orphan.exists()
