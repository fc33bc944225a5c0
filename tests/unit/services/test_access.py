"""Who may act on a job: owner, ACL read grants by DN and FQAN, everybody else refused
(services/access.py, services/acl.py; wmproxy-behaviour.md §6.4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tests.support import ECHO_JDL
from wmproxy.domain import Principal
from wmproxy.errors import (
    AuthorizationError,
    InvalidArgumentError,
    JobNotFoundError,
    OperationNotAllowedError,
)
from wmproxy.services import acl, jobs
from wmproxy.services.access import grants
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

ATLAS_PRODUCTION = "/atlas/Role=production/Capability=NULL"


@pytest.fixture
def job_id(rt: Runtime, alice: Principal, delegated: str) -> str:
    return register_job(rt, alice, ECHO_JDL, delegated).job_id


class TestGrants:
    def test_dn_item_names_that_caller_only(self, alice: Principal, bob: Principal) -> None:
        assert grants([alice.dn], alice)
        assert not grants([alice.dn], bob)

    def test_fqan_item_admits_equal_and_lower_fqans(self) -> None:
        assert grants(["/atlas"], Principal("/CN=x", fqans=(ATLAS_PRODUCTION,)))
        assert grants(["/atlas/Role=production/Capability=NULL"], Principal("/CN=x", fqans=(ATLAS_PRODUCTION,)))
        assert grants(["/atlas/"], Principal("/CN=x", fqans=("/atlas/uk",)))

    def test_fqan_item_is_not_a_string_prefix(self) -> None:
        assert not grants(["/atlas"], Principal("/CN=x", fqans=("/atlasx/Role=NULL",)))
        assert not grants(["/atlas/uk"], Principal("/CN=x", fqans=(ATLAS_PRODUCTION,)))
        assert not grants(["/atlas"], Principal("/CN=x"))


class TestOwnerAndOthers:
    def test_owner_reads_and_changes_the_job(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        assert jobs.job_status(rt, alice, job_id).status == "Submitted"
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn]
        jobs.cancel_job(rt, alice, job_id)
        assert jobs.job_status(rt, alice, job_id).state == "Cancelled"

    @pytest.mark.parametrize("operation", ["status", "jdl", "acl", "cancel", "purge", "add_acl"])
    def test_another_user_is_refused_everything(self, rt: Runtime, bob: Principal, job_id: str,
                                                operation: str) -> None:
        calls: dict[str, Callable[[], object]] = {
            "status": lambda: jobs.job_status(rt, bob, job_id),
            "jdl": lambda: jobs.get_jdl(rt, bob, job_id, "ORIGINAL"),
            "acl": lambda: acl.get_acl_items(rt, bob, job_id),
            "cancel": lambda: jobs.cancel_job(rt, bob, job_id),
            "purge": lambda: jobs.purge_job(rt, bob, job_id),
            "add_acl": lambda: acl.add_acl_items(rt, bob, job_id, [bob.dn]),
        }
        with pytest.raises(AuthorizationError, match="Authorization error: user not authorized"):
            calls[operation]()

    def test_unknown_and_malformed_job_ids(self, rt: Runtime, alice: Principal) -> None:
        with pytest.raises(JobNotFoundError) as err:
            jobs.job_status(rt, alice, "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA")
        assert err.value.code == 1218
        with pytest.raises(InvalidArgumentError, match="Provided Job Id not valid"):
            jobs.job_status(rt, alice, "not a job id")


class TestAclItems:
    def test_dn_item_grants_read_but_not_write(self, rt: Runtime, alice: Principal, bob: Principal,
                                               job_id: str) -> None:
        acl.add_acl_items(rt, alice, job_id, [bob.dn])
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn, bob.dn]
        assert jobs.job_status(rt, bob, job_id).status == "Submitted"
        assert "/bin/echo" in jobs.get_jdl(rt, bob, job_id, "ORIGINAL")
        assert acl.get_acl_items(rt, bob, job_id) == [alice.dn, bob.dn]
        with pytest.raises(AuthorizationError):
            jobs.cancel_job(rt, bob, job_id)
        with pytest.raises(AuthorizationError):
            acl.add_acl_items(rt, bob, job_id, ["/CN=friend-of-bob"])
        assert jobs.job_status(rt, alice, job_id).state == "Submitted"

    def test_fqan_item_grants_read_to_members_of_the_vo(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        acl.add_acl_items(rt, alice, job_id, ["/atlas"])
        member = Principal("/C=XX/O=Elsewhere/CN=Member", fqans=(ATLAS_PRODUCTION,))
        outsider = Principal("/C=XX/O=Elsewhere/CN=Member", fqans=("/dteam/Role=NULL/Capability=NULL",))
        assert jobs.job_status(rt, member, job_id).status == "Submitted"
        with pytest.raises(AuthorizationError):
            jobs.job_status(rt, outsider, job_id)

    def test_removing_an_item_takes_the_grant_back(self, rt: Runtime, alice: Principal, bob: Principal,
                                                   job_id: str) -> None:
        acl.add_acl_items(rt, alice, job_id, [bob.dn])
        acl.remove_acl_item(rt, alice, job_id, bob.dn)
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn]
        with pytest.raises(AuthorizationError):
            jobs.job_status(rt, bob, job_id)

    def test_duplicate_item_is_a_gacl_error(self, rt: Runtime, alice: Principal, bob: Principal,
                                            job_id: str) -> None:
        acl.add_acl_items(rt, alice, job_id, [bob.dn])
        with pytest.raises(acl.AclError, match="the entry already exists") as err:
            acl.add_acl_items(rt, alice, job_id, [bob.dn])
        assert err.value.code == 1209
        with pytest.raises(acl.AclError):
            acl.add_acl_items(rt, alice, job_id, [alice.dn])

    def test_a_failed_add_adds_nothing(self, rt: Runtime, alice: Principal, bob: Principal, job_id: str) -> None:
        with pytest.raises(acl.AclError):
            acl.add_acl_items(rt, alice, job_id, [bob.dn, bob.dn])
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn]

    def test_more_items_than_the_limit_are_refused_all_of_them(self, rt: Runtime, alice: Principal,
                                                                 job_id: str) -> None:
        """The items one job may hold beyond its owner (``[limits] max_acl_items``): an add that
        would pass the limit is refused whole (red-team L1: 60,000 items on one's own job made
        every other user's listJobs take 2 s)."""
        rt.settings = dataclasses.replace(rt.settings, limits=dataclasses.replace(rt.settings.limits,
                                                                                  max_acl_items=3))
        acl.add_acl_items(rt, alice, job_id, ["/CN=one", "/CN=two"])
        with pytest.raises(OperationNotAllowedError, match=r"maximum number of ACL items is reached \(3 per job\)") \
                as err:
            acl.add_acl_items(rt, alice, job_id, ["/CN=three", "/CN=four"])
        assert err.value.code == 1226
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn, "/CN=one", "/CN=two"]
        acl.add_acl_items(rt, alice, job_id, ["/CN=three"])
        with pytest.raises(OperationNotAllowedError):
            acl.add_acl_items(rt, alice, job_id, ["/CN=four"])
        acl.remove_acl_item(rt, alice, job_id, "/CN=one")
        acl.add_acl_items(rt, alice, job_id, ["/CN=four"])
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn, "/CN=two", "/CN=three", "/CN=four"]

    def test_the_default_limit_is_a_hundred_items(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        assert rt.settings.limits.max_acl_items == 100
        acl.add_acl_items(rt, alice, job_id, [f"/CN=user{i}" for i in range(100)])
        with pytest.raises(OperationNotAllowedError, match="maximum number of ACL items"):
            acl.add_acl_items(rt, alice, job_id, ["/CN=user100"])
        assert len(acl.get_acl_items(rt, alice, job_id)) == 101

    def test_an_item_longer_than_the_limit_is_invalid(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        """512 characters (``[limits] max_acl_item_length``), what the database column holds:
        PostgreSQL refused a longer one with an internal error, SQLite kept it whole."""
        longest = "/CN=" + "x" * 508
        with pytest.raises(InvalidArgumentError, match="ACL item longer than 512 characters") as err:
            acl.add_acl_items(rt, alice, job_id, [ATLAS_PRODUCTION, longest + "x"])
        assert err.value.code == 1225
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn]
        acl.add_acl_items(rt, alice, job_id, [f"  {longest} "])
        assert acl.get_acl_items(rt, alice, job_id) == [alice.dn, longest]

    @pytest.mark.parametrize("items", [[], [""], ["  "], [ATLAS_PRODUCTION, ""]])
    def test_empty_items_are_invalid(self, rt: Runtime, alice: Principal, job_id: str, items: list[str]) -> None:
        with pytest.raises(InvalidArgumentError, match="empty ACL item"):
            acl.add_acl_items(rt, alice, job_id, items)

    def test_the_owner_cannot_be_removed(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        with pytest.raises(OperationNotAllowedError, match="registered the job is not allowed") as err:
            acl.remove_acl_item(rt, alice, job_id, alice.dn)
        assert err.value.code == 1226

    def test_removing_an_absent_item(self, rt: Runtime, alice: Principal, job_id: str) -> None:
        with pytest.raises(AuthorizationError, match="no such item /CN=nobody"):
            acl.remove_acl_item(rt, alice, job_id, "/CN=nobody")


COLLECTION = """[ Type = "collection";
Nodes = { [ Executable = "/bin/echo"; Arguments = "one"; ], [ Executable = "/bin/echo"; Arguments = "two"; ] }; ]"""


class TestNodeAcl:
    """Each node has its own ACL and inherits its compound job's: what getACLItems lists is
    what grants access (§6.4: every sub-job had its own .gacl)."""

    @pytest.fixture
    def compound(self, rt: Runtime, alice: Principal, delegated: str) -> tuple[str, str, str]:
        job = register_job(rt, alice, COLLECTION, delegated)
        return job.job_id, job.children[0].job_id, job.children[1].job_id

    def test_an_item_added_on_a_node_grants_that_node_only(self, rt: Runtime, alice: Principal, bob: Principal,
                                                           compound: tuple[str, str, str]) -> None:
        parent, node, other = compound
        acl.add_acl_items(rt, alice, node, [bob.dn])
        assert acl.get_acl_items(rt, alice, node) == [alice.dn, bob.dn]
        assert jobs.job_status(rt, bob, node).job_id == node
        assert acl.get_acl_items(rt, bob, node) == [alice.dn, bob.dn]
        for refused in (parent, other):
            with pytest.raises(AuthorizationError):
                jobs.job_status(rt, bob, refused)
        with pytest.raises(AuthorizationError):
            jobs.cancel_job(rt, bob, node)
        acl.remove_acl_item(rt, alice, node, bob.dn)
        with pytest.raises(AuthorizationError):
            jobs.job_status(rt, bob, node)

    def test_a_nodes_limit_counts_its_own_items_only(self, rt: Runtime, alice: Principal,
                                                     compound: tuple[str, str, str]) -> None:
        parent, node, _ = compound
        rt.settings = dataclasses.replace(rt.settings, limits=dataclasses.replace(rt.settings.limits,
                                                                                  max_acl_items=2))
        acl.add_acl_items(rt, alice, parent, ["/CN=one", "/CN=two"])
        acl.add_acl_items(rt, alice, node, ["/CN=three", "/CN=four"])
        assert acl.get_acl_items(rt, alice, node) == [alice.dn, "/CN=three", "/CN=four", "/CN=one", "/CN=two"]
        for job_id in (parent, node):
            with pytest.raises(OperationNotAllowedError, match="maximum number of ACL items"):
                acl.add_acl_items(rt, alice, job_id, ["/CN=five"])

    def test_a_node_lists_the_items_of_its_compound_job(self, rt: Runtime, alice: Principal, bob: Principal,
                                                        compound: tuple[str, str, str]) -> None:
        parent, node, _ = compound
        acl.add_acl_items(rt, alice, node, ["/atlas"])
        acl.add_acl_items(rt, alice, parent, [bob.dn])
        assert acl.get_acl_items(rt, alice, parent) == [alice.dn, bob.dn]
        assert acl.get_acl_items(rt, alice, node) == [alice.dn, "/atlas", bob.dn]
        assert jobs.job_status(rt, bob, node).job_id == node
        with pytest.raises(acl.AclError, match="the entry already exists"):
            acl.add_acl_items(rt, alice, node, [bob.dn])
        with pytest.raises(AuthorizationError, match=f"granted by the compound job {parent}"):
            acl.remove_acl_item(rt, alice, node, bob.dn)
        acl.remove_acl_item(rt, alice, parent, bob.dn)
        assert acl.get_acl_items(rt, alice, node) == [alice.dn, "/atlas"]
        with pytest.raises(AuthorizationError):
            jobs.job_status(rt, bob, node)
