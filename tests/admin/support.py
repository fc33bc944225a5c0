"""Helpers of the admin, key and lifecycle tests: deployment settings and their INI file,
rows back-dated as the purger would find them after days, and sealed rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import Pki, _postgres_database
from wmproxy.admin import initialise
from wmproxy.config import (
    DatabaseSettings,
    ExecutionSettings,
    SandboxSettings,
    SecuritySettings,
    ServiceSettings,
    Settings,
)
from wmproxy.domain import utcnow
from wmproxy.security.sealing import Sealer
from wmproxy.services.runtime import Runtime
from wmproxy.store import make_engine, make_session_factory
from wmproxy.store.housekeeping import STORE_KEY_FINGERPRINT, SqlHousekeepingStore
from wmproxy.store.schema import Delegation, DelegationRequest, Job
from wmproxy.store.uow import UnitOfWork

BIN = Path(sys.executable).parent
SERVICE_USER = "nobody"  # an account every Linux system has; stands for the service user


@contextlib.contextmanager
def effective_user(name: str) -> Iterator[None]:
    """Run the block with the effective uid of ``name`` (this root test process, back to root after)."""
    os.seteuid(pwd.getpwnam(name).pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)


def settings_for(state: Path, url: str, pki: Pki) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        security=SecuritySettings(store_key_file=str(state / "keys" / "store.key"), ca_dir=str(pki.ca_dir),
                                  host_cert=str(pki.host_cert), host_key=str(pki.host_key),
                                  vomsdir=str(state / "vomsdir")),
        service=ServiceSettings(host="localhost", port=7443, drain_file=str(state / "drain")),
        sandbox=SandboxSettings(root=str(state / "sandbox")),
        execution=ExecutionSettings(work_dir=str(state / "work")),
    )


def initialised_runtime(kind: str, tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    """A Runtime of a deployment under ``tmp_path/state`` (:func:`settings_for`), initialised on a
    fresh ``kind`` database (``sqlite``, or ``postgresql``: a database of its own, dropped after
    the yield); its engine is disposed of after the yield."""
    urls = iter([f"sqlite:///{tmp_path}/db/wmproxy.db"]) if kind == "sqlite" else _postgres_database()
    settings = settings_for(tmp_path / "state", next(urls), pki)
    initialise(settings)
    runtime = Runtime.from_settings(settings)
    yield runtime
    runtime.session_factory.kw["bind"].dispose()
    for _ in urls:  # drop the PostgreSQL database
        pass


def write_ini(settings: Settings, path: Path) -> Path:
    """The INI file of ``settings`` (the sections these tests set). As root, jobs are mapped
    (``wmproxy-worker`` refuses to run jobs as root; root has the capabilities mapping needs)."""
    sec = settings.security
    gridmap = path.with_name("grid-mapfile")
    gridmap.write_text("")
    mapping = f"mode = gridmap\ngridmap_file = {gridmap}\n" if os.geteuid() == 0 else "mode = none\n"
    path.write_text(
        f"[database]\nurl = {settings.database.url}\n"
        f"[security]\nstore_key_file = {sec.store_key_file}\nca_dir = {sec.ca_dir}\nhost_cert = {sec.host_cert}\n"
        f"host_key = {sec.host_key}\nvomsdir = {sec.vomsdir}\n"
        f"[service]\nhost = localhost\nport = 7443\ndrain_file = {settings.service.drain_file}\n"
        f"[sandbox]\nroot = {settings.sandbox.root}\n[execution]\nwork_dir = {settings.execution.work_dir}\n"
        f"[mapping]\n{mapping}")
    path.chmod(0o640)  # as installed (docs/operations.md): a database password in it must not reach others
    return path


def run(*argv: str, config: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run an installed entry point (``wmproxy-admin``, ``wmproxy-worker``...) of this virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env["WMPROXY_CONFIG"] = str(config)
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def days_ago(days: float, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


def job_row(job_id: str, state: str, *, owner: str = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice",
            created: dt.datetime, updated: dt.datetime | None = None, parent_id: str | None = None,
            delegation_id: str = "d1") -> Job:
    return Job(id=job_id, parent_id=parent_id, owner_dn=owner, delegation_id=delegation_id, state=state,
               jdl_original="[]", jdl_registered="[]", sandbox_dir="", created_at=created,
               updated_at=updated or created)


def sealed_rows(sealer: Sealer, owner: str, delegation_id: str, *, not_after: dt.datetime | None = None,
                request_created: dt.datetime | None = None) -> tuple[Delegation, DelegationRequest]:
    """A delegation (its proxy ``b"proxy of <id>"``) and a pending request (key
    ``b"key of <id>"``), sealed with ``sealer``."""
    now = utcnow()
    delegation = Delegation(owner_dn=owner, delegation_id=delegation_id, sealed_proxy=sealer.seal(
        f"proxy of {delegation_id}".encode()), not_before=now - dt.timedelta(hours=1),
        not_after=not_after or now + dt.timedelta(hours=12), fqans="", created_at=now, updated_at=now)
    request = DelegationRequest(owner_dn=owner, delegation_id=delegation_id,
                                sealed_key=sealer.seal(f"key of {delegation_id}".encode()), csr_pem="CSR",
                                created_at=request_created or now)
    return delegation, request


def key_path(settings: Settings) -> Path:
    return Path(settings.security.store_key_file)


def recorded(settings: Settings) -> str | None:
    """The store key fingerprint the database records."""
    engine = make_engine(settings.database.url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            return SqlHousekeepingStore(uow.session).meta(STORE_KEY_FINGERPRINT)
    finally:
        engine.dispose()
