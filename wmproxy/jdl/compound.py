"""Collections, DAGs and parametric jobs → their nodes (``wmproxy-behaviour.md`` §9.4, §9.5).

:func:`expand` turns a compound JDL into a :class:`CompoundJob`: the DAG-level ad, one
complete job ad per node (inheritance, ``_PARAM_`` and ``root.InputSandbox[i]``
resolved, each validated with :func:`wmproxy.jdl.describe`) and the dependencies.
:func:`dag_order` gives a topological order of the nodes.

Decisions where the reference is silent or differs from gLite:

* Node order (``NodeSpec.index``, the *i* of ``child_job_id``, §2.3): the order of
  the ``Nodes`` list for collections and list-form DAGs, of the values for parametric
  jobs, and alphabetical (case-insensitive) for ``nodes = [ a = ...; b = ... ]``. The
  reference infers gLite's order from the classad's internal order; classad2's
  ``keys()`` is a hash order that may change between versions, and child ids must
  not, hence the sort.
* Node names: a DAG node keeps its attribute name; a collection node is ``NodeName``
  or ``Node_<i>``; a parametric node is ``Node_<value>``. ``NodeName`` and parameter
  values are sanitised as ``bulk2dag`` does (``.``→``_``, ``/``→``I``, ``*``→``-``,
  ``$``→``_S_``) and, beyond the reference, any other character outside
  ``[A-Za-z0-9_-]`` becomes ``_`` so that names are safe on the wire and in logs.
  Names are compared case-insensitively, like ClassAd attribute names; a duplicate is
  ``JdlError("Duplicated NodeName(<name>)")``.
* Input sandbox: every node's local files are uploaded once into the parent's input
  area. ``CompoundJob.parent_isb_files`` is the union (the parent's own entries first);
  the parent ad's ``InputSandbox`` lists the same entries. Two different local
  entries with the same file name (``a/x.txt``, ``b/x.txt``) cannot share that area,
  so they are refused with a :class:`JdlError` (gLite kept "pathametric" entries per
  node; this version does not).
* ``RetryCount`` of a node: its own, else the parent's ``DefaultNodeRetryCount``, else
  the parent's ``RetryCount`` (likewise for ``ShallowRetryCount``).
* ``_PARAM_`` is replaced textually in every attribute's expression, as ``bulk2dag``
  does over the serialised ad, so ``regexp("_PARAM_", other.X)`` is substituted too.
  The value is escaped for a string literal (``"`` and ``\\``), which is where
  ``_PARAM_`` normally appears.

classad2 pitfalls met here: reading a list (``ad["Nodes"]``) evaluates the list but
not its elements, so a bare name such as ``nodeA`` in ``dependencies`` or
``Parameters`` comes back as an unevaluated :class:`classad2.ExprTree` whose text is
the name; ``root.InputSandbox[0]`` in a node's list is such an ExprTree as well and is
evaluated here against an ad holding only the parent's ``InputSandbox``.
``classad2.ExprTree(text)`` ignores anything after a ``;``, so substituted text is
re-parsed with :func:`wmproxy.jdl.parse_jdl` instead.

Pure: no I/O.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import classad2

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError
from wmproxy.jdl.description import JobDescription, _job_kind, _job_type, describe, string_list
from wmproxy.jdl.parse import parse_jdl
from wmproxy.jdl.registered import input_sandbox_files, is_remote_uri

CompoundKind = Literal["dag", "collection", "parametric"]

DEFAULT_MAX_NODES = 10_000
PARAM = "_PARAM_"

#: Parent attributes a DAG or collection node gets when it does not set them (§9.5
#: list, the brief's list, plus FuzzyRank which goes with Rank).
INHERITED_ATTRIBUTES = (
    "Executable", "Arguments", "StdInput", "StdOutput", "StdError",
    "InputSandbox", "OutputSandbox", "Environment", "VirtualOrganisation",
    "Requirements", "Rank", "FuzzyRank", "MyProxyServer", "RetryCount", "ShallowRetryCount",
)
#: Parent attribute → node attribute it defaults (regression test 31669).
NODE_DEFAULTS = (
    ("DefaultNodeRetryCount", "RetryCount"),
    ("DefaultNodeShallowRetryCount", "ShallowRetryCount"),
)
#: Attributes ``bulk2dag`` hoists to the DAG level of a parametric job (§9.4 step 7).
PARAMETRIC_DAG_ATTRIBUTES = (
    "VirtualOrganisation", "HLRLocation", "MyProxyServer", "LBAddress",
    "AllowZippedISB", "ZippedISB", "NodesCollocation",
)
_PARAMETRIC_ONLY = ("JobType", "Parameters", "ParameterStart", "ParameterStep")
_NODE_LIST = "Nodes"
_DEPENDENCIES = "Dependencies"

_NAME_MAP = {".": "_", "/": "I", "*": "-", "$": "_S_"}
_NAME_KEEP = re.compile(r"[A-Za-z0-9_-]", re.ASCII)
_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a compound job.

    Attributes:
        name: the node name (``nodeA``, ``Node_0``, ``Node_100``, a ``NodeName``).
        ad: the node's complete job JDL after inheritance and substitution; a ClassAd
            of its own, sharing nothing with the parent or other nodes.
        index: position in node order, the *i* of :func:`wmproxy.domain.child_job_id`.
        isb_files: the file names (from the parent's input area) the node needs.
        description: ``describe(ad)``.
    """

    name: str
    ad: classad2.ClassAd
    index: int
    isb_files: tuple[str, ...] = ()
    description: JobDescription = JobDescription()


@dataclass(frozen=True)
class CompoundJob:
    """A collection, DAG or parametric job, expanded.

    Attributes:
        kind: ``dag``, ``collection`` or ``parametric``.
        parent_ad: the DAG-level JDL: ``Type = "dag"``, without the node list,
            dependencies and parametric attributes, with ``InputSandbox`` set to the
            union of all entries (absent when there are none).
        nodes: the nodes in node order.
        dependencies: ``(parent node, child node)`` pairs, each once, in JDL order.
        parent_isb_files: the file names to upload once into the parent's input area.
    """

    kind: CompoundKind
    parent_ad: classad2.ClassAd
    nodes: tuple[NodeSpec, ...]
    dependencies: tuple[tuple[str, str], ...] = ()
    parent_isb_files: tuple[str, ...] = ()

    def node(self, name: str) -> NodeSpec:
        """The node called ``name`` (case-insensitive).

        Raises:
            KeyError: no such node.
        """
        for spec in self.nodes:
            if spec.name.lower() == name.lower():
                return spec
        raise KeyError(name)


def compound_kind(ad: classad2.ClassAd) -> CompoundKind | None:
    """``dag``, ``collection``, ``parametric`` or ``None`` for a simple job.

    Raises:
        InvalidJdlAttributeError: bad ``Type`` or composite ``JobType`` (§3.1 steps 7-8).
        JdlError: ``JobType`` is not a known type.
    """
    kind = _job_kind(ad)
    if kind == "dag":
        return "dag"
    if kind == "collection":
        return "collection"
    return "parametric" if _job_type(ad) == "parametric" else None


def expand(ad: classad2.ClassAd, *, max_nodes: int = DEFAULT_MAX_NODES) -> CompoundJob | None:
    """Expand a collection, DAG or parametric JDL into its nodes (§9.4, §9.5).

    Args:
        ad: the parsed JDL; not modified.
        max_nodes: the most nodes a job may have.

    Returns:
        The expanded job, or ``None`` for a simple job.

    Raises:
        InvalidArgumentError: no nodes, more than ``max_nodes`` nodes, a node given
            by ``file`` (the client must inline it), a nested DAG, collection or
            parametric node, or an unsupported ``node_type``.
        InvalidJdlAttributeError: ``ParameterStep = 0``, bad ``Type``/``JobType``.
        JdlError: a malformed node list, ``Parameters`` or dependency, a duplicated
            or unknown node name, a dependency cycle (the message names it), an
            ``InputSandbox`` reference that names no parent entry, two input files
            with the same name, or a node that fails :func:`describe` (the message
            is prefixed with ``Node <name>: ``).
    """
    kind = compound_kind(ad)
    if kind is None:
        return None
    if "edg_jobid" in ad:
        raise JdlError("jobid attribute already exists")
    dependencies: list[tuple[str, str]] = []
    if kind == "parametric":
        parent, raw_nodes = _parametric(ad, max_nodes)
        own_isb = [entry for entry in string_list(ad, "InputSandbox") if PARAM not in entry]
    else:
        parent = _copy_without(ad, (_NODE_LIST, _DEPENDENCIES))
        parent["Type"] = "dag"
        raw_nodes = _collection(ad, max_nodes) if kind == "collection" else _dag(ad, max_nodes)
        own_isb = list(string_list(ad, "InputSandbox"))
    names = _check_names(name for name, _ in raw_nodes)
    if kind == "dag":
        dependencies = _dependencies(ad, names)
        _check_acyclic([name for name, _ in raw_nodes], dependencies)
    scope = classad2.ClassAd()
    scope["InputSandbox"] = list(string_list(ad, "InputSandbox"))

    nodes = []
    for index, (name, node) in enumerate(raw_nodes):
        if kind != "parametric":
            _inherit(node, ad)
        _refuse_nested(node, name)
        _resolve_isb_references(node, scope, name)
        description = _describe_node(node, name)
        nodes.append(NodeSpec(name, node, index, tuple(input_sandbox_files(description)), description))

    entries = _isb_union(own_isb, (spec.description.input_sandbox for spec in nodes))
    if entries:
        _set(parent, "InputSandbox", entries)
    else:
        _delete(parent, "InputSandbox")
    return CompoundJob(
        kind=kind,
        parent_ad=parent,
        nodes=tuple(nodes),
        dependencies=tuple(dependencies),
        parent_isb_files=tuple(_file_name(entry) for entry in entries if not is_remote_uri(entry)),
    )


def dag_order(job: CompoundJob) -> list[str]:
    """A topological order of the nodes: parents first, ties broken by node name.

    Args:
        job: an expanded job (collections and parametric jobs have no dependencies).

    Returns:
        Every node name once.

    Raises:
        JdlError: the dependencies have a cycle (not after :func:`expand`).
    """
    return _topological([spec.name for spec in job.nodes], list(job.dependencies))


# --- collections and DAGs ---

def _collection(ad: classad2.ClassAd, max_nodes: int) -> list[tuple[str, classad2.ClassAd]]:
    """§9.5: ``Nodes = { [...], ... }``; names from ``NodeName`` or ``Node_<i>``."""
    elements = _node_elements(ad, "collection", max_nodes)
    nodes = []
    for index, element in enumerate(elements):
        node = _fresh(element)
        _refuse_file(node, f"Node_{index}")
        nodes.append((_take_node_name(node, default=f"Node_{index}"), node))
    return nodes


def _dag(ad: classad2.ClassAd, max_nodes: int) -> list[tuple[str, classad2.ClassAd]]:
    """§9.5: ``nodes = [ a = [ description = [...] ]; ...; dependencies = {...} ]`` or a list."""
    if _NODE_LIST not in ad:
        raise JdlError("Mandatory attribute nodes not set")
    value = ad[_NODE_LIST]
    if not isinstance(value, classad2.ClassAd):
        return [
            _dag_list_node(element, index)
            for index, element in enumerate(_node_elements(ad, "DAG", max_nodes))
        ]
    names = sorted(
        (key for key in value.keys() if key.lower() != _DEPENDENCIES.lower()),
        key=lambda key: (key.lower(), key),
    )  # keys() is classad2's hash order, not the JDL's: sort for stable child ids
    _check_count(len(names), "DAG", max_nodes)
    nodes = []
    for name in names:
        entry = value[name]
        if not isinstance(entry, classad2.ClassAd):
            raise JdlError(f"DAG node {name} must be a ClassAd")
        nodes.append((name, _node_description(entry, name)))
    return nodes


def _dag_list_node(element: classad2.ClassAd, index: int) -> tuple[str, classad2.ClassAd]:
    """A node of the list form: ``[ name = "a"; description = [...] ]`` or a job ad with NodeName."""
    wrapper = _fresh(element)
    if "description" in wrapper or "file" in wrapper:
        name = _take_node_name(wrapper, default=f"Node_{index}", attribute="name")
        name = _take_node_name(wrapper, default=name)  # NodeName wins over name
        return name, _node_description(wrapper, name)
    return _take_node_name(wrapper, default=f"Node_{index}"), wrapper


def _node_description(entry: classad2.ClassAd, name: str) -> classad2.ClassAd:
    """The job ad of a DAG node entry ``[ node_type = "edg-jdl"; description = [...] ]``."""
    _refuse_file(entry, name)
    if "node_type" in entry:
        node_type = entry["node_type"]
        if not isinstance(node_type, str) or node_type.lower() != "edg-jdl":
            raise InvalidArgumentError(f"DAG node {name}: node_type {_text(entry, 'node_type')} is not supported")
    if "description" not in entry:
        raise JdlError(f"DAG node {name}: mandatory attribute description not set")
    description = entry["description"]
    if not isinstance(description, classad2.ClassAd):
        raise JdlError(f"DAG node {name}: attribute description must be a ClassAd")
    return _fresh(description)


def _node_elements(ad: classad2.ClassAd, what: str, max_nodes: int) -> list[classad2.ClassAd]:
    """The ``Nodes`` list, every element a ClassAd, at least one, at most ``max_nodes``."""
    if _NODE_LIST not in ad:
        raise JdlError("Mandatory attribute Nodes not set")
    value = ad[_NODE_LIST]
    if not isinstance(value, list) or not all(isinstance(item, classad2.ClassAd) for item in value):
        raise JdlError(f"Attribute Nodes must be a list of ClassAds, not {_text(ad, _NODE_LIST)}")
    _check_count(len(value), what, max_nodes)
    return value


def _refuse_file(node: classad2.ClassAd, name: str) -> None:
    if "file" in node:
        raise InvalidArgumentError(
            f"Node {name} is given by file ({_text(node, 'file')}): nodes given by file "
            "must be inlined by the client"
        )


def _refuse_nested(node: classad2.ClassAd, name: str) -> None:
    """DAG nodes cannot be DAGs, collections or parametric jobs (§2.3)."""
    if _NODE_LIST in node or compound_kind(node) is not None:
        raise InvalidArgumentError(f"nested DAGs are not supported (node {name})")


def _dependencies(ad: classad2.ClassAd, names: dict[str, str]) -> list[tuple[str, str]]:
    """Pairs from ``nodes.dependencies`` and top-level ``Dependencies``; lists mean all pairs."""
    sources = []
    nodes = ad[_NODE_LIST]
    if isinstance(nodes, classad2.ClassAd) and _DEPENDENCIES in nodes:
        sources.append((nodes, nodes[_DEPENDENCIES]))
    if _DEPENDENCIES in ad:
        sources.append((ad, ad[_DEPENDENCIES]))
    pairs: list[tuple[str, str]] = []
    for holder, value in sources:
        if not isinstance(value, list):
            raise JdlError(f"Attribute dependencies must be a list of pairs, not {_text(holder, _DEPENDENCIES)}")
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise JdlError(f"Attribute dependencies: {_shown(item)} is not a pair {{parent, child}}")
            for parent in _dependency_names(item[0], names):
                for child in _dependency_names(item[1], names):
                    if (parent, child) not in pairs:
                        pairs.append((parent, child))
    return pairs


def _dependency_names(side: Any, names: dict[str, str]) -> list[str]:
    """One side of a pair: a node reference, a string, or a list of those."""
    items = side if isinstance(side, list) else [side]
    result = []
    for item in items:
        if isinstance(item, classad2.ExprTree) and _REFERENCE.fullmatch(str(item).strip()):
            text = str(item).strip()
        elif isinstance(item, str):
            text = item
        else:
            raise JdlError(f"Attribute dependencies: {_shown(item)} is not a node name")
        if text.lower() not in names:
            raise JdlError(f"Attribute dependencies names an unknown node: {text}")
        result.append(names[text.lower()])
    return result


def _check_acyclic(names: list[str], pairs: list[tuple[str, str]]) -> None:
    _topological(names, pairs)


def _topological(names: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm with a heap on the name; a cycle is reported with its path."""
    children: dict[str, list[str]] = {name: [] for name in names}
    waiting = dict.fromkeys(names, 0)
    for parent, child in pairs:
        children[parent].append(child)
        waiting[child] += 1
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(names):
        left = {name for name, count in waiting.items() if count > 0}
        raise JdlError("Dependency cycle between DAG nodes: " + " -> ".join(_find_cycle(left, pairs)))
    return order


def _find_cycle(left: set[str], pairs: list[tuple[str, str]]) -> list[str]:
    """A cycle among the nodes Kahn could not order, as ``[a, b, ..., a]``.

    Every such node still has a parent among them, so walking from parent to parent
    must come back to a node already seen.
    """
    parents: dict[str, list[str]] = {name: [] for name in left}
    for parent, child in pairs:
        if parent in left and child in left:
            parents[child].append(parent)
    walk, seen = [min(left)], {min(left): 0}
    while True:
        parent = min(parents[walk[-1]])
        if parent in seen:
            cycle = [*walk[seen[parent]:], parent]
            return cycle[::-1]
        seen[parent] = len(walk)
        walk.append(parent)


# --- parametric jobs ---

def _parametric(ad: classad2.ClassAd, max_nodes: int) -> tuple[classad2.ClassAd, list[tuple[str, classad2.ClassAd]]]:
    """§9.4 ``bulk2dag``: one node per selected parameter value."""
    values = _parameter_values(ad, max_nodes)
    template = _copy_without(ad, _PARAMETRIC_ONLY)
    nodes = []
    for value in values:
        node = _substitute(template, value)
        _set(node, "Environment", [*string_list(node, "Environment"), f"ParameterValue={value}"])
        nodes.append((f"Node_{node_name(value)}", node))

    parent = classad2.ClassAd()
    parent["Type"] = "dag"
    for attribute in PARAMETRIC_DAG_ATTRIBUTES:
        if attribute in ad:
            parent[_spelling(ad, attribute)] = ad.lookup(attribute)
    first = nodes[0][1]
    for attribute in ("Requirements", "Rank"):
        if attribute in first:
            parent[_spelling(first, attribute)] = first.lookup(attribute)
    return parent, nodes


def _parameter_values(ad: classad2.ClassAd, max_nodes: int) -> list[str]:
    """§9.4 steps 2-4: ``iters[start]``, ``iters[start+step]``, ... (exclusive bound)."""
    step = _integer(ad, "ParameterStep", 1)
    if step == 0:
        raise InvalidJdlAttributeError(
            "JDL Attribute ParameterStep must be different from zero, division by zero not allowed"
        )
    if step < 0:
        raise JdlError(f"Attribute ParameterStep must be positive, not {step}")
    start = _integer(ad, "ParameterStart", 0)
    if start < 0:
        raise JdlError(f"Attribute ParameterStart must not be negative, not {start}")
    if "Parameters" not in ad:
        raise JdlError("Mandatory attribute Parameters not set")
    parameters = ad["Parameters"]
    if isinstance(parameters, int) and not isinstance(parameters, bool):
        _check_count(max(0, -(-(parameters - start) // step)), "parametric", max_nodes)
        values = [str(value) for value in range(start, parameters, step)]
    elif isinstance(parameters, list):
        values = _flatten_parameters(parameters)[start::step]
        _check_count(len(values), "parametric", max_nodes)
    else:
        raise JdlError(f"Attribute Parameters must be an integer or a list, not {_text(ad, 'Parameters')}")
    return values


def _flatten_parameters(items: list[Any]) -> list[str]:
    """§9.4 step 3: strings as they are, numbers printed, bare names by their text."""
    values: list[str] = []
    for item in items:
        if isinstance(item, list):
            values.extend(_flatten_parameters(item))
        elif isinstance(item, str):
            values.append(item)
        elif isinstance(item, bool):
            values.append("true" if item else "false")
        elif isinstance(item, (int, float)):
            values.append(str(item))
        elif isinstance(item, classad2.ExprTree) and _REFERENCE.fullmatch(str(item).strip()):
            values.append(str(item).strip())
        else:
            raise JdlError(f"Attribute Parameters: {_shown(item)} is not a string, number or name")
    return values


def _substitute(template: classad2.ClassAd, value: str) -> classad2.ClassAd:
    """A new ad: ``template`` serialised, ``_PARAM_`` replaced textually, parsed back."""
    text = str(template).replace(PARAM, classad2.quote(value)[1:-1])
    node = parse_jdl(text)
    if {key.lower() for key in node.keys()} != {key.lower() for key in template.keys()}:
        raise JdlError(f"The parameter value {value!r} breaks the JDL when substituted for _PARAM_")
    return node


def node_name(value: str) -> str:
    """A name fragment from a ``NodeName`` or parameter value (§9.4 step 5, widened)."""
    return "".join(
        _NAME_MAP.get(char, char if _NAME_KEEP.fullmatch(char) else "_") for char in value
    )


# --- shared steps ---

def _inherit(node: classad2.ClassAd, parent: classad2.ClassAd) -> None:
    """§9.5: parent attributes the node lacks; node defaults first (they beat RetryCount)."""
    for default, target in NODE_DEFAULTS:
        if default in parent and target not in node:
            node[target] = parent.lookup(default)
    for attribute in INHERITED_ATTRIBUTES:
        if attribute in parent and attribute not in node:
            node[_spelling(parent, attribute)] = parent.lookup(attribute)


def _resolve_isb_references(node: classad2.ClassAd, scope: classad2.ClassAd, name: str) -> None:
    """Replace ``root.InputSandbox[i]`` entries with the parent's entry (§9.4 step 8).

    ``scope`` holds only the parent's ``InputSandbox``; ``root`` evaluates to it.
    """
    if "InputSandbox" not in node:
        return
    value = node["InputSandbox"]
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return  # plain strings: nothing to resolve
    if isinstance(value, list):
        items = [item.eval(scope) if isinstance(item, classad2.ExprTree) else item for item in value]
    else:
        evaluated = node.lookup("InputSandbox").eval(scope)
        items = evaluated if isinstance(evaluated, list) else [evaluated]
    if not all(isinstance(item, str) for item in items):
        raise JdlError(
            f"Node {name}: InputSandbox {_text(node, 'InputSandbox')} does not name entries "
            "of the parent's InputSandbox"
        )
    _set(node, "InputSandbox", items)


def _describe_node(node: classad2.ClassAd, name: str) -> JobDescription:
    try:
        return describe(node)
    except (JdlError, InvalidJdlAttributeError, InvalidArgumentError) as exc:
        raise type(exc)(f"Node {name}: {exc.message}") from None


def _isb_union(own: list[str], per_node: Iterable[tuple[str, ...]]) -> list[str]:
    """Every entry once, parent's first; two local entries may not share a file name."""
    entries: dict[str, None] = {}  # insertion-ordered set
    by_name: dict[str, str] = {}
    for group in (own, *per_node):
        for entry in group:
            if entry in entries:
                continue
            if not entry.strip():
                raise JdlError("Attribute InputSandbox contains an empty file name")
            if not is_remote_uri(entry):
                file_name = _file_name(entry)
                if file_name in by_name:
                    raise JdlError(
                        f"InputSandbox entries {by_name[file_name]} and {entry} have the same "
                        f"file name {file_name}; the nodes of a job share one input area"
                    )
                by_name[file_name] = entry
            entries[entry] = None
    return list(entries)


def _file_name(entry: str) -> str:
    return input_sandbox_files(replace(JobDescription(), input_sandbox=(entry,)))[0]


def _check_names(names: Iterable[str]) -> dict[str, str]:
    """Lowercase name → name; a duplicate (case-insensitive) is refused."""
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise JdlError(f"Duplicated NodeName({name})")
        seen[name.lower()] = name
    return seen


def _check_count(count: int, what: str, max_nodes: int) -> None:
    if count == 0:
        raise InvalidArgumentError(f"The {what} job has no nodes")
    if count > max_nodes:
        raise InvalidArgumentError(f"The {what} job has {count} nodes, more than the allowed {max_nodes}")


def _take_node_name(node: classad2.ClassAd, *, default: str, attribute: str = "NodeName") -> str:
    """Remove ``attribute`` from ``node`` and return it sanitised, else ``default``."""
    if attribute not in node:
        return default
    value = node[attribute]
    if not isinstance(value, str) or not value.strip():
        raise JdlError(f"Attribute {attribute} must be a non-empty string, not {_text(node, attribute)}")
    del node[attribute]
    return node_name(value)


def _integer(ad: classad2.ClassAd, name: str, default: int) -> int:
    if name not in ad:
        return default
    value = ad[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise JdlError(f"Attribute {name} must be an integer, not {_text(ad, name)}")
    return value


def _fresh(ad: classad2.ClassAd) -> classad2.ClassAd:
    """A deep copy sharing nothing with ``ad``."""
    return classad2.ClassAd(str(ad))


def _copy_without(ad: classad2.ClassAd, names: Iterable[str]) -> classad2.ClassAd:
    out = _fresh(ad)
    for name in names:
        _delete(out, name)
    return out


def _delete(ad: classad2.ClassAd, name: str) -> None:
    if name in ad:
        del ad[name]


def _set(ad: classad2.ClassAd, name: str, values: list[str]) -> None:
    """Set a list of strings, keeping the spelling of an existing attribute."""
    spelling = _spelling(ad, name)
    _delete(ad, name)
    ad[spelling] = values


def _spelling(ad: classad2.ClassAd, name: str) -> str:
    return next((key for key in ad.keys() if key.lower() == name.lower()), name)


def _text(ad: classad2.ClassAd, name: str) -> str:
    return " ".join(str(ad.lookup(_spelling(ad, name))).split())


def _shown(value: Any) -> str:
    return " ".join(str(value).split())


__all__ = [
    "DEFAULT_MAX_NODES",
    "CompoundJob",
    "NodeSpec",
    "compound_kind",
    "dag_order",
    "expand",
    "node_name",
]
