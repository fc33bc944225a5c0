"""Jobs per second through the execution worker with mapping on and off, vs a plain subprocess loop.

Standalone, as root (it creates throwaway accounts): ``.venv/bin/python
benchmarks/execution_mapping.py [--jobs 500] [--max-running 8]``.

For each mode a fresh SQLite state (``wmproxy-admin init --user``) is filled in-process with N
started ``/bin/true`` jobs of one user (delegation + jobSubmit through the services); then one
``wmproxy-worker`` process is started as the service user, as deploy/wmproxy-worker.service
starts it, and timed from its start until every job is final:

- mapping on (``gridmap``): the worker holds its 5 ambient capabilities and runs each job as
  the user's mapped account (work dir and proxy copy handed over, wrapper started as the account);
- mapping off (``none``): the worker has no capability and runs each job as itself.

The plain loop runs ``subprocess.run(["/bin/true"])`` N times. Figures include the worker's
start (about a second; small against N=500). Printed: jobs/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa

from tests.accounts import local_accounts
from tests.integration.isolated import SYSTEM_PYTHON, WORKER_CAPS, kill_processes_of, setpriv
from tests.support import delegate_in_process
from wmproxy.admin import initialise
from wmproxy.config import load_settings
from wmproxy.domain import JobState, Principal
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

FINAL = [s.value for s in (JobState.DONE, JobState.ABORTED, JobState.CANCELLED, JobState.CLEARED)]
TIMEOUT = 3600.0  # seconds one mode may take at most
ROOT_MODE = 0o711  # the accounts traverse the benchmark's root


def run_worker_mode(root: Path, mode: str, jobs: int, max_running: int, pki: dict[str, Path | str],
                    svc: str, account: str) -> float:
    """Seconds the worker took to end ``jobs`` started jobs in ``mode`` (``gridmap`` or ``none``)."""
    import pwd

    service = pwd.getpwnam(svc)
    state = root / f"state-{mode}"
    state.mkdir(mode=0o711)
    os.chown(state, service.pw_uid, service.pw_gid)
    gridmap = root / "grid-mapfile"
    gridmap.write_text(f'"{pki["dn"]}" {account}\n')
    os.chmod(gridmap, 0o644)
    config = root / f"wmproxy-{mode}.conf"
    config.write_text(
        f"[database]\nurl = sqlite:///{state}/wmproxy.db\n"
        f"[security]\nca_dir = {pki['ca_dir']}\nstore_key_file = {state}/store.key\nauthorized_users = *\n"
        f"[service]\nhost = localhost\nport = 7443\n"
        f"[sandbox]\nroot = {state}/sandbox\n"
        f"[execution]\nwork_dir = {state}/work\npoll_interval = 0.2\nmax_running = {max_running}\n"
        f"heartbeat_lease = 60\n"
        f"[mapping]\nmode = {mode}\ngridmap_file = {gridmap}\n"
    )
    os.chmod(config, 0o644)
    settings = load_settings(config)
    initialise(settings)
    rt = Runtime.from_settings(settings)
    principal = Principal(dn=str(pki["dn"]))
    delegation = delegate_in_process(rt, principal, Path(pki["proxy"]), "bench")
    for _ in range(jobs):
        submit_job(rt, principal, '[ Executable = "/bin/true"; ]', delegation)
    # The job areas were made here, as root: hand the whole state to the service user, as if
    # gunicorn (running as the service user) had made them.
    subprocess.run(["chown", "-R", f"{service.pw_uid}:{service.pw_gid}", str(state)], check=True)
    initialise(settings, user=svc)
    engine = sa.create_engine(settings.database.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "PYTHON"))}
    env.update(WMPROXY_CONFIG=str(config), PYTHONPATH=f"{REPO}:{sysconfig.get_paths()['purelib']}",
               PYTHONDONTWRITEBYTECODE="1", HOME=str(state))
    caps = WORKER_CAPS if mode != "none" else ()
    with open(root / f"worker-{mode}.log", "ab") as log:
        begin = time.monotonic()
        worker = subprocess.Popen(
            [*setpriv(service, caps), SYSTEM_PYTHON, "-m", "wmproxy.execution", "--name", f"bench-{mode}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )
    try:
        while True:
            with engine.connect() as conn:
                done = conn.execute(sa.text("select count(*) from jobs where state in :s").bindparams(
                    sa.bindparam("s", expanding=True)), {"s": FINAL}).scalar_one()
            if done >= jobs:
                elapsed = time.monotonic() - begin
                break
            if worker.poll() is not None:
                tail = (root / f"worker-{mode}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the worker exited ({worker.returncode}):\n{tail}")
            if time.monotonic() - begin > TIMEOUT:
                raise RuntimeError(f"{done} of {jobs} jobs final after {TIMEOUT:g} s")
            time.sleep(0.1)
        with engine.connect() as conn:
            states = dict(conn.execute(sa.text("select state, count(*) from jobs group by state")).all())
        if states != {JobState.DONE.value: jobs}:
            raise RuntimeError(f"not every job ended Done: {states}")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=120)
        engine.dispose()
        rt_bind = rt.session_factory.kw.get("bind")
        if rt_bind is not None:
            rt_bind.dispose()
    return elapsed


def plain_loop(jobs: int) -> float:
    begin = time.monotonic()
    for _ in range(jobs):
        subprocess.run(["/bin/true"], check=True)
    return time.monotonic() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="trivial jobs per measurement, default 500")
    parser.add_argument("--max-running", type=int, default=8, help="[execution] max_running, default 8")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("execution_mapping.py must run as root: it creates a service account and a mapped account "
              "(useradd) and starts the worker as the service user with capabilities (setpriv)", file=sys.stderr)
        return 2
    if shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
        print(f"needs setpriv (util-linux) and {SYSTEM_PYTHON}", file=sys.stderr)
        return 2
    with local_accounts({"svc": ["svc"], "usr": ["usr"]}) as accounts:
        root = Path(tempfile.mkdtemp(prefix="wmproxy-bench-", dir="/var/tmp"))
        try:
            os.chmod(root, ROOT_MODE)
            ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
            for path in (root / "certificates", *(root / "certificates").iterdir()):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            cred = ca.issue_user("Bench", root / "user")
            proxy = root / "user" / "x509up"
            write_proxy(cred, proxy, lifetime=12 * 3600)
            pki: dict[str, Path | str] = {"ca_dir": root / "certificates", "proxy": proxy,
                                          "dn": slash_dn(cred.cert.subject)}
            n = args.jobs
            print(f"{n} trivial jobs, max_running {args.max_running}, SQLite, worker as service user "
                  f"{accounts.name('svc')}")
            seconds = {
                "mapping on": run_worker_mode(root, "gridmap", n, args.max_running, pki, accounts.name("svc"),
                                              accounts.name("usr")),
                "mapping off": run_worker_mode(root, "none", n, args.max_running, pki, accounts.name("svc"),
                                               accounts.name("usr")),
                "subprocess /bin/true": plain_loop(n),
            }
            rates = {name: n / s for name, s in seconds.items()}
            for name, rate in rates.items():
                print(f"  {name:22} {seconds[name]:8.2f} s  {rate:8.1f} jobs/s")
            plain = rates["subprocess /bin/true"]
            print(f"  ratio mapping on / mapping off:  {rates['mapping on'] / rates['mapping off']:.3f}")
            print(f"  ratio mapping on / subprocess:   {rates['mapping on'] / plain:.4f}")
            print(f"  ratio mapping off / subprocess:  {rates['mapping off'] / plain:.4f}")
        finally:
            kill_processes_of({accounts.passwd("svc").pw_uid, accounts.passwd("usr").pw_uid})
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
