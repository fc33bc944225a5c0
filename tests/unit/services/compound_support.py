"""Helpers of the compound-job cancel tests (tests/unit/services/test_compound.py and
tests/store/test_compound_cancel.py): the JDLs, a long chain's JDL, node ids and statuses, and
an input area filled as an upload fills it."""

from __future__ import annotations

from wmproxy.domain import Principal
from wmproxy.sandbox.storage import AreaTally
from wmproxy.services import jobs, sandboxes
from wmproxy.services.runtime import Runtime

CANCELLED = "Cancelled (Cancelled by user)"

#: ``first`` → ``second`` → ``third``: the node first in the nodes' order is the others' dependency.
DAG = """[ Type = "dag";
nodes = [
  first = [ Description = [ Executable = "/bin/true"; ]; ];
  second = [ Description = [ Executable = "/bin/true"; ]; ];
  third = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { first, second }, { second, third } };
];
]"""

#: The same chain with the nodes' order reversed (``c`` → ``b`` → ``a``).
REVERSED_DAG = """[ Type = "dag";
nodes = [
  a = [ Description = [ Executable = "/bin/true"; ]; ];
  b = [ Description = [ Executable = "/bin/true"; ]; ];
  c = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { c, b }, { b, a } };
];
]"""

COLLECTION = """[ Type = "collection";
Nodes = { [ Executable = "/bin/echo"; Arguments = "one"; ],
          [ Executable = "/bin/echo"; Arguments = "two"; ] }; ]"""

#: Nodes in a chain: past Python's recursion limit (1000), where the recursive walk failed (about 1,200).
CHAIN = 1500


def chain_dag(n: int) -> str:
    nodes = "".join(f' n{i:05d} = [ description = [ Executable = "/bin/true"; ]; ];' for i in range(n))
    deps = ", ".join(f"{{ n{i:05d}, n{i + 1:05d} }}" for i in range(n - 1))
    return f'[ Type = "dag"; nodes = [{nodes} dependencies = {{ {deps} }}; ]; ]'


def node_ids(rt: Runtime, alice: Principal, job_id: str) -> dict[str, str]:
    """``{node name: node id}`` of the compound job."""
    with rt.uow() as uow:
        return {n.node_name or "": n.id for n in uow.jobs.children(job_id)}


def statuses(rt: Runtime, alice: Principal, job_id: str) -> tuple[str, list[str]]:
    st = jobs.job_status(rt, alice, job_id)
    return st.status, [c.status for c in st.children]


def pending(rt: Runtime, job_id: str) -> list[str]:
    with rt.uow() as uow:
        return [r.command for r in uow.queue.pending_for(job_id)]


def fill(rt: Runtime, job_id: str, size: int) -> None:
    """``size`` bytes in the job's input area, counted as the sandbox edge counts an upload."""
    path = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input") / "data.bin"
    sandboxes.change_area_bytes(rt, rt.storage.job_rel_dir(job_id), lambda: AreaTally(size, 1),
                                lambda: path.write_bytes(b"x" * size))
