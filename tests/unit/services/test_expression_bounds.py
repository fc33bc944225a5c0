"""The service refuses JDLs whose expressions could cost far more to evaluate than they are long,
before evaluating anything (``wmproxy/jdl/expressions.py``).

``[A0 = "xxxxxxxxxxxxxxxx"; A1 = strcat(A0, A0); ...; An = strcat(An-1, An-1)].An`` doubles at each
step: 16 MB evaluated for n = 20 from a JDL of a few hundred bytes, 16 GB for n = 30. Used in
Requirements it was evaluated by jobListMatch and by the worker's choice of a CE; as a collection
node's InputSandbox entry, at registration (and by the load limiter's node count). Each is now an
InvalidArgumentFault (1219) naming the attribute and the bound, nothing evaluated; a job registered
before the bound is aborted by the claim that would have evaluated it, the next job claimed.

n = 30 could not be evaluated at all (the test would need GBs): its refusal shows that nothing was.
n = 20 (16 MB, about a second) is what the service evaluated and accepted before the bound.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import classad2
import pytest
import sqlalchemy as sa
from lxml import etree

from tests.conftest import Pki
from tests.support import SoapApp, build_runtime, caller_from_environ, close_runtime, delegate_in_process, principal_of
from tests.unit.services.brokering_support import BUILTIN, RankedRuntime, jdl, job_row, submit
from tests.unit.services.conftest import DELEGATION
from wmproxy.config import LoadSettings
from wmproxy.domain import Principal
from wmproxy.errors import JdlExpressionError
from wmproxy.jdl import parse_jdl
from wmproxy.jdl.expressions import MAX_GROWTH
from wmproxy.services.brokering import NO_MATCH
from wmproxy.services.execution import claim_starts
from wmproxy.services.matchmaking import list_match
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import WMPROXY
from wmproxy.store.schema import Job

STEPS = [pytest.param(20, id="n20-16MB"), pytest.param(30, id="n30-16GB")]


def doubling(steps: int) -> str:
    attributes = ['A0 = "xxxxxxxxxxxxxxxx"'] + [f"A{i} = strcat(A{i - 1}, A{i - 1})" for i in range(1, steps + 1)]
    return f"[ {'; '.join(attributes)} ].A{steps}"


def in_requirements(steps: int) -> str:
    return f'[ Executable = "/bin/true"; Requirements = size({doubling(steps)}) > 0 ]'


def in_a_nodes_input_sandbox(steps: int) -> str:
    node = f'[ Executable = "/bin/true"; InputSandbox = {{ {doubling(steps)} }} ]'
    return f'[ Type = "collection"; Nodes = {{ {node} }} ]'


@pytest.fixture
def soap(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[SoapApp]:
    """The SOAP app in process; the load limiter counts the nodes of a submission (it expands it)."""
    rt = build_runtime(tmp_path / "state", pki, template_db)
    rt.settings = dataclasses.replace(rt.settings, load=LoadSettings(sample_interval=1e-9,
                                                                     max_jobs_per_submission=100))
    delegate_in_process(rt, principal_of(pki, "alice"), pki.users["alice"].proxy, "unit")
    yield SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
    close_runtime(rt)


def refused(soap: SoapApp, alice: Principal, operation: str, jdl: str) -> str:
    """The Description of the InvalidArgumentFault (1219) ``operation`` answers ``jdl`` with;
    nothing was registered."""
    reply = soap.call(WMPROXY, operation, alice, jdl=jdl, delegationId="unit")
    assert reply.status.startswith("500"), reply.body[:300]
    detail = reply.fault_detail
    assert etree.QName(detail).localname == "InvalidArgumentFault", reply.body[:600]
    assert detail.findtext("ErrorCode") == "1219"
    with soap.rt.uow() as uow:
        assert list(uow.jobs.owned_by(alice.dn)) == []
    return detail.findtext("Description") or ""


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit", "jobListMatch"])
def test_the_doubling_record_in_requirements_is_refused(soap: SoapApp, alice: Principal, operation: str,
                                                        steps: int) -> None:
    description = refused(soap, alice, operation, in_requirements(steps))
    assert re.fullmatch(r"Attribute A12 \(in Requirements\) is \d+ characters long once each attribute reference in "
                        r"it is replaced by the expression it names, more than the service evaluates: the JDL's own "
                        rf"size plus {MAX_GROWTH} \(\d+\)", description), description


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_the_doubling_record_as_a_collection_nodes_input_sandbox_entry_is_refused(
        soap: SoapApp, alice: Principal, operation: str, steps: int) -> None:
    assert refused(soap, alice, operation, in_a_nodes_input_sandbox(steps)).startswith("Attribute A12 (in Nodes) is ")


def test_a_chain_of_500_references_is_refused_at_registration(soap: SoapApp, alice: Principal) -> None:
    chain = "; ".join(f"A{i} = A{i + 1}" for i in range(500)) + "; A500 = true"
    description = refused(soap, alice, "jobRegister", f'[ Executable = "/bin/true"; {chain}; Requirements = A0 ]')
    assert "its attribute references are nested more than 32 deep" in description


@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_a_parametric_value_substituted_into_an_expression_is_checked_at_registration(
        soap: SoapApp, alice: Principal, operation: str) -> None:
    """``_PARAM_`` is replaced textually: outside a string the value becomes expression text,
    which the JDL's check never saw (registered, every node was then aborted at its claim)."""
    jdl = ('[ JobType = "parametric"; Executable = "/bin/true"; E = "true"; Parameters = { "true", "eval(E)" };'
           ' Requirements = _PARAM_ ]')
    description = refused(soap, alice, operation, jdl)
    assert description.startswith("Node Node_eval_E_: Attribute Requirements calls eval(), a function the service "
                                  "does not evaluate in a JDL"), description


@pytest.mark.parametrize("steps", STEPS)
def test_a_job_registered_before_the_bound_is_aborted_at_its_claim(broker_rt: RankedRuntime, alice: Principal,
                                                                   steps: int) -> None:
    rt = broker_rt()
    old, new = submit(rt, alice), submit(rt, alice)
    with rt.uow() as uow:  # as a version without the bound registered it
        registered = parse_jdl(uow.jobs.get(old).jdl_registered)  # type: ignore[union-attr]
        registered["Requirements"] = classad2.ExprTree(f"size({doubling(steps)}) > 0")
        uow.session.execute(sa.update(Job).where(Job.id == old).values(jdl_registered=str(registered)))
    orders = claim_starts(rt, "w1", {"local": 2}, limit=2)
    assert [order.job_id for order in orders] == [new]
    state, reason, destination = job_row(rt, old)
    assert (state, destination) == ("Aborted", None)
    assert reason is not None and reason.startswith("Attribute A12 (in Requirements) is ")


ANY_MATCH = 'anyMatch(other.GlueHostApplicationSoftwareRunTimeEnvironment, target == "VO-atlas")'
#: The built-in CE publishes no run-time environments: the call's list is undefined, an error (gLite's too).
ANY_MATCH_ERROR = ("the job's Requirements evaluate to error against every CE: the first argument of anyMatch() is "
                   "undefined, not a list")


@pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
def test_anymatch_is_accepted_at_registration(soap: SoapApp, alice: Principal, operation: str) -> None:
    """gLite's anyMatch is accepted (a first fix refused it as "would never match")."""
    jdl = f'[ Executable = "/bin/true"; Requirements = {ANY_MATCH} ]'
    reply = soap.call(WMPROXY, operation, alice, jdl=jdl, delegationId="unit")
    assert reply.status.startswith("200"), reply.body[:600]


def test_a_collection_whose_nodes_call_anymatch_16_times_each_is_registered(soap: SoapApp, alice: Principal) -> None:
    """E: the bound on calls is per node (per attribute), not over the collection's nodes together
    (20 nodes of 16 calls: 320 in the JDL); one node over it is refused, named."""
    calls = " || ".join([ANY_MATCH] * 16)
    node = f'[ Executable = "/bin/true"; Requirements = {calls} ]'
    over = f'[ Executable = "/bin/true"; Requirements = {calls} || {ANY_MATCH} ]'
    description = refused(soap, alice, "jobRegister", f'[ Type = "collection"; Nodes = {{ {node}, {over} }} ]')
    assert description.startswith("Attribute Requirements (in Nodes) calls anyMatch() and allMatch() more than 16 ")
    collection = f'[ Type = "collection"; Nodes = {{ {", ".join([node] * 20)} }} ]'
    reply = soap.call(WMPROXY, "jobRegister", alice, jdl=collection, delegationId="unit")
    assert reply.status.startswith("200"), reply.body[:600]


def test_anymatch_in_an_alternative_that_holds_matches_and_the_job_runs(broker_rt: RankedRuntime,
                                                                       alice: Principal) -> None:
    # true || anything is true: matched before anyMatch was evaluated, refused by a first fix (and
    # a job registered before it was aborted at its claim)
    rt = broker_rt()
    either = f'Requirements = other.GlueCEStateStatus == "Production" || {ANY_MATCH};'
    assert list_match(rt, alice, jdl(either), DELEGATION) == [(BUILTIN, 0)]
    job_id = submit(rt, alice, either)
    assert [(order.job_id, order.ce_id) for order in claim_starts(rt, "w1", {"local": 1}, limit=1)] == [
        (job_id, BUILTIN)]


def test_anymatch_that_is_an_error_for_every_ce_is_said_by_list_match_and_the_waiting_jobs_reason(
        broker_rt: RankedRuntime, alice: Principal) -> None:
    rt = broker_rt()
    alone = f"Requirements = {ANY_MATCH};"
    with pytest.raises(JdlExpressionError, match=f"^{re.escape(ANY_MATCH_ERROR)}$"):
        list_match(rt, alice, jdl(alone), DELEGATION)
    job_id = submit(rt, alice, alone)
    assert claim_starts(rt, "w1", {"local": 1}, limit=1) == []
    assert job_row(rt, job_id) == ("Waiting", f"{NO_MATCH} ({ANY_MATCH_ERROR})", None)
    other = submit(rt, alice, 'Requirements = other.GlueCEStateStatus == "Closed";')  # no anyMatch: no cause
    assert claim_starts(rt, "w1", {"local": 1}, limit=1) == []
    assert job_row(rt, other) == ("Waiting", NO_MATCH, None)
