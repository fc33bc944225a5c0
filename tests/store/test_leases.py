"""Pool leases and identity mapping on a real database (SQLite file and PostgreSQL), with real
Unix accounts (``tests/accounts.py``) and real concurrency: threads and processes with their
own sessions racing for the last accounts of a pool."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.accounts import AccountSet, local_accounts
from tests.conftest import need_peer
from tests.store.conftest import schema_diffs
from tests.store.lease_race import race_in_process
from wmproxy.config import DatabaseSettings, MappingSettings, SandboxSettings, Settings
from wmproxy.domain import JobState, LocalAccount, utcnow
from wmproxy.errors import AuthorizationError
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security.gridmap import MappingError, MappingNotAllowedError
from wmproxy.security.sealing import Sealer
from wmproxy.services.mapping import map_identity, release_idle_leases
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork, make_engine, make_session_factory
from wmproxy.store.schema import Job, PoolLease

ALICE = "/C=XX/O=Grid/CN=Alice"
BOB = "/C=XX/O=Grid/CN=Bob"
CAROL = "/C=XX/O=Grid/CN=Carol"
BANNED = "/C=XX/O=Grid/CN=Mallory"
PRODUCTION = "/atlas/Role=production/Capability=NULL"
PILOT = "/atlas/Role=pilot/Capability=NULL"
LHCB_PILOT = "/lhcb/Role=pilot/Capability=NULL"
#: Deadline for a concurrent request to reach its wait (seconds); generous, the machine is shared.
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as uow:
        uow.session.execute(sa.delete(PoolLease))
        uow.session.execute(sa.delete(Job))


def _job(job_id: str, account: str, state: JobState, updated_at: dt.datetime) -> Job:
    return Job(id=f"https://h:9000/{job_id}", owner_dn=ALICE, delegation_id="d", state=state.value,
               jdl_original="[]", jdl_registered="[]", sandbox_dir=job_id, local_account=account,
               created_at=updated_at, updated_at=updated_at)


def _acquire(factory: sessionmaker[Session], dn: str, candidates: list[str], *, pool: str = "p",
             group: str = "", now: dt.datetime | None = None) -> str | None:
    with UnitOfWork(factory) as uow:
        lease = uow.leases.acquire(pool, dn, group, candidates, now or utcnow())
        return lease.account if lease else None


class TestSchema:
    def test_the_migration_matches_the_schema_for_leases_and_the_jobs_account(
        self, factory: sessionmaker[Session]
    ) -> None:
        diffs = schema_diffs(factory)
        mine = [d for d in diffs if "pool_leases" in repr(d) or "local_account" in repr(d)]
        assert mine == []
        with factory() as session:
            columns = {c["name"] for c in sa.inspect(session.get_bind()).get_columns("jobs")}
        assert "local_account" in columns


class TestLeaseStore:
    def test_an_identity_keeps_its_account_across_jobs_and_restarts(
        self, factory: sessionmaker[Session], database_url: str
    ) -> None:
        first = _acquire(factory, ALICE, ["p001", "p002"])
        assert first == "p001"
        assert _acquire(factory, ALICE, ["p001", "p002"]) == "p001"
        engine = make_engine(database_url)  # a restarted service: new engine, new connections
        try:
            assert _acquire(make_session_factory(engine), ALICE, ["p002", "p001"]) == "p001"
        finally:
            engine.dispose()

    def test_use_moves_last_used_but_not_leased_at(self, factory: sessionmaker[Session]) -> None:
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        _acquire(factory, ALICE, ["p001"], now=t0)
        _acquire(factory, ALICE, ["p001"], now=t0 + dt.timedelta(hours=5))
        with UnitOfWork(factory) as uow:
            lease = uow.leases.for_account("p001")
            assert lease is not None
            assert (lease.leased_at, lease.last_used_at) == (t0, t0 + dt.timedelta(hours=5))

    def test_two_dns_get_two_accounts_and_groups_are_separate_identities(
        self, factory: sessionmaker[Session]
    ) -> None:
        pool = ["p001", "p002", "p003"]
        assert _acquire(factory, ALICE, pool) == "p001"
        assert _acquire(factory, BOB, pool) == "p002"
        assert _acquire(factory, ALICE, pool, group="/atlas/Role=pilot") == "p003"
        assert _acquire(factory, ALICE, pool) == "p001"

    def test_an_exhausted_pool_gives_nothing_and_leases_nothing(self, factory: sessionmaker[Session]) -> None:
        assert _acquire(factory, ALICE, ["p001"]) == "p001"
        assert _acquire(factory, BOB, ["p001"]) is None
        with UnitOfWork(factory) as uow:
            assert [(lease.account, lease.owner_dn) for lease in uow.leases.all()] == [("p001", ALICE)]

    def test_release_idle_keeps_leases_in_use_or_with_live_jobs(self, factory: sessionmaker[Session]) -> None:
        now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        old = now - dt.timedelta(days=30)
        pool = [f"p00{i}" for i in range(1, 6)]
        for dn in ("/CN=idle", "/CN=running", "/CN=ended-long-ago", "/CN=ended-recently"):
            _acquire(factory, dn, pool, now=old)
        _acquire(factory, "/CN=recently-used", pool, now=now - dt.timedelta(hours=1))
        with UnitOfWork(factory) as uow:
            uow.session.add_all([
                _job("run", "p002", JobState.RUNNING, old),
                _job("done-old", "p003", JobState.DONE, old),
                _job("done-new", "p004", JobState.DONE, now - dt.timedelta(hours=2)),
            ])
        with UnitOfWork(factory) as uow:
            released = uow.leases.release_idle(now - dt.timedelta(days=7))
        assert released == ["p001", "p003"]
        with UnitOfWork(factory) as uow:
            assert [lease.account for lease in uow.leases.all()] == ["p002", "p004", "p005"]
        assert _acquire(factory, "/CN=newcomer", pool) == "p001"


def _lock_waiters(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.execute(sa.text(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()"
        )).scalar_one())


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class TestConcurrency:
    """Several sessions race for the same accounts; a lease is never given twice."""

    def _hold_first_and_race(self, factory: sessionmaker[Session], database_url: str, second_dn: str) -> str | None:
        """Session 1 leases an account and keeps its transaction open while session 2 asks
        for a lease on the same accounts; session 1 commits only once session 2 waits."""
        result: dict[str, str | None] = {}
        with UnitOfWork(factory) as uow:
            lease = uow.leases.acquire("p", ALICE, "", ["p001", "p002"], utcnow())
            assert lease is not None and lease.account == "p001"
            thread = threading.Thread(
                target=lambda: result.setdefault("second", _acquire(factory, second_dn, ["p001", "p002"]))
            )
            thread.start()
            if database_url.startswith("postgresql"):
                _wait_until(lambda: _lock_waiters(factory) >= 1, "the second session to wait for the first")
        thread.join(DEADLINE)
        assert not thread.is_alive()
        return result["second"]

    def test_an_account_leased_by_an_open_transaction_is_not_given_to_another_dn(
        self, factory: sessionmaker[Session], database_url: str
    ) -> None:
        assert self._hold_first_and_race(factory, database_url, BOB) == "p002"
        with UnitOfWork(factory) as uow:
            assert {(lease.account, lease.owner_dn) for lease in uow.leases.all()} == {("p001", ALICE), ("p002", BOB)}

    def test_the_same_identity_racing_with_itself_gets_one_lease(
        self, factory: sessionmaker[Session], database_url: str
    ) -> None:
        assert self._hold_first_and_race(factory, database_url, ALICE) == "p001"
        with UnitOfWork(factory) as uow:
            assert [(lease.account, lease.owner_dn) for lease in uow.leases.all()] == [("p001", ALICE)]

    def test_threads_racing_for_the_last_accounts(self, factory: sessionmaker[Session]) -> None:
        pool = [f"p{i:03d}" for i in range(1, 11)]
        for i in range(7):  # 3 accounts left for 12 newcomers (and 2 of them twice)
            assert _acquire(factory, f"/CN=early{i}", pool) == pool[i]
        dns = [f"/CN=late{i}" for i in range(12)] + ["/CN=late0", "/CN=late1"]
        barrier = threading.Barrier(len(dns))
        results: list[tuple[str, str | None]] = []
        errors: list[BaseException] = []

        def race(dn: str) -> None:
            try:
                barrier.wait(DEADLINE)
                results.append((dn, _acquire(factory, dn, pool)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(dn,)) for dn in dns]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE * 2)
        assert errors == []
        self._assert_one_account_per_identity(factory, results, free=pool[7:])

    def test_processes_racing_for_the_last_accounts(self, factory: sessionmaker[Session], database_url: str) -> None:
        pool = [f"p{i:03d}" for i in range(1, 7)]
        for i in range(3):
            assert _acquire(factory, f"/CN=early{i}", pool) == pool[i]
        dns = [f"/CN=proc{i}" for i in range(6)] + ["/CN=proc0"]
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            results = manager.list()
            start = manager.Event()
            processes = [context.Process(target=race_in_process, args=(database_url, dn, pool, start, results,
                                                                       DEADLINE))
                         for dn in dns]
            for process in processes:
                process.start()
            start.set()
            for process in processes:
                process.join(DEADLINE * 2)
            assert [process.exitcode for process in processes] == [0] * len(dns)
            outcomes = list(results)
        self._assert_one_account_per_identity(factory, outcomes, free=pool[3:])

    @staticmethod
    def _assert_one_account_per_identity(
        factory: sessionmaker[Session], results: list[tuple[str, str | None]], free: list[str]
    ) -> None:
        winners: dict[str, set[str | None]] = {}
        for dn, account in results:
            winners.setdefault(dn, set()).add(account)
        assert all(len(accounts) == 1 for accounts in winners.values()), winners  # sticky within the race
        given = [next(iter(accounts)) for accounts in winners.values()]
        leased = [account for account in given if account is not None]
        assert sorted(leased) == sorted(free)  # every free account given, each exactly once
        with UnitOfWork(factory) as uow:
            by_account = {lease.account: lease.owner_dn for lease in uow.leases.all()}
        for dn, accounts in winners.items():
            account = next(iter(accounts))
            if account is not None:
                assert by_account[account] == dn


# --- map_identity with real accounts -----------------------------------------------------------

ACCOUNTS = {
    "atl": ["atl001", "atl002", "atl003"],  # /atlas/Role=production
    "plt": ["plt001", "plt002"],  # /atlas/Role=pilot
    "lhc": ["lhc001", "lhc002"],  # /lhcb/Role=pilot
    "static": ["static"],
    "root": ["wheel"],  # primary group root: the service's own group when tests run as root
}


@pytest.fixture(scope="module")
def accounts() -> Iterator[AccountSet]:
    try:
        context = local_accounts(ACCOUNTS)
        created = context.__enter__()
    except Exception as exc:  # noqa: BLE001 - not root, no useradd
        need_peer(f"cannot create local test accounts (useradd as root): {exc}")
    try:
        yield created
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def make_runtime(tmp_path: Path, factory: sessionmaker[Session], database_url: str,
                 accounts: AccountSet) -> Callable[..., Runtime]:
    """A Runtime whose ``[mapping]`` files are the site policy below, on the test database."""
    n = accounts.name
    (tmp_path / "grid-mapfile").write_text(
        f'"{ALICE}" {n("static")}\n"{BOB}" .{n("atl")}\n"{CAROL}" {n("missing")}\n'
        f'"/C=XX/O=Grid/CN=Root" root\n"/C=XX/O=Grid/CN=Wheel" {n("wheel")}\n'
        f'"/C=XX/O=Grid/CN=Empty" .{n("nopool")}\n"/C=XX/O=Grid/*" .{n("lhc")}\n'
    )
    (tmp_path / "voms-mapfile").write_text(
        f'"/atlas/Role=production" .{n("atl")}\n"/atlas/Role=pilot" .{n("plt")}\n'
        f'"/lhcb/Role=pilot" .{n("lhc")}\n"/atlas/*" {n("static")}\n'
    )
    (tmp_path / "ban-mapfile").write_text(f'"{BANNED}"\n"/dteam/Role=suspended"\n')

    def build(mode: str = "gridmap", idle: int = 3600) -> Runtime:
        settings = Settings(
            database=DatabaseSettings(url=database_url),
            sandbox=SandboxSettings(root=str(tmp_path / "sandbox")),
            mapping=MappingSettings(mode=mode, gridmap_file=str(tmp_path / "grid-mapfile"),
                                    voms_rules_file=str(tmp_path / "voms-mapfile"),
                                    ban_file=str(tmp_path / "ban-mapfile"), lease_idle_time=idle),
        )
        return Runtime(settings=settings, session_factory=factory, sealer=Sealer(Sealer.generate_key()),
                       storage=FilesystemSandboxStorage(tmp_path / "sandbox", "SandboxDir"))

    return build


def _map(rt: Runtime, dn: str, *fqans: str, now: dt.datetime | None = None) -> LocalAccount | None:
    with rt.uow() as uow:
        return map_identity(uow, rt, dn, fqans, now or utcnow())


class TestMapIdentity:
    def test_mode_none_maps_nobody(self, make_runtime: Callable[..., Runtime]) -> None:
        assert _map(make_runtime(mode="none"), BANNED, PRODUCTION) is None

    def test_static_account_with_its_uid_and_gid(self, make_runtime: Callable[..., Runtime],
                                                 accounts: AccountSet) -> None:
        entry = accounts.passwd("static")
        assert _map(make_runtime(), ALICE) == LocalAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, None)

    def test_pool_lease_is_sticky_across_jobs_and_restarts(self, make_runtime: Callable[..., Runtime],
                                                          accounts: AccountSet) -> None:
        first = _map(make_runtime(), BOB, PRODUCTION)
        assert first is not None and first.pool == accounts.name("atl")
        assert first.name == accounts.name("atl001")
        assert (first.uid, first.gid) == (accounts.passwd("atl001").pw_uid, accounts.passwd("atl001").pw_gid)
        assert _map(make_runtime(), BOB, PRODUCTION) == first
        restarted = make_runtime()  # a new Runtime with its own engine, as after a restart
        engine = make_engine(restarted.settings.database.url)
        restarted.session_factory = make_session_factory(engine)
        try:
            assert _map(restarted, BOB, PRODUCTION) == first
        finally:
            engine.dispose()

    def test_two_dns_get_two_accounts_and_roles_map_to_their_pools(
        self, make_runtime: Callable[..., Runtime], accounts: AccountSet
    ) -> None:
        rt = make_runtime()
        mapped = {
            (dn, fqan): account.name if (account := _map(rt, dn, fqan)) else None
            for dn in (ALICE, BOB)
            for fqan in (PRODUCTION, PILOT, LHCB_PILOT)
        }
        n = accounts.name
        assert mapped == {
            (ALICE, PRODUCTION): n("atl001"), (ALICE, PILOT): n("plt001"), (ALICE, LHCB_PILOT): n("lhc001"),
            (BOB, PRODUCTION): n("atl002"), (BOB, PILOT): n("plt002"), (BOB, LHCB_PILOT): n("lhc002"),
        }

    def test_fqan_rules_in_order_then_the_grid_mapfile(self, make_runtime: Callable[..., Runtime],
                                                       accounts: AccountSet) -> None:
        rt = make_runtime()
        other_role = _map(rt, BOB, "/atlas/Role=lcgadmin/Capability=NULL", PRODUCTION)
        assert other_role is not None and other_role.name == accounts.name("static")  # "/atlas/*", 4th rule
        by_dn = _map(rt, BOB, "/cms/Role=NULL/Capability=NULL")
        assert by_dn is not None and by_dn.name == accounts.name("atl001")  # grid-mapfile: BOB .atl

    @pytest.mark.parametrize(
        ("dn", "fqans", "why"),
        [
            (BANNED, (), f"the DN {BANNED} is banned"),
            (ALICE, ("/dteam/Role=suspended/Capability=NULL",), "the FQAN /dteam/Role=suspended is banned"),
            (ALICE, (PRODUCTION, "/dteam/Role=suspended"), "the FQAN /dteam/Role=suspended is banned"),
            ("/C=YY/CN=Stranger", (), "no mapping for DN /C=YY/CN=Stranger"),
        ],
    )
    def test_banned_or_unmapped_identities_are_refused(self, make_runtime: Callable[..., Runtime], dn: str,
                                                       fqans: tuple[str, ...], why: str) -> None:
        with pytest.raises(MappingError) as info:
            _map(make_runtime(), dn, *fqans)
        assert str(info.value) == f"LCMAPS failed to map user credential: {why}"

    def test_an_exhausted_pool_is_refused_and_a_refusal_leases_nothing(
        self, make_runtime: Callable[..., Runtime], accounts: AccountSet, factory: sessionmaker[Session]
    ) -> None:
        rt = make_runtime()
        for i in range(3):
            assert _map(rt, f"/C=XX/O=Grid/CN=User{i}", PRODUCTION) is not None
        with pytest.raises(MappingError, match=rf"pool \.{accounts.name('atl')} is exhausted: all 3 accounts"):
            _map(rt, "/C=XX/O=Grid/CN=User3", PRODUCTION)
        with UnitOfWork(factory) as uow:
            assert len(uow.leases.all()) == 3

    def test_missing_accounts_and_empty_pools(self, make_runtime: Callable[..., Runtime],
                                              accounts: AccountSet) -> None:
        with pytest.raises(MappingError, match=rf"account {accounts.name('missing')} \(grid-mapfile line 3\) "
                                               "does not exist"):
            _map(make_runtime(), CAROL)
        with pytest.raises(MappingError, match=rf"pool \.{accounts.name('nopool')} .* has no accounts"):
            _map(make_runtime(), "/C=XX/O=Grid/CN=Empty")

    def test_privileged_accounts_are_not_allowed(self, make_runtime: Callable[..., Runtime]) -> None:
        import os

        with pytest.raises(MappingNotAllowedError, match=r"^Mapping not allowed: account root \(uid 0\)") as info:
            _map(make_runtime(), "/C=XX/O=Grid/CN=Root")
        assert info.value.code == 1208
        # primary group root: the service's own when the tests run as root, refused anyway otherwise
        refusal = "in the service's own group" if os.getgid() == 0 else r"\(gid 0\) is in the root group"
        with pytest.raises(MappingNotAllowedError, match=refusal):
            _map(make_runtime(), "/C=XX/O=Grid/CN=Wheel")

    def test_pool_and_static_mappings_never_share_an_account(self, make_runtime: Callable[..., Runtime],
                                                             accounts: AccountSet) -> None:
        rt = make_runtime()
        n = accounts.name
        alice = _map(rt, ALICE, LHCB_PILOT)
        assert alice is not None and alice.name == n("lhc001")
        dave = "/C=YY/CN=Dave"
        # The site edits its grid-mapfile (read again on every call): pool accounts become static.
        gridmap = Path(rt.settings.mapping.gridmap_file)
        gridmap.write_text(f'"{dave}" {n("lhc002")}\n')
        static = _map(rt, dave)
        assert static is not None and (static.name, static.pool) == (n("lhc002"), None)
        with pytest.raises(MappingError, match="is exhausted: all 1 accounts are leased"):
            _map(rt, BOB, LHCB_PILOT)  # lhc002 is mapped statically now, so it is not handed out
        gridmap.write_text(f'"{CAROL}" {n("lhc001")}\n')
        with pytest.raises(MappingError, match=rf"account {n('lhc001')} .* is leased from pool \.{n('lhc')}"):
            _map(rt, CAROL)

    def test_release_idle_leases_uses_the_configured_idle_time(
        self, make_runtime: Callable[..., Runtime], accounts: AccountSet
    ) -> None:
        rt = make_runtime(idle=3600)
        then = utcnow() - dt.timedelta(hours=2)
        _map(rt, ALICE, PRODUCTION, now=then)
        _map(rt, BOB, PRODUCTION, now=utcnow())
        with rt.uow() as uow:
            assert release_idle_leases(uow, rt, utcnow()) == 1
        carol = _map(rt, CAROL, PRODUCTION)
        assert carol is not None and carol.name == accounts.name("atl001")  # ALICE's old account is free again


class TestRegistrationWiring:
    """What jobRegister/jobSubmit must do: map inside the registration's unit of work, store
    the account with the job, and let a refusal reach the client as AuthorizationFault."""

    def test_the_mapped_account_is_stored_with_the_job(self, make_runtime: Callable[..., Runtime],
                                                       accounts: AccountSet) -> None:
        rt = make_runtime()
        job_id = f"https://h:9000/{uuid.uuid4().hex}"
        now = utcnow()
        with rt.uow() as uow:
            account = map_identity(uow, rt, BOB, (PILOT,), now)
            uow.jobs.add(Job(id=job_id, owner_dn=BOB, delegation_id="d", state=JobState.SUBMITTED.value,
                             jdl_original="[]", jdl_registered="[]", sandbox_dir="x",
                             local_account=account.name if account else None, created_at=now, updated_at=now))
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and job.local_account == accounts.name("plt001")
        # The running job keeps the account's lease even once idle for longer than lease_idle_time.
        with rt.uow() as uow:
            assert release_idle_leases(uow, rt, now + dt.timedelta(days=30)) == 0

    def test_a_refusal_is_an_authorization_fault(self, make_runtime: Callable[..., Runtime]) -> None:
        from wmproxy.soap.contract import operations_by_namespace
        from wmproxy.soap.faults import wmproxy_fault
        from wmproxy.soap.namespaces import WMPROXY

        rt = make_runtime()
        for dn in (BANNED, "/C=XX/O=Grid/CN=Root"):
            with pytest.raises(AuthorizationError) as info, rt.uow() as uow:
                map_identity(uow, rt, dn, (), utcnow())
            for operation in ("jobRegister", "jobSubmit", "jobRegisterJSDL", "jobSubmitJSDL"):
                declared = operations_by_namespace()[WMPROXY][operation]
                fault = wmproxy_fault(operation, info.value, declared)
                assert fault.detail.tag == f"{{{WMPROXY}}}AuthorizationFault"
                assert fault.detail.findtext("ErrorCode") == str(info.value.code)
                assert fault.faultstring == str(info.value)
        assert info.value.code == 1208

    def test_a_registration_failing_after_the_mapping_gives_the_new_lease_back(
        self, make_runtime: Callable[..., Runtime], factory: sessionmaker[Session]
    ) -> None:
        from wmproxy.errors import JdlSyntaxError

        rt = make_runtime()

        def register_failing_after_the_mapping() -> None:
            with rt.uow() as uow:
                account = map_identity(uow, rt, BOB, (PILOT,), utcnow())
                assert account is not None
                raise JdlSyntaxError("a later step of jobRegister fails")

        with pytest.raises(JdlSyntaxError):
            register_failing_after_the_mapping()
        with UnitOfWork(factory) as uow:
            assert uow.leases.all() == []


class TestPeriodicRelease:
    """The execution worker releases idle leases every ``[purge] interval`` (with mapping on),
    keeping an account that still runs a process on its host."""

    def test_the_worker_has_the_task_when_jobs_are_mapped(self, make_runtime: Callable[..., Runtime]) -> None:
        from wmproxy.execution.purging import purge_tasks

        assert "releasing idle pool leases" in [task.name for task in purge_tasks(make_runtime())]
        assert "releasing idle pool leases" not in [task.name for task in purge_tasks(make_runtime(mode="none"))]

    def test_an_account_with_a_process_left_keeps_its_lease(self, make_runtime: Callable[..., Runtime],
                                                           accounts: AccountSet) -> None:
        from wmproxy.execution.purging import release_leases

        rt = make_runtime(idle=3600)
        then = utcnow() - dt.timedelta(hours=2)
        bob = _map(rt, BOB, PRODUCTION, now=then)  # idle for two hours, no job
        assert bob is not None
        left = subprocess.Popen(["sleep", "600"], user=bob.uid, group=bob.gid, extra_groups=[])
        try:
            assert release_leases(rt) == 0
        finally:
            left.kill()
            left.wait()
        assert release_leases(rt) == 1


    @pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
    def test_an_account_with_a_file_left_in_a_shared_temporary_dir_keeps_its_lease(
            self, make_runtime: Callable[..., Runtime], accounts: AccountSet, where: str) -> None:
        """A job's file in /dev/shm or /tmp outlives the job (red-team review: 32 MiB, mode 0666):
        the account's next user would find it, so the lease is kept until it is gone."""
        from wmproxy.execution.purging import release_leases

        rt = make_runtime(idle=3600)
        bob = _map(rt, BOB, PRODUCTION, now=utcnow() - dt.timedelta(hours=2))
        assert bob is not None
        left = Path(where) / f"wmproxy-test-leftover-{uuid.uuid4().hex}"
        left.write_bytes(b"the previous user's data")
        try:
            os.chown(left, bob.uid, bob.gid)
            assert release_leases(rt) == 0
        finally:
            left.unlink()
        assert release_leases(rt) == 1

    def test_an_account_with_a_shared_memory_segment_left_keeps_its_lease(
            self, make_runtime: Callable[..., Runtime], accounts: AccountSet) -> None:
        from wmproxy.execution.purging import release_leases

        rt = make_runtime(idle=3600)
        bob = _map(rt, BOB, PRODUCTION, now=utcnow() - dt.timedelta(hours=2))
        assert bob is not None
        made = subprocess.run(["ipcmk", "-M", "4096", "-p", "0666"], user=bob.uid, group=bob.gid, extra_groups=[],
                              capture_output=True, text=True, check=True)
        shmid = made.stdout.split()[-1]
        try:
            assert release_leases(rt) == 0
        finally:
            subprocess.run(["ipcrm", "-m", shmid], check=True)
        assert release_leases(rt) == 1
