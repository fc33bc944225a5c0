"""Matching on start (services/brokering.py, services/execution.claim_next_start): the built-in
local CE, the catalogue, Rank, SubmitTo, FuzzyRank, dynamic CE states, the match retry
period and expiry ("request expired"), and what the order tells the worker."""

from __future__ import annotations

import collections
import datetime as dt
import math
import random
import re
from pathlib import Path

import classad2
import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import SoapApp, caller_from_environ, delegate_in_process, principal_of
from tests.unit.services.brokering_support import BUILTIN, RankedRuntime, jdl, job_row, submit
from tests.unit.services.conftest import DELEGATION
from tests.voms_support import FQANS, fake_voms_proxy, fake_voms_server
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, SandboxError
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.services import jobs
from wmproxy.services.brokering import NO_MATCH, REQUEST_EXPIRED, choose_ce, fuzzy_choice, record_ce_state
from wmproxy.services.delegation import destroy
from wmproxy.services.execution import BACKEND_WAIT_POLLS, NO_DELEGATION, StartOrder, claim_next_start, claim_starts
from wmproxy.services.matchmaking import (
    GLUE_UNLIMITED,
    RANK_MAX,
    RANK_MIN,
    builtin_ce,
    list_match,
    matches,
    site_ces,
    whole_rank,
)
from wmproxy.services.retries import AttemptEnd, end_attempt
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import WMPROXY
from wmproxy.store.schema import ExecutionRequest

CE1 = "ce1.example.org:8443/cream-pbs-short"
CE2 = "ce2.example.org:8443/cream-pbs-long"
SLURM_CE = "slurm.example.org:6817/slurm-debug"
ATLAS_CE = "ce4.example.org:8443/cream-pbs-atlas"
CATALOGUE = f"""
[ GlueCEUniqueID = "{CE1}"; GlueCEStateStatus = "Production"; GlueCEStateFreeCPUs = 12;
  GlueCEPolicyMaxWallClockTime = 60 ]
[ GlueCEUniqueID = "{CE2}"; GlueCEStateStatus = "Production"; GlueCEStateFreeCPUs = 40 ]
[ GlueCEUniqueID = "{SLURM_CE}"; GlueCEStateStatus = "Production"; GlueCEStateFreeCPUs = 4;
  WMProxyBackend = "slurm"; SlurmPartition = "debug"; GlueCEPolicyMaxWallClockTime = 30; WMProxyMemoryMB = 512 ]
[ GlueCEUniqueID = "{ATLAS_CE}"; GlueCEStateStatus = "Production"; GlueCEStateFreeCPUs = 100;
  Requirements = other.VirtualOrganisation == "atlas" ]
"""
#: :data:`CATALOGUE` in the old ClassAd syntax, as ``condor_status -long`` writes it.
OLD_SYNTAX_CATALOGUE = f"""# the site's CEs
GlueCEUniqueID = "{CE1}"
GlueCEStateStatus = "Production"
GlueCEStateFreeCPUs = 12
GlueCEPolicyMaxWallClockTime = 60

GlueCEUniqueID = "{CE2}"
GlueCEStateStatus = "Production"
GlueCEStateFreeCPUs = 40

GlueCEUniqueID = "{SLURM_CE}"
GlueCEStateStatus = "Production"
GlueCEStateFreeCPUs = 4
WMProxyBackend = "slurm"
SlurmPartition = "debug"
GlueCEPolicyMaxWallClockTime = 30
WMProxyMemoryMB = 512

GlueCEUniqueID = "{ATLAS_CE}"
GlueCEStateStatus = "Production"
GlueCEStateFreeCPUs = 100
Requirements = other.VirtualOrganisation == "atlas"
"""


def atlas_runtime(broker_rt: RankedRuntime, pki: Pki, tmp_path: Path) -> tuple[Runtime, Principal]:
    """A runtime on :data:`CATALOGUE` where alice also has the delegation ``atlas``: a proxy with
    the VOMS attributes of VO atlas (``/atlas/Role=production/Capability=NULL`` first),
    made by voms-proxy-fake and verified against a vomsdir trusting its VOMS server; and alice
    calling with that proxy."""
    server = fake_voms_server(pki, tmp_path / "voms")
    rt = broker_rt(CATALOGUE, security={"vomsdir": str(server.vomsdir)})
    proxy = fake_voms_proxy(pki, server, tmp_path / "voms" / "atlas-proxy.pem")
    alice = principal_of(pki, "alice", (FQANS[0],))
    delegate_in_process(rt, alice, proxy, "atlas")
    with rt.uow() as uow:
        delegation = uow.delegations.get(alice.dn, "atlas")
        assert delegation is not None and delegation.fqans.split("\n")[0] == FQANS[0]
    return rt, alice


def claim(rt: Runtime, **kwargs: object) -> StartOrder | None:
    return claim_next_start(rt, "w1", **kwargs)  # type: ignore[arg-type]


def events(rt: Runtime, job_id: str) -> list[tuple[str, str | None]]:
    with rt.uow() as uow:
        return [(e.state, e.reason) for e in uow.jobs.events(job_id)]


def pending_start(rt: Runtime, job_id: str) -> ExecutionRequest:
    with rt.uow() as uow:
        [request] = [r for r in uow.queue.pending_for(job_id) if r.command == "start"]
        uow.session.expunge(request)
        return request


def seeded(seed: int) -> random.Random:
    """A reproducible random source: the distributions below are asserted on fixed draws."""
    return random.Random(seed)  # noqa: S311 - brokering choices, not cryptography


def ce_ad(ce_id: str, **attributes: object) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    ad["GlueCEUniqueID"] = ce_id
    for name, value in attributes.items():
        ad[name] = value
    return ad


class TestBuiltinCe:
    def test_a_site_without_catalogue_runs_jobs_on_its_builtin_local_ce(self, broker_rt: RankedRuntime,
                                                                        alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, 'Requirements = other.GlueCEStateStatus == "Production"; '
                                   "Rank = -other.GlueCEStateEstimatedResponseTime;")
        order = claim(rt)
        assert order is not None and order.job_id == job_id
        assert (order.ce_id, order.backend, order.queue, order.wall_time, order.memory_mb, order.attempt) == (
            BUILTIN, "local", None, None, None, 0)
        assert job_row(rt, job_id) == ("Ready", f"matched to CE {BUILTIN}", BUILTIN)
        assert events(rt, job_id)[-1] == ("Ready", f"matched to CE {BUILTIN}")
        assert jobs.job_status(rt, alice, job_id).destination == BUILTIN

    def test_it_publishes_what_a_default_site_does_and_counts_its_jobs(self, broker_rt: RankedRuntime,
                                                                       alice: Principal) -> None:
        rt = broker_rt()
        ce = builtin_ce(rt.settings, running=3, waiting=5)
        assert ce["GlueCEUniqueID"] == BUILTIN and ce["WMProxyBackend"] == "local"
        assert (ce["GlueCEStateStatus"], ce["GlueCEInfoTotalCPUs"], ce["GlueCEStateFreeCPUs"]) == ("Production", 4, 1)
        assert (ce["GlueCEStateRunningJobs"], ce["GlueCEStateWaitingJobs"], ce["GlueCEStateTotalJobs"]) == (3, 5, 8)
        assert ce["GlueCEPolicyMaxWallClockTime"] == GLUE_UNLIMITED and ce["GlueHostMainMemoryRAMSize"] > 0
        assert builtin_ce(rt.settings, running=6, waiting=0)["GlueCEStateFreeCPUs"] == 0
        submit(rt, alice)
        submit(rt, alice)
        assert claim(rt) is not None
        with rt.uow() as uow:
            [live] = site_ces(rt, uow)
        assert (live["GlueCEStateRunningJobs"], live["GlueCEStateFreeCPUs"]) == (1, 3)
        assert live["GlueCEStateWaitingJobs"] == 1

    def test_requirements_false_never_matches_it(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        job_id = submit(rt, alice, "Requirements = false;")
        assert claim(rt) is None
        assert job_row(rt, job_id) == ("Waiting", NO_MATCH, None)

    def test_list_match_sees_the_builtin_ce(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt()
        assert list_match(rt, alice, jdl("Rank = other.GlueCEStateFreeCPUs;"), DELEGATION) == [(BUILTIN, 4)]
        assert list_match(rt, alice, jdl("Requirements = false;"), DELEGATION) == []


class TestWaitingForAMatch:
    def test_a_job_nothing_matches_waits_and_is_matched_again_after_the_retry_period(
        self, broker_rt: RankedRuntime, alice: Principal
    ) -> None:
        rt = broker_rt(CATALOGUE, match_retry_period=60)
        job_id = submit(rt, alice, "Requirements = other.GlueCEStateFreeCPUs > 50 && "
                                   'other.GlueCEStateStatus == "Production";')
        t0 = utcnow()
        assert claim(rt, now=t0) is None
        assert job_row(rt, job_id) == ("Waiting", NO_MATCH, None)
        request = pending_start(rt, job_id)
        assert (request.not_before, request.claimed_by) == (t0 + dt.timedelta(seconds=60), None)
        assert claim(rt, now=t0 + dt.timedelta(seconds=30)) is None  # not due yet
        assert pending_start(rt, job_id).not_before == t0 + dt.timedelta(seconds=60)
        t1 = t0 + dt.timedelta(seconds=61)
        assert claim(rt, now=t1) is None  # matched again: still nothing
        assert pending_start(rt, job_id).not_before == t1 + dt.timedelta(seconds=60)
        assert events(rt, job_id).count(("Waiting", NO_MATCH)) == 1  # one event per reason, not per retry
        record_ce_state(rt, CE2, {"GlueCEStateFreeCPUs": 64}, now=t1)
        t2 = t1 + dt.timedelta(seconds=61)
        order = claim(rt, now=t2)
        assert order is not None and order.ce_id == CE2
        assert pending_start_count(rt, job_id) == 0

    def test_a_job_whose_delegation_was_destroyed_waits_for_one_delegated_again(
        self, broker_rt: RankedRuntime, alice: Principal, pki: Pki
    ) -> None:
        # it started without a proxy copy (the claim read an empty proxy and went on)
        rt = broker_rt(match_retry_period=60)
        job_id = submit(rt, alice)
        destroy(rt, alice, DELEGATION)
        t0 = utcnow()
        assert claim(rt, now=t0) is None
        reason = NO_DELEGATION.format(delegation_id=DELEGATION)
        assert job_row(rt, job_id) == ("Waiting", reason, None)
        assert pending_start(rt, job_id).not_before == t0 + dt.timedelta(seconds=60)
        delegate_in_process(rt, alice, pki.users["alice"].proxy, DELEGATION)
        order = claim(rt, now=t0 + dt.timedelta(seconds=61))
        assert order is not None and order.job_id == job_id
        with rt.uow() as uow:
            stored = uow.delegations.get(alice.dn, DELEGATION)
            assert stored is not None and order.proxy_pem == rt.sealer.open(stored.sealed_proxy)

    def test_a_job_whose_expiry_time_has_passed_is_aborted_without_running(self, broker_rt: RankedRuntime,
                                                                           alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        job_id = submit(rt, alice, f"ExpiryTime = {int(utcnow().timestamp()) - 10};")
        assert claim(rt) is None
        assert job_row(rt, job_id)[:2] == ("Aborted", REQUEST_EXPIRED)
        assert [state for state, _ in events(rt, job_id)] == ["Submitted", "Waiting", "Aborted"]
        assert jobs.job_status(rt, alice, job_id).status == "Aborted (request expired)"
        assert pending_start_count(rt, job_id) == 0

    def test_an_unmatched_job_expires_at_its_expiry_time(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE, match_retry_period=300)
        t0 = utcnow().replace(microsecond=0)
        expiry = t0 + dt.timedelta(seconds=100)
        job_id = submit(rt, alice, f"Requirements = false; ExpiryTime = {int(expiry.timestamp())};")
        assert claim(rt, now=t0) is None
        assert pending_start(rt, job_id).not_before == expiry  # re-checked at its expiry, not 300 s later
        assert claim(rt, now=expiry - dt.timedelta(seconds=1)) is None
        assert job_row(rt, job_id)[0] == "Waiting"
        assert claim(rt, now=expiry) is None
        assert job_row(rt, job_id)[:2] == ("Aborted", REQUEST_EXPIRED)

    def test_without_expiry_time_the_sites_expiry_period_counts_from_the_start(
        self, broker_rt: RankedRuntime, alice: Principal
    ) -> None:
        rt = broker_rt(CATALOGUE, match_retry_period=300, expiry_period=1000)
        job_id = submit(rt, alice, "Requirements = false;")
        started = pending_start(rt, job_id).created_at
        for seconds in (0, 301, 602, 903):
            assert claim(rt, now=started + dt.timedelta(seconds=seconds)) is None
            assert job_row(rt, job_id)[0] == "Waiting"
        assert pending_start(rt, job_id).not_before == started + dt.timedelta(seconds=1000)
        assert claim(rt, now=started + dt.timedelta(seconds=1000)) is None
        assert job_row(rt, job_id)[:2] == ("Aborted", REQUEST_EXPIRED)


def pending_start_count(rt: Runtime, job_id: str) -> int:
    with rt.uow() as uow:
        return sum(1 for r in uow.queue.pending_for(job_id) if r.command == "start")


class TestChoice:
    def test_the_best_rank_wins_and_ce_requirements_apply(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        job_id = submit(rt, alice, "Rank = other.GlueCEStateFreeCPUs;")  # ce4 (100) wants atlas jobs only
        order = claim(rt)
        assert order is not None and (order.job_id, order.ce_id) == (job_id, CE2)

    @pytest.mark.parametrize(("ce2", "rank"), [
        pytest.param("", "other.GlueCEStateFreeCPUs", id="undefined"),  # CE2 publishes nothing
        pytest.param("GlueCEStateFreeCPUs = 5; Zero = 0", "other.GlueCEStateFreeCPUs / other.Zero", id="error"),
    ])
    def test_a_rank_that_is_undefined_or_an_error_counts_0(self, broker_rt: RankedRuntime, alice: Principal,
                                                           ce2: str, rank: str) -> None:
        # classad2 gives undefined and error as the ints 2 and 1: neither may beat or tie CE1's real 1
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}"; GlueCEStateFreeCPUs = 1; Zero = 1 ]'
                       f'[ GlueCEUniqueID = "{CE2}"; {ce2} ]')
        assert list_match(rt, alice, jdl(f"Rank = {rank};"), DELEGATION) == [(CE1, 1), (CE2, 0)]
        for _ in range(3):
            submit(rt, alice, f"Rank = {rank};")
            order = claim(rt)
            assert order is not None and order.ce_id == CE1

    @pytest.mark.parametrize("claimed", [
        pytest.param('VirtualOrganisation = "atlas";', id="vo"),
        pytest.param('VOMS_FQAN = "/atlas/Role=production/Capability=NULL";', id="fqan"),
    ])
    def test_a_vo_the_jdl_claims_without_a_voms_proxy_enters_no_vo_ce(self, broker_rt: RankedRuntime,
                                                                      alice: Principal, claimed: str) -> None:
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}" ]'
                       f'[ GlueCEUniqueID = "{ATLAS_CE}"; Requirements = other.VirtualOrganisation == "atlas" || '
                       'member("/atlas/Role=production/Capability=NULL", { other.VOMS_FQAN }) ]')
        assert list_match(rt, alice, jdl(claimed), DELEGATION) == [(CE1, 0)]  # no VOMS attribute in the proxy
        for _ in range(3):
            submit(rt, alice, f'{claimed} Rank = other.GlueCEUniqueID == "{ATLAS_CE}" ? 1 : 0;')
            order = claim(rt)
            assert order is not None and order.ce_id == CE1

    def test_the_jobs_own_requirements_see_the_vo_its_jdl_names_without_a_voms_proxy(
            self, broker_rt: RankedRuntime, alice: Principal) -> None:
        # the usual gLite JDL: matched the dteam CE before matching took the JDL's VO away, then
        # no CE (the job waited until it expired); the CE reserved to dteam still sees no VO
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}"; SupportedVOs = {{ "atlas" }} ]'
                       f'[ GlueCEUniqueID = "{CE2}"; SupportedVOs = {{ "dteam", "ops" }} ]'
                       f'[ GlueCEUniqueID = "{ATLAS_CE}"; SupportedVOs = {{ "dteam" }}; '
                       'Requirements = other.VirtualOrganisation == "dteam" ]')
        dteam = 'VirtualOrganisation = "dteam"; Requirements = member(VirtualOrganisation, other.SupportedVOs);'
        assert list_match(rt, alice, jdl(dteam), DELEGATION) == [(CE2, 0)]  # alice's proxy: no VOMS attribute
        job_id = submit(rt, alice, dteam)
        order = claim(rt)
        assert order is not None and (order.job_id, order.ce_id) == (job_id, CE2)

    def test_the_proxys_vo_is_what_ces_match_on(self, broker_rt: RankedRuntime, pki: Pki, tmp_path: Path) -> None:
        rt, alice = atlas_runtime(broker_rt, pki, tmp_path)
        rank = "Rank = other.GlueCEStateFreeCPUs;"
        assert list_match(rt, alice, jdl(rank), "atlas")[0] == (ATLAS_CE, 100)
        assert list_match(rt, alice, jdl(f'VirtualOrganisation = "ATLAS"; {rank}'), "atlas")[0] == (ATLAS_CE, 100)
        submit_job(rt, alice, jdl(rank), "atlas")
        order = claim(rt)
        assert order is not None and order.ce_id == ATLAS_CE

    def test_list_match_refuses_a_vo_other_than_the_proxys_as_registration_does(
            self, broker_rt: RankedRuntime, pki: Pki, tmp_path: Path) -> None:
        rt, alice = atlas_runtime(broker_rt, pki, tmp_path)
        cms = jdl('VirtualOrganisation = "cms";')
        message = (r"^Jdl VirtualOrganisation attribute \(cms\) is different from delegated Proxy Virtual "
                   r"Organisation \(atlas\)$")
        with pytest.raises(InvalidJdlAttributeError, match=message):
            submit_job(rt, alice, cms, "atlas")
        with pytest.raises(InvalidJdlAttributeError, match=message):
            list_match(rt, alice, cms, "atlas")

    def test_ces_match_on_the_callers_certificate_subject(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}"; Requirements = other.CertificateSubject == "{alice.dn}" ]'
                       f'[ GlueCEUniqueID = "{CE2}"; Requirements = other.CertificateSubject == "/CN=else" ]')
        submit(rt, alice)
        order = claim(rt)
        assert order is not None and order.ce_id == CE1

    def test_submit_to_names_the_ce_without_matchmaking(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        job_id = submit(rt, alice, f'Requirements = false; SubmitTo = "{CE1}";')
        order = claim(rt)
        assert order is not None and order.ce_id == CE1
        assert job_row(rt, job_id) == ("Ready", f"matched to CE {CE1}", CE1)

    def test_submit_to_an_unknown_ce_is_no_match(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        job_id = submit(rt, alice, 'SubmitTo = "nowhere.example.org:8443/cream-x";')
        assert claim(rt) is None
        assert job_row(rt, job_id) == (
            "Waiting", f"{NO_MATCH} (SubmitTo names no CE of this site: nowhere.example.org:8443/cream-x)", None)

    def test_submit_to_a_ce_whose_requirements_refuse_the_job_is_no_match(self, broker_rt: RankedRuntime,
                                                                          alice: Principal, pki: Pki,
                                                                          tmp_path: Path) -> None:
        rt, atlas_alice = atlas_runtime(broker_rt, pki, tmp_path)  # ce4 takes atlas jobs only
        plain = submit(rt, alice, f'SubmitTo = "{ATLAS_CE}";')  # alice's proxy without VOMS attributes
        assert claim(rt) is None
        state, reason, destination = job_row(rt, plain)
        assert (state, destination) == ("Waiting", None)
        assert reason == f"{NO_MATCH} (the CE SubmitTo names refuses the job: its Requirements are not met: {ATLAS_CE})"
        atlas = submit_job(rt, atlas_alice, jdl(f'Requirements = false; SubmitTo = "{ATLAS_CE}";'), "atlas").job_id
        order = claim(rt)
        assert order is not None and (order.job_id, order.ce_id) == (atlas, ATLAS_CE)

    def test_submit_to_skips_the_jobs_expressions_not_the_ces(self) -> None:
        ces = [ce_ad("open"), ce_ad("closed", Requirements=classad2.ExprTree("other.Ok =?= true"))]
        for target, ok, expected in (("open", False, "open"), ("closed", False, None), ("closed", True, "closed")):
            job = classad2.ClassAd(
                f'[ Requirements = false; Rank = 1/0; Ok = {str(ok).lower()}; SubmitTo = "{target}" ]')
            chosen = choose_ce(job, ces, seeded(0))
            assert (chosen.ce_id if chosen else None) == expected, (target, ok)

    def test_a_dynamic_ce_state_changes_the_choice_while_it_is_fresh(self, broker_rt: RankedRuntime,
                                                                     alice: Principal) -> None:
        rt = broker_rt(CATALOGUE, ce_state_max_age=600)
        rank = "Rank = other.GlueCEStateFreeCPUs;"
        record_ce_state(rt, CE1, {"GlueCEStateFreeCPUs": 500}, now=utcnow() - dt.timedelta(seconds=601))
        submit(rt, alice, rank)
        stale = claim(rt)
        assert stale is not None and stale.ce_id == CE2
        record_ce_state(rt, CE1, {"GlueCEStateFreeCPUs": 500, "GlueCEStateWaitingJobs": 0})
        submit(rt, alice, rank)
        fresh = claim(rt)
        assert fresh is not None and fresh.ce_id == CE1
        assert list_match(rt, alice, jdl(rank), DELEGATION)[0] == (CE1, 500)

    def test_equal_best_ranks_are_chosen_between_at_random(self) -> None:
        ces = [ce_ad("a", Score=5), ce_ad("b", Score=5), ce_ad("c", Score=1)]
        job = classad2.ClassAd("[ Rank = other.Score ]")
        rng = seeded(1)
        chosen = collections.Counter(choice.ce_id for _ in range(400) if (choice := choose_ce(job, ces, rng)))
        assert set(chosen) == {"a", "b"} and min(chosen.values()) > 120


class TestListMatchRank:
    """jobListMatch's ranks are the WSDL's ``size``, an ``xsd:long``: clamped into its range."""

    def test_ranks_beyond_a_long_are_clamped(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt('[ GlueCEUniqueID = "a"; Big = 1e30 ] [ GlueCEUniqueID = "b"; Big = -1e30 ]'
                       '[ GlueCEUniqueID = "c"; Big = 9223372036854775807 ] [ GlueCEUniqueID = "d"; Big = 42.9 ]')
        assert list_match(rt, alice, jdl("Rank = other.Big;"), DELEGATION) == [
            ("a", RANK_MAX), ("c", RANK_MAX), ("d", 42), ("b", RANK_MIN)]
        assert (RANK_MIN, RANK_MAX) == (-(2**63), 2**63 - 1)

    @pytest.mark.parametrize(("rank", "whole"), [
        (1e308, RANK_MAX), (math.inf, RANK_MAX), (-math.inf, RANK_MIN), (float(2**63), RANK_MAX),
        (float(-(2**63)), RANK_MIN), (9.2e18, 9_200_000_000_000_000_000), (-7.9, -7), (math.nan, 0)])
    def test_whole_rank(self, rank: float, whole: int) -> None:
        assert whole_rank(rank) == whole


class TestFuzzyRank:
    """The reference's stochastic selector: weight ``atan(f × (rank − mean)) + π/2``."""

    CES = (ce_ad("low", Score=10), ce_ad("mid", Score=20), ce_ad("high", Score=30), ce_ad("off", Score=99))
    JOB = "[ FuzzyRank = true; Rank = other.Score; Requirements = other.Score < 50 ]"

    def draws(self, factor: float, n: int = 3000, seed: int = 7) -> collections.Counter[str]:
        rng = seeded(seed)
        job = classad2.ClassAd(self.JOB)
        return collections.Counter(
            choice.ce_id for _ in range(n) if (choice := choose_ce(job, self.CES, rng, fuzzy_factor=factor)))

    def test_every_matching_ce_is_chosen_sometimes_the_best_most(self) -> None:
        counts = self.draws(1.0)
        assert set(counts) == {"low", "mid", "high"}  # "off" does not match
        assert counts["high"] > counts["mid"] > counts["low"] > 0

    def test_the_choice_follows_the_reference_weights(self) -> None:
        # factor 0.1: atan(-1), atan(0), atan(1) + π/2 = π/4, π/2, 3π/4 → 1/6, 1/3, 1/2
        counts = self.draws(0.1, n=6000)
        for name, share in (("low", 1 / 6), ("mid", 1 / 3), ("high", 1 / 2)):
            assert abs(counts[name] / 6000 - share) < 0.03, counts

    def test_a_zero_factor_is_a_uniform_choice(self) -> None:
        counts = self.draws(0.0)
        assert all(abs(counts[name] / 3000 - 1 / 3) < 0.04 for name in ("low", "mid", "high")), counts

    def test_without_fuzzy_rank_the_best_always_wins(self) -> None:
        job = classad2.ClassAd("[ Rank = other.Score; Requirements = other.Score < 50 ]")
        rng = seeded(3)
        assert {choice.ce_id for _ in range(50) if (choice := choose_ce(job, self.CES, rng))} == {"high"}

    @pytest.mark.parametrize("factor", [1.0, 1e300])
    def test_ranks_near_the_float_limit_are_weighed_without_overflow(self, factor: float) -> None:
        ces = [ce_ad("a", Score=1e308), ce_ad("b", Score=1e308), ce_ad("c", Score=-1e308)]
        job = classad2.ClassAd("[ FuzzyRank = true; Rank = other.Score ]")
        rng = seeded(5)
        counts = collections.Counter(
            choice.ce_id for _ in range(400) if (choice := choose_ce(job, ces, rng, fuzzy_factor=factor)))
        assert set(counts) == {"a", "b"} and min(counts.values()) > 120, counts  # c's weight is 0

    def test_ranks_whose_differences_overflow_keep_their_order(self) -> None:
        ces = [ce_ad("high", Score=1.5e308), ce_ad("low", Score=-1.5e308), ce_ad("mid", Score=0.0)]
        found = matches(classad2.ClassAd("[ Rank = other.Score ]"), ces)
        rng = seeded(2)
        counts = collections.Counter(fuzzy_choice(found, rng, 0.5e-308).ce_id for _ in range(3000))
        assert counts["high"] > counts["mid"] > counts["low"] > 0, counts

    @pytest.mark.parametrize("factor", [math.nan, math.inf])
    def test_a_factor_that_is_not_finite_chooses_uniformly_among_the_best(self, factor: float) -> None:
        found = matches(classad2.ClassAd("[ Rank = other.Score ]"),
                        [ce_ad("a", Score=5), ce_ad("b", Score=5), ce_ad("c", Score=5), ce_ad("d", Score=1)])
        rng = seeded(4)
        counts = collections.Counter(fuzzy_choice(found, rng, factor).ce_id for _ in range(600))
        assert set(counts) <= {"a", "b", "c"} and set(counts) >= {"a", "b"}, counts

    def test_one_matching_ce_is_always_chosen(self) -> None:
        [only] = matches(classad2.ClassAd("[ Rank = other.Score; Requirements = other.Score == 20 ]"), self.CES)
        assert fuzzy_choice([only], seeded(0)) == only


class TestDestination:
    def test_a_slurm_ce_names_its_partition_wall_time_and_memory(self, broker_rt: RankedRuntime,
                                                                 alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        submit(rt, alice, f'SubmitTo = "{SLURM_CE}";')
        order = claim(rt)
        assert order is not None
        assert (order.ce_id, order.backend, order.queue, order.wall_time, order.memory_mb) == (
            SLURM_CE, "slurm", "debug", 30 * 60, 512)

    def test_site_defaults_fill_what_a_slurm_ce_does_not_publish(self, broker_rt: RankedRuntime,
                                                                 alice: Principal) -> None:
        rt = broker_rt(f'[ GlueCEUniqueID = "{SLURM_CE}"; WMProxyBackend = "slurm"; SlurmPartition = "batch" ]',
                       slurm={"default_wall_time": 7200, "default_memory_mb": 2048})
        submit(rt, alice)
        order = claim(rt)
        assert order is not None
        assert (order.backend, order.queue, order.wall_time, order.memory_mb) == ("slurm", "batch", 7200, 2048)

    def test_a_local_ce_has_no_queue_and_no_site_defaults(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE, slurm={"default_wall_time": 7200, "default_memory_mb": 2048})
        submit(rt, alice, f'SubmitTo = "{CE2}";')
        order = claim(rt)
        assert order is not None and (order.backend, order.queue, order.wall_time, order.memory_mb) == (
            "local", None, None, None)
        submit(rt, alice, f'SubmitTo = "{CE1}";')
        order = claim(rt)
        assert order is not None and order.wall_time == 3600

    def test_a_worker_without_the_ces_backend_leaves_the_job_queued_for_another(
        self, broker_rt: RankedRuntime, alice: Principal
    ) -> None:
        rt = broker_rt(CATALOGUE)
        job_id = submit(rt, alice, f'SubmitTo = "{SLURM_CE}";')
        t0 = utcnow()
        assert claim(rt, backends={"local"}, now=t0) is None
        assert job_row(rt, job_id) == (
            "Waiting", f"matched to CE {SLURM_CE}: waiting for a worker with its slurm backend", None)
        poll = rt.settings.execution.poll_interval
        assert pending_start(rt, job_id).not_before == t0 + dt.timedelta(seconds=BACKEND_WAIT_POLLS * poll)
        order = claim(rt, backends={"local", "slurm"}, now=t0 + dt.timedelta(seconds=BACKEND_WAIT_POLLS * poll))
        assert order is not None and (order.job_id, order.backend) == (job_id, "slurm")

    def test_a_batch_claims_the_oldest_jobs_up_to_its_limit(self, broker_rt: RankedRuntime,
                                                             alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        job_ids = [submit(rt, alice, f'SubmitTo = "{CE1}";') for _ in range(3)]
        assert claim_starts(rt, "w1", {"local": 8}, limit=0) == []
        first = claim_starts(rt, "w1", {"local": 8}, limit=2)
        assert [order.job_id for order in first] == job_ids[:2]
        assert [job_row(rt, j) for j in job_ids[:2]] == [("Ready", f"matched to CE {CE1}", CE1)] * 2
        assert [order.job_id for order in claim_starts(rt, "w1", {"local": 8}, limit=2)] == job_ids[2:]
        assert claim_starts(rt, "w1", {"local": 8}, limit=2) == []

    def test_a_batch_gives_back_a_job_whose_backend_it_has_filled(self, broker_rt: RankedRuntime,
                                                                alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        slurm_1 = submit(rt, alice, f'SubmitTo = "{SLURM_CE}";')
        local = submit(rt, alice, f'SubmitTo = "{CE1}";')
        slurm_2 = submit(rt, alice, f'SubmitTo = "{SLURM_CE}";')
        t0 = utcnow()
        orders = claim_starts(rt, "w1", {"local": 2, "slurm": 1}, limit=8, now=t0)
        assert [(order.job_id, order.backend) for order in orders] == [(slurm_1, "slurm"), (local, "local")]
        assert job_row(rt, slurm_2)[0] == "Waiting"  # given back unchanged, due after one poll interval
        poll = rt.settings.execution.poll_interval
        later = t0 + dt.timedelta(seconds=poll)
        assert pending_start(rt, slurm_2).not_before == later
        assert claim_starts(rt, "w1", {"local": 0, "slurm": 0}, limit=8, now=later) == []  # no room: none looked at
        assert [order.job_id for order in claim_starts(rt, "w1", {"slurm": 1}, limit=8, now=later)] == [slurm_2]

    def test_a_dag_node_is_matched_when_its_parent_is_done(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        dag = ('[ Type = "dag"; Rank = other.GlueCEStateFreeCPUs; nodes = [ '
               'a = [ Description = [ Executable = "/bin/true"; ]; ]; b = [ Description = [ Executable = "/bin/true"; '
               f'SubmitTo = "{CE1}"; ]; ]; dependencies = {{ {{ a, b }} }}; ]; ]')
        parent = submit_job(rt, alice, dag, DELEGATION)
        first = claim(rt)
        assert first is not None and first.ce_id == CE2
        assert claim(rt) is None  # b waits for a
        end_attempt(rt, first.job_id, AttemptEnd(JobState.DONE, exit_code=0, payload_started=True))
        second = claim(rt)
        assert second is not None and second.job_id != first.job_id and second.ce_id == CE1
        status = jobs.job_status(rt, alice, parent.job_id)
        assert sorted(child.destination or "" for child in status.children) == [CE1, CE2]


class TestCatalogueAndStates:
    @pytest.mark.parametrize(("entry", "message"), [
        ('[ GlueCEUniqueID = "x"; WMProxyBackend = "condor" ]', "WMProxyBackend must be one of local, slurm"),
        ('[ GlueCEUniqueID = "x"; WMProxyBackend = "slurm" ]', "Slurm CE x names no SlurmPartition"),
        ('[ GlueCEStateFreeCPUs = 1 ]', "an entry has no GlueCEUniqueID"),
    ])
    def test_a_bad_catalogue_entry_is_refused(self, broker_rt: RankedRuntime, alice: Principal, entry: str,
                                              message: str) -> None:
        rt = broker_rt(entry)
        submit(rt, alice)
        with pytest.raises(SandboxError, match=message):
            claim(rt)

    @pytest.mark.parametrize(("text", "where"), [
        pytest.param(f'[ GlueCEUniqueID = "{CE1}" ]\n[ GlueCEUniqueID = "{CE2}";  # a shell comment\n]',
                     "from line 2: Unable to parse input stream into a ClassAd",
                     id="hash-comment"),  # classad2 raises ValueError
        pytest.param(f'[ GlueCEUniqueID = "{CE1}" ]\n\n[ GlueCEUniqueID = "{CE2}"',
                     "from line 3: not a complete ClassAd", id="cut-short"),  # classad2 stops silently: CE2 gone
        pytest.param(f'[ GlueCEUniqueID = "{CE1}" ] ce2', "from line 1: not a complete ClassAd", id="not-an-ad"),
    ])
    def test_a_catalogue_that_is_not_classads_is_refused_and_the_jobs_stay_queued(
            self, broker_rt: RankedRuntime, alice: Principal, text: str, where: str) -> None:
        rt = broker_rt(text)
        path = rt.settings.jobs.ce_catalogue
        job_id = submit(rt, alice)
        message = f"^CE catalogue {re.escape(path)}: not valid ClassAds: {where}"
        with pytest.raises(SandboxError, match=message):
            claim(rt)
        with pytest.raises(SandboxError, match=message):
            list_match(rt, alice, jdl(), DELEGATION)
        assert job_row(rt, job_id) == ("Waiting", None, None)
        assert pending_start_count(rt, job_id) == 1

    def test_a_catalogue_in_the_old_syntax_gives_the_same_ces_as_in_the_new(
            self, broker_rt: RankedRuntime, alice: Principal) -> None:
        # condor_status -long's syntax: classad2 detected it before the catalogue was parsed
        # strictly; then only the new syntax loaded, and every match failed
        rt = broker_rt(CATALOGUE)
        with rt.uow() as uow:
            new = [dict(ce) for ce in site_ces(rt, uow)]
        Path(rt.settings.jobs.ce_catalogue).write_text(OLD_SYNTAX_CATALOGUE, encoding="utf-8")
        with rt.uow() as uow:
            old = [dict(ce) for ce in site_ces(rt, uow)]
        assert old == new and [ce["GlueCEUniqueID"] for ce in old] == [CE1, CE2, SLURM_CE, ATLAS_CE]
        assert list_match(rt, alice, jdl(), DELEGATION) == [(CE1, 0), (CE2, 0), (SLURM_CE, 0)]

    @pytest.mark.parametrize(("text", "where"), [
        pytest.param(CATALOGUE[:CATALOGUE.index("GlueCEStateFreeCPUs = 40") + 22],
                     "from line 4: not a complete ClassAd", id="new-syntax"),
        pytest.param(OLD_SYNTAX_CATALOGUE[:OLD_SYNTAX_CATALOGUE.index('"Production"', 200) + 7],
                     "from line 8: not a complete 'Name = value' line", id="old-syntax-in-a-string"),
        pytest.param(OLD_SYNTAX_CATALOGUE[:OLD_SYNTAX_CATALOGUE.index("GlueCEStateFreeCPUs = 40") + 22],
                     "from line 9: not a complete 'Name = value' line", id="old-syntax-after-equals"),
    ])
    def test_a_catalogue_cut_short_is_refused_in_either_syntax(
            self, broker_rt: RankedRuntime, alice: Principal, text: str, where: str) -> None:
        # the old parser drops a line it cannot read and the rest of its ad without a word
        rt = broker_rt(text)
        message = f"^CE catalogue {re.escape(rt.settings.jobs.ce_catalogue)}: not valid ClassAds: {re.escape(where)}"
        with pytest.raises(SandboxError, match=message):
            list_match(rt, alice, jdl(), DELEGATION)

    def test_the_worker_goes_on_with_a_catalogue_that_is_not_classads(self, broker_rt: RankedRuntime,
                                                                       alice: Principal, tmp_path: Path) -> None:
        # the ValueError classad2 raised ended the worker's loop ("a defect: the process ends")
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}";  # a shell comment\n]')
        job_id = submit(rt, alice)
        worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(tmp_path / "work", kill_grace=2.0)}, "w1")
        worker.step()
        worker.step()
        assert not worker.running
        assert job_row(rt, job_id) == ("Waiting", None, None)
        assert pending_start_count(rt, job_id) == 1

    def test_list_match_answers_a_catalogue_that_is_not_classads_with_a_typed_fault(
            self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(f'[ GlueCEUniqueID = "{CE1}";  # a shell comment\n]')  # was GenericFault 1201 "internal error"
        soap = SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
        reply = soap.call(WMPROXY, "jobListMatch", alice, jdl=jdl(), delegationId=DELEGATION)
        detail = reply.fault_detail
        assert (etree.QName(detail).localname, detail.findtext("ErrorCode")) == ("GenericFault", "1203")
        assert detail.findtext("Description") == (f"CE catalogue {rt.settings.jobs.ce_catalogue}: not valid ClassAds: "
                                                  "from line 1: Unable to parse input stream into a ClassAd.")

    def test_a_catalogue_that_is_not_utf8_is_refused(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        rt = broker_rt(CATALOGUE)
        Path(rt.settings.jobs.ce_catalogue).write_bytes(b'[ GlueCEUniqueID = "caf\xe9" ]')
        submit(rt, alice)
        with pytest.raises(SandboxError, match="not valid ClassAds: not UTF-8 text"):
            claim(rt)

    def test_the_docs_example_catalogue_is_valid(self, broker_rt: RankedRuntime, alice: Principal) -> None:
        docs = (Path(__file__).parents[3] / "docs" / "brokering.md").read_text(encoding="utf-8")
        example = docs.split("## The CEs", 1)[1].split("```\n", 2)[1]
        rt = broker_rt(example)
        with rt.uow() as uow:
            assert [ce["GlueCEUniqueID"] for ce in site_ces(rt, uow)] == [
                "wms.example.org:7443/wmproxy-local", "batch.example.org:6817/slurm-short"]
        assert list_match(rt, alice, jdl(), DELEGATION) == [("wms.example.org:7443/wmproxy-local", 0)]

    @pytest.mark.parametrize("attributes", [
        {"Glue CE": 1}, {"GlueCEStateFreeCPUs": True}, {"GlueCEStateFreeCPUs": float("nan")},
        {"GlueCEStateFreeCPUs": [1]},
    ])
    def test_a_bad_ce_state_is_refused(self, broker_rt: RankedRuntime, attributes: dict[str, object]) -> None:
        rt = broker_rt(CATALOGUE)
        with pytest.raises(InvalidArgumentError, match="CE state of"):
            record_ce_state(rt, CE1, attributes)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="needs a CE id"):
            record_ce_state(rt, "", {"GlueCEStateFreeCPUs": 1})

    def test_a_new_state_replaces_the_previous_one(self, broker_rt: RankedRuntime) -> None:
        rt = broker_rt(CATALOGUE)
        record_ce_state(rt, CE1, {"GlueCEStateFreeCPUs": 1, "GlueCEStateStatus": "Draining"})
        record_ce_state(rt, CE1, {"GlueCEStateFreeCPUs": 2, "GlueCEStateEstimatedResponseTime": 1.5})
        with rt.uow() as uow:
            ce1 = next(ce for ce in site_ces(rt, uow) if ce["GlueCEUniqueID"] == CE1)
        assert (ce1["GlueCEStateFreeCPUs"], ce1["GlueCEStateStatus"], ce1["GlueCEStateEstimatedResponseTime"]) == (
            2, "Production", 1.5)
