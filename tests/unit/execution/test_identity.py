"""The identity switch primitive: work dirs, proxy copies, spawning the wrapper as the
mapped account, reading its status back defensively, and removing the work dir; plus
a run of the whole cycle by an unprivileged worker holding only the capabilities the
module docstring lists."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_peer
from tests.deep_trees import DEPTH, make_chain
from tests.unit.execution.wrapper_support import (
    DEADLINE,
    JOB,
    alive,
    create_account,
    flock_held_elsewhere,
    kill_session,
    sh,
    wait_for,
)
from wmproxy.execution import identity
from wmproxy.execution.identity import Account, IdentityError, WrapperStatusError
from wmproxy.execution.jobwrapper import TMP_DIR, JobSpec
from wmproxy.sandbox import trees

PROXY = b"-----BEGIN CERTIFICATE-----\nproxy\n-----END CERTIFICATE-----\n"
WORKTREE = Path(identity.__file__).resolve().parents[2]
CAPABILITIES = "+chown,+setuid,+setgid,+kill,+dac_override"


@pytest.fixture(params=["self", "account"])
def account(request: pytest.FixtureRequest) -> Account | None:
    if request.param == "self":
        return None
    return request.getfixturevalue("job_account")  # type: ignore[no-any-return]


def _owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _expected_owner(account: Account | None) -> tuple[int, int]:
    return (os.geteuid(), os.getegid()) if account is None else (account.uid, account.gid)


class TestPrepareWorkDir:
    def test_work_dir_and_state_dir_belong_to_the_account(self, work_root: Path, account: Account | None) -> None:
        work = identity.prepare_work_dir(work_root, "job1", account)
        assert work == work_root / "job1"
        assert _owner(work) == (*_expected_owner(account), 0o700)
        assert _owner(work / ".wmproxy") == (*_expected_owner(account), 0o700)

    def test_existing_work_dir_is_refused(self, work_root: Path) -> None:
        identity.prepare_work_dir(work_root, "job1", None)
        with pytest.raises(IdentityError, match="already exists"):
            identity.prepare_work_dir(work_root, "job1", None)

    @pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "nul\0"])
    def test_names_that_are_not_one_component_are_refused(self, work_root: Path, name: str) -> None:
        with pytest.raises(IdentityError, match="Invalid"):
            identity.prepare_work_dir(work_root, name, None)

    def test_group_writable_work_root_is_refused(self, work_root: Path) -> None:
        work_root.chmod(0o775)
        with pytest.raises(IdentityError, match="not writable by others"):
            identity.prepare_work_dir(work_root, "job1", None)

    def test_symlinked_work_root_is_refused(self, work_root: Path) -> None:
        (work_root / "real").mkdir()
        (work_root / "link").symlink_to(work_root / "real")
        with pytest.raises(IdentityError, match="symbolic link"):
            identity.prepare_work_dir(work_root / "link", "job1", None)

    def test_work_root_of_another_user_is_refused(self, work_root: Path, job_account: Account) -> None:
        theirs = work_root / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, job_account.uid, job_account.gid)
        with pytest.raises(IdentityError, match="owned by the worker"):
            identity.prepare_work_dir(theirs, "job1", None)


class TestFilesInTheWorkDir:
    def test_spec_round_trips_and_is_read_only_for_the_account(self, work_root: Path,
                                                                account: Account | None) -> None:
        work = identity.prepare_work_dir(work_root, "job1", account)
        spec = sh("echo hi", environment={"A": "1"}, prologue="p.sh", prologue_arguments=["x"], umask=0o027)
        identity.write_spec(work, spec, account)
        path = work / ".wmproxy" / "job.marshal"
        assert _owner(path) == (*_expected_owner(account), 0o400)
        assert JobSpec.from_bytes(path.read_bytes()) == spec

    def test_invalid_spec_is_refused_before_writing(self, work_root: Path) -> None:
        work = identity.prepare_work_dir(work_root, "job1", None)
        with pytest.raises(IdentityError, match=r"StdOutput|stdout"):
            identity.write_spec(work, sh("true", stdout="../../etc/passwd"), None)
        assert not (work / ".wmproxy" / "job.marshal").exists()

    def test_proxy_copy_is_0600_of_the_account(self, work_root: Path, account: Account | None) -> None:
        work = identity.prepare_work_dir(work_root, "job1", account)
        path = identity.install_proxy(work, PROXY, account)
        assert path == work / identity.PROXY_NAME
        assert _owner(path) == (*_expected_owner(account), 0o600)
        assert path.read_bytes() == PROXY

    @pytest.mark.parametrize("plant", ["symlink", "hardlink"])
    def test_renewed_proxy_replaces_a_planted_link_without_following_it(self, work_root: Path, plant: str) -> None:
        work = identity.prepare_work_dir(work_root, "job1", None)
        victim = work_root / "victim"
        victim.write_bytes(b"precious")
        proxy = work / identity.PROXY_NAME
        if plant == "symlink":
            proxy.symlink_to(victim)
        else:
            os.link(victim, proxy)
        identity.install_proxy(work, PROXY, None)
        assert victim.read_bytes() == b"precious"
        assert not proxy.is_symlink() and proxy.read_bytes() == PROXY
        assert [p.name for p in work.iterdir() if p.name.endswith(".tmp")] == []

    @pytest.mark.parametrize("plant", ["symlink", "hardlink"])
    def test_a_fresh_copy_refuses_a_planted_link_without_following_it(self, work_root: Path, plant: str) -> None:
        work = identity.prepare_work_dir(work_root, "job1", None)
        victim = work_root / "victim"
        victim.write_bytes(b"precious")
        for path in (work / identity.PROXY_NAME, work / ".wmproxy" / "job.marshal"):
            if plant == "symlink":
                path.symlink_to(victim)
            else:
                os.link(victim, path)
        with pytest.raises(IdentityError):
            identity.install_proxy(work, PROXY, None, sync=False, fresh=True)
        with pytest.raises(IdentityError):
            identity.write_spec(work, sh("true"), None, sync=False, fresh=True)
        assert victim.read_bytes() == b"precious"

    def test_a_fresh_copy_is_written_at_its_name(self, work_root: Path, account: Account | None) -> None:
        work = identity.prepare_work_dir(work_root, "job1", account)
        path = identity.install_proxy(work, PROXY, account, sync=False, fresh=True)
        identity.write_spec(work, sh("true"), account, sync=False, fresh=True)
        assert _owner(path) == (*_expected_owner(account), 0o600) and path.read_bytes() == PROXY
        assert sorted(p.name for p in (work / ".wmproxy").iterdir()) == ["job.marshal"]

    @pytest.mark.parametrize("name", ["", "a/b", "..", ".wmproxy"])
    def test_bad_proxy_names_are_refused(self, work_root: Path, name: str) -> None:
        work = identity.prepare_work_dir(work_root, "job1", None)
        with pytest.raises(IdentityError):
            identity.install_proxy(work, PROXY, None, name=name)

    def test_staging_gives_the_account_only_the_files_it_creates(self, work_root: Path, job_account: Account,
                                                                  tmp_path: Path) -> None:
        """The staged input sandbox is the account's, each file given through the descriptor that
        created it; what a job of the account put in its work dir beforehand (a hard link to a
        file of the service, a link, a directory) keeps its owner. A walk of the work dir by path
        chowned them all, and a job could race it (a directory swapped for a link mid-walk) into
        chowning the store key to itself."""
        from wmproxy.execution.backends.local import _stage_in

        work = identity.prepare_work_dir(work_root, "job1", job_account)
        input_dir = tmp_path / "input"
        input_dir.mkdir()
        (input_dir / "input.txt").write_text("isb")
        service_file = work_root / "store.key"  # the service's own, on the same file system
        service_file.write_text("secret")
        service_file.chmod(0o600)
        os.link(service_file, work / "planted")
        (work / "sub").mkdir()
        (work / "link").symlink_to(service_file)
        _stage_in(input_dir, work, ("input.txt",), job_account)
        assert _owner(work / "input.txt") == (job_account.uid, job_account.gid, 0o600)
        assert (work / "input.txt").read_text() == "isb"
        assert _owner(service_file)[:2] == (os.geteuid(), os.getegid())
        assert _owner(work / "sub")[:2] == (os.geteuid(), os.getegid())

    @pytest.mark.parametrize("name", ["x\x00y", "a/b", "..", ""])
    def test_a_name_no_file_can_have_is_not_uploaded(self, work_root: Path, tmp_path: Path, name: str) -> None:
        """The job fails alone ("has not been uploaded"): a NUL made ``os.open`` raise ValueError,
        which ended the worker process."""
        from wmproxy.execution.backends.local import _stage_in

        work = identity.prepare_work_dir(work_root, "job1", None)
        (tmp_path / "input").mkdir()
        with pytest.raises(identity.IdentityError, match="has not been uploaded"):
            _stage_in(tmp_path / "input", work, (name,), None)


class TestSpawnWrapper:
    def test_root_worker_without_an_account_is_refused(self, work_root: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("only a root worker refuses a missing account")
        work = identity.prepare_work_dir(work_root, "job1", None)
        identity.write_spec(work, sh("true"), None)
        with pytest.raises(IdentityError, match="root"):
            identity.spawn_wrapper(work, None)

    def test_wrapper_runs_as_the_account_in_its_own_session(self, work_root: Path, job_account: Account) -> None:
        work = identity.prepare_work_dir(work_root, "job1", job_account)
        identity.install_proxy(work, PROXY, job_account)
        identity.write_spec(work, sh("id -u; id -G; cat \"$X509_USER_PROXY\"; echo ready > ready; "
                                     "while test ! -e go; do sleep 0.1; done", proxy=identity.PROXY_NAME),
                            job_account)
        process = identity.spawn_wrapper(work, job_account)
        try:
            wait_for((work / "ready").exists, "the payload")
            assert os.getsid(process.pid) == process.pid
            assert os.stat(f"/proc/{process.pid}").st_uid == job_account.uid
            (work / "go").touch()
            assert process.wait(timeout=DEADLINE) == 0
        finally:
            kill_session(process.pid)
            process.wait()
        out = (work / "std.out").read_bytes()
        assert out == f"{job_account.uid}\n{job_account.gid}\n".encode() + PROXY
        status = identity.read_status(work, job_account)
        assert status is not None and status.succeeded
        assert _owner(work / ".wmproxy" / "wrapper.log")[:2] == (job_account.uid, job_account.gid)

    def test_outcome_survives_the_worker_that_spawned_it(self, work_root: Path, job_account: Account) -> None:
        work = identity.prepare_work_dir(work_root, "job1", job_account)
        identity.write_spec(work, sh("id -G; while test ! -e go; do sleep 0.1; done; exit 9"), job_account)
        worker = textwrap.dedent(f"""
            from pathlib import Path
            from wmproxy.execution import identity
            account = identity.Account.from_name({job_account.name!r})
            print(identity.spawn_wrapper(Path({str(work)!r}), account).pid)
        """)
        # the "worker" holds a supplementary group the job must not inherit, then exits
        done = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=DEADLINE,
                              check=True, env={"PYTHONPATH": str(WORKTREE), "PATH": "/usr/bin:/bin"},
                              extra_groups=[4242])
        wrapper_pid = int(done.stdout)
        try:
            wait_for(lambda: identity.payload_started(work, job_account), "the payload to start")
            assert identity.read_status(work, job_account) is None
            (work / "go").touch()
            wait_for((work / ".wmproxy" / "status.json").exists, "the status file")
        finally:
            kill_session(wrapper_pid)
        status = identity.read_status(work, job_account)
        assert status is not None and status.exit_code == 9 and status.wrapper_pid == wrapper_pid
        assert (work / "std.out").read_text().split() == [str(job_account.gid)]


def _refused_accounts(service: tuple[int, int] | None = None) -> dict[str, Account]:
    """Accounts every identity switch refuses: root, root's group, the worker's own uid and group
    (as another name), and the service user's uid and group when given."""
    spare = 54_321
    accounts = {"root": Account(0, 0, "root"), "root group": Account(spare, 0, "wheel"),
                "worker uid": Account(os.getuid(), spare, "worker"),
                "worker group": Account(spare, os.getgid(), "worker-group")}
    if service is not None:
        accounts["service uid"] = Account(service[0], spare, "svc")
        accounts["service group"] = Account(spare, service[1], "svc-group")
    return accounts


class TestAccountRefusal:
    """Every switch refuses root and the worker's or the service's identities, whatever account
    its caller hands it (the stored ``jobs.local_account`` could be anyone's): nothing runs."""

    SERVICE = (54_001, 54_002)

    @pytest.fixture(autouse=True)
    def _service(self) -> Iterator[None]:
        saved = (set(identity._REFUSED_UIDS), set(identity._REFUSED_GIDS))
        identity.refuse_identities([self.SERVICE[0]], [self.SERVICE[1]])
        yield
        identity._REFUSED_UIDS.clear()
        identity._REFUSED_GIDS.clear()
        identity._REFUSED_UIDS.update(saved[0])
        identity._REFUSED_GIDS.update(saved[1])

    @pytest.mark.parametrize("who", ["root", "root group", "worker uid", "worker group", "service uid",
                                     "service group"])
    def test_the_switch_commands_refuse_them(self, who: str) -> None:
        account = _refused_accounts(self.SERVICE)[who]
        for build in (lambda: identity._setpriv_to(account, "start a job"), lambda: identity.zygote_command(account),
                      lambda: identity._setpriv_to(account, "start a job", real_gid=65534)):
            with pytest.raises(identity.AccountRefusedError, match=f"^Refusing to .* as {account.name}: "):
                build()

    @pytest.mark.parametrize("who", ["root", "worker uid", "service uid"])
    def test_run_as_runs_nothing(self, who: str, tmp_path: Path) -> None:
        account = _refused_accounts(self.SERVICE)[who]
        marker = tmp_path / "ran"
        with pytest.raises(identity.AccountRefusedError, match=f"as {account.name}: "):
            identity.run_as(["/bin/sh", "-c", f"touch {marker}"], account, env={"PATH": "/usr/bin:/bin"},
                            cwd=tmp_path)
        assert not marker.exists()

    @pytest.mark.parametrize("who", ["root", "worker uid", "worker group", "service group"])
    def test_spawn_wrapper_starts_nothing(self, who: str, work_root: Path) -> None:
        account = _refused_accounts(self.SERVICE)[who]
        work = identity.prepare_work_dir(work_root, "job1", None)
        identity.write_spec(work, sh("echo ran > ran"), None)
        for cgroup in (None, str(work_root / "cgroup.procs")):  # the switch by Popen, and by setpriv after the join
            with pytest.raises(identity.AccountRefusedError, match=f"as {account.name}: "):
                identity.spawn_wrapper(work, account, cgroup_procs=cgroup)
        assert not (work / "ran").exists() and not (work / ".wmproxy" / "wrapper.log").exists()

    def test_another_account_is_switched_to(self) -> None:
        account = Account(54_321, 54_321, "pool001")
        assert identity.account_refusal(account) is None
        prefix = identity._setpriv_to(account, "start a job")
        assert "--reuid=54321" in prefix and "--regid=54321" in prefix


class TestReadStatus:
    def _work(self, work_root: Path) -> Path:
        return identity.prepare_work_dir(work_root, "job1", None)

    def _status(self, **changes: object) -> dict[str, object]:
        data: dict[str, object] = {
            "version": 1, "job_id": JOB, "wrapper_pid": 10, "hostname": "h",
            "started_at": "2026-12-02T06:00:00.000000Z", "ended_at": "2026-12-02T06:00:01.000000Z",
            "payload_started": True, "payload_started_at": "2026-12-02T06:00:00.500000Z", "exit_code": 0,
            "signal": None, "cancelled_by": None, "prologue": None,
            "epilogue": {"exit_code": 0, "signal": None, "failure": None}, "failure": None, "notes": [],
        }
        data.update(changes)
        return data

    def test_absent_while_the_job_runs(self, work_root: Path) -> None:
        assert identity.read_status(self._work(work_root), None) is None

    def test_well_formed_status_is_parsed(self, work_root: Path) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status()))
        status = identity.read_status(work, None)
        assert status is not None and status.succeeded and status.ended_at.tzinfo is not None
        assert status.ended_at > status.started_at

    @pytest.mark.parametrize("changes", [
        {"exit_code": "0"}, {"exit_code": True}, {"payload_started": 1}, {"started_at": "yesterday"},
        {"started_at": "2026-12-02T06:00:00"}, {"notes": "x"}, {"epilogue": [0]}, {"version": 2},
        {"wrapper_pid": None},
    ])
    def test_mistyped_status_is_refused(self, work_root: Path, changes: dict[str, object]) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(**changes)))
        with pytest.raises(WrapperStatusError):
            identity.read_status(work, None)

    @pytest.mark.parametrize("changes", [
        {"exit_code": 2**63}, {"exit_code": 2**31}, {"exit_code": 256}, {"exit_code": -1},
        {"exit_code": None, "signal": 0}, {"exit_code": None, "signal": 65}, {"exit_code": None, "signal": -9},
        {"cancelled_by": 2**40}, {"wrapper_pid": 2**63}, {"wrapper_pid": 0},
        {"epilogue": {"exit_code": 2**31, "signal": None, "failure": None}},
        {"prologue": {"exit_code": None, "signal": 1000, "failure": None}},
    ])
    def test_numbers_out_of_range_are_refused(self, work_root: Path, changes: dict[str, object]) -> None:
        """What the database cannot store (an OverflowError on SQLite, a DataError on PostgreSQL)
        never leaves read_status: the status is not valid, the job Aborted for it."""
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(**changes)))
        with pytest.raises(WrapperStatusError, match=r"malformed: .* must be from"):
            identity.read_status(work, None)

    @pytest.mark.parametrize(("changes", "field", "cleaned"), [
        ({"failure": "x\u0000y"}, "failure", "x\\x00y"),
        ({"failure": "bad \udcff.o"}, "failure", "bad \\udcff.o"),
        ({"failure": "\x1b[31m"}, "failure", "\\x1b[31m"),
        ({"hostname": "h\u0000"}, "hostname", "h\\x00"),
        ({"job_id": "\ud800"}, "job_id", "\\ud800"),
        ({"notes": ["fine", "/opt/lib/\udce9t\udce9.so"]}, "notes", ("fine", "/opt/lib/\\udce9t\\udce9.so")),
    ])
    def test_text_the_database_cannot_store_is_escaped(self, work_root: Path, changes: dict[str, object],
                                                        field: str, cleaned: object) -> None:
        """The wrapper's own texts quote what the job gave it (an LD_PRELOAD entry that is not
        UTF-8, the shell's last line): escaped, never refused, so the job keeps its result."""
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(**changes)))
        status = identity.read_status(work, None)
        assert status is not None and getattr(status, field) == cleaned

    def test_long_text_is_cut(self, work_root: Path) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(failure="x" * 20_000)))
        status = identity.read_status(work, None)
        assert status is not None and status.failure == "x" * 16 * 1024 + " [cut]"

    @pytest.mark.parametrize("changes", [
        {"exit_code": 255}, {"exit_code": None, "signal": 64}, {"exit_code": 137, "cancelled_by": 15},
        {"failure": "Job Wrapper error: r\u00e9sum\u00e9\ttab\nline"}, {"notes": ["\U0001f600"]},
    ])
    def test_what_the_wrapper_writes_is_accepted(self, work_root: Path, changes: dict[str, object]) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(**changes)))
        assert identity.read_status(work, None) is not None

    def test_not_json_is_refused(self, work_root: Path) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text("exit_code=0")
        with pytest.raises(WrapperStatusError, match="not JSON"):
            identity.read_status(work, None)

    def test_symlink_planted_as_status_is_not_followed(self, work_root: Path) -> None:
        work = self._work(work_root)
        target = work_root / "secret.json"
        target.write_text(json.dumps(self._status()))
        (work / ".wmproxy" / "status.json").symlink_to(target)
        with pytest.raises(WrapperStatusError):
            identity.read_status(work, None)

    @pytest.mark.timeout(60)
    def test_fifo_planted_as_status_does_not_block_the_worker(self, work_root: Path) -> None:
        work = self._work(work_root)
        os.mkfifo(work / ".wmproxy" / "status.json")
        with pytest.raises(WrapperStatusError, match="regular file"):
            identity.read_status(work, None)

    def test_oversized_status_is_refused(self, work_root: Path) -> None:
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status(notes=["x" * 300_000])))
        with pytest.raises(WrapperStatusError, match="too large"):
            identity.read_status(work, None)

    def test_json_nested_deeper_than_the_parser_goes_is_refused(self, work_root: Path) -> None:
        """``json.loads`` raises RecursionError, not ValueError, for it: the worker set such a
        job aside (Running, its slot freed) instead of ending it Aborted."""
        work = self._work(work_root)
        (work / ".wmproxy" / "status.json").write_text("[" * 100_000)
        with pytest.raises(WrapperStatusError, match="not JSON"):
            identity.payload_started(work, None)

    @pytest.mark.parametrize("content", ["", '{"version": ', "[" * 100_000])
    def test_a_started_file_counts_whatever_it_holds(self, work_root: Path, content: str) -> None:
        """The wrapper creates ``started.json`` empty and writes into it after: a worker that
        looked in between was refused ("not JSON"; the 3.13 CI run of stop 55 caught it)."""
        work = self._work(work_root)
        (work / ".wmproxy" / "started.json").write_text(content)
        assert identity.payload_started(work, None)

    def test_a_started_file_that_is_not_a_regular_file_is_refused(self, work_root: Path) -> None:
        work = self._work(work_root)
        os.mkfifo(work / ".wmproxy" / "started.json")
        with pytest.raises(WrapperStatusError, match="regular file"):
            identity.payload_started(work, None)

    def test_status_not_owned_by_the_account_is_refused(self, work_root: Path, job_account: Account) -> None:
        work = identity.prepare_work_dir(work_root, "job1", job_account)
        (work / ".wmproxy" / "status.json").write_text(json.dumps(self._status()))  # root's, not the job's
        with pytest.raises(WrapperStatusError, match="account"):
            identity.read_status(work, job_account)


class TestRemoveWorkDir:
    def test_removes_read_only_trees_and_follows_no_symlink(self, work_root: Path) -> None:
        work = identity.prepare_work_dir(work_root, "job1", None)
        outside = work_root / "outside"
        outside.mkdir()
        (outside / "keep.txt").write_text("keep")
        (work / "link").symlink_to(outside)
        (work / "file-link").symlink_to(outside / "keep.txt")
        locked = work / "locked"
        locked.mkdir()
        (locked / "f").write_text("x")
        locked.chmod(0o500)
        identity.remove_work_dir(work_root, "job1")
        assert not work.exists()
        assert (outside / "keep.txt").read_text() == "keep"

    def test_missing_work_dir_is_fine(self, work_root: Path) -> None:
        identity.remove_work_dir(work_root, "never-made")

    def test_a_tree_the_job_made_deeper_than_the_recursion_limit_is_removed(self, work_root: Path,
                                                                            job_account: Account) -> None:
        """``while :; do mkdir a && cd a; done`` in a job: shutil.rmtree raised RecursionError on
        3.11, which ended the worker."""
        work = identity.prepare_work_dir(work_root, "job1", job_account)
        make_chain(work, DEPTH, uid=job_account.uid, gid=job_account.gid)
        (work / "a").chmod(0o500)  # what the job may do to its own directories
        identity.remove_work_dir(work_root, "job1")
        assert not work.exists()

    @pytest.mark.parametrize("name", ["", "..", "a/b"])
    def test_bad_names_are_refused(self, work_root: Path, name: str) -> None:
        with pytest.raises(IdentityError):
            identity.remove_work_dir(work_root, name)


def _ended_work_dir(work_root: Path, account: Account | None) -> Path:
    """A work dir of the usual layout as its job leaves it (the wrapper's ``TMP_DIR``, the proxy copy)."""
    work = identity.prepare_work_dir(work_root, "job1", account)
    (work / TMP_DIR).mkdir(mode=0o700)
    os.chown(work / TMP_DIR, *_expected_owner(account))
    identity.install_proxy(work, PROXY, account)
    return work


class TestWorkDirLock:
    """The renewal worker's push (:func:`identity.renew_proxy`) and the recycling of an ended
    job's work dir take turns on the work dir's ``flock``, neither waiting for it."""

    def test_a_work_dir_locked_by_another_process_is_not_recycled(self, work_root: Path,
                                                                  account: Account | None) -> None:
        work = _ended_work_dir(work_root, account)
        inode = os.stat(work).st_ino
        with flock_held_elsewhere(work):
            assert identity.recycle_work_dir(work_root, "job1", account) is None
            assert (work / identity.PROXY_NAME).read_bytes() == PROXY  # neither emptied nor renamed
            assert os.stat(work).st_ino == inode
        spare = identity.recycle_work_dir(work_root, "job1", account)  # once let go
        assert spare is not None and os.stat(work_root / spare).st_ino == inode

    def test_a_push_holds_the_lock_while_it_writes(self, work_root: Path, account: Account | None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        work = _ended_work_dir(work_root, account)
        real_replace = identity._replace_file
        recycled: list[str | None] = []

        def recycle_meanwhile(*args: object, **kw: object) -> None:
            recycled.append(identity.recycle_work_dir(work_root, "job1", account))  # another descriptor
            real_replace(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(identity, "_replace_file", recycle_meanwhile)
        assert identity.renew_proxy(work, b"renewed")
        assert recycled == [None]
        assert (work / identity.PROXY_NAME).read_bytes() == b"renewed"
        assert _owner(work / identity.PROXY_NAME) == (*_expected_owner(account), 0o600)

    def test_a_push_writes_only_into_the_work_dir_at_its_name(self, work_root: Path,
                                                              account: Account | None) -> None:
        work = _ended_work_dir(work_root, account)
        assert not identity.renew_proxy(work_root / "job2", b"renewed")  # no work dir: no copy
        os.unlink(work / identity.PROXY_NAME)
        assert not identity.renew_proxy(work, b"renewed")  # released: the copy is gone
        assert sorted(os.listdir(work)) == sorted([TMP_DIR, identity.STATE_DIR])  # none made

    def test_without_flock_the_work_dir_is_still_recycled_and_it_is_logged_once(
        self, work_root: Path, account: Account | None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """NFS has no ``flock`` for directories (EBADF): both go on without the lock."""
        def no_flock(fd: int, operation: int) -> None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

        monkeypatch.setattr(identity.fcntl, "flock", no_flock)
        monkeypatch.setattr(trees, "_no_flock_logged", set())
        work = _ended_work_dir(work_root, account)
        assert identity.renew_proxy(work, b"renewed")
        assert (work / identity.PROXY_NAME).read_bytes() == b"renewed"
        assert identity.recycle_work_dir(work_root, "job1", account) is not None
        assert [r.getMessage() for r in caplog.records].count(
            f"no flock on the file system of {work} (Bad file descriptor): renewed proxies and the reuse of "
            "work directories go on without taking turns") == 1


@pytest.fixture(scope="session")
def worker_account() -> Iterator[Account]:
    yield from create_account("wrk")


_CYCLE = """
import json, os, signal, sys, time
from pathlib import Path
from wmproxy.execution import identity
from wmproxy.execution.jobwrapper import JobSpec
root, job_name, proxy = Path(sys.argv[1]), sys.argv[2], b"proxy-pem"
account = identity.Account.from_name(job_name)
result = {"caps": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]}
try:
    work = identity.prepare_work_dir(root, "job1", account)
    identity.install_proxy(work, proxy, account)
    identity.write_spec(work, JobSpec(job_id="j", executable="/bin/sh", stdout="out", proxy="user.proxy",
        arguments=["-c", "grep ^Cap /proc/self/status > caps.txt; "
                   "mkdir locked; echo x > locked/f; chmod 500 locked; echo ready > ready; "
                   "while :; do sleep 0.1; done"]), account)
    wrapper = identity.spawn_wrapper(work, account)
    result["wrapper_pid"] = wrapper.pid
    deadline = time.monotonic() + 60
    while not os.path.exists(work / "ready") and time.monotonic() < deadline:
        time.sleep(0.05)
    caps_lines = (work / "caps.txt").read_text().splitlines()
    result["job_caps"] = {k.rstrip(":"): v for k, v in (line.split() for line in caps_lines)}
    os.kill(wrapper.pid, signal.SIGTERM)
    wrapper.wait(timeout=60)
    status = identity.read_status(work, account)
    result["renewed"] = identity.renew_proxy(work, proxy)  # a renewal into the account's 0700 directory
    result["cancelled_by"] = status.cancelled_by
    result["started"] = status.payload_started
    identity.remove_work_dir(root, "job1")
    result["removed"] = not os.path.exists(work)
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""


class TestPrivileges:
    def _run_cycle(self, work_root: Path, worker: Account, job: Account, caps: str) -> dict[str, object]:
        if shutil.which("setpriv") is None:
            need_peer("setpriv (util-linux) runs the worker with chosen capabilities")
        root = work_root / "worker-root"
        root.mkdir(mode=0o755)
        os.chown(root, worker.uid, worker.gid)
        done = subprocess.run(
            ["setpriv", f"--reuid={worker.uid}", f"--regid={worker.gid}", "--clear-groups",
             f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{caps}",
             "/usr/bin/python3", "-I", "-c", f"import sys; sys.path.insert(0, {str(WORKTREE)!r})\n{_CYCLE}",
             str(root), job.name],
            capture_output=True, text=True, timeout=DEADLINE * 2, check=False, cwd="/",
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        pid = result.get("wrapper_pid")
        if isinstance(pid, int) and alive(pid):  # the cycle failed to cancel its job: we do
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), "the left-over wrapper to end")
        return result

    def test_documented_capabilities_suffice_for_the_whole_cycle(self, work_root: Path, worker_account: Account,
                                                                   job_account: Account) -> None:
        result = self._run_cycle(work_root, worker_account, job_account, CAPABILITIES)
        assert result.get("error") is None, result
        assert result["caps"] == "00000000000000e3"  # CHOWN, DAC_OVERRIDE, KILL, SETGID, SETUID and no more
        assert result == {**result, "cancelled_by": signal.SIGTERM, "started": True, "renewed": True,
                                    "removed": True}
        # the job holds none of them (an ambient capability would survive the switch between two non-zero
        # uids); the bounding set stays, but with no_new_privs and no file capabilities nothing regains them
        job_caps = result["job_caps"]
        assert isinstance(job_caps, dict)
        assert {name: job_caps[name] for name in ("CapInh", "CapPrm", "CapEff", "CapAmb")} == dict.fromkeys(
            ("CapInh", "CapPrm", "CapEff", "CapAmb"), "0000000000000000"), job_caps

    @pytest.mark.parametrize("dropped", ["chown", "setgid", "setuid", "kill", "dac_override"])
    def test_each_documented_capability_is_needed(self, work_root: Path, worker_account: Account,
                                                  job_account: Account, dropped: str) -> None:
        caps = ",".join(c for c in CAPABILITIES.split(",") if c != f"+{dropped}")
        result = self._run_cycle(work_root, worker_account, job_account, caps)
        assert "Error" in str(result.get("error")), result
        assert "removed" not in result
