"""Directory trees deeper than Python's recursion limit, for the tests of the code that walks and
removes them (:mod:`wmproxy.sandbox.trees` and its users: work dirs, job areas, the purger).

pytest removes old temporary directories with :func:`shutil.rmtree`, which recurses on 3.11: a
deep tree left below ``tmp_path`` would make a later session fail at its end. A test that makes
one therefore removes it itself, whatever its outcome, with coreutils ``rm`` (not the code under
test): ``with removed_afterwards(path): ...``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

#: Levels of the trees the tests make: as the review's job made, far past the recursion limit (1000).
DEPTH = 2500

_CHAIN = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for _ in range(int(sys.argv[2])):
    os.mkdir("a", 0o700, dir_fd=fd)
    child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    file = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=child)
    os.write(file, b"xy")
    os.close(file)
    os.close(fd)
    fd = child
os.close(fd)
"""


def make_chain(top: Path, depth: int = DEPTH, *, uid: int | None = None, gid: int | None = None) -> None:
    """Make ``top/a/a/...``, ``depth`` directories below the existing directory ``top``, each
    holding a 2-byte file ``f``, through descriptors (a path that deep passes PATH_MAX), in a
    process of its own: as ``uid``/``gid`` when given (a job's account)."""
    subprocess.run(["/usr/bin/python3", "-I", "-c", _CHAIN, str(top), str(depth)], user=uid, group=gid,
                   extra_groups=None if uid is None else [], check=True, timeout=600)


def remove_deep(path: Path) -> None:
    """Remove ``path`` however deep it is (coreutils ``rm``), as a clean-up: what cannot be
    removed is left (as ``shutil.rmtree(path, ignore_errors=True)`` leaves it)."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False, timeout=600)


@contextlib.contextmanager
def removed_afterwards(*paths: Path) -> Iterator[None]:
    """Remove ``paths`` (:func:`remove_deep`) when the block ends, however it ends."""
    try:
        yield
    finally:
        for path in paths:
            remove_deep(path)

