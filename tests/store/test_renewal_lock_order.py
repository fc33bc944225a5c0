"""The renewal worker locks a credential's jobs in the one lock order, a compound job before its
nodes (``SqlRenewalStore.jobs_of`` through ``SqlJobStore.lock_all``), on PostgreSQL: beside a
user's jobCancel and the execution worker's end of a node, which lock the compound job first,
the later transaction waits for the earlier instead of deadlocking.

The interleaving is made deterministic with a third connection (``race_behind_row``): it holds
a job's row while the two transactions, one after the other, come to wait for it, and lets go
once both wait. Before, ``jobs_of`` locked the nodes first (``ORDER BY parent_id IS NULL, id
FOR UPDATE``): PostgreSQL found the deadlock and aborted one of them; a jobCancel answered an
untyped GenericFault, a renewal's transaction (its aborts, the events of a renewal) was rolled
back.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.store.conftest import DELEGATION
from tests.store.locking_support import hold_job_row, race_behind_row
from tests.unit.services.compound_support import DAG
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import OperationNotAllowedError
from wmproxy.services import history, jobs
from wmproxy.services.renewal import abort_expired_credential
from wmproxy.services.retries import AttemptEnd, end_attempt
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

pytestmark = pytest.mark.postgresql_only


def _states(rt: Runtime, job_ids: list[str]) -> list[str]:
    with rt.uow() as uow:
        return [uow.jobs.get(job_id).state for job_id in job_ids]  # type: ignore[union-attr]


def _expire_delegation(rt: Runtime, owner_dn: str) -> None:
    with rt.uow() as uow:
        uow.session.execute(sa.text(
            "UPDATE delegations SET not_after = :t WHERE owner_dn = :dn AND delegation_id = :d"),
            {"t": utcnow() - dt.timedelta(minutes=1), "dn": owner_dn, "d": DELEGATION})


def _abort_expired(rt: Runtime, owner_dn: str) -> list[str]:
    """The renewal worker's pass over the expired credential (its own transaction)."""
    with rt.uow() as uow:
        return abort_expired_credential(uow, rt, owner_dn, DELEGATION, utcnow())


def test_a_job_cancel_and_the_abort_of_an_expired_credential_queued_behind_it_both_end(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    """jobCancel of a DAG whose proxy has expired waits for the DAG's row, then the renewal
    worker's abort of the credential's jobs does: jobCancel cancels the DAG, the abort then
    finds nothing left to abort."""
    job = submit_job(rt, alice, DAG, DELEGATION)
    nodes = [node.job_id for node in job.children]
    _expire_delegation(rt, alice.dn)
    outcome = race_behind_row(database_url, hold_job_row(job.job_id),
                              ("jobCancel", lambda: jobs.cancel_job(rt, alice, job.job_id)),
                              ("renewal", lambda: _abort_expired(rt, alice.dn)))
    assert outcome["jobCancel"] is None, outcome
    assert isinstance(outcome["renewal"], list) and not {job.job_id, *nodes} & set(outcome["renewal"]), outcome
    assert _states(rt, [job.job_id, *nodes]) == [JobState.CANCELLED.value] * 4


def test_a_nodes_end_and_the_events_of_a_renewal_queued_behind_it_both_end(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    """The execution worker ends a running node of a running DAG (it waits for the DAG's row),
    then a renewal of the credential records its events: the node ends Done, and the renewal's
    ``proxy_renewed`` goes to the jobs still held, the DAG."""
    job = submit_job(rt, alice, DAG, DELEGATION)
    first = job.children[0].job_id
    with rt.uow() as uow:  # the first node runs on a worker (claimed); the DAG is Running
        uow.session.execute(sa.text("UPDATE jobs SET state = 'Running', worker = 'w1' WHERE id IN (:a, :b)"),
                            {"a": first, "b": job.job_id})
        uow.session.execute(sa.text(
            "UPDATE execution_requests SET claimed_by = 'w1', done_at = now() WHERE job_id = :a"), {"a": first})

    def renewal_events() -> None:  # what finish_renewal records after a renewal
        with rt.uow() as uow:
            history.note_renewal(uow, alice.dn, DELEGATION, "renewed", None, utcnow())

    outcome = race_behind_row(database_url, hold_job_row(job.job_id),
                              ("worker", lambda: end_attempt(rt, first, AttemptEnd(JobState.DONE, exit_code=0))),
                              ("renewal", renewal_events))
    assert outcome == {"worker": JobState.DONE, "renewal": None}, outcome
    with rt.uow() as uow:
        renewed = {job_id: len(uow.jobs.history(job_id, kinds=["proxy_renewed"])) for job_id in (job.job_id, first)}
    assert renewed == {job.job_id: 1, first: 0}


def test_the_abort_of_an_expired_credential_and_a_job_cancel_queued_behind_it_both_end(
        rt: Runtime, alice: Principal, database_url: str) -> None:
    """The other way round: the renewal worker's abort waits for the DAG's last node (it holds
    the DAG and the other nodes), then jobCancel of the DAG waits for the DAG: the abort ends the
    DAG Aborted, and jobCancel is refused as for any ended job (before, jobCancel was the
    deadlock's victim: an untyped GenericFault)."""
    job = submit_job(rt, alice, DAG, DELEGATION)
    nodes = sorted(node.job_id for node in job.children)
    _expire_delegation(rt, alice.dn)
    outcome = race_behind_row(database_url, hold_job_row(nodes[-1]),
                              ("renewal", lambda: _abort_expired(rt, alice.dn)),
                              ("jobCancel", lambda: jobs.cancel_job(rt, alice, job.job_id)))
    assert isinstance(outcome["renewal"], list), outcome
    # the jobs of the module's other tests use the credential too; of this DAG's, some nodes are
    # aborted and the others, with the DAG, follow the DAG's rules
    assert set(nodes) & set(outcome["renewal"]) and job.job_id not in outcome["renewal"], outcome
    assert isinstance(outcome["jobCancel"], OperationNotAllowedError), outcome
    assert _states(rt, [job.job_id, *nodes]) == [JobState.ABORTED.value] * 4
