"""JDL text → ``classad2.ClassAd`` (``wmproxy-behaviour.md`` §3.1 step 5).

classad2 does the parsing; this module only makes it strict. On its own
``classad2.parseOne`` takes bracket-less text as the *old* ClassAd format and keeps
whatever it understood before the first error, and ``classad2.ClassAd(text)``
ignores anything after the closing ``]``. Both would let garbage through silently.
So the text is always parsed in the new format inside a wrapper ad that has a
sentinel attribute after the user's text::

    bracketed JDL:     [ __wmproxy_jdl = <text>\n; __wmproxy_end_<token> = "<token>" ]
    bracket-less JDL:  [ <text>\n; __wmproxy_end_<token> = "<token>" ]

The user's text is accepted only if the wrapper parses, the sentinel survived (so
nothing closed the wrapper early) and, for bracketed text, the value is a plain
ClassAd, not an expression such as ``[a=1] + 1``. The token is 128 random bits drawn
for each call, so the JDL text cannot write the sentinel itself and close the wrapper
early to smuggle trailing text past the check (issue 10): ``[a=1]; __wmproxy_end = "..."]
junk`` used to pass with the fixed token of earlier releases. The sentinel's name is never
a JDL attribute (attributes starting with ``__wmproxy`` are refused).
"""

from __future__ import annotations

import re
import secrets

import classad2

from wmproxy.errors import JdlSyntaxError

_WRAPPED = "__wmproxy_jdl"
_RESERVED = "__wmproxy"

# Leading whitespace and comments: // line, /* block */, and # line (the new ClassAd
# lexer rejects '#', but gLite JDL files use it, e.g. CTB fake.jdl and 32078.jdl).
_LEADING_NOISE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/|#[^\n]*)*", re.DOTALL)
_HASH_COMMENT_LINE = re.compile(r"^[ \t]*#[^\n]*$", re.MULTILINE)


def parse_jdl(text: str) -> classad2.ClassAd:
    """Parse a JDL, with or without the enclosing ``[ ]``, into a ClassAd.

    Implements the parsing of ``wmproxy-behaviour.md`` §3.1 step 5. Lines whose first
    non-blank character is ``#`` are comments, as are ``//`` and ``/* */``.
    Validation of the content is :func:`wmproxy.jdl.describe`'s job.

    Args:
        text: the JDL as sent by the client.

    Returns:
        A new ClassAd with the JDL's attributes (names keep the user's case,
        lookups are case-insensitive).

    Raises:
        JdlSyntaxError: the text is empty or is not exactly one ClassAd, for
            example ``garbage``, ``Executable = ;``, unbalanced brackets, text
            after the closing ``]``, a NUL character or an attribute name starting with
            ``__wmproxy``. The message starts with "Unable to parse JDL: ".
    """
    if not text or not text.strip():
        raise JdlSyntaxError("Unable to parse JDL: the JDL is empty")
    if "\x00" in text:
        raise JdlSyntaxError("Unable to parse JDL: the JDL contains a NUL character")
    body = _HASH_COMMENT_LINE.sub("", text)
    noise = _LEADING_NOISE.match(body)  # always matches, possibly empty
    bracketed = body[noise.end() if noise else 0:].startswith("[")
    token = secrets.token_hex(16)
    sentinel = f"{_RESERVED}_end_{token}"
    end = f'\n; {sentinel} = "{token}" ]'
    wrapper_text = f"[ {_WRAPPED} = {body}{end}" if bracketed else f"[ {body}{end}"

    try:
        wrapper = classad2.ClassAd(wrapper_text)
    except (classad2.ClassAdException, ValueError) as exc:
        reason = classad2.lastError() or str(exc)
        raise JdlSyntaxError(f"Unable to parse JDL: {_clean_reason(reason)}") from None

    if wrapper.get(sentinel) != token:
        raise JdlSyntaxError("Unable to parse JDL: unexpected text after the end of the ClassAd")
    del wrapper[sentinel]
    if bracketed:
        ad = wrapper.get(_WRAPPED)
        if not isinstance(ad, classad2.ClassAd) or len(wrapper) != 1:
            raise JdlSyntaxError("Unable to parse JDL: the JDL is not a single ClassAd")
    else:
        ad = wrapper
    reserved = [name for name in ad if name.lower().startswith(_RESERVED)]
    if reserved:
        raise JdlSyntaxError(f"Unable to parse JDL: attribute names starting with {_RESERVED} are reserved")
    return ad


def _clean_reason(reason: str) -> str:
    """classad2's reason without its "while parsing classad: " prefix and padding."""
    reason = " ".join(reason.split())
    return reason.removeprefix("while parsing classad: ").strip() or "not a ClassAd"
