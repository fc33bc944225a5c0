"""glibc allocator settings of a service worker (issue 14: memory after a big request).

glibc's malloc serves a request of at least ``M_MMAP_THRESHOLD`` bytes with a mapping of its
own, returned to the kernel when freed. By default that threshold is dynamic: each time such a
block is freed, the threshold rises to its size (up to 32 MiB), so after the first big request
(multi-megabyte JDL texts, SOAP envelopes, SQL parameters) every later block below that size is
carved from the heaps instead, and what the heaps hand out in the middle stays resident after
it is freed. Likewise the top of a heap is only given back once more than ``M_TRIM_THRESHOLD``
bytes are free there (also raised dynamically, to twice the mmap threshold).

:func:`tune_allocator` fixes both: blocks of :data:`MMAP_THRESHOLD` bytes or more are always
mapped (and unmapped when freed), and a heap is trimmed as soon as :data:`TRIM_THRESHOLD` bytes
are free at its top. Setting either turns glibc's dynamic adjustment off. Ordinary requests
allocate far below 256 kB per block, so they never notice.

CPython's own allocator (pymalloc) serves every object of up to 512 bytes from 1 MiB arenas and
gives an arena back only once every object in it is gone: the few objects that outlive a big
request (cache entries, a new connection's state) keep whole arenas resident, 6-8 MB after a
10,000-node jobRegister. :func:`exec_with_system_malloc` re-executes the gunicorn master with
``PYTHONMALLOC=malloc`` (read by the interpreter at start only), so its workers allocate every
object from glibc, whose free pages :func:`wmproxy.soap.memory.release_memory` can give back.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

#: glibc ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks of at least this many bytes get a mapping of their own (256 kB).
MMAP_THRESHOLD = 256 * 1024
#: A heap gives back its free top once it is at least this many bytes (1 MiB).
TRIM_THRESHOLD = 1024 * 1024


def glibc_function(name: str) -> Any:
    """The C library's function ``name`` (a ctypes function), or None where the C library has
    none (musl, macOS: ``mallopt``, ``malloc_trim`` are glibc's)."""
    try:  # the process's own symbols, the C library's among them: ``find_library`` would run
        # ``ldconfig -p`` in a child process at every start of a service process
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _mallopt() -> Any:
    """glibc's ``mallopt``, None where the C library has none."""
    function = glibc_function("mallopt")
    if function is None:
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`)
    for this process and the processes it forks afterwards.

    Returns:
        True if both were set; False where there is no glibc ``mallopt`` (nothing changed) or
        glibc refused a value.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap_set) and bool(trim_set)


#: The variable that selects CPython's allocator; read once, when the interpreter starts.
PYTHONMALLOC = "PYTHONMALLOC"


def exec_with_system_malloc() -> None:
    """Replace this process (same pid, same open files) by the same command line with
    ``PYTHONMALLOC=malloc``, unless ``PYTHONMALLOC`` is set already (also by this very step: it
    runs once) or there is no glibc (musl and macOS keep pymalloc). Returns only in those cases.

    Call it before the process opens anything it must not hand down (sockets, threads): the
    gunicorn master's ``on_starting`` hook. ``PYTHONMALLOC=pymalloc`` in the environment keeps
    CPython's allocator.

    Raises:
        OSError: the interpreter could not be executed again.
    """
    if os.environ.get(PYTHONMALLOC) is not None or _mallopt() is None:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, PYTHONMALLOC: "malloc"})  # noqa: S606 -- this very command
