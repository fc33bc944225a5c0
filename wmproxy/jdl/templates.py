"""The JDL returned by the template operations (``wmproxy-behaviour.md`` §9.1-§9.3).

getJobTemplate, getIntParametricJobTemplate, getStringParametricJobTemplate,
getCollectionTemplate and getDAGTemplate only build text: they never touch jobs.
Each function returns a single-line ClassAd, ``[ Name = value; ... ]``, as the
reference's ``toString()`` did, with the attributes in the order §9 lists them.

``requirements`` and ``rank`` are ClassAd *expressions* (inserted unquoted); they are
parsed strictly (:func:`_expression`), so text such as ``true; Executable = "x"`` can
not smuggle attributes in. ``executable`` and ``arguments`` are string literals.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import classad2

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError
from wmproxy.jdl.compound import check_node_names
from wmproxy.jdl.depth import depth_problem
from wmproxy.jdl.graph import CycleError, topological_order
from wmproxy.jdl.parametric import node_name

PLACEHOLDER_EXECUTABLE = "<put executable path>"
PARAM = "_PARAM_"

JOB_TYPES = ("NORMAL", "PARAMETRIC", "INTERACTIVE", "MPI", "PARTITIONABLE", "CHECKPOINTABLE")

# §9.1: a PARAMETRIC job template is merged with this int-parametric template.
_PARAMETRIC_ATTRIBUTES = ("Arguments", "StdInput")
_PARAMETRIC_DEFAULTS = (("Parameters", 4), ("ParameterStart", 0), ("ParameterStep", 1))
# The JobType value each job type adds, in the (fixed) order the reference applies them.
_JOB_TYPE_VALUES = (("PARAMETRIC", "parametric"), ("INTERACTIVE", "interactive"), ("MPI", "mpich"))

# Attributes the parametric templates set themselves; an attribute list naming one is refused.
_PARAMETRIC_OWN = frozenset(
    name.lower() for name in ("Requirements", "Rank", "JobType", "Parameters",
                              "ParameterStart", "ParameterStep")
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
_RESERVED = frozenset(("true", "false", "undefined", "error", "is", "isnt", "parent"))

# A rendered value: a string literal, an int, a parsed expression, a list, or a nested ad.
_Value = Union[str, int, classad2.ExprTree, "list[_Value]", "_Ad"]
_Ad = list[tuple[str, _Value]]


@dataclass
class GraphNode:
    """One ``GraphStructType`` of getDAGTemplate: an optional node name and its children.

    Attributes:
        name: the DAG node name; ``None`` or ``""`` for the (usually unnamed) root.
        children: the nodes that depend on this one.
    """

    name: str | None = None
    children: list[GraphNode] = field(default_factory=list)


def job_template(
    job_types: Sequence[str] | None,
    executable: str,
    arguments: str,
    requirements: str,
    rank: str,
) -> str:
    """The JDL of getJobTemplate (§9.1).

    Args:
        job_types: any of :data:`JOB_TYPES` (case-insensitive, combinable). NORMAL adds
            nothing; PARAMETRIC, INTERACTIVE and MPI each add a ``JobType`` value and
            their attributes; more than one value makes ``JobType`` a list.
        executable: the ``Executable`` string.
        arguments: the ``Arguments`` string, left out when empty (PARAMETRIC replaces it
            with ``"_PARAM_"``).
        requirements: the ``Requirements`` expression.
        rank: the ``Rank`` expression.

    Returns:
        The JDL, on one line.

    Raises:
        InvalidArgumentError: ``job_types`` is null or empty ("Invalid Argument"), names
            an unknown type, ``executable`` is empty, or ``requirements``/``rank`` is
            not a ClassAd expression.
        InvalidJdlAttributeError: PARTITIONABLE or CHECKPOINTABLE ("... jobs have been
            deprecated!", JDL error 1503, a GenericFault in the reference).
    """
    types = _job_types(job_types)
    requirements_expr = _expression("requirements", requirements)
    rank_expr = _expression("rank", rank)
    if not executable:
        raise InvalidArgumentError("Invalid Argument: executable must not be empty")

    ad: dict[str, _Value] = {"Executable": executable}
    if arguments:
        ad["Arguments"] = arguments
    ad["Rank"] = rank_expr
    ad["Requirements"] = requirements_expr
    job_type_values = [value for name, value in _JOB_TYPE_VALUES if name in types]
    if "PARAMETRIC" in types:
        ad.update((name, PARAM) for name in _PARAMETRIC_ATTRIBUTES)
        ad.update(_PARAMETRIC_DEFAULTS)
    if "INTERACTIVE" in types:
        ad["ListenerPort"] = 0
    if "MPI" in types:
        ad["CpuNumber"] = 2
    if job_type_values:
        ad["JobType"] = job_type_values[0] if len(job_type_values) == 1 else list(job_type_values)
    return _render(list(ad.items()))


def int_parametric_template(
    attributes: Sequence[str] | None,
    param: int,
    parameter_start: int,
    parameter_step: int,
    requirements: str,
    rank: str,
) -> str:
    """The JDL of getIntParametricJobTemplate (§9.2).

    Args:
        attributes: the names of the attributes set to ``"_PARAM_"``. Names that are
            not ClassAd identifiers (the CTB test passes ``"input_PARAM_.txt"``) are
            written quoted, ``'input_PARAM_.txt' = "_PARAM_"``.
        param: ``Parameters``, the number of values (at least 1).
        parameter_start: ``ParameterStart`` (not negative).
        parameter_step: ``ParameterStep`` (positive).
        requirements: the ``Requirements`` expression.
        rank: the ``Rank`` expression.

    Returns:
        The JDL, on one line.

    Raises:
        InvalidArgumentError: ``attributes`` is null or empty ("Invalid Argument"), has
            an empty name or one the template sets itself (``Requirements``, ``JobType``,
            ``Parameters``...), ``param`` < 1, ``parameter_start`` < 0,
            ``parameter_step`` < 0, or ``requirements``/``rank`` is not an expression.
        InvalidJdlAttributeError: ``parameter_step`` is 0 (JDL error 1507).
    """
    names = _parametric_attributes(attributes)
    requirements_expr = _expression("requirements", requirements)
    rank_expr = _expression("rank", rank)
    if parameter_step == 0:
        raise InvalidJdlAttributeError(
            "JDL Attribute ParameterStep must be different from zero, division by zero not allowed"
        )
    for label, value, minimum in (("param", param, 1), ("parameterStart", parameter_start, 0),
                                  ("parameterStep", parameter_step, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidArgumentError(
                f"Invalid Argument: {label} must be an integer >= {minimum}, not {value!r}"
            )
    return _render([
        *_parametric_common(names, requirements_expr, rank_expr),
        ("Parameters", param),
        ("ParameterStart", parameter_start),
        ("ParameterStep", parameter_step),
    ])


def string_parametric_template(
    attributes: Sequence[str] | None,
    params: Sequence[str] | None,
    requirements: str,
    rank: str,
) -> str:
    """The JDL of getStringParametricJobTemplate (§9.2): ``Parameters`` is a string list.

    Args:
        attributes: as for :func:`int_parametric_template`.
        params: the parameter values, ``Parameters = { "<p1>", ... }``; not empty, no
            empty or duplicate values, and no two that name the same node: each names a
            node ``Node_<value>`` sanitised (§9.4 step 5), and registration compares those
            names ignoring case (``"X"`` and ``"x"``, ``"a.b"`` and ``"a_b"`` are refused).
        requirements: the ``Requirements`` expression.
        rank: the ``Rank`` expression.

    Returns:
        The JDL, on one line.

    Raises:
        InvalidArgumentError: ``attributes`` or ``params`` is null or empty ("Invalid
            Argument"), see also :func:`int_parametric_template`; an empty or a
            duplicate parameter value, or two values naming the same node (jobRegister
            would refuse the JDL: "Duplicated NodeName(Node_<value>)").
    """
    names = _parametric_attributes(attributes)
    if not params or isinstance(params, str):
        raise InvalidArgumentError("Invalid Argument")
    values: list[_Value] = []
    for value in params:
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"Invalid Argument: parameter value {value!r} is not valid")
        if value in values:
            raise InvalidArgumentError(f"Invalid Argument: duplicated parameter value {value!r}")
        values.append(value)
    try:  # the node names registration gives the values (wmproxy.jdl.parametric.parametric_nodes)
        check_node_names(f"Node_{node_name(value)}" for value in params)
    except JdlError as exc:
        raise InvalidArgumentError(
            f"Invalid Argument: two parameter values name the same node ({exc.message}): a node is named "
            "Node_<value> with . / * $ and other characters replaced, compared ignoring case"
        ) from None
    requirements_expr = _expression("requirements", requirements)
    rank_expr = _expression("rank", rank)
    return _render([
        *_parametric_common(names, requirements_expr, rank_expr),
        ("Parameters", values),
    ])


def collection_template(job_number: int, requirements: str, rank: str) -> str:
    """The JDL of getCollectionTemplate (§9.3).

    ``[ Type = "collection"; Nodes = { [ Rank = ...; Requirements = ...;
    Executable = "<put executable path>"; NodeName = "Node_0" ], ... } ]``.

    Args:
        job_number: the number of nodes (at least 1), named ``Node_0``...
        requirements: every node's ``Requirements`` expression.
        rank: every node's ``Rank`` expression.

    Returns:
        The JDL, on one line.

    Raises:
        InvalidArgumentError: ``job_number`` < 1, or ``requirements``/``rank`` is not
            a ClassAd expression.
    """
    if isinstance(job_number, bool) or not isinstance(job_number, int) or job_number < 1:
        raise InvalidArgumentError(
            f"Invalid Argument: jobNumber must be a positive integer, not {job_number!r}"
        )
    requirements_expr = _expression("requirements", requirements)
    rank_expr = _expression("rank", rank)
    nodes: list[_Value] = [
        [
            ("Rank", rank_expr),
            ("Requirements", requirements_expr),
            ("Executable", PLACEHOLDER_EXECUTABLE),
            ("NodeName", f"Node_{index}"),
        ]
        for index in range(job_number)
    ]
    return _render([("Type", "collection"), ("Nodes", nodes)])


def dag_template(dependencies: GraphNode | None, requirements: str, rank: str) -> str:
    """The JDL of getDAGTemplate (§9.3).

    Every named :class:`GraphNode` of the tree becomes a node
    ``<name> = [ node_type = "edg-jdl"; description = [ Rank; Requirements;
    Executable = "<put executable path>" ] ]`` of ``nodes``, in first-seen (depth
    first) order, and every edge from a named parent to a named child a dependency
    ``{ parent, child }``. A name may appear more than once (a node with several
    parents); it is one node and its edges are merged. Unnamed nodes below the root
    are no nodes, but their children are still visited.

    Args:
        dependencies: the root of the ``GraphStructType`` tree.
        requirements: every node's ``Requirements`` expression.
        rank: every node's ``Rank`` expression.

    Returns:
        The JDL, on one line.

    Raises:
        InvalidArgumentError: ``dependencies`` is null ("Invalid Argument"), a node
            name is not a ClassAd identifier (or is ``dependencies``), two names differ
            only in case (one ClassAd attribute: jobRegister would refuse the JDL), the
            edges form a cycle, or ``requirements``/``rank`` is not a ClassAd expression.
        InvalidJdlAttributeError: the root has no children ("Empty NodeStruct given",
            JDL error 1506).
    """
    if dependencies is None:
        raise InvalidArgumentError("Invalid Argument")
    if not dependencies.children:
        raise InvalidJdlAttributeError("Empty NodeStruct given")
    requirements_expr = _expression("requirements", requirements)
    rank_expr = _expression("rank", rank)

    # Ordered sets (dicts): a node's name and an edge are each looked up once (lists made the
    # walk quadratic: 20,000 children of one node took 7 s).
    named: dict[str, None] = {}
    named_edges: dict[tuple[str, str], None] = {}
    _collect(dependencies, named, named_edges, set())
    names, edges = list(named), list(named_edges)
    try:  # registration's check: ClassAd attribute names, so the node names, ignore case
        check_node_names(names)
    except JdlError as exc:
        raise InvalidArgumentError(
            f"Invalid Argument: two DAG node names differ only in case ({exc.message}): "
            "node names are compared ignoring case"
        ) from None
    _refuse_cycles(names, edges)

    nodes: _Ad = [
        (name, [
            ("node_type", "edg-jdl"),
            ("description", [
                ("Rank", rank_expr),
                ("Requirements", requirements_expr),
                ("Executable", PLACEHOLDER_EXECUTABLE),
            ]),
        ])
        for name in names
    ]
    nodes.append(("dependencies", [
        [classad2.ExprTree(parent), classad2.ExprTree(child)] for parent, child in edges
    ]))
    return _render([("Type", "dag"), ("nodes", nodes)])


# --- argument checks ---

def _job_types(job_types: Sequence[str] | None) -> set[str]:
    """§9.1 and §1.3: the requested job types, upper case; deprecated ones refused."""
    if not job_types or isinstance(job_types, str):
        raise InvalidArgumentError("Invalid Argument")
    types = set()
    for job_type in job_types:
        name = job_type.upper() if isinstance(job_type, str) else ""
        if name not in JOB_TYPES:
            raise InvalidArgumentError(f"Invalid Argument: unknown job type {job_type!r}")
        types.add(name)
    if "PARTITIONABLE" in types:
        raise InvalidJdlAttributeError("Partitionable jobs have been deprecated!")
    if "CHECKPOINTABLE" in types:
        raise InvalidJdlAttributeError("Checkpointable jobs have been deprecated!")
    return types


def _parametric_attributes(attributes: Sequence[str] | None) -> list[str]:
    """§9.2 and §1.3: the attribute names to set to ``"_PARAM_"``, each once."""
    if not attributes or isinstance(attributes, str):
        raise InvalidArgumentError("Invalid Argument")
    names: list[str] = []
    for name in attributes:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"Invalid Argument: attribute name {name!r} is not valid")
        if name.lower() in _PARAMETRIC_OWN:
            raise InvalidArgumentError(
                f"Invalid Argument: attribute {name} is set by the template itself"
            )
        if name.lower() not in (known.lower() for known in names):
            names.append(name)
    return names


def _parametric_common(names: list[str], requirements: classad2.ExprTree,
                       rank: classad2.ExprTree) -> _Ad:
    """§9.2: ``<attr> = "_PARAM_"`` for each name, Requirements, Rank and JobType."""
    ad: _Ad = [(name, PARAM) for name in names]
    return [*ad, ("Requirements", requirements), ("Rank", rank), ("JobType", "parametric")]


def _expression(label: str, text: str) -> classad2.ExprTree:
    """Parse ``text`` as exactly one ClassAd expression.

    ``classad2.ExprTree`` stops at the first token it cannot use (``"a; b = 2"`` gives
    ``a``), so the text is parsed as the value of an attribute with a random name,
    followed by a sentinel attribute with a random value; the text is accepted only if
    the ad has exactly those two attributes and the sentinel survived.

    Raises:
        InvalidArgumentError: ``text`` is empty, not exactly one expression, or may nest more
            than :data:`~wmproxy.jdl.depth.MAX_DEPTH` levels deep.
    """
    if isinstance(text, str) and text.strip():
        if (problem := depth_problem(text)) is not None:  # classad2 would overflow the stack
            raise InvalidArgumentError(f"Invalid Argument: {label}: {problem}")
        token = secrets.token_hex(8)
        name, sentinel = f"wmproxy_expr_{token}", f"wmproxy_end_{token}"
        try:
            ad = classad2.ClassAd(f'[ {name} = {text}\n; {sentinel} = "{token}" ]')
        except classad2.ClassAdException:
            ad = None
        if ad is not None and sorted(ad.keys()) == sorted((name, sentinel)) \
                and ad.get(sentinel) == token:
            return ad.lookup(name)
    raise InvalidArgumentError(
        f"Invalid Argument: {label} is not a valid ClassAd expression: {text!r}"
    )


def _collect(node: GraphNode, names: dict[str, None], edges: dict[tuple[str, str], None],
             visiting: set[int]) -> None:
    """Depth first over the tree: node names in first-seen order and named edges, once each
    (``visiting``: the nodes on the path from the root, a node met again on it is a cycle)."""
    if id(node) in visiting:
        raise InvalidArgumentError("Invalid Argument: the dependencies graph contains a cycle")
    visiting.add(id(node))
    parent = _node_name(node)
    if parent is not None:
        names.setdefault(parent)
    for child in node.children:
        child_name = _node_name(child)
        if parent is not None and child_name is not None:
            edges.setdefault((parent, child_name))
        _collect(child, names, edges, visiting)
    visiting.discard(id(node))


def _node_name(node: GraphNode) -> str | None:
    """The node's name, ``None`` when unnamed; refused unless a usable attribute name."""
    if not node.name:
        return None
    name = node.name
    if not _IDENTIFIER.match(name) or name.lower() in _RESERVED or name.lower() == "dependencies":
        raise InvalidArgumentError(f"Invalid Argument: DAG node name {name!r} is not valid")
    return name


def _refuse_cycles(names: list[str], edges: list[tuple[str, str]]) -> None:
    """A DAG's dependencies must not loop (``a -> b -> a``)."""
    try:
        topological_order(names, edges)
    except CycleError:
        raise InvalidArgumentError("Invalid Argument: the dependencies graph contains a cycle") from None


# --- single-line rendering ---

def _render(ad: _Ad) -> str:
    """``[ Name = value; ... ]`` with the attributes in the given order."""
    if not ad:
        return "[ ]"
    return "[ " + "; ".join(f"{_name(name)} = {_value(value)}" for name, value in ad) + " ]"


def _value(value: _Value) -> str:
    if isinstance(value, str):
        return str(classad2.quote(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, classad2.ExprTree):
        return _one_line(str(value))
    if value and isinstance(value[0], tuple):
        return _render(value)  # type: ignore[arg-type]
    return "{ " + ", ".join(_value(item) for item in value) + " }" if value else "{ }"


def _name(name: str) -> str:
    """An attribute name, quoted (``'input_PARAM_.txt'``) when not a plain identifier."""
    if _IDENTIFIER.match(name) and name.lower() not in _RESERVED:
        return name
    ad = classad2.ClassAd()
    ad[name] = 0
    return str(ad.printOld()).strip().removesuffix("= 0").rstrip()


def _one_line(text: str) -> str:
    """Collapse classad2's pretty-printing whitespace, leaving string literals alone."""
    out: list[str] = []
    quote = ""
    escaped = False
    pending_space = False
    for char in text:
        if quote:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char.isspace():
            pending_space = True
        else:
            if pending_space and out and out[-1] not in "([{" and char not in ")]},;":
                out.append(" ")
            pending_space = False
            if char in "\"'":
                quote = char
            out.append(char)
    return "".join(out)
