"""wmproxy.jdl.parse: strict JDL parsing on top of classad2."""

from __future__ import annotations

from pathlib import Path

import classad2
import pytest

from wmproxy.errors import JdlError, JdlSyntaxError
from wmproxy.jdl import parse, parse_jdl

DATA = Path(__file__).parent / "data"


class TestParseJdl:
    def test_appendix_a1_without_brackets_parses_with_all_attributes(self) -> None:
        ad = parse_jdl((DATA / "test_job.jdl").read_text())

        assert ad["Executable"] == "/bin/hostname"
        assert ad["OutputSandbox"] == ["std.out", "std.err"]
        assert ad["rank"] == 1
        assert str(ad.lookup("requirements")) == "other.GlueCEStateFreeCPUs >= 1"
        assert len(ad) == 8

    def test_bracketed_jdl_with_leading_and_trailing_comments_parses(self) -> None:
        ad = parse_jdl('// header\n/* block */\n[ Executable = "a"; ] // trailer\n')

        assert dict(ad) == {"Executable": "a"}

    def test_hash_comment_lines_are_ignored(self) -> None:
        ad = parse_jdl('[\n  #Requirements = false;\n  Executable = "/bin/ls";\n]')

        assert list(ad.keys()) == ["Executable"]

    def test_attribute_lookup_is_case_insensitive(self) -> None:
        ad = parse_jdl('executable = "a";')

        assert ad["EXECUTABLE"] == "a"
        assert "Executable" in ad

    def test_returns_a_classad(self) -> None:
        assert isinstance(parse_jdl("[]"), classad2.ClassAd)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("", id="empty"),
            pytest.param("  \n\t", id="blank"),
            pytest.param("garbage", id="garbage"),
            pytest.param("Executable = ;", id="missing-value"),
            pytest.param('[ Executable = "a"; ', id="unclosed-bracket"),
            pytest.param('Executable = "a"; ]', id="extra-closing-bracket-without-opening"),
            pytest.param('[ Executable = "a"; ] ]', id="extra-closing-bracket"),
            pytest.param('[[ Executable = "a" ]]', id="nested-brackets"),
            pytest.param('[ Executable = "a"; ] junk', id="trailing-junk-after-ad"),
            pytest.param('Executable = "a"; junk', id="trailing-junk-without-brackets"),
            pytest.param('[ Executable = "a" ] [ Arguments = "b" ]', id="two-ads"),
            pytest.param('[ Executable = "a" ]; Arguments = "b"', id="attribute-after-ad"),
            pytest.param('[ Executable = "a" ] + 1', id="expression-not-ad"),
            pytest.param('Executable = "a" Arguments = "b"', id="missing-semicolon"),
            pytest.param('[ Executable = "a" ] /* unterminated', id="unterminated-comment"),
        ],
    )
    def test_refuses_text_that_is_not_exactly_one_classad(self, text: str) -> None:
        with pytest.raises(JdlSyntaxError, match=r"^Unable to parse JDL: ") as info:
            parse_jdl(text)

        assert isinstance(info.value, JdlError)
        assert info.value.code == 1219

    @pytest.mark.parametrize(
        ("text", "name"),
        [
            pytest.param("""[ Executable = "/bin/true"; 'x=0; VirtualOrganisation="atlas"; y' = 1 ]""",
                         """'x=0; VirtualOrganisation=\\"atlas\\"; y'""", id="smuggled-attributes"),
            pytest.param("""[ Executable = "/bin/true"; 'my attr' = 1 ]""", "'my attr'", id="space"),
            pytest.param("""Executable = "/bin/true"; 'true' = 1;""", "'true'", id="keyword"),
            pytest.param("""[ Type = "collection"; Nodes = { [ Executable = "/bin/true"; 'a b' = 1 ] } ]""",
                         "'a b'", id="collection-node"),
            pytest.param("""[ Type = "dag"; nodes = [ 'n-1' = [ description = [ Executable = "x" ] ] ] ]""",
                         "'n-1'", id="dag-node-name"),
            pytest.param("""[ Executable = "x"; L = { 1, { [ 'StdOutput;x' = "a" ] } } ]""",
                         "'StdOutput;x'", id="record-in-a-nested-list"),
            pytest.param("""[ Executable = "x"; E = ifThenElse(true, { [ 'k k' = 1 ] }, 0) ]""",
                         "'k k'", id="ad-in-an-expression"),
            pytest.param("""[ Executable = "x"; R = 'my attr' + 1 ]""", "'my attr'", id="reference"),
        ],
    )
    def test_refuses_attribute_names_that_are_not_plain(self, text: str, name: str) -> None:
        """A quoted name written back unquoted by jdl_lines smuggled attributes past the checks
        into the stored JDL, or made it unreadable: refused wherever it stands."""
        with pytest.raises(JdlSyntaxError) as info:
            parse_jdl(text)

        assert str(info.value).startswith(f"Unable to parse JDL: attribute name {name} is not a plain name")
        assert info.value.code == 1219

    @pytest.mark.parametrize("expression", [
        "other.GlueHostMainMemoryRAMSize > 10000000000000000000",
        "other.X == -9223372036854775808",
        "{ 1, 99999999999999999999999 }",
    ])
    def test_refuses_an_integer_a_classad_cannot_hold(self, expression: str) -> None:
        # classad2 reads such a literal as 0: "> 10000000000000000000" would register as "> 0"
        with pytest.raises(JdlSyntaxError, match=r"^Unable to parse JDL: the integer \d+ is out of range"):
            parse_jdl(f'Executable = "/bin/true";\nRequirements = {expression};')

    def test_long_digit_runs_outside_integer_literals_are_kept(self) -> None:
        ad = parse_jdl('Executable = "/bin/echo 10000000000000000000"; // 10000000000000000000\n'
                       "/* 99999999999999999999 */ Largest = 9223372036854775807; Real = 12345678901234567890.5;\n"
                       "Exponent = 1e20; Name = other.a10000000000000000000;")

        assert ad["Executable"] == "/bin/echo 10000000000000000000"
        assert ad["Largest"] == 2**63 - 1
        assert ad["Real"] == 12345678901234567890.5 and ad["Exponent"] == 1e20
        assert str(ad.lookup("Name")) == "other.a10000000000000000000"

    def test_syntax_error_message_carries_the_classad_reason(self) -> None:
        with pytest.raises(JdlSyntaxError) as info:
            parse_jdl("[ Executable = ; ]")

        assert "LEX_" in str(info.value)


def test_quote_name_keeps_short_names_only() -> None:
    """A name is the user's, up to a request's size: quote_name's cache keeps the short ones (a
    JDL's usual names) and never a long one, which it quotes all the same (4 MiB names in 60
    requests kept 750 MiB in a worker when any name was cached)."""
    long_name = "x" * (parse.QUOTE_CACHE_NAME_MAX + 1)
    quoted_long = "a b" * parse.QUOTE_CACHE_NAME_MAX
    before = parse._quote_short_name.cache_info().currsize
    assert parse.quote_name(long_name) == long_name
    assert parse.quote_name(quoted_long) == f"'{quoted_long}'"
    assert parse._quote_short_name.cache_info().currsize == before
    assert parse.quote_name("a b") == "'a b'" and parse.quote_name("Executable") == "Executable"
    hits = parse._quote_short_name.cache_info().hits
    assert parse.quote_name("Executable") == "Executable"
    assert parse._quote_short_name.cache_info().hits == hits + 1


@pytest.mark.parametrize("text", ['Executable = "a"; X = "', '[ Executable = "a"; X = " ]'])
def test_a_string_left_open_gets_the_same_message_every_time(text: str) -> None:
    """The parser's complaint names what follows the string left open: the wrapper's random
    sentinel token, which starts with a letter, so the message does not change from call to call
    (it named an integer, a real, an identifier or a token error by the token's first characters)."""
    messages = set()
    for _ in range(60):
        with pytest.raises(JdlSyntaxError) as refused:
            parse_jdl(text)
        messages.add(str(refused.value))
    assert len(messages) == 1, messages
