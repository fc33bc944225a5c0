"""Parametric jobs → one node ad per parameter value (``bulk2dag``, ``wmproxy-behaviour.md`` §9.4).

``_PARAM_`` is replaced textually in every attribute's expression, as ``bulk2dag``
does over the serialised ad, so ``regexp("_PARAM_", other.X)`` is substituted too. The
value is escaped for a string literal (``"`` and ``\\``), which is where ``_PARAM_``
normally appears. Elsewhere (``Requirements = _PARAM_``) the value becomes expression
text, so the nodes are then checked by :func:`~wmproxy.jdl.check_expressions` as the JDL
was (a value ``"eval(E)"`` would otherwise bring a function the check refuses).
:func:`node_name` is also the sanitiser of collection ``NodeName`` values. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import classad2

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError, JdlExpressionError
from wmproxy.jdl.attributes import (
    copy_without,
    integer,
    is_number,
    set_list,
    shown,
    spelling,
    string_list,
    text,
)
from wmproxy.jdl.expressions import check_expressions
from wmproxy.jdl.parse import parse_jdl

PARAM = "_PARAM_"
#: Attributes ``bulk2dag`` hoists to the DAG level of a parametric job (§9.4 step 7). They
#: are not parametric: ``_PARAM_`` in them is left as written (the reference only warns,
#: "<attr>: Found parametric value for non-parametric attribute"), and every node gets the
#: DAG's value.
PARAMETRIC_DAG_ATTRIBUTES = (
    "VirtualOrganisation", "HLRLocation", "MyProxyServer", "LBAddress",
    "AllowZippedISB", "ZippedISB", "NodesCollocation",
)
PARAMETRIC_ONLY = ("JobType", "Parameters", "ParameterStart", "ParameterStep")

_NAME_MAP = {".": "_", "/": "I", "*": "-", "$": "_S_"}
_NAME_KEEP = re.compile(r"[A-Za-z0-9_-]", re.ASCII)
REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)
"""A bare attribute reference, as classad2 returns unevaluated names in lists."""
_LITERALS = re.compile(r"""("(?:[^"\\]|\\.)*")|'(?:[^'\\]|\\.)*'""", re.DOTALL)
"""A string literal (group 1) or a quoted attribute name, in classad2's text of an ad."""


def node_name(value: str) -> str:
    """A name fragment from a ``NodeName`` or parameter value (§9.4 step 5, widened).

    ``.``→``_``, ``/``→``I``, ``*``→``-``, ``$``→``_S_``; any other character outside
    ``[A-Za-z0-9_-]`` becomes ``_``.
    """
    return "".join(
        _NAME_MAP.get(char, char if _NAME_KEEP.fullmatch(char) else "_") for char in value
    )


def check_count(count: int, what: str, max_nodes: int) -> None:
    """Refuse a compound job with no nodes or more than ``max_nodes``.

    Raises:
        InvalidArgumentError: the message names ``what`` and the counts.
    """
    if count == 0:
        raise InvalidArgumentError(f"The {what} job has no nodes")
    if count > max_nodes:
        raise InvalidArgumentError(f"The {what} job has {count} nodes, more than the allowed {max_nodes}")


def check_size(size: int, what: str, max_bytes: int) -> None:
    """Refuse a compound job whose nodes' JDL would hold more than ``max_bytes`` together.

    Raises:
        InvalidArgumentError: the message names ``what``, the size and the limit.
    """
    if size > max_bytes:
        raise InvalidArgumentError(
            f"The {what} job's nodes would hold {size} bytes of JDL, more than the allowed {max_bytes}"
        )


def parametric_nodes(
    ad: classad2.ClassAd, max_nodes: int, max_bytes: int
) -> tuple[classad2.ClassAd, list[tuple[str, classad2.ClassAd]]]:
    """§9.4 ``bulk2dag``: the DAG-level ad and one ``(Node_<value>, ad)`` per selected value.

    Every node is the whole JDL with ``_PARAM_`` replaced, but for
    :data:`PARAMETRIC_DAG_ATTRIBUTES`, which the DAG and every node hold as written: the size of all of them
    (:func:`expanded_size`) is checked against ``max_bytes`` before any is made. When
    ``_PARAM_`` appears outside the string literals, every node is checked by
    :func:`~wmproxy.jdl.check_expressions` (linear in the nodes' size, which ``max_bytes``
    bounds; skipped otherwise: a value substituted in a string leaves a string).

    Raises:
        InvalidArgumentError: no values, more than ``max_nodes``, or nodes of more than
            ``max_bytes`` together.
        InvalidJdlAttributeError: ``ParameterStep = 0``.
        JdlError: bad ``Parameters``/``ParameterStart``/``ParameterStep``, or a value
            that breaks the JDL when substituted.
        JdlExpressionError: a node, once substituted, fails
            :func:`~wmproxy.jdl.check_expressions` (the message names the node).
    """
    values = parameter_values(ad, max_nodes)
    template = copy_without(ad, PARAMETRIC_ONLY + PARAMETRIC_DAG_ATTRIBUTES)
    template_text = str(template)
    hoisted = [(spelling(ad, attribute), ad.lookup(attribute)) for attribute in PARAMETRIC_DAG_ATTRIBUTES
               if attribute in ad]
    hoisted_size = sum(len(name) + len(str(value)) + 4 for name, value in hoisted)
    check_size(expanded_size(template_text, values) + len(values) * hoisted_size, "parametric", max_bytes)
    keys = {key.lower() for key in template}
    in_expressions = PARAM in _LITERALS.sub(lambda found: '""' if found.group(1) else found.group(), template_text)
    nodes = []
    for value in values:
        node = _substitute(template_text, keys, value, in_expressions)
        for attribute, expression in hoisted:
            node[attribute] = expression
        set_list(node, "Environment", [*string_list(node, "Environment"), f"ParameterValue={value}"])
        name = f"Node_{node_name(value)}"
        if in_expressions:
            _check_node(node, name)
        nodes.append((name, node))

    parent = classad2.ClassAd()
    parent["Type"] = "dag"
    for attribute, expression in hoisted:
        parent[attribute] = expression
    first = nodes[0][1]
    for attribute in ("Requirements", "Rank"):
        if attribute in first:
            parent[spelling(first, attribute)] = first.lookup(attribute)
    return parent, nodes


def expanded_size(template_text: str, values: list[str]) -> int:
    """Characters of the nodes' JDL ``template_text`` gives for ``values``: the text with each
    ``_PARAM_`` replaced, and its ``ParameterValue=<value>`` environment entry."""
    params = template_text.count(PARAM)
    environment = len(', "ParameterValue="')
    return sum(
        len(template_text) + params * (len(_escaped(value)) - len(PARAM)) + environment + len(_escaped(value))
        for value in values
    )


def parameter_values(ad: classad2.ClassAd, max_nodes: int) -> list[str]:
    """§9.4 steps 2-4: ``iters[start]``, ``iters[start+step]``, ... (exclusive bound)."""
    step = integer(ad, "ParameterStep", 1)
    if step == 0:
        raise InvalidJdlAttributeError(
            "JDL Attribute ParameterStep must be different from zero, division by zero not allowed"
        )
    if step < 0:
        raise JdlError(f"Attribute ParameterStep must be positive, not {step}")
    start = integer(ad, "ParameterStart", 0)
    if start < 0:
        raise JdlError(f"Attribute ParameterStart must not be negative, not {start}")
    if "Parameters" not in ad:
        raise JdlError("Mandatory attribute Parameters not set")
    parameters = ad["Parameters"]
    if isinstance(parameters, int) and not isinstance(parameters, (bool, classad2.Value)):
        check_count(max(0, -(-(parameters - start) // step)), "parametric", max_nodes)
        values = [str(value) for value in range(start, parameters, step)]
    elif isinstance(parameters, list):
        values = _flatten(parameters)[start::step]
        check_count(len(values), "parametric", max_nodes)
    else:
        raise JdlError(f"Attribute Parameters must be an integer or a list, not {text(ad, 'Parameters')}")
    return values


def _flatten(items: list[Any]) -> list[str]:
    """§9.4 step 3: strings as they are, numbers printed, bare names by their text.

    ``undefined`` and ``error`` (ints to Python) are refused, as any other literal.
    """
    values: list[str] = []
    for item in items:
        if isinstance(item, list):
            values.extend(_flatten(item))
        elif isinstance(item, str):
            values.append(item)
        elif isinstance(item, bool):
            values.append("true" if item else "false")
        elif is_number(item):
            values.append(str(item))
        elif isinstance(item, classad2.ExprTree) and REFERENCE.fullmatch(str(item).strip()):
            values.append(str(item).strip())
        else:
            raise JdlError(f"Attribute Parameters: {shown(item)} is not a string, number or name")
    return values


def _substitute(template_text: str, keys: set[str], value: str, in_expressions: bool) -> classad2.ClassAd:
    """A new ad: ``template_text`` (the template serialised, its names lower case ``keys``)
    with ``_PARAM_`` replaced textually, parsed back.

    ``classad2.ExprTree(text)`` ignores anything after a ``;``, so the substituted text
    is re-parsed with :func:`wmproxy.jdl.parse_jdl` instead; how deep its expressions nest is
    bounded again only when ``_PARAM_`` is ``in_expressions`` (a value in string literals, escaped,
    leaves the template's expressions as they were).
    """
    node = parse_jdl(template_text.replace(PARAM, _escaped(value)), bounded=not in_expressions)
    if {key.lower() for key in node} != keys:
        raise JdlError(f"The parameter value {value!r} breaks the JDL when substituted for _PARAM_")
    return node


def _check_node(node: classad2.ClassAd, name: str) -> None:
    """:func:`~wmproxy.jdl.check_expressions` on a substituted node.

    Raises:
        JdlExpressionError: the check's, its message prefixed with ``Node <name>: ``.
    """
    try:
        check_expressions(node)
    except JdlExpressionError as exc:
        raise JdlExpressionError(f"Node {name}: {exc.message}") from exc


def _escaped(value: str) -> str:
    """``value`` escaped for the inside of a string literal."""
    return str(classad2.quote(value))[1:-1]
