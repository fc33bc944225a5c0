"""gLite's ``anyMatch`` and ``allMatch`` in a job's ``Requirements`` and ``Rank``, evaluated with
classad2 (which has no such functions) under a budget.

The reference is gLite WMS's ClassAd plugin: ``doMatch`` in
``org.glite.wms.classad_plugin/src/gangmatch/doMatch.cpp`` (italiangrid/org.glite.wms, commit
a12e30a95; registered for both names in ``gangmatch_classad_plugin.cpp:29-30``).
``anyMatch(list, test)`` and ``allMatch(list, test)``, as gLite evaluates them:

* two arguments exactly (doMatch.cpp:35), else error;
* the first is evaluated once, where the call is (``other`` is the CE), and must be a list
  (:39-40), else error (undefined too: a CE that does not publish the list);
* the second must be an operation or a function call, not a bare attribute reference or a
  constant (:44-45: ``OP_NODE``/``FN_CALL_NODE``; ``(target.x)`` is an operation), else error;
* each element in turn is the right ad of a match whose left ad is a copy of the job ad with
  the test as its requirements (:55-58, 74-75): in the test ``target`` and ``other`` both name
  the element (a ClassAd match context binds both to the other side), ``my`` and bare names
  the job's attributes; the CE is out of reach there;
* an element whose test is not a boolean (undefined, error, a number) makes the call an error
  at once (:77-84); in list order, anyMatch is true at the first true element and allMatch false
  at the first false one (:87-92).

Where gLite's last release was broken (a "HEAD bug" in ``wmproxy-behaviour.md``'s terms), what
it meant to do:

* HEAD sets the result to error first (:32) and replaces it only at a deciding element (:90):
  anyMatch without a true element, allMatch without a false one and both on an empty list
  stayed error, and HEAD's allMatch returned its false as a failed evaluation (:114, which an
  enclosing operator turns into error). Here anyMatch is false when no element holds (an empty
  list included) and allMatch true when none fails (an empty list included), false is false.
* HEAD makes a call whose list has an element that is not a ClassAd literal an error (:66-72,
  ``is_classad``): ``GlueHostApplicationSoftwareRunTimeEnvironment``, a list of strings, could
  not be matched. Here an element that is a constant (a string, a number, a boolean, undefined,
  error, a list) is bound as ``target``/``other`` itself:
  ``anyMatch(other.GlueHostApplicationSoftwareRunTimeEnvironment, target == "VO-atlas-x")``. An
  element that is an expression (``{ X, 1 + 1 }``: classad2 gives it unevaluated, out of the
  scope it was written in) is an error, as in gLite.

Where the service differs on purpose:

* Calls are evaluated where the job's ``Requirements`` and ``Rank`` write them (and in their
  arguments, nested :data:`~wmproxy.jdl.expressions.MAX_GLITE_NESTING` deep). A call in another
  attribute of the job, reached through a reference, or in a CE's attribute (a CE's
  ``Requirements``, an attribute read as ``other.X``) stays what classad2 makes of it, an error:
  the value of such an attribute depends on who reads it (in the test of a call ``other`` is
  the element, elsewhere the CE), so one value per CE would be wrong, and the CEs' expressions
  are the site's. :attr:`GliteCalls.elsewhere` names them for the reason of a job no CE matches.
* An element ad is bound in (a copy of) the job ad: a name its own expressions leave
  unresolved reads the job's attribute (in gLite, undefined). Real constants of a
  ``Requirements`` or ``Rank`` that calls them are read back from classad2's text of it, at the
  16 significant digits of its unparser, as every registered JDL is; the elements' values and
  the calls' results are bound through classad2's API, never written into text.
* A :class:`CallBudget` bounds the work of one match pass of a job (jobListMatch, or one claim of
  the job by the broker, the reason of a job left waiting included): list elements evaluated
  and thread CPU time spent evaluating the job's ``Requirements`` and ``Rank``, calls or not
  (:func:`wmproxy.services.matchmaking.matches` counts each whole evaluation). Once it runs out,
  every further call is an error, the CEs left are not tried, and the reason of a job that
  matches nothing says the budget ran out.

How: the calls found in the tokens of classad2's text of ``Requirements``/``Rank`` (no ClassAd
grammar, :func:`wmproxy.jdl.expressions.expression_tokens`) are replaced by references to
synthetic attributes (``WMProxyCall<nonce>_<n>``), and in a call's test ``target``/``other`` by a
reference to the element's synthetic attribute (``WMProxyElement<nonce>_<n>``); ``<nonce>`` is 16
random hexadecimal digits drawn per job and pass, so a JDL cannot name them itself (any name can be
written, quoted: ``'WMProxyElement1'``; and :func:`~wmproxy.jdl.check_expressions` refuses a JDL naming
either prefix, whose reads it would not count); the texts are parsed by
classad2 once per job. Against each CE, unless the rewritten expression has one value whatever
the calls give (:meth:`GliteCalls._decided_without`), each call's list is evaluated once, each
element is bound and the test evaluated by classad2, and the call's result is bound, before
classad2 evaluates the rewritten ``Requirements`` (or ``Rank``) on a copy of the job ad. Every other
result is an error then: the other attribute's calls (``Requirements = ... || Rank > 0`` reads
``Rank``'s as an error, never as computed for an earlier CE) and its own until computed. Pure: no
I/O.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import classad2

from wmproxy.jdl.expressions import CALL_PREFIX, ELEMENT_PREFIX, GLITE_FUNCTIONS, Token, expression_tokens

#: List elements the calls of one job may evaluate in one match pass (3-15 µs of classad2 each for
#: a simple test: 500 elements against 100 CEs fit twice).
MAX_ELEMENTS = 100_000
#: Thread CPU seconds one job's ``Requirements`` and ``Rank`` (their calls included) may spend in one
#: match pass, against all the CEs (a real JDL takes microseconds per CE; eight backtracking
#: ``regexp`` calls, which the check lets through, about a second: the CEs after it are not tried).
MAX_CPU_SECONDS = 3.0
#: Calls of one expression up to which a CE the expression decides whatever they give is
#: recognised before any is evaluated (3 ** this evaluations of the expression, of about 3 µs).
MAX_DECIDED_CALLS = 2
#: The attributes whose calls are evaluated.
EVALUATED = ("Requirements", "Rank")

_GLITE = {name.lower(): name for name in GLITE_FUNCTIONS}
_BOUND = frozenset({"target", "other"})
_OPENERS = {"(": ")", "{": "}", "[": "]"}


class CallBudget:
    """What evaluating one job's ``Requirements`` and ``Rank`` and their ``anyMatch``/``allMatch`` calls
    may cost in one match pass.

    Args:
        elements: list elements the calls may evaluate (:data:`MAX_ELEMENTS`).
        cpu_seconds: thread CPU seconds the evaluations may spend (:data:`MAX_CPU_SECONDS`),
            measured with ``clock`` (``time.thread_time``) while they run
            (:func:`wmproxy.services.matchmaking.matches` counts each evaluation of the job's
            ``Requirements`` and ``Rank`` against a CE, the calls' included).

    Attributes:
        elements: elements evaluated so far.
        lists: list arguments evaluated so far (one per call and CE, never per element).
        exhausted: what ran out ("" while neither did), for the reason.
    """

    def __init__(self, elements: int = MAX_ELEMENTS, cpu_seconds: float = MAX_CPU_SECONDS,
                 clock: Callable[[], float] = time.thread_time) -> None:
        self.max_elements = elements
        self.cpu_seconds = cpu_seconds
        self.clock = clock
        self.elements = 0
        self.lists = 0
        self.spent = 0.0  # CPU seconds of the runs that ended
        self.exhausted = ""
        self._since: float | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count the CPU time spent inside the block (a block inside another counts in the outer one)."""
        if self._since is not None:
            yield
            return
        self._since = self.clock()
        try:
            yield
        finally:
            self.spent += self.clock() - self._since
            self._since = None

    def within(self) -> bool:
        """Whether neither the elements nor the CPU time ran out (False for ever once one did)."""
        if not self.exhausted:
            spent = self.spent + (self.clock() - self._since if self._since is not None else 0.0)
            if self.elements >= self.max_elements:
                self.exhausted = f"{self.max_elements} list elements evaluated"
            elif spent >= self.cpu_seconds:
                self.exhausted = f"{self.cpu_seconds:g} s of CPU spent"
        return not self.exhausted

    def take(self, what: str) -> bool:
        """Whether one more evaluation (``what``: "element" or "list") may run, counted; False
        (for ever) once the elements or the CPU time ran out."""
        if not self.within():
            return False
        if what == "element":
            self.elements += 1
        else:
            self.lists += 1
        return True


@dataclass
class _Call:
    """A call, its arguments parsed by classad2 (nested calls and ``target``/``other`` replaced by
    references to synthetic attributes)."""

    name: str  # as gLite spells it
    result: str  # the synthetic attribute its result is bound to
    element: str  # the synthetic attribute each element is bound to
    arguments: int
    operation: bool  # the second argument is an operation or a call (doMatch.cpp:44-45)
    list_expr: classad2.ExprTree | None = None
    list_calls: list[_Call] = field(default_factory=list)
    test: classad2.ExprTree | None = None
    test_calls: list[_Call] = field(default_factory=list)


class _Reader:
    """The calls of one expression's text, read from its tokens."""

    def __init__(self, text: str, where: str, numbers: Iterator[int], nonce: str) -> None:
        self.text = text
        self.tokens = expression_tokens(text, where)
        self.numbers = numbers
        self.nonce = nonce
        self.closing: dict[int, int] = {}  # index of an opening bracket -> of its closing one
        opened: list[int] = []
        for index, token in enumerate(self.tokens):
            if token.kind == "op" and token.text in _OPENERS:
                opened.append(index)
            elif token.kind == "op" and token.text in (")", "}", "]") and opened:
                self.closing[opened.pop()] = index

    def is_call(self, index: int) -> bool:
        token = self.tokens[index]
        return (token.kind == "name" and token.name in _GLITE and index + 1 in self.closing
                and self.tokens[index + 1].text == "(" and (index == 0 or self.tokens[index - 1].text != "."))

    def region(self, low: int, high: int, bound: str | None) -> tuple[str, list[_Call]]:
        """The text of tokens ``low`` .. ``high`` - 1 with each call in it replaced by its result's
        attribute and, when ``bound`` names an element's attribute, ``target``/``other`` by it."""
        parts: list[str] = []
        calls: list[_Call] = []
        at = self.tokens[low].start if low < high else 0
        index = low
        while index < high:
            token = self.tokens[index]
            if self.is_call(index):
                call = self.call(index, bound)
                calls.append(call)
                parts += [self.text[at:token.start], call.result]
                index = self.closing[index + 1] + 1
                at = self.tokens[index - 1].end
                continue
            if (bound and token.kind in ("name", "quoted") and token.name in _BOUND
                    and (index == low or self.tokens[index - 1].text != ".")):
                parts += [self.text[at:token.start], bound]
                at = token.end
            index += 1
        if low < high:
            parts.append(self.text[at:self.tokens[high - 1].end])
        return "".join(parts), calls

    def call(self, index: int, bound: str | None) -> _Call:
        """The call whose name is token ``index``; ``bound`` as in :meth:`region` (for its list)."""
        close = self.closing[index + 1]
        arguments: list[tuple[int, int]] = []
        start = position = index + 2
        while position < close:
            if position in self.closing:
                position = self.closing[position] + 1
                continue
            if self.tokens[position].text == ",":
                arguments.append((start, position))
                start = position + 1
            position += 1
        if start < close or arguments:
            arguments.append((start, close))
        number = next(self.numbers)
        call = _Call(_GLITE[self.tokens[index].name], f"{CALL_PREFIX}{self.nonce}_{number}",
                     f"{ELEMENT_PREFIX}{self.nonce}_{number}",
                     len(arguments), len(arguments) == 2 and self.is_operation(*arguments[1]))
        if call.arguments == 2:
            text, call.list_calls = self.region(*arguments[0], bound)
            call.list_expr = classad2.ExprTree(text)
            text, call.test_calls = self.region(*arguments[1], call.element)
            call.test = classad2.ExprTree(text)
        return call

    def is_operation(self, low: int, high: int) -> bool:
        """Whether tokens ``low`` .. ``high`` - 1 are an operation or a function call (gLite's
        condition on a test, doMatch.cpp:44-45), not an attribute reference or a constant."""
        previous: Token | None = None
        index = low
        while index < high:
            token = self.tokens[index]
            if token.kind == "op" and token.text in _OPENERS:
                if token.text == "(" or (token.text == "[" and previous is not None):
                    return True  # a call, a parenthesised expression, a subscript
                index = self.closing.get(index, high - 1)  # a list or an ad constant
                previous = self.tokens[index]
            elif (token.kind == "op" and token.text != ".") or (token.kind == "name" and token.name in ("is", "isnt")):
                return True
            else:
                previous = token
            index += 1
        return False


class GliteCalls:
    """The ``anyMatch``/``allMatch`` calls of one job for one match pass against the site's CEs.

    Args:
        job: the job ad (:func:`wmproxy.services.matchmaking.matching_ad`'s), after
            :func:`wmproxy.jdl.check_expressions` (a text it refuses as unreadable is read here
            as calling nothing).
        budget: the pass's budget (a new :class:`CallBudget` when None).
        job_id: the job's id, for the log ("" for jobListMatch).

    Attributes:
        scope: the ad to evaluate the job's ``Requirements`` and ``Rank`` in: the job itself
            when they call nothing, else a copy with the rewritten expressions and the calls'
            results bound (by :meth:`bind`).
        elsewhere: the job's other attributes that call them (not evaluated: an error).
        reasons: why calls were errors, each once, in the order seen (for the reason).
        reading_rank: whether the ``Requirements`` read ``Rank`` (by name, ``my.Rank``...) while
            ``Rank`` calls them: those calls are an error there, named by the reason.
    """

    def __init__(self, job: classad2.ClassAd, budget: CallBudget | None = None, job_id: str = "") -> None:
        self.budget = budget if budget is not None else CallBudget()
        self.job_id = job_id
        self.scope = job
        self.elsewhere: list[str] = []
        self.reasons: list[str] = []
        self.tried = 0  # CEs the Requirements were evaluated against
        self.errors = 0  # of which they were an error
        self._calls: dict[str, list[_Call]] = {}
        self._expressions: dict[str, classad2.ExprTree] = {}
        self._results: dict[str, list[str]] = {}  # attribute -> its calls' synthetic results, nested ones too
        self.reading_rank = False  # Requirements read Rank, whose calls are an error there
        numbers = itertools.count(1)
        nonce = secrets.token_hex(8)  # the synthetic names: a JDL cannot know them, so cannot read them itself
        for name in job:
            text = str(job.lookup(name))
            if not any(function in text.lower() for function in _GLITE):
                continue
            spelled = next((known for known in EVALUATED if known.lower() == name.lower()), None)
            found = _rewritten(text, name, numbers, nonce, evaluated=spelled is not None)
            if found is None:
                continue
            calls, expression = found
            if spelled is None or expression is None:
                self.elsewhere.append(name)
            else:
                self._calls[spelled], self._expressions[spelled] = calls, expression
                self._results[spelled] = [result for call in calls for result in _results(call)]
        if "Rank" in self._expressions and "Requirements" in job:
            self.reading_rank = _reads(str(job.lookup("Requirements")), "rank")
        if self._expressions:
            self.scope = classad2.ClassAd()
            for name in job:  # the expressions themselves: their text would round reals
                self.scope[name] = job.lookup(name)
            for name, expression in self._expressions.items():
                self.scope[name] = expression
            for results in self._results.values():
                for result in results:
                    self.scope[result] = classad2.Value.Error

    def expression(self, attribute: str) -> classad2.ExprTree | None:
        """The job's ``attribute`` (one of :data:`EVALUATED`) to evaluate in :attr:`scope`; None
        when the job has none."""
        if attribute in self._expressions:
            return self._expressions[attribute]
        return self.scope.lookup(attribute) if attribute in self.scope else None

    def bind(self, attribute: str, ce: classad2.ClassAd) -> None:
        """Evaluate the calls of ``attribute`` against ``ce`` and bind their results in
        :attr:`scope` (nothing to do when it calls none).

        Raises:
            Exception: whatever classad2 raises evaluating an argument (the job's expression:
                the caller fails the job, as for the expression itself).
        """
        for other, results in self._results.items():  # never a value computed for another CE, or
            if other != attribute:  # for the other attribute: a call reached through a reference is an error
                for result in results:
                    self.scope[result] = classad2.Value.Error
        calls = self._calls.get(attribute)
        if not calls:
            return
        for result in self._results[attribute]:
            self.scope[result] = classad2.Value.Error
        with self.budget.running():
            if self._decided_without(calls, self._expressions[attribute], ce):
                return
            for call in calls:
                self.scope[call.result] = self._value(call, ce)

    def _decided_without(self, calls: list[_Call], expression: classad2.ExprTree, ce: classad2.ClassAd) -> bool:
        """Whether ``expression`` has one value against ``ce`` whatever its calls give (each is
        true, false or error): ``other.GlueCEStateStatus == "Production" && anyMatch(...)`` against
        a closed CE. Then no call is evaluated (as gLite's ``&&`` would not), for
        :data:`MAX_DECIDED_CALLS` calls at most (3 ** calls evaluations of ``expression``, their
        CPU time in the budget: once it ran out, the calls are errors at once)."""
        if len(calls) > MAX_DECIDED_CALLS:
            return False
        seen: set[str] = set()
        try:
            for results in itertools.product((True, False, classad2.Value.Error), repeat=len(calls)):
                if not self.budget.within():
                    return False
                for call, result in zip(calls, results, strict=True):
                    self.scope[call.result] = result
                seen.add(repr(expression.eval(scope=self.scope, target=ce)))
                if len(seen) > 1:
                    return False
        except Exception:  # noqa: BLE001 - classad2 raises the same on the expression itself: evaluated then
            return False
        return True

    def observe(self, requirements: object) -> None:
        """The value of the job's ``Requirements`` against one more CE."""
        self.tried += 1
        self.errors += requirements is classad2.Value.Error

    def _value(self, call: _Call, target: classad2.ClassAd | None) -> object:
        """``call``'s result (True, False or ``Value.Error``) with ``target`` as ``other``/``target``
        outside its test."""
        if call.list_expr is None or call.test is None:
            return self._error(f"{call.name}() takes two arguments, not {call.arguments}")
        for inner in call.list_calls:
            self.scope[inner.result] = self._value(inner, target)
        if not self.budget.take("list"):
            return self._error(f"the evaluation budget of its anyMatch()/allMatch() calls ran out "
                               f"({self.budget.exhausted})")
        listed = call.list_expr.eval(scope=self.scope, target=target)
        if not isinstance(listed, list):
            return self._error(f"the first argument of {call.name}() is {_kind(listed)}, not a list")
        if not call.operation:
            return self._error(f"the second argument of {call.name}() is neither an operation nor a function call")
        for element in listed:
            if not self.budget.take("element"):
                return self._error(f"the evaluation budget of its anyMatch()/allMatch() calls ran out "
                                   f"({self.budget.exhausted})")
            if isinstance(element, classad2.ExprTree) or _holds_expression(element):  # classad2 leaves it
                # unevaluated, out of its scope; in a list, each read of the element would evaluate it again
                return self._error(f"an element of the list of {call.name}() is an expression, not a constant or "
                                   "an ad")
            try:
                self.scope[call.element] = element
            except Exception:  # noqa: BLE001 - a value classad2 gives but does not take back
                return self._error(f"an element of the list of {call.name}() is {_kind(element)}, which the "
                                   "service cannot bind")
            ad = element if isinstance(element, classad2.ClassAd) else None
            for inner in call.test_calls:
                self.scope[inner.result] = self._value(inner, ad)
            holds = call.test.eval(scope=self.scope, target=ad)
            if not isinstance(holds, bool):
                return self._error(f"the second argument of {call.name}() is {_kind(holds)} for an element, "
                                   "not a boolean")
            if holds is (call.name == "anyMatch"):
                return holds
        return call.name == "allMatch"

    def _error(self, reason: str) -> object:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return classad2.Value.Error


def _rewritten(text: str, where: str, numbers: Iterator[int], nonce: str, *,
               evaluated: bool) -> tuple[list[_Call], classad2.ExprTree | None] | None:
    """The calls of an attribute's ``text`` and its text rewritten, parsed by classad2 (([], None)
    when not ``evaluated``); None when it calls none, or cannot be read (check_expressions refuses
    such a text; classad2 makes it an error)."""
    try:
        reader = _Reader(text, where, numbers, nonce)
        if not any(reader.is_call(index) for index in range(len(reader.tokens))):
            return None
        if not evaluated:
            return [], None
        rewritten, calls = reader.region(0, len(reader.tokens), None)
        return calls, classad2.ExprTree(rewritten)
    except Exception:  # noqa: BLE001 - whatever classad2 or the tokens raise: not read
        return None


def _results(call: _Call) -> Iterator[str]:
    """The synthetic attributes ``call`` and the calls in its arguments bind their results to."""
    yield call.result
    for inner in (*call.list_calls, *call.test_calls):
        yield from _results(inner)


def _reads(text: str, name: str) -> bool:
    """Whether the expression ``text`` refers to the job's attribute ``name`` (lowercase) by
    itself or as ``my.``/``self.``/``root.`` ``name`` (a token read, no grammar)."""
    try:
        tokens = expression_tokens(text)
    except Exception:  # noqa: BLE001 - unreadable: check_expressions refuses it
        return False
    for index, token in enumerate(tokens):
        if token.kind in ("name", "quoted") and token.name == name:
            before = tokens[index - 1] if index else None
            if before is None or before.text != ".":
                return True
            scope = tokens[index - 2] if index >= 2 else None
            if scope is None or (scope.kind in ("name", "quoted") and scope.name in ("my", "self", "root")):
                return True
    return False


def _holds_expression(value: object) -> bool:
    """Whether ``value`` is a list with an expression classad2 left unevaluated in it, at any
    depth (``{ { regexp(...) } }``'s element): ads aside, whose attributes are read by selection."""
    return isinstance(value, list) and any(
        isinstance(item, classad2.ExprTree) or _holds_expression(item) for item in value)


def _kind(value: object) -> str:
    """How a reason names a value that is not what a call needs."""
    if value is classad2.Value.Undefined:
        return "undefined"
    if value is classad2.Value.Error:
        return "an error"
    if isinstance(value, classad2.ClassAd):
        return "a ClassAd"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a " + type(value).__name__
