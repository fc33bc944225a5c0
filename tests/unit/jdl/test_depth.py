"""wmproxy.jdl.depth: a JDL whose expressions nest deep enough to overflow classad2's stack is
refused before classad2 reads it (a SIGSEGV of the whole gunicorn worker otherwise)."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pytest

from wmproxy.errors import InvalidArgumentError, JdlSyntaxError
from wmproxy.jdl import check_expressions, expand, jdl_lines, parse_jdl
from wmproxy.jdl.depth import MAX_DEPTH, _quick_bound, _scan, depth_problem
from wmproxy.jdl.jsdl import jsdl_to_jdl, parse_jsdl
from wmproxy.jdl.templates import job_template

#: Levels of each chain below: past the bound, far from any crash (classad2 would read them).
DEEP = 3_500
#: A Requirements naming 2,000 CEs (about 2,000 levels of ||).
CES = " || ".join(f'other.GlueCEUniqueID == "ce{i}.example.org:8443/cream-pbs-long"' for i in range(2_000))

CHAINS = {
    "sum": "1" + " + 1" * DEEP,
    "or": "a" + " || a" * DEEP,
    "and-or": "a" + " || b && c" * DEEP,
    "comparisons": "a" + " == a" * DEEP,
    "is": "a" + " IS a" * DEEP,
    "selection": "a" + ".b" * DEEP,
    "subscript": "a" + "[0]" * DEEP,
    "selection-subscript": "a" + ".b[0]" * (DEEP // 2),
    "product-of-negatives": "a" + " * -a" * DEEP,
}


def _refused(jdl: str) -> str:
    with pytest.raises(JdlSyntaxError) as caught:
        parse_jdl(jdl)
    return caught.value.message


class TestRefused:
    @pytest.mark.parametrize("chain", CHAINS.values(), ids=CHAINS.keys())
    def test_a_deep_chain_is_refused_with_the_jdl_fault(self, chain: str) -> None:
        message = _refused(f'[ Executable = "/bin/true"; X = {chain}; ]')

        assert message.startswith("Unable to parse JDL: the expression of attribute X nests too deep: "
                                  f"more than {MAX_DEPTH} levels")

    def test_bracketless_jdl(self) -> None:
        message = _refused(f'Executable = "/bin/true";\nRequirements = {CHAINS["sum"]};\n')

        assert "attribute Requirements nests too deep" in message

    def test_a_collection_node_names_the_attribute_holding_it(self) -> None:
        message = _refused(f'[ Type = "collection"; Nodes = {{ [ Executable = "/bin/true"; X = {CHAINS["or"]} ] }}; ]')

        assert "attribute Nodes nests too deep" in message

    def test_chains_in_brackets_add_up(self) -> None:
        """Each half alone passes; one inside the other is as deep as both."""
        half = "1" + " + 1" * (MAX_DEPTH // 2 + 10)
        parse_jdl(f"[ X = {half}; Y = ({half}) ]")

        _refused(f"[ X = {half} + ({half}) ]")
        _refused(f"[ X = a.b[{half} * f({half})] ]")

    def test_code_after_an_escaped_backslash_is_counted(self) -> None:
        """``"a\\\\"`` ends at its second quote: what follows is an expression, not a string."""
        _refused('[ X = "a\\\\" + ' + CHAINS["sum"] + " ]")

    def test_a_parametric_value_substituted_in_an_expression(self) -> None:
        ad = parse_jdl(f'[ JobType = "parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_"; X = _PARAM_; '
                       f'Parameters = {{ "1", "{CHAINS["sum"]}" }}; ]')

        with pytest.raises(JdlSyntaxError, match="attribute X nests too deep"):
            expand(ad)

    def test_a_template_requirements(self) -> None:
        with pytest.raises(InvalidArgumentError, match="requirements: an expression nests too deep"):
            job_template(["NORMAL"], "/bin/true", "", CHAINS["or"], "0")

    def test_jsdl_of_thousands_of_candidate_hosts(self) -> None:
        hosts = "".join(f"<a:HostName>h{i}.example.org</a:HostName>" for i in range(DEEP))
        jsdl = (f'<a:JobDefinition xmlns:a="http://schemas.ggf.org/jsdl/2005/11/jsdl" '
                'xmlns:b="http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"><a:JobDescription><a:Application>'
                "<b:POSIXApplication><b:Executable>/bin/true</b:Executable></b:POSIXApplication></a:Application>"
                f"<a:Resources><a:CandidateHosts>{hosts}</a:CandidateHosts></a:Resources>"
                "</a:JobDescription></a:JobDefinition>")

        with pytest.raises(InvalidArgumentError, match="Requirements made of its resources: an expression nests"):
            jsdl_to_jdl(parse_jsdl(jsdl))

    def test_a_chain_that_overflowed_the_stack_gets_the_fault_instead(self) -> None:
        """200,000 terms (0.8 MB) ended the process with SIGSEGV in classad2's parser."""
        code = textwrap.dedent("""
            from wmproxy.errors import JdlSyntaxError
            from wmproxy.jdl import parse_jdl
            try:
                parse_jdl('[ Executable = "/bin/true"; X = 1' + ' + 1' * 200_000 + '; ]')
            except JdlSyntaxError as exc:
                print(exc.message)
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

        assert done.returncode == 0, done.stderr
        assert "attribute X nests too deep" in done.stdout


class TestAccepted:
    def test_a_requirements_of_2000_ces(self) -> None:
        production = 'other.GlueCEStateStatus == "Production"'
        ad = parse_jdl(f'[ Executable = "/bin/true"; Requirements = ({CES}) && {production}; ]')

        check_expressions(ad)
        assert str(ad.lookup("Requirements")).count("||") == 1_999
        parse_jdl(jdl_lines(ad))  # written back and read again, as registration and the worker do

    @pytest.mark.parametrize("chain", ["1" + " + 1" * (MAX_DEPTH - 3), "a" + ".b" * (MAX_DEPTH - 3),
                                       "a" + "[0]" * (MAX_DEPTH // 2 - 3)], ids=["sum", "selection", "subscript"])
    def test_a_chain_just_within_the_bound(self, chain: str) -> None:
        ad = parse_jdl(f"[ X = {chain} ]")

        check_expressions(ad)
        parse_jdl(jdl_lines(ad))

    def test_operators_in_strings_and_comments_do_not_count(self) -> None:
        operators = " + 1 || a.b[0]" * DEEP
        ad = parse_jdl(f'[ // {operators}\n /* {operators} */ X = "{operators}"; Y = "\\" {operators}"; '
                       f"Arguments = \"'{operators}'\" ]")

        assert ad["X"] == operators
        assert ad["Y"] == '" ' + operators

    def test_a_long_flat_collection(self) -> None:
        nodes = ",\n".join(f'[ Executable = "/bin/echo"; Arguments = "node {i}"; StdOutput = "o{i}.txt"; ]'
                           for i in range(5_000))
        ad = parse_jdl(f'[ Type = "collection"; Requirements = true; Nodes = {{ {nodes} }}; ]')

        assert len(ad["Nodes"]) == 5_000


class TestBound:
    """The bound itself, on texts classad2 need not read."""

    @pytest.mark.parametrize(("text", "levels"), [
        ("1 + 2", 2), ("a.b.c", 3), ("a[0][1]", 4), ("a || b && c || d", 4), ("-a * -b", 3),
        ("(((1)))", 4), ("f(a + b, c)", 3), ("[ X = a + b; Y = c ]", 3), ("a ? b : c", 3),
        ('a + "+ + +" /* + + */ // + +\n + b', 3),
    ])
    def test_levels(self, text: str, levels: int) -> None:
        assert depth_problem(text, limit=levels) is None
        assert depth_problem(text + " " * levels, limit=levels - 1) is not None

    def test_the_quick_bound_is_never_below_the_token_by_token_one(self) -> None:
        """:func:`depth_problem` trusts the quick bound when it is within the limit: it must bound
        the token by token one, on any text (random soups of the lexer's pieces here)."""
        pieces = ["a", "1", "2.5", "1e-3", ".5", "1.", '"s+t"', "'q.n'", '"a\\"+b"', '"open', "'open", "is", "ISNT",
                  *"+-*/%&|^~!<>?:.[](){};,=", "&&", "||", "==", "!=", "=?=", "=!=", "<=", ">=", "<<", ">>", ">>>",
                  " ", "\n", "/* + */", "/* open", "// + [\n", "\\", "#", "@", "é", "x.y", "f(", "[0]"]
        rng = random.Random(20261206)  # noqa: S311 - reproducible texts, not cryptography
        for _ in range(3_000):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
            quick = _quick_bound(text)
            if quick is not None:
                assert _scan(text, quick) is None, text
