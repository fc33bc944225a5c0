"""Proxy renewal from a real myproxy-server keeps jobs alive; expiry aborts them (issue 4).

One deployment per database backend (gunicorn over TLS, an execution worker and **two**
``wmproxy-renewal`` workers), Debian's myproxy-server on loopback, short proxies (75 s),
a 60 s renewal threshold, a 1 s cycle and a 10 s MyProxy timeout (room for two timed-out
exchanges and a renewal between the first attempt and the expiry). Every scenario is set
up at once by the ``world`` fixture, so their waits overlap; each test then checks one
scenario. No test depends on how long the setup takes: a renewal may come before the
fixture ends (it is due ~15 s after the delegation).

* ``renew``   (alice, server ``ok``): two running jobs on one credential, one MyProxy call;
  stored and running proxies extended.
* ``outage``  (alice, server ``paused``: SIGSTOP, so exchanges time out, then SIGCONT):
  renewed when it is back, nothing aborted.
* ``down``    (bob, server ``down``: stopped): a running and a registered job Aborted
  "the user proxy expired" at expiry, the running process stopped.
* ``refused`` (bob, server ``refusing``: our DN is not an authorized renewer): the refusal
  is logged and recorded, jobs aborted at expiry.
* ``none``    (alice, no MyProxyServer, no default): never renewed, aborted at expiry.
* ``short``   (alice, server ``short``: the stored credential itself ends ~10 s after the
  delegated proxies): MyProxy never grants more; two workers make at most one attempt per cycle.
* ``voms``    (alice, server ``ok``, a proxy whose VOMS AC expired while its X.509 part is
  valid, made with voms-proxy-fake): renewed, the expired attributes reported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki, need_peer
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.renewal_support import sleeper, start_renewal_worker
from tests.integration.service import Deployment
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.support import delegate, wait_for
from tests.voms_support import fake_voms_proxy, fake_voms_server
from wmproxy.config import load_settings
from wmproxy.execution.backends.local import parse_ref
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.services.renewal import RETRY_FRACTION

pytestmark = pytest.mark.integration

LIFETIME = 75  # seconds of the delegated proxies
THRESHOLD = 60  # renewal threshold: the first renewals are due ~15 s after delegation
#: renewal.timeout, seconds: a whole exchange (connect, TLS, the server's fork and key) under
#: load fits in it; the paused server's two timed-out exchanges fit in the threshold.
TIMEOUT = 10
ASKED = 100  # renewal.lifetime (a quarter of it stays below the threshold)
CYCLE = 1  # renewal.cycle, seconds
REASON = "the user proxy expired"
NOBODY = "/C=XX/O=Nowhere/CN=not the wms"


@dataclass
class World:
    dep: Deployment
    db: sa.Engine
    alice: ReferenceClient
    bob: ReferenceClient
    servers: dict[str, MyProxyServer]
    t0: float  # monotonic time of the first delegation
    jobs: dict[str, list[str]] = field(default_factory=dict)
    delegated_end: dict[str, dt.datetime] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)  # job id -> pid of its process, once running

    def wait_until(self, seconds_after_t0: float) -> None:
        time.sleep(max(0.0, self.t0 + seconds_after_t0 - time.monotonic()))

    def record(self, delegation_id: str) -> dict | None:
        with self.db.connect() as conn:
            row = conn.execute(sa.text("select * from proxy_renewals where delegation_id = :d"),
                               {"d": delegation_id}).mappings().one_or_none()
        return dict(row) if row else None

    def stored_end(self, delegation_id: str) -> dt.datetime:
        with self.db.connect() as conn:
            value = conn.execute(sa.text("select not_after from delegations where delegation_id = :d"),
                                 {"d": delegation_id}).scalar_one()
        return _utc(value)

    def backend_pid(self, job_id: str) -> int | None:
        with self.db.connect() as conn:
            ref = conn.execute(sa.text("select backend_ref from jobs where id = :j"), {"j": job_id}).scalar_one()
        # local:<host>:<wrapper pid>[@<start time>]:<work dir>; the wrapper leads the job's session
        parsed = parse_ref(ref) if ref else None
        return None if parsed is None else parsed[1]

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dep.state.glob("renewal-*.log")))


def _utc(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def job_proxy_end(pid: int) -> dt.datetime:
    """notAfter of the file the job sees as X509_USER_PROXY: the environment of a process
    of the session the job wrapper ``pid`` leads (the wrapper's own has no proxy)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != pid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        path = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"X509_USER_PROXY=")), None)
        if path is not None:
            return load_pem_chain(Path(path.decode()).read_bytes())[0].not_valid_after_utc
    raise AssertionError(f"no process of the job session {pid} has X509_USER_PROXY")


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


@pytest.fixture(scope="module")
def world(pki: Pki, database_url: str, myproxy_server_factory, tmp_path_factory) -> Iterator[World]:  # noqa: F811
    host_dn = slash_dn(load_pem_chain(pki.host_cert.read_bytes())[0].subject)
    alice_long, bob_long = pki.users["alice"].proxy, pki.users["bob"].proxy
    servers = {
        "ok": myproxy_server_factory([host_dn]),
        "paused": myproxy_server_factory([host_dn]),
        "down": myproxy_server_factory([host_dn]),
        "refusing": myproxy_server_factory([NOBODY]),
        "short": myproxy_server_factory([host_dn]),
    }
    for name, user_proxy in [("ok", alice_long), ("paused", alice_long), ("down", bob_long)]:
        store_renewable_credential(servers[name], user_proxy, host_dn, lifetime_hours=2, proxy_lifetime_hours=1)
    store_renewable_credential(servers["refusing"], bob_long, NOBODY, lifetime_hours=2, proxy_lifetime_hours=1)
    # a stored credential that itself ends soon after the delegated proxies: MyProxy cannot grant more
    store_renewable_credential(servers["short"], pki.proxy("alice", LIFETIME + 10), host_dn, lifetime_hours=1,
                               proxy_lifetime_hours=1)
    servers["down"].stop()
    voms_proxy = None
    if shutil.which("voms-proxy-fake"):  # an AC that ended 1 h ago on a proxy valid for 24 h
        voms_root = tmp_path_factory.mktemp("voms")
        voms_proxy = fake_voms_proxy(pki, fake_voms_server(pki, voms_root), voms_root / "x509up",
                                     "-pastac", "7200", "-vomslife", "1")
    os.kill(servers["paused"].pid, signal.SIGSTOP)

    extra_env = {"WMPROXY_SECURITY_MIN_PROXY_LIFETIME": "10", "WMPROXY_RENEWAL_CYCLE": str(CYCLE),
                     "WMPROXY_RENEWAL_THRESHOLD": str(THRESHOLD), "WMPROXY_RENEWAL_LIFETIME": str(ASKED),
                     "WMPROXY_RENEWAL_TIMEOUT": str(TIMEOUT), "WMPROXY_EXECUTION_MAX_RUNNING": "16",
                     "WMPROXY_RENEWAL_MYPROXY_ALLOWED_SERVERS": ", ".join(f"localhost:{s.port}"
                                                                          for s in servers.values())}
    with contextlib.ExitStack() as stack:
        stack.callback(_resume, servers["paused"].pid)
        dep = stack.enter_context(standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env))
        db = sa.create_engine(load_settings(dep.config).database.url)
        stack.callback(db.dispose)
        start_renewal_worker(dep, "renewal-1")
        start_renewal_worker(dep, "renewal-2")
        alice = reference_client(dep.endpoint, alice_long, pki.ca_dir)
        bob = reference_client(dep.endpoint, bob_long, pki.ca_dir)
        world = World(dep, db, alice, bob, servers, time.monotonic())
        registered: list[str] = []

        def submit(client: ReferenceClient, deleg: str, jdls: list[str], register_only: int = 0,
                   signer: Path | None = None) -> None:
            signer = signer or (alice_long if client is alice else bob_long)
            delegate(client, signer, deleg, lifetime=LIFETIME)
            world.delegated_end[deleg] = world.stored_end(deleg)
            ids = [client.wmproxy.jobSubmit(j, deleg).id for j in jdls]
            registered.extend(client.wmproxy.jobRegister(sleeper(300), deleg).id for _ in range(register_only))
            ids += registered[len(registered) - register_only:]
            world.jobs[deleg] = ids

        at = lambda name: f"localhost:{servers[name].port}"  # noqa: E731
        submit(alice, "renew", [sleeper(301, at("ok")), sleeper(302, at("ok"))])
        submit(alice, "outage", [sleeper(303, at("paused"))])
        submit(bob, "down", [sleeper(304, at("down"))], register_only=1)
        submit(bob, "refused", [sleeper(305, at("refusing"))])
        submit(alice, "none", [sleeper(306, None), sleeper(307, "")])
        submit(alice, "short", [sleeper(308, at("short"))])
        if voms_proxy is not None:
            submit(alice, "voms", [sleeper(309, at("ok"))], signer=voms_proxy)
        started = [j for deleg, ids in world.jobs.items() for j in ids if j not in registered]
        wait_for(lambda: all(world.backend_pid(j) for j in started), what="the jobs to start")
        world.pids = {j: world.backend_pid(j) for j in started}
        assert all(process_alive(pid) for pid in world.pids.values())
        yield world


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def status(client: ReferenceClient, job_id: str) -> str:
    return client.wmproxy.getJobStatus(job_id).status


class TestRenewal:
    # in the order of the scenario's clock: each test waits for its moment
    def test_renewal_extends_the_stored_and_the_running_jobs_proxy(self, world: World) -> None:
        jobs = world.jobs["renew"]
        pids = [world.pids[j] for j in jobs]
        first = world.delegated_end["renew"]
        # the jobs see the delegated proxy, or already the renewed one (a slow setup)
        seen = [job_proxy_end(pid) for pid in pids]
        stored = world.stored_end("renew")  # after: a job seeing a renewed proxy finds it stored
        assert all(any(abs((end - e).total_seconds()) < 2 for e in (first, stored)) for end in seen), (
            first, stored, seen)
        wait_for(lambda: world.record("renew"), lambda r: r is not None and r["renewals"] >= 1,
                 what="proxy renew to be renewed")
        new_end = world.stored_end("renew")
        # what MyProxy granted: myproxy-server hands out at least 5 minutes, whatever is asked
        assert first + dt.timedelta(seconds=50) < new_end <= dt.datetime.now(dt.UTC) + dt.timedelta(
            seconds=max(ASKED, 300) + 1)
        wait_for(lambda: all(abs((job_proxy_end(p) - new_end).total_seconds()) < 2 for p in pids),
                 what="the running jobs to see the renewed proxy")
        # the service shows the new end
        assert int(world.alice.wmproxy.getDelegatedProxyInfo("renew").EndTime) == int(new_end.timestamp())
        assert int(world.alice.wmproxy.getJobProxyInfo(jobs[0]).EndTime) == int(new_end.timestamp())
        # the renewed proxy keeps alice's identity
        assert world.alice.wmproxy.getJobProxyInfo(jobs[1]).Identity.endswith("/CN=Alice")

    def test_server_down_then_back_before_expiry_renews_and_aborts_nothing(self, world: World) -> None:
        # due at ~16 s; each attempt times out after TIMEOUT s and is retried on the next cycle:
        # the second has failed ~2 x TIMEOUT s later, long before the expiry (LIFETIME)
        record = wait_for(lambda: world.record("outage"), lambda r: r is not None and r["attempts"] >= 2,
                          what="two renewal attempts of proxy outage")
        assert record and record["renewals"] == 0, world.record("outage")
        assert record["last_result"] == "unreachable" and "timed out" in record["last_error"]
        os.kill(world.servers["paused"].pid, signal.SIGCONT)
        wait_for(lambda: world.record("outage"), lambda r: r["renewals"] == 1, what="proxy outage to be renewed")
        assert world.stored_end("outage") > world.delegated_end["outage"] + dt.timedelta(seconds=40)
        assert re.search(r"renewal of proxy outage .* failed \(unreachable\): MyProxy server \S+ timed out",
                         world.log())

    def test_renewer_not_authorized_is_logged_and_jobs_abort_at_expiry(self, world: World) -> None:
        (job,) = world.jobs["refused"]
        record = wait_for(lambda: world.record("refused"), lambda r: r is not None and r["attempts"] >= 1,
                          what="a renewal attempt of proxy refused")
        assert record["last_result"] == "refused"
        assert "MyProxy server refused the renewal" in record["last_error"]
        assert "authentication failed" in record["last_error"] or "not authorized" in record["last_error"]
        assert re.search(r"renewal of proxy refused .* failed \(refused\): MyProxy server refused", world.log())
        world.wait_until(LIFETIME + 1)
        wait_for(lambda: status(world.bob, job), lambda s: s == f"Aborted ({REASON})", what=f"{job} to abort")

    def test_a_proxy_with_expired_voms_attributes_is_renewed_and_they_are_reported(self, world: World) -> None:
        if "voms" not in world.jobs:
            need_peer("voms-proxy-fake (voms-clients) is not installed")
        record = wait_for(lambda: world.record("voms"), lambda r: r is not None and r["renewals"] >= 1,
                          what="proxy voms to be renewed")
        assert record, world.record("voms")
        assert "VOMS attributes expired while the X.509 proxy was valid: /atlas/Role=production" in record["notes"]
        assert "the renewed proxy carries no VOMS attributes" in record["notes"]
        assert re.search(r"WARNING .*renewal of proxy voms of .*: VOMS attributes expired", world.log())
        assert world.stored_end("voms") > world.delegated_end["voms"] + dt.timedelta(seconds=40)

    def test_two_jobs_on_one_credential_make_one_myproxy_call(self, world: World) -> None:
        world.wait_until(LIFETIME + 3)  # the first proxy has expired by now
        record, log = world.record("renew"), world.log()
        assert (record["renewals"], record["last_result"]) == (1, "renewed"), record
        # one exchange renewed the credential of both jobs; an exchange that failed before it
        # (over the timeout on a loaded machine) is retried, and none came after it
        assert len(re.findall(r"renewed proxy renew of ", log)) == 1, log[-3000:]
        failed = len(re.findall(r"renewal of proxy renew of .* failed \(", log))
        assert record["attempts"] == len(re.findall(r"renewing proxy renew of ", log)) == 1 + failed, log[-3000:]
        for job_id in world.jobs["renew"] + world.jobs["outage"]:  # outage: nothing aborted either
            assert status(world.alice, job_id) == "Running"

    def test_server_down_until_expiry_aborts_the_jobs(self, world: World) -> None:
        running, registered = world.jobs["down"]
        pid = world.pids[running]
        world.wait_until(LIFETIME + 1)
        expected = f"Aborted ({REASON})"
        wait_for(lambda: status(world.bob, running), lambda s: s == expected, what=f"{running} to abort")
        assert status(world.bob, registered) == expected
        wait_for(lambda: not process_alive(pid), what="the running job to be stopped")
        assert re.search(r"renewal of proxy down .* failed \(unreachable\): cannot connect", world.log())
        assert world.stored_end("down") == world.delegated_end["down"]
        wait_for(lambda: world.record("down") is None, what="proxy down to be deregistered")

    def test_without_myproxy_server_never_renewed_and_aborted_at_expiry(self, world: World) -> None:
        for job_id in world.jobs["none"]:
            assert "MyProxyServer" not in world.alice.wmproxy.getJDL(job_id, "REGISTERED")
        assert world.record("none") is None
        world.wait_until(LIFETIME + 1)
        assert world.stored_end("none") == world.delegated_end["none"]
        for job_id in world.jobs["none"]:
            wait_for(lambda j=job_id: status(world.alice, j), lambda s: s == f"Aborted ({REASON})",
                     what=f"{job_id} to abort")
        assert "renewing proxy none of" not in world.log()

    def test_two_workers_renew_once_per_cycle_and_never_beyond_the_grant(self, world: World) -> None:
        (job,) = world.jobs["short"]
        world.wait_until(LIFETIME + 2)
        log = world.log()
        # each attempt logs the time of its claim, the time the database compared with the
        # record's next attempt time: no log or scheduling delay shifts it
        claims = sorted(
            dt.datetime.fromisoformat(stamp)
            for stamp in re.findall(r"renewing proxy short of .*; claimed at (\S+)\)$", log, re.M)
        )
        assert len(claims) >= 3, log[-3000:]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(claims)]
        # two workers, each passing every 1 s cycle: a claim blocks the record for 0.9 cycle
        # (RETRY_FRACTION), so whichever worker wins, claims are at least that far apart
        assert min(gaps) >= CYCLE * RETRY_FRACTION, gaps
        record = world.record("short")
        assert record is None or abs(record["attempts"] - len(claims)) <= 1
        # MyProxy grants no more than the stored credential's own end: never extended for long
        assert world.stored_end("short") < world.delegated_end["short"] + dt.timedelta(seconds=30)
        assert "not later than the stored one" in log or "renewed" in log
        wait_for(lambda: status(world.alice, job), lambda s: s == f"Aborted ({REASON})", what=f"{job} to abort")

    def test_cancelled_jobs_deregister_the_credential(self, world: World) -> None:
        running = [d for d in ("renew", "outage", "voms") if d in world.jobs]
        assert all(world.record(d) is not None for d in running)  # registered: what the cancel must remove
        for deleg in running:
            for job_id in world.jobs[deleg]:
                world.alice.wmproxy.jobCancel(job_id)
        wait_for(lambda: all(world.record(d) is None for d in running), what="the credentials to be deregistered")
