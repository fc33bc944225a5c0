"""getProxyReq's claim on PostgreSQL commits without waiting for the WAL's flush
(``wmproxy.store.delegation_writes``, issue 14, stop 56 in docs/performance.md): its statement
sets ``synchronous_commit`` off for its own transaction only, so the next transaction on the same
pooled connection (a putProxy's, a jobSubmit's) commits durably again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork, make_engine
from wmproxy.store.delegation_writes import DelegationWrites
from wmproxy.store.driver import DriverCursor, pooled, transaction
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import DelegationRequest

pytestmark = pytest.mark.postgresql_only  # SQLite's commits are unchanged (synchronous=NORMAL)

ALICE = "/C=XX/O=Grid/CN=Alice"


@pytest.fixture
def one_connection(factory: sessionmaker[Session], database_url: str) -> Iterator[sa.Engine]:
    """An engine of the module's database whose pool holds one connection: every transaction
    below runs on the same server session."""
    with UnitOfWork(factory) as uow:
        uow.session.execute(sa.delete(PooledDelegationKey))
        uow.session.execute(sa.delete(DelegationRequest))
        uow.key_pool.add(b"sealed-a", "csr-a", 2048, utcnow())
        uow.key_pool.add(b"sealed-b", "csr-b", 2048, utcnow())
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _setting(cursor: DriverCursor) -> str:
    cursor.execute("SHOW synchronous_commit")
    return str(cursor.fetchone()[0])


def test_the_claim_commits_asynchronously_and_the_next_transaction_durably(one_connection: sa.Engine) -> None:
    writes = DelegationWrites(one_connection)
    params = {"bits": 2048, "owner_dn": ALICE, "delegation_id": "d1",
              "created_at": writes._bind_time(utcnow())}
    # the claim's statement inside a transaction left open, to read the setting it leaves
    with transaction(one_connection) as cursor:
        assert writes._claim_into_request.execute(cursor, params, binary=True) is not None
        assert _setting(cursor) == "off"
    # the service's own claim, then the same connection's next transaction
    assert writes.claim_into_request(2048, ALICE, "d2", utcnow()) == ("csr-b", b"sealed-b")
    with pooled(one_connection) as cursor:
        assert _setting(cursor) == "on"

