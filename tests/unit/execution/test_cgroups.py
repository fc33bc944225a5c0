"""Job cgroups (``[execution] cgroup_root``, wmproxy.execution.cgroups): every process of a job
run by the local backend, also one that left the wrapper's session (``setsid``) or was
double-forked, is killed when the job ends, is cancelled, is released by a later worker life,
or is found by the sweep after its work dir is gone; the job cannot leave its cgroup nor write
to any file of the tree. Real cgroups in a root each test creates under /sys/fs/cgroup (as
root) and removes; both the cgroup v2 hierarchy and the v1 freezer one, with and without
zygotes. With a memory limit (``[execution] max_job_memory``) a job's cgroup has ``memory.max``
and a job beyond it ends Aborted saying so (where the cgroup v2 hierarchy has the memory
controller), and a root whose cgroups cannot have the limit is refused."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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
    JOB,
    alive,
    kill_session,
    launch,
    run,
    wait_for,
)
from wmproxy.domain import JobState
from wmproxy.execution import cgroups as cgroups_module
from wmproxy.execution.backends import BackendError, RunHandle, local
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.cgroups import CgroupError, JobCgroups, MemoryLimitError, check_root
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
#: Each pid is written from inside its new session, and the payload goes on only once both are
#: written, so the wrapper's session kill at the payload's end cannot catch either before it
#: left (a loaded machine may run the payload's end before a child's setsid()).
ESCAPES = ("setsid sh -c 'echo $$ > bg.pid; exec sleep 1000' & "
           "(setsid sh -c 'sleep 1000 & echo $! > dbl.pid; exit 0' &); "
           "while [ ! -s dbl.pid ] || [ ! -s bg.pid ]; do sleep 0.05; done; echo up > up; ")


def _pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip().isdigit(), f"{path.name} to be written")
    return int(path.read_text())


def _cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def _cg(backend: LocalExecutionBackend, name: str) -> Path:
    """The cgroup ``name`` of the backend's work root (in its directory below the cgroup root)."""
    assert backend.cgroups is not None
    return Path(backend.cgroups.path(name))


def _line(cgroup: Path, root: Path) -> str:
    """How ``/proc/<pid>/cgroup`` names ``cgroup`` (below the test's cgroup ``root``)."""
    return f"/{root.name}/{cgroup.relative_to(root)}\n"


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


def _settled(backend: LocalExecutionBackend) -> bool:
    """One tidy (it retries the cgroups a kill left busy); whether none is left busy."""
    backend.tidy()
    return not backend.cgroups.pending  # type: ignore[union-attr]


def _wait_killed(backend: LocalExecutionBackend, *pids: int) -> None:
    """The kill does not wait for the processes to go: wait for them (tidy retries a busy cgroup)."""
    wait_for(lambda: all(_gone(pid) for pid in pids) and _settled(backend), "the job's processes to be killed")


class TestEscapedProcesses:
    def test_a_setsid_and_a_double_forked_process_are_killed_when_the_job_ends(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        # the job ends once told (the file "go"): its wrapper then kills the two (it adopts its job's
        # orphans), so they are looked at before
        script = ESCAPES + "while [ ! -e go ]; do sleep 0.05; done; exit 0"
        handle = backend.spawn(backend.prepare(launch(input_dir, account, script)))
        with _escapes(handle) as (setsid, double):
            job_cgroup = _cg(backend, handle.work_dir.name)
            assert _line(job_cgroup, cgroup_root) in _cgroup_of(setsid)
            # out of the session: setsid(1) calls setsid() after the shell wrote its pid
            wait_for(lambda: os.getsid(setsid) != handle.pid and os.getsid(double) != handle.pid,
                     "the two processes to leave the wrapper's session")
            (handle.work_dir / "go").touch()
            _release(backend, handle, JobState.DONE)
            _wait_killed(backend, setsid, double)
            assert not job_cgroup.exists()

    def test_they_are_killed_when_the_job_is_cancelled(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        handle = backend.spawn(backend.prepare(launch(input_dir, account, ESCAPES + "while :; do sleep 0.1; done")))
        with _escapes(handle) as (setsid, double):
            wait_for((handle.work_dir / "up").exists, "the job to start")
            backend.cancel(handle)
            _release(backend, handle, JobState.CANCELLED)
            _wait_killed(backend, setsid, double)
            assert not _cg(backend, handle.work_dir.name).exists()

    def test_a_later_worker_life_kills_them_when_it_finds_the_ended_job(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        """The job ended while no worker followed it: the worker that finds it again releases it,
        and its cgroup with everything left in it goes. The job kills its wrapper (same uid), which
        would otherwise have killed the two itself (it adopts its job's orphans)."""
        handle = backend.spawn(backend.prepare(launch(input_dir, account, ESCAPES + "kill -9 $PPID; exit 0")))
        with _escapes(handle) as (setsid, double):
            _end(backend, handle)
            assert alive(setsid) and alive(double)
            heir = LocalExecutionBackend(backend.work_root, HOST, cgroups=check_root(cgroup_root))
            found = heir.attach(handle.ref, account)
            assert found is not None
            _release(heir, found, JobState.ABORTED)
            _wait_killed(heir, setsid, double)
            assert not _cg(heir, handle.work_dir.name).exists()

    def test_a_cgroup_whose_work_dir_is_gone_is_killed_by_tidy(
        self, backend: LocalExecutionBackend, cgroup_root: Path
    ) -> None:
        """A job that ended while the worker was down and whose work dir was purged since: its
        leftover cgroup is emptied and removed by the sweep; a job's cgroup with a work dir stays."""
        orphan, kept = _cg(backend, "https_3a_2f_2fgone"), _cg(backend, "https_3a_2f_2fstill")
        orphan.parent.mkdir(exist_ok=True)
        orphan.mkdir()
        kept.mkdir()
        (backend.work_root / kept.name).mkdir()
        sleeper = subprocess.Popen(["/bin/sh", "-c", f'echo 0 > "{orphan}/cgroup.procs" && exec sleep 1000'],
                                   start_new_session=True)
        try:
            wait_for(lambda: str(sleeper.pid) in (orphan / "cgroup.procs").read_text().split(), "the leftover")
            backend.tidy()
            sleeper.wait(timeout=DEADLINE)
            wait_for(lambda: _settled(backend), "tidy to remove the emptied cgroup")  # the kill does not wait
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
        base = Path(backend.cgroups.base)  # type: ignore[union-attr]
        script = ("for f in " + " ".join(f'"{d}"/cgroup.procs' for d in (cgroup_root, parent, base)) + " "
                  f'"{base}"/*/cgroup.procs "{base}"/*/cgroup.kill "{base}"/*/cgroup.freeze '
                  f'"{base}"/*/freezer.state "{base}"/*/tasks "{cgroup_root}"/cgroup.* "{base}"/cgroup.* '
                  f'"{base}"/*/cgroup.*; do '
                  '[ -e "$f" ] || continue; echo "$f" >> tried; '
                  'if (echo $$ > "$f") 2>/dev/null; then echo "$f" >> wrote; fi; done; '
                  f'mkdir "{cgroup_root}"/mine 2>/dev/null && echo mkdir >> wrote; '
                  f'mkdir "{base}"/mine 2>/dev/null && echo mkdir >> wrote; '
                  "cat /proc/self/cgroup > cgroup")
        handle, outcome = run(backend, launch(input_dir, account, script))
        assert outcome.state == JobState.DONE, outcome
        tried = (handle.work_dir / "tried").read_text().split()
        assert f"{cgroup_root}/cgroup.procs" in tried and f"{parent}/cgroup.procs" in tried
        assert f"{base}/cgroup.procs" in tried and f"{base}/{handle.work_dir.name}/cgroup.procs" in tried
        assert not (handle.work_dir / "wrote").exists(), (handle.work_dir / "wrote").read_text()
        assert _line(base / handle.work_dir.name, cgroup_root) in (handle.work_dir / "cgroup").read_text()
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
        zygote_cgroup = _cg(backend, local.zygote_cgroup(None if account is None else (account.uid, account.gid)))
        forked = None
        try:
            wait_for((handle.work_dir / "up").exists, "the job to start")
            assert _line(zygote_cgroup, cgroup_root) in _cgroup_of(launcher.process.pid)
            assert _line(_cg(backend, handle.work_dir.name), cgroup_root) in _cgroup_of(handle.pid or 0)
            user = [] if account is None else ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
                                               "--clear-groups"]
            forked = subprocess.Popen(  # what a job could make its zygote fork, as the account
                ["/bin/sh", "-c", f'echo 0 > "{zygote_cgroup}/cgroup.procs" && exec "$@"', "sh", *user,
                 "sleep", "1000"], start_new_session=True)
            wait_for(lambda: str(forked.pid) in (zygote_cgroup / "cgroup.procs").read_text().split(),
                     "the process in the zygote's cgroup")
            backend.close()
            forked.wait(timeout=DEADLINE)
            wait_for(lambda: _settled(backend) and not zygote_cgroup.exists(), "the zygote's cgroup to go")
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

    def test_the_kind_of_hierarchy_is_found_and_the_probe_removed(self, cgroup_root: Path, work_root: Path) -> None:
        cgroups = check_root(cgroup_root, work_root)
        assert cgroups.version in (1, 2)
        assert Path(cgroups.base).parent == cgroup_root
        assert [p.name for p in cgroup_root.iterdir() if p.is_dir()] == [Path(cgroups.base).name]
        assert [p for p in Path(cgroups.base).iterdir() if p.is_dir()] == []

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


class TestSharedRoot:
    """Workers of different work roots share a cgroup root: each keeps to its own directory
    below it, and sweeps only the names it makes (review of the job cgroups, E2)."""

    def test_a_workers_sweep_leaves_the_jobs_of_another_work_root_alone(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        (work_root / "a").mkdir(mode=0o755)
        (work_root / "b").mkdir(mode=0o755)
        a = LocalExecutionBackend(work_root / "a", HOST, cgroups=check_root(cgroup_root))
        b = LocalExecutionBackend(work_root / "b", HOST, cgroups=check_root(cgroup_root))
        handle = b.spawn(b.prepare(launch(input_dir, account, "echo up > up; sleep 1000")))
        try:
            wait_for((handle.work_dir / "up").exists, "B's job to start")
            a.tidy()
            assert handle.pid is not None and alive(handle.pid)
            assert b.poll(handle) is None
            assert _cg(b, handle.work_dir.name).is_dir()
            assert _cg(a, "x").parent != _cg(b, "x").parent
        finally:
            if handle.pid is not None and alive(handle.pid):
                kill_session(handle.pid)
            a.close()
            b.close()

    def test_the_sweep_touches_only_the_names_it_makes(
        self, backend: LocalExecutionBackend, cgroup_root: Path
    ) -> None:
        """Another program's cgroups beside the work roots' directories (systemd's ``.control``),
        a name of another shape in the work root's directory, a live worker's probe and zygote
        cgroups stay; a probe and a zygote cgroup of a process that is gone, or of an earlier
        process of a pid now reused, go."""
        base = _cg(backend, "x").parent
        base.mkdir(exist_ok=True)
        sleeper = subprocess.Popen(["sleep", "1000"])
        try:
            tag = f"{sleeper.pid}.{local.start_time(sleeper.pid)}"
            reused = f"{sleeper.pid}.{(local.start_time(sleeper.pid) or 0) + 1}"
            kept = [cgroup_root / ".control", cgroup_root / "https_3a_2f_2fnot-ours", base / ".control",
                    base / f".probe.{tag}.0a0b0c0d", base / f"zygote.{tag}.1000.1000", base / "zygote.nonsense",
                    base / f".probe.{reused}", base / f"zygote.{reused}.x"]
            swept = [base / f".probe.{reused}.0a0b0c0d", base / f"zygote.{reused}.1000.1000",
                     base / "https_3a_2f_2fgone"]
            kept = list(dict.fromkeys(kept))
            for path in kept + swept:
                path.mkdir()
            backend.tidy()
            assert [p for p in kept if not p.exists()] == []
            assert [p for p in swept if p.exists()] == []
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_a_zygote_cgroup_names_the_worker_process_with_its_start_time(
        self, backend: LocalExecutionBackend
    ) -> None:
        name = local.zygote_cgroup((1000, 1000))
        assert name == f"zygote.{os.getpid()}.{local.start_time(os.getpid())}.1000.1000"
        assert local._cgroup_in_use(backend.work_root, name)


class TestNonBlockingKill:
    """A cgroup that does not empty (a member in uninterruptible sleep on a hung mount never
    leaves; here a child cgroup keeps it busy) does not hold the worker: the kill returns at once
    and tidy tries again."""

    def test_the_release_does_not_wait_for_a_busy_cgroup_and_tidy_removes_it_later(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert backend.cgroups is not None
        handle, outcome = run(backend, launch(input_dir, account, "exit 0"))
        assert outcome.state == JobState.DONE
        job_cgroup = _cg(backend, handle.work_dir.name)
        stuck = job_cgroup / "stuck"
        stuck.mkdir()
        other = _cg(backend, "https_3a_2f_2fother")
        (other / "stuck").mkdir(parents=True)
        slept: list[float] = []
        with monkeypatch.context() as patch:
            patch.setattr(cgroups_module.time, "sleep", slept.append)
            backend.release(handle)
            assert backend.cgroups.kill(other.name) is False
            backend.tidy()
        assert sum(slept) < 0.1, f"the kills waited {sum(slept)} s"
        assert job_cgroup.is_dir() and other.is_dir()
        assert backend.cgroups.pending == {job_cgroup.name, other.name}
        stuck.rmdir()
        (other / "stuck").rmdir()
        assert backend.tidy(budget=0.0) == 0  # at least one per call, within the budget
        wait_for(lambda: _settled(backend), "tidy to remove the cgroups")
        assert not job_cgroup.exists() and not other.exists()

    def test_retries_take_the_longest_waiting_first(
        self, backend: LocalExecutionBackend
    ) -> None:
        """With a budget for one cgroup per tidy, two that never empty take turns (the first by
        name was always retried, the second never)."""
        cgroups = backend.cgroups
        assert cgroups is not None
        names = ["https_3a_2f_2fa", "https_3a_2f_2fb"]
        for name in names:
            (_cg(backend, name) / "stuck").mkdir(parents=True)
            assert cgroups.kill(name) is False
        tried: list[str] = []
        for _ in range(4):
            before = dict(cgroups._tried)
            cgroups.retry(budget=0.0)
            tried += [name for name in names if cgroups._tried.get(name) != before.get(name)]
        assert sorted(tried[:2]) == names and tried[2:] == tried[:2], tried  # in turns
        for name in names:
            (_cg(backend, name) / "stuck").rmdir()
        assert cgroups.retry() == 0
        assert not any(_cg(backend, name).exists() for name in names)

    def test_a_new_attempt_on_a_cgroup_still_busy_leaves_it_to_tidy(
        self, backend: LocalExecutionBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The job's next attempt finds its cgroup still holding a process the kill cannot take
        (here the kill does nothing; on a site, uninterruptible sleep): the attempt fails with
        CgroupError and tidy goes on trying the cgroup (it had stopped: create() had dropped it
        from the pending set)."""
        cgroups = backend.cgroups
        assert cgroups is not None
        name = "https_3a_2f_2fbusy"
        cgroups.create(name)
        path = _cg(backend, name)
        sleeper = subprocess.Popen(["/bin/sh", "-c", f'echo 0 > "{path}/cgroup.procs" && exec sleep 1000'],
                                   start_new_session=True)
        try:
            wait_for(lambda: str(sleeper.pid) in (path / "cgroup.procs").read_text().split(), "the member")
            with monkeypatch.context() as patch:
                patch.setattr(JobCgroups, "_kill_members", lambda _self, _path: None)
                patch.setattr(cgroups_module.time, "sleep", lambda _seconds: None)
                assert cgroups.kill(name) is False and name in cgroups.pending
                with pytest.raises(CgroupError, match="still holds processes"):
                    cgroups.create(name)
                assert name in cgroups.pending
                backend.tidy()
                assert name in cgroups.pending and path.is_dir()
            wait_for(lambda: _settled(backend), "tidy to kill and remove the cgroup")
            assert not path.exists()
            sleeper.wait(timeout=DEADLINE)
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_a_zygote_cgroup_whose_kill_failed_is_tried_again_by_tidy(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        (work_root / "jobs").mkdir(mode=0o755)
        backend = LocalExecutionBackend(work_root / "jobs", HOST, cgroups=check_root(cgroup_root))
        assert backend.cgroups is not None
        handle, _outcome = run(backend, launch(input_dir, account, "exit 0"))
        backend.release(handle)
        zygote = _cg(backend, local.zygote_cgroup(None if account is None else (account.uid, account.gid)))
        (zygote / "stuck").mkdir()
        backend.close()
        assert zygote.is_dir() and zygote.name in backend.cgroups.pending
        (zygote / "stuck").rmdir()
        wait_for(lambda: _settled(backend), "tidy to remove the zygote's cgroup")
        assert not zygote.exists()


def _thawed(path: Path) -> bool:
    if (path / "cgroup.freeze").exists():
        return (path / "cgroup.freeze").read_text().strip() == "0"
    return (path / "freezer.state").read_text().strip() == "THAWED"


def _freeze(path: Path) -> None:
    if (path / "cgroup.freeze").exists():
        (path / "cgroup.freeze").write_text("1")
    else:
        (path / "freezer.state").write_text("FROZEN")


class TestFrozen:
    def test_a_cgroup_left_frozen_is_thawed_when_it_is_reused(
        self, backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """A worker killed between the freeze and the thaw of a kill leaves the cgroup frozen: the
        next attempt of the job reuses it thawed, else its wrapper would hang frozen."""
        handle = backend.prepare(launch(input_dir, account, "exit 0"))
        path = _cg(backend, handle.work_dir.name)
        path.parent.mkdir(exist_ok=True)
        path.mkdir()
        _freeze(path)
        handle = backend.spawn(handle)
        assert _thawed(path)
        _release(backend, handle, JobState.DONE)

    def test_the_freeze_path_thaws_whatever_happens(
        self, backend: LocalExecutionBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cgroups = backend.cgroups
        assert cgroups is not None
        cgroups.kill_file = None  # the freeze path: v1, or v2 without cgroup.kill
        cgroups.create("https_3a_2f_2ffrozen")
        path = _cg(backend, "https_3a_2f_2ffrozen")
        sleeper = subprocess.Popen(["/bin/sh", "-c", f'echo 0 > "{path}/cgroup.procs" && exec sleep 1000'])
        try:
            wait_for(lambda: str(sleeper.pid) in (path / "cgroup.procs").read_text().split(), "the member")

            def broken(_pid: int, _sig: int) -> None:
                raise RuntimeError("interrupted")

            with monkeypatch.context() as patch:
                patch.setattr(cgroups_module.os, "kill", broken)
                with pytest.raises(RuntimeError, match=r"^interrupted$"):
                    cgroups.kill(path.name)
            assert _thawed(path)
        finally:
            sleeper.kill()
            sleeper.wait()
        wait_for(lambda: cgroups.kill(path.name), "the cgroup to go")


class TestStartCheck:
    """The start check moves a child of the worker into its probe, as the worker moves a zygote or
    a wrapper it starts itself: a non-root worker without CAP_DAC_OVERRIDE whose root is not in
    its delegated cgroup is refused, one whose root is is not."""

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_a_worker_that_cannot_move_its_children_is_refused(
        self, cgroup_root: Path, job_account: Account
    ) -> None:
        os.chown(cgroup_root, job_account.uid, job_account.gid)
        done = self._check_as(job_account, cgroup_root)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "cannot move a process of its own into a cgroup" in done.stderr, done.stderr
        assert "Delegate=yes" in done.stderr

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_a_worker_in_its_delegated_cgroup_passes(
        self, cgroup_root: Path, job_account: Account
    ) -> None:
        """What systemd's Delegate=yes makes: the service's cgroup and its ``cgroup.procs`` the
        service user's, the worker in a cgroup below it, the root of the job cgroups another."""
        for path in (cgroup_root, cgroup_root / "cgroup.procs"):
            os.chown(path, job_account.uid, job_account.gid)
        for name in ("worker", "jobs"):
            (cgroup_root / name).mkdir()
            os.chown(cgroup_root / name, job_account.uid, job_account.gid)
            os.chown(cgroup_root / name / "cgroup.procs", job_account.uid, job_account.gid)
        done = self._check_as(job_account, cgroup_root / "jobs", join=cgroup_root / "worker")
        assert done.returncode == 0, done.stdout + done.stderr

    @staticmethod
    def _check_as(account: Account, root: Path, join: Path | None = None) -> subprocess.CompletedProcess[str]:
        code = ("import sys\nfrom wmproxy.execution.cgroups import CgroupError, check_root\n"
                f"try:\n    check_root({str(root)!r})\n"
                "except CgroupError as exc:\n    sys.exit(str(exc))\n")
        # an interpreter the account can run (the suite's may sit under /root): the module and
        # what it imports are the standard library's
        python = os.environ.get("WMPROXY_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
        command = ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", python, "-c", code]
        if join is not None:
            command = ["/bin/sh", "-c", f'echo $$ > "{join}/cgroup.procs" && exec "$@"', "sh", *command]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(Path(__file__).parents[3]),
               **{name: os.environ[name] for name in ("LD_LIBRARY_PATH",) if name in os.environ}}
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env,
                              cwd="/")


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


#: The memory limit of the tests' jobs (``[execution] max_job_memory``): 64 MiB, a quarter of
#: what :data:`GREEDY` allocates.
LIMIT = 64 << 20
#: Fills 256 MiB of bytes (``b"x" * n`` writes every page: resident, unlike a zeroed bytearray).
GREEDY = f"/usr/bin/python3 -I -S -c 'b = b\"x\" * {4 * LIMIT}'"


def _memory_controller_root(root: Path) -> None:
    """Give the memory controller to the children of the test's cgroup v2 root, as an operator
    does (``+memory`` in its ``cgroup.subtree_control``); skip where the hierarchy has none. Not
    a peer the suite's machines all have: a hybrid host (systemd's legacy layout, this
    machine's) binds the memory controller to its cgroup v1 hierarchy, and the cgroup v2 one has
    none to give."""
    if "memory" not in (root / "cgroup.controllers").read_text().split():
        pytest.skip("the cgroup v2 hierarchy gives no memory controller to its children here (a hybrid "
                    "host binds it to cgroup v1)")
    (root / "cgroup.subtree_control").write_text("+memory")


@pytest.fixture
def memory_backend(request: pytest.FixtureRequest, work_root: Path,
                   cgroup_root: Path) -> Iterator[LocalExecutionBackend]:
    """A backend whose jobs' cgroups have ``memory.max`` :data:`LIMIT` (cgroup v2 with the memory
    controller), zygotes on and off."""
    _memory_controller_root(cgroup_root)
    (work_root / "jobs").mkdir(mode=0o755)
    backend = LocalExecutionBackend(work_root / "jobs", HOST, zygotes=request.param,
                                    cgroups=check_root(cgroup_root, max_memory=LIMIT))
    yield backend
    backend.close()


@pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
@pytest.mark.parametrize("memory_backend", [True, False], ids=["zygote", "direct"], indirect=True)
class TestMemoryLimit:
    """``[execution] max_job_memory``: each job's cgroup (and its zygote's) has it as its
    ``memory.max``, with no swap; a job that allocates beyond it loses the process to the
    kernel's OOM killer and ends Aborted, saying so."""

    def test_the_job_runs_in_a_cgroup_with_the_limit(
        self, memory_backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        mount = cgroup_root.parent
        script = (f'c="{mount}$(sed -n "s/^0:://p" /proc/self/cgroup)"; cat "$c/memory.max" > max; '
                  'if [ -e "$c/memory.swap.max" ]; then cat "$c/memory.swap.max"; else echo 0; fi > swap')
        handle, outcome = run(memory_backend, launch(input_dir, account, script))
        assert outcome.state == JobState.DONE and outcome.exit_code == 0, outcome
        assert (handle.work_dir / "max").read_text().strip() == str(LIMIT)
        assert (handle.work_dir / "swap").read_text().strip() == "0"
        memory_backend.release(handle)
        if memory_backend.use_zygotes:
            zygote = _cg(memory_backend, local.zygote_cgroup(None if account is None else (account.uid, account.gid)))
            assert (zygote / "memory.max").read_text().strip() == str(LIMIT)

    def test_a_job_beyond_its_limit_is_killed_and_ends_aborted_with_the_reason(
        self, memory_backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle, outcome = run(memory_backend, launch(input_dir, account, f"exec {GREEDY}"))
        assert outcome.state == JobState.ABORTED, outcome
        assert outcome.payload_started
        assert outcome.reason is not None and outcome.reason.startswith(
            "the job exceeded its memory limit of 64 MiB: the kernel killed one of its processes (out of memory)"
            " (deep failure)"), outcome.reason
        memory_backend.release(handle)

    def test_a_payload_that_survives_the_kill_of_its_child_ends_done_with_the_reason(
        self, memory_backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        handle, outcome = run(memory_backend, launch(input_dir, account, f"{GREEDY}; exit 0"))
        assert outcome.state == JobState.DONE and outcome.exit_code == 0, outcome
        assert outcome.reason is not None and "exceeded its memory limit of 64 MiB" in outcome.reason, outcome
        memory_backend.release(handle)


    def test_a_ce_limit_below_max_job_memory_is_the_jobs_memory_max(
        self, memory_backend: LocalExecutionBackend, input_dir: Path, account: Account | None, cgroup_root: Path
    ) -> None:
        """A local CE's ``WMProxyMemoryMB`` below ``max_job_memory`` is its jobs' limit, and the
        reason of a job beyond it names it."""
        ce_limit = LIMIT // 2
        script = f'c="{cgroup_root.parent}$(sed -n "s/^0:://p" /proc/self/cgroup)"; cat "$c/memory.max" > max'
        job = dataclasses.replace(launch(input_dir, account, script), memory_mb=ce_limit >> 20)
        handle, outcome = run(memory_backend, job)
        assert outcome.state == JobState.DONE, outcome
        assert (handle.work_dir / "max").read_text().strip() == str(ce_limit)
        memory_backend.release(handle)
        greedy = dataclasses.replace(launch(input_dir, account, f"exec {GREEDY}"), job_id=JOB + "2",
                                     memory_mb=ce_limit >> 20)
        handle, outcome = run(memory_backend, greedy)
        assert outcome.reason is not None and outcome.reason.startswith(
            "the job exceeded its memory limit of 32 MiB"), outcome.reason
        memory_backend.release(handle)
        above = dataclasses.replace(launch(input_dir, account, script), job_id=JOB + "3", memory_mb=4 * (LIMIT >> 20))
        handle, outcome = run(memory_backend, above)
        assert (handle.work_dir / "max").read_text().strip() == str(LIMIT)  # the lower of the two
        memory_backend.release(handle)

    def test_a_cgroup_made_again_for_the_same_job_forgets_an_earlier_runs_oom_kills(
        self, memory_backend: LocalExecutionBackend, input_dir: Path, account: Account | None
    ) -> None:
        """The same work dir name, so the same cgroup, for a job run again (RetryCount) or prepared
        again after a requeue while the earlier run's cgroup was still there (busy at its release):
        the new run starts from a cgroup made anew, whose ``oom_kill`` is 0."""
        handle, outcome = run(memory_backend, launch(input_dir, account, f"exec {GREEDY}"))
        assert outcome.state == JobState.ABORTED, outcome
        cgroups = memory_backend.cgroups
        assert cgroups is not None
        name = handle.work_dir.name
        assert cgroups.oom_killed(name) is not None
        cgroups.create(name)
        assert cgroups.oom_killed(name) is None
        assert (_cg(memory_backend, name) / "memory.max").read_text().strip() == str(LIMIT)
        memory_backend.release(handle)

class TestMemoryLimitRefused:
    """A memory limit the jobs' cgroups cannot have is refused at start, never silently dropped:
    a root whose children lack the memory controller (the tests' roots: nothing enables it in
    their ``cgroup.subtree_control``), a v1 hierarchy, no cgroup root at all."""

    def test_a_root_without_the_memory_controller_for_its_children_is_refused(
        self, cgroup_root: Path, work_root: Path
    ) -> None:
        with pytest.raises(MemoryLimitError, match=r"a job's memory cannot be limited in the cgroup root .*"
                           r"max_job_memory = 0"):
            check_root(cgroup_root, work_root, max_memory=LIMIT)
        base = cgroup_root / cgroups_module.base_name(work_root)
        assert [p for p in base.iterdir() if p.is_dir()] == []  # the probe went
        check_root(cgroup_root, work_root)  # without a limit the same root is used

    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    def test_the_worker_refuses_to_start_with_a_limit_its_cgroup_root_cannot_apply(
        self, tmp_path: Path, cgroup_root: Path
    ) -> None:
        done = _worker(tmp_path, f"cgroup_root = {cgroup_root}\nmax_job_memory = {LIMIT}\n")
        assert done.returncode == 3, done.stderr
        assert f"refusing to start: [execution] max_job_memory = {LIMIT}: a job's memory cannot be limited" \
            in done.stderr, done.stderr
        assert "memory controller" in done.stderr and "Traceback" not in done.stderr, done.stderr

    def test_the_worker_refuses_to_start_with_a_limit_and_no_cgroup_root(self, tmp_path: Path) -> None:
        done = _worker(tmp_path, f"max_job_memory = {LIMIT}\n")
        assert done.returncode == 3, done.stderr
        assert f"[execution] max_job_memory = {LIMIT}" in done.stderr, done.stderr
        assert "[execution] cgroup_root is empty" in done.stderr and "Traceback" not in done.stderr, done.stderr


    @pytest.mark.parametrize("cgroup_root", ["v2"], indirect=True)
    @pytest.mark.parametrize("zygotes", [True, False], ids=["zygote", "direct"])
    def test_a_job_whose_cgroup_cannot_have_the_limit_is_refused_not_run_without_it(
        self, work_root: Path, input_dir: Path, account: Account | None, cgroup_root: Path, zygotes: bool
    ) -> None:
        """The memory controller went after the start check (here it was never there for the
        root's children): the job's start fails, naming the setting."""
        (work_root / "jobs").mkdir(mode=0o755)
        cgroups = check_root(cgroup_root)
        cgroups.max_memory = LIMIT
        backend = LocalExecutionBackend(work_root / "jobs", HOST, zygotes=zygotes, cgroups=cgroups)
        try:
            handle = backend.prepare(launch(input_dir, account, "echo ran > ran"))
            with pytest.raises(BackendError, match=r"cannot limit the memory of the job's cgroup .*max_job_memory"):
                backend.spawn(handle)
            assert handle.pid is None
            backend.release(handle)
        finally:
            backend.close()


def _worker(tmp_path: Path, execution: str) -> subprocess.CompletedProcess[str]:
    """Start ``wmproxy-worker`` on a throwaway configuration with these ``[execution]`` lines."""
    (tmp_path / "grid-mapfile").write_text("")
    config = tmp_path / "wmproxy.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db.sqlite\n[execution]\nwork_dir = {tmp_path}/work\n"
                      f"{execution}[mapping]\nmode = gridmap\ngridmap_file = {tmp_path}/grid-mapfile\n")
    return subprocess.run([str(BIN / "wmproxy-worker"), "-c", str(config)], capture_output=True, text=True,
                          timeout=120, check=False)


class TestOomCountOfAReusedCgroup:
    """The ``oom_kill`` count a job's cgroup has from an earlier run is not this run's. Here on a
    directory tree shaped like a cgroup's (``memory.events``, ``memory.max`` and ``cgroup.procs``
    files, in the kernel's formats), which ``rmdir`` cannot remove as it removes a real cgroup:
    the cgroup is reused, its count at the reuse taken as zero (a real cgroup is made anew,
    :class:`TestMemoryLimit`, where the memory controller is there)."""

    @staticmethod
    def _cgroup(root: Path, oom_kills: int) -> Path:
        path = root / "https_3a_2f_2fwms.example.org_3a9000_2fjob"
        path.mkdir()
        (path / "cgroup.procs").write_text("")
        (path / "memory.max").write_text(f"{LIMIT}\n")
        TestOomCountOfAReusedCgroup._events(path, oom_kills)
        return path

    @staticmethod
    def _events(path: Path, oom_kills: int) -> None:
        (path / "memory.events").write_text(f"low 0\nhigh 0\nmax 12\noom 2\noom_kill {oom_kills}\n"
                                            "oom_group_kill 0\n")

    def test_an_earlier_runs_oom_kills_are_not_this_runs(self, tmp_path: Path) -> None:
        cgroups = JobCgroups(tmp_path)
        path = self._cgroup(tmp_path, oom_kills=1)
        assert cgroups.oom_killed(path.name) is not None  # what the earlier run is told
        cgroups.create(path.name)  # the job prepared again: its cgroup is still there
        assert cgroups.oom_killed(path.name) is None
        self._events(path, oom_kills=3)  # this run loses two processes
        assert cgroups.oom_killed(path.name) == (
            "the job exceeded its memory limit of 64 MiB: the kernel killed 2 of its processes (out of memory)")

    def test_a_fresh_cgroup_counts_from_zero_and_a_removed_one_forgets_its_base(self, tmp_path: Path) -> None:
        cgroups = JobCgroups(tmp_path)
        path = self._cgroup(tmp_path, oom_kills=2)
        cgroups.create(path.name)
        for child in path.iterdir():  # now removable, as a real cgroup is: its release removes it
            child.unlink()
        assert cgroups.kill(path.name) and not path.exists()
        cgroups.create(path.name)  # made anew
        self._events(path, oom_kills=1)
        (path / "memory.max").write_text("max\n")
        assert cgroups.oom_killed(path.name) == (
            "the kernel killed one of its processes for lack of memory (out of memory)")


class TestJobMemoryLimit:
    """A local CE's ``WMProxyMemoryMB`` and ``[execution] max_job_memory``: the lower applies
    (:func:`local.job_memory_limit`), written to the job's cgroup (here a directory tree shaped
    like one, :class:`TestOomCountOfAReusedCgroup`); without ``max_job_memory`` it is not applied,
    said once per CE."""

    def test_the_lower_of_the_two_limits_applies(self) -> None:
        assert local.job_memory_limit(LIMIT, 32) == 32 << 20
        assert local.job_memory_limit(LIMIT, 1024) == LIMIT
        assert local.job_memory_limit(LIMIT, None) == LIMIT
        assert local.job_memory_limit(0, 32) == 32 << 20
        assert local.job_memory_limit(0, None) == 0
        assert local.job_memory_limit(LIMIT, 0) == LIMIT

    def test_a_jobs_own_limit_is_its_cgroups_memory_max_and_named_at_its_oom_kill(self, tmp_path: Path) -> None:
        cgroups = JobCgroups(tmp_path, max_memory=LIMIT)
        path = TestOomCountOfAReusedCgroup._cgroup(tmp_path, oom_kills=0)
        cgroups.create(path.name, max_memory=32 << 20)
        assert (path / "memory.max").read_text().strip() == str(32 << 20)  # written over the kernel's value
        TestOomCountOfAReusedCgroup._events(path, oom_kills=1)
        assert cgroups.oom_killed(path.name) == (
            "the job exceeded its memory limit of 32 MiB: the kernel killed one of its processes (out of memory)")

    def test_without_max_job_memory_a_ces_limit_is_said_once_and_not_applied(
        self, work_root: Path, input_dir: Path, account: Account | None, caplog: pytest.LogCaptureFixture
    ) -> None:
        backend = LocalExecutionBackend(work_root, HOST)
        try:
            for n in range(2):
                job = dataclasses.replace(launch(input_dir, account, "true"), job_id=f"{JOB}{n}", memory_mb=32,
                                          ce_id="ce.example.org:2119/local-small")
                with caplog.at_level(logging.WARNING, logger="wmproxy.execution.backends.local"):
                    backend.release(backend.prepare(job))
        finally:
            backend.close()
        said = [r.getMessage() for r in caplog.records if "WMProxyMemoryMB" in r.getMessage()]
        assert said == [("the CE ce.example.org:2119/local-small states a memory limit of 32 MiB per job "
                        "(WMProxyMemoryMB), which applies to local jobs only with [execution] max_job_memory (and "
                        "job cgroups): its jobs run without it")]
