"""Spyne 2.14.0 on Python 3.12 and 3.13: the two things its last release lacks.

Spyne 2.14.0 (2022, its last release; no maintained fork on PyPI) was written for Python
≤ 3.11:

* its vendored six (``spyne.util.six``) puts a meta path importer for ``spyne.util.six.moves``
  on ``sys.meta_path`` that has only the PEP 302 ``find_module``/``load_module``; Python 3.12
  no longer calls those, so ``from spyne.util.six.moves.urllib.parse import ...`` fails.
  :func:`install` gives the importer class ``find_spec``/``create_module``/``exec_module``
  (PEP 451), exactly as six 1.16 did upstream, the moment ``spyne.util.six`` is executed;
* Python 3.13 removed ``cgi``, of which Spyne uses only ``cgi.parse_header`` (the SOAP
  protocol and the WSGI server split ``Content-Type``). When ``cgi`` cannot be imported,
  :func:`install` registers a module ``cgi`` holding :func:`parse_header` alone.

:func:`install` runs when ``wmproxy.soap`` is imported, before any Spyne module: every
wmproxy module that imports Spyne lives in that package. It is idempotent and changes
nothing on Python 3.11 beyond the three methods (which 3.11 prefers to the PEP 302 ones).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

#: The vendored six module whose meta path importer needs PEP 451 methods.
SIX_MODULE = "spyne.util.six"


def parse_header(line: str) -> tuple[str, dict[str, str]]:
    """``'text/xml; charset="utf-8"'`` → ``('text/xml', {'charset': 'utf-8'})``.

    The behaviour of the removed ``cgi.parse_header``: the main value stripped, parameter
    names lower-cased, a quoted value unquoted (``\\\\`` and ``\\"`` unescaped), a ``;``
    inside quotes kept, a parameter without ``=`` dropped.
    """
    parts = _header_parts(";" + line)
    key = next(parts)
    params: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        params[name] = value
    return key, params


def _header_parts(text: str) -> Iterator[str]:
    """The ``;``-separated parts of ``text`` (which starts with ``;``), quotes respected."""
    while text[:1] == ";":
        text = text[1:]
        end = text.find(";")
        while end > 0 and (text.count('"', 0, end) - text.count('\\"', 0, end)) % 2:
            end = text.find(";", end + 1)
        if end < 0:
            end = len(text)
        yield text[:end].strip()
        text = text[end:]


def _find_spec(self: Any, fullname: str, path: Sequence[str] | None = None,
               target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
    if fullname in self.known_modules:
        return importlib.util.spec_from_loader(fullname, self)
    return None


def _create_module(self: Any, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    return self.load_module(spec.name)


def _exec_module(self: Any, module: types.ModuleType) -> None:
    """The module was complete when :func:`_create_module` returned it."""


def patch_six_importer(six_module: types.ModuleType) -> None:
    """Give ``six_module._SixMetaPathImporter`` the PEP 451 methods (no-op if it has them)."""
    importer = getattr(six_module, "_SixMetaPathImporter", None)
    if importer is None or "find_spec" in vars(importer):
        return
    importer.find_spec = _find_spec
    importer.create_module = _create_module
    importer.exec_module = _exec_module


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader of ``spyne.util.six``, then patches its importer class."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        patch_six_importer(module)


class _SixFinder(importlib.abc.MetaPathFinder):
    """Finds ``spyne.util.six`` like the path finder does, with :class:`_PatchingLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != SIX_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def _cgi_shim() -> types.ModuleType:
    module = types.ModuleType("cgi", "wmproxy's stand-in for the removed cgi module: parse_header only.")
    module.parse_header = parse_header  # type: ignore[attr-defined]
    return module


def install() -> None:
    """Make Spyne 2.14.0 importable on this Python (idempotent; see the module docstring)."""
    if SIX_MODULE in sys.modules:
        patch_six_importer(sys.modules[SIX_MODULE])
    elif not any(isinstance(finder, _SixFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SixFinder())
    # None in sys.modules: the import is blocked, as if the module were missing.
    if sys.modules.get("cgi") is None and importlib.util.find_spec("cgi") is None:
        sys.modules["cgi"] = _cgi_shim()
