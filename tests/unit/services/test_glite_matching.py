"""gLite's ``anyMatch``/``allMatch`` in matchmaking (``wmproxy/jdl/glite_functions.py``,
``wmproxy/services/matchmaking.py``): a job is matched to the CE whose published lists hold what it
asks, by jobListMatch and by the broker; and a hostile JDL costs a bounded amount of work.

The work is bounded by the budget of one match pass (list elements evaluated and CPU time), counted
through its counters, never by wall-clock time. Each attack names the defect of a first design it
caught: A, a list argument evaluated again for each element; B, calls followed through references;
C, a budget counting evaluations, not their cost, and a second pass with a fresh budget; D, a job
failed by an exhausted budget although its Requirements hold anyway; E (in
``test_expression_bounds.py``), calls counted over all the nodes of a collection.
"""

from __future__ import annotations

import datetime as dt
import random
import re

import classad2
import pytest

from tests.unit.services.brokering_support import RankedRuntime, jdl, job_row, submit
from tests.unit.services.conftest import DELEGATION
from wmproxy.domain import Principal, utcnow
from wmproxy.errors import JdlExpressionError
from wmproxy.jdl import check_expressions, parse_jdl
from wmproxy.jdl.glite_functions import MAX_ELEMENTS, CallBudget, GliteCalls
from wmproxy.services import execution, matchmaking
from wmproxy.services.brokering import NO_MATCH
from wmproxy.services.execution import claim_starts
from wmproxy.services.matchmaking import list_match, matches, no_match_cause

CLOSE = "ce-close.example.org:2119/jobmanager-lcg-long"
BUSY = "ce-busy.example.org:2119/jobmanager-lcg-long"
BARE = "ce-bare.example.org:2119/jobmanager-lcg-long"
CATALOGUE = f"""
[ GlueCEUniqueID = "{CLOSE}"; GlueCEStateStatus = "Production";
  GlueHostApplicationSoftwareRunTimeEnvironment = {{ "VO-atlas-release-15", "VO-atlas-x" }};
  storage = [ CloseSEs = {{ [ GlueSEUniqueID = "se1"; GlueSEStatus = "busy"; GlueSAStateAvailableSpace = 10 ],
                           [ GlueSEUniqueID = "se2"; GlueSEStatus = "unset"; GlueSAStateAvailableSpace = 500 ] }} ] ]
[ GlueCEUniqueID = "{BUSY}"; GlueCEStateStatus = "Production";
  GlueHostApplicationSoftwareRunTimeEnvironment = {{ "VO-atlas-release-14" }};
  storage = [ CloseSEs = {{ [ GlueSEUniqueID = "se3"; GlueSEStatus = "busy"; GlueSAStateAvailableSpace = 900 ] }} ] ]
[ GlueCEUniqueID = "{BARE}"; GlueCEStateStatus = "Production" ]
"""
CLOSE_SE_UNSET = 'anyMatch(other.storage.CloseSEs, target.GlueSEStatus == "unset")'
RTE = "other.GlueHostApplicationSoftwareRunTimeEnvironment"


class TestJobListMatchAndTheBroker:
    def test_a_job_asking_for_a_close_se_is_matched_to_the_ce_that_has_one_and_runs_there(
            self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        requirements = f"Requirements = {CLOSE_SE_UNSET};"
        assert list_match(rt, alice, jdl(requirements), DELEGATION) == [(CLOSE, 0)]
        job_id = submit(rt, alice, requirements)
        assert [(order.job_id, order.ce_id) for order in claim_starts(rt, "w1", {"local": 1}, limit=1)] == [
            (job_id, CLOSE)]

    def test_a_runtime_environment_and_a_rank_on_the_close_ses(self, broker_rt: RankedRuntime,
                                                                alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        either = (f'Requirements = anyMatch({RTE}, target == "VO-atlas-x" || target == "VO-atlas-release-14"); '
                  "Rank = allMatch(other.storage.CloseSEs, target.GlueSAStateAvailableSpace > 100) ? 10 : 1;")
        assert list_match(rt, alice, jdl(either), DELEGATION) == [(BUSY, 10), (CLOSE, 1)]

    def test_no_close_se_anywhere_is_an_empty_list_and_a_waiting_job(self, broker_rt: RankedRuntime,
                                                                      alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        none = 'Requirements = anyMatch(other.storage.CloseSEs, target.GlueSEStatus == "closed");'
        assert list_match(rt, alice, jdl(none), DELEGATION) == []  # false for two CEs, error for the bare one
        job_id = submit(rt, alice, none)
        assert claim_starts(rt, "w1", {"local": 1}, limit=1) == []
        assert job_row(rt, job_id) == ("Waiting", NO_MATCH, None)

    def test_a_list_no_ce_publishes_is_said_by_list_match_and_the_waiting_jobs_reason(
            self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        missing = "Requirements = anyMatch(other.GlueSESizeList, target > 10);"
        cause = ("the job's Requirements evaluate to error against every CE: the first argument of anyMatch() is "
                 "undefined, not a list")
        with pytest.raises(JdlExpressionError, match=f"^{re.escape(cause)}$"):
            list_match(rt, alice, jdl(missing), DELEGATION)
        job_id = submit(rt, alice, missing)
        assert claim_starts(rt, "w1", {"local": 1}, limit=1) == []
        assert job_row(rt, job_id) == ("Waiting", f"{NO_MATCH} ({cause})", None)


def site(count: int, elements: int, extra: str = "") -> list[classad2.ClassAd]:
    """``count`` CEs publishing ``elements`` run-time environments each (``RTE``)."""
    rte = ", ".join(f'"VO-atlas-release-{index}"' for index in range(elements))
    return [classad2.ClassAd(f'[ GlueCEUniqueID = "ce{number}.example.org:2119/jobmanager-pbs-long"; '
                             f'GlueCEStateStatus = "Production"; RTE = {{ {rte} }}; {extra} ]')
            for number in range(count)]


def job(requirements: str, extra: str = "") -> classad2.ClassAd:
    ad = parse_jdl(f'[ Executable = "/bin/true"; {extra} Requirements = {requirements} ]')
    check_expressions(ad)
    return ad


class TestWorkIsBounded:
    def test_a_1kb_jdl_of_16_calls_against_100_ces_of_500_elements_stays_within_the_budget(self) -> None:
        requirements = " || ".join(f'anyMatch(other.RTE, target == "VO-cms-{index}")' for index in range(16))
        hostile = job(requirements)
        assert len(str(hostile)) <= 1024
        calls = GliteCalls(hostile)
        assert matches(hostile, site(100, 500), calls=calls) == []
        # without the budget: 16 calls x 100 CEs x 500 elements = 800,000 element evaluations
        assert calls.budget.elements <= MAX_ELEMENTS
        assert calls.budget.lists <= 16 * 100
        assert calls.budget.exhausted
        assert no_match_cause(calls) == (
            "the job's matchmaking was cut short: the evaluation budget of its Requirements and Rank for a match ran "
            f"out ({calls.budget.exhausted}; the CEs after that point are not tried, and an anyMatch()/allMatch() "
            "call is then an error)")

    def test_a_costly_list_argument_is_evaluated_once_per_ce_not_per_element(self) -> None:
        """A: the list is a backtracking regexp away (0.2 s of PCRE before its match limit makes it an
        error): once per CE it fits the budget, once per element (500 x 0.2 s) it would not."""
        pad = "a" * 30 + "!"
        requirements = ('anyMatch(ifThenElse(isError(regexp("^(a+)+$", other.Pad)), other.RTE, {}), '
                        'target == "VO-atlas-release-499")')
        ad = job(requirements)
        calls = GliteCalls(ad)
        found = matches(ad, site(1, 500, f'Pad = "{pad}"'), calls=calls)
        assert [match.ce_id for match in found] == ["ce0.example.org:2119/jobmanager-pbs-long"]
        assert (calls.budget.lists, calls.budget.elements, calls.budget.exhausted) == (1, 500, "")

    def test_a_costly_test_runs_out_of_cpu_long_before_the_element_count(self) -> None:
        """C: each element costs about 170 µs (member() over 6,000 values) where a plain test
        costs 10-15: counted in elements, 100 CEs of 500 (50,000, about 8.5 s) would pass; in CPU
        time they stop. A budget of 0.2 s stops them before half of them on a CPU up to about 20
        times faster than this project's machines (a load only makes each element dearer)."""
        values = ", ".join(str(index) for index in range(6000))
        ad = job("anyMatch(other.RTE, member(target, Big))", f"Big = {{ {values} }};")
        calls = GliteCalls(ad, CallBudget(cpu_seconds=0.2))
        assert matches(ad, site(100, 500), calls=calls) == []
        assert calls.budget.exhausted == "0.2 s of CPU spent"
        assert calls.budget.elements < 100 * 500 // 2

    def test_the_reason_is_made_from_the_pass_not_a_second_one(self) -> None:
        """C: the reason of a job no CE matched (jobListMatch's fault, a waiting job's reason)
        evaluates nothing more: a second pass would have had a budget of its own."""
        ad = job('anyMatch(other.RTE, target == "VO-cms")')
        calls = GliteCalls(ad, CallBudget(elements=700))
        assert matches(ad, site(3, 500), calls=calls) == []
        spent = (calls.budget.elements, calls.budget.lists, calls.budget.spent)
        assert (spent[0], spent[1]) == (700, 2)  # the second CE's list, not the third's
        assert no_match_cause(calls) is not None
        assert no_match_cause(calls) is not None
        assert (calls.budget.elements, calls.budget.lists, calls.budget.spent) == spent

    def test_a_ce_the_rest_of_the_requirements_decide_costs_no_call(self) -> None:
        """As gLite's ``&&`` would not evaluate the call: the budget goes to the CEs it decides."""
        wanted = "ce57.example.org:2119/jobmanager-pbs-long"
        ad = job(f'other.GlueCEUniqueID == "{wanted}" && anyMatch(other.RTE, target == "VO-atlas-release-499")')
        calls = GliteCalls(ad)
        assert [match.ce_id for match in matches(ad, site(100, 500), calls=calls)] == [wanted]
        assert (calls.budget.lists, calls.budget.elements) == (1, 500)  # not 100 lists, 50,000 elements

    def test_an_exhausted_budget_fails_no_job_whose_requirements_hold_anyway(self) -> None:
        """D: an exhausted budget makes a call an error, not the job's fault (three calls: evaluated
        against each CE, though the first alternative decides); the CEs after it are not tried."""
        ces = site(3, 500)
        either = job('other.GlueCEStateStatus == "Production" || '
                     + " || ".join(f'anyMatch(other.RTE, target == "x{index}")' for index in range(3)))
        calls = GliteCalls(either, CallBudget(elements=10))
        assert [match.ce_id for match in matches(either, ces, calls=calls)] == [
            "ce0.example.org:2119/jobmanager-pbs-long"]
        assert calls.budget.exhausted == "10 list elements evaluated"
        alone = job('anyMatch(other.RTE, target == "VO-atlas-release-499")')
        calls = GliteCalls(alone, CallBudget(elements=10))
        assert matches(alone, ces, calls=calls) == []
        assert "ran out (10 list elements evaluated; the CEs after" in (no_match_cause(calls) or "")


    def test_an_ad_the_job_writes_read_by_the_test_is_bounded_at_registration_and_counted_at_matching(
            self) -> None:
        """F: the elements of a list the JDL writes, read by the test as ``target.F``, escaped both
        bounds (review t7/t8: 2,000 reads of a backtracking pattern accepted, 300 s of CPU a pass,
        the budget checked only between elements). The attack is refused; the same shape with a
        plain pattern, which each read may match, is accepted and stopped by the element count."""
        backtracking = 'regexp("^(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")'
        reads = " && ".join(["!isError(target.F)"] * 200)  # classad2 evaluates a few hundred nested && at most
        with pytest.raises(JdlExpressionError, match=r"^Attribute Requirements reads target\.F in the second"):
            job(f"anyMatch({{ [ F = {backtracking} ] }}, {reads})")
        ads = ", ".join(['[ F = regexp("cern.ch", "ce.cern.ch") ]'] * 50)
        plain = job(f"anyMatch({{ {ads} }}, {reads} && !target.F)")  # false: every element evaluated
        calls = GliteCalls(plain, CallBudget(elements=30, cpu_seconds=float("inf")))
        assert matches(plain, site(3, 1), calls=calls) == []
        assert (calls.budget.elements, calls.budget.lists, calls.budget.exhausted) == (
            30, 1, "30 list elements evaluated")


class TestEachCeSeesItsOwnCalls:
    """G: a call's result is bound for one CE and one attribute; read anywhere else (Requirements
    reading Rank), it is an error, never the value left by an earlier CE (review t1)."""

    def test_requirements_reading_rank_do_not_see_an_earlier_ces_rank(self) -> None:
        ad = job("anyMatch(other.L, target == 1) || Rank > 0", "Rank = anyMatch(other.L, target == 2) ? 1 : 0;")
        ces = [classad2.ClassAd('[ GlueCEUniqueID = "ce1"; L = { 1, 2 } ]'),
               classad2.ClassAd('[ GlueCEUniqueID = "ce2"; L = { 5 } ]')]
        assert [(m.ce_id, m.rank) for m in matches(ad, ces)] == [("ce1", 1.0)]

    def test_requirements_reading_only_rank_match_nothing_and_say_why(self) -> None:
        ad = job("other.X == 1 || Rank > 0", "Rank = anyMatch(other.L, target == 2) ? 1 : 0;")
        ces = [classad2.ClassAd('[ GlueCEUniqueID = "ce1"; X = 1; L = { 2 } ]'),
               classad2.ClassAd('[ GlueCEUniqueID = "ce2"; X = 0; L = { 2 } ]')]
        assert [(m.ce_id, m.rank) for m in matches(ad, ces)] == [("ce1", 1.0)]
        alone = job("Rank > 0", "Rank = anyMatch(other.L, target == 2) ? 1 : 0;")
        calls = GliteCalls(alone)
        assert matches(alone, ces, calls=calls) == []
        assert no_match_cause(calls) == (
            "the job's Requirements evaluate to error against every CE: they read Rank, whose anyMatch() or "
            "allMatch() calls the service evaluates for the Rank only (a call reached through a reference is an "
            "error); write the calls in Requirements")


class TestABudgetRunningOutIsSaid:
    """H: a budget that runs out cuts the CEs matched and their ranks (review t9: the only CE of
    rank 10 dropped, every rank 0, and no cause since the list was not empty)."""

    REQUIREMENTS = "Requirements = anyMatch(other.L, target >= 0); Rank = anyMatch(other.L, target == 50) ? 10 : 0;"
    CATALOGUE = "\n".join(
        f'[ GlueCEUniqueID = "ce{number}.example.org:2119/jobmanager-pbs-long"; GlueCEStateStatus = "Production"; '
        f'L = {{ {", ".join(str(value) for value in range(50))}, {number + 48} }} ]' for number in range(3))

    def test_the_log_says_which_job_and_how_far_the_pass_got(self, caplog: pytest.LogCaptureFixture) -> None:
        ad = job("anyMatch(other.L, target >= 0)", "Rank = anyMatch(other.L, target == 50) ? 10 : 0;")
        calls = GliteCalls(ad, CallBudget(elements=60), job_id="https://wms.example.org:9000/abc")
        ces = [classad2.ClassAd(text) for text in self.CATALOGUE.split("\n")]
        found, logged = matched_and_logged(ad, ces, calls, caplog)
        assert len(found) == 2  # the third CE, the one of rank 10, is cut
        assert logged == [cut_warning("60 list elements evaluated", 2, 3, 2)]

    def test_job_list_match_answers_a_fault_not_a_cut_list(self, broker_rt: RankedRuntime, alice: Principal,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        rt = broker_rt(self.CATALOGUE)
        monkeypatch.setattr(matchmaking, "GliteCalls", lambda ad: GliteCalls(ad, CallBudget(elements=60)))
        list_match_is_cut_short(rt, alice, self.REQUIREMENTS, "60 list elements evaluated")


def matched_and_logged(ad: classad2.ClassAd, ces: list[classad2.ClassAd], calls: GliteCalls,
                       caplog: pytest.LogCaptureFixture) -> tuple[list[matchmaking.Match], list[str]]:
    """The CEs ``ad`` matches and the warnings the pass logged."""
    with caplog.at_level("WARNING", logger="wmproxy.services.matchmaking"):
        found = matches(ad, ces, calls=calls)
    return found, [record.getMessage() for record in caplog.records]


def cut_warning(exhausted: str, at: int, of: int, matched: int) -> str:
    """The warning of a pass of job .../abc whose budget ran out (``exhausted``) at CE ``at`` of ``of``."""
    return (f"job https://wms.example.org:9000/abc: its Requirements and Rank ran out of their evaluation budget "
            f"({exhausted}) at CE {at} of {of}: the CEs after it were not tried (and its anyMatch()/allMatch() calls "
            f"from there on were errors), so the {matched} CEs matched and their ranks may be cut short")


def list_match_is_cut_short(rt: RankedRuntime, alice: Principal, attributes: str, exhausted: str) -> None:
    """jobListMatch of a JDL with ``attributes`` answers the fault of a budget that ran out (``exhausted``)."""
    cause = ("the job's matchmaking was cut short: the evaluation budget of its Requirements and Rank for a match "
             f"ran out ({exhausted};")
    with pytest.raises(JdlExpressionError, match=f"^{re.escape(cause)}"):
        list_match(rt, alice, jdl(attributes), DELEGATION)


class Ticks:
    """A clock that advances one "second" each time it is read: the budget's CPU time counted in
    evaluations, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def ticking(ad: classad2.ClassAd, job_id: str = "") -> GliteCalls:
    """The job's calls under a budget that runs out with the first CE's evaluation (one tick of it)."""
    return GliteCalls(ad, CallBudget(cpu_seconds=0.5, clock=Ticks()), job_id=job_id)


class TestTheWholeEvaluationIsBudgeted:
    """I: the budget bounded the calls only; the rest of a Requirements (8 backtracking regexps, which
    the check allows: about 1 s per CE) cost 100 s a jobListMatch against 100 CEs, and again at each
    claim. Each evaluation of the Requirements and Rank, calls or not, is counted; once the budget ran
    out the CEs left are not tried (review t2/t5 "B")."""

    REQUIREMENTS = 'other.GlueCEStateStatus == "Production"'
    RANK = 'Rank = other.GlueCEUniqueID == "ce2.example.org:2119/jobmanager-pbs-long" ? 10 : 0;'

    def test_a_job_without_calls_stops_at_the_ce_its_budget_ran_out_at(self, caplog: pytest.LogCaptureFixture) -> None:
        ad = job(self.REQUIREMENTS, self.RANK)
        calls = ticking(ad, "https://wms.example.org:9000/abc")
        found, logged = matched_and_logged(ad, site(3, 1), calls, caplog)
        assert [(match.ce_id, match.rank) for match in found] == [("ce0.example.org:2119/jobmanager-pbs-long", 0.0)]
        assert (calls.budget.exhausted, calls.budget.lists, calls.budget.elements) == ("0.5 s of CPU spent", 0, 0)
        assert logged == [cut_warning("0.5 s of CPU spent", 1, 3, 1)]

    def test_the_ces_own_requirements_count_too(self, caplog: pytest.LogCaptureFixture) -> None:
        """Third review: a CE's own Requirements read the job's attributes (a site's ``other.MyTag =!=
        "forbidden"``), which the JDL writes (8 backtracking regexps in MyTag: 1.26 s for 10 CEs,
        uncounted); they are evaluated in the pass's budget too."""
        ad = parse_jdl('[ Executable = "/bin/true"; MyTag = "mine" ]')
        check_expressions(ad)
        calls = ticking(ad, "https://wms.example.org:9000/abc")
        ces = site(3, 1, 'Requirements = other.MyTag =!= "forbidden";')
        found, logged = matched_and_logged(ad, ces, calls, caplog)
        assert [match.ce_id for match in found] == ["ce0.example.org:2119/jobmanager-pbs-long"]
        assert logged == [cut_warning("0.5 s of CPU spent", 1, 3, 1)]

    def test_job_list_match_answers_the_fault(self, broker_rt: RankedRuntime, alice: Principal,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        rt = broker_rt(TestABudgetRunningOutIsSaid.CATALOGUE)
        monkeypatch.setattr(matchmaking, "GliteCalls", ticking)
        list_match_is_cut_short(rt, alice, f"Requirements = {self.REQUIREMENTS}; {self.RANK}", "0.5 s of CPU spent")

    def test_the_broker_places_the_job_on_the_best_ce_it_tried(self, broker_rt: RankedRuntime, alice: Principal,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        rt = broker_rt(TestABudgetRunningOutIsSaid.CATALOGUE)
        monkeypatch.setattr(execution, "GliteCalls", ticking)
        job_id = submit(rt, alice, f"Requirements = {self.REQUIREMENTS}; {self.RANK}")
        assert [(order.job_id, order.ce_id) for order in claim_starts(rt, "w1", {"local": 1}, limit=1)] == [
            (job_id, "ce0.example.org:2119/jobmanager-pbs-long")]  # ce2, of rank 10, not tried

    def test_a_job_cut_short_at_every_pass_reaches_over_its_retries_the_ce_it_never_got_to(
            self, broker_rt: RankedRuntime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each pass of this job is cut after one CE; the only CE that matches is the catalogue's last.
        Tried always from the first CE, it waited until it expired; a job whose start request was
        given back before tries the CEs from one drawn at random on."""
        rt = broker_rt(TestABudgetRunningOutIsSaid.CATALOGUE)
        monkeypatch.setattr(execution, "GliteCalls", ticking)
        last = "ce2.example.org:2119/jobmanager-pbs-long"
        job_id = submit(rt, alice, f'Requirements = other.GlueCEUniqueID == "{last}";')
        rng = random.Random(7)  # noqa: S311 - a reproducible CE order, not cryptography
        now = utcnow()
        passes = 0
        while not (claimed := claim_starts(rt, "w1", {"local": 1}, limit=1, rng=rng, now=now)) and passes < 12:
            state, reason, _ = job_row(rt, job_id)
            assert (state, (reason or "").startswith(f"{NO_MATCH} (the job's matchmaking was cut short")) == (
                "Waiting", True)
            passes += 1
            now += dt.timedelta(seconds=rt.settings.brokering.match_retry_period)
        assert [(order.job_id, order.ce_id) for order in claimed] == [(job_id, last)]
        assert passes >= 1  # the first pass tried the first CE alone


class TestCallsThroughReferencesAreNotFollowed:
    """B: a call is evaluated where the job's Requirements or Rank write it, nowhere else."""

    def test_a_jobs_attribute_calling_one_is_an_error_and_named(self) -> None:
        ad = job("Wanted", 'Wanted = anyMatch(other.RTE, target == "VO-atlas-release-1");')
        calls = GliteCalls(ad)
        assert matches(ad, site(2, 500), calls=calls) == []
        assert (calls.budget.lists, calls.budget.elements) == (0, 0)
        assert no_match_cause(calls) == (
            "the job's Requirements evaluate to error against every CE: the JDL calls anyMatch() or allMatch() in "
            "Wanted, where the service does not evaluate them (a call is an error there); write the calls in "
            "Requirements or Rank")

    def test_a_ces_attribute_or_requirements_calling_one_is_the_sites_error(self) -> None:
        ces = site(2, 500, 'Flag = anyMatch(RTE, target == "VO-atlas-release-1")')
        ces.append(site(1, 500, 'Requirements = anyMatch(RTE, target == "VO-atlas-release-1")')[0])
        ad = job("other.Flag")
        calls = GliteCalls(ad)
        assert matches(ad, ces, calls=calls) == []
        assert matches(job("true"), ces[2:]) == []
        assert (calls.budget.lists, calls.budget.elements) == (0, 0)
