"""In-process profile of the SOAP hot path: getVersion and jobSubmit driven through the WSGI
application (no TLS, no gunicorn), on SQLite or PostgreSQL.

Prints CPU milliseconds per call (process time, min/median/max over windows), and with
``--profile OP`` the top of a cProfile of that operation (sorted by cumulative time). It is a
tool for finding what to cut, not a target: the issue-14 figures are ``soap_ratios.py``'s.

    .venv/bin/python benchmarks/soap_inprocess.py [--database sqlite|postgresql] [--calls 2000]
        [--windows 5] [--profile getVersion|jobSubmit] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import WMPROXY_NS, database, envelope

from wmproxy.security.pki import create_ca, write_proxy

GET_VERSION = envelope(WMPROXY_NS, "getVersion")
SUBMIT = envelope(WMPROXY_NS, "jobSubmit", jdl='[ Executable = "/bin/true"; Requirements = true; ]',
                  delegationId="bench")


def build(root: Path, url: str) -> Callable[[bytes], bytes]:
    """The application on a fresh store with one delegated proxy ``bench``; returns ``post(body)``."""
    from tests.support import delegate_in_process
    from wmproxy.admin import initialise
    from wmproxy.config import (
        DatabaseSettings,
        ExecutionSettings,
        SandboxSettings,
        SecuritySettings,
        ServiceSettings,
        Settings,
    )
    from wmproxy.domain import Principal
    from wmproxy.security.dn import slash_dn
    from wmproxy.services.runtime import Runtime
    from wmproxy.soap.app import WMProxyApplication

    ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
    user = ca.issue_user("Bench User", root / "user")
    proxy = root / "user" / "x509up"
    write_proxy(user, proxy, lifetime=3600 * 12)
    settings = Settings(
        database=DatabaseSettings(url=url),
        security=SecuritySettings(ca_dir=str(root / "certificates"), vomsdir=str(root / "vomsdir"),
                                  store_key_file=str(root / "store.key"), delegation_key_pool=0),
        service=ServiceSettings(host="localhost", port=7443, drain_file=str(root / "drain")),
        sandbox=SandboxSettings(root=str(root / "sandbox")),
        execution=ExecutionSettings(work_dir=str(root / "work")),
    )
    initialise(settings)
    rt = Runtime.from_settings(settings)
    principal = Principal(dn=slash_dn(user.cert.subject), fqans=())
    delegate_in_process(rt, principal, proxy, "bench")
    app = WMProxyApplication(rt, authenticate=lambda environ: principal)
    path = settings.service.endpoint_path

    def post(body: bytes) -> bytes:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
            "SERVER_PORT": "7443", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "text/xml; charset=utf-8",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https",
        }
        out = app(environ, lambda status, headers, exc_info=None: None)
        reply = b"".join(out)
        close = getattr(out, "close", None)
        if close is not None:
            close()
        return reply

    return post


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--calls", type=int, default=2000, help="getVersion calls per window (jobSubmit: a tenth)")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--profile", choices=["getVersion", "jobSubmit"])
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp)) as url:
        post = build(Path(tmp), url)
        assert b"<version>" in post(GET_VERSION) or b"version" in post(GET_VERSION)
        reply = post(SUBMIT)
        assert b"https://" in reply, reply[:400]
        ops = {"getVersion": (GET_VERSION, args.calls), "jobSubmit": (SUBMIT, max(1, args.calls // 10))}
        if args.profile:
            body, calls = ops[args.profile]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                post(body)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
            return
        for name, (body, calls) in ops.items():
            per_call = []
            for _ in range(args.windows):
                start = time.process_time()
                for _ in range(calls):
                    post(body)
                per_call.append((time.process_time() - start) / calls * 1000)
            print(f"{name} ({args.database}): CPU ms per call min/median/max "
                  f"{min(per_call):.3f} / {statistics.median(per_call):.3f} / {max(per_call):.3f}", flush=True)


if __name__ == "__main__":
    main()
