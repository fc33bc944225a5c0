"""A hostile job against the privilege split (issue 8 point 2), on SQLite and PostgreSQL.

The deployment (:mod:`tests.integration.isolated`): gunicorn as the service user without
capabilities, the worker as the service user with its 5 capabilities, alice and bob mapped
to two accounts. Bob's job tries what a hostile job would and prints one line per attempt
(``read store.key: EACCES``); the assertions are on that output, retrieved through the
service, so they state what the job itself saw.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
import zeep.exceptions

from tests.conftest import Pki, need_peer
from tests.integration.isolated import SYSTEM_PYTHON, Isolated, client, isolated_deployment, processes_of
from tests.integration.refclient import ReferenceClient
from tests.leftover_support import (
    HOP,
    LEAVE,
    STOPCHAIN_C,
    build,
    group_left,
    kill_group,
    kill_left,
    kill_members,
    left_files,
    session_members,
    still_running,
)
from tests.support import assert_fault, outputs, wait_for, wait_for_final
from wmproxy.config import load_settings
from wmproxy.domain import to_filename
from wmproxy.execution.ends_journal import DIR_NAME as JOURNALS

pytestmark = pytest.mark.integration

#: The hostile job: ``op:label:target`` arguments, one output line per attempt.
ATTACK = r'''
import errno, os, sys
print(f"uid {os.getuid()} gid {os.getgid()} groups {sorted(os.getgroups())}", flush=True)
with open("/proc/self/status") as status:
    caps = [line.split() for line in status if line.startswith(("CapInh", "CapPrm", "CapEff", "CapAmb"))]
print("caps " + " ".join(f"{name}{value}" for name, value in caps), flush=True)
def parent(pid):
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])
def pid_of(target):
    # "wrapper": this job's wrapper (its parent); "zygote": the wrapper's parent, which must be
    # the account's zygote (a job whose wrapper the worker started itself tests nothing here)
    if target == "wrapper":
        return os.getppid()
    if target == "zygote":
        pid = parent(os.getppid())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"zygote.py" not in handle.read():
                raise SystemExit(f"the wrapper's parent {pid} is not a zygote")
        return pid
    return int(target)
def attempt(op, target):
    if op == "read":
        with open(target, "rb") as handle:
            handle.read(1)
    elif op == "list":
        os.listdir(target)
    elif op == "kill":
        # Signal 0: the kernel's permission check of kill(2) without delivery, so that a broken
        # isolation fails this test instead of taking the deployment down for the following ones.
        os.kill(int(target), 0)
    elif op == "environ":
        with open(f"/proc/{pid_of(target)}/environ", "rb") as handle:
            handle.read()
    elif op == "mem":
        os.close(os.open(f"/proc/{pid_of(target)}/mem", os.O_RDONLY))
    elif op == "ptrace":
        # PTRACE_SEIZE: the permission check of PTRACE_ATTACH without stopping the target;
        # this process's exit detaches it
        import ctypes
        if ctypes.CDLL(None, use_errno=True).ptrace(0x4206, pid_of(target), None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace")
    elif op == "owner":
        # the owner of /proc/<pid>/mem and environ: root's for a non-dumpable process, whatever Yama says
        pid = pid_of(target)
        return ",".join(f"{name}={os.stat(f'/proc/{pid}/{name}').st_uid}" for name in ("mem", "environ"))
    elif op == "create":
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        raise SystemExit(f"unknown op {op}")
for spec in sys.argv[1:]:
    op, label, target = spec.split(":", 2)
    try:
        result = attempt(op, target) or "OK"
    except OSError as exc:
        result = errno.errorcode.get(exc.errno, str(exc.errno))
    print(f"{op} {label}: {result}", flush=True)
'''

#: alice's job: running until ``<shared>/release-alice`` exists.
HOLD_JDL = """[
  Executable = "/bin/sh";
  Arguments = "-c 'echo held > held.txt; while [ ! -e {release} ]; do sleep 0.2; done'";
  StdOutput = "std.out";
  OutputSandbox = {{"std.out"}};
]"""


#: ``forge.py <marker> <release>``: fork a child into a process group of its own (same session),
#: forge a status.json saying "exit code 0", write ``zygote <pid> <its start time> <child pid> <its
#: start time>`` to <marker> (``other`` for ``zygote`` when the wrapper's parent is not a zygote),
#: SIGKILL the wrapper, then both run on (no setsid) until <release> exists, for 10 minutes at most.
FORGE = r'''
import json, os, signal, socket, sys, time
marker, release = sys.argv[1], sys.argv[2]
def linger():
    end = time.monotonic() + 600
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.2)
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    linger()
    os._exit(0)
wrapper = os.getppid()
with open(f"/proc/{wrapper}/stat", "rb") as f:
    zygote = int(f.read().rsplit(b")", 1)[1].split()[1])
with open(f"/proc/{zygote}/cmdline", "rb") as f:
    parent = "zygote" if any(os.path.basename(arg) == b"zygote.py" for arg in f.read().split(b"\0")) else "other"
state = os.path.join(os.environ["HOME"], ".wmproxy")
now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
status = {"version": 1, "job_id": os.environ["GLITE_WMS_JOBID"], "wrapper_pid": wrapper,
          "hostname": socket.gethostname(), "started_at": now, "ended_at": now, "payload_started": True,
          "payload_started_at": now, "exit_code": 0, "signal": None, "cancelled_by": None,
          "prologue": None, "epilogue": None, "failure": None, "notes": []}
with open(os.path.join(state, "forged.tmp"), "w") as f:
    json.dump(status, f)
os.rename(os.path.join(state, "forged.tmp"), os.path.join(state, "status.json"))
def born(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])
with open(marker + ".tmp", "w") as f:
    f.write(f"{parent} {os.getpid()} {born(os.getpid())} {child} {born(child)}")
os.rename(marker + ".tmp", marker)
os.kill(wrapper, signal.SIGKILL)
linger()
'''


#: Yama's ptrace restriction (absent where the kernel has no Yama).
YAMA_PTRACE_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    # Inspection off: a wrapper whose job has an inspection agent makes itself non-dumpable on its
    # own (jobwrapper._guard_secret), which would hide whether the zygote's protection reaches
    # the wrappers it forks (test_bobs_job_can_neither_read_nor_trace_its_zygote_or_its_wrapper).
    with isolated_deployment(pki, database_url, extra_env={"WMPROXY_INSPECTION_MODE": "off"}) as deployment:
        for name, text in (("attack.py", ATTACK), ("forge.py", FORGE), ("leave.sh", LEAVE), ("hop.py", HOP)):
            (deployment.root / name).write_text(text)
            os.chmod(deployment.root / name, 0o644)
        yield deployment


@pytest.fixture(scope="module")
def alice(iso: Isolated, pki: Pki) -> ReferenceClient:
    return client(iso, pki, "alice")


@pytest.fixture(scope="module")
def bob(iso: Isolated, pki: Pki) -> ReferenceClient:
    return client(iso, pki, "bob")


@contextmanager
def held_job(iso: Isolated, alice: ReferenceClient, name: str) -> Iterator[tuple[str, Path, list[int]]]:
    """Alice's job, running until released: ``(job id, work dir, pids of alice's account)``;
    released and awaited (Done, exit code 0) on leaving."""
    release = iso.shared / f"release-{name}"
    job_id = alice.wmproxy.jobSubmit(HOLD_JDL.format(release=release), "iso").id
    try:
        uid = iso.mapped["alice"].pw_uid
        wait_for(lambda: str(alice.wmproxy.getJobStatus(job_id).status), lambda s: s == "Running",
                 what=f"alice's job {job_id} to run")
        pids = wait_for(lambda: [p for p in processes_of({uid}) if lasting(p)],
                        lambda found: any(comm(p) == "sh" for p in found), what="alice's job's shell")
        yield job_id, iso.work_root / to_filename(job_id), pids
    finally:
        release.touch()
    assert wait_for_final(alice, job_id) == "Done (Exit Code 0)"
    assert outputs(alice, job_id) == {"std.out": b""}


def lasting(pid: int) -> bool:
    """Whether ``pid`` is one of the held job's lasting processes: not its loop's ``sleep``, nor
    the loop's fork that has not exec'd ``sleep`` yet (an ``sh`` whose parent is ``sh``), nor gone."""
    name = comm(pid)
    if name in ("", "sleep"):
        return False
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return not (name == "sh" and comm(parent) == "sh")


def comm(pid: int) -> str:
    """The command name of ``pid`` ("" once it has gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def proxy_of(pid: int) -> Path:
    """X509_USER_PROXY of a job process, read as root from /proc."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    values = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"X509_USER_PROXY=")]
    assert values, f"no X509_USER_PROXY in the environment of job process {pid}"
    return Path(values[0].decode())


def run_attack(iso: Isolated, bob: ReferenceClient, specs: list[str]) -> dict[str, str]:
    args = " ".join(specs)
    jdl = (f'[ Executable = "{SYSTEM_PYTHON}"; Arguments = "-I {iso.root / "attack.py"} {args}"; '
           'StdOutput = "attack.out"; StdError = "attack.err"; OutputSandbox = {"attack.out", "attack.err"}; ]')
    job_id = bob.wmproxy.jobSubmit(jdl, "iso").id
    assert wait_for_final(bob, job_id) == "Done (Exit Code 0)"
    files = outputs(bob, job_id)
    assert files.get("attack.err", b"") == b"", files
    results: dict[str, str] = {}
    for line in files["attack.out"].decode().splitlines():
        if line.startswith(("uid ", "caps ")):
            results[line.split(" ", 1)[0]] = line
        else:
            attempt, _, outcome = line.partition(": ")
            results[attempt] = outcome
    return results


class TestHostileJob:
    def test_bobs_job_reaches_nothing_of_the_service_or_of_alice(self, iso: Isolated, alice: ReferenceClient,
                                                                  bob: ReferenceClient, database_url: str) -> None:
        with held_job(iso, alice, "attack") as (_, alice_dir, alice_pids):
            self.attack_alice(iso, bob, database_url, alice_dir, alice_pids)

    def attack_alice(self, iso: Isolated, bob: ReferenceClient, database_url: str, alice_dir: Path,
                     alice_pids: list[int]) -> None:
        alice_proxy = proxy_of(next(pid for pid in alice_pids if comm(pid) == "sh"))
        assert alice_proxy.is_file() and alice_proxy.stat().st_uid == iso.mapped["alice"].pw_uid
        gunicorn, worker = iso.deployment.processes[0].pid, iso.deployment.processes[1].pid
        # A job that ended: the worker's ends journal directory exists (each cycle's ends go there).
        assert wait_for_final(bob, bob.wmproxy.jobSubmit('[ Executable = "/bin/true"; ]', "iso").id) == \
            "Done (Exit Code 0)"
        journals = iso.work_root / JOURNALS
        assert (stat.S_IMODE(journals.stat().st_mode), journals.stat().st_uid) == (0o700, iso.service.pw_uid)
        specs = [
            f"read:store.key:{iso.store_key}",
            f"read:host.key:{iso.host_key}",
            f"read:alice.proxy:{alice_proxy}",
            f"list:alice.dir:{alice_dir}",
            f"read:alice.held:{alice_dir / 'held.txt'}",
            f"list:sandbox.root:{iso.sandbox_root}",
            f"list:work.root:{iso.work_root}",
            f"create:work.root:{iso.work_root / 'planted'}",
            f"list:ends.journals:{journals}",  # a planted journal would record ends the job chose
            f"create:ends.journal:{journals / 'planted.json'}",
            f"list:state:{iso.state}",
            f"environ:gunicorn:{gunicorn}",
            f"environ:worker:{worker}",
            f"kill:worker:{worker}",
            f"kill:gunicorn:{gunicorn}",
            *(f"kill:alice.job.{pid}:{pid}" for pid in alice_pids),
        ]
        expected = {spec.rsplit(":", 1)[0].replace(":", " ", 1): "EACCES" for spec in specs}
        for spec in specs:
            if spec.startswith("kill:"):
                expected[spec.rsplit(":", 1)[0].replace(":", " ", 1)] = "EPERM"
        if database_url.startswith("sqlite"):
            specs.append(f"read:database:{iso.state / 'wmproxy.db'}")
            expected["read database"] = "EACCES"
        results = run_attack(iso, bob, specs)
        bob_account = iso.mapped["bob"]
        assert results.pop("uid").startswith(f"uid {bob_account.pw_uid} gid {bob_account.pw_gid} ")
        results.pop("caps")
        assert results == expected
        # Nothing was disturbed: the service is alive, alice's job ends normally (held_job).
        assert iso.deployment.processes[0].poll() is None and iso.deployment.processes[1].poll() is None

    def test_bobs_job_can_neither_read_nor_trace_its_zygote_or_its_wrapper(
            self, iso: Isolated, bob: ReferenceClient) -> None:
        """The account's zygote keeps, in memory it freed, the specs (inspection secrets) it
        handed to the account's other wrappers, and the job's wrapper a copy of it: not
        dumpable, neither may be read or traced by the job, which runs as the same uid. The
        deployment has inspection off (:func:`iso`), so the wrapper is not made non-dumpable
        by its inspection agent's guard. Yama's ``ptrace_scope`` is left as it is (other test
        sessions run side by side): above 0 it refuses the attach to a non-descendant by
        itself, so the ``ptrace`` outcome is asserted only without Yama or at 0; the owner of
        ``/proc/<pid>/mem`` (root's for a non-dumpable process) does not depend on Yama."""
        refused = {"owner": "mem=0,environ=0", "mem": "EACCES", "environ": "EACCES", "ptrace": "EPERM"}
        targets = ("zygote", "wrapper")
        results = run_attack(iso, bob, [f"{op}:{target}:{target}" for target in targets for op in refused])
        results.pop("uid")
        results.pop("caps")
        if YAMA_PTRACE_SCOPE.exists() and YAMA_PTRACE_SCOPE.read_text().strip() != "0":
            del refused["ptrace"]
            results = {attempt: outcome for attempt, outcome in results.items() if not attempt.startswith("ptrace ")}
        assert results == {f"{op} {target}": error for target in targets for op, error in refused.items()}

    def test_alices_work_dir_is_hers_and_private(self, iso: Isolated, alice: ReferenceClient) -> None:
        with held_job(iso, alice, "ls") as (_, alice_dir, _):
            listing = subprocess.run(["ls", "-ld", str(alice_dir)], capture_output=True, text=True,
                                     check=True).stdout
            fields = listing.split()
            assert fields[0] == "drwx------" and fields[2] == iso.mapped["alice"].pw_name, listing
        assert stat.S_IMODE(iso.work_root.stat().st_mode) == 0o711
        assert iso.work_root.stat().st_uid == iso.service.pw_uid

    def test_the_job_runs_as_the_mapped_account_without_groups_or_capabilities(self, iso: Isolated,
                                                                              bob: ReferenceClient) -> None:
        results = run_attack(iso, bob, [])
        # The worker's ambient capabilities survive its setreuid (no uid was 0) and the exec of the wrapper
        # unless dropped: a job holding CAP_KILL or CAP_DAC_OVERRIDE could signal and read anything.
        zero = "0000000000000000"
        assert results["caps"] == f"caps CapInh:{zero} CapPrm:{zero} CapEff:{zero} CapAmb:{zero}"
        bob_account = iso.mapped["bob"]
        uid_line = f"uid {bob_account.pw_uid} gid {bob_account.pw_gid} groups "
        assert results["uid"] in (uid_line + "[]", uid_line + f"[{bob_account.pw_gid}]")


class TestCollectionRefusesLinks:
    def test_output_sandbox_links_to_the_store_key_are_not_served(self, iso: Isolated, bob: ReferenceClient) -> None:
        key = iso.store_key
        script = (f"ln -s {key} sym.out; ln {key} hard-key.out 2>/dev/null; echo mine > own; ln own hard.out; "
                  "echo fine > ok.out")
        jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; '
               'OutputSandbox = {"sym.out", "hard-key.out", "hard.out", "ok.out"}; ]')
        job_id = bob.wmproxy.jobSubmit(jdl, "iso").id
        assert wait_for_final(bob, job_id).startswith("Done")
        served = outputs(bob, job_id)
        assert served == {"ok.out": b"fine\n"}
        secret = subprocess.run(["cat", str(key)], capture_output=True, check=True).stdout.strip()
        assert all(secret not in content for content in served.values())

    def test_a_perused_symlink_to_the_store_key_is_not_served(self, iso: Isolated, bob: ReferenceClient) -> None:
        release = iso.shared / "release-perusal"
        script = (f"ln -s {iso.store_key} peek.txt; echo visible > real.txt; "
                  f"while [ ! -e {release} ]; do sleep 0.2; done")
        jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; PerusalFileEnable = true; '
               'PerusalTimeInterval = 1; ]')
        job = bob.wmproxy.jobRegister(jdl, "iso")
        bob.wmproxy.enableFilePerusal(job.id, {"Item": ["real.txt", "peek.txt"]})
        bob.wmproxy.jobStart(job.id)
        # real.txt was written after the link: once its chunk is served, peek.txt was sampled too.
        uris = wait_for(lambda: bob.wmproxy.getPerusalFiles(job.id, "real.txt", True, "https"),
                        what="a perusal chunk of real.txt")
        assert b"".join(bob.session.get(u).content for u in uris) == b"visible\n"
        assert bob.wmproxy.getPerusalFiles(job.id, "peek.txt", True, "https") in (None, [])
        release.touch()
        assert wait_for_final(bob, job.id).startswith("Done")
        assert bob.wmproxy.getPerusalFiles(job.id, "peek.txt", True, "https") in (None, [])


class TestRegistrationRefusesEscapes:
    @pytest.mark.parametrize("attribute", ['StdOutput = "../../store.key"', 'OutputSandbox = {"/etc/shadow"}'])
    def test_escaping_names_are_refused_on_the_wire(self, iso: Isolated, bob: ReferenceClient,
                                                    attribute: str) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.jobRegister(f'[ Executable = "/bin/true"; {attribute}; ]', "iso")
        assert_fault(err, "InvalidArgumentFault", "jobRegister")


def _identity(pid: int) -> tuple[int, int] | None:
    """``(real uid, start time)`` of a live (not zombie) ``pid``, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return uid, int(fields[19])


class TestForgedStatus:
    """Default execution settings (zygotes on, job cgroups off): bob's payload runs as his account,
    as its wrapper does, so it can write ``.wmproxy/status.json`` ("exit code 0") and SIGKILL its
    wrapper. The job was recorded Done, its slot freed, and the payload ran on past its wall time,
    ``max_running`` and a cancel (a red-team review)."""

    def test_a_payload_that_forges_its_status_and_kills_its_wrapper_is_aborted_and_killed(
            self, iso: Isolated, bob: ReferenceClient) -> None:
        release = iso.shared / "release-forge"
        marker = iso.shared / "forge"
        try:
            job_id = bob.wmproxy.jobSubmit(f'[ Executable = "{SYSTEM_PYTHON}"; RetryCount = 0; '
                                           f'Arguments = "-I {iso.root / "forge.py"} {marker} {release}"; ]',
                                           "iso").id
            text = wait_for(lambda: marker.read_text() if marker.exists() else "", what="the payload's marker")
            parent, *fields = text.split()
            assert parent == "zygote"  # the default start: the wrapper was forked by the account's zygote
            uid = iso.mapped["bob"].pw_uid
            # the payload and its child: pid -> (uid, start time), to tell them from later users of their pids
            lingering = {int(fields[0]): (uid, int(fields[1])), int(fields[2]): (uid, int(fields[3]))}

            final = wait_for_final(bob, job_id)
            assert final.startswith("Aborted"), final  # not "Done (Exit Code 0)", as the forged status says
            engine = sa.create_engine(load_settings(iso.deployment.config).database.url)
            try:
                with engine.connect() as conn:
                    reasons = list(conn.execute(sa.text("select reason from job_events where job_id = :j and"
                                                        " reason is not null"), {"j": job_id}).scalars())
            finally:
                engine.dispose()
            killed = "the job wrapper was killed by signal 9 after the payload had started (deep failure)"
            assert any(killed in reason for reason in reasons), reasons
            # released with its job: neither the payload nor its child in another group of the session lives on
            wait_for(lambda: [pid for pid, born in lingering.items() if _identity(pid) == born],
                     lambda alive: not alive, what="the forging payload and its child to be killed")
        finally:
            release.touch()


class TestLeftSession:
    """Default execution settings (zygotes on, job cgroups off): bob's payload leaves a
    ``setsid``'ed process and a double-forked ``setsid``'ed daemon (``leave.sh``,
    :data:`tests.leftover_support.LEAVE`), then exits 0 or, cancelled, is killed. Neither was
    killed: outside the wrapper's session, they outlived the job, its cancel and ``max_running``.
    Now the wrapper, which adopts its job's orphans, kills all its descendants at the job's end."""

    @pytest.mark.parametrize("cancel", [False, True], ids=["done", "cancelled"])
    def test_processes_that_left_the_session_do_not_outlive_the_job(self, iso: Isolated, bob: ReferenceClient,
                                                                     cancel: bool) -> None:
        prefix = iso.shared / ("left-cancelled" if cancel else "left-done")
        files = left_files(prefix)
        try:
            job_id = bob.wmproxy.jobSubmit(f'[ Executable = "/bin/sh"; RetryCount = 0; Arguments = '
                                           f'"{iso.root / "leave.sh"} {prefix}{" hold" if cancel else ""}"; ]',
                                           "iso").id
            if cancel:
                wait_for(lambda: still_running(files), lambda left: len(left) == 2,
                         what="the payload to leave its processes")
                bob.wmproxy.jobCancel(job_id)
                assert wait_for_final(bob, job_id).startswith("Cancelled")
            else:
                assert wait_for_final(bob, job_id) == "Done (Exit Code 0)"
                assert [path.exists() for path in files] == [True, True]
            wait_for(lambda: still_running(files), lambda left: not left,
                     what="the processes the job left outside its session to be killed")
        finally:
            kill_left(files)

    def test_an_orphan_that_forks_and_exits_while_the_wrapper_kills_does_not_outlive_the_job(
            self, iso: Isolated, bob: ReferenceClient) -> None:
        """A hostile review's payload (:data:`tests.leftover_support.HOP`): an orphan of the job
        forked and exited while the wrapper's first kill pass visited some 1500 zombies left to it;
        its child, adopted after the pass read the wrapper's children, outlived the job, which was
        Done (the worker, knowing the wrapper exited on its own, looked no further)."""
        sid_file = iso.shared / "hop.sid"
        uid = iso.mapped["bob"].pw_uid
        try:
            job_id = bob.wmproxy.jobSubmit(f'[ Executable = "{SYSTEM_PYTHON}"; RetryCount = 0; '
                                           f'Arguments = "-I {iso.root / "hop.py"} {sid_file} 1500 3"; ]', "iso").id
            assert wait_for_final(bob, job_id) == "Done (Exit Code 0)"
            sid = int(sid_file.read_text())
            wait_for(lambda: session_members(sid, uid), lambda left: not left,
                     what="the processes the job left to be killed")
        finally:
            if sid_file.exists():
                kill_members(int(sid_file.read_text()), uid)

    def test_a_chain_of_forks_under_a_stopped_wrapper_does_not_outlive_its_cancel(
            self, iso: Isolated, bob: ReferenceClient) -> None:
        """A hostile review's payload (:data:`tests.leftover_support.STOPCHAIN_C`): a chain of
        processes that fork their successor and exit, under a subreaper of the job's own in a
        session of its own; the payload stops its wrapper, the job is cancelled. Past the cancel's
        grace the worker killed the wrapper first: the chain went to init and ran on."""
        if shutil.which("gcc") is None:
            need_peer("the payload is built with gcc")
        payload = build(STOPCHAIN_C, iso.root / "stopchain")
        sid_file = iso.shared / "chain.sid"
        try:
            job_id = bob.wmproxy.jobSubmit(f'[ Executable = "{payload}"; RetryCount = 0; '
                                           f'Arguments = "{sid_file} 300"; ]', "iso").id
            sid = wait_for(lambda: sid_file.read_text() if sid_file.exists() else "", what="the chain's start")
            wait_for(lambda: str(bob.wmproxy.getJobStatus(job_id).status), lambda s: s == "Running",
                     what="the job to run")
            bob.wmproxy.jobCancel(job_id)
            assert wait_for_final(bob, job_id, timeout=300).startswith("Cancelled")
            wait_for(lambda: group_left(int(sid)), lambda left: not left, what="the chain to be killed (and reaped)")
        finally:
            if sid_file.exists():
                kill_group(int(sid_file.read_text()))
