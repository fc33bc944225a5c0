"""Client-side JDL preparation (classad2): errors located, nodes inlined, attributes set."""

from __future__ import annotations

from pathlib import Path

import classad2
import pytest

from wmproxy.cli import jdlprep
from wmproxy.cli.errors import CliError
from wmproxy.cli.submit import expiry_time


class TestSyntaxErrors:
    @pytest.mark.parametrize(("text", "where"), [
        ('[ a = 1;\n  b = ;\n c = 2 ]', (2, 3)),
        ('[\n  Executable = "x";\n  Requirements = other.A >;\n]\n', (3, 3)),
        ('Executable = "x";\n\n  Arguments = "a" +;\n', (3, 3)),
        ('# comment\n[ a = 1;\n b = "unterminated;\n ]', (3, 2)),
    ])
    def test_line_and_column(self, text: str, where: tuple[int, int]) -> None:
        assert jdlprep.locate_syntax_error(text) == where

    def test_message_names_file_line_column_and_text(self) -> None:
        with pytest.raises(CliError) as err:
            jdlprep.parse('[\n  Executable = "x";\n  Arguments = ;\n]\n', "job.jdl")
        assert err.value.kind == "JDL"
        assert err.value.description.startswith("job.jdl: syntax error at line 3, column 3: 'Arguments = ;' (")

    def test_empty(self) -> None:
        with pytest.raises(CliError, match=r"job\.jdl: the JDL is empty"):
            jdlprep.parse("  \n", "job.jdl")


class TestPrepare:
    def test_untouched_jdl_is_sent_as_written(self, tmp_path: Path) -> None:
        text = '[ Executable = "x"; // comment\n Environment = {"A=b"}; ]'
        assert jdlprep.prepare(text, "j", tmp_path) is text

    def test_file_nodes_are_inlined_with_the_node_attributes_winning(self, tmp_path: Path) -> None:
        (tmp_path / "a.jdl").write_text('[ Executable = "/bin/echo"; NodeName = "ignored"; ]')
        out = classad2.ClassAd(jdlprep.prepare(
            '[ Type = "dag"; Nodes = { [ file = "a.jdl"; NodeName = "A"; ] }; Dependencies = {}; ]', "j", tmp_path))
        node = out["Nodes"][0]
        assert (node["Executable"], node["NodeName"], "file" in node) == ("/bin/echo", "A", False)

    def test_old_form_file_node_becomes_its_description(self, tmp_path: Path) -> None:
        (tmp_path / "a.jdl").write_text('[ Executable = "/bin/echo"; ]')
        out = classad2.ClassAd(jdlprep.prepare(
            '[ Type = "dag"; nodes = [ A = [ file = "a.jdl"; ]; dependencies = {}; ]; ]', "j", tmp_path))
        assert out["nodes"]["A"]["Description"]["Executable"] == "/bin/echo"

    def test_missing_and_self_including_node_files(self, tmp_path: Path) -> None:
        with pytest.raises(CliError, match="cannot read the node file"):
            jdlprep.prepare('[ Type = "dag"; Nodes = { [ file = "none.jdl"; ] }; ]', "j", tmp_path)
        (tmp_path / "loop.jdl").write_text('[ Type = "dag"; Nodes = { [ file = "loop.jdl"; ] }; ]')
        with pytest.raises(CliError, match="includes itself"):
            jdlprep.prepare((tmp_path / "loop.jdl").read_text(), "j", tmp_path)

    def test_shell_quotes_in_environment_and_arguments_are_left_to_the_service(self, tmp_path: Path) -> None:
        """The service's job wrapper evaluates them as gLite's did: quotes the client removed were
        removed twice (``A='$HOME'`` became ``A=$HOME``, then expanded on the worker node)."""
        text = '[ Executable = "x"; Arguments = "\'a b\' $HOME"; Environment = {"A=\'$HOME\'", "B=\\"c d\\""}; ]'
        assert jdlprep.prepare(text, "j", tmp_path) == text

    def test_base_uri_environment_defaults_and_overrides(self, tmp_path: Path) -> None:
        out = classad2.ClassAd(jdlprep.prepare(
            '[ Executable = "x"; InputSandboxBaseURI = "file:///data/d/";'
            ' InputSandbox = {"a/in", "https://o/x", "/abs"};'
            ' Environment = {"A=\'a b\'", "B=\\"c\\"", "C=plain"}; RetryCount = 0; ]', "j", tmp_path,
            defaults={"RetryCount": "3", "VirtualOrganisation": '"dteam"'},
            overrides={"SubmitTo": "ce:1/q", "ExpiryTime": 42}))
        assert out["InputSandbox"] == ["file:///data/d/a/in", "https://o/x", "/abs"]
        # sent as written: the service's job wrapper removes the quotes (its shell), once
        assert out["Environment"] == ["A='a b'", 'B="c"', "C=plain"]
        assert (out["RetryCount"], out["VirtualOrganisation"]) == (0, "dteam")
        assert (out["SubmitTo"], out["ExpiryTime"]) == ("ce:1/q", 42)

    @pytest.mark.parametrize("base", ["gsiftp://se/d/", "https://wms.example.org:7443/SandboxDir/Ab/job/output"])
    def test_a_remote_base_uri_is_refused_as_the_service_refuses_its_entries(self, tmp_path: Path,
                                                                           base: str) -> None:
        jdl = f'[ Executable = "x"; InputSandboxBaseURI = "{base}"; InputSandbox = {{"a/in"}}; ]'
        with pytest.raises(CliError, match="does not fetch remote input sandbox files") as exc:
            jdlprep.prepare(jdl, "j", tmp_path)
        assert f"InputSandboxBaseURI {base!r} is not allowed" in str(exc.value)
        nodes = (f'[ Type = "dag"; Nodes = {{ [ NodeName = "a"; Executable = "x"; InputSandboxBaseURI = "{base}";'
                 ' InputSandbox = {"in"}; ] }; ]')
        with pytest.raises(CliError, match="does not fetch remote"):
            jdlprep.prepare(nodes, "j", tmp_path)

    def test_bad_default(self, tmp_path: Path) -> None:
        with pytest.raises(CliError, match="is not a ClassAd expression"):
            jdlprep.prepare('[ Executable = "x"; ]', "j", tmp_path, defaults={"Rank": "1 +"})


class TestExpiryTime:
    NOW = 1_800_000_000.0

    def test_valid(self) -> None:
        assert expiry_time("01:30", None, now=self.NOW) == int(self.NOW) + 5400

    @pytest.mark.parametrize("value", ["1h", "1:60", "00:00", "1:2:3"])
    def test_bad_valid(self, value: str) -> None:
        import click

        with pytest.raises(click.BadParameter):
            expiry_time(value, None, now=self.NOW)

    def test_to_is_local_time_and_tomorrow_when_passed(self) -> None:
        from datetime import datetime

        stamp = expiry_time(None, "12:05:2030", now=self.NOW)
        assert stamp is not None
        assert datetime.fromtimestamp(stamp).astimezone().strftime("%H:%M %Y") == "12:05 2030"
        today = datetime.fromtimestamp(self.NOW).astimezone()
        earlier = expiry_time(None, f"{today.hour:02d}:{today.minute:02d}", now=self.NOW + 60)
        assert earlier is not None and 0 < earlier - self.NOW <= 24 * 3600

    def test_to_in_the_past(self) -> None:
        import click

        with pytest.raises(click.BadParameter, match="not in the future"):
            expiry_time(None, "01:01:10:00:2001", now=self.NOW)

