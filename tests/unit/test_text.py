"""wmproxy/text.py: client text quoted in an XML document and in a log line."""

from __future__ import annotations

import pytest
from lxml import etree

from wmproxy.text import log_text, xml_text


@pytest.mark.parametrize(("text", "shown"), [
    ("plain /CN=Jos\u00e9 \U0001f600 <&>", "plain /CN=Jos\u00e9 \U0001f600 <&>"),
    ("tab\tLF\nCR\r", "tab\tLF\nCR\r"),  # XML carries them
    ("a\x00b\x01c\x1fd", "a\\x00b\\x01c\\x1fd"),
    ("\ud800 \udfff \ufffe \uffff", "\\ud800 \\udfff \\ufffe \\uffff"),
    ("\x7f\x85\u2028", "\x7f\x85\u2028"),  # XML 1.0 Chars
])
def test_xml_text_escapes_what_lxml_refuses(text: str, shown: str) -> None:
    assert xml_text(text) == shown
    etree.Element("e").text = xml_text(text)  # accepted


def test_xml_text_keeps_every_xml_char() -> None:
    text = "".join(chr(c) for c in (*range(0x20, 0xD800, 97), *range(0xE000, 0xFFFE, 31), 0x10000, 0x10FFFF))
    assert xml_text(text) == text


@pytest.mark.parametrize(("text", "shown"), [
    ("a\nb\rc\td\x1b[2K\x7f\x85\x9b\u2028\u2029", "a\\x0ab\\x0dc\\x09d\\x1b[2K\\x7f\\x85\\x9b\\u2028\\u2029"),
    ("/CN=Jos\u00e9 \u200d \xa0 \\x0a", "/CN=Jos\u00e9 \u200d \xa0 \\x0a"),
])
def test_log_text_keeps_a_line_one_line(text: str, shown: str) -> None:
    assert log_text(text) == shown
    assert log_text(ValueError(text)) == shown
