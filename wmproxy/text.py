"""Client text made safe to quote: in an XML document (a fault message) and in a log line.

Both replace a character they cannot carry by a visible escape in the form the sandbox-name
messages use (``str.encode("unicode_escape")``: ``\\x01``, ``\\x85``, ``\\u2028``), so that
what was refused or went wrong stays readable and one message stays one line.
"""

from __future__ import annotations

import re

#: Characters outside XML 1.0's ``Char`` production (C0 controls but tab, LF and CR; surrogates;
#: U+FFFE and U+FFFF): lxml refuses them ("All strings must be XML compatible").
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Characters that end a log line or rewrite a terminal: C0 and C1 controls (LF, CR, ESC,
#: NEL U+0085...), DEL, and the Unicode line and paragraph separators.
_NOT_LOG = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def xml_text(text: str) -> str:
    """``text`` with every character XML cannot carry replaced by ``\\xNN`` / ``\\uNNNN``."""
    return _NOT_XML.sub(_escape, text)


def log_text(text: object) -> str:
    """``str(text)`` on one line: control characters, CR and LF included, and U+2028/U+2029
    replaced by ``\\xNN`` / ``\\uNNNN`` (a client's text cannot forge a log line)."""
    return _NOT_LOG.sub(_escape, str(text))


def short_text(text: object, limit: int) -> str:
    """:func:`log_text` of ``text``, cut to at most ``limit`` characters (``...`` ending a cut
    one): a peer's text the service stores or shows, which the peer may make as long as it likes."""
    line = log_text(text)
    return line if len(line) <= limit else line[:max(limit - 3, 0)] + "..."
