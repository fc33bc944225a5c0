"""A deployment with the privilege split of deploy/*.service, for the hostile-job and crash tests.

What it builds (as root, which CI is):

- throwaway accounts (:func:`tests.accounts.local_accounts`): the service user ``svc``
  and, in groups of their own, ``ali`` and ``bob``, to which a grid-mapfile maps the
  test PKI users alice and bob (``[mapping] mode = gridmap``; ``mapping="none"`` runs jobs
  as the service user instead);
- a root under /var/tmp (0711: the service user and the mapped accounts traverse it;
  the pytest tmp dirs under /root are 0700) holding a copy of the CA directory, the host
  certificate, the host key (service user, 0600), the configuration and the state
  directory (service user, 0711), whose contents ``wmproxy-admin init --user`` sets up;
- gunicorn as the service user without capabilities (setpriv ``--bounding-set=-all
  --no-new-privs``, as ``CapabilityBoundingSet=`` and ``NoNewPrivileges=`` in the unit);
- the execution worker as the service user with exactly the 5 ambient capabilities of
  wmproxy-worker.service (and ``--no-new-privs``, as ``NoNewPrivileges=`` there).

The service user cannot execute the virtualenv's interpreter (it lives under /root), so
the service processes run ``/usr/bin/python3 -m ...`` with the worktree and the
virtualenv's site-packages on PYTHONPATH (same minor version, so the same wheels).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.accounts import AccountSet, local_accounts
from tests.conftest import IN_CI, Pki, need_peer
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import BIN, REPO, Deployment, free_port, write_config
from tests.support import delegate, wait_for
from wmproxy.execution.processes import live_pids_of

#: The interpreter the service user runs (its venv's interpreter is under /root, 0700), of the tests'
#: minor version: WMPROXY_TEST_SYSTEM_PYTHON (.ci/test-pythons.sh sets it for the 3.13 run) or the system's.
SYSTEM_PYTHON = os.environ.get("WMPROXY_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
#: Modes of the deployment's root (traversable by every account) and of the shared marker directory.
ROOT_MODE = 0o711
SHARED_MODE = 0o1777
#: The execution worker's capabilities (wmproxy.execution.identity; deploy/wmproxy-worker.service).
WORKER_CAPS = ("chown", "setuid", "setgid", "kill", "dac_override")


@dataclass
class Isolated:
    """A running deployment with the privilege split, its accounts and paths."""

    deployment: Deployment
    root: Path
    accounts: AccountSet
    service: pwd.struct_passwd
    #: grid user (``alice``, ``bob``) → the account the grid-mapfile maps them to.
    mapped: dict[str, pwd.struct_passwd]
    #: a directory every account may write (markers of the crash tests), sticky like /tmp.
    shared: Path
    host_key: Path

    @property
    def state(self) -> Path:
        return self.deployment.state

    @property
    def store_key(self) -> Path:
        return self.state / "store.key"

    @property
    def work_root(self) -> Path:
        return self.state / "work"

    @property
    def sandbox_root(self) -> Path:
        return self.state / "sandbox"

    def uids(self) -> set[int]:
        return {entry.pw_uid for entry in self.mapped.values()} | {self.service.pw_uid}

    def start_worker(self, name: str = "worker-1") -> subprocess.Popen[bytes]:
        return self.deployment.start_worker(name)


def setpriv(user: pwd.struct_passwd, caps: tuple[str, ...] = ()) -> list[str]:
    """argv prefix running a command as ``user`` (its groups) with exactly ``caps`` (ambient)."""
    wanted = ",".join(["-all", *(f"+{cap}" for cap in caps)])
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
              f"--inh-caps={wanted}", f"--bounding-set={wanted}", "--no-new-privs"]
    return [*prefix, f"--ambient-caps={wanted}"] if caps else prefix


def processes_of(uids: set[int]) -> list[int]:
    """Pids of the live processes whose real uid is in ``uids`` (from /proc)."""
    return live_pids_of(uids)


def _still_alive(uids: set[int], pids: set[int]) -> set[int]:
    return set(processes_of(uids)) & pids


def kill_processes_of(uids: set[int]) -> None:
    """SIGKILL every process of the test's own throwaway accounts (jobs left running)."""
    for _ in range(20):
        pids = set(processes_of(uids))
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(functools.partial(_still_alive, uids, pids), lambda alive: not alive,
                 what="killed job processes to vanish", timeout=30)


def kill_jobs_of(deployment: Deployment) -> None:
    """SIGKILL the session of every job wrapper of ``deployment`` still running (the wrappers
    lead their sessions; their command line ends with the wrapper and the work dir under
    ``<state>/work``): a shared deployment's next module must not find its slots taken by
    jobs that an earlier module left running. The worker then records those jobs as it
    records any wrapper that died."""
    work = f"{deployment.state}/work/"

    def wrappers() -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            if len(argv) >= 2 and argv[-1].startswith(work) and argv[-2].endswith("jobwrapper.py"):
                found.add(int(entry.name))
        return found

    for _ in range(20):
        sessions = wrappers()
        if not sessions:
            return
        for sid in sessions:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(sid, signal.SIGKILL)
        wait_for(lambda s=sessions: wrappers() & s, lambda alive: not alive, what="killed job wrappers to vanish",  # type: ignore[misc]
                 timeout=30)


def _check_peers() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            raise AssertionError("the isolation tests create accounts and switch users: CI must run them as root")
        need_peer("the isolation tests need root (accounts, setpriv)")
    if shutil.which("setpriv") is None:
        need_peer("setpriv (util-linux) starts the service processes as the service user")
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 or done.stdout.strip() != str(sys.version_info[:2]):
        need_peer(f"{SYSTEM_PYTHON} of the tests' minor version runs the service user's processes")


def _copy_public(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    for path in (dst, *dst.rglob("*")):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


#: CEs on the throwaway Slurm cluster's partitions (``tests.peers.slurm``), added to the catalogue.
SLURM_CES = """
[ GlueCEUniqueID = "localhost:6817/slurm-debug"; WMProxyBackend = "slurm"; SlurmPartition = "debug";
  GlueCEStateStatus = "Production"; GlueCEInfoHostName = "localhost" ]
[ GlueCEUniqueID = "localhost:6817/slurm-long"; WMProxyBackend = "slurm"; SlurmPartition = "long";
  GlueCEStateStatus = "Production"; GlueCEInfoHostName = "localhost" ]
"""


@contextmanager
def isolated_deployment(pki: Pki, database_url: str, *, mapping: str = "gridmap", execution: str = "",
                        start_worker: bool = True, extra_env: Mapping[str, str] | None = None,
                        slurm_conf: Path | None = None, venv: Path | None = None) -> Iterator[Isolated]:
    """Build and start the deployment; stop it, kill the accounts' processes, remove everything after.

    Args:
        mapping: ``gridmap`` (alice → ``ali``, bob → ``bob``) or ``none`` (jobs as the service user;
            the worker then has no capability, as wmproxy-worker needs none without mapping).
        execution: extra ``[execution]`` lines (``max_running``, ``heartbeat_lease``...).
        start_worker: start ``worker-1`` too.
        extra_env: extra environment of every process (``WMPROXY_<AREA>_<KEY>`` settings).
        slurm_conf: a Slurm cluster's ``slurm.conf``: the worker then runs the local and
            the Slurm backend (CE state refreshed every second) and the catalogue gains :data:`SLURM_CES`.
        venv: a virtualenv (readable by the accounts) whose scripts run every process, in the
            deployment's directory, without the source tree on ``sys.path`` (a wheel install,
            tests/packaging); default: this checkout through the system Python.
    """
    _check_peers()
    with local_accounts({"svc": ["svc"], "ali": ["ali"], "bob": ["bob"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="wmproxy-iso-", dir="/var/tmp"))
        dep: Deployment | None = None
        iso: Isolated | None = None
        try:
            service = accounts.passwd("svc")
            mapped = {"alice": accounts.passwd("ali"), "bob": accounts.passwd("bob")}
            os.chmod(root, ROOT_MODE)
            _copy_public(pki.ca_dir, root / "certificates")
            (root / "vomsdir").mkdir(mode=0o755)
            host = root / "host"
            host.mkdir(mode=0o755)
            shutil.copyfile(pki.host_cert, host / "hostcert.pem")
            os.chmod(host / "hostcert.pem", 0o644)
            host_key = host / "hostkey.pem"
            shutil.copyfile(pki.host_key, host_key)
            os.chmod(host_key, 0o600)
            os.chown(host_key, service.pw_uid, service.pw_gid)
            shared = root / "shared"
            shared.mkdir()
            os.chmod(shared, SHARED_MODE)
            state = root / "state"
            state.mkdir(mode=0o711)
            os.chown(state, service.pw_uid, service.pw_gid)
            gridmap = root / "grid-mapfile"
            gridmap.write_text("".join(f'"{pki.users[user].dn}" {mapped[user].pw_name}\n' for user in mapped))
            os.chmod(gridmap, 0o644)
            port = free_port()
            config = root / "wmproxy.conf"
            db_url = f"sqlite:///{state}/wmproxy.db" if database_url.startswith("sqlite") else database_url
            write_config(config, db_url=db_url, ca_dir=root / "certificates", host_cert=host / "hostcert.pem",
                         host_key=host_key, state=state, port=port, execution=execution,
                         extra=f"[mapping]\nmode = {mapping}\ngridmap_file = {gridmap}\n")
            for path in (config, state / "ce-catalogue.ads"):
                os.chmod(path, 0o644)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "X509_", "PYTHON"))}
            site_packages = sysconfig.get_paths()["purelib"]
            env.update(WMPROXY_CONFIG=str(config), X509_CERT_DIR=str(root / "certificates"),
                       X509_USER_PROXY=str(pki.users["alice"].proxy), PATH=f"{BIN}:{env.get('PATH', '')}",
                       PYTHONPATH=f"{REPO}:{site_packages}", PYTHONDONTWRITEBYTECODE="1", HOME=str(state))
            if venv is not None:
                del env["PYTHONPATH"]
                env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
            if slurm_conf is not None:
                env.update(WMPROXY_EXECUTION_BACKEND="local,slurm", WMPROXY_SLURM_CONF=str(slurm_conf),
                           WMPROXY_SLURM_REFRESH_INTERVAL="1")
                with open(state / "ce-catalogue.ads", "a", encoding="utf-8") as catalogue:
                    catalogue.write(SLURM_CES)
            env.update(extra_env or {})
            # Without mapping the worker needs no capability (it runs jobs as itself).
            worker_caps = WORKER_CAPS if mapping != "none" else ()
            dep = Deployment(config=config, state=state, port=port, env=env,
                             service_prefix=setpriv(service), worker_prefix=setpriv(service, worker_caps),
                             python=SYSTEM_PYTHON if venv is None else "", shared=shared,
                             bin_dir=BIN if venv is None else venv / "bin", cwd=REPO if venv is None else root)
            result = dep.run(str(dep.bin_dir / "wmproxy-admin"), "init", "--user", service.pw_name)
            assert result.returncode == 0, result.stderr
            iso = Isolated(dep, root, accounts, service, mapped, shared, host_key)
            dep.start_gunicorn()
            if start_worker:
                dep.start_worker()
            yield iso
        finally:
            if dep is not None:
                dep.stop()
            kill_processes_of({e.pw_uid for e in (accounts.passwd(u) for u in ("svc", "ali", "bob"))})
            keep = os.environ.get("WMPROXY_TEST_KEEP_LOGS")
            if keep:  # a directory to copy the processes' logs to, for a failure's post-mortem
                for log in root.glob("state/*.log"):
                    shutil.copyfile(log, Path(keep) / f"{root.name}-{log.name}")
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def standard_deployment(pki: Pki, database_url: str, state: Path,
                        extra_env: Mapping[str, str] | None = None, venv: Path | None = None) -> Iterator[Deployment]:
    """gunicorn and one execution worker, jobs run without mapping, stopped afterwards.

    As root (CI): :func:`isolated_deployment` with ``mapping="none"`` (the service user runs
    gunicorn and the worker, and so the jobs: wmproxy-worker refuses to run jobs as root).
    As another user: everything runs as that user, with its state in ``state`` (an empty
    directory, e.g. from pytest's tmp_path_factory). Files a job must see go in
    :meth:`Deployment.scratch`.

    Args:
        extra_env: ``WMPROXY_<AREA>_<KEY>`` settings of every process.
        venv: a virtualenv whose scripts run every process, in ``state`` (see :func:`isolated_deployment`).
    """
    if os.geteuid() == 0:
        with isolated_deployment(pki, database_url, mapping="none", extra_env=extra_env, venv=venv) as iso:
            yield iso.deployment
        return
    port = free_port()
    config = state / "wmproxy.conf"
    write_config(config, db_url=database_url, ca_dir=pki.ca_dir, host_cert=pki.host_cert, host_key=pki.host_key,
                 state=state, port=port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "X509_"))}
    env.update(WMPROXY_CONFIG=str(config), X509_CERT_DIR=str(pki.ca_dir), X509_USER_PROXY=str(pki.users["alice"].proxy),
               PATH=f"{BIN}:{env.get('PATH', '')}")
    env.update(extra_env or {})
    shared = state / "shared"
    shared.mkdir()
    dep = Deployment(config=config, state=state, port=port, env=env, shared=shared)
    if venv is not None:
        dep.bin_dir, dep.cwd = venv / "bin", state
        env["PATH"] = f"{dep.bin_dir}:{env['PATH']}"
    result = dep.run(str(dep.bin_dir / "wmproxy-admin"), "init")
    assert result.returncode == 0, result.stderr
    try:
        dep.start_gunicorn()
        dep.start_worker()
        yield dep
    finally:
        dep.stop()


def client(iso: Isolated, pki: Pki, user: str) -> ReferenceClient:
    """A reference client of ``user`` (``pki``'s) to the isolated deployment, its proxy
    delegated under the id ``iso``."""
    ref = reference_client(iso.deployment.endpoint, pki.users[user].proxy, iso.root / "certificates")
    delegate(ref, pki.users[user].proxy, "iso")
    return ref
