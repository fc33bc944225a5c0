"""Fixtures shared by every test: a throwaway grid PKI and database URLs (SQLite and PostgreSQL).

Under ``CI=true`` a test that needs a real peer (PostgreSQL, a grid tool) fails when the
peer is missing; elsewhere it is skipped.
"""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import key_support
from wmproxy.security.pki import CertificateAuthority, create_ca, write_proxy
from wmproxy.security.proxy import Credential

IN_CI = os.environ.get("CI", "").lower() == "true"
if os.environ.get("WMPROXY_TEST_FRESH_KEYS") != "1":  # 1: a new RSA key for every test's request
    key_support.install()
POSTGRES_ADMIN_URL = os.environ.get(
    "WMPROXY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


JDL_DATA = Path(__file__).resolve().parent / "unit" / "jdl" / "data"


def appendix_jdl(name: str, vo: str = "dteam", requirements: str = "true",
                 rank: str = "other.GlueCEStateFreeCPUs") -> str:
    """A JDL of wmproxy-behaviour.md Appendix A kept in ``tests/unit/jdl/data`` with its
    ``<VO>``, ``<REQ>`` and ``<RANK>`` placeholders filled in."""
    text = (JDL_DATA / name).read_text()
    return text.replace("<VO>", vo).replace("<REQ>", requirements).replace("<RANK>", rank)


def need_peer(reason: str) -> None:
    """Fail under CI, skip elsewhere: a real peer the test needs is missing."""
    if IN_CI:
        pytest.fail(f"required peer missing under CI: {reason}")
    pytest.skip(reason)


@dataclass
class User:
    name: str
    credential: Credential
    proxy: Path

    @property
    def dn(self) -> str:
        from wmproxy.security.dn import slash_dn

        return slash_dn(self.credential.cert.subject)


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    ca_dir: Path
    host_cert: Path
    host_key: Path
    users: dict[str, User]

    def proxy(self, user: str, lifetime: int, name: str | None = None) -> Path:
        """A fresh RFC 3820 proxy file of ``user`` valid for ``lifetime`` seconds."""
        path = self.root / "proxies" / (name or f"{user}-{uuid.uuid4().hex[:8]}.pem")
        path.parent.mkdir(exist_ok=True)
        write_proxy(self.users[user].credential, path, lifetime=lifetime)
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA (grid layout with CRL), host cert for localhost, users alice, bob, carol (revoked),
    dave (expired) and mallory (valid, but not admitted by the test deployments' authorized_users)."""
    import datetime as dt

    root = tmp_path_factory.mktemp("pki")
    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    host_cert, host_key = ca.issue_host("localhost", root / "host")
    users: dict[str, User] = {}
    for name in ("alice", "bob", "carol", "dave", "mallory"):
        kwargs: dict[str, Any] = {}
        if name == "dave":
            kwargs["not_after"] = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        cred = ca.issue_user(name.capitalize(), root / name, **kwargs)
        proxy = root / name / "x509up"
        if name != "dave":
            write_proxy(cred, proxy, lifetime=12 * 3600)
        users[name] = User(name, cred, proxy)
    ca.revoke(users["carol"].credential.cert)
    return Pki(root, ca, root / "certificates", host_cert, host_key, users)


def _postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001
        need_peer(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    name = f"wmproxy_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database per test module, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db')}/wmproxy.db"
    else:
        yield from _postgres_database()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to the newest revision once per session; in-process tests copy it
    (``tests.support.build_runtime(root, pki, template_db)``) instead of migrating each time."""
    from tests.support import migrated_sqlite

    return migrated_sqlite(tmp_path_factory.mktemp("template-db"))


#: Test modules whose few tests take long (they wait for processes: a one-minute wall time, servers
#: stopped and started), with the minutes their tests took in all in one clean-clone CI run
#: (7 December 2026, 2 cores; ``--junitxml``). Run first, longest first (:func:`_longest_first`):
#: pytest-xdist's own order (``--dist loadfile``: the files with the most tests first) started
#: ``test_wall_time.py`` (then 2 tests, 3.2 minutes) last, and it ran alone on an idle machine at
#: the end. Only the order depends on these figures, never an outcome.
LONG_MODULES: dict[str, float] = {
    "tests/admin/test_store_key.py": 3.2,
    "tests/admin/test_process_start.py": 2.4,  # 3.5 on both databases
    "tests/integration/test_wall_time.py": 1.6,  # 3.2 on both databases
    "tests/integration/test_renewal.py": 2.6,  # 2.1 before its proxies lived 75 s (stop 54)
    "tests/integration/test_isolation.py": 1.9,
    "tests/integration/test_start_checks.py": 1.3,
    "tests/integration/test_stalled_bodies.py": 1.1,
    "tests/integration/test_inspection.py": 1.0,
    "tests/integration/test_renewal_info.py": 0.9,
    "tests/packaging/test_wheel.py": 0.8,
    "tests/integration/test_worker_crash.py": 0.8,
    "tests/integration/test_service_stop.py": 0.6,
    "tests/integration/test_unadmitted_drips.py": 0.6,
    "tests/integration/test_kept_alive_connections.py": 0.5,
}


def _longest_first(items: list[pytest.Item]) -> None:
    """Order ``items`` by test file: :data:`LONG_MODULES` first, longest first, then the other
    files with the most tests first (what pytest-xdist's ``loadfile`` does by itself), each file's
    tests in their own order. ``.ci/test-pythons.sh`` passes ``--no-loadscope-reorder`` so that
    pytest-xdist hands the files out in this order: the longest start while every process is busy,
    rather than one at the end on a machine left idle (the longest-processing-time-first rule)."""
    def module(item: pytest.Item) -> str:
        return item.nodeid.partition("::")[0]

    counts = collections.Counter(module(item) for item in items)

    def key(item: pytest.Item) -> tuple[float, int]:
        return -LONG_MODULES.get(module(item), 0.0), -counts[module(item)]

    items.sort(key=key)  # stable: a file's tests, and files of equal key, keep their order


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the SQLite variant of a test marked ``postgresql_only`` (behaviour that exists on
    PostgreSQL alone: row locks, ``SKIP LOCKED``) and the PostgreSQL variant of one marked
    ``sqlite_only`` (the worker's inotify watch of the database file), and of one marked
    ``any_database`` every variant but SQLite's (PostgreSQL's when only it is selected): what it
    checks does not differ between the databases (a process's options and refusals that come
    before the database, gunicorn's boot, the wall time's kill) and the database's part of it is
    tested on both elsewhere (CI's time), rather than generating and skipping them.

    ``WMPROXY_TEST_BACKENDS=sqlite`` (or ``postgresql``) keeps only that database's variants of
    every test that runs on both: ``make test``'s Python 3.13 run takes SQLite alone, the 3.11 run
    every variant (``.ci/test-pythons.sh``). Deselected, not skipped: the session says how many.
    Then the files are put in the order pytest-xdist hands them out (:func:`_longest_first`)."""

    def kind(item: pytest.Item) -> str | None:
        params = item.callspec.params  # type: ignore[attr-defined]
        for value in (params.get(name) for name in ("database_url", "database_kind", "fresh_url", "rt")):
            if isinstance(value, str):
                return "sqlite" if "sqlite" in value else "postgresql"
        return None

    backends = {name for name in os.environ.get("WMPROXY_TEST_BACKENDS", "").split(",") if name}
    unknown = backends - {"sqlite", "postgresql"}
    if unknown:
        raise pytest.UsageError(f"WMPROXY_TEST_BACKENDS: unknown database {sorted(unknown)} (sqlite, postgresql)")
    one = "sqlite" if not backends or "sqlite" in backends else "postgresql"  # an any_database test's variant
    drop = [item for item in items if getattr(item, "callspec", None) is not None
            and ((item.get_closest_marker("postgresql_only") and kind(item) == "sqlite")
                 or (item.get_closest_marker("sqlite_only") and kind(item) == "postgresql")
                 or (item.get_closest_marker("any_database") and kind(item) not in (None, one))
                 or (backends and kind(item) not in (None, *backends)))]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]
    _longest_first(items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker, hand the hostile cases it tried to the controller
    (``workeroutput``, read by :func:`pytest_testnodedown`)."""
    from tests.fuzz.support import HOSTILE

    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["hostile_cases"] = dict(HOSTILE)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown with -p no:xdist
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the pytest-xdist controller, add up the hostile cases a worker tried."""
    from tests.fuzz.support import tried

    for kind, count in getattr(node, "workeroutput", {}).get("hostile_cases", {}).items():
        tried(kind, count)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many hostile cases the session tried (issue 10; ``tests/fuzz/support.py``),
    its pytest-xdist workers' included."""
    from tests.fuzz.support import summary

    line = summary()
    if line:
        terminalreporter.write_line(line)
