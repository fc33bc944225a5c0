"""Jobs per second of trivial jobs through the execution worker (local backend), mapping off
and on, vs a plain subprocess loop, in interleaved windows (issue 14: mapping off >= 0.25 of the
plain loop; worker CPU <= 5 ms per job).

Standalone, as root (it creates throwaway accounts): ``.venv/bin/python
benchmarks/execution_mapping.py [--jobs-per-window 200] [--windows 5] [--max-running 8]
[--root /var/tmp] [--poll-interval 1] [--cgroups /sys/fs/cgroup]``.

``--cgroups PARENT``: the mapping-on worker puts each job in a cgroup of its own
(``[execution] cgroup_root``, a fresh directory below ``PARENT``, a cgroup v2 hierarchy, owned
by the service user and removed at the end); run with and without it to see what the job
cgroups cost the worker.

Two fresh SQLite states (``wmproxy-admin init --user``), one per mode, are filled in-process
with windows × W registered ``/bin/true`` jobs of one user (delegation + jobRegister through
the services), and one ``wmproxy-worker`` process is started per state as the service user, as
deploy/wmproxy-worker.service starts it, with the default ``poll_interval`` (1 s; ``--poll-interval`` sets another):

- mapping on (``gridmap``): the worker holds its 5 ambient capabilities and runs each job as
  the user's mapped account (work dir and proxy copy handed over, wrapper started as the account);
- mapping off (``none``): the worker has no capability and runs each job as itself.

Then, window after window: the plain loop runs ``subprocess.run(["/bin/true"])`` W times; W jobs
of the mapping-off state are started (one transaction doing what jobStart does: Waiting + a
start request) and timed until all are Done; the same for mapping on. Each window gives the
ratios of adjacent measurements (so load changes affect both sides alike) and each worker's CPU
(user + system, from /proc, its wrappers not included) per job, and the CPU per job outside the
worker: its zygote's own (the forks) and that of the wrappers it reaped (their payloads included),
from the zygote's ``/proc/<pid>/stat`` (utime + stime, cutime + cstime). Printed: every window,
then min/median/max of each figure over the windows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import sqlalchemy as sa
from perf_support import sqlite_reader

from tests.accounts import local_accounts
from tests.integration.isolated import SYSTEM_PYTHON, WORKER_CAPS, kill_processes_of, setpriv
from tests.support import delegate_in_process
from wmproxy.admin import initialise
from wmproxy.config import load_settings
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

FINAL = [s.value for s in (JobState.DONE, JobState.ABORTED, JobState.CANCELLED, JobState.CLEARED)]
TIMEOUT = 1800.0  # seconds one window may take at most
ROOT_MODE = 0o711  # the accounts traverse the benchmark's root
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class FinalCounter:
    """Counts the jobs in a final state, the whole ``jobs`` table, for a benchmark's wait loop:
    one plain ``sqlite3`` connection (read-only, autocommit: each count sees the latest
    commits) and one statement, instead of SQLAlchemy and an expanding ``id in (...)`` over the
    window's jobs, which took about a tenth of two cores polling every 20 ms, beside what is
    measured. ``engine`` is a SQLite engine (its database file is used); :meth:`close` at the end."""

    SQL = "select count(*) from jobs where state in (?, ?, ?, ?)"  # the four of FINAL

    def __init__(self, engine: sa.Engine) -> None:
        path = engine.url.database
        assert engine.url.get_backend_name() == "sqlite" and path, engine.url
        self.conn = sqlite_reader(path)

    def count(self) -> int:
        """Jobs in a final state now."""
        row = self.conn.execute(self.SQL, FINAL).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


@dataclass
class Mode:
    """One worker on its own state: ``gridmap`` (mapping on) or ``none`` (mapping off)."""

    name: str
    rt: Runtime
    engine: sa.Engine
    worker: subprocess.Popen[bytes]
    log: Path
    pending: list[str] = field(default_factory=list)  # registered job ids not started yet
    counter: FinalCounter = field(init=False)
    #: CPU seconds of the last window outside the worker: (the zygote's own, its wrappers' and
    #: their payloads', reaped), from the zygote's /proc stat (utime + stime, cutime + cstime)
    outside: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.counter = FinalCounter(self.engine)

    def cpu_seconds(self) -> float:
        """The worker process's own user + system CPU (not its reaped children's)."""
        fields = Path(f"/proc/{self.worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK

    def side_cpu_seconds(self) -> float:
        """The CPU of the worker's threads other than its main one (none since the work dirs are
        removed by the main thread when it is idle; an earlier worker had a remover thread)."""
        total = 0
        for task in Path(f"/proc/{self.worker.pid}/task").iterdir():
            if task.name != str(self.worker.pid):
                with contextlib.suppress(OSError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICK

    def zygote_cpu_seconds(self) -> tuple[float, float]:
        """``(own, reaped children's)`` user + system CPU of the worker's zygote (the first child
        of the worker running ``zygote.py``; (0, 0) before it started): its own is its forks,
        the children's its wrappers' with their payloads (each wrapper reaps its payload)."""
        for task in Path(f"/proc/{self.worker.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    with contextlib.suppress(OSError):
                        if b"zygote.py" in Path(f"/proc/{child}/cmdline").read_bytes():
                            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                            return ((int(fields[11]) + int(fields[12])) / CLOCK_TICK,
                                    (int(fields[13]) + int(fields[14])) / CLOCK_TICK)
        return 0.0, 0.0

    def window(self, jobs: int) -> tuple[float, float]:
        """Start ``jobs`` registered jobs at once; (seconds until all ended, worker CPU seconds).
        The zygote's CPU over the window (own, its wrappers' and payloads') is left in
        :attr:`outside`."""
        batch, self.pending = self.pending[:jobs], self.pending[jobs:]
        before = self.counter.count()  # every job of the earlier windows (all final by now)
        cpu = self.cpu_seconds()
        zygote = self.zygote_cpu_seconds()
        now = utcnow()
        with self.rt.uow() as uow:  # what jobStart does, for the whole window in one transaction
            for job_id in batch:
                job = uow.jobs.get(job_id, for_update=True)
                assert job is not None
                uow.jobs.set_state(job, JobState.WAITING.value, now)
                uow.queue.enqueue(job_id, "start", now)
        begin = time.monotonic()
        while True:
            done = self.counter.count() - before
            if done >= len(batch):
                took, spent = time.monotonic() - begin, self.cpu_seconds() - cpu
                # the last wrappers are reaped by the zygote just after their jobs are recorded
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and self.zygote_cpu_seconds()[1] - zygote[1] <= 0:
                    time.sleep(0.01)
                time.sleep(0.05)
                after = self.zygote_cpu_seconds()
                self.outside = (after[0] - zygote[0], after[1] - zygote[1])
                return took, spent
            if self.worker.poll() is not None:
                raise RuntimeError(f"the {self.name} worker exited ({self.worker.returncode}):\n"
                                   + self.log.read_text(errors="replace")[-2000:])
            if time.monotonic() - begin > TIMEOUT:
                raise RuntimeError(f"{done} of {len(batch)} jobs final after {TIMEOUT:g} s")
            time.sleep(0.02)

    def check_and_stop(self) -> None:
        try:
            with self.engine.connect() as conn:
                states: dict[str, int] = dict(conn.execute(sa.text(
                    "select state, count(*) from jobs where state != 'Submitted' group by state")).all())
            if set(states) != {JobState.DONE.value}:
                with self.engine.connect() as conn:
                    reasons = conn.execute(sa.text(
                        "select state, reason from jobs where state not in ('Submitted', 'Done') limit 5")).all()
                raise RuntimeError(f"not every {self.name} job ended Done: {states}; for instance {reasons}\n"
                                   + self.log.read_text(errors="replace")[-3000:])
        finally:
            if self.worker.poll() is None:
                os.killpg(self.worker.pid, signal.SIGTERM)
                self.worker.wait(timeout=120)
            self.counter.close()
            self.engine.dispose()
            rt_bind = self.rt.session_factory.kw.get("bind")
            if rt_bind is not None:
                rt_bind.dispose()


def start_mode(root: Path, mode: str, jobs: int, max_running: int, pki: dict[str, Path | str],
               svc: str, account: str, poll_interval: float = 1.0, cgroup_root: Path | None = None) -> Mode:
    """A state for ``mode`` (``gridmap`` or ``none``) with ``jobs`` registered jobs and its worker."""
    import pwd

    service = pwd.getpwnam(svc)
    state = root / f"state-{mode}"
    state.mkdir(mode=0o711)  # root's until the chown below (initialise refuses another user's directory)
    gridmap = root / "grid-mapfile"
    gridmap.write_text(f'"{pki["dn"]}" {account}\n')
    os.chmod(gridmap, 0o644)
    config = root / f"wmproxy-{mode}.conf"
    config.write_text(
        f"[database]\nurl = sqlite:///{state}/wmproxy.db\n"
        f"[security]\nca_dir = {pki['ca_dir']}\nstore_key_file = {state}/store.key\nauthorized_users = *\n"
        f"[service]\nhost = localhost\nport = 7443\n"
        f"[sandbox]\nroot = {state}/sandbox\n"
        f"[execution]\nwork_dir = {state}/work\nmax_running = {max_running}\nheartbeat_lease = 60\n"
        f"poll_interval = {poll_interval}\n"
        + (f"cgroup_root = {cgroup_root}\n" if cgroup_root is not None and mode != "none" else "") +
        f"[mapping]\nmode = {mode}\ngridmap_file = {gridmap}\n"
    )
    os.chmod(config, 0o644)
    settings = load_settings(config)
    initialise(settings)
    rt = Runtime.from_settings(settings)
    principal = Principal(dn=str(pki["dn"]))
    delegation = delegate_in_process(rt, principal, Path(pki["proxy"]), "bench")
    pending = [register_job(rt, principal, '[ Executable = "/bin/true"; ]', delegation).job_id for _ in range(jobs)]
    # The job areas were made here, as root: hand the whole state to the service user, as if
    # gunicorn (running as the service user) had made them.
    subprocess.run(["chown", "-R", f"{service.pw_uid}:{service.pw_gid}", str(state)], check=True)
    # initialise opens and closes the database file, which drops every POSIX lock this process's
    # SQLite connections hold on it (fcntl locks are per process and inode): with them kept
    # open, the window's writes and the worker's corrupted the database. New connections after it.
    bind = rt.session_factory.kw.get("bind")
    if bind is not None:
        bind.dispose()
    initialise(settings, user=svc)
    rt = Runtime.from_settings(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "PYTHON"))}
    env.update(WMPROXY_CONFIG=str(config), PYTHONPATH=f"{REPO}:{sysconfig.get_paths()['purelib']}",
               PYTHONDONTWRITEBYTECODE="1", HOME=str(state))
    caps = WORKER_CAPS if mode != "none" else ()
    log = root / f"worker-{mode}.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [*setpriv(service, caps), SYSTEM_PYTHON, "-m", "wmproxy.execution", "--name", f"bench-{mode}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )
    return Mode(mode, rt, sa.create_engine(settings.database.url), worker, log, pending)


def plain_loop(jobs: int) -> float:
    begin = time.monotonic()
    for _ in range(jobs):
        subprocess.run(["/bin/true"], check=True)
    return time.monotonic() - begin


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-per-window", type=int, default=200, help="trivial jobs per window, default 200")
    parser.add_argument("--windows", type=int, default=5, help="windows, default 5")
    parser.add_argument("--max-running", type=int, default=8, help="[execution] max_running, default 8")
    parser.add_argument("--root", default="/var/tmp",  # noqa: S108 - mkdtemp makes a private directory in it
                        help="directory under which the states (SQLite databases, work dirs) are made, default "
                             "/var/tmp; /dev/shm shows what the file system costs (docs/performance.md)")
    parser.add_argument("--cgroups", default=None, metavar="PARENT",
                        help="a cgroup v2 hierarchy (e.g. /sys/fs/cgroup): the mapping-on worker runs each job in "
                             "a cgroup of its own below a fresh directory there")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="the workers' [execution] poll_interval in seconds, default 1 (the default setting); "
                             "an idle SQLite worker polls the queue every fifth of it")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("execution_mapping.py must run as root: it creates a service account and a mapped account "
              "(useradd) and starts the worker as the service user with capabilities (setpriv)", file=sys.stderr)
        return 2
    if shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
        print(f"needs setpriv (util-linux) and {SYSTEM_PYTHON}", file=sys.stderr)
        return 2
    n, windows = args.jobs_per_window, args.windows
    with local_accounts({"svc": ["svc"], "usr": ["usr"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="wmproxy-bench-", dir=args.root))
        modes: list[Mode] = []
        cgroup_root = None if args.cgroups is None else Path(args.cgroups) / root.name
        try:
            if cgroup_root is not None:
                cgroup_root.mkdir(mode=0o755)
                svc = accounts.passwd("svc")
                os.chown(cgroup_root, svc.pw_uid, svc.pw_gid)
            os.chmod(root, ROOT_MODE)
            ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
            for path in (root / "certificates", *(root / "certificates").iterdir()):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            cred = ca.issue_user("Bench", root / "user")
            proxy = root / "user" / "x509up"
            write_proxy(cred, proxy, lifetime=12 * 3600)
            pki: dict[str, Path | str] = {"ca_dir": root / "certificates", "proxy": proxy,
                                          "dn": slash_dn(cred.cert.subject)}
            for kind in ("none", "gridmap"):
                modes.append(start_mode(root, kind, n * windows, args.max_running, pki, accounts.name("svc"),
                                        accounts.name("usr"), args.poll_interval, cgroup_root))
            time.sleep(3.0)  # both workers up and idle before the first window
            print(f"{windows} windows of {n} trivial jobs, max_running {args.max_running}, SQLite, "
                  f"job cgroups (mapping on) {'in ' + str(cgroup_root) if cgroup_root else 'off'}, "
                  f"poll_interval {args.poll_interval:g} s, "
                  f"worker as service user {accounts.name('svc')}, {os.cpu_count()} cores")
            ratio_off: list[float] = []
            ratio_on: list[float] = []
            cpu: dict[str, list[float]] = {"none": [], "gridmap": []}
            side_cpu: dict[str, list[float]] = {"none": [], "gridmap": []}  # of which other threads (if any)
            zygote_cpu: dict[str, list[float]] = {"none": [], "gridmap": []}  # the zygote's own, ms/job
            wrapper_cpu: dict[str, list[float]] = {"none": [], "gridmap": []}  # its wrappers' and payloads'
            for index in range(windows):
                plain = n / plain_loop(n)
                rates: dict[str, float] = {}
                for mode in modes:
                    side = mode.side_cpu_seconds()
                    seconds, cpu_seconds = mode.window(n)
                    rates[mode.name] = n / seconds
                    cpu[mode.name].append(cpu_seconds / n * 1000)
                    side_cpu[mode.name].append((mode.side_cpu_seconds() - side) / n * 1000)
                    zygote_cpu[mode.name].append(mode.outside[0] / n * 1000)
                    wrapper_cpu[mode.name].append(mode.outside[1] / n * 1000)
                ratio_off.append(rates["none"] / plain)
                ratio_on.append(rates["gridmap"] / plain)
                print(f"  window {index + 1}: subprocess {plain:7.1f} jobs/s | mapping off {rates['none']:6.1f} jobs/s "
                      f"(ratio {ratio_off[-1]:.3f}, worker CPU {cpu['none'][-1]:.2f} ms/job) | mapping on "
                      f"{rates['gridmap']:6.1f} jobs/s (ratio {ratio_on[-1]:.3f}, worker CPU "
                      f"{cpu['gridmap'][-1]:.2f} ms/job)")
                print(f"    outside the worker, ms/job: zygote {zygote_cpu['none'][-1]:.2f} + wrappers and payloads "
                      f"{wrapper_cpu['none'][-1]:.2f} (mapping off), {zygote_cpu['gridmap'][-1]:.2f} + "
                      f"{wrapper_cpu['gridmap'][-1]:.2f} (on)")
            print("min / median / max over the windows:")
            print(f"  ratio mapping off / subprocess: {spread(ratio_off, '.3f')}   (target >= 0.25)")
            print(f"  ratio mapping on / subprocess:  {spread(ratio_on, '.3f')}")
            print(f"  worker CPU ms/job, mapping off: {spread(cpu['none'], '.2f')}   (target <= 5)")
            print(f"  worker CPU ms/job, mapping on:  {spread(cpu['gridmap'], '.2f')}")
            for kind, label in (("none", "off"), ("gridmap", "on")):
                print(f"  outside the worker, ms/job, mapping {label}: zygote {spread(zygote_cpu[kind], '.2f')}, its "
                      f"wrappers and payloads {spread(wrapper_cpu[kind], '.2f')} (the first window: with its start)")
            print(f"  of which threads other than the main one (an older worker's work dir remover), mapping off: "
                  f"{spread(side_cpu['none'], '.2f')}, on: {spread(side_cpu['gridmap'], '.2f')}")
        finally:
            failures: list[str] = []
            for mode in modes:  # every worker stopped, even when one mode's jobs did not all end Done
                try:
                    mode.check_and_stop()
                except RuntimeError as exc:
                    failures.append(str(exc))
            kill_processes_of({accounts.passwd("svc").pw_uid, accounts.passwd("usr").pw_uid})
            if cgroup_root is not None:
                for child in [*cgroup_root.iterdir(), cgroup_root]:  # emptied by the kill above
                    if child.is_dir():
                        with contextlib.suppress(OSError):
                            child.rmdir()
            shutil.rmtree(root, ignore_errors=True)
            if failures:
                raise RuntimeError("\n".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
