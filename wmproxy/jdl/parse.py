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

Every attribute name, at every nesting level (node ads, records in lists, names an
expression refers to), must be a plain name (:func:`is_plain_name`). ClassAds also allow
quoted names such as ``'a b'`` or ``'x=0; VirtualOrganisation="atlas"; y'``: the checks run
on the parsed ad, but a stored JDL is read again from its text, where such a name written
unquoted smuggled attributes past them, or did not parse at all (issue 31).
"""

from __future__ import annotations

import functools
import re
import secrets

import classad2

from wmproxy.errors import JdlSyntaxError
from wmproxy.jdl.depth import MAX_DEPTH, depth_problem

_WRAPPED = "__wmproxy_jdl"
_RESERVED = "__wmproxy"

#: A plain attribute name: an ASCII letter or ``_``, then letters, digits and ``_``.
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
#: Words the ClassAd lexer reads as values or operators wherever they stand (any case),
#: so they name an attribute only when quoted.
_KEYWORDS = frozenset({"true", "false", "undefined", "error", "is", "isnt"})
#: A string literal or a quoted name of classad2's text of an ad.
_QUOTED = re.compile(r""""(?:[^"\\]+|\\.)*"|'(?:[^'\\]+|\\.)*'""", re.DOTALL)
_SPACE_RUN = re.compile(r"\s+")
#: What the text of a JDL holds besides expressions: string literals, quoted names, comments.
_NOT_EXPRESSION = re.compile(_QUOTED.pattern + r"""|//[^\n]*|/\*.*?\*/|\#[^\n]*""", re.DOTALL)
#: An integer literal (digits not part of a name or of a real literal's parts).
_INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.])")
#: The largest integer a ClassAd holds; the lexer reads a longer literal as 0.
INTEGER_MAX = 2**63 - 1

# Leading whitespace and comments: // line, /* block */, and # line (the new ClassAd
# lexer rejects '#', but gLite JDL files use it, e.g. CTB fake.jdl and 32078.jdl).
_LEADING_NOISE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/|#[^\n]*)*", re.DOTALL)
_HASH_COMMENT_LINE = re.compile(r"^[ \t]*#[^\n]*$", re.MULTILINE)


def parse_jdl(text: str, *, bounded: bool = False) -> classad2.ClassAd:
    """Parse a JDL, with or without the enclosing ``[ ]``, into a ClassAd.

    Implements the parsing of ``wmproxy-behaviour.md`` §3.1 step 5. Lines whose first
    non-blank character is ``#`` are comments, as are ``//`` and ``/* */``.
    Validation of the content is :func:`wmproxy.jdl.describe`'s job.

    Args:
        text: the JDL as sent by the client.
        bounded: the caller knows how deep ``text``'s expressions nest is within
            :data:`~wmproxy.jdl.depth.MAX_DEPTH` (a text the service wrote of a JDL read here,
            changed only inside its string literals): not bounded again.

    Returns:
        A new ClassAd with the JDL's attributes (names keep the user's case,
        lookups are case-insensitive).

    Raises:
        JdlSyntaxError: the text is empty or is not exactly one ClassAd, for
            example ``garbage``, ``Executable = ;``, unbalanced brackets, text
            after the closing ``]``, a NUL character, an attribute name starting with
            ``__wmproxy``, an attribute name (at any level) that is not a plain name,
            such as ``'my attr'``, or an expression that may nest more than
            :data:`~wmproxy.jdl.depth.MAX_DEPTH` levels deep (``1 + 1 + ...``, ``a.b.b...``:
            classad2 would overflow the process's stack, :mod:`wmproxy.jdl.depth`). The message
            starts with "Unable to parse JDL: ".
    """
    if not text or not text.strip():
        raise JdlSyntaxError("Unable to parse JDL: the JDL is empty")
    if "\x00" in text:
        raise JdlSyntaxError("Unable to parse JDL: the JDL contains a NUL character")
    body = _HASH_COMMENT_LINE.sub("", text) if "#" in text else text  # (the regexes: ~100 instructions a character)
    if _may_hold_long_digits(body) and _LONG_DIGITS(body):
        _refuse_long_integers(body)
    if not bounded:
        _refuse_deep(body)
    noise = _LEADING_NOISE.match(body)  # always matches, possibly empty
    bracketed = body[noise.end() if noise else 0:].startswith("[")
    # 128 random bits after a letter: a string the user's text leaves open runs to the sentinel's
    # value, and the parser's complaint names what follows it; always an identifier, so the
    # same text gets the same message (a token starting with a digit gave one of four).
    token = "t" + secrets.token_hex(16)
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
    # A name is an identifier's text or a quoted name's (which may hold escapes): without either
    # in the text, no name is reserved. An identifier starting with _RESERVED holds its "__" as
    # written: a text without it (a registered JDL, read at every claim, usually) is not lowered.
    named = "'" in body or ("__" in body and _RESERVED in body.lower())
    if named and any(name.lower().startswith(_RESERVED) for name in ad):
        raise JdlSyntaxError(f"Unable to parse JDL: attribute names starting with {_RESERVED} are reserved")
    if "'" in body:  # a quoted name needs one
        _refuse_quoted_names(ad)
    return ad


def parse_stored_jdl(text: str) -> classad2.ClassAd:
    """Parse a JDL the service wrote itself (``jobs.jdl_registered``, made by
    :func:`wmproxy.jdl.registered.jdl_lines` from a JDL :func:`parse_jdl` accepted).

    Unlike :func:`parse_jdl`, names that are not plain are read as the service quoted them:
    a compound job's registered JDL names its nodes (``'Node_run-1' = [...]``), and a node
    name may hold characters a user's attribute name may not.

    Not scanned for depth (:func:`_refuse_deep`): a stored JDL passed :func:`parse_jdl` and the
    registration's own writing back of every expression (``check_expressions``), which crashes at
    a lower depth than a parse, so it parses; a collection's registered JDL of 1.1 MB would pay
    about 13 ms a read.

    Raises:
        JdlSyntaxError: the text is not one ClassAd.
    """
    try:
        return classad2.ClassAd(text)
    except (classad2.ClassAdException, ValueError) as exc:
        reason = classad2.lastError() or str(exc)
        raise JdlSyntaxError(f"Unable to parse JDL: {_clean_reason(reason)}") from None


def _refuse_deep(text: str) -> None:
    """Refuse ``text`` before classad2 reads it when its expressions may nest more than
    :data:`~wmproxy.jdl.depth.MAX_DEPTH` levels deep (classad2 would overflow the stack: a SIGSEGV
    of the whole process)."""
    if len(text) > MAX_DEPTH and (problem := depth_problem(text)) is not None:
        raise JdlSyntaxError(f"Unable to parse JDL: {problem}")


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is an attribute name a ClassAd reads unquoted: :data:`PLAIN_NAME`,
    and not a keyword such as ``true`` or ``isnt``."""
    return PLAIN_NAME.fullmatch(name) is not None and name.lower() not in _KEYWORDS


#: Names up to this many characters are kept by :func:`quote_name`'s cache (1,024 of them): a
#: name is the user's, up to a request's size, and a cache of any name would keep megabytes.
QUOTE_CACHE_NAME_MAX = 64


def quote_name(name: str) -> str:
    """``name`` as a ClassAd writes an attribute name: as it is when plain, else quoted
    (``'a b'``, ``'it\\'s'``), escaped as a string literal is."""
    if len(name) <= QUOTE_CACHE_NAME_MAX:
        return _quote_short_name(name)
    return _quote_name(name)


def _quote_name(name: str) -> str:
    if is_plain_name(name):
        return name
    return "'" + str(classad2.quote(name))[1:-1].replace("'", "\\'") + "'"


#: A JDL's names, twice per job (JDLOriginal, JDLToStart): mostly the same few, each short.
_quote_short_name = functools.lru_cache(maxsize=1024)(_quote_name)


def one_line(text: str) -> str:
    """classad2's text of an expression on one line: each run of whitespace outside string
    literals and quoted names becomes one space (their contents are kept as they are,
    ``"ce  01"`` stays ``"ce  01"``), leading and trailing whitespace is dropped.

    Args:
        text: ``str()`` of a ``classad2.ExprTree`` (its literals escaped, no comments).

    Returns:
        The same expression, on one line.
    """
    stripped = text.strip()
    if " ".join(stripped.split()) == stripped:  # already one line, single spaces (inside literals too)
        return stripped
    pieces: list[str] = []
    start = 0
    for match in _QUOTED.finditer(text):
        pieces.append(_SPACE_RUN.sub(" ", text[start:match.start()]))
        pieces.append(match.group())
        start = match.end()
    pieces.append(_SPACE_RUN.sub(" ", text[start:]))
    return "".join(pieces).strip()


_LONG_DIGITS = re.compile(r"\d{19}").search  # INTEGER_MAX has 19 digits: a shorter run is in range
_ASCII_DIGITS = "0123456789"


def _may_hold_long_digits(body: str) -> bool:
    """False when ``body`` cannot hold a run of 19 digits (:data:`_LONG_DIGITS`): ASCII text, whose
    only digits are 0-9, with fewer than 19 of them in all."""
    return not body.isascii() or sum(map(body.count, _ASCII_DIGITS)) >= 19


def _refuse_long_integers(body: str) -> None:
    """Refuse an integer literal above :data:`INTEGER_MAX` in the expressions of ``body``
    (not in strings, quoted names or comments): classad2 would read it as 0, so that
    ``Requirements = other.X > 10000000000000000000`` would mean ``> 0``."""
    start = 0
    for match in [*_NOT_EXPRESSION.finditer(body), None]:
        end = len(body) if match is None else match.start()
        for literal in _INTEGER.finditer(body, start, end):
            if int(literal.group()) > INTEGER_MAX:
                raise JdlSyntaxError(f"Unable to parse JDL: the integer {literal.group()} is out of range "
                                     f"(at most {INTEGER_MAX}; a real number is written with a decimal point)")
        if match is not None:
            start = match.end()


def _refuse_quoted_names(ad: classad2.ClassAd) -> None:
    """Refuse any attribute name that is not plain, at any level.

    The top-level names are checked as they are; every other name is found in classad2's
    own text of the ad, which quotes every name that is not plain (and ``parent``), in
    nested ads, records of lists and references alike.
    """
    for name in ad:
        if not is_plain_name(name):
            _refuse_name(quote_name(name))
    for quoted in _quoted_names(str(ad)):
        if not is_plain_name(quoted[1:-1]):  # escapes make it not plain as well
            _refuse_name(quoted)


def _refuse_name(quoted: str) -> None:
    raise JdlSyntaxError(
        f"Unable to parse JDL: attribute name {quoted} is not a plain name (a letter or _, "
        "then letters, digits or _; not true, false, undefined, error, is or isnt)"
    )


def _quoted_names(text: str) -> list[str]:
    """The quoted names (``'...'``, quotes and escapes kept) of classad2's text of an ad.

    That text holds ``'`` only in quoted names and in string literals (``"..."``), both
    with ``\\`` escapes.
    """
    return [match.group() for match in _QUOTED.finditer(text) if match.group().startswith("'")]


def _clean_reason(reason: str) -> str:
    """classad2's reason without its "while parsing classad: " prefix and padding."""
    reason = " ".join(reason.split())
    return reason.removeprefix("while parsing classad: ").strip() or "not a ClassAd"
