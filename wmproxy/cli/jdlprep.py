"""The JDL as the client sends it (``submit``, ``list-match``): what the gLite UI does to a
JDL file before jobRegister, with classad2 (never an own parser).

* A syntax error is reported with its line and column (:func:`locate_syntax_error`).
* Nodes given as ``file = "node.jdl"`` are inlined (:func:`inline_node_files`).
* Relative ``InputSandbox`` entries under a ``file://`` ``InputSandboxBaseURI`` become local
  ``file://`` entries (uploaded); a remote ``InputSandboxBaseURI`` is refused (the service
  fetches no remote input sandbox file).
* ``Environment`` and ``Arguments`` are sent as written: the service's job wrapper gives them
  their shell meaning (``"A='a b'"``: ``A`` is ``a b`` on the worker node; quotes removed here
  too would be removed twice).
* ``submit`` options and configuration defaults: ``SubmitTo`` (``-r``), ``ExpiryTime``
  (``--valid``, ``--to``), ``--default-jdl`` and ``[jdl-defaults]`` attributes,
  ``VirtualOrganisation`` and ``MyProxyServer`` from the configuration.

A JDL that needs none of this is sent exactly as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wmproxy.cli.errors import CliError, read_text_file, unreadable

_HASH_LINE = re.compile(r"^[ \t]*#[^\n]*$", re.MULTILINE)
_NOISE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_CUTS = 5000


def _classad(text: str) -> Any:
    import classad2

    try:
        return classad2.ClassAd(text)
    except (classad2.ClassAdException, ValueError):
        return None


def locate_syntax_error(text: str) -> tuple[int, int]:
    """``(line, column)``, both from 1, where a JDL that does not parse stops being valid.

    classad2 says only that a text does not parse; so prefixes are parsed: the text cut
    after each ``;`` or line end and closed with ``]``. The last cut that parses ends the
    valid part; the error is in the attribute that starts after it, whose first character
    is returned. Meant for a text known not to parse.
    """
    body = _HASH_LINE.sub(lambda m: " " * len(m.group(0)), text)
    lead = _NOISE.match(body)
    start = lead.end() if lead else 0
    bracketed = body[start:start + 1] == "["
    opener = "" if bracketed else "["
    first = start + 1 if bracketed else start
    good = first
    cuts = [i + 1 for i, ch in enumerate(body) if ch in ";\n" and i >= first][:_MAX_CUTS]
    for cut in cuts:
        if _classad(opener + body[:cut] + "\n]") is not None:
            good = cut
    rest = _NOISE.match(body, good)
    position = rest.end() if rest else good
    if position >= len(body):
        position = len(body.rstrip()) - 1 if body.strip() else 0
    line = body.count("\n", 0, position) + 1
    column = position - (body.rfind("\n", 0, position) + 1) + 1
    return line, column


def parse(text: str, source: str) -> Any:
    """The JDL as a ClassAd (:func:`wmproxy.jdl.parse.parse_jdl`).

    Raises:
        CliError: ``JDL`` naming ``source``, the line and column of the error and
            classad's reason.
    """
    from wmproxy.errors import WMProxyError
    from wmproxy.jdl.parse import parse_jdl

    try:
        return parse_jdl(text)
    except WMProxyError as exc:
        if not text.strip():
            raise CliError("JDL", f"{source}: the JDL is empty") from None
        line, column = locate_syntax_error(text)
        lines = text.splitlines()
        snippet = f": {lines[line - 1].strip()[:60]!r}" if line <= len(lines) else ""
        reason = str(exc).removeprefix("Unable to parse JDL: ")
        raise CliError("JDL", f"{source}: syntax error at line {line}, column {column}{snippet} ({reason})") from None


def virtual_organisation(text: str) -> str | None:
    """The JDL's ``VirtualOrganisation`` string, None when it has none or does not parse (the
    verb reports the syntax error when it prepares the JDL: :func:`parse`)."""
    from wmproxy.errors import WMProxyError
    from wmproxy.jdl.parse import parse_jdl

    try:
        vo = parse_jdl(text).get("VirtualOrganisation")
    except (WMProxyError, ValueError):
        return None
    return vo if isinstance(vo, str) and vo else None


def _node_keys(ad: Any) -> list[str]:
    """The attributes of ``ad`` holding its nodes: ``Nodes = {...}`` (a list of job ads) or
    the old DAG form ``nodes = [ A = [ description = [...] ]; dependencies = ... ]``."""
    return [key for key in ad if key.lower() == "nodes"]


def _old_form_nodes(nodes: Any) -> list[str]:
    """Node names of an old-form ``nodes`` ad (every attribute but ``dependencies``)."""
    return [key for key in nodes if key.lower() != "dependencies"]


def _evaluated(ad: Any, key: str) -> Any:
    try:
        return ad[key]
    except Exception:  # noqa: BLE001 - not evaluable: left to the service
        return None


def _inline(node: Any, base: Path, seen: tuple[Path, ...], *, as_description: bool = False) -> Any:
    """``node`` with its ``file`` attribute replaced by the JDL of that file, recursively for
    a node file that is a DAG itself: in a ``Nodes = {...}`` list the file's attributes and
    the node's own (which win); in the old DAG form (``nodes = [ A = [ file = ... ] ]``,
    ``as_description``) the node's ``Description``."""
    import classad2

    if not isinstance(node, classad2.ClassAd) or "file" not in node:
        return node
    name = node.get("file")
    if not isinstance(name, str) or not name:
        raise CliError("JDL", "a node's file attribute must be a file name")
    path = (base / os.path.expanduser(name)).resolve()
    if path in seen:
        raise CliError("JDL", f"node file {path} includes itself")
    try:
        text = read_text_file(path)
    except OSError as exc:
        raise CliError("JDL", f"cannot read the node file {path}: {unreadable(exc)}") from None
    inner = parse(text, str(path))
    inline_node_files(inner, path.parent, (*seen, path))
    if as_description:
        out = classad2.ClassAd()
        for key in node:
            if key.lower() != "file":
                out[key] = node.lookup(key)
        out["Description"] = inner
        return out
    for key in node:
        if key.lower() != "file":
            inner[key] = node.lookup(key)
    return inner


def inline_node_files(ad: Any, base: Path, seen: tuple[Path, ...] = ()) -> bool:
    """Replace every node given as ``[ file = "node.jdl"; ... ]`` by that file's JDL, as the
    gLite UI does; relative names are relative to ``base`` (the JDL file's directory).

    Returns:
        Whether anything was inlined.

    Raises:
        CliError: ``JDL`` for an unreadable or invalid node file, or a file including itself.
    """
    import classad2

    def listed(node: Any) -> Any:
        return _inline(node, base, seen) if isinstance(node, classad2.ClassAd) and "file" in node else None

    def old_form(node: Any) -> Any:
        return _inline(node, base, seen, as_description=True) if "file" in node else None

    return _rewrite_nodes(ad, listed, old_form)


def _rewrite_nodes(ad: Any, listed: Callable[[Any], Any], old_form: Callable[[Any], Any]) -> bool:
    """Replace nodes of ``ad``: ``listed(element)`` for each ``Nodes = {...}`` element and
    ``old_form(node ad)`` for each node of the old DAG form, each returning the new node or
    None to keep it; the node containers are written back when anything changed."""
    import classad2

    changed = False
    for key in _node_keys(ad):
        value = _evaluated(ad, key)
        touched = False
        if isinstance(value, list):
            for index, node in enumerate(value):
                new = listed(node)
                if new is not None:
                    value[index] = new
                    touched = True
        elif isinstance(value, classad2.ClassAd):
            for name in _old_form_nodes(value):
                node = _evaluated(value, name)
                new = old_form(node) if isinstance(node, classad2.ClassAd) else None
                if new is not None:
                    value[name] = new
                    touched = True
        if touched:
            ad[key] = value
            changed = True
    return changed


def _string_list(ad: Any, key: str) -> list[str] | None:
    try:
        value = ad.get(key)
    except Exception:  # noqa: BLE001 - not evaluable: left to the service
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _for_each_ad(ad: Any, change: Callable[[Any], bool]) -> bool:
    """Apply ``change(job ad) -> bool`` to the ad and to every node's job ad (a ``Nodes``
    list element, or an old-form node's ``description``), writing changed nodes back."""
    import classad2

    def listed(node: Any) -> Any:
        return node if isinstance(node, classad2.ClassAd) and change(node) else None

    def old_form(node: Any) -> Any:
        description = _evaluated(node, "description")
        if not isinstance(description, classad2.ClassAd) or not change(description):
            return None
        node["description"] = description
        return node

    changed = bool(change(ad))
    return _rewrite_nodes(ad, listed, old_form) or changed


def set_defaults(ad: Any, defaults: Mapping[str, str]) -> bool:
    """Add each ``name = <ClassAd expression text>`` the ad lacks. Returns whether any was.

    Raises:
        CliError: ``Configuration`` for a default that is not a ClassAd expression.
    """
    import classad2

    changed = False
    for name, expression in defaults.items():
        if name in ad:
            continue
        try:
            ad[name] = classad2.ExprTree(expression)
        except (classad2.ClassAdException, ValueError, TypeError):
            raise CliError("Configuration", f"default {name} = {expression} is not a ClassAd expression") from None
        changed = True
    return changed


def prepare(
    text: str,
    source: str,
    base: Path,
    *,
    defaults: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    node_overrides: Mapping[str, Any] | None = None,
) -> str:
    """The JDL text to send for the JDL file ``source``.

    Args:
        text: the JDL as written.
        source: its file name, for messages.
        base: the directory relative node files are looked up in.
        defaults: attributes (name → expression text) added when missing.
        overrides: attributes (name → Python value: str, int) set whatever the JDL says
            (``SubmitTo``, ``ExpiryTime``).
        node_overrides: the same for every node of a DAG/collection.

    Returns:
        ``text`` unchanged when nothing applies, else the changed ClassAd's text.

    Raises:
        CliError: ``JDL`` for a syntax error (with line and column), a bad node file or a
            remote ``InputSandboxBaseURI`` (:func:`resolve_base_uri`); ``Configuration`` for a
            bad default.
    """
    ad = parse(text, source)
    changed = inline_node_files(ad, base)
    changed = _for_each_ad(ad, resolve_base_uri) or changed
    changed = set_defaults(ad, defaults or {}) or changed
    for name, value in (overrides or {}).items():
        if ad.get(name) != value:
            ad[name] = value
            changed = True
    if node_overrides:
        root = ad

        def override(node: Any) -> bool:
            if node is root:
                return False
            for name, value in node_overrides.items():
                node[name] = value
            return True

        changed = _for_each_ad(ad, override) or changed
    return str(ad).strip() + "\n" if changed else text


def resolve_base_uri(node: Any) -> bool:
    """Relative ``InputSandbox`` entries of an ad with a ``file://`` ``InputSandboxBaseURI`` become
    ``<InputSandboxBaseURI>/<entry>``: local files, uploaded as any other. One ad, not its nodes
    (:func:`prepare` applies it to each). Returns whether anything changed.

    Raises:
        CliError: ``JDL`` for a remote ``InputSandboxBaseURI`` with relative entries: the
            service fetches no remote input sandbox file and would refuse the entries it makes.
    """
    base = node.get("InputSandboxBaseURI") if "InputSandboxBaseURI" in node else None
    entries = _string_list(node, "InputSandbox") if "InputSandbox" in node else None
    if not isinstance(base, str) or not base or entries is None:
        return False
    new = [e if _URI.match(e) or e.startswith("/") else f"{base.rstrip('/')}/{e}" for e in entries]
    if new == entries:
        return False
    if _URI.match(base) and not base.lower().startswith("file://"):
        raise CliError("JDL", f"InputSandboxBaseURI {base!r} is not allowed: this service does not fetch remote "
                              "input sandbox files (no GridFTP, no download from other servers or from another "
                              "job's sandbox); give local files, which are uploaded into the job's input sandbox")
    node["InputSandbox"] = new
    return True
