"""Give the memory of a big request back to the system once its response is sent (issue 14).

A 10,000-node jobRegister builds some 10^5 short-lived objects (ORM rows and their states, which
reference each other, ClassAds, strings). Freed, they leave (1) reference cycles that only the
cyclic collector reclaims, at its own pace now that Spyne's forced collections are off, and (2)
free memory that glibc keeps in the heaps of the request threads (one arena per thread) instead
of returning it to the kernel. Without both steps a worker stayed 80-170 MB above its idle size
after such a request.

:func:`release_after` wraps the WSGI response of a request whose body is at least
:data:`BIG_REQUEST_BYTES`: when the server closes the response (after the last byte went to
the client), it runs a full collection and ``malloc_trim(0)``, on the request's thread, so the
client does not wait for it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from wmproxy.allocator import glibc_function

log = logging.getLogger(__name__)

#: Requests with a body of at least this many bytes release memory afterwards (1 MiB: a JDL
#: of about 4,000 nodes; ordinary requests are a few kB).
BIG_REQUEST_BYTES = 1024 * 1024

_malloc_trim = glibc_function("malloc_trim")

#: glibc ``mallopt`` parameter M_ARENA_MAX, and the arenas a process may have: by default glibc
#: gives each request thread a heap of its own (up to 8 per core), each keeping the high-water
#: mark of the requests it served; two arenas are plenty for four request threads.
M_ARENA_MAX = -8
ARENAS = 2


def limit_arenas() -> None:
    """Limit glibc's malloc arenas to :data:`ARENAS` in this process (and the processes it forks:
    call it before the request threads start); nothing where ``mallopt`` does not exist."""
    mallopt = glibc_function("mallopt")
    if mallopt is not None:
        mallopt(M_ARENA_MAX, ARENAS)


def release_memory() -> None:
    """Collect every generation, then hand glibc's free heap memory back to the kernel (where
    ``malloc_trim`` exists)."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


class _ReleasingResponse:
    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            release_memory()


def release_after(environ: dict[str, Any], body: Iterable[bytes]) -> Iterable[bytes]:
    """``body`` itself for ordinary requests; for a request of :data:`BIG_REQUEST_BYTES` or more,
    a response that runs :func:`release_memory` when the server closes it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length < BIG_REQUEST_BYTES:
        return body
    return _ReleasingResponse(body)
