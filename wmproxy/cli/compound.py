"""Client side of collections, DAGs and parametric jobs (``wmproxy-behaviour.md`` §9.4, §9.5).

* :func:`collection_jdl`: ``submit --collection DIR``, one node per ``*.jdl`` file, inlined.
* :func:`upload_plan`: which local file goes to which name in the parent's input area.
  The registered parent JDL lists every input file of every node once, as
  ``<parent dest URI>/<name>`` (parametric ``_PARAM_`` entries already expanded); each
  name is mapped back to a local file relative to the JDL file's directory.
* :func:`node_names`: node name of each child id, for ``output`` (the service's status
  tree carries ids only; the names are recomputed from the parent's ORIGINAL JDL).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wmproxy.cli.common import CliError
from wmproxy.cli.errors import read_text_file, unreadable
from wmproxy.cli.sandbox import _parse, input_sandbox_entries

PARAM = "_PARAM_"


def is_compound(jdl_text: str) -> bool:
    """Whether the JDL is a collection, a DAG or a parametric job (unparsable or bad
    ``Type``/``JobType``: False, the service reports those)."""
    from wmproxy.errors import WMProxyError
    from wmproxy.jdl.compound import compound_kind

    ad = _parse(jdl_text)
    if ad is None:
        return False
    try:
        return compound_kind(ad) is not None
    except WMProxyError:
        return False


def sanitise(name: str) -> str:
    """A node name fragment as the service makes it (:func:`wmproxy.jdl.parametric.node_name`:
    ``.``→``_``, ``/``→``I``, ``*``→``-``, ``$``→``_S_``, anything else outside
    ``[A-Za-z0-9_-]`` → ``_``)."""
    from wmproxy.jdl.parametric import node_name

    return node_name(name)


def collection_jdl(directory: str | os.PathLike[str]) -> str:
    """A collection JDL whose nodes are the ``*.jdl`` files of ``directory`` (sorted), inlined.

    Each node gets ``NodeName = "Node_<file name sanitised>"`` unless it has one.

    Raises:
        CliError: ``Collection`` when the directory has no ``*.jdl`` file, cannot be
            read, or a file is not a JDL.
    """
    folder = Path(directory)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".jdl" and p.is_file())
    except OSError as exc:
        raise CliError("Collection", f"cannot read {folder}: {exc.strerror}") from None
    if not files:
        raise CliError("Collection", f"no *.jdl file in {folder}")
    nodes = []
    for path in files:
        try:
            text = read_text_file(path)
        except OSError as exc:
            raise CliError("Collection", f"cannot read {path}: {unreadable(exc)}") from None
        ad = _parse(text)
        if ad is None:
            raise CliError("Collection", f"{path} is not a valid JDL")
        if "NodeName" not in ad:
            ad["NodeName"] = f"Node_{sanitise(path.name)}"
        nodes.append(str(ad).strip())
    return '[\n  Type = "collection";\n  Nodes = {\n' + ",\n".join(nodes) + "\n  };\n]\n"


def _isb_strings(value: Any, inside_isb: bool = False) -> list[str]:
    """Every string of every ``InputSandbox`` found in ``value`` (an ad, a list), recursively."""
    import classad2

    found: list[str] = []
    if isinstance(value, classad2.ClassAd):
        for key in list(value.keys()):
            try:
                item = value[key]
            except Exception:  # noqa: BLE001, S112 - an attribute classad2 cannot evaluate holds no ISB string
                continue
            found += _isb_strings(item, key.lower() == "inputsandbox")
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _isb_strings(item, inside_isb)
    elif isinstance(value, str) and inside_isb:
        found.append(value)
    return found


def _local_candidates(jdl_text: str, jdl_dir: Path) -> tuple[dict[str, Path], list[tuple[re.Pattern[str], str]]]:
    """``{file name: local path}`` of the plain local entries, and (name pattern, directory)
    pairs for the parametric ones: ``data/in_PARAM_.txt`` → ``in(.+)\\.txt`` in ``data``;
    ``_PARAM_`` in the directory too (``run_PARAM_/in_PARAM_.txt``) is filled in with the
    value the name matched."""
    ad = _parse(jdl_text)
    entries = _isb_strings(ad) if ad is not None else []
    plain: dict[str, Path] = {}
    parametric: list[tuple[re.Pattern[str], str]] = []
    for entry in entries:
        parts = urlsplit(entry)
        if parts.scheme and parts.scheme != "file" and len(parts.scheme) > 1:
            continue
        local = parts.path if parts.scheme == "file" else entry
        local = os.path.expanduser(local)
        folder, name = os.path.split(local)
        if PARAM in name:
            pattern = re.compile("^" + "(?P<param>.+)".join(re.escape(p) for p in name.split(PARAM, 1))
                                 .replace(re.escape(PARAM), "(?P=param)") + "$")
            parametric.append((pattern, folder))
        elif PARAM in folder:
            parametric.append((re.compile("^" + re.escape(name) + "$"), folder))
        else:
            plain.setdefault(name, Path(jdl_dir, local))
    return plain, parametric


def _parametric_path(name: str, parametric: list[tuple[re.Pattern[str], str]], jdl_dir: Path) -> Path | None:
    """The local file of an expanded parametric input ``name``: the directory of the entry
    whose pattern matches, with its ``_PARAM_`` replaced by the matched value; None when no
    entry of the JDL names it."""
    matched = False
    for pattern, folder in parametric:
        match = pattern.match(name)
        if not match:
            continue
        matched = True
        value = match.groupdict().get("param")
        if PARAM not in folder:
            return Path(jdl_dir, folder, name)
        if value is not None:
            return Path(jdl_dir, folder.replace(PARAM, value), name)
        # the name alone does not tell the value: try another entry
    return Path(jdl_dir, name) if matched else None


def upload_plan(registered_jdl: str, dest_uri: str, jdl_text: str, jdl_dir: str | os.PathLike[str]) -> list[Path]:
    """The local files to PUT into ``dest_uri`` (the parent's input area), in JDL order.

    Args:
        registered_jdl: getJDL(parent, "REGISTERED").
        dest_uri: the parent's https getSandboxDestURI.
        jdl_text: the JDL as submitted.
        jdl_dir: where relative entries are looked up.

    Raises:
        CliError: ``InputSandbox`` when a needed local file does not exist.
    """
    from wmproxy.jdl.sandbox import uri_file_name

    prefix = dest_uri.rstrip("/") + "/"
    plain, parametric = _local_candidates(jdl_text, Path(jdl_dir))
    files: list[Path] = []
    for entry in input_sandbox_entries(registered_jdl):
        if not entry.startswith(prefix):
            continue
        name = uri_file_name(entry[len(prefix):])
        path = plain.get(name)
        if path is None and "/" not in name and name not in ("", ".", ".."):
            path = _parametric_path(name, parametric, Path(jdl_dir))
        if path is None:  # only files the user's own JDL names are read, whatever the service sends
            raise CliError("InputSandbox", f"the service's registered JDL names {name!r}, which the JDL "
                                           "submitted does not")
        if not path.is_file():
            raise CliError("InputSandbox", f"file not found: {path}")
        if path not in files:
            files.append(path)
    return files


def child_job_id(parent_id: str, index: int) -> str:
    """Id of node ``index`` of a compound job (§2.3): base64url(MD5("<unique>,WMPROXY,<i>"))."""
    parts = urlsplit(parent_id)
    digest = hashlib.md5(f"{parts.path.lstrip('/')},WMPROXY,{index}".encode()).digest()  # noqa: S324
    return f"https://{parts.netloc}/{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def node_names(parent_id: str, original_jdl: str, child_ids: list[str]) -> dict[str, str]:
    """``{child id: node name}``: names recomputed from the parent's ORIGINAL JDL with the
    service's expansion rules (its node list or ``Parameters`` only: a job registered under
    other registration checks keeps its names); a child whose name cannot be found gets
    ``Node_<i>`` by its position in the node order, or its id's unique part."""
    names: dict[str, str] = {}
    try:
        from wmproxy.jdl.compound import node_names as expanded_names
        from wmproxy.jdl.parse import parse_jdl

        found = expanded_names(parse_jdl(original_jdl))
        if found is not None:
            names = {child_job_id(parent_id, index): name for index, name in enumerate(found)}
    except Exception:  # noqa: BLE001 - fall back to positional names
        names = {}
    if not names:
        names = {child_job_id(parent_id, i): f"Node_{i}" for i in range(len(child_ids))}
    return {cid: names.get(cid) or sanitise(cid.rstrip("/").rsplit("/", 1)[-1]) for cid in child_ids}
