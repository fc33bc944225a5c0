"""``domain.to_filename`` (a job's directory name) against its definition: every character
outside ``[A-Za-z0-9.- ]`` becomes ``_`` and its code point in (at least two) lowercase hex
digits (glite's ``to_filename``). The ASCII fast path must write what the definition writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wmproxy.domain import (
    checked_relative_dir,
    job_fan_out,
    job_relative_dir,
    new_job_id,
    parse_job_id,
    to_filename,
)
from wmproxy.errors import InvalidArgumentError

_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.- ")


def _definition(text: str) -> str:
    return "".join(c if c in _SAFE else f"_{ord(c):02x}" for c in text)


def test_the_reference_example() -> None:
    assert to_filename("https://wms.example.org:9000/AbC-x_1") == "https_3a_2f_2fwms.example.org_3a9000_2fAbC-x_5f1"


def test_every_ascii_character_and_a_few_past_it() -> None:
    for code in [*range(128), 0x80, 0xE9, 0xFF, 0x100, 0x3B1, 0x20AC, 0x1F600]:
        assert to_filename(chr(code)) == _definition(chr(code)), hex(code)
    assert to_filename("\x00") == "_00"
    assert to_filename("é") == "_e9"
    assert to_filename("€") == "_20ac"


def test_a_new_job_id() -> None:
    job_id = new_job_id("wms.example.org", 9000)
    assert to_filename(job_id) == _definition(job_id)


@given(st.text())
def test_any_text_is_named_as_the_definition_names_it(text: str) -> None:
    assert to_filename(text) == _definition(text)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_any_ascii_text_is_named_as_the_definition_names_it(text: str) -> None:
    assert to_filename(text) == _definition(text)


@given(st.from_regex(r"https://[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?/[A-Za-z0-9_-]{1,30}", fullmatch=True))
def test_the_fan_out_of_a_valid_job_id_is_that_of_its_relative_dir(job_id: str) -> None:
    """``job_fan_out`` (the purger's orphan walk) reads the fan-out without parsing the id again:
    it must name the directory ``job_relative_dir`` puts the job's area in."""
    try:
        parse_job_id(job_id)
    except InvalidArgumentError:  # a port out of range
        return
    assert job_relative_dir(job_id).split("/")[1] == job_fan_out(job_id)


@pytest.mark.parametrize("job_id", [
    "https://h/a\tbc", "https://h/a\nbc", "https://h/ab\r", " https://h/abc", "https://h/abc ", "\x00https://h/abc",
    "https://h/ab\x7f", "https://h/a\x0bbc", "https://h\t:9000/abc", "\thttps://h/abc",
], ids=["tab", "lf", "cr-at-the-end", "leading-space", "trailing-space", "leading-nul", "del", "vt", "tab-in-host",
        "leading-tab"])
def test_an_id_with_ascii_whitespace_or_a_control_character_is_not_valid(job_id: str) -> None:
    """``urlsplit`` strips TAB, LF and CR anywhere and C0 controls and spaces at the ends: such an
    id was read as another (``https://h/a<TAB>bc`` as ``https://h/abc``), and ``job_fan_out``
    then named another fan-out directory than the job's area is in."""
    with pytest.raises(InvalidArgumentError):
        parse_job_id(job_id)


@given(st.from_regex(r"https://[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?/[A-Za-z0-9_-]{1,30}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True))
def test_a_checked_relative_dir_is_that_of_a_parsed_id(job_id: str, other: str) -> None:
    """``checked_relative_dir`` answers as ``parse_job_id`` then ``job_relative_dir``, for an id
    whose host and port it has seen before too (kept, not parsed again: issue 14)."""
    try:
        parse_job_id(job_id)
    except InvalidArgumentError:  # a port out of range
        with pytest.raises(InvalidArgumentError):
            checked_relative_dir(job_id)
        return
    assert checked_relative_dir(job_id, "SB") == job_relative_dir(job_id, "SB")
    again = job_id[:job_id.rindex("/") + 1] + other  # the same host and port, seen now
    assert checked_relative_dir(again, "SB") == job_relative_dir(again, "SB")


@pytest.mark.parametrize("unique", ["", "a/b", "a?b", "a#b", "a.b", "..", "a b", "a\tb", "a\x7f", "caf\u00e9", "a%2F"])
def test_an_id_of_a_seen_host_and_port_is_still_checked(unique: str) -> None:
    """What follows a host and port seen in a valid id is checked as ``parse_job_id`` checks it."""
    seen = new_job_id("wms.example.org", 9000)
    assert checked_relative_dir(seen) == job_relative_dir(seen)
    job_id = f"https://wms.example.org:9000/{unique}"
    with pytest.raises(InvalidArgumentError):
        parse_job_id(job_id)
    with pytest.raises(InvalidArgumentError):
        checked_relative_dir(job_id)
