"""What each process of tests/store/test_leases.py's process race runs. A ``spawn`` child
imports the module of its target: this one imports only the store, not the test module with
pytest, the test PKI and the services (about four seconds of CPU a child, sixteen children)."""

from __future__ import annotations

import threading

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork, make_engine, make_session_factory


def race_in_process(database_url: str, dn: str, pool: list[str], start: threading.Event,
                    results: list[tuple[str, str | None]], deadline: float) -> None:
    """Wait for ``start`` (up to ``deadline`` seconds), then lease one of ``pool`` to ``dn`` in
    pool ``p`` and append ``(dn, account or None)`` to ``results``."""
    engine = make_engine(database_url)
    try:
        start.wait(deadline)
        with UnitOfWork(make_session_factory(engine)) as uow:
            lease = uow.leases.acquire("p", dn, "", pool, utcnow())
            results.append((dn, lease.account if lease else None))
    finally:
        engine.dispose()
