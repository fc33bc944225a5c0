"""Registration's semantic checks of the JDL library (``JobAd::checkSemantic``, ``JdlAttributeList.cpp``)
through jobRegister/jobSubmit: a JDL the job could only fail with, or whose attribute would be silently
ignored, is refused with a typed fault naming the attribute; a refused collection or DAG leaves nothing
behind. Before, each of these JDLs registered, and its job failed after its claim or ran other than
written:

* a remote ``InputSandboxBaseURI`` with relative entries: the entries were mapped to the job's own
  input area, and the job Aborted ("input sandbox file data.txt has not been uploaded");
* a relative ``StdInput`` outside ``InputSandbox``: every attempt failed before its payload
  ("hit job shallow retry count (2)", the file never named);
* ``PerusalFileEnable = "true"`` (perusal off), ``PerusalTimeInterval = 2000.0`` (1000 s);
* two ``OutputSandbox`` entries with one file name (one was not collected), fewer or more
  ``OutputSandboxDestURI`` entries than files (missing ones defaulted, extra ones ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from tests.support import SoapApp
from wmproxy.domain import Principal
from wmproxy.errors import InvalidArgumentError, JdlError, WMProxyError
from wmproxy.jdl import parse_jdl
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job, submit_job
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
JOB = 'Executable = "/bin/cat"; StdOutput = "out"; '

#: id → (the job's attributes, error class, text of the message)
REFUSED = {
    "isb-base-remote": ('InputSandboxBaseURI = "gsiftp://se.example.org/data"; InputSandbox = {"data.txt"};',
                        InvalidArgumentError,
                        ("Attribute InputSandboxBaseURI: 'gsiftp://se.example.org/data' is not allowed with relative "
                         "InputSandbox entries ('data.txt' names a file below it): this service does not fetch "
                         "remote input sandbox files")),
    "isb-base-https-subdir": ('InputSandboxBaseURI = "https://other.example.org/d/"; InputSandbox = {"sub/x.txt"};',
                              InvalidArgumentError, "Attribute InputSandboxBaseURI: 'https://other.example.org/d/'"),
    "stdin-not-in-isb": ('StdInput = "in.txt";', JdlError,
                         "Attribute StdInput: 'in.txt' must be inside InputSandbox"),
    "stdin-other-isb-file": ('StdInput = "in.txt"; InputSandbox = {"data/other.txt"};', JdlError,
                             "Attribute StdInput: 'in.txt' must be inside InputSandbox"),
    "stdin-in-a-subdir": ('StdInput = "data/in.txt"; InputSandbox = {"data/in.txt"};', JdlError,
                          "Attribute StdInput: 'data/in.txt' must be inside InputSandbox"),
    "perusal-enable-string": ('PerusalFileEnable = "true";', JdlError,
                              'Attribute PerusalFileEnable must be a boolean (true or false), not "true"'),
    "perusal-enable-integer": ("PerusalFileEnable = 1;", JdlError,
                               "Attribute PerusalFileEnable must be a boolean (true or false), not 1"),
    "allow-zipped-string": ('AllowZippedISB = "false";', JdlError,
                            'Attribute AllowZippedISB must be a boolean (true or false), not "false"'),
    "perusal-interval-string": ('PerusalTimeInterval = "2000";', JdlError,
                                'Attribute PerusalTimeInterval must be an integer, not "2000"'),
    "perusal-interval-real": ("PerusalTimeInterval = 2000.0;", JdlError,
                              "Attribute PerusalTimeInterval must be an integer, not 2.000000000000000E+03"),
    "perusal-interval-negative": ("PerusalTimeInterval = -5;", JdlError,
                                  "Attribute PerusalTimeInterval must be a number of seconds from 0, not -5"),
    "osb-same-name": ('OutputSandbox = {"a/res.txt", "b/res.txt"};', JdlError,
                      "Attribute OutputSandbox: entries 'a/res.txt' and 'b/res.txt' have the same file name 'res.txt'"),
    "osb-twice": ('OutputSandbox = {"out", "e", "out"};', JdlError,
                  "Attribute OutputSandbox: entries 'out' and 'out' have the same file name 'out'"),
    "osb-dest-missing": ('OutputSandbox = {"out", "e"}; OutputSandboxDestURI = {"x"};', JdlError,
                         "OutputSandbox and OutputSandboxDestURI cardinalities are different (2 and 1 entries)"),
    "osb-dest-extra": ('OutputSandbox = {"out"}; OutputSandboxDestURI = {"x", "y"};', JdlError,
                       "OutputSandbox and OutputSandboxDestURI cardinalities are different (1 and 2 entries)"),
    "osb-dest-without-osb": ('OutputSandboxDestURI = {"x"};', JdlError,
                             "OutputSandbox and OutputSandboxDestURI cardinalities are different (0 and 1 entries)"),
    "osb-dest-wildcards": ('OutputSandbox = {"*.out"}; OutputSandboxDestURI = {"x"};', JdlError,
                           "Attribute OutputSandboxDestURI cannot be used with wildcards in OutputSandbox"),
    "osb-dest-same-name": ('OutputSandbox = {"out", "e"}; OutputSandboxDestURI = {"x", "x"};', JdlError,
                           "Attribute OutputSandboxDestURI: OutputSandbox entries 'out' and 'e' would both be stored"),
}

#: Shapes of the same attributes that register.
ACCEPTED = {
    "isb-base-remote-absolute-entries": ('InputSandboxBaseURI = "gsiftp://se.example.org/data"; '
                                         'InputSandbox = {"/home/u/data.txt", "file:///home/u/b.txt"};'),
    "isb-base-file": 'InputSandboxBaseURI = "file:///home/u"; InputSandbox = {"data.txt"};',
    "stdin-in-isb": 'StdInput = "in.txt"; InputSandbox = {"data/in.txt"};',
    "stdin-file-uri": 'StdInput = "in.txt"; InputSandbox = {"file:///home/u/in.txt"};',
    "perusal-typed": "PerusalFileEnable = true; PerusalTimeInterval = 2000; AllowZippedISB = false;",
    "perusal-zero": "PerusalFileEnable = false; PerusalTimeInterval = 0;",
    "osb-distinct": 'OutputSandbox = {"a/res.txt", "b/other.txt", "*.log"};',
    "osb-dest-one-each": 'OutputSandbox = {"a/res.txt", "b/res2.txt"}; OutputSandboxDestURI = {"r1", "r2"};',
    "osb-wildcards-base": 'OutputSandbox = {"*.out"};',
}


def _jobs(rt: Runtime, alice: Principal) -> list[str]:
    with rt.uow() as uow:
        return [job.id for job in uow.jobs.owned_by(alice.dn)]


def _areas(rt: Runtime) -> list[Path]:
    root = Path(rt.settings.sandbox.root) / rt.settings.sandbox.dir_name
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


def _shapes(attributes: str) -> dict[str, str]:
    """The attributes in a simple job, a collection node and a DAG node (each compound job with a
    second, plain node registered first)."""
    plain = '[ Executable = "/bin/true"; ]'
    return {
        "simple": f"[ {JOB}{attributes} ]",
        "collection": f'[ Type = "collection"; Nodes = {{ {plain}, [ {JOB}{attributes} ] }}; ]',
        "dag": (f'[ Type = "dag"; nodes = [ a = [ description = {plain} ]; '
                f"b = [ description = [ {JOB}{attributes} ] ]; dependencies = {{ {{ a, b }} }} ]; ]"),
    }


class TestRefused:
    @pytest.mark.parametrize("shape", ["simple", "collection", "dag"])
    @pytest.mark.parametrize("case", list(REFUSED))
    def test_the_typed_refusal_names_the_attribute_and_leaves_nothing(
            self, rt: Runtime, alice: Principal, delegated: str, case: str, shape: str) -> None:
        attributes, error, message = REFUSED[case]
        jdl = _shapes(attributes)[shape]
        for operation in (register_job, submit_job):
            with pytest.raises(WMProxyError) as info:
                operation(rt, alice, jdl, delegated)
            assert type(info.value) is error
            assert message in info.value.message
            if shape != "simple" and error is JdlError:
                assert info.value.message.startswith("Node ")  # (the DAG-level checks name no node)
        assert _jobs(rt, alice) == []
        assert _areas(rt) == []

    @pytest.mark.parametrize("case", ["isb-base-remote", "stdin-not-in-isb", "perusal-enable-string",
                                      "perusal-interval-real", "osb-same-name", "osb-dest-missing"])
    @pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
    def test_on_the_wire_an_invalid_argument_fault_with_its_fields(
            self, soap: SoapApp, alice: Principal, delegated: str, operation: str, case: str) -> None:
        attributes, error, message = REFUSED[case]
        reply = soap.call(WMPROXY, operation, alice, jdl=_shapes(attributes)["simple"], delegationId=delegated)

        assert reply.status.startswith("500"), reply.status
        fault = reply.element
        assert fault.tag == f"{{{SOAP_ENV}}}Fault", reply.body
        detail = reply.fault_detail
        assert etree.QName(detail) == etree.QName(WMPROXY, "InvalidArgumentFault"), reply.body
        assert [child.tag for child in detail] == ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]
        assert detail.findtext("methodName") == operation
        assert TIMESTAMP.match(detail.findtext("Timestamp") or "")
        assert detail.findtext("ErrorCode") == str(error.code)
        assert message in (detail.findtext("Description") or "")
        assert _jobs(soap.rt, alice) == []

    def test_a_dag_level_remote_base_uri_with_node_entries_is_refused(self, rt: Runtime, alice: Principal,
                                                                       delegated: str) -> None:
        """The nodes' files are uploaded into the DAG's input area: the DAG level lists them all."""
        jdl = ('[ Type = "dag"; InputSandboxBaseURI = "gsiftp://se.example.org/data";'
               ' nodes = [ a = [ description = [ Executable = "/bin/true"; InputSandbox = {"data.txt"}; ] ] ]; ]')
        with pytest.raises(InvalidArgumentError, match=r"^Attribute InputSandboxBaseURI: 'gsiftp://se\."):
            register_job(rt, alice, jdl, delegated)
        assert _jobs(rt, alice) == []
        assert _areas(rt) == []

    @pytest.mark.parametrize(("attributes", "message"), [
        ('AllowZippedISB = "true";', 'Attribute AllowZippedISB must be a boolean (true or false), not "true"'),
        ('OutputSandbox = {"o"}; OutputSandboxDestURI = {"x", "y"};',
         "OutputSandbox and OutputSandboxDestURI cardinalities are different (1 and 2 entries)"),
    ], ids=["allow-zipped-string", "osb-dest-extra"])
    @pytest.mark.parametrize("kind", ["dag", "collection"])
    def test_the_compound_jobs_own_attributes_are_checked_too(self, rt: Runtime, alice: Principal, delegated: str,
                                                              kind: str, attributes: str, message: str) -> None:
        nodes = ('nodes = [ a = [ description = [ Executable = "/bin/true"; ] ] ];' if kind == "dag"
                 else 'Nodes = { [ Executable = "/bin/true"; ] };')
        with pytest.raises(JdlError) as info:
            register_job(rt, alice, f'[ Type = "{kind}"; {attributes} {nodes} ]', delegated)
        assert info.value.message == message
        assert _jobs(rt, alice) == []
        assert _areas(rt) == []


class TestAccepted:
    @pytest.mark.parametrize("shape", ["simple", "collection", "dag"])
    @pytest.mark.parametrize("case", list(ACCEPTED))
    def test_registers(self, rt: Runtime, alice: Principal, delegated: str, case: str, shape: str) -> None:
        job = register_job(rt, alice, _shapes(ACCEPTED[case])[shape], delegated)
        assert job.job_id in _jobs(rt, alice)

    def test_a_parametric_std_input_need_not_be_in_the_input_sandbox(self, rt: Runtime, alice: Principal,
                                                                      delegated: str) -> None:
        """The JDL library skipped the check for parametric jobs (their ``StdInput`` holds
        ``_PARAM_``); getIntParametricJobTemplate gives ``StdInput = "_PARAM_"`` with no sandbox."""
        jdl = ('[ JobType = "Parametric"; Executable = "/bin/cat"; StdInput = "_PARAM_"; Arguments = "_PARAM_";'
               " Parameters = 2; ParameterStart = 0; ParameterStep = 1; ]")
        job = register_job(rt, alice, jdl, delegated)
        assert len(job.children) == 2

    def test_a_parametric_job_with_its_inputs_in_the_sandbox_registers(self, rt: Runtime, alice: Principal,
                                                                        delegated: str) -> None:
        jdl = ('[ JobType = "Parametric"; Executable = "/bin/cat"; StdInput = "in_PARAM_.txt";'
               ' InputSandbox = {"in_PARAM_.txt"}; StdOutput = "out_PARAM_"; OutputSandbox = {"out_PARAM_"};'
               ' OutputSandboxDestURI = {"res_PARAM_"}; Parameters = {"a", "b"}; ]')
        job = register_job(rt, alice, jdl, delegated)
        with rt.uow() as uow:
            row = uow.jobs.get(job.children[1].job_id)
            assert row is not None
            registered = parse_jdl(row.jdl_registered)
        assert registered["StdInput"] == "inb.txt"
        assert registered["OutputSandboxDestURI"][0].endswith("/output/resb")
