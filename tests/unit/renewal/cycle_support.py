"""Helpers of the renewal services' in-process tests (``test_renewal_cycle.py``,
``test_voms_refresh.py``): a runtime on a real SQLite database, credentials and jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.config import ExecutionSettings, RenewalSettings, SandboxSettings, SecuritySettings, Settings
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.execution.identity import install_proxy
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import credential_pem, make_proxy
from wmproxy.security.sealing import Sealer
from wmproxy.services.renewal import RenewalOrder, begin_renewal, due_renewals, job_proxy_path
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.store import UnitOfWork, make_engine, make_session_factory
from wmproxy.store.schema import Base, Job

CYCLE = 60.0
DELEG = "d1"
SERVER = "myproxy.example.org:7512"


def stored_proxy(uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str) -> bytes | None:
    """The stored (unsealed) proxy PEM of (DN, id), None when the delegation is gone."""
    row = uow.delegations.get(owner_dn, delegation_id)
    return None if row is None else rt.sealer.open(row.sealed_proxy)


def cycle_runtime(tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    """A runtime on a fresh SQLite database under ``tmp_path`` (vomsdir ``tmp_path / "vomsdir"``),
    renewal cycle :data:`CYCLE`, MyProxy :data:`SERVER` allowed; disposed of after the yield."""
    settings = Settings(
        security=SecuritySettings(ca_dir=str(pki.ca_dir), vomsdir=str(tmp_path / "vomsdir")),
        sandbox=SandboxSettings(root=str(tmp_path / "sandbox")),
        execution=ExecutionSettings(work_dir=str(tmp_path / "work")),
        renewal=RenewalSettings(cycle=CYCLE, threshold=35 * 60, lifetime=10 * 3600, timeout=30.0,
                                myproxy_allowed_servers=f"{SERVER}, other.example.org"),
    )
    engine = make_engine(f"sqlite:///{tmp_path}/wmproxy.db")
    Base.metadata.create_all(engine)
    yield Runtime(settings, make_session_factory(engine), Sealer(Sealer.generate_key()),
                  FilesystemSandboxStorage(Path(settings.sandbox.root)))
    engine.dispose()


@pytest.fixture
def rt(tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    """:func:`cycle_runtime` as a fixture (the renewal tests' conftest exports it; a module with
    a runtime of its own defines its own ``rt``)."""
    yield from cycle_runtime(tmp_path, pki)


def proxy(pki: Pki, user: str, lifetime: int, now: dt.datetime | None = None) -> bytes:
    return credential_pem(make_proxy(pki.users[user].credential, lifetime=lifetime, now=now))


def end_of(pem: bytes) -> dt.datetime:
    return min(c.not_valid_after_utc for c in load_pem_chain(pem))


def delegate(rt: Runtime, dn: str, pem: bytes, now: dt.datetime, fqans: tuple[str, ...] = ()) -> None:
    with rt.uow() as uow:
        uow.delegations.put_proxy(dn, DELEG, rt.sealer.seal(pem), now - dt.timedelta(minutes=5), end_of(pem), fqans,
                                  now)


def add_job(rt: Runtime, dn: str, name: str, state: JobState, now: dt.datetime) -> str:
    job_id = f"https://localhost:9000/{name:0<22}"
    rt.storage.create_job_area(job_id)
    with rt.uow() as uow:
        uow.jobs.add(Job(id=job_id, owner_dn=dn, delegation_id=DELEG, state=state.value, jdl_original="[]",
                         jdl_registered="[]", sandbox_dir=job_id.rsplit("/", 1)[1], created_at=now, updated_at=now))
    return job_id


def running_job(rt: Runtime, dn: str, fqans: tuple[str, ...], copy: bytes) -> str:
    """A job registered by jobRegister's service (the caller presenting ``fqans``) with the
    stored proxy of DELEG, then Running with ``copy`` as its proxy file."""
    job_id = register_job(rt, Principal(dn, fqans=fqans), '[ Executable = "/bin/true"; ]', DELEG).job_id
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, JobState.RUNNING.value, utcnow())
    job_proxy_path(rt, job_id).parent.mkdir(parents=True, exist_ok=True)
    install_proxy(job_proxy_path(rt, job_id).parent, copy, None)
    return job_id


def claim(rt: Runtime, now: dt.datetime) -> RenewalOrder:
    """The order of the one due record, claimed by worker ``w1``."""
    with rt.uow() as uow:
        (record_id,) = due_renewals(uow, rt, now)
        order = begin_renewal(uow, rt, record_id, "w1", now)
    assert order is not None
    return order
