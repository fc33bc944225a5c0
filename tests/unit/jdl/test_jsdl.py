"""wmproxy.jdl.jsdl: JSDL 1.0 job definitions mapped onto JDL (§12)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import classad2
import pytest
from lxml import etree

from wmproxy.errors import InvalidArgumentError
from wmproxy.execution.jobwrapper import SHELL
from wmproxy.jdl import describe
from wmproxy.jdl.jsdl import jsdl_to_jdl, parse_jsdl
from wmproxy.jdl.parse import parse_jdl
from wmproxy.jdl.registered import registered_ad
from wmproxy.sandbox.storage import FilesystemSandboxStorage

DATA = Path(__file__).parent / "data" / "jsdl"
JSDL = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
POSIX = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"


def _convert(name: str) -> classad2.ClassAd:
    ad = parse_jdl(jsdl_to_jdl(parse_jsdl((DATA / name).read_bytes())))
    describe(ad)
    return ad


def _requirements(ad: classad2.ClassAd) -> str:
    return " ".join(str(ad.lookup("Requirements")).split())


def _minimal(extra_application: str = "", extra_description: str = "") -> bytes:
    return f"""<a:JobDefinition xmlns:a="{JSDL}" xmlns:b="{POSIX}"><a:JobDescription>
      <a:Application><b:POSIXApplication><b:Executable>/bin/true</b:Executable>
      {extra_application}</b:POSIXApplication></a:Application>{extra_description}
      </a:JobDescription></a:JobDefinition>""".encode()


class TestFullMapping:
    def test_application_identification_staging_and_resources(self) -> None:
        ad = _convert("full.xml")
        assert ad["JobName"] == "hostname-test"
        assert ad["Executable"] == "/bin/sh"
        assert ad["Arguments"] == "run.sh 'two words' 'it'\"'\"'s \"quoted\"'"
        assert (ad["StdInput"], ad["StdOutput"], ad["StdError"]) == ("in.txt", "std.out", "std.err")
        assert ad["Environment"] == ["MODE=fast", "EMPTY="]
        assert ad["InputSandbox"] == ["run.sh", "in.txt"]  # (a StdInput comes with the input sandbox)
        assert ad["OutputSandbox"] == ["std.out"]
        assert "OutputSandboxDestURI" not in ad
        assert ad["CpuNumber"] == 4
        assert _requirements(ad) == (
            "other.GlueCEPolicyMaxWallClockTime * 60 >= 7200 && "
            'other.GlueCEInfoHostName == "ce1.example.org"'
        )

    def test_arguments_split_back_into_the_original_words(self) -> None:
        import shlex

        assert shlex.split(_convert("full.xml")["Arguments"]) == [
            "run.sh", "two words", "it's \"quoted\""]

    def test_hpc_profile_application_is_read_like_posix(self) -> None:
        ad = _convert("hpcp.xml")
        assert (ad["Executable"], ad["Arguments"], ad["StdOutput"]) == ("/bin/date", "-u", "date.out")
        assert ad["Requirements"] is True

    def test_application_name_version_and_description_are_ignored(self) -> None:
        """Application_Type allows them (descriptive); they were refused as unsupported."""
        text = f"""<a:JobDefinition xmlns:a="{JSDL}" xmlns:b="{POSIX}"><a:JobDescription><a:Application>
          <a:ApplicationName>echo</a:ApplicationName><a:ApplicationVersion>8.32</a:ApplicationVersion>
          <a:Description>prints</a:Description>
          <b:POSIXApplication><b:Executable>/bin/echo</b:Executable></b:POSIXApplication>
        </a:Application></a:JobDescription></a:JobDefinition>"""
        ad = parse_jdl(jsdl_to_jdl(parse_jsdl(text)))
        assert dict(ad) == {"Executable": "/bin/echo", "Requirements": True}

    def test_prefixes_do_not_matter(self) -> None:
        default_ns = _convert("staging.xml")  # default namespaces, no prefix at all
        assert default_ns["Executable"] == "analyse.sh"

    def test_job_description_and_its_holder_are_accepted(self) -> None:
        root = parse_jsdl((DATA / "full.xml").read_bytes())
        description = root[0]
        holder = etree.Element("jsdl")
        holder.append(parse_jsdl((DATA / "full.xml").read_bytes()))
        expected = jsdl_to_jdl(root)
        assert jsdl_to_jdl(description) == expected
        assert jsdl_to_jdl(holder) == expected


class TestStaging:
    def test_local_and_remote_inputs_and_output_destinations(self) -> None:
        ad = _convert("staging.xml")
        assert ad["InputSandbox"] == [
            "analyse.sh", "gsiftp://se.example.org:2811/data/run1/data.root"]
        assert ad["OutputSandbox"] == ["std.out", "histo.root"]
        assert ad["OutputSandboxDestURI"] == ["", "gsiftp://se.example.org:2811/results/histo.root"]

    def test_targets_without_uri_get_the_server_default_at_registration(self) -> None:
        area = FilesystemSandboxStorage("/var", base_url="https://wms.example.org:7443").job_area(
            "https://lb:9000/abcdefghijklmnopqrstuv")
        base = area.base_uri
        converted = _convert("staging.xml")
        with pytest.raises(InvalidArgumentError, match="InputSandbox: 'gsiftp://se"):
            registered_ad(converted, area, job_id=area.job_id, certificate_subject="/CN=u", proxy_vo="dteam",
                          proxy_fqan=None, myproxy_server=None)  # this service fetches nothing remote
        converted["InputSandbox"] = ["analyse.sh"]
        with pytest.raises(InvalidArgumentError, match="OutputSandboxDestURI: 'gsiftp://se"):
            registered_ad(converted, area, job_id=area.job_id, certificate_subject="/CN=u", proxy_vo="dteam",
                          proxy_fqan=None, myproxy_server=None)  # nor sends anything
        converted["OutputSandboxDestURI"] = ["", "histo.root"]
        out = registered_ad(converted, area, job_id=area.job_id,
                            certificate_subject="/CN=u", proxy_vo="dteam", proxy_fqan=None,
                            myproxy_server=None)
        assert out["OutputSandboxDestURI"] == [f"{base}/output/std.out", f"{base}/output/histo.root"]

    @pytest.mark.parametrize(("staging", "message"), [
        ("<a:FileName>x.txt</a:FileName><a:CreationFlag>overwrite</a:CreationFlag>",
         "neither Source nor Target"),
        ("<a:FileName>dir/x.txt</a:FileName><a:CreationFlag>overwrite</a:CreationFlag><a:Source/>",
         "plain file name"),
        (("<a:FileName>x.txt</a:FileName><a:CreationFlag>overwrite</a:CreationFlag>"
          "<a:Source><a:URI>gsiftp://se/y.txt</a:URI></a:Source>"), "differs from FileName"),
        (("<a:FileName>x.txt</a:FileName><a:CreationFlag>overwrite</a:CreationFlag>"
          "<a:Target><a:URI>results/x.txt</a:URI></a:Target>"), "not an absolute URI"),
        (("<a:FileName>x.txt</a:FileName><a:CreationFlag>overwrite</a:CreationFlag>"
          "<a:DeleteOnTermination>false</a:DeleteOnTermination><a:Target/>"), "DeleteOnTermination"),
    ])
    def test_stagings_that_cannot_be_expressed_are_refused(self, staging: str, message: str) -> None:
        text = _minimal(extra_description=f"<a:DataStaging>{staging}</a:DataStaging>")
        with pytest.raises(InvalidArgumentError, match=message):
            jsdl_to_jdl(parse_jsdl(text))


class TestResources:
    def test_resources_become_glue_requirements(self) -> None:
        ad = _convert("resources.xml")
        assert ad["CpuNumber"] == 2
        assert _requirements(ad) == " && ".join([
            "other.GlueCEPolicyMaxCPUTime * 60 >= 3600",
            ('(other.GlueCEInfoHostName == "ce1.example.org" || '
             'other.GlueCEInfoHostName == "ce2.example.org")'),
            'other.GlueHostOperatingSystemRelease == "5.5"',
            'other.GlueHostArchitecturePlatformType == "x86_64"',
            "other.GlueHostProcessorClockSpeed * 1000000 > 2000000000",
            "other.GlueCEPolicyMaxCPUTime * 60 >= 86400",
            "(other.GlueHostArchitectureSMPSize == 4 || other.GlueHostArchitectureSMPSize == 8)",
            ("(other.GlueHostMainMemoryRAMSize * 1048576 >= 1073741824 && "
             "other.GlueHostMainMemoryRAMSize * 1048576 <= 4294967296)"),
            "other.GlueHostMainMemoryVirtualSize * 1048576 <= 8589934592",
        ])

    def test_requirements_evaluate_against_a_glue_ce(self) -> None:
        ad = _convert("resources.xml")
        ce = classad2.ClassAd({
            "GlueCEPolicyMaxCPUTime": 2880, "GlueCEInfoHostName": "ce2.example.org",
            "GlueHostOperatingSystemRelease": "5.5", "GlueHostArchitecturePlatformType": "x86_64",
            "GlueHostProcessorClockSpeed": 2400, "GlueHostArchitectureSMPSize": 8,
            "GlueHostMainMemoryRAMSize": 2048, "GlueHostMainMemoryVirtualSize": 4096,
        })
        job = classad2.ClassAd({"Requirements": ad.lookup("Requirements")})
        assert ce.matches(job)
        ce["GlueHostMainMemoryRAMSize"] = 512
        assert not ce.matches(job)

    def test_exact_with_epsilon_is_a_range_and_x86_is_i686(self) -> None:
        resources = """<a:Resources>
          <a:CPUArchitecture><a:CPUArchitectureName>x86_32</a:CPUArchitectureName></a:CPUArchitecture>
          <a:IndividualCPUCount><a:Exact epsilon="1">4</a:Exact></a:IndividualCPUCount>
        </a:Resources>"""
        ad = parse_jdl(jsdl_to_jdl(parse_jsdl(_minimal(extra_description=resources))))
        assert _requirements(ad) == (
            'other.GlueHostArchitecturePlatformType == "i686" && '
            "(other.GlueHostArchitectureSMPSize >= 3 && other.GlueHostArchitectureSMPSize <= 5)"
        )

    def test_exclusive_bounds_of_a_range_are_honoured(self) -> None:
        """Range 2..8 with both bounds exclusive was registered ``>= 2 && <= 8``."""
        resources = """<a:Resources><a:IndividualCPUCount>
          <a:Range><a:LowerBound exclusiveBound="true">2</a:LowerBound>
            <a:UpperBound exclusiveBound="true">8</a:UpperBound></a:Range>
          <a:Range><a:LowerBound exclusiveBound="false">16</a:LowerBound>
            <a:UpperBound exclusiveBound="1">32</a:UpperBound></a:Range>
        </a:IndividualCPUCount></a:Resources>"""
        ad = parse_jdl(jsdl_to_jdl(parse_jsdl(_minimal(extra_description=resources))))
        assert _requirements(ad) == (
            "((other.GlueHostArchitectureSMPSize > 2 && other.GlueHostArchitectureSMPSize < 8) || "
            "(other.GlueHostArchitectureSMPSize >= 16 && other.GlueHostArchitectureSMPSize < 32))"
        )

    def test_bounds_beyond_64_bits_are_written_as_reals(self) -> None:
        """An integer literal beyond 64 bits reads as 0: "at least 1e20 bytes" was ``>= 0``."""
        resources = """<a:Resources>
          <a:IndividualPhysicalMemory><a:LowerBoundedRange>1e20</a:LowerBoundedRange></a:IndividualPhysicalMemory>
          <a:IndividualCPUTime><a:UpperBoundedRange>9223372036854775807</a:UpperBoundedRange></a:IndividualCPUTime>
        </a:Resources>"""
        text = _minimal("<b:WallTimeLimit>1e300</b:WallTimeLimit>", resources)
        ad = parse_jdl(jsdl_to_jdl(parse_jsdl(text)))
        assert _requirements(ad) == (
            "other.GlueCEPolicyMaxWallClockTime * 60 >= 1.000000000000000E+300 && "
            "other.GlueHostMainMemoryRAMSize * 1048576 >= 1.000000000000000E+20 && "
            "other.GlueCEPolicyMaxCPUTime * 60 <= 9.223372036854776E+18"
        )
        ce = classad2.ClassAd({"GlueCEPolicyMaxWallClockTime": 2880, "GlueHostMainMemoryRAMSize": 2048,
                               "GlueCEPolicyMaxCPUTime": 2880})
        assert not ce.matches(classad2.ClassAd({"Requirements": ad.lookup("Requirements")}))

    @pytest.mark.parametrize(("resource", "message"), [
        ("<a:TotalCPUCount><a:Exact>2.5</a:Exact></a:TotalCPUCount>", "2.5 is not an integer from 1 to 2147483647"),
        ("<a:TotalCPUCount><a:Exact>1e19</a:Exact></a:TotalCPUCount>",
         "jsdl:Resources/jsdl:TotalCPUCount: 1e\\+19 is not an integer from 1 to 2147483647"),
        ("<a:TotalCPUCount><a:LowerBoundedRange>2147483648</a:LowerBoundedRange></a:TotalCPUCount>",
         "2147483648 is not an integer from 1 to 2147483647"),
        ("<a:TotalCPUCount><a:UpperBoundedRange>4</a:UpperBoundedRange></a:TotalCPUCount>",
         "jsdl:Resources/jsdl:TotalCPUCount"),
        ("<a:IndividualPhysicalMemory><a:Exact>lots</a:Exact></a:IndividualPhysicalMemory>",
         "'lots' is not a number"),
        (("<a:OperatingSystem><a:OperatingSystemType><a:OperatingSystemName>WINNT"
          "</a:OperatingSystemName></a:OperatingSystemType></a:OperatingSystem>"), "WINNT"),
        (("<a:CPUArchitecture><a:CPUArchitectureName>other</a:CPUArchitectureName>"
          "</a:CPUArchitecture>"), "CPUArchitectureName other"),
        ("<a:IndividualDiskSpace><a:Exact>1</a:Exact></a:IndividualDiskSpace>",
         "jsdl:IndividualDiskSpace"),
        ('<a:IndividualPhysicalMemory><a:Exact epsilon="-5">100</a:Exact></a:IndividualPhysicalMemory>',
         "jsdl:Exact/@epsilon must not be negative"),
        ("<a:IndividualCPUCount><a:Exact>3_600</a:Exact></a:IndividualCPUCount>", "'3_600' is not a number"),
        ("<a:IndividualCPUCount><a:Exact>INF</a:Exact></a:IndividualCPUCount>", "'INF' is not a number"),
        ("<a:IndividualCPUCount><a:Exact>\u0664</a:Exact></a:IndividualCPUCount>", "is not a number"),
    ])
    def test_resources_without_a_mapping_are_refused(self, resource: str, message: str) -> None:
        text = _minimal(extra_description=f"<a:Resources>{resource}</a:Resources>")
        with pytest.raises(InvalidArgumentError, match=message):
            jsdl_to_jdl(parse_jsdl(text))


class TestUnsupported:
    def test_every_unsupported_element_is_named_in_one_message(self) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            jsdl_to_jdl(parse_jsdl((DATA / "unsupported.xml").read_bytes()))
        message = str(info.value)
        assert message.startswith("Invalid Argument: JSDL cannot be converted to JDL: unsupported elements: ")
        for name in [
            "jsdl:JobIdentification/jsdl:JobProject",
            "jsdl-posix:Argument/@filesystemName",
            "jsdl-posix:POSIXApplication/jsdl-posix:WorkingDirectory",
            "jsdl-posix:POSIXApplication/jsdl-posix:MemoryLimit",
            "jsdl-posix:POSIXApplication/jsdl-posix:UserName",
            "jsdl-posix:POSIXApplication/jsdl-posix:GroupName",
            "jsdl:Resources/jsdl:FileSystem",
            "jsdl:Resources/jsdl:ExclusiveExecution",
            "jsdl:Resources/jsdl:TotalPhysicalMemory",
            "jsdl:Resources/{urn:example:extension}Licence",
            "jsdl:DataStaging/jsdl:FilesystemName",
            "jsdl:DataStaging/jsdl:CreationFlag append",
            "{urn:example:extension}Accounting",
        ]:
            assert name in message
        assert "ApplicationName" not in message  # descriptive, allowed by Application_Type

    @pytest.mark.parametrize("element", [
        "<b:WorkingDirectory>/tmp</b:WorkingDirectory>",
        "<b:UserName>root</b:UserName>",
        "<b:GroupName>wheel</b:GroupName>",
        "<b:FileSizeLimit>10</b:FileSizeLimit>",
        "<b:CoreDumpLimit>0</b:CoreDumpLimit>",
        "<b:MemoryLimit>10</b:MemoryLimit>",
        "<b:ProcessCountLimit>10</b:ProcessCountLimit>",
        "<b:VirtualMemoryLimit>10</b:VirtualMemoryLimit>",
        "<b:ThreadCountLimit>10</b:ThreadCountLimit>",
    ])
    def test_each_posix_element_without_a_mapping_is_refused(self, element: str) -> None:
        local = element.split(">")[0].removeprefix("<b:")
        with pytest.raises(InvalidArgumentError, match=f"jsdl-posix:{local}"):
            jsdl_to_jdl(parse_jsdl(_minimal(extra_application=element)))

    @pytest.mark.parametrize(("application", "description", "repeated"), [
        ("<b:Executable>/bin/rm</b:Executable>", "", "jsdl-posix:POSIXApplication/jsdl-posix:Executable"),
        ("<b:Output>a</b:Output><b:Output>b</b:Output>", "", "jsdl-posix:POSIXApplication/jsdl-posix:Output"),
        ("", "<a:JobIdentification><a:JobName>a</a:JobName><a:JobName>b</a:JobName></a:JobIdentification>",
         "jsdl:JobIdentification/jsdl:JobName"),
        ("", "<a:JobIdentification/><a:JobIdentification/>", "jsdl:JobIdentification"),
        ("", ("<a:Application><b:POSIXApplication><b:Executable>/bin/rm</b:Executable></b:POSIXApplication>"
             "</a:Application>"), "jsdl:Application"),
        ("", ("<a:Resources><a:CPUArchitecture><a:CPUArchitectureName>x86_64</a:CPUArchitectureName>"
             "<a:CPUArchitectureName>sparc</a:CPUArchitectureName></a:CPUArchitecture></a:Resources>"),
         "jsdl:CPUArchitecture/jsdl:CPUArchitectureName"),
        ("", ("<a:Resources><a:IndividualCPUCount><a:Range><a:LowerBound>1</a:LowerBound>"
             "<a:LowerBound>2</a:LowerBound><a:UpperBound>4</a:UpperBound></a:Range></a:IndividualCPUCount>"
             "</a:Resources>"), "jsdl:Range/jsdl:LowerBound"),
        ("", ("<a:Resources><a:IndividualCPUCount><a:LowerBoundedRange>1</a:LowerBoundedRange>"
             "<a:LowerBoundedRange>2</a:LowerBoundedRange></a:IndividualCPUCount></a:Resources>"),
         "jsdl:IndividualCPUCount/jsdl:LowerBoundedRange"),
        ("", ("<a:DataStaging><a:FileName>a</a:FileName><a:FileName>b</a:FileName>"
             "<a:CreationFlag>overwrite</a:CreationFlag><a:Target/></a:DataStaging>"),
         "jsdl:DataStaging/jsdl:FileName"),
    ])
    def test_an_element_the_schema_allows_once_is_refused_when_repeated(
            self, application: str, description: str, repeated: str) -> None:
        """The second one used to overwrite the first: two Executables registered the last."""
        with pytest.raises(InvalidArgumentError, match=f"{repeated} is given more than once"):
            jsdl_to_jdl(parse_jsdl(_minimal(application, description)))

    def test_missing_executable_and_application_are_refused(self) -> None:
        no_exe = (f'<JobDefinition xmlns="{JSDL}"><JobDescription><Application>'
                  f'<POSIXApplication xmlns="{POSIX}"/></Application></JobDescription></JobDefinition>')
        with pytest.raises(InvalidArgumentError, match="has no Executable"):
            jsdl_to_jdl(parse_jsdl(no_exe))
        no_app = f'<JobDefinition xmlns="{JSDL}"><JobDescription/></JobDefinition>'
        with pytest.raises(InvalidArgumentError, match="no jsdl:Application"):
            jsdl_to_jdl(parse_jsdl(no_app))

    def test_bad_environment_name_is_refused(self) -> None:
        text = _minimal(extra_application='<b:Environment name="my-var">1</b:Environment>')
        with pytest.raises(InvalidArgumentError, match="'my-var'"):
            jsdl_to_jdl(parse_jsdl(text))

    def test_an_environment_value_is_literal_for_the_shell(self) -> None:
        """A JSDL value is literal; the JDL entry is evaluated by the job wrapper's shell as the
        original's ``eval export <entry>``: the job gets the JSDL's exact text."""
        value = "$HOME `id` 'single' \"double\" back\\slash * ~ $(id)"
        text = _minimal(extra_application=f'<b:Environment name="LITERAL">{value}</b:Environment>')
        (entry,) = parse_jdl(jsdl_to_jdl(parse_jsdl(text)))["Environment"]
        got = subprocess.run(
            [SHELL, "-c", 'command eval "export $1" && printf %s "$LITERAL"', "sh", entry],
            capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
        assert got == value

    def test_element_without_job_description_is_refused(self) -> None:
        with pytest.raises(InvalidArgumentError, match="exactly one jsdl:JobDescription"):
            jsdl_to_jdl(etree.fromstring(b"<JobDefinition><JobDescription/></JobDefinition>"))

    def test_the_reference_prefix_bug_is_gone(self) -> None:
        text = _minimal().replace(b"a:", b"x:").replace(b"xmlns:a=", b"xmlns:x=")
        assert parse_jdl(jsdl_to_jdl(parse_jsdl(text)))["Executable"] == "/bin/true"


class TestParseJsdl:
    def test_doctype_and_entities_are_refused(self) -> None:
        evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b"<x>&e;</x>")
        with pytest.raises(InvalidArgumentError):
            parse_jsdl(evil)

    def test_malformed_xml_is_an_invalid_argument(self) -> None:
        with pytest.raises(InvalidArgumentError, match="not well-formed"):
            parse_jsdl(b"<JobDefinition>")
