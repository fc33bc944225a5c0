"""Local input sandbox files of a JDL, i.e. what ``submit`` has to upload.

The service validates the JDL; here it is parsed only to read the top-level
``InputSandbox``. Entries with a URI scheme other than ``file://`` (``gsiftp://``,
``https://``) are fetched by the service and skipped; the others are local paths,
relative to the JDL file's directory, ``*``/``?`` wildcards allowed.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wmproxy.cli.common import CliError


def _parse(text: str) -> Any:
    """The JDL as a ClassAd, or None when it does not parse (the service will say why)."""
    try:
        from wmproxy.jdl.parse import parse_jdl
    except ImportError:  # pragma: no cover - jdl package absent
        import classad2

        try:
            return classad2.ClassAd(text if text.lstrip().startswith("[") else f"[{text}]")
        except Exception:  # noqa: BLE001
            return None
    try:
        return parse_jdl(text)
    except Exception:  # noqa: BLE001 - JdlSyntaxError or classad errors
        return None


def input_sandbox_entries(jdl_text: str) -> list[str]:
    """The string entries of the top-level ``InputSandbox`` (a string counts as a list of one)."""
    ad = _parse(jdl_text)
    if ad is None:
        return []
    try:
        value = ad.get("InputSandbox")
    except Exception:  # noqa: BLE001 - an expression that does not evaluate
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def local_input_files(jdl_text: str, jdl_dir: str | os.PathLike[str]) -> list[Path]:
    """Local files named by the JDL's ``InputSandbox``, resolved against ``jdl_dir``.

    Returns:
        Existing regular files, in JDL order, without duplicates.

    Raises:
        CliError: ``InputSandbox`` when a local entry matches no file.
    """
    files: list[Path] = []
    for entry in input_sandbox_entries(jdl_text):
        parts = urlsplit(entry)
        if parts.scheme and parts.scheme != "file" and len(parts.scheme) > 1:
            continue  # remote: gsiftp://, https://...; (len > 1 keeps C:\ style paths local)
        local = parts.path if parts.scheme == "file" else entry
        path = Path(jdl_dir, os.path.expanduser(local))
        matches = sorted(glob.glob(str(path))) if glob.has_magic(str(path)) else [str(path)]
        found = [Path(m) for m in matches if Path(m).is_file()]
        if not found:
            raise CliError("InputSandbox", f"file not found: {path}")
        for f in found:
            if f not in files:
                files.append(f)
    return files
