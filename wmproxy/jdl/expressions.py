"""What evaluating a JDL's expressions may cost, checked before anything evaluates them.

classad2 has no evaluation budget, and attribute references make the cost of an expression
unrelated to its length: in ``[A0 = "xxxxxxxxxxxxxxxx"; A1 = strcat(A0, A0); ...; A20 =
strcat(A19, A19)].A20`` each step doubles, so a 480-byte JDL evaluates to 16 MB, and ten
more steps to 16 GB. The service evaluates users' expressions when it matches a job to the
CEs (``Requirements``, ``Rank``; the CEs' own ``Requirements`` read job attributes through
``other``), for jobListMatch, and when it resolves a collection node's ``InputSandbox``.
:func:`check_expressions` refuses, without evaluating anything, a JDL where

* an expression calls a function outside :data:`FUNCTIONS` and :data:`GLITE_FUNCTIONS`: ``eval`` builds expressions at
  run time, ``join``, ``sprintf``, ``formatTime``, ``replace``/``replaceAll``/``regexps`` make
  strings far longer than their arguments, ``evalInEachContext``/``countMatches`` evaluate
  an expression once per element, ``regexpMember``/``stringListRegexpMember`` match a
  regular expression once per element; every function listed returns a value no longer than
  its arguments (or a number, a boolean, a time);
* an attribute calls ``regexp`` more than :data:`MAX_PATTERN_CALLS` times once its references
  are expanded, not counting the calls whose pattern is a string constant without a
  repetition (``*``, ``+``, ``?``, ``{``): each other call may backtrack until PCRE's match
  limit stops it (0.1-0.15 s of CPU for a pattern such as ``^(a+)+$`` on 30 characters,
  measured on the CI machine kind), whatever the JDL's size;
* an attribute calls gLite's ``anyMatch``/``allMatch`` more than :data:`MAX_GLITE_CALLS` times, or one
  inside another more than :data:`MAX_GLITE_NESTING` deep (each call evaluates its second argument
  once per element of its list: :mod:`wmproxy.jdl.glite_functions`), or calls ``regexp`` with a
  pattern :data:`MAX_PATTERN_CALLS` counts inside such a second argument, itself or through an
  attribute it references (the pattern would be matched once per element, as ``regexpMember``'s),
  ``target.name``/``other.name`` included: there they name an element, which may be an ad the JDL
  writes (``anyMatch({ [ F = regexp(...) ] }, isError(target.F) && ...)``), so they count as the
  JDL's nested attributes of that name, each read evaluating the attribute again; a bare
  ``target``/``other`` there counts as the JDL's whole text (a list element the JDL may write,
  which ``member(x, target)`` goes through at each read) unless the call's list is a selection
  from the CE, ``other.x``; or reads there an attribute that reads ``target``/``other`` itself
  or through its references (``X = isError(target.F)``, read as ``X`` in the test: outside a test
  ``target.F`` is the CE's, not counted, but there it is the element's);
* an attribute, a reference or a subscript ``x["name"]`` names an attribute of the shape
  ``WMProxyCall<16 hex digits>_<n>`` or ``WMProxyElement<16 hex digits>_<n>`` (any case, quoted
  too): the service's own names, for evaluating ``anyMatch``/``allMatch`` (drawn at random per
  job: a JDL naming one reads nothing of the service's; other names with these prefixes are the
  JDL's);
* an attribute depends on itself through its references (classad2 evaluates the cycle to
  undefined, but every turn may fan out);
* attribute references are nested more than :data:`MAX_REFERENCE_DEPTH` deep;
* an attribute's *expanded size* is over the JDL's own size plus :data:`MAX_GROWTH`;
* an attribute is selected (``x.name``) from something that may be a list: a list maps the
  selection over its elements, so one selection would be evaluated once per element.

The expanded size of an attribute is the length of its expression, in characters of
classad2's own text of it (blanks aside), once every attribute reference in it is replaced by
the expression it names, again and again. Every operator, function call, reference and
constant evaluation meets is in it, and with the functions allowed no value built is longer
than it: so a JDL that passes costs about as much to evaluate as it is long (times the
nesting), not exponentially more. The bound is checked per attribute, every attribute of the
JDL (nested ads too), whether or not the service evaluates it: a CE's ``Requirements`` may
read any of them.

Names resolve conservatively, as classad2 may resolve them (case-insensitive): a reference
to ``name``, or a selection ``x.name``, counts the largest attribute of that name anywhere in
the JDL (top level or in a nested ad); ``root.name`` and ``.name`` the top-level one;
``other.name`` and ``target.name`` are the CE's attributes (the site's, not counted) unless
the JDL defines attributes named ``other``/``target``, or in the second argument of an
``anyMatch``/``allMatch`` call (above). A nested ad ``[ ... ]`` counts its own text: its
attributes are evaluated when selected, which is a reference; ``x["name"]`` (classad2
subscripts an ad by an attribute name) is the selection ``x.name``, and ``x[S]`` (an index that
is not a constant: ``S = "name"``) reads the largest attribute of any nested ad.

Not bounded here: how deep an expression nests without references (classad2 evaluates a few
hundred levels, deeper the job fails alone: :mod:`wmproxy.services.matchmaking`; how deep it
may be read at all, :mod:`wmproxy.jdl.depth` bounds before classad2 parses the text), and
what one ``regexp`` call costs (PCRE's match limit stops it: at most :data:`MAX_PATTERN_CALLS`
of those per evaluation of an attribute, against each CE).

The text comes from classad2 (``str`` of each expression), read here as tokens only (strings,
numbers, names, operators, brackets): no parser of the ClassAd grammar, no evaluation.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

import classad2

from wmproxy.errors import JdlExpressionError

#: How many attribute references one evaluation may follow, one inside the other
#: (classad2 itself fails at a few hundred).
MAX_REFERENCE_DEPTH = 32
#: Characters an attribute's expanded size may exceed the JDL's own size by (a few
#: milliseconds of classad2 evaluation per CE).
MAX_GROWTH = 64 * 1024
#: ``regexp`` calls an attribute may make once its references are expanded (each may cost a
#: tenth of a second of backtracking before PCRE's match limit stops it).
MAX_PATTERN_CALLS = 8
#: Functions that match a regular expression once per element of a list: refused, as a list
#: may be as long as the JDL (or a CE's attribute) and each match may cost a tenth of a second.
_PER_ELEMENT_PATTERNS = frozenset({"regexpmember", "stringlistregexpmember"})
#: gLite's functions classad2 does not have, which the service evaluates itself in a job's
#: ``Requirements`` and ``Rank`` (:mod:`wmproxy.jdl.glite_functions`).
GLITE_FUNCTIONS = ("anyMatch", "allMatch")
_GLITE = frozenset(name.lower() for name in GLITE_FUNCTIONS)
#: ``anyMatch``/``allMatch`` calls one attribute's expression may make (each node of a
#: collection, each attribute, counts its own).
MAX_GLITE_CALLS = 16
#: How deep ``anyMatch``/``allMatch`` calls may nest, one in another's arguments (2: a call in
#: the second argument of a call, evaluated once per element of the outer list).
MAX_GLITE_NESTING = 2
#: The ClassAd functions a JDL may call (ClassAd function names are case-insensitive).
FUNCTIONS = (
    "isUndefined", "isError", "isString", "isInteger", "isReal", "isList", "isClassAd", "isBoolean",
    "isAbstime", "isReltime",
    "member", "identicalMember", "anyCompare", "allCompare", "size", "sum", "avg", "min", "max",
    "ifThenElse",
    "int", "real", "string", "bool", "floor", "ceiling", "round", "pow", "quantize", "random",
    "time", "absTime", "relTime", "interval", "getYear", "getMonth", "getDayOfYear", "getDayOfMonth",
    "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "getDays", "inDays", "inHours", "inMinutes",
    "inSeconds",
    "strcat", "substr", "strcmp", "stricmp", "toUpper", "toLower", "split", "splitUserName", "splitSlotName",
    "stringListSize", "stringListSum", "stringListAvg", "stringListMin", "stringListMax", "stringListMember",
    "stringListIMember", "stringListsIntersect", "stringListSubsetMatch", "stringListISubsetMatch",
    "regexp",
)
_FUNCTIONS = frozenset(name.lower() for name in FUNCTIONS)
#: The prefixes of the synthetic attributes :mod:`wmproxy.jdl.glite_functions` binds the calls'
#: results and their list elements to: a JDL may not name them (any case, quoted or subscripted).
CALL_PREFIX = "WMProxyCall"
ELEMENT_PREFIX = "WMProxyElement"
#: The shape of those names (:mod:`wmproxy.jdl.glite_functions`: the prefix, 16 hex digits drawn
#: per job and pass, ``_`` and a number), in any case; other names with these prefixes are the JDL's.
_SYNTHETIC = re.compile(rf"(?:{CALL_PREFIX}|{ELEMENT_PREFIX})[0-9a-f]{{16}}_[0-9]+", re.IGNORECASE)

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<quoted>'(?:[^'\\]|\\.)*')
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>>>|=\?=|=!=|\?:|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>!~&|^?:,;=.()\[\]{}])
""", re.VERBOSE | re.DOTALL)
#: A regexp pattern, as classad2 writes the string constant (``\\\\`` for one backslash), that
#: cannot backtrack: literal characters and ``.``, anchors, the escapes ``\\.`` and ``\\-``.
_PLAIN_PATTERN = re.compile(r"(?:[A-Za-z0-9_.:/^$@=, -]|\\\\[.-])*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NAME_START = re.compile(r"[A-Za-z_']")
_BLANKS = re.compile(r"\s+")
_VALUES = frozenset({"true", "false", "undefined", "error"})
_WORD_OPERATORS = frozenset({"is", "isnt"})
#: Scopes classad2 gives a match when the JDL has no attribute of that name.
_CE_SCOPES = frozenset({"other", "target"})
_AD_SCOPES = frozenset({"root", "parent", "my", "self"})
_OPENING = {")": "(", "}": "{", "]": "["}

_Key = tuple[str, str]  # ("any" | "top" | "element" | "nested" | "written", lowercase name)
#: What a bare ``target``/``other`` in the test of a call whose list the JDL may write reads.
_WRITTEN_ELEMENT: _Key = ("written", "")
#: What ``x[index]`` reads when the index is not a constant: any attribute of a nested ad.
_ANY_NESTED: _Key = ("nested", "")


class _Reference(NamedTuple):
    """A reference in an expression: ``how`` is "any" (a name, as classad2 may resolve it
    anywhere), "top" (the top level's) or "select" (``base.name``, resolved once every
    attribute is known; ``base`` starts with "." when it is a selection itself)."""

    how: str
    name: str  # lowercase
    base: str | None = None  # lowercase
    text: str = ""  # as written, for messages
    per_element: bool = False  # made in the second argument of an anyMatch/allMatch call


class Token(NamedTuple):
    """A token of an expression's text: ``kind`` is string, quoted, number, name or op (and, once
    read by :func:`check_expressions`: selected, ad); ``start`` its offset in the text."""

    kind: str
    text: str
    start: int = 0

    @property
    def end(self) -> int:
        """The offset just after it."""
        return self.start + len(self.text)

    @property
    def name(self) -> str:
        """An attribute name's lowercase form (a quoted one unquoted)."""
        text = self.text[1:-1] if self.kind == "quoted" else self.text
        return text.lower()


@dataclass
class _Attribute:
    """One attribute of the JDL (top level or in a nested ad) as read from its text."""

    name: str  # lowercase
    where: str  # for messages: "Requirements", "A20 (in Requirements)"
    top: bool
    size: int = 0  # characters of its own expression, nested ads included
    references: list[_Reference] = field(default_factory=list)
    items: int = 0  # tokens and nested ads directly in its expression
    patterns: int = 0  # regexp calls in its own expression
    glite_calls: int = 0  # anyMatch/allMatch calls in its own expression
    reads_scope: bool = False  # its own expression reads target or other (bare or selected from)
    first_is_ad: bool = False

    @property
    def only_an_ad(self) -> bool:
        """Whether its expression is one nested ad ``[ ... ]`` and nothing else."""
        return self.first_is_ad and self.items == 1


@dataclass
class _Ad:
    """A nested ad being read: whose expression holds it, where its text began, what comes next."""

    owner: _Attribute
    start: int  # characters read before its "["
    expect: str = "name"  # "name", "=" or "expr"
    name: str = ""  # lowercase
    spelled: str = ""


#: What the previous token is after the "]" of a nested ad.
_CLOSED_AD = Token("ad", "]")


def check_expressions(ad: classad2.ClassAd) -> None:
    """Refuse a JDL whose expressions could cost far more to evaluate than the JDL is long.

    See the module's documentation for the bound and why it holds. Nothing is evaluated;
    the check is linear in the JDL's size.

    Raises:
        JdlExpressionError: a function outside :data:`FUNCTIONS` and :data:`GLITE_FUNCTIONS`, an
            attribute that depends on itself, references nested more than :data:`MAX_REFERENCE_DEPTH` deep, an
            expanded size over the JDL's size plus :data:`MAX_GROWTH`, a selection from what
            may be a list, or a text of classad2's that cannot be read (the message names the
            attribute and the bound).
    """
    attributes: list[_Attribute] = []
    own_size = 0
    for name in ad:
        _not_synthetic(name, name, name)
        top = _Attribute(name.lower(), name, top=True, size=len(name))
        text = str(ad.lookup(name))
        constants = _STRINGS.sub("", text)
        if _NAME_START.search(constants) is None:  # strings, numbers, lists of them: nothing to follow
            top.size += len(text) - len(constants) + len(_BLANKS.sub("", constants))
            attributes.append(top)
        else:
            _read(text, top, attributes)
        own_size += top.size
    _Graph(attributes, own_size, own_size + MAX_GROWTH).measure()


def expression_tokens(text: str, where: str = "") -> list[Token]:
    """The tokens of ``text`` (classad2's text of an expression: strings, numbers, names,
    operators, brackets), blanks left out, each with its offset in ``text``.

    Raises:
        JdlExpressionError: ``text`` has a character no token starts with (``where`` names the
            attribute in the message).
    """
    return _tokens(text, where)


def _tokens(text: str, where: str) -> list[Token]:
    tokens: list[Token] = []
    read = 0
    for found in _TOKEN.finditer(text):
        if found.start() != read:
            break
        read = found.end()
        if found.lastgroup != "space":
            tokens.append(Token(found.lastgroup or "", found.group(), found.start()))
    if read != len(text):
        raise JdlExpressionError(f"Attribute {where}: the expression cannot be read at {text[read:][:20]!r}")
    return tokens


def _not_synthetic(name: str, text: str, where: str) -> None:
    """Refuse ``name`` (``text`` as written) when it has the shape of a synthetic name
    (:data:`_SYNTHETIC`): a JDL naming one would read nothing of the service's (the hex part is
    drawn at random per job), but it is refused so that it never shadows one. Other names with
    these prefixes (``WMProxyCallbackURL``) are the JDL's own, as they always were.

    Raises:
        JdlExpressionError: it does (the message names the attribute ``where`` it is).
    """
    if _SYNTHETIC.fullmatch(name):
        raise JdlExpressionError(
            f"Attribute {where} names {text}: names of the shape {CALL_PREFIX}<16 hex digits>_<n> or "
            f"{ELEMENT_PREFIX}<16 hex digits>_<n> (in any case) are the service's own, for evaluating anyMatch() "
            "and allMatch(); a JDL may not use them")


def _ends_operand(token: Token | None) -> bool:
    """Whether ``token`` ends an operand (so that ``[`` after it is a subscript, ``.`` a selection)."""
    if token is None:
        return False
    if token.kind == "op":
        return token.text in (")", "]", "}")
    return not (token.kind == "name" and token.name in _WORD_OPERATORS)


def _read(text: str, top: _Attribute, attributes: list[_Attribute]) -> None:
    """Read one top-level attribute's expression ``text``: its size, references and
    functions, and those of the attributes of the ads nested in it (all added to ``attributes``)."""
    tokens = _tokens(text, top.where)
    attributes.append(top)
    owners = [top]  # whose expression the next token is in
    frames: list[str | _Ad] = []  # what is open: "(", "{", "[" (a subscript) or a nested ad
    read = 0  # characters read
    previous: Token | None = None  # the previous token of the expression being read
    calls = _OpenCalls()  # the anyMatch/allMatch calls open
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        read += len(token.text)
        if token.kind in ("name", "quoted"):
            _not_synthetic(token.name, token.text, owners[-1].where)
        frame = frames[-1] if frames else None
        if isinstance(frame, _Ad) and (frame.expect != "expr" or token.text in (";", "]")):
            if _nested_ad(frame, token, owners, attributes):  # its "]"
                frames.pop()
                frame.owner.size += read - frame.start
                previous = _CLOSED_AD
            else:
                previous = None
            continue
        owner = owners[-1]
        owner.items += 1
        if token.text == "[" and not _ends_operand(previous):
            owner.first_is_ad = owner.items == 1
            frames.append(_Ad(owner, read - 1))
            continue
        owner.size += len(token.text)
        if token.text in ("(", "{", "["):
            constant = index + 1 < len(tokens) and tokens[index + 1].text == "]" and tokens[index].kind in (
                "string", "number")
            if token.text == "[" and constant and tokens[index].kind == "string":  # x["name"]: x.name
                _not_synthetic(tokens[index].text[1:-1].lower(), tokens[index].text, owner.where)
                owner.references.append(_selection(owner, previous, Token("quoted", f"'{tokens[index].text[1:-1]}'"))
                                        ._replace(per_element=bool(calls.per_element)))
            elif token.text == "[" and not constant and previous is not None and previous.text != "}":
                # x[S] with S = "name" selects from an ad too: any attribute of a nested ad
                owner.references.append(_Reference(_ANY_NESTED[0], "", text=f"{previous.text}[...]",
                                                   per_element=bool(calls.per_element)))
            frames.append(token.text)
        elif token.text in _OPENING and token.kind == "op":
            if frame != _OPENING[token.text]:
                raise JdlExpressionError(f"Attribute {owner.where}: the expression cannot be read "
                                         f"(unbalanced {token.text!r})")
            frames.pop()
            calls.closed(len(frames))
        elif token.text == ",":
            calls.comma(len(frames))
        elif token.text == "." and index < len(tokens) and tokens[index].kind in ("name", "quoted"):
            selected = tokens[index]
            _not_synthetic(selected.name, selected.text, owner.where)
            index += 1
            read += len(selected.text)
            owner.size += len(selected.text)
            owner.references.append(_selection(owner, previous, selected)._replace(per_element=bool(calls.per_element)))
            token = Token("selected", selected.text)
        elif token.kind == "name" and index < len(tokens) and tokens[index].text == "(":
            if token.name in _PER_ELEMENT_PATTERNS:
                raise JdlExpressionError(
                    f"Attribute {owner.where} calls {token.text}(), which matches a regular expression once per "
                    "element of a list: the service does not evaluate it in a JDL; use member() or "
                    "stringListMember() with the values, or regexp() on one string")
            if token.name == "regexp":
                cost = _pattern_cost(tokens, index)
                if cost and calls.per_element:
                    raise JdlExpressionError(
                        f"Attribute {owner.where} calls regexp() with a pattern that may backtrack in the second "
                        f"argument of {calls.per_element}(), which is evaluated once per element of a list: the "
                        "service does not evaluate it; use a pattern of plain characters there")
                owner.patterns += cost
            elif token.name in _GLITE:
                calls.opened(owner, token, len(frames), _site_list(tokens, index + 1))
            elif token.name not in _FUNCTIONS:
                raise JdlExpressionError(
                    f"Attribute {owner.where} calls {token.text}(), a function the service does not evaluate in a "
                    f"JDL; a JDL may call: {', '.join(FUNCTIONS)}, and gLite's {', '.join(GLITE_FUNCTIONS)}")
        elif token.kind in ("name", "quoted") and token.name not in _VALUES | _WORD_OPERATORS:
            owner.reads_scope |= token.name in _CE_SCOPES
            owner.references.append(_Reference("any", token.name, text=token.text,
                                                   per_element=bool(calls.per_element)))
            selection = index < len(tokens) and tokens[index].text == "."  # target.x: x's own cost
            if token.name in _CE_SCOPES and calls.per_element and not calls.site_elements and not selection:
                # the element itself, of a list the JDL may write: a constant as long as the JDL
                # at most, which each read (member(x, target)) goes through again
                owner.references.append(_Reference(_WRITTEN_ELEMENT[0], "", text=token.text, per_element=True))
        previous = token
    if frames:
        raise JdlExpressionError(f"Attribute {top.where}: the expression cannot be read (unbalanced brackets)")


@dataclass
class _OpenCall:
    """An ``anyMatch``/``allMatch`` call being read: the depth of its ``(`` among the open
    brackets, the argument being read (0, 1, ...)."""

    depth: int
    name: str
    site_list: bool  # its first argument is other.x (.y ...): the CE's list, the site's elements
    argument: int = 0


@dataclass
class _OpenCalls:
    """The ``anyMatch``/``allMatch`` calls open where an expression is being read."""

    open: list[_OpenCall] = field(default_factory=list)

    @property
    def per_element(self) -> str:
        """The name of the call whose second argument (or later) is being read ("" outside any):
        what is read there is evaluated once per element of the call's list."""
        return next((call.name for call in self.open if call.argument >= 1), "")

    @property
    def site_elements(self) -> bool:
        """Whether the elements ``target``/``other`` name where the next token is read are the
        site's (each open call's list is a selection from the CE or an outer element), not
        anything the JDL writes."""
        return all(call.site_list for call in self.open)

    def opened(self, owner: _Attribute, name: Token, depth: int, site_list: bool) -> None:
        """A call ``name(`` whose ``(`` will be at ``depth`` (the open brackets before it);
        ``site_list``: :attr:`_OpenCall.site_list`."""
        owner.glite_calls += 1
        if owner.glite_calls > MAX_GLITE_CALLS:
            raise JdlExpressionError(
                f"Attribute {owner.where} calls anyMatch() and allMatch() more than {MAX_GLITE_CALLS} times, more "
                "than the service evaluates (each call evaluates its second argument once per element of a list)")
        if len(self.open) >= MAX_GLITE_NESTING:
            raise JdlExpressionError(
                f"Attribute {owner.where} calls {name.text}() in an argument of {self.open[-1].name}() in an "
                f"argument of {self.open[0].name}(): the service evaluates such calls nested "
                f"{MAX_GLITE_NESTING} deep at most")
        self.open.append(_OpenCall(depth, name.text, site_list))

    def comma(self, depth: int) -> None:
        """A ``,`` with ``depth`` brackets open."""
        if self.open and self.open[-1].depth == depth - 1:
            self.open[-1].argument += 1

    def closed(self, depth: int) -> None:
        """A ``)`` closed, ``depth`` brackets left open."""
        if self.open and self.open[-1].depth == depth:
            self.open.pop()


def _site_list(tokens: list[Token], index: int) -> bool:
    """Whether the first argument of the call whose ``(`` is ``tokens[index - 1]`` is
    ``other.x`` or ``target.x`` (``.y`` ...) and nothing else, up to its ``,``."""
    at = index
    if not (at < len(tokens) and tokens[at].kind in ("name", "quoted") and tokens[at].name in _CE_SCOPES):
        return False
    at += 1
    while at + 1 < len(tokens) and tokens[at].text == "." and tokens[at + 1].kind in ("name", "quoted"):
        at += 2
    return at > index + 1 and at < len(tokens) and tokens[at].text == ","


def _pattern_cost(tokens: list[Token], index: int) -> int:
    """1 for a ``regexp`` call whose ``(`` is ``tokens[index]``, 0 when its pattern is a string
    constant of letters, digits, blanks, ``_ . : / ^ $ @ = , -`` and the escapes ``\\.``,
    ``\\-`` only: no group, alternation, class, back-reference or repetition, so PCRE tries
    each start position once (``RegExp("cern.ch", other.X)``, the usual site choice, is not
    counted). Alternation alone backtracks: ``(a|a)`` 25 times costs what ``^(a+)+$`` does."""
    constant = index + 2 < len(tokens) and tokens[index + 1].kind == "string" and tokens[index + 2].text == ","
    return 0 if constant and _PLAIN_PATTERN.fullmatch(tokens[index + 1].text[1:-1]) else 1


def _nested_ad(frame: _Ad, token: Token, owners: list[_Attribute], attributes: list[_Attribute]) -> bool:
    """A token of a nested ad's own syntax: an attribute name, the ``=`` after it, the ``;``
    after its expression, or the ``]`` that closes the ad (True)."""
    if frame.expect == "name" and token.kind in ("name", "quoted"):
        frame.name, frame.spelled, frame.expect = token.name, token.text.strip("'"), "="
        return False
    if frame.expect == "=" and token.text == "=":
        outer = frame.owner.where.split(" (in ")[-1].rstrip(")")
        attribute = _Attribute(frame.name, f"{frame.spelled} (in {outer})", top=False)
        attributes.append(attribute)
        owners.append(attribute)
        frame.expect = "expr"
        return False
    if frame.expect == "expr":  # ";" or "]" after an attribute's expression
        owners.pop()
        frame.expect = "name"
        return token.text == "]"
    if frame.expect == "name" and token.text == "]":
        return True
    raise JdlExpressionError(f"Attribute {frame.owner.where}: the expression cannot be read "
                             f"(a nested ad has {token.text!r} where a name or '=' belongs)")


def _selection(owner: _Attribute, base: Token | None, selected: Token) -> _Reference:
    """The reference ``.selected`` makes: the top level's attribute for ``.name``, any of that
    name after a nested ad ``[ ... ]``, a selection to resolve for ``base.name``.

    Raises:
        JdlExpressionError: ``base`` is neither an attribute reference nor a nested ad (a
            list, say: the selection would be evaluated once per element).
    """
    if not _ends_operand(base):
        return _Reference("top", selected.name, text=f".{selected.text}")
    assert base is not None  # noqa: S101 - _ends_operand(None) is False
    if base is _CLOSED_AD:
        return _Reference("any", selected.name, text=f"[ ... ].{selected.text}")
    if base.kind in ("name", "quoted", "selected") and base.name not in _VALUES:
        return _Reference("select", selected.name, ("." if base.kind == "selected" else "") + base.name,
                          f"{base.text}.{selected.text}")
    raise JdlExpressionError(
        f"Attribute {owner.where} selects .{selected.text} from an expression ending in {base.text!r}: the service "
        "evaluates a selection only from an attribute reference or a nested ad (from a list it is evaluated once "
        "per element)")


class _Measure(NamedTuple):
    """An attribute's measure once its references are expanded."""

    size: int  # characters
    depth: int  # references followed one inside the other
    patterns: int  # regexp calls
    scope: bool = False  # it reads target or other, itself or through its references


class _Graph:
    """The attributes and their references: expanded sizes and reference depths, each
    attribute measured once."""

    def __init__(self, attributes: list[_Attribute], own_size: int, limit: int) -> None:
        self.attributes = attributes
        self.own_size = own_size
        self.limit = limit
        self.any: dict[str, list[_Attribute]] = {}
        self.top: dict[str, _Attribute] = {}
        for attribute in attributes:
            self.any.setdefault(attribute.name, []).append(attribute)
            if attribute.top:
                self.top[attribute.name] = attribute
        self.measured: dict[int, _Measure] = {}  # id(attribute) -> its measure
        self.by_key: dict[_Key, _Measure] = {}
        self.path: list[_Attribute] = []

    def measure(self) -> None:
        for attribute in self.attributes:
            self._measure(attribute)

    def _targets(self, key: _Key) -> list[_Attribute]:
        how, name = key
        if how == "top":
            return [self.top[name]] if name in self.top else []
        if how == "element":
            return [attribute for attribute in self.any.get(name, []) if not attribute.top]
        if key == _ANY_NESTED:
            return [attribute for attribute in self.attributes if not attribute.top]
        return self.any.get(name, [])

    def _key(self, owner: _Attribute, reference: _Reference) -> _Key | None:
        """Where a reference leads (None: nowhere in the JDL: the CE's attribute or undefined)."""
        how, name, base = reference.how, reference.name, reference.base
        if how in (_WRITTEN_ELEMENT[0], _ANY_NESTED[0]):
            return (how, name)
        if how != "select" or base is None:
            return (how, name)
        chained = base.startswith(".")
        base = base.lstrip(".")
        if base in self.any:
            if not all(target.only_an_ad for target in self.any[base]):
                raise JdlExpressionError(
                    f"Attribute {owner.where} selects {reference.text}, from an attribute that is not a nested ad "
                    "[ ... ] everywhere the JDL defines it: the service evaluates a selection only from an "
                    "attribute reference or a nested ad (from a list it is evaluated once per element)")
            return ("any", name)
        if not chained and base in _CE_SCOPES:
            if reference.per_element:
                # in a call's test target/other is an element, maybe an ad the JDL writes (in the
                # list literal, or an attribute the list reads): each read evaluates its attribute again
                return ("element", name)
            return None  # the CE's attribute: the site's expression, not the JDL's
        if not chained and base == "root":
            return ("top", name)
        if chained or base in _AD_SCOPES:
            return ("any", name)
        return None  # undefined.name is undefined

    def _by_key(self, key: _Key) -> _Measure:
        if key == _WRITTEN_ELEMENT:  # a constant of at most the JDL's text (an element that holds an
            return _Measure(self.own_size, 0, 0)  # expression, in a list in it, makes the call an error)
        if key not in self.by_key:
            measures = [self._measure(target) for target in self._targets(key)]
            self.by_key[key] = _Measure(max((m.size for m in measures), default=0),
                                        max((m.depth for m in measures), default=-1),
                                        max((m.patterns for m in measures), default=0),
                                        any(m.scope for m in measures))
        return self.by_key[key]

    def _measure(self, attribute: _Attribute) -> _Measure:
        if id(attribute) in self.measured:
            return self.measured[id(attribute)]
        if any(seen is attribute for seen in self.path):
            cycle = [*self.path[[id(seen) for seen in self.path].index(id(attribute)):], attribute]
            raise JdlExpressionError(
                f"Attribute {attribute.where} depends on itself through its references "
                f"({_chain(cycle)}): the service does not evaluate it")
        if len(self.path) > MAX_REFERENCE_DEPTH:
            self._too_deep(self.path[0], [*self.path, attribute])
        if _names_only(attribute):
            self.measured[id(attribute)] = _Measure(attribute.size, 0, 0)
            return self.measured[id(attribute)]
        self.path.append(attribute)
        size, depth, patterns, scope = attribute.size, 0, attribute.patterns, attribute.reads_scope
        for reference in attribute.references:
            key = self._key(attribute, reference)
            if key is None:
                continue
            below = self._by_key(key)
            if reference.per_element and below.patterns:
                raise JdlExpressionError(
                    f"Attribute {attribute.where} reads {reference.text} in the second argument of an anyMatch() or "
                    f"allMatch() call, which is evaluated once per element of a list, and {reference.text} calls "
                    "regexp() with a pattern that may backtrack: the service does not evaluate it")
            if reference.per_element and below.scope:
                raise JdlExpressionError(
                    f"Attribute {attribute.where} reads {reference.text} in the second argument of an anyMatch() or "
                    f"allMatch() call, and {reference.text} reads target or other (itself or through the attributes "
                    "it reads): there they would name the list's element, not the CE, and the service does not "
                    "bound what that costs; write target.X or other.X in the second argument itself")
            scope |= below.scope
            size += below.size
            depth = max(depth, below.depth + 1)
            patterns += below.patterns
        self.path.pop()
        if depth > MAX_REFERENCE_DEPTH:
            self._too_deep(attribute, [attribute])
        if size > self.limit:
            raise JdlExpressionError(
                f"Attribute {attribute.where} is {size} characters long once each attribute reference in it is "
                f"replaced by the expression it names, more than the service evaluates: the JDL's own size plus "
                f"{MAX_GROWTH} ({self.limit})")
        if patterns > MAX_PATTERN_CALLS:
            raise JdlExpressionError(
                f"Attribute {attribute.where} calls regexp() {patterns} times once each attribute reference in it is "
                f"replaced by the expression it names, more than the service evaluates ({MAX_PATTERN_CALLS}): each "
                "call may cost a tenth of a second against each CE")
        self.measured[id(attribute)] = _Measure(size, depth, patterns, scope)
        return self.measured[id(attribute)]

    @staticmethod
    def _too_deep(attribute: _Attribute, chain: list[_Attribute]) -> NoReturn:
        raise JdlExpressionError(
            f"Attribute {attribute.where}: its attribute references are nested more than {MAX_REFERENCE_DEPTH} deep"
            f"{f' ({_chain(chain)})' if len(chain) > 1 else ''}, more than the service evaluates")


def _chain(attributes: Iterable[_Attribute]) -> str:
    names = [attribute.where.split(" (in ")[0] for attribute in attributes]
    shown = names if len(names) <= 8 else [*names[:4], "...", *names[-3:]]
    return " -> ".join(shown)


def _names_only(attribute: _Attribute) -> bool:
    """A DAG's ``nodes.dependencies``: its node names are read as names (``wmproxy.jdl.compound``),
    never evaluated, so they count their own length, not the node ads they name."""
    return not attribute.top and attribute.name == "dependencies" and attribute.where.endswith("(in nodes)")
