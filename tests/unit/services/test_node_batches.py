"""A compound job's node rows are sent in batches (issue 14, worker memory): every node, its
JDL, its parent and the DAG's dependencies are stored whatever the batch size."""

from __future__ import annotations

import pytest

from tests.unit.services.conftest import DELEGATION
from wmproxy.domain import Principal
from wmproxy.services import submission
from wmproxy.services.runtime import Runtime

DAG = """[
  Type = "dag";
  Nodes = [
    a = [ Description = [ Executable = "/bin/echo"; Arguments = "a"; ]; ];
    b = [ Description = [ Executable = "/bin/echo"; Arguments = "b"; ]; ];
    c = [ Description = [ Executable = "/bin/echo"; Arguments = "c"; ]; ];
    d = [ Description = [ Executable = "/bin/echo"; Arguments = "d"; ]; ];
    e = [ Description = [ Executable = "/bin/echo"; Arguments = "e"; ]; ];
  ];
  Dependencies = { { a, b }, { b, e }, { d, e } };
]"""


@pytest.mark.parametrize("batch", [1, 2, 500])
def test_every_node_is_stored_in_batches(rt: Runtime, alice: Principal, delegated: str, batch: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission, "NODE_BATCH", batch)
    registered = submission.register_job(rt, alice, DAG, DELEGATION)
    assert [child.name for child in registered.children] == ["a", "b", "c", "d", "e"]
    with rt.uow() as uow:
        nodes = uow.jobs.children(registered.job_id)
        assert [n.node_name for n in nodes] == ["a", "b", "c", "d", "e"]
        assert {n.id for n in nodes} == {child.job_id for child in registered.children}
        for node in nodes:
            assert f'"{node.node_name}"' in node.jdl_original
            assert node.jdl_registered and node.owner_dn == alice.dn
        by_name = {n.node_name: n.id for n in nodes}
        assert uow.jobs.nodes_with_dependencies(registered.job_id) == {by_name["b"], by_name["e"]}
        assert set(uow.jobs.dependencies(by_name["e"])) == {by_name["b"], by_name["d"]}
