"""The baseline of ``benchmarks/sandbox_transfer.py``: the plainest WSGI file transfer that stores
an upload the way a real PUT server does, served by gunicorn with the service's TLS settings.

PUT streams the body (1 MiB reads of ``wsgi.input``, written as they come) into a temporary file
next to ``$WMPROXY_BENCH_RAW_DIR/<name>`` and renames it over the target, as nginx's DAV module
and Apache's mod_dav_fs do, and as the sandbox edge does: the same file-system work as the edge
(a new file, then the old one freed by the rename). Before the third pass of issue 14 it truncated
the target and rewrote it in place, which is not a safe PUT (a reader sees a partial file) and,
on the benchmark machine, was cheaper for a reason of its own: the rewrite reuses the page-cache
pages the truncation has just freed, while a new file needs other pages, and the VM's balloon
(free page reporting) gives free pages back to the host after a few seconds, so touching them
again costs about 2 ms of CPU per MiB. With ``WMPROXY_BENCH_RAW_IN_PLACE=1`` it still does that
(``sandbox_transfer.py --in-place-baseline`` shows both side by side). GET sends the file with the
server's file wrapper.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

CHUNK = 1024 * 1024


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = os.path.join(os.environ["WMPROXY_BENCH_RAW_DIR"], os.path.basename(environ["PATH_INFO"]))
    if environ["REQUEST_METHOD"] == "PUT":
        stream = environ["wsgi.input"]
        if os.environ.get("WMPROXY_BENCH_RAW_IN_PLACE") == "1":
            with open(path, "wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
            start_response("201 Created", [("Content-Length", "0")])
            return [b""]
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".upload.")
        with open(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        os.replace(tmp, path)
        start_response("201 Created", [("Content-Length", "0")])
        return [b""]
    f = open(path, "rb")  # noqa: SIM115 - closed by the server's file wrapper
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.fstat(f.fileno()).st_size))])
    return environ["wsgi.file_wrapper"](f, CHUNK)
