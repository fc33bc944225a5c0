"""``ExpiryTime`` out of range: refused at registration, survived by the claim.

An ``ExpiryTime`` a datetime cannot hold (``253402300800``, year 10000: ValueError; ``1e20``:
OverflowError) was registered as given; the claim converting it (``brokering.deadline``)
then raised, the claim rolled back, the request stayed the oldest due and every later claim
failed the same way: no job of the site started, and the execution worker died. Now

* jobRegister/jobSubmit (and jobListMatch) refuse an ``ExpiryTime`` that is not a number
  literal from 0 to 2**32 - 1 (2106) with an InvalidArgumentFault (1219), for a simple job,
  every node of a compound job and a collection's or DAG's own, nothing written;
* a value stored before that check is clamped into the range (a negative one: expired, one
  past it: 2106), so its job is claimed as any other;
* an error nothing expected while one job is claimed aborts that job alone (the others are
  claimed); the database's errors still roll the claim back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import classad2
import pytest
import sqlalchemy as sa
from lxml import etree

from tests.support import (
    BASE_FAULT_FIELDS,
    SoapApp,
)
from tests.unit.services.brokering_support import RankedRuntime, job_row, submit
from tests.unit.services.conftest import DELEGATION
from wmproxy.config import Settings
from wmproxy.domain import Principal
from wmproxy.errors import JdlError
from wmproxy.jdl import parse_jdl
from wmproxy.jdl.attributes import EXPIRY_TIME_END, expiry_time
from wmproxy.services import execution
from wmproxy.services.brokering import REQUEST_EXPIRED, deadline
from wmproxy.services.execution import CLAIM_FAILED, claim_next_start, claim_starts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.soap.namespaces import WMPROXY
from wmproxy.store.schema import Job

#: Values registration refuses: out of a datetime's range, out of 0..2**32-1, not finite,
#: not a number literal.
REFUSED = ["253402300800", "1e20", "-1e20", "-1", str(EXPIRY_TIME_END), "1e400", '"tomorrow"', "true",
           "1700000000 + 3600", "undefined"]


def refused(soap: SoapApp, alice: Principal, operation: str, jdl: str) -> str:
    """The Description of the InvalidArgumentFault (1219, BaseFaultType filled) ``operation``
    answers ``jdl`` with; no job row and no job directory was made."""
    reply = soap.call(WMPROXY, operation, alice, jdl=jdl, delegationId="unit")
    assert reply.status.startswith("500"), reply.body[:300]
    detail = reply.fault_detail
    assert etree.QName(detail).localname == "InvalidArgumentFault", reply.body[:600]
    assert [child.tag for child in detail][:4] == BASE_FAULT_FIELDS[:4]
    assert detail.findtext("methodName") == operation
    assert detail.findtext("ErrorCode") == "1219"
    assert detail.findtext("Timestamp")
    with soap.rt.uow() as uow:
        assert list(uow.jobs.owned_by(alice.dn)) == []
    areas = Path(soap.rt.settings.sandbox.root) / soap.rt.settings.sandbox.dir_name
    assert not areas.exists() or not any(areas.rglob("*")), list(areas.rglob("*"))
    return detail.findtext("Description") or ""


def simple(expiry: str) -> str:
    return f'[ Executable = "/bin/true"; ExpiryTime = {expiry}; ]'


@pytest.mark.parametrize("value", REFUSED)
@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_an_expiry_time_out_of_range_is_refused_at_registration(soap: SoapApp, alice: Principal, operation: str,
                                                               value: str) -> None:
    description = refused(soap, alice, operation, simple(value))
    assert description.startswith(
        f"Attribute ExpiryTime must be a number of seconds since the epoch from 0 to {EXPIRY_TIME_END - 1}, not "), \
        description


def test_job_list_match_refuses_it_too(soap: SoapApp, alice: Principal) -> None:
    assert "Attribute ExpiryTime must be" in refused(soap, alice, "jobListMatch", simple("1e20"))


NODE = '[ Executable = "/bin/true"; ExpiryTime = 1e20; ]'
COMPOUND = {
    "collection node": (f'[ Type = "collection"; Nodes = {{ [ Executable = "/bin/true"; ], {NODE} }}; ]',
                        "Node Node_1: Attribute ExpiryTime"),
    "dag node": ((f'[ Type = "dag"; Nodes = [ a = [ description = [ Executable = "/bin/true"; ] ]; '
                  f'b = [ description = {NODE} ]; Dependencies = {{}} ]; ]'), "Node b: Attribute ExpiryTime"),
    "parametric template": (('[ JobType = "parametric"; Executable = "/bin/true"; Arguments = "_PARAM_"; '
                             'Parameters = 2; ParameterStart = 0; ParameterStep = 1; ExpiryTime = 253402300800; ]'),
                            "Node Node_0: Attribute ExpiryTime"),
    "collection itself": ('[ Type = "collection"; ExpiryTime = 1e20; Nodes = { [ Executable = "/bin/true"; ] }; ]',
                          "Attribute ExpiryTime"),
}


@pytest.mark.parametrize("case", list(COMPOUND))
@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_every_node_of_a_compound_job_is_checked(soap: SoapApp, alice: Principal, operation: str, case: str) -> None:
    jdl, start = COMPOUND[case]
    description = refused(soap, alice, operation, jdl)
    assert description.startswith(start), description


@pytest.mark.parametrize("value", ["0", str(EXPIRY_TIME_END - 1), "1.7e9", "1700000000"])
def test_numbers_in_range_are_accepted(value: str) -> None:
    assert expiry_time(parse_jdl(simple(value))) == float(value)


def test_no_expiry_time_is_none() -> None:
    assert expiry_time(parse_jdl('[ Executable = "/bin/true" ]')) is None


@pytest.mark.parametrize("value", REFUSED)
def test_the_reader_refuses_what_registration_refuses(value: str) -> None:
    with pytest.raises(JdlError, match=r"^Attribute ExpiryTime must be a number"):
        expiry_time(parse_jdl(simple(value)))


# --- a compound job's own ExpiryTime -----------------------------------------------------------

EXPIRED_COMPOUND = {
    "collection": ('[ Type = "collection"; ExpiryTime = 1; Nodes = { [ Executable = "/bin/true"; ], '
                   f'[ Executable = "/bin/true"; ExpiryTime = {EXPIRY_TIME_END - 1}; ] }}; ]'),
    "dag": ('[ Type = "dag"; Executable = "/bin/true"; ExpiryTime = 1; Nodes = [ a = [ description = [] ]; '
            f'b = [ description = [ ExpiryTime = {EXPIRY_TIME_END - 1}; ] ]; Dependencies = {{}} ]; ]'),
}


@pytest.mark.parametrize("kind", list(EXPIRED_COMPOUND))
def test_the_nodes_of_an_expired_compound_job_expire_unless_they_have_their_own(
        broker_rt: RankedRuntime, alice: Principal, kind: str) -> None:
    """``submit --valid/--to`` sets a collection's or DAG's own ExpiryTime: its nodes inherit it."""
    rt = broker_rt()
    job = submit_job(rt, alice, EXPIRED_COMPOUND[kind], DELEGATION)
    inheriting, own = (child.job_id for child in job.children)
    orders = claim_starts(rt, "w1", {"local": 2}, limit=2)
    assert [order.job_id for order in orders] == [own]
    assert job_row(rt, inheriting)[:2] == ("Aborted", REQUEST_EXPIRED)


# --- jobs stored before the check ------------------------------------------------------------


def store_expiry(rt: Runtime, job_id: str, value: float) -> None:
    """Set the registered JDL's ExpiryTime as a version without the check stored it."""
    with rt.uow() as uow:
        registered = parse_jdl(uow.jobs.get(job_id).jdl_registered)  # type: ignore[union-attr]
        registered["ExpiryTime"] = value
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(jdl_registered=str(registered)))


@pytest.mark.parametrize("value", [253402300800, 1e20, 1e300])
def test_a_stored_far_expiry_time_is_clamped_and_its_job_claimed_with_the_others(
        broker_rt: RankedRuntime, alice: Principal, value: float) -> None:
    rt = broker_rt()
    far, other = submit(rt, alice), submit(rt, alice)
    store_expiry(rt, far, value)
    orders = claim_starts(rt, "w1", {"local": 2}, limit=2)
    assert sorted(order.job_id for order in orders) == sorted([far, other])


@pytest.mark.parametrize("claim", ["claim_starts", "claim_next_start"])
def test_a_stored_negative_expiry_time_has_expired(broker_rt: RankedRuntime, alice: Principal, claim: str) -> None:
    rt = broker_rt()
    old, other = submit(rt, alice), submit(rt, alice)
    store_expiry(rt, old, -1e20)
    if claim == "claim_starts":
        assert [order.job_id for order in claim_starts(rt, "w1", {"local": 2}, limit=2)] == [other]
    else:
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == other
    assert job_row(rt, old)[:2] == ("Aborted", REQUEST_EXPIRED)


def test_deadline_clamps_into_the_registration_range(broker_rt: RankedRuntime) -> None:
    settings = broker_rt().settings
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime.fromtimestamp(EXPIRY_TIME_END - 1, dt.UTC)
    for value, expected in ((1e20, end), (253402300800, end), (-1e20, dt.datetime.fromtimestamp(0, dt.UTC)),
                            (1700000000, dt.datetime.fromtimestamp(1700000000, dt.UTC))):
        ad = classad2.ClassAd()
        ad["ExpiryTime"] = value
        assert deadline(ad, since, settings) == expected, value


# --- one job's unexpected error in the claim ---------------------------------------------------


@pytest.fixture
def failing_deadline(monkeypatch: pytest.MonkeyPatch) -> dict[str, Exception]:
    """``deadline`` raises for a job whose JDL carries ``Boom = true`` (a bug its JDL triggers):
    a RuntimeError, or what the test puts in the returned dict under ``"error"``."""
    real = execution.deadline
    raised: dict[str, Exception] = {}

    def fake(job: classad2.ClassAd, since: dt.datetime, settings: Settings) -> dt.datetime:
        if job.get("Boom") is True:
            raise raised.get("error", RuntimeError("boom"))
        return real(job, since, settings)

    monkeypatch.setattr(execution, "deadline", fake)
    return raised


@pytest.mark.parametrize("claim", ["claim_starts", "claim_next_start"])
def test_an_unexpected_error_of_one_job_aborts_it_and_the_others_are_claimed(
        broker_rt: RankedRuntime, alice: Principal, failing_deadline: dict[str, Exception], claim: str) -> None:
    rt = broker_rt()
    bad, good = submit(rt, alice, "Boom = true;"), submit(rt, alice)
    if claim == "claim_starts":
        assert [order.job_id for order in claim_starts(rt, "w1", {"local": 2}, limit=2)] == [good]
    else:
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == good
    assert job_row(rt, bad) == ("Aborted", f"{CLAIM_FAILED} (RuntimeError)", None)
    assert job_row(rt, good)[0] == "Ready"


@pytest.mark.parametrize("claim", ["claim_starts", "claim_next_start"])
def test_a_database_error_still_rolls_the_claim_back(broker_rt: RankedRuntime, alice: Principal,
                                                    failing_deadline: dict[str, Exception], claim: str) -> None:
    rt = broker_rt()
    failing_deadline["error"] = sa.exc.OperationalError("SELECT", {}, Exception("database gone"))
    bad, good = submit(rt, alice, "Boom = true;"), submit(rt, alice)
    call = (lambda: claim_starts(rt, "w1", {"local": 2}, limit=2)) if claim == "claim_starts" \
        else (lambda: claim_next_start(rt, "w1"))
    with pytest.raises(sa.exc.OperationalError):
        call()
    assert job_row(rt, bad)[0] == job_row(rt, good)[0] == "Waiting"
