"""How deep a ClassAd text can nest, bounded before classad2 reads it.

classad2 (the HTCondor ClassAd library) recurses once per level of an expression's tree, when it
parses the text, writes it back as text (``str``), copies or frees it, with no bound on the depth:
a chain of binary operators (``1 + 1 + ...``, ``a || b || ...``), of selections (``a.b.b...``) or
of subscripts (``a[0][0]...``) is one level per operator, and some tens of thousands of levels
(a few hundred KB of JDL) overflow the C stack of the process: a SIGSEGV that ends the gunicorn
worker and every request it serves. Its own parser refuses deep parentheses, lists, nested ads,
function calls and ``!``/``-`` chains, not those chains.

:func:`depth_problem` bounds the depth of the tree classad2 would build from a text, from the
text's tokens alone (a lexer, not a parser: strings, quoted names and comments skipped as the
ClassAd lexer reads them, operators and brackets counted), in one linear pass. Each bracket
``[ { (`` opens a frame whose elements are separated by ``;`` and ``,``; an element's bound is

    sum over the precedence levels of the longest run of its operators of that level
    (a run ends at an operator of a lower level) + the deepest frame closed in it + 1

Why it holds: in an element, the operators of the lowest level present split it into operands
and chain them (left- or right-deep, one level each), each operand holds only operators of higher
levels, and so on down; a bracketed part is an operand one level above its own elements. A chain
of 2,000 ``other.GlueCEUniqueID == "ce<n>"`` joined by ``||`` is thus about 2,000 levels, not
6,000: the ``==`` and ``.`` of each term are runs of one.

The levels are those of the ClassAd grammar (lowest first): ``?:``; ``||``; ``&&``; ``|``;
``^``; ``&``; ``== != =?= =!= is isnt``; ``< <= > >=``; ``<< >> >>>``; binary ``+ -``; ``* / %``;
unary ``+ - ! ~``; selection ``.`` and subscript ``[``. A ``+``/``-`` is unary unless it follows
an operand (a name, a literal or a closing bracket), as the parser reads it. (The order of the
binary levels was checked against classad2's evaluation of ``x A y B z`` for every pair.)

A looser bound comes first (every operator of the text counts, plus the deepest bracket
nesting, in a few C passes: about 15 ms for a 1.1 MB collection of 10,000 nodes, where the
token-by-token pass takes 150 ms): a JDL without long chains never needs the other.

:data:`MAX_DEPTH` and the crash depths it was chosen from: docs/brokering.md ("How deep users'
expressions may nest").
Pure: no I/O.
"""

from __future__ import annotations

import re
from itertools import accumulate

#: The deepest expression tree a JDL may hold, as bounded here (levels). classad2 overflows an
#: 8 MiB stack (the default of a request thread and of the main thread) at about 25,000 levels of
#: selections when it writes an expression back as text, its lowest crash (parsing: 175,000);
#: 3,000 keeps 8x from it (2x on a 2 MiB thread stack) and accepts a ``Requirements`` of 2,000
#: CEs joined by ``||`` (about 2,000 levels). classad2 evaluates no more than a few hundred
#: levels anyway (deeper, it fails: wmproxy.services.matchmaking).
MAX_DEPTH = 3_000

_SKIP = r"(?:\s+|//[^\n]*|/\*.*?(?:\*/|\Z))*"  # blanks and comments, as the ClassAd lexer skips them
_TOKEN = re.compile(
    _SKIP + r"""(
        "[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)   # a string literal (unterminated: to the end)
      | '[^'\\]*(?:\\.[^'\\]*)*(?:'|\\?\Z)   # a quoted name
      | [A-Za-z_][A-Za-z0-9_]*           # a name or a keyword (is, isnt: operators)
      | (?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
      | =\?= | =!= | >>> | << | >> | == | != | <= | >= | && | \|\|
      | .                                # any other character, one at a time
      | \Z                               # the end (after blanks or comments)
    )""",
    re.DOTALL | re.VERBOSE,
)

#: Precedence levels, lowest first (index in a frame's runs).
_TERNARY, _OR, _AND, _BIT_OR, _BIT_XOR, _BIT_AND, _EQUALITY, _RELATIONAL, _SHIFT, _ADDITIVE, \
    _MULTIPLICATIVE, _UNARY, _POSTFIX = range(13)
_LEVELS = 13
_ZEROS = [0] * _LEVELS
#: Token kinds besides the levels (a level is an int 0..12).
_OPEN, _CLOSE, _SEPARATOR, _ASSIGN, _SIGN, _SKIPPED = "open", "close", "separator", "assign", "sign", "skip"

_KINDS: dict[str, int | str] = {
    "?": _TERNARY, ":": _TERNARY, "||": _OR, "&&": _AND, "|": _BIT_OR, "^": _BIT_XOR, "&": _BIT_AND,
    "==": _EQUALITY, "!=": _EQUALITY, "=?=": _EQUALITY, "=!=": _EQUALITY,
    "<": _RELATIONAL, "<=": _RELATIONAL, ">": _RELATIONAL, ">=": _RELATIONAL,
    "<<": _SHIFT, ">>": _SHIFT, ">>>": _SHIFT, "*": _MULTIPLICATIVE, "/": _MULTIPLICATIVE,
    "%": _MULTIPLICATIVE, "!": _UNARY, "~": _UNARY, ".": _POSTFIX,
    "+": _SIGN, "-": _SIGN, "[": _OPEN, "{": _OPEN, "(": _OPEN, "]": _CLOSE, "}": _CLOSE, ")": _CLOSE,
    ";": _SEPARATOR, ",": _SEPARATOR, "=": _ASSIGN,
}
# is / isnt in any case (the lexer's keywords)
for _word in ("is", "isnt"):
    for _bits in range(2 ** len(_word)):
        _KINDS["".join(c.upper() if _bits >> i & 1 else c for i, c in enumerate(_word))] = _EQUALITY
# Characters that are no token of the ClassAd grammar: the parser stops there (an error).
for _char in "#@$`\\":
    _KINDS[_char] = _SKIPPED


# The quick bound (:func:`_quick_bound`), on the text's UTF-8 bytes with literals and comments
# replaced by an operand ("0"): every operator character, ==, "is" (isnt too, any case), subscript
# (a "[" after an operand's last character, blanks aside), plus the deepest bracket nesting, + 1.
_LITERALS = re.compile(r""""[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|'[^'\\]*(?:\\.[^'\\]*)*(?:'|\\?\Z)"""
                       r"|//[^\n]*|/\*.*?(?:\*/|\Z)", re.DOTALL)
_PLAIN_STRINGS = re.compile(r'"[^"]*"')
_NOT_OPERATOR = bytes(set(range(256)) - set(b"+-*/%&|^!~<>?:."))
_NOT_BRACKET = bytes(set(range(256)) - set(b"[](){}"))
_BLANKS = b" \t\n\r\f\v"
_ENDS_OPERAND = bytes(c for c in range(256) if c >= 128 or chr(c).isalnum() or chr(c) in "_)}")
_OPERAND_ENDS = bytes.maketrans(_ENDS_OPERAND, b"a" * len(_ENDS_OPERAND))
_BRACKET_STEP = [0] * 256
for _byte in b"[({":
    _BRACKET_STEP[_byte] = 1
for _byte in b"])}":
    _BRACKET_STEP[_byte] = -1


def _quick_bound(text: str) -> int | None:
    """A looser bound than :func:`depth_problem`'s (every operator of the text counts, however
    they nest), in a few C passes over the text (about 10 ns a character): enough for a JDL
    without long chains, such as a collection of thousands of nodes. None when it cannot tell
    (a closing bracket without its opening one)."""
    # Without escapes, the string literals are what is between two "; what is left is the text's
    # expressions unless they hold a quoted name or a comment (the first place where this reading
    # and the lexer's could part is a \, or a ' or comment outside the literals read so far).
    code = _LITERALS.sub("0", text) if "\\" in text else _PLAIN_STRINGS.sub("0", text)
    if "'" in code or "//" in code or "/*" in code:
        code = _LITERALS.sub("0", text)
    data = code.encode("utf-8", "surrogatepass")
    operators = len(data.translate(None, _NOT_OPERATOR)) + data.count(b"==") + data.lower().count(b"is")
    marks = data.translate(_OPERAND_ENDS, _BLANKS)
    operators += marks.count(b"a[") + marks.count(b"][") + marks.count(b".[")
    nesting = list(accumulate(map(_BRACKET_STEP.__getitem__, data.translate(None, _NOT_BRACKET))))
    if nesting and min(nesting) < 0:
        return None
    return operators + max(nesting, default=0) + 1


class _Frame:
    """A bracket being read (or the text itself): its current element's runs and what it found."""

    __slots__ = ("child", "deepest", "maxes", "name", "operators", "record", "runs")

    def __init__(self, record: bool) -> None:
        self.record = record  # a nested ad or the text itself: elements are name = expression
        self.deepest = 0  # the deepest element ended so far
        self.new_element()

    def new_element(self) -> None:
        self.name = ""  # the attribute whose expression is being read (records)
        self.runs = _ZEROS[:]
        self.maxes = _ZEROS[:]
        self.child = 0  # the deepest frame closed in the element
        self.operators = 0

    def count(self, level: int) -> None:
        """One more operator of ``level`` in the element: the runs of higher levels end."""
        runs = self.runs
        runs[level] += 1
        if runs[level] > self.maxes[level]:
            self.maxes[level] = runs[level]
        if level < _POSTFIX:
            runs[level + 1:] = _ZEROS[level + 1:]
        self.operators += 1

    def element_bound(self) -> int:
        return sum(self.maxes) + self.child + 1

    def budget(self, limit: int) -> int:
        """The operators the element may hold before its bound can pass ``limit`` (it grows by
        one level an operator at most).

        Raises:
            _TooDeepError: it has passed ``limit`` already.
        """
        bound = self.element_bound()
        if bound > limit:
            raise _TooDeepError
        return self.operators + limit - bound


class _TooDeepError(Exception):
    """An element's bound passed the limit."""


def depth_problem(text: str, limit: int = MAX_DEPTH) -> str | None:
    """Why classad2 must not read ``text`` (a ClassAd, bracketed or not, or an expression): its
    expression tree may nest more than ``limit`` levels deep; None when it cannot.

    Linear in ``text``'s length; nothing at all for a text of at most ``limit`` characters (each
    level of a tree needs a character). The text need not be valid: what classad2 would build of
    it before an error is bounded as well.

    Returns:
        "the expression of attribute <name> nests too deep: more than <limit> levels (...)" (the
        outermost attribute being read, when there is one), or None.
    """
    if len(text) <= limit:
        return None
    quick = _quick_bound(text)
    if quick is not None and quick <= limit:
        return None
    return _scan(text, limit)


def _scan(text: str, limit: int) -> str | None:
    """:func:`depth_problem`'s bound, token by token (about 0.5 µs a token)."""
    frame = _Frame(record=True)
    stack: list[_Frame] = []
    budget = limit - 1  # operators the element may hold before its bound is worked out again
    after_operand = False  # the previous lexeme ends an operand (so + - are binary, [ ( postfix)
    previous = ""
    try:
        for match in _TOKEN.finditer(text):
            lexeme = match.group(1)
            kind = _KINDS.get(lexeme)
            if kind is None:  # a name, a literal, a quoted name
                after_operand = True
                previous = lexeme
                continue
            if kind == _SIGN:
                kind = _ADDITIVE if after_operand else _UNARY
            if isinstance(kind, int):
                frame.count(kind)
                if frame.operators > budget:
                    budget = frame.budget(limit)
                after_operand = False
            elif kind == _OPEN:
                if lexeme == "[" and after_operand:  # a subscript: one level, and its index
                    frame.count(_POSTFIX)
                    stack.append(frame)
                    frame = _Frame(record=False)
                else:
                    stack.append(frame)
                    frame = _Frame(record=lexeme == "[")
                budget = limit - 1
                after_operand = False
            elif kind == _CLOSE:
                if not stack:  # more closing than opening brackets: classad2 stops there
                    after_operand = True
                    continue
                deepest = max(frame.deepest, frame.element_bound())
                frame = stack.pop()
                frame.child = max(frame.child, deepest)
                budget = frame.budget(limit)
                after_operand = True
            elif kind == _SEPARATOR:
                frame.deepest = max(frame.deepest, frame.element_bound())
                frame.new_element()
                budget = limit - 1
                after_operand = False
            elif kind == _ASSIGN:
                if frame.record and not frame.name and after_operand:
                    frame.name = previous
                after_operand = False
            else:  # a character no token starts with: classad2 stops there
                after_operand = False
            previous = lexeme
    except _TooDeepError:
        return _problem(stack, frame, limit)
    return None


def _problem(stack: list[_Frame], frame: _Frame, limit: int) -> str:
    name = next((f.name for f in [*stack, frame] if f.name), "")
    where = f"the expression of attribute {name}" if name else "an expression"
    return (f"{where} nests too deep: more than {limit} levels (each operator, selection or subscript "
            "of a chain is one level)")
