"""Concurrent addACLItems, and concurrent removeACLItem, of one item of one job, on PostgreSQL
(``wmproxy.services.acl``; ``wmproxy-behaviour.md`` §6.4).

Each change locks the job's row (a node's after its compound job's) before it reads the items,
so the second waits for the first and then finds its item present (1209 "the entry already
exists") or gone (1207 "no such item"), as when they come one after the other. Before, both read
the items unlocked: the second add hit the ``uq_job_acl_item`` constraint (GenericFault "Internal
server error") and both removes reported success.

The interleaving is made deterministic with a third connection holding a row both calls need
(:func:`tests.store.locking_support.race_behind_row`): the calls queue behind it in the order
they were started, and it lets go once both wait.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.store.conftest import DELEGATION
from tests.store.locking_support import race_behind_row
from tests.support import ECHO_JDL
from tests.unit.services.compound_support import COLLECTION
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError
from wmproxy.services import acl
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

pytestmark = pytest.mark.postgresql_only

ITEM = "/C=XX/O=wmproxy-demo/OU=Users/CN=Bob"


def _job_row(job_id: str) -> Callable[[sa.Connection], None]:
    """A ``hold_row`` for :func:`race_behind_row`: lock the job's row."""
    def hold(conn: sa.Connection) -> None:
        locked = conn.execute(sa.text("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE id = :id FOR UPDATE) AS locked"),
                              {"id": job_id}).scalar_one()
        assert locked == 1
    return hold


def _acl_row(job_id: str, item: str) -> Callable[[sa.Connection], None]:
    """A ``hold_row`` for :func:`race_behind_row`: lock the row of ``item`` in the job's ACL."""
    def hold(conn: sa.Connection) -> None:
        locked = conn.execute(sa.text("SELECT count(*) FROM (SELECT 1 FROM job_acl WHERE job_id = :id "
                                      "AND item = :item FOR UPDATE) AS locked"), {"id": job_id, "item": item}
                              ).scalar_one()
        assert locked == 1
    return hold


def _add_twice(rt: Runtime, alice: Principal, database_url: str, job_id: str) -> None:
    """Two adds of ITEM to ``job_id`` queued behind its row: the first adds, the second is refused."""
    outcome = race_behind_row(database_url, _job_row(job_id),
                              ("first", lambda: acl.add_acl_items(rt, alice, job_id, [ITEM])),
                              ("second", lambda: acl.add_acl_items(rt, alice, job_id, [ITEM])))
    assert outcome["first"] is None, outcome
    assert isinstance(outcome["second"], acl.AclError), outcome
    assert str(outcome["second"]) == f"unable to add the new credential entry {ITEM}: the entry already exists"
    assert acl.get_acl_items(rt, alice, job_id) == [alice.dn, ITEM]


def test_a_second_concurrent_add_of_an_item_is_refused_as_present(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    _add_twice(rt, alice, database_url, register_job(rt, alice, ECHO_JDL, DELEGATION).job_id)


def test_a_second_concurrent_add_of_an_item_to_a_node_is_refused_as_present(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    """A node's add locks its compound job's row, then the node's (held here): the first waits
    for the node's row, the second for the compound job's."""
    node = register_job(rt, alice, COLLECTION, DELEGATION).children[0].job_id
    _add_twice(rt, alice, database_url, node)


def test_a_second_concurrent_remove_of_an_item_finds_no_such_item(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    """The ACL entry's row is held: the first remove waits for it in its DELETE, the second for
    the job's row the first holds."""
    job_id = register_job(rt, alice, ECHO_JDL, DELEGATION).job_id
    acl.add_acl_items(rt, alice, job_id, [ITEM])
    outcome = race_behind_row(database_url, _acl_row(job_id, ITEM),
                              ("first", lambda: acl.remove_acl_item(rt, alice, job_id, ITEM)),
                              ("second", lambda: acl.remove_acl_item(rt, alice, job_id, ITEM)))
    assert outcome["first"] is None, outcome
    assert isinstance(outcome["second"], AuthorizationError), outcome
    assert str(outcome["second"]) == f"Removal of the gacl item failed:\nno such item {ITEM}"
    assert acl.get_acl_items(rt, alice, job_id) == [alice.dn]
