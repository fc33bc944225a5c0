"""How much server CPU a SOAP operation costs under gunicorn beyond its in-process cost and the
HTTP/TLS cost every request pays (issue 14: the "gunicorn gap" of jobSubmit and delegation).

Two servers of the same code on the same database kind and file system, measured in turns:

* gunicorn with the service's configuration (``perf_support.site``: TLS with a client proxy,
  ``[service] workers/threads`` as configured, ``PYTHONMALLOC=malloc``), one persistent HTTPS
  connection; the CPU is the user + system time of the gunicorn process group (``/proc``);
* the same WSGI application (``WMProxyApplication``) of the same configuration file, database
  and sandbox root, called directly in a child process set up as a gunicorn worker is:
  ``PYTHONMALLOC=malloc``, glibc's thresholds and arenas (``tune_allocator``, ``limit_arenas``),
  the calls made on a thread other than the main one, the caller the client's proxy (its DN and
  chain, as the TLS resolver gives them); the CPU is the child's process time
  (``time.process_time``).

Per round and operation: a gunicorn window, then an in-process window, of ``--calls`` operations
each (the key pool is topped up before each delegation window, outside the clock). Printed
per operation, min / median / max over rounds, in CPU ms per operation: both costs, and

    gap = (gunicorn op - k x gunicorn getVersion) - (in-process op - k x in-process getVersion)

with k the requests an operation makes (1; 2 for a delegation: getProxyReq + putProxy). A gap
near 0 means the operation costs under gunicorn what it costs in process plus what getVersion
costs there (HTTP, TLS, the gthread hand-offs, the access lines); what it does not explain is
the gap. Alternating the two servers keeps a loaded machine's drift out of the difference.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/gunicorn_gap.py [--database sqlite|postgresql]
        [--rounds 3] [--calls 300] [--ops getVersion,jobSubmit,delegation] [--root /var/tmp]
        [--env WMPROXY_SERVICE_THREADS=1 ...] [--cold 2]

``--cold MS`` makes the in-process thread sleep MS milliseconds before each request (outside its
CPU): a request thread under gunicorn also starts each request after a wait (the client's turn,
the other processes on the core), with colder CPU caches than a loop of back-to-back calls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import soap_ratios
from perf_support import client_context, database, group_cpu, post, site, summary

#: Requests one operation makes.
REQUESTS = {"getVersion": 1, "jobSubmit": 1, "delegation": 2}
BODIES = {"getVersion": soap_ratios.GET_VERSION, "jobSubmit": soap_ratios.SUBMIT}


# --- the in-process server: a child process reading "<op> <calls> <window>" lines ------------------


def serve_in_process(config: Path, proxy: Path, cold: float) -> None:
    """The child: the application of the deployment's configuration file ``config`` (its database,
    sandbox root and settings, without gunicorn or the key pool's filler), its caller the owner
    of ``proxy``; answers each command line on stdin with the CPU seconds per operation, computed
    on a thread of its own (as a gunicorn request thread). With ``cold`` (seconds), the thread
    sleeps that long before each request, as a request thread waits for the next request."""
    import io
    from wsgiref.util import setup_testing_defaults

    from soap_inprocess import Bench

    from wmproxy.allocator import tune_allocator
    from wmproxy.config import load_settings
    from wmproxy.domain import Principal
    from wmproxy.security.chain import chain_pem, identity_dn
    from wmproxy.security.proxy import load_credential
    from wmproxy.services.runtime import Runtime
    from wmproxy.soap.app import WMProxyApplication
    from wmproxy.soap.memory import limit_arenas

    tune_allocator()
    limit_arenas()
    os.environ["WMPROXY_CONFIG"] = str(config)
    settings = load_settings()
    rt = Runtime.from_settings(settings)
    credential = load_credential(proxy)
    chain = [credential.cert, *credential.chain]
    principal = Principal(dn=identity_dn(chain), chain_pem=chain_pem(chain), fqans=())
    app = WMProxyApplication(rt, authenticate=lambda environ: principal)
    path = settings.service.endpoint_path

    def call(body: bytes) -> bytes:
        if cold:
            time.sleep(cold)  # no CPU: the caches go cold, as between two requests of a client
        environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "wsgi.url_scheme": "https",
                                   "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
                                   "wsgi.input": io.BytesIO(body)}
        setup_testing_defaults(environ)  # the server's keys (SERVER_NAME, SERVER_PORT, ...)
        out = app(environ, lambda status, headers, exc_info=None: None)
        try:
            return b"".join(out)
        finally:
            if hasattr(out, "close"):  # the WSGI rule: the server closes what has close()
                out.close()

    bench = Bench(call, rt, proxy)
    for body in BODIES.values():
        for _ in range(20):
            assert b"Fault" not in call(body), call(body)[:400]
    print("ready", flush=True)
    for line in sys.stdin:
        op, calls, window = line.split()
        result: list[float] = []
        worker = threading.Thread(target=_window, args=(bench, op, int(calls), int(window), result))
        worker.start()
        worker.join()
        print(json.dumps(result[0]), flush=True)


def _window(bench: Any, op: str, calls: int, window: int, result: list[float]) -> None:
    """Append the CPU seconds per operation of ``calls`` operations ``op`` to ``result``."""
    if op == "delegation":
        result.append(float(bench.delegations(calls, window)) / calls)
        return
    body = BODIES[op]
    start = time.process_time()
    for _ in range(calls):
        bench.post(body)
    result.append((time.process_time() - start) / calls)


class InProcess:
    """The child process (started with the gunicorn workers' allocator settings)."""

    def __init__(self, config: Path, proxy: Path, cold: float = 0.0) -> None:
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(config), str(proxy), str(cold)], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the in-process server did not start")

    def window(self, op: str, calls: int, window: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{op} {calls} {window}\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


# --- the gunicorn server ----------------------------------------------------------------------------


def gunicorn_window(s: Any, op: str, calls: int, window: int, pooled: bool) -> float:
    """Server CPU seconds per operation over ``calls`` operations on one kept-alive connection,
    opened (and warmed up) after the key pool was topped up (when ``pooled``)."""
    if pooled:
        soap_ratios.wait_pool_full(s)
    conn = http.client.HTTPSConnection("localhost", s.port, context=client_context(s.ca_dir, s.proxy), timeout=120)
    try:
        post(conn, soap_ratios.GET_VERSION)
        before = group_cpu(s.pgid)
        for i in range(calls):
            if op == "delegation":
                soap_ratios.delegate(conn, window * 1_000_000 + i)
            else:
                post(conn, BODIES[op])
        return (group_cpu(s.pgid) - before) / calls
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300, help="operations per window (at most 600)")
    parser.add_argument("--ops", default="getVersion,jobSubmit,delegation")
    parser.add_argument("--root", default=None, help="directory for the stores and sandboxes (default: $TMPDIR)")
    parser.add_argument("--env", action="append", default=[], help="VAR=value for the gunicorn deployment")
    parser.add_argument("--cold", type=float, default=0.0,
                        help="milliseconds the in-process thread sleeps before each request (default: none)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_in_process(Path(args.child[0]), Path(args.child[1]), float(args.child[2]))
        return
    ops = args.ops.split(",")
    if "getVersion" not in ops:
        ops.insert(0, "getVersion")
    calls = min(args.calls, soap_ratios.POOL - 40)
    pooled = "delegation" in ops  # else no key pool, and no wait for it
    env = {"WMPROXY_SECURITY_DELEGATION_KEY_POOL": str(soap_ratios.POOL if pooled else 0)}
    env.update(dict(item.split("=", 1) for item in args.env))
    figures: dict[str, dict[str, list[float]]] = {op: {"gunicorn": [], "in process": []} for op in ops}
    with (tempfile.TemporaryDirectory(dir=args.root, prefix="wmproxy-bench-gap-") as tmp,
          database(args.database, Path(tmp)) as url, site(Path(tmp), url, env=env) as s):
        os.environ["WMPROXY_BENCH_PROXY"] = str(s.proxy)
        from wmproxy.client import WMProxyClient

        WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir)).delegate("bench")
        for op in ops:  # warm-up, outside the figures
            gunicorn_window(s, op, 20, 999, pooled)
        inproc = InProcess(s.deployment.config, s.proxy, args.cold / 1000)
        try:
            for round_ in range(args.rounds):
                for op in ops:
                    figures[op]["gunicorn"].append(gunicorn_window(s, op, calls, round_, pooled) * 1000)
                    if pooled:
                        soap_ratios.wait_pool_full(s)  # the filler is idle during the in-process window too
                    figures[op]["in process"].append(inproc.window(op, calls, round_) * 1000)
                print(f"  round {round_ + 1}: " + "; ".join(
                    f"{op} {figures[op]['gunicorn'][-1]:.2f} / {figures[op]['in process'][-1]:.2f}"
                    for op in ops) + " (CPU ms per operation, gunicorn / in process)", flush=True)
        finally:
            inproc.close()
    base = figures["getVersion"]
    print(f"CPU ms per operation, min / median / max of {args.rounds} rounds ({args.database}, {calls} per window"
          + (f", in process {args.cold:g} ms asleep before each request" if args.cold else "") + "):")
    for op in ops:
        k = REQUESTS[op]
        gaps = [(g - k * bg) - (i - k * bi) for g, i, bg, bi in zip(
            figures[op]["gunicorn"], figures[op]["in process"], base["gunicorn"], base["in process"], strict=True)]
        print(f"  {op:<11} gunicorn {summary(figures[op]['gunicorn'])}  in process {summary(figures[op]['in process'])}"
              + ("" if op == "getVersion" else f"  gap {summary(gaps)}"), flush=True)


if __name__ == "__main__":
    main()
