"""glibc's allocator thresholds of a service worker (``wmproxy.allocator``, issue 14), observed in
fresh interpreters through glibc's own counters (``mallinfo2``): after a big block has been freed,
a 512 kB block still gets a mapping of its own and the free top of the heap is given back."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from wmproxy import allocator

# Runs in a fresh interpreter: allocates and frees through the C library directly, so that only
# glibc's policy (not Python's allocator) decides where each block goes.
_PROBE = r"""
import ctypes, ctypes.util, json, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
tuned = sys.argv[1] == "tuned"
if tuned:
    from wmproxy.allocator import tune_allocator
    assert tune_allocator()
libc.free(libc.malloc(8 << 20))  # a big request's block: glibc's default raises its thresholds to it
mapped = libc.mallinfo2().hblks
block = libc.malloc(512 << 10)
mapped_512k = libc.mallinfo2().hblks - mapped
libc.free(block)
small = [libc.malloc(64 << 10) for _ in range(64)]  # 4 MiB of heap blocks, then freed
for p in reversed(small):
    libc.free(p)
print(json.dumps({"mapped_512k": mapped_512k, "free_top": libc.mallinfo2().keepcost}))
"""


def _probe(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(out.stdout)
    return result


pytestmark = pytest.mark.skipif(not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2"),
                                reason="glibc before 2.33 has no mallinfo2 to observe the heap with")


def test_big_blocks_stay_mapped_after_a_bigger_one_was_freed() -> None:
    assert _probe("default")["mapped_512k"] == 0  # glibc alone: carved from the heap
    assert _probe("tuned")["mapped_512k"] == 1


def test_the_free_top_of_the_heap_goes_back_above_one_mib() -> None:
    assert _probe("default")["free_top"] >= 4 << 20  # kept: the default threshold rose to 16 MiB
    assert _probe("tuned")["free_top"] <= allocator.TRIM_THRESHOLD


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """musl or macOS have no ``mallopt``: the tuning says so and changes nothing (simulated: no
    such C library runs here)."""
    class NoGlibc:  # a C library without glibc's functions
        def __init__(self, name: object) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", NoGlibc)
    assert allocator.tune_allocator() is False


_REEXEC = r"""
import os
from wmproxy.allocator import exec_with_system_malloc
print(os.getpid(), os.environ.get("PYTHONMALLOC"), flush=True)
exec_with_system_malloc()
print("returned", flush=True)
"""


def _reexec(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    out = subprocess.run([sys.executable, "-c", _REEXEC], capture_output=True, text=True, check=True,
                         env={**base, **env}).stdout
    return out.splitlines()


def test_the_process_starts_again_once_with_the_system_malloc() -> None:
    first, second, last = _reexec()
    pid = first.split()[0]
    assert first == f"{pid} None"
    assert second == f"{pid} malloc"  # the same process, with the same command line
    assert last == "returned"


def test_a_chosen_allocator_is_kept() -> None:
    assert _reexec(PYTHONMALLOC="pymalloc")[1:] == ["returned"]
    assert _reexec(PYTHONMALLOC="pymalloc")[0].endswith(" pymalloc")


def test_glibc_functions_are_found_without_a_child_process() -> None:
    """``ctypes.util.find_library`` runs ``ldconfig -p`` in a child process: every service
    process would pay for one at its start. The C library's functions are the process's own."""
    probe = (
        "import sys\n"
        "started = []\n"
        "kinds = ('subprocess.Popen', 'os.posix_spawn', 'os.fork')\n"
        "sys.addaudithook(lambda event, args: started.append(event) if event in kinds else None)\n"
        "from wmproxy.allocator import glibc_function\n"
        "assert glibc_function('mallopt') is not None and glibc_function('malloc_trim') is not None\n"
        "assert glibc_function('no_such_function_in_libc') is None\n"
        "print(started)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]", out.stdout
