"""Collections, DAGs and parametric jobs (Appendix A of wmproxy-behaviour.md) through the real service."""

from __future__ import annotations

from typing import Any

import pytest
import zeep
from lxml import etree

from tests.conftest import Pki, appendix_jdl
from tests.integration.refclient import ReferenceClient, fault_detail, reference_client
from tests.integration.service import Deployment
from tests.support import FINAL_STATES, delegate, outputs, state_word, wait_for, wait_for_final
from wmproxy.domain import job_relative_dir

pytestmark = pytest.mark.integration

COLLECTION = """[ Type = "collection";
Executable = "/bin/hostname";
VirtualOrganisation = "dteam";
requirements = true;
Rank = 1;
Nodes = { [JobType = "normal"; Executable = "/bin/echo"; Arguments = "one";
           StdOutput = "job1.out"; StdError = "job1.err"; OutputSandbox = {"job1.err", "job1.out"}; ],
          [JobType = "normal"; Executable = "/bin/echo"; Arguments = "two";
           StdOutput = "job2.out"; StdError = "job2.err"; OutputSandbox = {"job2.err", "job2.out"}; ] };
]"""

DAG = """[ Type = "dag";
VirtualOrganisation = "dteam";
requirements = true;
Rank = 1;
nodes = [
  nodeA = [ Description = [ Executable = "/bin/sh"; Arguments = "-c 'sleep 1; echo A; date +%s.%N'";
                            StdOutput = "jobA.out"; OutputSandbox = {"jobA.out"}; ]; ];
  nodeB = [ Description = [ Executable = "/bin/sh"; Arguments = "-c 'echo B; date +%s.%N'";
                            StdOutput = "jobB.out"; OutputSandbox = {"jobB.out"}; ]; ];
  dependencies = { { nodeA, nodeB } };
];
]"""

FAILING_DAG = """[ Type = "dag";
nodes = [
  first = [ Description = [ Executable = "/bin/false"; ]; ];
  second = [ Description = [ Executable = "/bin/true"; ]; ];
  third = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { first, second }, { second, third } };
];
]"""

#: Appendix A.4 with <VO> = dteam and <REQ> = true.
PARAMETRIC = appendix_jdl("parametric.jdl")


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "compound")
    return ref


def ended(status: Any) -> bool:
    """Whether a getJobStatus reply and all its node replies are in a final state."""
    return state_word(status.status) in FINAL_STATES and all(
        state_word(c.status) in FINAL_STATES for c in status.childrenJob)


def wait_final(ref: ReferenceClient, job_id: str) -> Any:
    """The getJobStatus reply of ``job_id`` once it and all its nodes are final (tests.support.wait_for)."""
    return wait_for(lambda: ref.wmproxy.getJobStatus(job_id), ended, what=f"{job_id} and its nodes to end")


def test_collection_registers_a_tree_and_runs_every_node(alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobRegister(COLLECTION, "compound")
    assert [c.name for c in job.childrenJob] == ["Node_0", "Node_1"]
    struct = alice.last_reply.find("jobIdStruct")
    assert [c.tag for c in struct] == ["id", "name", "path", "childrenJob", "childrenJob"]
    assert [c.tag for c in struct.find("childrenJob")] == ["id", "name", "path"]
    bulk = alice.wmproxy.getSandboxBulkDestURI(job.id, "")
    assert [entry.id for entry in bulk] == [job.id] + [c.id for c in job.childrenJob]
    alice.wmproxy.jobStart(job.id)
    status = wait_final(alice, job.id)
    assert status.status == "Done (Exit Code 0)"
    assert {c.jobid: c.status for c in status.childrenJob} == {c.id: "Done (Exit Code 0)" for c in job.childrenJob}
    assert outputs(alice, job.childrenJob[0].id)["job1.out"] == b"one\n"
    assert outputs(alice, job.childrenJob[1].id)["job2.out"] == b"two\n"
    with pytest.raises(zeep.exceptions.Fault) as err:
        alice.wmproxy.getOutputFileList(job.id, "")
    assert etree.QName(fault_detail(err.value)).localname == "OperationNotAllowedFault"
    alice.wmproxy.jobPurge(job.id)
    assert alice.wmproxy.getJobStatus(job.childrenJob[0].id).status == "Cleared"


def test_dag_runs_children_after_parents(alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobSubmit(DAG, "compound")
    names = {c.name: c.id for c in job.childrenJob}
    assert set(names) == {"nodeA", "nodeB"}
    status = wait_final(alice, job.id)
    assert status.status == "Done (Exit Code 0)"
    a = outputs(alice, names["nodeA"])["jobA.out"].split()
    b = outputs(alice, names["nodeB"])["jobB.out"].split()
    assert a[0] == b"A" and b[0] == b"B"
    assert float(b[1]) > float(a[1])  # B started after A ended


def test_a_failed_parent_aborts_its_descendants(alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobSubmit(FAILING_DAG, "compound")
    names = {c.name: c.id for c in job.childrenJob}
    status = wait_final(alice, job.id)
    by_id = {c.jobid: c.status for c in status.childrenJob}
    assert by_id[names["first"]] == "Done (Exit Code 1)"
    assert by_id[names["second"]] == "Aborted (dependency first did not end successfully)"
    assert by_id[names["third"]] == "Aborted (dependency second did not end successfully)"
    assert status.status.startswith("Aborted")


def test_parametric_job_with_shared_input_sandbox(alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobRegister(PARAMETRIC, "compound")
    assert [c.name for c in job.childrenJob] == ["Node_100", "Node_110", "Node_120"]
    uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
    script = b"#!/bin/sh\necho \"param file $1\"\ncat \"$1\"\n"
    assert alice.session.put(f"{uri}/test.sh", data=script).ok
    for value in (100, 110, 120):
        assert alice.session.put(f"{uri}/input{value}.txt", data=f"data {value}\n".encode()).ok
    alice.wmproxy.jobStart(job.id)
    status = wait_final(alice, job.id)
    assert status.status == "Done (Exit Code 0)", status
    for child in job.childrenJob:
        value = child.name.split("_")[1]
        files = outputs(alice, child.id)
        assert files[f"myoutput{value}.txt"] == f"param file input{value}.txt\ndata {value}\n".encode()


def test_one_node_can_be_cancelled_alone_and_the_parent_cancels_all(alice: ReferenceClient) -> None:
    slow = COLLECTION.replace('"/bin/echo"', '"/bin/sleep"').replace('"one"', '"30"').replace('"two"', '"30"')
    job = alice.wmproxy.jobSubmit(slow, "compound")
    first, second = (c.id for c in job.childrenJob)
    alice.wmproxy.jobCancel(first)
    wait_for_final(alice, first, states=("Cancelled",))
    assert alice.wmproxy.getJobStatus(first).status == "Cancelled (Cancelled by user)"
    assert alice.wmproxy.getJobStatus(second).status.split(" ")[0] in ("Waiting", "Ready", "Scheduled", "Running")
    alice.wmproxy.jobCancel(job.id)
    status = wait_final(alice, job.id)
    assert {c.status for c in status.childrenJob} == {"Cancelled (Cancelled by user)"}
    assert status.status == "Cancelled (Cancelled by user)"


SHARED_ISB_DAG = """[ Type = "dag";
InputSandbox = { "common.sh" };
nodes = [
  first = [ Description = [ Executable = "/bin/sh"; Arguments = "common.sh first";
                            InputSandbox = { "common.sh" };
                            StdOutput = "first.out"; OutputSandbox = { "first.out" }; ]; ];
  second = [ Description = [ Executable = "/bin/sh"; Arguments = "common.sh second";
                             InputSandbox = { "common.sh" };
                             StdOutput = "second.out"; OutputSandbox = { "second.out" }; ]; ];
  dependencies = { { first, second } };
];
]"""


def test_a_node_registered_jdl_its_output_list_and_the_worker_agree(alice: ReferenceClient) -> None:
    """Issue 7 point 1: the shared ISB is where it is uploaded, a node's outputs in its own area."""
    from wmproxy.jdl import parse_jdl

    job = alice.wmproxy.jobRegister(SHARED_ISB_DAG, "compound")
    parent_input = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
    assert alice.session.put(f"{parent_input}/common.sh", data=b'echo "node $1"\n').ok
    alice.wmproxy.jobStart(job.id)
    status = wait_final(alice, job.id)
    assert status.status == "Done (Exit Code 0)", status

    for child in job.childrenJob:
        registered = parse_jdl(alice.wmproxy.getJDL(child.id, "REGISTERED"))
        own_base = registered["WMPInputSandboxBaseURI"]
        assert own_base.endswith(child.path.removesuffix("/input"))
        assert registered["InputSandbox"] == [f"{parent_input}/common.sh"]
        assert registered["InputSandboxPath"].endswith(job.path)
        dest = registered["OutputSandboxDestURI"]
        assert dest == [f"{own_base}/output/{child.name}.out"]
        listed = [f.name for f in alice.wmproxy.getOutputFileList(child.id, "https")]
        assert listed == dest
        assert alice.session.get(dest[0]).content == f"node {child.name}\n".encode()

    parent = alice.wmproxy.getJDL(job.id, "REGISTERED")
    listing = parse_jdl(parent)["nodes"]
    for child in job.childrenJob:
        assert listing[child.name]["description"]["edg_jobid"] == child.id
        assert listing[child.name]["node_type"] == "edg-jdl"


@pytest.mark.parametrize(("attribute", "value"), [
    ("StdOutput", '"../escape.out"'),
    ("StdError", '"/tmp/escape.err"'),
    ("OutputSandbox", '{ "ok.out", "sub/../../escape.out" }'),
])
def test_names_outside_the_work_dir_are_an_invalid_argument_fault(
    alice: ReferenceClient, attribute: str, value: str
) -> None:
    """Issue 8 point 4, on the wire: refused at registration, the message names the attribute."""
    with pytest.raises(zeep.exceptions.Fault) as err:
        alice.wmproxy.jobRegister(f'[ Executable = "/bin/true"; {attribute} = {value}; ]', "compound")
    detail = fault_detail(err.value)
    assert etree.QName(detail).localname == "InvalidArgumentFault"
    assert attribute in "".join(detail.itertext())


NODE_INPUT_COLLECTION = """[ Type = "collection";
nodes = {
  [ Executable = "/bin/cat"; Arguments = "data.txt"; InputSandbox = { "data.txt" };
    StdOutput = "n0.out"; OutputSandbox = { "n0.out" }; ]
};
]"""


def test_a_file_uploaded_to_a_nodes_bulk_dest_uri_is_the_nodes_input(alice: ReferenceClient) -> None:
    """The gLite UI uploads a compound job's files to the URIs getSandboxBulkDestURI gives for
    each node (wmproxy-behaviour.md §3.8): they name the parent's input/, which the node reads;
    its own area takes no writes (before: 201 there, then the node aborted, its file missing)."""
    job = alice.wmproxy.jobRegister(NODE_INPUT_COLLECTION, "compound")
    node = job.childrenJob[0]
    bulk = {entry.id: list(entry.Item) for entry in alice.wmproxy.getSandboxBulkDestURI(job.id, "https")}
    assert bulk[node.id] == bulk[job.id] == alice.wmproxy.getSandboxDestURI(node.id, "https")
    own = f"{bulk[job.id][0].rsplit('/', 4)[0]}/{job_relative_dir(node.id, 'SandboxDir')}/input"  # never read
    refused = alice.session.put(f"{own}/data.txt", data=b"lost\n")
    assert refused.status_code == 409 and bulk[job.id][0] in refused.text, refused.text
    assert alice.session.put(f"{bulk[node.id][0]}/data.txt", data=b"hello from the node's URI\n").status_code == 201
    alice.wmproxy.jobStart(job.id)
    status = wait_final(alice, job.id)
    assert [c.status for c in status.childrenJob] == ["Done (Exit Code 0)"], status
    assert outputs(alice, node.id)["n0.out"] == b"hello from the node's URI\n"
