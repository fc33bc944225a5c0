"""Collections, DAGs and parametric jobs → their nodes (``wmproxy-behaviour.md`` §9.4, §9.5).

:func:`expand` turns a compound JDL into a :class:`CompoundJob`: the DAG-level ad, one
complete job ad per node (inheritance, ``_PARAM_`` and ``root.InputSandbox[i]``
resolved, each validated with :func:`~wmproxy.jdl.description.describe_simple`), the
dependencies and the one description of the DAG level. :func:`describe` validates any
JDL, simple or compound. :func:`dag_order` gives a topological order of the nodes
(:mod:`wmproxy.jdl.graph`); parametric expansion is :mod:`wmproxy.jdl.parametric`.

Decisions where the reference is silent or differs from gLite:

* Node order (``NodeSpec.index``, the *i* of ``child_job_id``, §2.3): the order of
  the ``Nodes`` list for collections and list-form DAGs, of the values for parametric
  jobs, and alphabetical (case-insensitive) for ``nodes = [ a = ...; b = ... ]``. The
  reference infers gLite's order from the classad's internal order; classad2's
  ``keys()`` is a hash order that may change between versions, and child ids must
  not, hence the sort.
* Node names: a DAG node keeps its attribute name; a collection node is ``NodeName``
  or ``Node_<i>``; a parametric node is ``Node_<value>``. ``NodeName`` and parameter
  values are sanitised as ``bulk2dag`` does (:func:`wmproxy.jdl.parametric.node_name`).
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
* Size: every node carries what it inherits (a parametric node the whole JDL), so a small
  request could expand into gigabytes (10,000 nodes inheriting a 1 MB ``Arguments``). The
  nodes' JDL together (their own text, what they inherit, their ``_PARAM_`` values and
  ``root.InputSandbox[i]`` entries) may hold at most ``max_bytes`` characters, estimated
  from the request before any node is made; more is refused with
  :class:`InvalidArgumentError`.
* Dependencies: a list on each side of a pair means every pair (``{ {a, b}, {c, d} }`` is
  four), so ``max_nodes`` does not bound them: a DAG may give at most
  :func:`max_dependencies` pairs (100,000 with the default ``[jobs] max_nodes``), counted as
  written, repeats too, before any pair is made or a cycle looked for; more are refused
  with :class:`InvalidArgumentError`. Each pair is kept once.

classad2 pitfalls met here: reading a list (``ad["Nodes"]``) evaluates the list but
not its elements, so a bare name such as ``nodeA`` in ``dependencies`` or
``Parameters`` comes back as an unevaluated :class:`classad2.ExprTree` whose text is
the name; ``root.InputSandbox[0]`` in a node's list is such an ExprTree as well and is
evaluated here against an ad holding only the parent's ``InputSandbox``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import classad2

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError
from wmproxy.jdl.attributes import (
    copy_without,
    delete,
    expiry_time,
    file_list,
    fresh,
    job_kind,
    job_type,
    set_list,
    shown,
    spelling,
    string_list,
    text,
)
from wmproxy.jdl.description import (
    JobDescription,
    check_output_sandbox,
    check_typed_attributes,
    describe_simple,
    input_sandbox_files,
    read_description,
)
from wmproxy.jdl.graph import CycleError, topological_order
from wmproxy.jdl.parametric import (
    PARAM,
    REFERENCE,
    check_count,
    check_size,
    node_name,
    parameter_values,
    parametric_nodes,
)
from wmproxy.jdl.sandbox import check_input_sandbox_name, file_name, is_remote_uri, isb_union

CompoundKind = Literal["dag", "collection", "parametric"]

DEFAULT_MAX_NODES = 10_000
#: Characters the JDL of a compound job's nodes may hold together once expanded (inherited
#: attributes and ``_PARAM_`` values included); the services pass ``[limits]
#: max_request_bytes``, of which this is the default (16 MiB, the documented JDL limit).
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Dependency pairs a DAG may give per node it may have, and at least: a list on each side of a
#: pair means every pair, so a few kB of JDL give millions of them (see :func:`max_dependencies`).
DEPENDENCIES_PER_NODE = 10
MIN_MAX_DEPENDENCIES = 100_000

#: Parent attributes a DAG or collection node gets when it does not set them (§9.5
#: list, the brief's list, plus FuzzyRank which goes with Rank, and ExpiryTime: the
#: compound job's own, ``submit --valid/--to``, is read per node when it is matched).
INHERITED_ATTRIBUTES = (
    "Executable", "Arguments", "StdInput", "StdOutput", "StdError",
    "InputSandbox", "OutputSandbox", "Environment", "VirtualOrganisation",
    "Requirements", "Rank", "FuzzyRank", "MyProxyServer", "RetryCount", "ShallowRetryCount",
    "ExpiryTime",
)
#: Parent attribute → node attribute it defaults (regression test 31669).
NODE_DEFAULTS = (
    ("DefaultNodeRetryCount", "RetryCount"),
    ("DefaultNodeShallowRetryCount", "ShallowRetryCount"),
)
NODE_LIST = "Nodes"
DEPENDENCIES = "Dependencies"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a compound job.

    Attributes:
        name: the node name (``nodeA``, ``Node_0``, ``Node_100``, a ``NodeName``).
        ad: the node's complete job JDL after inheritance and substitution; a ClassAd
            of its own, sharing nothing with the parent or other nodes.
        index: position in node order, the *i* of :func:`wmproxy.domain.child_job_id`.
        isb_files: the file names (from the parent's input area) the node needs.
        description: ``describe_simple(ad)``.
    """

    name: str
    ad: classad2.ClassAd
    index: int
    isb_files: tuple[str, ...] = ()
    description: JobDescription = field(default_factory=JobDescription)


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
        description: the one description of the DAG level: ``type`` is the JDL's
            ``Type`` (``dag``/``collection``, ``job`` for parametric), ``job_type``
            ``parametric`` or ``normal``, the other fields read from ``parent_ad``
            (``executable`` may be ``""``), ``nodes`` the node names.
    """

    kind: CompoundKind
    parent_ad: classad2.ClassAd
    nodes: tuple[NodeSpec, ...]
    dependencies: tuple[tuple[str, str], ...] = ()
    parent_isb_files: tuple[str, ...] = ()
    description: JobDescription = field(default_factory=JobDescription)

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
    kind = job_kind(ad)
    if kind == "dag":
        return "dag"
    if kind == "collection":
        return "collection"
    return "parametric" if job_type(ad) == "parametric" else None


def describe(ad: classad2.ClassAd, *, max_nodes: int = DEFAULT_MAX_NODES,
             max_bytes: int = DEFAULT_MAX_BYTES) -> JobDescription:
    """Validate any JDL as jobRegister does and return its description (§3.1, §9.4, §9.5).

    A simple job is described by :func:`~wmproxy.jdl.description.describe_simple`; a
    collection, DAG or parametric job is expanded (every node validated) and described
    by :attr:`CompoundJob.description`.

    Args:
        ad: the parsed JDL; not modified.
        max_nodes: the most nodes a compound job may have.
        max_bytes: the most characters its nodes' JDL may hold together.

    Raises:
        Whatever :func:`describe_simple` or :func:`expand` raise.
    """
    job = expand(ad, max_nodes=max_nodes, max_bytes=max_bytes)
    return describe_simple(ad) if job is None else job.description


def expand(ad: classad2.ClassAd, *, max_nodes: int = DEFAULT_MAX_NODES,
           max_bytes: int = DEFAULT_MAX_BYTES) -> CompoundJob | None:
    """Expand a collection, DAG or parametric JDL into its nodes (§9.4, §9.5).

    Args:
        ad: the parsed JDL; not modified.
        max_nodes: the most nodes a job may have.
        max_bytes: the most characters the nodes' JDL may hold together, checked before
            any node inherits or is substituted.

    Returns:
        The expanded job, or ``None`` for a simple job.

    Raises:
        InvalidArgumentError: no nodes, more than ``max_nodes`` nodes, nodes of more than
            ``max_bytes`` together, more dependency pairs than
            :func:`max_dependencies` (counted before they are made), a node given
            by ``file`` (the client must inline it), a nested DAG, collection or
            parametric node, an unsupported ``node_type``, a node's ``Std*`` or
            ``OutputSandbox`` name outside its work directory, or an ``InputSandbox`` entry
            (the compound job's or a node's) staged under a name the service keeps there
            (:func:`~wmproxy.jdl.sandbox.check_input_sandbox_name`).
        InvalidJdlAttributeError: ``ParameterStep = 0``, bad ``Type``/``JobType``.
        JdlError: a malformed node list, ``Parameters`` or dependency, a duplicated
            or unknown node name, a dependency cycle (the message names it), an
            ``InputSandbox`` reference that names no parent entry, two input files
            with the same name, a collection's or DAG's own ``ExpiryTime`` out of range
            (:func:`~wmproxy.jdl.attributes.expiry_time`), perusal or zipped-sandbox attributes
            of the wrong type (:func:`~wmproxy.jdl.description.check_typed_attributes`) or
            ``OutputSandbox``/``OutputSandboxDestURI``
            (:func:`~wmproxy.jdl.description.check_output_sandbox`), or a node that fails
            :func:`describe_simple` (the message is prefixed with ``Node <name>: ``).
        JdlExpressionError: a parametric node whose ``_PARAM_``, substituted outside a
            string, gives expressions :func:`~wmproxy.jdl.check_expressions` refuses.
    """
    kind = compound_kind(ad)
    if kind is None:
        return None
    if "edg_jobid" in ad:
        raise JdlError("jobid attribute already exists")
    if kind != "parametric":  # the compound job's own (a parametric one's are its nodes', checked with them)
        expiry_time(ad)
        check_typed_attributes(ad)  # AllowZippedISB is a DAG-level attribute
        check_output_sandbox(file_list(ad, "OutputSandbox"), string_list(ad, "OutputSandboxDestURI"))
    dependencies: list[tuple[str, str]] = []
    if kind == "parametric":
        parent, raw_nodes = parametric_nodes(ad, max_nodes, max_bytes)
        own_isb = [entry for entry in string_list(ad, "InputSandbox") if PARAM not in entry]
    else:
        parent = copy_without(ad, (NODE_LIST, DEPENDENCIES))
        parent["Type"] = "dag"
        raw_nodes = _collection(ad, max_nodes) if kind == "collection" else _dag(ad, max_nodes)
        own_isb = list(string_list(ad, "InputSandbox"))
        check_size(_expanded_size([node for _, node in raw_nodes], ad), "DAG" if kind == "dag" else kind, max_bytes)
    for entry in own_isb:  # the nodes' own entries are checked with them (describe_simple)
        check_input_sandbox_name(entry)
    names = check_node_names(name for name, _ in raw_nodes)
    if kind == "dag":
        dependencies = _dependencies(ad, names, max_dependencies(max_nodes))
        _order([name for name, _ in raw_nodes], dependencies)
    scope = classad2.ClassAd()
    scope["InputSandbox"] = list(string_list(ad, "InputSandbox"))

    nodes = []
    for index, (name, node) in enumerate(raw_nodes):
        if kind != "parametric":
            _inherit(node, ad)
        _refuse_nested(node, name)
        _resolve_isb_references(node, scope, name)
        description = _describe_node(node, name, parametric=kind == "parametric")
        nodes.append(NodeSpec(name, node, index, tuple(input_sandbox_files(description)), description))

    entries = isb_union([own_isb, *(spec.description.input_sandbox for spec in nodes)])
    if entries:
        set_list(parent, "InputSandbox", entries)
    else:
        delete(parent, "InputSandbox")
    description = replace(
        read_description(parent),
        type=job_kind(ad),
        job_type="parametric" if kind == "parametric" else "normal",
        nodes=tuple(spec.name for spec in nodes),
    )
    return CompoundJob(
        kind=kind,
        parent_ad=parent,
        nodes=tuple(nodes),
        dependencies=tuple(dependencies),
        parent_isb_files=tuple(file_name(entry) for entry in entries if not is_remote_uri(entry)),
        description=description,
    )


def node_names(ad: classad2.ClassAd, *, max_nodes: int = DEFAULT_MAX_NODES) -> tuple[str, ...] | None:
    """The names :func:`expand` gives the nodes of a compound JDL, in node order (a node's index is
    its position), read from its node list or ``Parameters`` alone: no node is described,
    inherited or checked against today's registration rules (a client naming the nodes of a job
    the service registered, maybe under other rules). None for a simple job.

    Raises:
        InvalidArgumentError, InvalidJdlAttributeError, JdlError: a node list, node names or
            ``Parameters`` :func:`expand` could not read either.
    """
    kind = compound_kind(ad)
    if kind is None:
        return None
    if kind == "parametric":
        return tuple(f"Node_{node_name(value)}" for value in parameter_values(ad, max_nodes))
    raw_nodes = _collection(ad, max_nodes) if kind == "collection" else _dag(ad, max_nodes)
    return tuple(name for name, _ in raw_nodes)


def max_dependencies(max_nodes: int) -> int:
    """The most dependency pairs a DAG of at most ``max_nodes`` nodes may give:
    ``max(DEPENDENCIES_PER_NODE * max_nodes, MIN_MAX_DEPENDENCIES)`` (100,000 by default)."""
    return max(DEPENDENCIES_PER_NODE * max_nodes, MIN_MAX_DEPENDENCIES)


def node_count(ad: classad2.ClassAd, *, max_nodes: int = DEFAULT_MAX_NODES) -> int:
    """The nodes :func:`expand` would make of a JDL (1 for a simple job), counted without
    making them: the values of ``Parameters``, the ``Nodes`` list, a DAG's node entries.

    Raises:
        InvalidArgumentError: no nodes or more than ``max_nodes``.
        InvalidJdlAttributeError, JdlError: a bad ``Type``/``JobType``, node list or
            ``Parameters`` (as :func:`expand`; a JDL counted may still fail it).
    """
    kind = compound_kind(ad)
    if kind is None:
        return 1
    if kind == "parametric":
        return len(parameter_values(ad, max_nodes))
    if kind == "dag" and NODE_LIST in ad and isinstance(ad[NODE_LIST], classad2.ClassAd):
        count = sum(1 for key in ad[NODE_LIST] if key.lower() != DEPENDENCIES.lower())
        check_count(count, "DAG", max_nodes)
        return count
    return len(_node_elements(ad, "collection" if kind == "collection" else "DAG", max_nodes))


def dag_order(job: CompoundJob) -> list[str]:
    """A topological order of the nodes: parents first, ties broken by node name.

    Args:
        job: an expanded job (collections and parametric jobs have no dependencies).

    Returns:
        Every node name once.

    Raises:
        JdlError: the dependencies have a cycle (not after :func:`expand`).
    """
    return _order([spec.name for spec in job.nodes], list(job.dependencies))


def _order(names: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    try:
        return topological_order(names, pairs)
    except CycleError as exc:
        raise JdlError(f"Dependency cycle between DAG nodes: {exc}") from None


# --- collections and DAGs ---

def _collection(ad: classad2.ClassAd, max_nodes: int) -> list[tuple[str, classad2.ClassAd]]:
    """§9.5: ``Nodes = { [...], ... }``; names from ``NodeName`` or ``Node_<i>``."""
    elements = _node_elements(ad, "collection", max_nodes)
    nodes = []
    for index, element in enumerate(elements):
        node = fresh(element)
        _refuse_file(node, f"Node_{index}")
        nodes.append((_take_node_name(node, default=f"Node_{index}"), node))
    return nodes


def _dag(ad: classad2.ClassAd, max_nodes: int) -> list[tuple[str, classad2.ClassAd]]:
    """§9.5: ``nodes = [ a = [ description = [...] ]; ...; dependencies = {...} ]`` or a list."""
    if NODE_LIST not in ad:
        raise JdlError("Mandatory attribute nodes not set")
    value = ad[NODE_LIST]
    if not isinstance(value, classad2.ClassAd):
        return [
            _dag_list_node(element, index)
            for index, element in enumerate(_node_elements(ad, "DAG", max_nodes))
        ]
    names = sorted(
        (key for key in value if key.lower() != DEPENDENCIES.lower()),
        key=lambda key: (key.lower(), key),
    )  # iteration is classad2's hash order, not the JDL's: sort for stable child ids
    check_count(len(names), "DAG", max_nodes)
    nodes = []
    for name in names:
        entry = value[name]
        if not isinstance(entry, classad2.ClassAd):
            raise JdlError(f"DAG node {name} must be a ClassAd")
        nodes.append((name, _node_description(entry, name)))
    return nodes


def _dag_list_node(element: classad2.ClassAd, index: int) -> tuple[str, classad2.ClassAd]:
    """A node of the list form: ``[ name = "a"; description = [...] ]`` or a job ad with NodeName."""
    wrapper = fresh(element)
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
            raise InvalidArgumentError(f"DAG node {name}: node_type {text(entry, 'node_type')} is not supported")
    if "description" not in entry:
        raise JdlError(f"DAG node {name}: mandatory attribute description not set")
    description = entry["description"]
    if not isinstance(description, classad2.ClassAd):
        raise JdlError(f"DAG node {name}: attribute description must be a ClassAd")
    return fresh(description)


def _node_elements(ad: classad2.ClassAd, what: str, max_nodes: int) -> list[classad2.ClassAd]:
    """The ``Nodes`` list, every element a ClassAd, at least one, at most ``max_nodes``."""
    if NODE_LIST not in ad:
        raise JdlError("Mandatory attribute Nodes not set")
    value = ad[NODE_LIST]
    if not isinstance(value, list) or not all(isinstance(item, classad2.ClassAd) for item in value):
        raise JdlError(f"Attribute Nodes must be a list of ClassAds, not {text(ad, NODE_LIST)}")
    check_count(len(value), what, max_nodes)
    return value


def _refuse_file(node: classad2.ClassAd, name: str) -> None:
    if "file" in node:
        raise InvalidArgumentError(
            f"Node {name} is given by file ({text(node, 'file')}): nodes given by file "
            "must be inlined by the client"
        )


def _refuse_nested(node: classad2.ClassAd, name: str) -> None:
    """DAG nodes cannot be DAGs, collections or parametric jobs (§2.3)."""
    if NODE_LIST in node or compound_kind(node) is not None:
        raise InvalidArgumentError(f"nested DAGs are not supported (node {name})")


def _dependencies(ad: classad2.ClassAd, names: dict[str, str], most: int) -> list[tuple[str, str]]:
    """Pairs from ``nodes.dependencies`` and top-level ``Dependencies``; lists mean all pairs.

    The pairs are counted (repeated ones too) before any is made: more than ``most`` are
    refused with :class:`InvalidArgumentError`. Each pair is kept once, in JDL order.
    """
    sources = []
    nodes = ad[NODE_LIST]
    if isinstance(nodes, classad2.ClassAd) and DEPENDENCIES in nodes:
        sources.append((nodes, nodes[DEPENDENCIES]))
    if DEPENDENCIES in ad:
        sources.append((ad, ad[DEPENDENCIES]))
    sides: list[tuple[list[str], list[str]]] = []
    count = 0
    for holder, value in sources:
        if not isinstance(value, list):
            raise JdlError(f"Attribute dependencies must be a list of pairs, not {text(holder, DEPENDENCIES)}")
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise JdlError(f"Attribute dependencies: {shown(item)} is not a pair {{parent, child}}")
            parents, children = _dependency_names(item[0], names), _dependency_names(item[1], names)
            count += len(parents) * len(children)
            sides.append((parents, children))
    if count > most:
        raise InvalidArgumentError(
            f"The DAG job has {count} dependency pairs, more than the allowed {most}")
    pairs: dict[tuple[str, str], None] = {}  # a set that keeps the JDL order
    for parents, children in sides:
        for parent in parents:
            for child in children:
                pairs[parent, child] = None
    return list(pairs)


def _dependency_names(side: Any, names: dict[str, str]) -> list[str]:
    """One side of a pair: a node reference, a string, or a list of those."""
    items = side if isinstance(side, list) else [side]
    result = []
    for item in items:
        if isinstance(item, classad2.ExprTree) and REFERENCE.fullmatch(str(item).strip()):
            text = str(item).strip()
        elif isinstance(item, str):
            text = item
        else:
            raise JdlError(f"Attribute dependencies: {shown(item)} is not a node name")
        if text.lower() not in names:
            raise JdlError(f"Attribute dependencies names an unknown node: {text}")
        result.append(names[text.lower()])
    return result


# --- shared steps ---

def _expanded_size(nodes: list[classad2.ClassAd], parent: classad2.ClassAd) -> int:
    """Characters of the nodes' JDL once they inherit from ``parent`` (the user's ad): each
    node's own text, the text of each parent attribute it lacks, and what its references to
    the parent's ``InputSandbox`` resolve to (:func:`_resolve_isb_references`): the longest
    entry for each reference in a list, the whole list for one that is not a list."""
    inherited = {attribute: len(attribute) + len(str(parent.lookup(attribute))) + 4
                 for attribute in INHERITED_ATTRIBUTES if attribute in parent}
    for default, target in NODE_DEFAULTS:
        if default in parent:
            size = len(target) + len(str(parent.lookup(default))) + 4
            inherited[target] = max(size, inherited.get(target, 0))
    entries = string_list(parent, "InputSandbox")
    longest_entry = max((len(entry) + 4 for entry in entries), default=0)
    all_entries = sum(len(entry) + 4 for entry in entries)
    total = 0
    for node in nodes:
        total += len(str(node)) + sum(size for attribute, size in inherited.items() if attribute not in node)
        if "InputSandbox" in node:
            value = node["InputSandbox"]
            if isinstance(value, list):
                total += longest_entry * sum(1 for item in value if not isinstance(item, str))
            elif not isinstance(value, str):
                total += all_entries
    return total


def _inherit(node: classad2.ClassAd, parent: classad2.ClassAd) -> None:
    """§9.5: parent attributes the node lacks; node defaults first (they beat RetryCount)."""
    for default, target in NODE_DEFAULTS:
        if default in parent and target not in node:
            node[target] = parent.lookup(default)
    for attribute in INHERITED_ATTRIBUTES:
        if attribute in parent and attribute not in node:
            node[spelling(parent, attribute)] = parent.lookup(attribute)


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
            f"Node {name}: InputSandbox {text(node, 'InputSandbox')} does not name entries "
            "of the parent's InputSandbox"
        )
    set_list(node, "InputSandbox", items)


def _describe_node(node: classad2.ClassAd, name: str, *, parametric: bool) -> JobDescription:
    try:
        return describe_simple(node, parametric=parametric)
    except (JdlError, InvalidJdlAttributeError, InvalidArgumentError) as exc:
        raise type(exc)(f"Node {name}: {exc.message}") from None


def check_node_names(names: Iterable[str]) -> dict[str, str]:
    """Lowercase name → name; a duplicate (case-insensitive: ClassAd attribute names) is
    refused with :class:`JdlError` "Duplicated NodeName(<name>)" (also the templates' check)."""
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise JdlError(f"Duplicated NodeName({name})")
        seen[name.lower()] = name
    return seen


def _take_node_name(node: classad2.ClassAd, *, default: str, attribute: str = "NodeName") -> str:
    """Remove ``attribute`` from ``node`` and return it sanitised, else ``default``."""
    if attribute not in node:
        return default
    value = node[attribute]
    if not isinstance(value, str) or not value.strip():
        raise JdlError(f"Attribute {attribute} must be a non-empty string, not {text(node, attribute)}")
    del node[attribute]
    return node_name(value)




__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_NODES",
    "DEPENDENCIES_PER_NODE",
    "MIN_MAX_DEPENDENCIES",
    "CompoundJob",
    "NodeSpec",
    "check_node_names",
    "compound_kind",
    "dag_order",
    "describe",
    "expand",
    "max_dependencies",
    "node_count",
    "node_name",
]
