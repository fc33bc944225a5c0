"""wmproxy.jdl.registered: the registered JDL, its text form and the ISB to upload."""

from __future__ import annotations

from pathlib import Path

import classad2
import pytest

from wmproxy.domain import child_job_id
from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError
from wmproxy.jdl import (
    describe,
    expand,
    input_sandbox_files,
    is_remote_uri,
    isb_file_names,
    jdl_lines,
    parse_jdl,
    registered_ad,
)
from wmproxy.jdl.description import read_description
from wmproxy.sandbox.storage import FilesystemSandboxStorage

DATA = Path(__file__).parent / "data"
JOB_ID = "https://lb.example.org:9000/AbCdEfGhIjKlMnOpQrStUv"
JOB_REL_DIR = "SandboxDir/Ab/https_3a_2f_2flb.example.org_3a9000_2fAbCdEfGhIjKlMnOpQrStUv"
JOB_DIR = "/var/" + JOB_REL_DIR
ISB_BASE = "https://wms.example.org:7443/" + JOB_REL_DIR
STORAGE = FilesystemSandboxStorage("/var", base_url="https://wms.example.org:7443", work_root="/var/lib/work")
AREA = STORAGE.job_area(JOB_ID)
DN = "/C=XX/O=Grid/CN=Jane Doe"
REMOTE_ISB = "gsiftp://se.example.org/data/calib.db"
LOCAL_ISB = (DATA / "local_isb.jdl").read_text().replace(f', "{REMOTE_ISB}"', "")
"""``local_isb.jdl`` without its remote entry, which registration refuses."""


def _register(text: str, *, proxy_vo: str | None = "dteam",
              proxy_fqan: str | None = "/dteam/Role=NULL/Capability=NULL",
              myproxy_server: str | None = None) -> classad2.ClassAd:
    return registered_ad(
        parse_jdl(text),
        AREA,
        job_id=JOB_ID,
        certificate_subject=DN,
        proxy_vo=proxy_vo,
        proxy_fqan=proxy_fqan,
        myproxy_server=myproxy_server,
    )


class TestRegisteredAd:
    def test_job_with_local_isb_gets_the_server_attributes(self) -> None:
        ad = _register(LOCAL_ISB)

        assert ad["edg_jobid"] == JOB_ID
        assert ad["CertificateSubject"] == DN
        assert ad["VirtualOrganisation"] == "dteam"
        assert ad["VOMS_FQAN"] == "/dteam/Role=NULL/Capability=NULL"
        assert ad["WMPInputSandboxBaseURI"] == ISB_BASE
        assert ad["InputSandboxPath"] == JOB_DIR + "/input"
        assert ad["OutputSandboxPath"] == JOB_DIR + "/output"
        # the proxy copy the job sees is in its work dir (issue 8), not in the sandbox area
        assert ad["X509UserProxy"] == "/var/lib/work/" + JOB_REL_DIR.rsplit("/", 1)[1] + "/user.proxy"

    def test_relative_and_absolute_local_isb_entries_become_uris_below_input(self) -> None:
        ad = _register(LOCAL_ISB)

        assert ad["InputSandbox"] == [
            ISB_BASE + "/input/analyse.sh",
            ISB_BASE + "/input/input.dat",
        ]

    @pytest.mark.parametrize("entry", [
        REMOTE_ISB,
        "https://se.example.org/data/calib.db",
        f"{ISB_BASE}/output/result.txt",  # this service's own sandbox: not fetched either
        "HTTP://host/x",
    ])
    def test_a_remote_input_sandbox_entry_is_refused(self, entry: str) -> None:
        with pytest.raises(InvalidArgumentError, match="does not fetch remote input sandbox files") as exc:
            _register(f'Executable = "a"; InputSandbox = {{"a.sh", "{entry}"}};')
        assert f"InputSandbox: {entry!r}" in str(exc.value)
        assert "from another job's sandbox" in str(exc.value)

    def test_the_data_files_remote_entry_is_refused(self) -> None:
        with pytest.raises(InvalidArgumentError, match=REMOTE_ISB):
            _register((DATA / "local_isb.jdl").read_text())

    def test_output_sandbox_dest_uri_defaults_below_output(self) -> None:
        ad = _register(LOCAL_ISB)

        assert ad["OutputSandbox"] == ["std.out", "std.err", "result.txt"]
        assert ad["OutputSandboxDestURI"] == [
            ISB_BASE + "/output/std.out",
            ISB_BASE + "/output/std.err",
            ISB_BASE + "/output/result.txt",
        ]
        assert "OutputSandboxBaseDestURI" not in ad

    def test_relative_and_own_dest_uris_are_honoured(self) -> None:
        ad = _register(
            'Executable = "a"; OutputSandbox = {"a.out", "b.out", "c.out"};'
            f' OutputSandboxDestURI = {{"renamed.out", "{ISB_BASE}/output/b%231.out", "c.out"}};'
            f' OutputSandboxBaseDestURI = "{ISB_BASE}/output/";'
        )

        assert ad["OutputSandboxDestURI"] == [
            ISB_BASE + "/output/renamed.out",
            ISB_BASE + "/output/b%231.out",
            ISB_BASE + "/output/c.out",
        ]

    @pytest.mark.parametrize(("attributes", "named"), [
        ('OutputSandboxDestURI = {"gsiftp://se.example.org:2811/data/a.out"};',
         "OutputSandboxDestURI: 'gsiftp://se.example.org:2811/data/a.out'"),
        (f'OutputSandboxDestURI = {{"{ISB_BASE}/input/a.out"}};', "OutputSandboxDestURI"),
        (f'OutputSandboxDestURI = {{"{ISB_BASE}/output/sub/a.out"}};', "OutputSandboxDestURI"),
        ('OutputSandboxDestURI = {"file:///tmp/a.out"};', "OutputSandboxDestURI"),
        ('OutputSandboxDestURI = {"sub/b.out"};', "OutputSandboxDestURI: 'sub/b.out'"),
        ('OutputSandboxDestURI = {".."};', "OutputSandboxDestURI"),
        ('OutputSandboxBaseDestURI = "gsiftp://se/base/";', "OutputSandboxBaseDestURI: 'gsiftp://se/base/'"),
    ])
    @pytest.mark.parametrize("files", ['{"a.out"}', '{"*.out"}'])
    def test_a_destination_outside_the_jobs_output_area_is_refused(self, attributes: str, named: str,
                                                                    files: str) -> None:
        if "*" in files and attributes.startswith("OutputSandboxDestURI"):  # refused before it is looked at
            with pytest.raises(JdlError, match=r"^Attribute OutputSandboxDestURI cannot be used with wildcards"):
                _register(f'Executable = "a"; OutputSandbox = {files}; {attributes}')
            return
        with pytest.raises(InvalidArgumentError, match="keeps the output sandbox in the job's own output area") as exc:
            _register(f'Executable = "a"; OutputSandbox = {files}; {attributes}')
        assert named in str(exc.value)

    @pytest.mark.parametrize("given", ["user.proxy", f"{ISB_BASE}/output/user.proxy", ".wmproxy",
                                       f"{ISB_BASE}/output/.wmproxy"])
    def test_a_destination_named_as_a_file_the_output_area_never_serves_is_refused(self, given: str) -> None:
        """The output area never serves ``user.proxy`` (what an old collection may have left there):
        an output stored under that name could never be fetched."""
        with pytest.raises(InvalidArgumentError) as exc:
            _register(f'Executable = "a"; OutputSandbox = {{"a.out"}}; OutputSandboxDestURI = {{"{given}"}};')
        assert str(exc.value).startswith(f"Attribute OutputSandboxDestURI: {given!r} is reserved: it is the ")

    def test_output_names_appended_to_a_uri_are_percent_encoded_as_get_output_file_list_gives_them(self) -> None:
        ad = _register(
            'Executable = "a"; OutputSandbox = {"a b.txt", "res#1.txt", "50%.txt"};'
            ' OutputSandboxDestURI = {"x y#.txt", "res#1.txt", "50%.txt"};'
        )

        assert ad["OutputSandboxDestURI"] == [
            ISB_BASE + "/output/x%20y%23.txt",
            ISB_BASE + "/output/res%231.txt",
            ISB_BASE + "/output/50%25.txt",
        ]

    def test_wildcard_output_sandbox_only_sets_base_dest_uri(self) -> None:
        ad = _register('Executable = "a"; OutputSandbox = {"*.out", "std.err"};')

        assert ad["OutputSandboxBaseDestURI"] == ISB_BASE + "/output"
        assert "OutputSandboxDestURI" not in ad

    def test_wildcard_output_sandbox_keeps_a_user_base_dest_uri(self) -> None:
        ad = _register(
            f'Executable = "a"; OutputSandbox = {{"*.out"}}; OutputSandboxBaseDestURI = "{ISB_BASE}/output/";'
        )

        assert ad["OutputSandboxBaseDestURI"] == ISB_BASE + "/output/"

    def test_empty_myproxy_server_and_job_provenance_are_removed(self) -> None:
        ad = _register(LOCAL_ISB)

        assert "MyProxyServer" not in ad
        assert "JobProvenance" not in ad

    def test_non_empty_myproxy_server_is_kept(self) -> None:
        ad = _register('Executable = "a"; MyProxyServer = "myproxy.example.org";',
                       myproxy_server="myproxy.example.org")

        assert ad["MyProxyServer"] == "myproxy.example.org"

    def test_single_string_environment_becomes_a_list(self) -> None:
        ad = _register(LOCAL_ISB)

        assert ad["Environment"] == ["MODE=fast"]
        assert 'Environment = { "MODE=fast" };' in jdl_lines(ad)

    def test_user_expressions_are_kept(self) -> None:
        ad = _register(LOCAL_ISB)

        assert str(ad.lookup("Requirements")) == str(
            parse_jdl((DATA / "local_isb.jdl").read_text()).lookup("Requirements")
        )
        assert ad["usertags"]["bug"] == "27215"

    def test_input_ad_is_not_modified(self) -> None:
        original = parse_jdl(LOCAL_ISB)
        before = jdl_lines(original)

        registered_ad(original, AREA, job_id=JOB_ID, certificate_subject=DN, proxy_vo="dteam",
                      proxy_fqan=None, myproxy_server=None)

        assert jdl_lines(original) == before
        assert "edg_jobid" not in original

    def test_vo_is_taken_from_the_proxy_when_absent(self) -> None:
        ad = _register('Executable = "a";', proxy_vo="atlas", proxy_fqan="/atlas")

        assert ad["VirtualOrganisation"] == "atlas"

    def test_vo_differing_only_in_case_is_accepted_and_kept_as_written(self) -> None:
        ad = _register('Executable = "a"; VirtualOrganisation = "DTeam";')

        assert ad["VirtualOrganisation"] == "DTeam"

    def test_vo_different_from_proxy_vo_is_refused(self) -> None:
        with pytest.raises(InvalidJdlAttributeError) as info:
            _register('Executable = "a"; VirtualOrganisation = "cms";', proxy_vo="dteam")

        assert str(info.value) == (
            "Jdl VirtualOrganisation attribute (cms) is different from "
            "delegated Proxy Virtual Organisation (dteam)"
        )
        assert info.value.code == 1220

    def test_without_proxy_vo_or_fqan_neither_is_set(self) -> None:
        ad = _register('Executable = "a";', proxy_vo=None, proxy_fqan=None)

        assert "VirtualOrganisation" not in ad
        assert "VOMS_FQAN" not in ad

    def test_a_voms_fqan_the_proxy_does_not_prove_is_removed(self) -> None:
        """Matching and the renewal worker read VOMS_FQAN as the proxy's: a user's own claim of one
        with a proxy without VOMS attributes is not kept; with attributes the proxy's replaces it."""
        ad = _register('Executable = "a"; VOMS_FQAN = "/atlas/Role=production";', proxy_vo=None, proxy_fqan=None)
        assert "VOMS_FQAN" not in ad
        ad = _register('Executable = "a"; VOMS_FQAN = "/atlas/Role=production";')
        assert ad["VOMS_FQAN"] == "/dteam/Role=NULL/Capability=NULL"

    def test_existing_jobid_is_refused(self) -> None:
        with pytest.raises(JdlError, match=r"^jobid attribute already exists$"):
            _register('Executable = "a"; edg_jobid = "x";')

    def test_interactive_job_gets_listener_environment(self) -> None:
        ad = _register(
            'Executable = "a"; JobType = "interactive"; Environment = {"A=1"};'
            ' ListenerHost = "ui.example.org"; ListenerPort = 4567; ListenerPipeName = "/tmp/p";'
        )

        assert ad["Environment"] == [
            "A=1",
            "BYPASS_SHADOW_HOST=ui.example.org",
            "BYPASS_SHADOW_PORT=4567",
            "GRID_CONSOLE_STDIN=/tmp/p.in",
            "GRID_CONSOLE_STDOUT=/tmp/p.out",
        ]


class TestJdlLines:
    @pytest.mark.parametrize("name", ["test_job.jdl", "perusal.jdl", "local_isb.jdl"])
    def test_user_jdl_round_trips_through_parse_jdl(self, name: str) -> None:
        ad = parse_jdl((DATA / name).read_text())

        assert parse_jdl(jdl_lines(ad)) == ad

    def test_registered_jdl_round_trips_through_parse_jdl(self) -> None:
        ad = _register(LOCAL_ISB)

        assert parse_jdl(jdl_lines(ad)) == ad

    def test_escapes_quotes_and_backslashes(self) -> None:
        ad = parse_jdl(r'Executable = "a"; Arguments = "say \"hi\" \\ bye";')

        again = parse_jdl(jdl_lines(ad))

        assert again["Arguments"] == 'say "hi" \\ bye'

    def test_one_attribute_per_line_in_brackets(self) -> None:
        text = jdl_lines(parse_jdl('Executable = "/bin/ls"; OutputSandbox = {"a", "b"}; rank = 1.5;'))

        lines = text.splitlines()
        assert lines[0] == "[" and lines[-1] == "]"
        assert sorted(lines[1:-1]) == [
            '  Executable = "/bin/ls";',
            '  OutputSandbox = { "a", "b" };',
            "  rank = 1.5;",
        ]

    def test_empty_ad(self) -> None:
        assert jdl_lines(parse_jdl("[]")) == "[\n]\n"

    def test_expressions_are_on_one_line_with_their_string_literals_as_written(self) -> None:
        """Whitespace was collapsed inside string literals too: ``"ce  01"`` became ``"ce 01"``."""
        ad = parse_jdl('Requirements = other.GlueCEInfoHostName == "ce  01"\n  && other.X != "a\\t  b";\n'
                       'Records = { [ name = "x   y";\n  n = 1 ],\n 2 };')

        text = jdl_lines(ad)

        assert '  Requirements = other.GlueCEInfoHostName == "ce  01" && other.X != "a\\t  b";' in text
        assert '  Records = { [ n = 1; name = "x   y" ], 2 };' in text.splitlines()
        assert parse_jdl(text) == ad

    def test_a_name_that_is_not_plain_is_written_quoted(self) -> None:
        """Written as it was, ``'x=0; VirtualOrganisation="atlas"; y'`` became three
        attributes when the text was read again, and ``'my attr'`` made it unreadable."""
        ad = classad2.ClassAd()
        ad["Executable"] = "/bin/true"
        for name in ('x=0; VirtualOrganisation="atlas"; y', "my attr", "true", "it's\\\n", "Node_a-b", "9z"):
            ad[name] = 1
        ad["nested"] = classad2.ClassAd('[ \'StdOutput = "x"; z\' = 2 ]')

        text = jdl_lines(ad)

        again = classad2.ClassAd(text)
        assert again == ad
        assert "VirtualOrganisation" not in again and "StdOutput" not in again["nested"]
        assert "  'my attr' = 1;" in text.splitlines()

    def test_the_dag_level_of_node_names_that_are_not_plain_reads_back(self) -> None:
        """A collection node name keeps ``-`` and may start with a digit: its DAG level's
        ``nodes`` listing and dependencies are read back to the same names."""
        job = expand(parse_jdl(
            'Type = "dag"; Executable = "/bin/true"; Nodes = { [ NodeName = "x-y" ], [ NodeName = "9z" ] };'
            ' Dependencies = { { "x-y", "9z" } };'))
        assert job is not None
        nodes = [(node.name, node.ad) for node in job.nodes]
        parent = registered_ad(
            job.parent_ad, AREA, job_id=JOB_ID, certificate_subject=DN, proxy_vo=None, proxy_fqan=None,
            myproxy_server=None, description=job.description, nodes=nodes, dependencies=job.dependencies)

        again = classad2.ClassAd(jdl_lines(parent))

        assert sorted(again["nodes"].keys()) == ["9z", "dependencies", "x-y"]
        assert " ".join(str(again["nodes"].lookup("dependencies")).split()) == "{ { 'x-y', '9z' } }"


class TestInputSandboxFiles:
    def test_local_entries_are_listed_by_basename_remote_ones_skipped(self) -> None:
        description = describe(parse_jdl((DATA / "local_isb.jdl").read_text()))

        assert input_sandbox_files(description) == ["analyse.sh", "input.dat"]

    def test_file_uri_is_local_and_duplicates_are_listed_once(self) -> None:
        description = describe(parse_jdl(
            'Executable = "a"; InputSandbox = {"file:///home/j/a.sh", "a.sh", "https://x/y.sh"};'
        ))

        assert input_sandbox_files(description) == ["a.sh"]

    def test_no_input_sandbox_means_nothing_to_upload(self) -> None:
        assert input_sandbox_files(describe(parse_jdl('Executable = "a";'))) == []

    @pytest.mark.parametrize(
        ("entry", "remote"),
        [
            ("gsiftp://se.example.org/f", True),
            ("https://host:7443/f", True),
            ("HTTP://host/f", True),
            ("lfn://grid/f", True),
            ("file:///home/j/f", False),
            ("/home/j/f", False),
            ("data/f", False),
            ("f", False),
        ],
    )
    def test_is_remote_uri(self, entry: str, remote: bool) -> None:
        assert is_remote_uri(entry) is remote


DAG_JDL = """[ Type = "dag"; InputSandbox = { "common.sh" };
nodes = [
  a = [ description = [ Executable = "common.sh"; InputSandbox = { "common.sh", "data/a.dat" };
                        StdOutput = "a.out"; OutputSandbox = { "a.out" }; ]; ];
  b = [ description = [ Executable = "/bin/true"; OutputSandbox = { "b.out" }; StdOutput = "b.out"; ]; ];
  dependencies = { { a, b } };
]; ]"""


def _register_dag() -> tuple[classad2.ClassAd, dict[str, classad2.ClassAd], dict[str, object]]:
    job = expand(parse_jdl(DAG_JDL))
    assert job is not None
    nodes: dict[str, classad2.ClassAd] = {}
    areas: dict[str, object] = {}
    for node in job.nodes:
        area = STORAGE.job_area(child_job_id(JOB_ID, node.index), JOB_ID)
        areas[node.name] = area
        nodes[node.name] = registered_ad(
            node.ad, area, job_id=area.job_id, certificate_subject=DN, proxy_vo="dteam",
            proxy_fqan=None, myproxy_server=None, description=node.description,
        )
    parent = registered_ad(
        job.parent_ad, AREA, job_id=JOB_ID, certificate_subject=DN, proxy_vo="dteam", proxy_fqan=None,
        myproxy_server=None, description=job.description, nodes=list(nodes.items()),
        dependencies=job.dependencies,
    )
    return parent, nodes, areas


class TestRegisteredCompound:
    """Issue 7 point 1: a node's registered JDL, its area and the worker agree."""

    def test_a_node_reads_its_input_sandbox_from_the_parent_input_area(self) -> None:
        _, nodes, _ = _register_dag()

        assert nodes["a"]["InputSandboxPath"] == str(AREA.input_dir)
        assert nodes["a"]["InputSandbox"] == [AREA.input_uri + "/common.sh", AREA.input_uri + "/a.dat"]
        assert isb_file_names(nodes["a"], AREA.input_uri) == ("common.sh", "a.dat")

    def test_a_node_writes_its_outputs_into_its_own_area(self) -> None:
        _, nodes, areas = _register_dag()

        for name in ("a", "b"):
            area = areas[name]
            assert nodes[name]["OutputSandboxPath"] == str(area.output_dir)  # type: ignore[attr-defined]
            assert nodes[name]["OutputSandboxDestURI"] == [f"{area.output_uri}/{name}.out"]  # type: ignore[attr-defined]
            assert nodes[name]["WMPInputSandboxBaseURI"] == area.base_uri  # type: ignore[attr-defined]
            assert nodes[name]["X509UserProxy"] == str(area.proxy_file)  # type: ignore[attr-defined]
            assert not nodes[name]["OutputSandboxDestURI"][0].startswith(AREA.base_uri + "/")

    def test_the_dag_level_lists_its_registered_nodes_and_dependencies(self) -> None:
        parent, nodes, _ = _register_dag()

        listing = parent["nodes"]
        assert sorted(k for k in listing if k != "dependencies") == ["a", "b"]
        for name, node in nodes.items():
            assert listing[name]["node_type"] == "edg-jdl"
            assert listing[name]["description"]["edg_jobid"] == node["edg_jobid"]
            assert listing[name]["description"]["OutputSandboxDestURI"] == node["OutputSandboxDestURI"]
        assert " ".join(str(listing.lookup("dependencies")).split()) == "{ { a, b } }"
        assert parent["InputSandbox"] == [AREA.input_uri + "/common.sh", AREA.input_uri + "/a.dat"]
        assert parent["Type"] == "dag"

    def test_the_registered_dag_round_trips_through_jdl_lines(self) -> None:
        parent, _, _ = _register_dag()

        text = jdl_lines(parent)

        assert jdl_lines(parse_jdl(text)) == text
        assert '      node_type = "edg-jdl";' in text

    def test_the_myproxy_server_given_is_the_one_registered(self) -> None:
        ad = _register('Executable = "a"; MyProxyServer = "";', myproxy_server="px.example.org:7512")
        assert ad["MyProxyServer"] == "px.example.org:7512"


class TestIsbFileNames:
    def test_only_entries_below_the_input_uri_are_names_to_stage(self) -> None:
        ad = _register(LOCAL_ISB)
        assert isb_file_names(ad, AREA.input_uri) == ("analyse.sh", "input.dat")

    def test_a_changed_service_host_still_finds_the_files(self) -> None:
        ad = _register(LOCAL_ISB)
        moved = FilesystemSandboxStorage("/var", base_url="https://alias.example.org:8443").job_area(JOB_ID)
        assert isb_file_names(ad, moved.input_uri) == ("analyse.sh", "input.dat")

    def test_entries_of_another_area_are_not_staged(self) -> None:
        ad = _register(LOCAL_ISB)
        other = STORAGE.job_area(child_job_id(JOB_ID, 0))
        assert isb_file_names(ad, other.input_uri) == ()

    def test_file_names_are_registered_percent_encoded_and_read_back_decoded(self) -> None:
        """The registered entries are URIs a client can PUT to (``#``, ``?``, ``%``, spaces
        encoded, as the output URIs are); the names to stage are the files' own."""
        names = ("in#1.txt", "what?.txt", "a b%.txt", "50%25.txt", "été.txt")
        ad = _register('Executable = "a"; InputSandbox = { ' + ", ".join(f'"{n}"' for n in names) + " };")
        assert ad["InputSandbox"] == [AREA.input_uri + "/" + encoded for encoded in (
            "in%231.txt", "what%3F.txt", "a%20b%25.txt", "50%2525.txt", "%C3%A9t%C3%A9.txt")]
        assert isb_file_names(ad, AREA.input_uri) == names

    def test_names_registered_before_they_were_encoded_are_taken_literally(self) -> None:
        """A JDL registered by an earlier version (names as they are) and started after the
        upgrade: a name that is not in encoded form is the file's name."""
        ad = _register('Executable = "a";')
        ad["InputSandbox"] = [f"{AREA.input_uri}/in#1.txt", f"{AREA.input_uri}/what?.txt",
                              f"{AREA.input_uri}/a b%.txt", f"{AREA.input_uri}/plain.txt"]
        assert isb_file_names(ad, AREA.input_uri) == ("in#1.txt", "what?.txt", "a b%.txt", "plain.txt")

    @pytest.mark.parametrize("old", ["x%00y", "a%2Fb", "%2E%2E", "a%41.txt", "%2e.txt"])
    def test_old_names_that_do_not_decode_to_their_own_encoding_are_taken_literally(self, old: str) -> None:
        """An old raw name whose decoding is no file name (NUL, ``/``, ``..``) or is not what the
        service would have written for it (``%41`` is ``A``, never encoded) is the name itself:
        decoded, ``x%00y`` had stopped the worker (``ValueError: embedded null byte``)."""
        ad = _register('Executable = "a";')
        ad["InputSandbox"] = [f"{AREA.input_uri}/{old}"]
        assert isb_file_names(ad, AREA.input_uri) == (old,)


class TestOutputNames:
    def test_each_entry_is_stored_under_the_last_segment_of_its_registered_destination(self) -> None:
        ad = _register('Executable = "a"; OutputSandbox = {"a.out", "x/r.txt", "b.out"};'
                       ' OutputSandboxDestURI = {"renamed#1.out", "r.txt", "b.out"};')
        assert read_description(ad).output_names == ("renamed#1.out", "r.txt", "b.out")

    def test_a_jdl_registered_before_the_output_sandbox_checks_still_has_names(self) -> None:
        """Registration now refuses fewer destinations than entries, and destinations with
        wildcards; a job registered before keeps the names it was given then."""
        short = parse_jdl('Executable = "a"; OutputSandbox = {"a.out", "x/r.txt", "b.out"};'
                          ' OutputSandboxDestURI = {"renamed#1.out"};')
        assert read_description(short).output_names == ("renamed#1.out", "r.txt", "b.out")
        wild = parse_jdl('Executable = "a"; OutputSandbox = {"*.out", "x/b.out"}; OutputSandboxDestURI = {"", "c"};')
        assert read_description(wild).output_names == ("", "c")
