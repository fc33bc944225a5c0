"""The CLI's list-match, perusal, info, templates, two-phase submission and compound jobs,
run as a user runs them against the real service and worker (both databases)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import Pki, appendix_jdl
from tests.integration.service import Deployment
from tests.support import cli_status, run_cli, wait_for, wait_for_cli_status

pytestmark = pytest.mark.integration

MATCH = """[ Executable = "/bin/true"; VirtualOrganisation = "dteam";
  Rank = other.GlueCEStateFreeCPUs;
  Requirements = other.GlueCEStateStatus == "Production"; ]"""

PERUSAL = (
    '[ Executable = "/bin/sh";\n'
    '  Arguments = "-c \'for i in 1 2 3; do echo line $i >> out.txt; sleep 1; done; '
    'for t in $(seq 600); do [ -e RELEASE ] && break; sleep 0.5; done; echo line 4 >> out.txt\'";\n'
    '  OutputSandbox = {"out.txt"};\n'
    '  PerusalFileEnable = true; PerusalTimeInterval = 1; ]'
)


def perusal_jdl(release: Path) -> str:
    """A job that writes lines 1-3 of out.txt, one a second, then waits (up to 300 s) until the
    test creates ``release`` before writing line 4 and ending: it is surely running meanwhile."""
    return PERUSAL.replace("RELEASE", str(release))


DAG = """[ Type = "dag";
VirtualOrganisation = "dteam";
requirements = true;
Rank = 1;
nodes = [
  nodeA = [ Description = [ Executable = "/bin/sh"; Arguments = "a.sh"; InputSandbox = {"scripts/a.sh"};
                            StdOutput = "jobA.out"; OutputSandbox = {"jobA.out"}; ]; ];
  nodeB = [ Description = [ Executable = "/bin/sh"; Arguments = "-c 'echo B'";
                            StdOutput = "jobB.out"; OutputSandbox = {"jobB.out"}; ]; ];
  dependencies = { { nodeA, nodeB } };
];
]"""

#: Appendix A.4 with <VO> = dteam and <REQ> = true.
PARAMETRIC = appendix_jdl("parametric.jdl")


@pytest.fixture(scope="module")
def delegated(deployment: Deployment) -> str:
    rc, _, err = run_cli(deployment, "delegate-proxy", "-d", "extra")
    assert rc == 0, err
    return "extra"


def submit_json(deployment: Deployment, *args: str) -> dict:
    rc, out, err = run_cli(deployment, "submit", "--json", *args)
    assert rc == 0, err
    return json.loads(out)


class TestListMatch:
    def test_ranked_list_without_the_atlas_only_ce(self, deployment: Deployment, delegated: str,
                                                   tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text(MATCH)
        rc, out, err = run_cli(deployment, "list-match", "-d", delegated, "--rank", str(tmp_path / "m.jdl"))
        assert rc == 0, err
        assert "COMPUTING ELEMENT IDs LIST" in out
        assert " The following CE(s) matching your job requirements have been found:" in out
        ces = [line.split()[1:] for line in out.splitlines() if line.startswith(" - ")]
        assert ces == [["ce2.example.org:8443/cream-pbs-long", "40"], ["ce1.example.org:8443/cream-pbs-short", "12"]]
        assert "*Rank*" in out

    def test_json_and_automatic_delegation(self, deployment: Deployment, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text(MATCH)
        rc, out, err = run_cli(deployment, "list-match", "-a", "--json", "--rank", str(tmp_path / "m.jdl"))
        assert rc == 0, err
        assert json.loads(out) == {
            "result": "success",
            "ceid": ["ce2.example.org:8443/cream-pbs-long", "ce1.example.org:8443/cream-pbs-short"],
            "rank": [40, 12],
        }

    def test_nothing_matches(self, deployment: Deployment, delegated: str, tmp_path: Path) -> None:
        (tmp_path / "m.jdl").write_text(
            '[ Executable = "/bin/true"; Requirements = other.GlueCEStateFreeCPUs > 1000; ]'
        )
        rc, out, err = run_cli(deployment, "list-match", "-d", delegated, str(tmp_path / "m.jdl"))
        assert rc == 0, err
        assert "No Computing Element matching your job requirements has been found!" in out


class TestInfo:
    def test_delegated_proxy(self, deployment: Deployment, delegated: str, pki: Pki) -> None:
        rc, out, err = run_cli(deployment, "info", "-d", delegated)
        assert rc == 0, err
        assert f"with delegationID {delegated}: " in out
        lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines()
                 if ":" in line and not line.startswith("http")}
        assert lines["Subject"].startswith(pki.users["alice"].dn)
        assert lines["Type"] == "proxy"
        assert re.fullmatch(r"\d\d hours( \d\d min)?( \d\d sec)?", lines["Timeleft"])
        rc, out, err = run_cli(deployment, "info", "--json", "-d", delegated)
        data = json.loads(out)["proxy"]
        assert data["identity"] and 0 < data["time_left"] <= 12 * 3600

    def test_job_proxy_and_jdl(self, deployment: Deployment, delegated: str, tmp_path: Path, pki: Pki) -> None:
        (tmp_path / "j.jdl").write_text('[ Executable = "/bin/echo"; Arguments = "info test"; ]')
        job_id = submit_json(deployment, "-d", delegated, str(tmp_path / "j.jdl"))["jobid"]
        ids = tmp_path / "ids"
        ids.write_text(f"###Submitted Job Ids###\n{job_id}\n")
        rc, out, err = run_cli(deployment, "info", "-p", "-i", str(ids))
        assert rc == 0, err
        assert f"for the job {job_id} :" in out and "Subject     : " + pki.users["alice"].dn in out
        rc, out, err = run_cli(deployment, "info", "--jdl-original", job_id)
        assert rc == 0, err
        assert "The original JDL" in out and 'Arguments = "info test";' in out
        rc, out, err = run_cli(deployment, "info", "--json", "--jdl", job_id)
        jdl = json.loads(out)["jdl"]
        assert job_id in jdl and "InputSandboxPath" in jdl

    def test_unknown_delegation_is_one_line(self, deployment: Deployment) -> None:
        rc, _, err = run_cli(deployment, "info", "-d", "never-delegated")
        assert rc == 1 and err.startswith("Error - ") and len(err.splitlines()) == 1


class TestTemplates:
    def test_every_template(self, deployment: Deployment) -> None:
        rc, out, err = run_cli(deployment, "templates", "job", "--executable", "/bin/ls", "--arguments", "-l")
        assert rc == 0, err
        assert '"/bin/ls"' in out and '"-l"' in out
        rc, out, err = run_cli(deployment, "templates", "collection", "-n", "3")
        assert rc == 0, err
        assert "Node_2" in out and "collection" in out
        rc, out, err = run_cli(deployment, "templates", "dag", "--dependency", "first", "second", "--json")
        assert rc == 0, err
        jdl = json.loads(out)["jdl"]
        assert "first" in jdl and "second" in jdl and "dag" in jdl
        rc, out, err = run_cli(deployment, "templates", "parametric", "--attribute", "Arguments",
                               "--param", "20", "--start", "100", "--step", "10")
        assert rc == 0, err
        assert "_PARAM_" in out and "ParameterStart" in out
        rc, out, err = run_cli(deployment, "templates", "parametric", "--attribute", "Arguments",
                               "--value", "one", "--value", "two")
        assert rc == 0, err
        assert '"one"' in out and '"two"' in out


def test_register_only_then_perusal_then_start(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    release = deployment.scratch(tmp_path) / "release"
    (tmp_path / "p.jdl").write_text(perusal_jdl(release))
    ids = tmp_path / "ids"
    rc, out, err = run_cli(deployment, "submit", "-d", delegated, "--register-only", "-o", str(ids),
                           str(tmp_path / "p.jdl"))
    assert rc == 0, err
    job_id = ids.read_text().splitlines()[1]
    assert "The job has been successfully registered to the WMProxy" in out
    assert (
        f"To complete the operation start the job by issuing a submission with the option:\n --start {job_id}\n"
    ) in out
    assert cli_status(deployment, job_id)["Current Status"] == "Submitted"
    rc, out, err = run_cli(deployment, "perusal", "--set", "-f", "out.txt", "-i", str(ids))
    assert rc == 0, err
    rc, out, err = run_cli(deployment, "submit", "--start", job_id)
    assert rc == 0, err
    assert "The job has been successfully started to the WMProxy" in out
    wait_for_cli_status(deployment, job_id, ("Running",))
    peek = tmp_path / "peek"

    def peruse() -> str:
        rc, out, err = run_cli(deployment, "perusal", "--get", "-f", "out.txt", "--dir", str(peek), job_id)
        assert rc == 0, err
        return out

    # Each --get fetches (and prints) only the chunks merged since the previous one.
    shown: list[str] = []

    def perused_so_far() -> str:
        shown.append(peruse())
        chunks = sorted(peek.glob("out.txt-*"), key=lambda p: [int(n) for n in p.name.split("-")[1:]])
        return "".join(c.read_text() for c in chunks)

    content = wait_for(perused_so_far, lambda text: "line 2" in text, what="perusal chunks holding line 2",
                       interval=1.0)
    assert content.startswith("line 1\nline 2\n")
    assert "line 1\n" in "".join(shown)
    assert any(p.name.startswith("out.txt-") for p in peek.iterdir())
    release.touch()
    wait_for_cli_status(deployment, job_id, ("Done", "Aborted"))
    rc, out, err = run_cli(deployment, "perusal", "--get", "--all", "--nodisplay", "--json", "-f", "out.txt",
                           "--dir", str(tmp_path / "all"), job_id)
    assert rc == 0, err
    chunks = json.loads(out)["chunks"]
    assert chunks and "line 1" in "".join(Path(c).read_text() for c in chunks)
    rc, out, err = run_cli(deployment, "perusal", "--unset", job_id)
    assert rc == 0, err


def test_perusal_limit_is_a_one_line_fault(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "p.jdl").write_text(perusal_jdl(tmp_path / "release"))
    job_id = submit_json(deployment, "-d", delegated, "--register-only", str(tmp_path / "p.jdl"))["jobid"]
    rc, _, err = run_cli(deployment, "perusal", "--set", *(f"-f{n}" for n in "abcd"), job_id)
    assert rc == 1
    assert err == ("Error - OperationNotAllowedFault: The Operation is not allowed: "
                   "The maximum number of perusal files is reached\n")


def test_collection_from_a_directory(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    (nodes / "run.sh").write_text('#!/bin/sh\necho "node $1"\ncat data.txt\n')
    (nodes / "data.txt").write_text("shared data\n")
    for name in ("first", "second"):
        (nodes / f"{name}.jdl").write_text(
            f'Executable = "/bin/sh"; Arguments = "run.sh {name}"; StdOutput = "{name}.out";\n'
            f'InputSandbox = {{"run.sh", "data.txt"}}; OutputSandbox = {{"{name}.out"}};\n'
        )
    (nodes / "notes.txt").write_text("not a JDL")
    ids = tmp_path / "ids"
    data = submit_json(deployment, "-d", delegated, "-o", str(ids), "--collection", str(nodes))
    parent, children = data["parent"], data["children"]
    assert set(children) == {"Node_first_jdl", "Node_second_jdl"}
    assert ids.read_text().splitlines()[1:] == [parent]
    entry = wait_for_cli_status(deployment, parent, ("Done", "Aborted", "Cancelled"))
    assert entry["Current Status"] == "Done (Success)", entry
    rc, out, err = run_cli(deployment, "status", parent)
    assert f"- Nodes information for: {parent}" in out
    assert all(f"    Status info for the Job : {cid}" in out for cid in children.values())
    rc, out, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "out"), "-i", str(ids))
    assert rc == 0, err
    assert "\tNode Name:\tNode_first_jdl\n" in out
    assert (tmp_path / "out" / "Node_first_jdl" / "first.out").read_text() == "node first\nshared data\n"
    assert (tmp_path / "out" / "Node_second_jdl" / "second.out").read_text() == "node second\nshared data\n"
    assert cli_status(deployment, parent)["Current Status"] == "Cleared"


def test_dag_with_a_node_input_file(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.sh").write_text("echo A from script\n")
    (tmp_path / "dag.jdl").write_text(DAG)
    data = submit_json(deployment, "-d", delegated, str(tmp_path / "dag.jdl"))
    assert set(data["children"]) == {"nodeA", "nodeB"}
    entry = wait_for_cli_status(deployment, data["parent"], ("Done", "Aborted", "Cancelled"))
    assert entry["Current Status"] == "Done (Success)", entry
    rc, out, err = run_cli(deployment, "status", "--json", data["parent"])
    statuses = json.loads(out)["jobs"][0]
    assert {n["jobid"] for n in statuses["nodes"]} == set(data["children"].values())
    rc, out, err = run_cli(deployment, "output", "--nosubdir", "--json", "--dir", str(tmp_path / "out"), data["parent"])
    assert rc == 0, err
    assert set(json.loads(out)["nodes"]) == {"nodeA", "nodeB"}
    assert (tmp_path / "out" / "nodeA" / "jobA.out").read_text() == "A from script\n"
    assert (tmp_path / "out" / "nodeB" / "jobB.out").read_text() == "B\n"


def test_appendix_a4_parametric_job(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "test.sh").write_text('#!/bin/sh\necho "param file $1"\ncat\n')
    for value in (100, 110, 120):
        (tmp_path / f"input{value}.txt").write_text(f"data {value}\n")
    (tmp_path / "example_parametric.jdl").write_text(PARAMETRIC)
    data = submit_json(deployment, "-d", delegated, str(tmp_path / "example_parametric.jdl"))
    assert set(data["children"]) == {"Node_100", "Node_110", "Node_120"}
    entry = wait_for_cli_status(deployment, data["parent"], ("Done", "Aborted", "Cancelled"))
    assert entry["Current Status"] == "Done (Success)", entry
    rc, out, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "out"), data["parent"])
    assert rc == 0, err
    for value in (100, 110, 120):
        node_dir = tmp_path / "out" / f"Node_{value}"
        assert (node_dir / f"myoutput{value}.txt").read_text() == f"param file input{value}.txt\ndata {value}\n"
        assert f"\tDir:      \t{node_dir}\n" in out


def test_failed_start_is_marked_in_the_jobid_file(deployment: Deployment, delegated: str, tmp_path: Path) -> None:
    (tmp_path / "j.jdl").write_text('[ Executable = "/bin/true"; ]')
    ids = tmp_path / "ids"
    job_id = submit_json(deployment, "-d", delegated, "--register-only", str(tmp_path / "j.jdl"))["jobid"]
    rc, _, err = run_cli(deployment, "submit", "--start", job_id)
    assert rc == 0, err
    rc, _, err = run_cli(deployment, "submit", "--start", job_id, "-o", str(ids))
    assert rc == 1 and "Error - " in err
    assert not ids.exists()


APPENDIX_A2 = appendix_jdl("collection.jdl")
APPENDIX_A3 = appendix_jdl("dag.jdl")


@pytest.mark.parametrize(
    ("jdl", "nodes", "outputs"),
    [
        (APPENDIX_A2, {"Node_0", "Node_1"}, {"Node_0": "job1.out", "Node_1": "job2.out"}),
        (APPENDIX_A3, {"nodeA", "nodeB"}, {"nodeA": "jobA.out"}),
    ],
    ids=["A.2-collection", "A.3-dag"],
)
def test_appendix_a_compound_jobs_verbatim(
    deployment: Deployment, delegated: str, tmp_path: Path, jdl: str, nodes: set[str], outputs: dict[str, str]
) -> None:
    import socket

    (tmp_path / "job.jdl").write_text(jdl)
    data = submit_json(deployment, "-d", delegated, str(tmp_path / "job.jdl"))
    assert set(data["children"]) == nodes
    entry = wait_for_cli_status(deployment, data["parent"], ("Done", "Aborted", "Cancelled"))
    assert entry["Current Status"] == "Done (Success)", entry
    rc, _, err = run_cli(deployment, "output", "--nosubdir", "--dir", str(tmp_path / "out"), data["parent"])
    assert rc == 0, err
    for node, name in outputs.items():
        assert (tmp_path / "out" / node / name).read_text().strip() in (socket.getfqdn(), socket.gethostname())
