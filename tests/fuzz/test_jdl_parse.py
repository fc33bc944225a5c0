"""Properties of the JDL parser (``wmproxy/jdl/parse.py``, issue 10): any text gives a ClassAd or
a typed JdlSyntaxError, and nothing written after a bracketed ad survives, whatever it
pretends to be (the parser's own end marker included)."""

from __future__ import annotations

import classad2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.support import fuzz_settings, tried
from wmproxy.errors import JdlSyntaxError
from wmproxy.jdl import parse_jdl

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n.lower() not in ("true", "false", "undefined", "error", "is", "isnt", "parent", "my", "target"))
SIMPLE_VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.text(st.characters(blacklist_characters='"\\\x00', blacklist_categories=("Cs",)), max_size=20)
    .map(lambda t: f'"{t}"'),
    st.sampled_from(["true", "false", "undefined", '{ "a", "b" }', "other.GlueCEStateFreeCPUs >= 1", "1.5"]),
)


@st.composite
def bracketed_ads(draw: st.DrawFn) -> str:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique_by=str.lower))
    body = "; ".join(f"{name} = {draw(SIMPLE_VALUES)}" for name in names)
    return f"[ {body} ]"


#: Text after an ad that is not a comment or a separator: it must never be accepted.
trailing = st.text("abcxyzXYZ0123456789 []{}()=;,\"'+-*<>!&|.:\t\n", min_size=1, max_size=30).filter(
    lambda t: t.strip(" \t\n;") != "")


@fuzz_settings(2)
@given(text=st.text(max_size=200))
def test_any_text_is_an_ad_or_a_syntax_error(text: str) -> None:
    tried("jdl")
    try:
        result: object = parse_jdl(text)
    except JdlSyntaxError as exc:
        result = str(exc)
    assert isinstance(result, classad2.ClassAd) or str(result).startswith("Unable to parse JDL: "), result


@fuzz_settings()
@given(ad=bracketed_ads())
def test_generated_ads_parse(ad: str) -> None:
    tried("jdl")
    assert isinstance(parse_jdl(ad), classad2.ClassAd)


@fuzz_settings(2)
@given(ad=bracketed_ads(), suffix=trailing)
def test_trailing_text_after_a_bracketed_ad_is_refused(ad: str, suffix: str) -> None:
    tried("jdl")
    with pytest.raises(JdlSyntaxError):
        parse_jdl(ad + suffix)


@fuzz_settings()
@given(ad=bracketed_ads(), token=st.text("0123456789abcdef", min_size=1, max_size=32),
       name=st.sampled_from(["__wmproxy_end", "__wmproxy_jdl", "__WMPROXY_END", "__wmproxy_end_"]),
       junk=trailing, bracketed=st.booleans())
def test_the_end_marker_cannot_be_forged(ad: str, token: str, name: str, junk: str, bracketed: bool) -> None:
    """Close the parser's wrapper early with a guessed sentinel, then add anything."""
    tried("jdl")
    forged = f'{name}{token if name.endswith("_") else ""} = "{token}" ] {junk}'
    text = f"{ad}; {forged}" if bracketed else f"{ad[1:-1]}; {forged}"
    with pytest.raises(JdlSyntaxError):
        parse_jdl(text)


@pytest.mark.parametrize("text", [
    '[ Executable = "/bin/true" ]; __wmproxy_end = "5c6b1b9e-jdl-end" ] trailing',
    'Executable = "/bin/true"; __wmproxy_end = "5c6b1b9e-jdl-end" ] [ more = 1',
    '[ Executable = "/bin/true" ] \x00 hidden',
    '[ Executable = "/bin/true"; __wmproxy_end_0 = "0" ]',
])
def test_known_forgeries(text: str) -> None:
    """The exact forgery of the issue (the sentinel of earlier releases), a NUL, a reserved name."""
    tried("jdl")
    with pytest.raises(JdlSyntaxError):
        parse_jdl(text)
