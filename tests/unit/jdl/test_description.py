"""wmproxy.jdl.description: registration checks and JobDescription."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy import domain
from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError, WMProxyError
from wmproxy.jdl import JobDescription, describe, parse_jdl

DATA = Path(__file__).parent / "data"


def _describe(text: str) -> JobDescription:
    return describe(parse_jdl(text))


class TestDescribeAccepted:
    def test_appendix_a1_describes_a_normal_job(self) -> None:
        description = _describe((DATA / "test_job.jdl").read_text())

        assert description == JobDescription(
            type="job",
            job_type="normal",
            executable="/bin/hostname",
            arguments="",
            std_output="std.out",
            std_error="std.err",
            output_sandbox=("std.out", "std.err"),
            virtual_organisation="dteam",
        )

    def test_appendix_a5_perusal_job_has_lowercase_inputsandbox_read(self) -> None:
        description = _describe((DATA / "perusal.jdl").read_text())

        assert description.executable == "sleeper.sh"
        assert description.arguments == "sleeper.sh"
        assert description.input_sandbox == ("sleeper.sh",)
        assert description.output_sandbox == ("job.err", "job.out", "out.txt")

    def test_type_and_job_type_are_lowercased(self) -> None:
        description = _describe('[ Type = "JOB"; JobType = {"MPICH"}; Executable = "a" ]')

        assert (description.type, description.job_type) == ("job", "mpich")

    def test_single_strings_are_one_element_lists(self) -> None:
        description = _describe(
            'Executable = "a"; InputSandbox = "a"; OutputSandbox = "o"; Environment = "X=1";'
        )

        assert description.input_sandbox == ("a",)
        assert description.output_sandbox == ("o",)
        assert description.environment == ("X=1",)

    def test_empty_myproxy_server_is_none(self) -> None:
        assert _describe('Executable = "a"; MyProxyServer = "";').myproxy_server is None

    def test_interactive_job_with_listener_attributes_is_accepted(self) -> None:
        description = _describe(
            'Executable = "a"; JobType = "Interactive"; ListenerHost = "ui.example.org";'
            ' ListenerPort = 4567; ListenerPipeName = "/tmp/pipe";'
        )

        assert description.job_type == "interactive"

    def test_integer_retry_counts_are_accepted(self) -> None:
        _describe('Executable = "a"; RetryCount = 3; ShallowRetryCount = -1;')  # -1: shallow retries off

    def test_description_is_frozen(self) -> None:
        description = _describe('Executable = "a";')

        with pytest.raises(AttributeError):
            description.executable = "b"  # type: ignore[misc]


REFUSALS = [
    pytest.param('Type = "bogus"; Executable = "a";', InvalidJdlAttributeError,
                 "Invalid Job Type: bogus", id="unknown-type"),
    pytest.param('Type = "dag"; Executable = "a";', JdlError,
                 "Mandatory attribute nodes not set", id="dag-without-nodes"),
    pytest.param('Type = "Collection"; Executable = "a";', JdlError,
                 "Mandatory attribute Nodes not set", id="collection-without-nodes"),
    pytest.param('JobType = "Parametric"; Executable = "a";', JdlError,
                 "Mandatory attribute Parameters not set", id="parametric-without-parameters"),
    pytest.param('JobType = {"mpich", "interactive"}; Executable = "a";', InvalidJdlAttributeError,
                 "Composite Job Type not yet supported", id="composite-job-type"),
    pytest.param('JobType = "Partitionable"; Executable = "a";', JdlError,
                 "Partitionable Jobs are Deprecated", id="partitionable"),
    pytest.param('JobType = "checkpointable"; Executable = "a";', JdlError,
                 "Checkpointable Jobs are Deprecated", id="checkpointable"),
    pytest.param('JobType = "fancy"; Executable = "a";', JdlError,
                 "Attribute JobType has an unknown value: fancy", id="unknown-job-type"),
    pytest.param('JobType = "interactive"; Executable = "a"; ListenerPort = 1; ListenerPipeName = "p";',
                 JdlError, "Mandatory attribute ListenerHost not set", id="interactive-no-host"),
    pytest.param('JobType = "interactive"; Executable = "a"; ListenerHost = "h"; ListenerPipeName = "p";',
                 JdlError, "Mandatory attribute ListenerPort not set", id="interactive-no-port"),
    pytest.param('JobType = "interactive"; Executable = "a"; ListenerHost = "h"; ListenerPort = 1;',
                 JdlError, "Mandatory attribute ListenerPipeName not set", id="interactive-no-pipe"),
    pytest.param('StdOutput = "std.out";', JdlError,
                 "Mandatory attribute Executable not set", id="no-executable"),
    pytest.param('Executable = "";', JdlError,
                 "Attribute Executable must not be empty", id="empty-executable"),
    pytest.param("Executable = foo;", JdlError,
                 "Attribute Executable must be a string, not foo", id="executable-reference"),
    pytest.param('Executable = "a" + "b";', JdlError,
                 'Attribute Executable must be a string, not "a" + "b"', id="executable-expression"),
    pytest.param("Executable = 42;", JdlError,
                 "Attribute Executable must be a string, not 42", id="executable-integer"),
    pytest.param('Executable = "a"; Arguments = 3;', JdlError,
                 "Attribute Arguments must be a string, not 3", id="arguments-integer"),
    pytest.param('Executable = "a"; StdOutput = out;', JdlError,
                 "Attribute StdOutput must be a string, not out", id="stdoutput-reference"),
    pytest.param('Executable = "a"; InputSandbox = 7;', JdlError,
                 "Attribute InputSandbox must be a string or a list of strings, not 7",
                 id="inputsandbox-integer"),
    pytest.param('Executable = "a"; InputSandbox = {"a", b};', JdlError,
                 'Attribute InputSandbox must be a string or a list of strings, not { "a", b }',
                 id="inputsandbox-reference-item"),
    pytest.param('Executable = "a"; InputSandbox = {"a", ""};', JdlError,
                 "Attribute InputSandbox contains an empty file name", id="inputsandbox-empty-name"),
    pytest.param('Executable = "a"; OutputSandbox = {1};', JdlError,
                 "Attribute OutputSandbox must be a string or a list of strings, not { 1 }",
                 id="outputsandbox-integer-item"),
    pytest.param('Executable = "a"; Environment = {"NOEQUALS"};', JdlError,
                 "Attribute Environment: entry 'NOEQUALS' is not of the form NAME=value",
                 id="environment-no-equals"),
    pytest.param('Executable = "a"; Environment = {"=value"};', JdlError,
                 "Attribute Environment: entry '=value' is not of the form NAME=value",
                 id="environment-no-name"),
    pytest.param('Executable = "a"; VirtualOrganisation = dteam;', JdlError,
                 "Attribute VirtualOrganisation must be a string, not dteam", id="vo-reference"),
    *(pytest.param(f'Executable = "a"; CpuNumber = {value};', JdlError,
                   f"Attribute CpuNumber must be an integer from 1 to 2147483647, not {shown}", id=f"cpunumber-{case}")
      for case, value, shown in [
          ("beyond-32-bits", "2147483648", "2147483648"),
          ("zero", "0", "0"),
          ("negative", "-1", "-1"),
          ("real", "2.0", "2.000000000000000E+00"),
          ("string", '"4"', '"4"'),
      ]),
    *(pytest.param(f'Executable = "a"; {attribute} = {value};', JdlError,
                   f"Attribute {attribute} must be an integer, not {shown}", id=f"{attribute.lower()}-{case}")
      for attribute in ("RetryCount", "ShallowRetryCount")
      for case, value, shown in [
          ("undefined", "undefined", "undefined"),  # classad2 gives it as the int 2
          ("error", "error", "error"),  # the int 1
          ("string", '"3"', '"3"'),
          ("real", "2.5", "2.500000000000000E+00"),
          ("boolean", "true", "true"),
          ("expression", "1 + 2", "1 + 2"),
      ]),
    pytest.param('Executable = "a"; edg_jobid = "https://lb:9000/x";', JdlError,
                 "jobid attribute already exists", id="existing-jobid"),
    pytest.param('Executable = "a"; EDG_JOBID = "https://lb:9000/x";', JdlError,
                 "jobid attribute already exists", id="existing-jobid-other-case"),
]


class TestDescribeRefused:
    @pytest.mark.parametrize(("text", "error", "message"), REFUSALS)
    def test_refusal_has_exact_class_and_message(
        self, text: str, error: type[WMProxyError], message: str
    ) -> None:
        with pytest.raises(WMProxyError) as info:
            _describe(text)

        assert type(info.value) is error
        assert str(info.value) == message

    def test_type_is_checked_before_executable(self) -> None:
        with pytest.raises(InvalidJdlAttributeError, match=r"^Invalid Job Type: 3$"):
            _describe("Type = 3;")

    def test_unsupported_errors_use_the_invalid_argument_code(self) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            _describe('Type = "dag"; nodes = [ dependencies = {} ];')

        assert info.value.code == 1225

    def test_invalid_type_uses_code_1220(self) -> None:
        with pytest.raises(InvalidJdlAttributeError) as info:
            _describe('Type = "bogus";')

        assert info.value.code == 1220


class TestWorkDirNames:
    """Issue 8 point 4: Std* and OutputSandbox names stay inside the job's work directory."""

    @pytest.mark.parametrize("attribute", ["StdInput", "StdOutput", "StdError"])
    @pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "..", "sub/.."])
    def test_std_streams_outside_the_work_dir_are_refused_naming_the_attribute(
        self, attribute: str, name: str
    ) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            _describe(f'[ Executable = "a"; {attribute} = "{name}"; ]')
        assert attribute in info.value.message
        assert name in info.value.message

    @pytest.mark.parametrize("name", ["../out.txt", "/tmp/out.txt", "d/../../out.txt"])
    def test_output_sandbox_names_outside_the_work_dir_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            _describe(f'[ Executable = "a"; OutputSandbox = {{ "ok.txt", "{name}" }}; ]')
        assert "OutputSandbox" in info.value.message

    @pytest.mark.parametrize("name", ["user.proxy", "./user.proxy", ".wmproxy/job.marshal", ".wmproxy/*",
                                      ".wmproxy", "./.wmproxy//wrapper.log"])
    def test_what_the_service_keeps_in_the_work_dir_is_refused(self, name: str) -> None:
        """The job's proxy copy (the owner's credential) and ``.wmproxy/`` (the spec with the
        inspection secret): an OutputSandbox naming them gave them to every reader the job's ACL
        admits (red-team M1); a standard output or error so named writes over them."""
        for attribute in ("OutputSandbox", "StdOutput", "StdError"):
            value = f'{{ "ok.txt", "{name}" }}' if attribute == "OutputSandbox" else f'"{name}"'
            with pytest.raises(InvalidArgumentError) as info:
                _describe(f'[ Executable = "a"; {attribute} = {value}; ]')
            assert info.value.message.startswith(f"Attribute {attribute}: {name!r} is reserved: it is the ")

    @pytest.mark.parametrize(("entry", "name"), [
        ("user.proxy", "user.proxy"), ("/home/alice/user.proxy", "user.proxy"),
        ("file:///tmp/user.proxy", "user.proxy"),
        ("sub/.wmproxy", ".wmproxy"), ("a/.wmproxy/", ".wmproxy"),
    ])
    def test_an_input_sandbox_file_staged_as_what_the_service_keeps_is_refused(self, entry: str, name: str) -> None:
        """An ``InputSandbox`` entry is staged into the work dir under its file name: as
        ``user.proxy`` the job's proxy was written over it (the payload read the owner's credential,
        its file was lost, nothing said so); as ``.wmproxy`` the staging failed ("File exists")."""
        with pytest.raises(InvalidArgumentError) as info:
            _describe(f'[ Executable = "a"; InputSandbox = {{ "ok.txt", "{entry}" }}; ]')
        assert info.value.message.startswith(
            f"Attribute InputSandbox: {entry!r} is reserved: it would be staged into the job's work directory "
            f"as {name!r}, which is the ")

    @pytest.mark.parametrize(("entry", "name"), [("user.proxy/.", "."), ("x/.wmproxy/.", "."), ("dir/..", ".."),
                                                 ("file:///tmp/a/./", ".")])
    def test_an_input_sandbox_entry_whose_file_name_is_a_dot_is_refused(self, entry: str, name: str) -> None:
        """Accepted before, then failed at the staging ("has not been uploaded")."""
        with pytest.raises(InvalidArgumentError) as info:
            _describe(f'[ Executable = "a"; InputSandbox = {{ "{entry}" }}; ]')
        assert info.value.message == f"Attribute InputSandbox: {entry!r} names no file: its file name would be {name!r}"

    @pytest.mark.parametrize("entry", ["user.proxy.txt", "User.proxy", ".wmproxy/x", "user.proxy/x", "x.wmproxy"])
    def test_input_sandbox_files_like_the_reserved_ones_are_accepted(self, entry: str) -> None:
        assert _describe(f'[ Executable = "a"; InputSandbox = {{ "{entry}" }}; ]').input_sandbox == (entry,)

    def test_the_reserved_names_are_the_execution_layers(self) -> None:
        from wmproxy.execution import identity, jobwrapper, zygote

        assert domain.JOB_STATE_DIR == jobwrapper.STATE_DIR == zygote.STATE_DIR
        assert domain.JOB_PROXY_NAME == identity.PROXY_NAME

    @pytest.mark.parametrize("name", ["user.proxy.txt", "sub/user.proxy", "User.proxy", "x.wmproxy/a", "*", "user.*"])
    def test_names_like_the_reserved_ones_are_accepted(self, name: str) -> None:
        assert _describe(f'[ Executable = "a"; OutputSandbox = {{ "{name}" }}; ]').output_sandbox == (name,)

    def test_relative_names_below_the_work_dir_are_accepted(self) -> None:
        description = _describe(
            '[ Executable = "a"; StdInput = "data..txt"; InputSandbox = { "in/data..txt" }; StdOutput = "out/std.out";'
            ' StdError = "std.err"; OutputSandbox = { "out/std.out", "x..y" }; ]'
        )  # (a StdInput is a file of the input sandbox, which lands flat in the work dir)
        assert description.std_input == "data..txt"
        assert description.output_sandbox == ("out/std.out", "x..y")

    def test_a_node_outside_its_work_dir_is_refused_with_the_node_name(self) -> None:
        jdl = '[ Type = "collection"; Nodes = { [ Executable = "a"; StdOutput = "../x"; NodeName = "n1"; ] }; ]'
        with pytest.raises(InvalidArgumentError) as info:
            _describe(jdl)
        assert info.value.message.startswith("Node n1: Attribute StdOutput")

    def test_an_inherited_bad_name_is_refused_too(self) -> None:
        jdl = '[ Type = "collection"; OutputSandbox = { "/abs" }; Nodes = { [ Executable = "a"; ] }; ]'
        with pytest.raises(InvalidArgumentError, match="OutputSandbox"):
            _describe(jdl)
