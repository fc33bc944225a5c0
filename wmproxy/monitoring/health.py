"""Readiness of a service node: database reachable, schema current, CRLs fresh, service port
accepting connections.

Each check returns a :class:`Check`; ``/readyz`` answers 200 only when all pass. The texts
name what failed and the fix, and hold no secret (no database URL, no key path contents).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import text
from sqlalchemy.engine import Engine

from wmproxy.config import Settings, parse_host_port

#: Migrations shipped in the package (the Alembic head the database must be at).
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
_CRL_NAME = re.compile(r"^[0-9a-f]{8}\.r[0-9]+$")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def database_check(engine: Engine) -> tuple[Check, str | None]:
    """Can the database answer ``SELECT 1``? Also returns its Alembic revision (None if none)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revision = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; its class names why
        return Check("database", False, f"unreachable ({type(exc).__name__})"), None
    return Check("database", True, "reachable"), revision


def head_revision(migrations: Path = MIGRATIONS_DIR) -> str | None:
    """The Alembic head of the shipped migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(config).get_current_head()


def schema_check(revision: str | None, head: str | None) -> Check:
    if revision is None:
        return Check("schema", False, f"no schema (head {head}): run wmproxy-admin migrate")
    if revision != head:
        return Check("schema", False, f"at {revision}, head is {head}: run wmproxy-admin migrate")
    return Check("schema", True, f"at head {head}")


def crl_check(ca_dir: Path, now: dt.datetime, grace: float = 0.0) -> Check:
    """Every CRL (``<hash>.rN``) of ``ca_dir`` readable and not past its nextUpdate (+ ``grace`` s)."""
    try:
        names = sorted(n for n in (p.name for p in ca_dir.iterdir()) if _CRL_NAME.match(n))
    except OSError as exc:
        return Check("crls", False, f"cannot read the CA directory ({type(exc).__name__})")
    stale: list[str] = []
    for name in names:
        try:
            crl = x509.load_pem_x509_crl((ca_dir / name).read_bytes())
        except (OSError, ValueError):
            stale.append(f"{name} unreadable")
            continue
        next_update = crl.next_update_utc
        if next_update is not None and next_update + dt.timedelta(seconds=grace) < now:
            stale.append(f"{name} expired {next_update:%Y-%m-%dT%H:%M:%SZ}")
    if stale:
        return Check("crls", False, "; ".join(stale[:10]) + ": run fetch-crl")
    return Check("crls", True, f"{len(names)} CRLs current")


def service_check(bind: str, timeout: float = 5.0) -> Check:
    """Does the service's ``[service] bind`` address accept a TCP connection (a wildcard
    address is tried on loopback)? No TLS handshake is made."""
    try:
        host, port = parse_host_port(bind, 7443)
    except ValueError:
        host, port = bind.rpartition(":")[0], int(bind.rpartition(":")[2] or 7443)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))  # noqa: S104
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return Check("service", False, f"{host}:{port} refuses connections ({type(exc).__name__}): is gunicorn up?")
    return Check("service", True, f"listening on {host}:{port}")


def readiness(settings: Settings, engine: Engine, now: dt.datetime | None = None) -> list[Check]:
    """All readiness checks of this node, in order: database, schema, CRLs, service port."""
    now = now or dt.datetime.now(dt.UTC)
    database, revision = database_check(engine)
    checks = [database]
    if database.ok:
        checks.append(schema_check(revision, head_revision()))
    checks.append(crl_check(Path(settings.security.ca_dir), now, settings.metrics.crl_grace))
    checks.append(service_check(settings.service.bind))
    return checks
