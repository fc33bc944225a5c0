"""jobRegister, jobStart, jobSubmit through their public functions (services/submission.py; §3.1-§3.4).

Only the public signatures are used: ``register_job(rt, principal, jdl, delegation_id)``,
``start_job(rt, principal, job_id)``, ``submit_job(rt, principal, jdl, delegation_id)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import ECHO_JDL, delegate_in_process
from wmproxy.config import LimitsSettings
from wmproxy.domain import JobState, Principal, parse_job_id, utcnow
from wmproxy.errors import (
    AuthorizationError,
    DelegationNotFoundError,
    InvalidArgumentError,
    InvalidDelegationIdError,
    JdlError,
    JdlSyntaxError,
    JobNotFoundError,
    OperationNotAllowedError,
    ProxyExpiredError,
)
from wmproxy.jdl import jdl_lines, parse_jdl
from wmproxy.services import jobs
from wmproxy.services.execution import NO_JOB_DIRECTORY, claim_next_start
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, start_job, submit_job


def sandbox_areas(rt: Runtime) -> list[Path]:
    root = Path(rt.settings.sandbox.root) / rt.settings.sandbox.dir_name
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


def queued(rt: Runtime, job_id: str) -> list[str]:
    with rt.uow() as uow:
        return [r.command for r in uow.queue.pending_for(job_id)]


class TestRegister:
    def test_registered_job_has_an_id_an_input_area_and_is_submitted(self, rt: Runtime, alice: Principal,
                                                                    delegated: str) -> None:
        job = register_job(rt, alice, ECHO_JDL, delegated)
        parse_job_id(job.job_id)
        assert job.job_id.startswith("https://localhost:9000/")
        assert job.name is None and job.children == ()
        assert job.path.startswith("SandboxDir/") and job.path.endswith("/input")
        # The job directory is made at registration, its input/ by the first upload (issue 14).
        assert (Path(rt.settings.sandbox.root) / job.path).parent.is_dir()
        assert not (Path(rt.settings.sandbox.root) / job.path).exists()
        assert jobs.job_status(rt, alice, job.job_id).state == "Submitted"
        assert queued(rt, job.job_id) == []

    def test_empty_delegation_id_means_the_default_one(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "")
        job = register_job(rt, alice, ECHO_JDL, "")
        assert jobs.job_status(rt, alice, job.job_id).state == "Submitted"

    def test_without_a_delegation(self, rt: Runtime, alice: Principal) -> None:
        with pytest.raises(DelegationNotFoundError, match="Unable to get delegated Proxy") as err:
            register_job(rt, alice, ECHO_JDL, "never-delegated")
        assert err.value.code == 1215
        assert sandbox_areas(rt) == []

    def test_another_users_delegation_is_not_found(self, rt: Runtime, bob: Principal, delegated: str) -> None:
        with pytest.raises(DelegationNotFoundError):
            register_job(rt, bob, ECHO_JDL, delegated)

    def test_unusable_delegation_id(self, rt: Runtime, alice: Principal) -> None:
        with pytest.raises(InvalidDelegationIdError):
            register_job(rt, alice, ECHO_JDL, "../etc")

    def test_proxy_with_less_than_the_minimum_lifetime(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "short", lifetime=10 * 60)
        with pytest.raises(ProxyExpiredError, match="The delegated Proxy has expired") as err:
            register_job(rt, alice, ECHO_JDL, "short")
        assert err.value.code == 1213
        assert sandbox_areas(rt) == []

    @pytest.mark.parametrize(("jdl", "error", "message"), [
        ("[ Executable = ; ]", JdlSyntaxError, "Unable to parse JDL"),
        ("not a classad at all", JdlSyntaxError, "Unable to parse JDL"),
        ('[ Arguments = "no executable"; ]', JdlError, "Mandatory attribute Executable not set"),
    ])
    def test_bad_jdl_is_refused_and_leaves_nothing(self, rt: Runtime, alice: Principal, delegated: str,
                                                   jdl: str, error: type[JdlError], message: str) -> None:
        with pytest.raises(error, match=message) as err:
            register_job(rt, alice, jdl, delegated)
        assert err.value.code == 1219
        assert sandbox_areas(rt) == []

    @pytest.mark.parametrize("jdl", [
        pytest.param("""[ Executable = "/bin/true"; 'x=0; VirtualOrganisation="atlas"; y' = 1 ]""",
                     id="smuggled-vo"),
        pytest.param("""[ Executable = "/bin/true"; 'my attr' = 1 ]""", id="unreadable-stored-text"),
        pytest.param("""[ Type = "collection"; Nodes = { [ Executable = "/bin/true";"""
                     """ 'x=0; StdOutput="/etc/passwd"; y' = 1 ] } ]""", id="in-a-node"),
    ])
    def test_a_quoted_attribute_name_is_refused_and_leaves_nothing(self, rt: Runtime, alice: Principal,
                                                                   delegated: str, jdl: str) -> None:
        """Written back unquoted into the stored JDL, such a name gave the execution worker
        attributes no check had seen (a VirtualOrganisation of another VO), or a text it
        could not read (its claim failed at every cycle)."""
        with pytest.raises(JdlSyntaxError, match="is not a plain name") as err:
            register_job(rt, alice, jdl, delegated)
        assert err.value.code == 1219
        assert sandbox_areas(rt) == []
        with rt.uow() as uow:
            assert list(uow.jobs.owned_by(alice.dn)) == []

    def test_the_stored_jdl_texts_read_back_to_the_same_ads(self, rt: Runtime, alice: Principal,
                                                              delegated: str) -> None:
        """A plain name written quoted and quotes inside strings are no quoted names."""
        jdl = """[ 'Executable' = "/bin/echo"; Arguments = "it's 'a b' \\"c\\""; R = 'parent' ]"""
        job = register_job(rt, alice, jdl, delegated)
        with rt.uow() as uow:
            row = uow.jobs.get(job.job_id)
            assert row is not None
            original, registered = row.jdl_original, row.jdl_registered
        assert parse_jdl(original) == parse_jdl(jdl)
        assert parse_jdl(original)["Arguments"] == "it's 'a b' \"c\""
        assert jdl_lines(parse_jdl(registered)) == registered


class TestDagDependencies:
    NODES = ('a = [ description = [ Executable = "/bin/true" ] ];'
             ' b = [ description = [ Executable = "/bin/true" ] ];')

    def test_more_pairs_than_the_cap_are_refused_and_leave_nothing(self, rt: Runtime, alice: Principal,
                                                                    delegated: str) -> None:
        """{ {a x 317}, {b x 317} } is 100,489 pairs, counted before any is made."""
        parents, children = ", ".join(["a"] * 317), ", ".join(["b"] * 317)
        jdl = (f'[ Type = "dag"; nodes = [ {self.NODES}'
               f" dependencies = {{ {{ {{ {parents} }}, {{ {children} }} }} }} ] ]")
        with pytest.raises(InvalidArgumentError) as err:
            register_job(rt, alice, jdl, delegated)
        assert err.value.message == "The DAG job has 100489 dependency pairs, more than the allowed 100000"
        assert err.value.code == 1225
        assert sandbox_areas(rt) == []
        with rt.uow() as uow:
            assert list(uow.jobs.owned_by(alice.dn)) == []

    def test_a_repeated_pair_is_one_row(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        jdl = (f'[ Type = "dag"; nodes = [ {self.NODES} dependencies = {{ {{ a, b }}, {{ {{ a, A }}, {{ "b" }} }} }} ];'
               " Dependencies = { { a, B } } ]")
        registered = register_job(rt, alice, jdl, delegated)
        with rt.uow() as uow:
            ids = {node.node_name: node.id for node in uow.jobs.children(registered.job_id)}
            assert uow.jobs.dependencies(ids["b"]) == [ids["a"]]
            assert uow.jobs.dependencies(ids["a"]) == []


class TestExpandedSize:
    """The nodes' JDL together is bounded by [limits] max_request_bytes, before any is made."""

    PAD = "x" * 10_000  # 20 nodes of it: 200 kB

    @pytest.mark.parametrize(("jdl", "what"), [
        pytest.param(f'[ JobType = "parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_";'
                     f' Parameters = 20; Pad = "{PAD}" ]', "parametric", id="parametric"),
        pytest.param(f'[ Type = "collection"; Executable = "/bin/echo"; Arguments = "{PAD}";'
                     f' Nodes = {{ {", ".join(["[ ]"] * 20)} }} ]', "collection", id="collection"),
    ])
    def test_over_the_limit_is_refused_and_leaves_nothing(self, rt: Runtime, alice: Principal, delegated: str,
                                                         jdl: str, what: str) -> None:
        rt.settings = dataclasses.replace(rt.settings, limits=LimitsSettings(max_request_bytes=100_000))
        with pytest.raises(InvalidArgumentError) as err:
            register_job(rt, alice, jdl, delegated)
        assert err.value.code == 1225
        assert err.value.message.startswith(f"The {what} job's nodes would hold 20")
        assert err.value.message.endswith(" bytes of JDL, more than the allowed 100000")
        assert sandbox_areas(rt) == []
        with rt.uow() as uow:
            assert list(uow.jobs.owned_by(alice.dn)) == []


class TestStart:
    def test_start_queues_the_job_once(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        start_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Waiting"
        assert queued(rt, job_id) == ["start"]
        with pytest.raises(OperationNotAllowedError, match="already in progress") as err:
            start_job(rt, alice, job_id)
        assert err.value.code == 1226
        assert queued(rt, job_id) == ["start"]

    def test_cancelled_job_cannot_start(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        jobs.cancel_job(rt, alice, job_id)
        with pytest.raises(OperationNotAllowedError, match=r"job state \(CANCELLED\)"):
            start_job(rt, alice, job_id)

    def test_only_the_owner_starts(self, rt: Runtime, alice: Principal, bob: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with pytest.raises(AuthorizationError):
            start_job(rt, bob, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Submitted"

    def test_unknown_job(self, rt: Runtime, alice: Principal) -> None:
        with pytest.raises(JobNotFoundError):
            start_job(rt, alice, "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA")

    def test_purged_job_is_unknown(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            uow.jobs.set_state(job, JobState.CLEARED.value, utcnow())
        with pytest.raises(JobNotFoundError):
            start_job(rt, alice, job_id)

    def test_expired_delegation_refuses_the_start(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with rt.uow() as uow:
            row = uow.delegations.get(alice.dn, delegated)
            assert row is not None
            row.not_after = utcnow()  # back-dated instead of waiting for it to expire
        with pytest.raises(ProxyExpiredError, match="The delegated Proxy has expired"):
            start_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Submitted"


class TestSubmit:
    def test_submit_registers_and_starts_in_one_step(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job = submit_job(rt, alice, ECHO_JDL, delegated)
        assert jobs.job_status(rt, alice, job.job_id).state == "Waiting"
        assert queued(rt, job.job_id) == ["start"]

    def test_submit_makes_no_job_directory(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        # Nothing may be uploaded into a started job; its execution makes the directory (issue 14).
        simple = submit_job(rt, alice, ECHO_JDL, delegated)
        collection = submit_job(rt, alice, '[ Type = "collection"; nodes = { [ Executable = "/bin/true"; ], '
                                            '[ Executable = "/bin/true"; ] } ]', delegated)
        assert len(collection.children) == 2
        assert simple.path.endswith("/input") and sandbox_areas(rt) == []
        assert not rt.storage.has_job_area(simple.job_id)
        registered = register_job(rt, alice, ECHO_JDL, delegated)
        assert sandbox_areas(rt) == [rt.storage.job_dir(registered.job_id)]

    def test_the_claim_of_a_submitted_job_makes_its_directory(self, rt: Runtime, alice: Principal,
                                                              delegated: str) -> None:
        job = submit_job(rt, alice, ECHO_JDL, delegated)
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == job.job_id
        job_dir = rt.storage.job_dir(job.job_id)
        assert sandbox_areas(rt) == [job_dir] and os.listdir(job_dir) == []
        assert stat.S_IMODE(os.lstat(job_dir).st_mode) == 0o700

    def test_a_job_whose_directory_cannot_be_made_waits_as_an_unmatched_one(
        self, rt: Runtime, alice: Principal, delegated: str
    ) -> None:
        job = submit_job(rt, alice, ECHO_JDL, delegated)
        fan_out = rt.storage.job_dir(job.job_id).parent
        fan_out.parent.mkdir(parents=True)
        fan_out.write_bytes(b"")  # a file where the fan-out directory should be
        before = utcnow()
        assert claim_next_start(rt, "w1") is None
        assert jobs.job_status(rt, alice, job.job_id).state == "Waiting"
        with rt.uow() as uow:
            row = uow.jobs.get(job.job_id)
            assert row is not None and (row.reason or "").startswith(f"{NO_JOB_DIRECTORY}: ")
            assert rt.settings.sandbox.root not in (row.reason or "")  # the cause, not the server's paths
            [request] = uow.queue.pending_for(job.job_id)
            # not again at the next poll: due after [brokering] match_retry_period
            assert request.not_before >= before + dt.timedelta(seconds=rt.settings.brokering.match_retry_period)

    def test_failed_submit_leaves_nothing(self, rt: Runtime, alice: Principal) -> None:
        with pytest.raises(DelegationNotFoundError):
            submit_job(rt, alice, ECHO_JDL, "never-delegated")
        assert sandbox_areas(rt) == []
