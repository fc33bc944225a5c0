"""In-process profile of the SOAP hot path: getVersion, jobSubmit and delegation driven through
the WSGI application (no TLS, no gunicorn), on SQLite or PostgreSQL.

Prints CPU milliseconds per call (process time, min/median/max over windows), and with
``--profile OP`` the top of a cProfile of that operation (sorted by cumulative time). It is a
tool for finding what to cut, not a target: the issue-14 figures are ``soap_ratios.py``'s.

One delegation is a delegation-2 getProxyReq and a putProxy, as in ``soap_ratios.py``; only
the server's part is timed and profiled: the key pool is filled before each window (the keys
are made once, then sealed again and inserted per window, outside the timed part) and the
client signs the CSR between the two requests with the clock and the profiler stopped. Its
figure is the CPU of the pair, printed with the pair over one getVersion.

    .venv/bin/python benchmarks/soap_inprocess.py [--database sqlite|postgresql] [--calls 2000]
        [--windows 5] [--profile getVersion|jobSubmit|delegation] [--top 40] [--only delegation]
        [--cas 100] [--voms]

``--voms``: the user's proxy carries a VOMS AC (``perf_support.voms_proxy``), as in
``soap_ratios.py --voms``: jobSubmit then checks the stored proxy's FQANs at every call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import (
    DELEGATION2_NS,
    DELEGATION_IDS,
    IGTF_CAS,
    WMPROXY_NS,
    add_trust_anchors,
    database,
    envelope,
    voms_proxy,
)

from wmproxy.security.pki import create_ca, write_proxy

GET_VERSION = envelope(WMPROXY_NS, "getVersion")
SUBMIT = envelope(WMPROXY_NS, "jobSubmit", jdl='[ Executable = "/bin/true"; Requirements = true; ]',
                  delegationId="bench")


class Bench:
    """The in-process application (``post(body)``) and what a delegation window needs."""

    def __init__(self, post: Callable[[bytes], bytes], rt: Any, proxy: Path) -> None:
        self.post = post
        self.rt = rt
        self.proxy = proxy
        self._keys: list[tuple[bytes, bytes]] = []
        self._credential: Any = None

    def fill_pool(self, keys: int) -> None:
        """Put ``keys`` distinct pooled keys in the (empty) pool: made once, sealed again per call."""
        from wmproxy.domain import utcnow
        from wmproxy.security.delegation import new_proxy_request

        bits = self.rt.settings.security.delegation_key_bits
        while len(self._keys) < keys:
            self._keys.append(new_proxy_request(bits))
        with self.rt.uow() as uow:
            for key_pem, csr_pem in self._keys[:keys]:
                uow.key_pool.add(self.rt.sealer.seal(key_pem), csr_pem.decode(), bits, utcnow())

    def delegations(self, count: int, window: int, profiler: cProfile.Profile | None = None) -> float:
        """``count`` delegations (getProxyReq, client signature, putProxy) from a filled pool;
        returns the process CPU seconds of the two requests (the signature not included)."""
        from lxml import etree

        from wmproxy.security.proxy import load_credential, sign_proxy_request

        if self._credential is None:
            self._credential = load_credential(self.proxy)
        self.fill_pool(count)
        used = 0.0
        for i in range(count):
            delegation_id = f"x{i % DELEGATION_IDS}"
            if profiler is not None:
                profiler.enable()
            start = time.process_time()
            reply = self.post(envelope(DELEGATION2_NS, "getProxyReq", delegationID=delegation_id))
            used += time.process_time() - start
            if profiler is not None:
                profiler.disable()
            csr = etree.fromstring(reply).findtext(".//getProxyReqReturn")
            assert csr, reply[:400]
            signed = sign_proxy_request(csr.encode(), self._credential, lifetime=3600)
            body = envelope(DELEGATION2_NS, "putProxy", delegationID=delegation_id, proxy=signed.decode())
            if profiler is not None:
                profiler.enable()
            start = time.process_time()
            reply = self.post(body)
            used += time.process_time() - start
            if profiler is not None:
                profiler.disable()
            root = etree.fromstring(reply)
            assert root.xpath("//*[local-name()='putProxyResponse']"), reply[:600]
            assert not root.xpath("//*[local-name()='Fault']"), reply[:600]
        return used


def check_reply(operation: str, reply: bytes) -> None:
    """Fail unless ``reply`` is ``operation``'s response with its value: a version ``x.y.z``
    (getVersion), a job id (jobSubmit); never a fault."""
    from lxml import etree

    root = etree.fromstring(reply)
    assert not root.xpath("//*[local-name()='Fault']"), reply[:600]
    response = root.xpath(f"//*[local-name()='{operation}Response']")
    assert response, reply[:600]
    if operation == "getVersion":
        assert re.fullmatch(r"\d+\.\d+\.\d+", response[0].findtext("version") or ""), reply[:600]
    elif operation == "jobSubmit":
        assert (response[0].findtext(".//id") or "").startswith("https://"), reply[:600]


def build(root: Path, url: str, cas: int = 0, voms: bool = False) -> Bench:
    """The application on a fresh store with one delegated proxy ``bench`` (the key pool on,
    its filler not started: :meth:`Bench.fill_pool` fills it); ``voms``: the user's proxy is a
    VOMS proxy, and the caller has its FQANs."""
    from tests.support import delegate_in_process
    from wmproxy.domain import Principal
    from wmproxy.security.dn import slash_dn
    from wmproxy.soap.app import WMProxyApplication

    ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
    add_trust_anchors(root / "certificates", cas)
    user = ca.issue_user("Bench User", root / "user")
    proxy = root / "user" / "x509up"
    if voms:
        voms_proxy(ca, root, proxy)
    else:
        write_proxy(user, proxy, lifetime=3600 * 12)
    rt = in_process_runtime(root, url, key_pool=1)
    settings = rt.settings
    fqans: tuple[str, ...] = ()
    if voms:
        from wmproxy.security.chain import load_pem_chain
        from wmproxy.security.voms import verified_fqans

        fqans = verified_fqans(load_pem_chain(proxy.read_bytes()), vomsdir=settings.security.vomsdir,
                               ca_dir=settings.security.ca_dir)
        assert fqans, "the VOMS proxy's AC does not verify"
    principal = Principal(dn=slash_dn(user.cert.subject), fqans=fqans)
    delegate_in_process(rt, principal, proxy, "bench")
    app = WMProxyApplication(rt, authenticate=lambda environ: principal)
    path = settings.service.endpoint_path

    return Bench(lambda body: post_to(app, path, body), rt, proxy)


def in_process_runtime(root: Path, url: str, key_pool: int) -> Any:
    """A runtime on the fresh store ``url`` (initialised) with the CA directory ``root /
    "certificates"`` and ``[security] delegation_key_pool`` ``key_pool`` (its filler not started)."""
    from wmproxy import config
    from wmproxy.admin import initialise
    from wmproxy.services.runtime import Runtime

    settings = config.Settings(
        database=config.DatabaseSettings(url=url),
        security=config.SecuritySettings(ca_dir=str(root / "certificates"), vomsdir=str(root / "vomsdir"),
                                         store_key_file=str(root / "store.key"), delegation_key_pool=key_pool),
        service=config.ServiceSettings(host="localhost", port=7443, drain_file=str(root / "drain")),
        sandbox=config.SandboxSettings(root=str(root / "sandbox")),
        execution=config.ExecutionSettings(work_dir=str(root / "work")),
    )
    initialise(settings)
    return Runtime.from_settings(settings)


def post_to(app: Callable[..., Any], path: str, body: bytes, **environ_extra: Any) -> bytes:
    """The reply of the WSGI application ``app`` to a SOAP POST of ``body`` to ``path`` (an
    HTTPS request's environ, plus ``environ_extra``)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
        "SERVER_PORT": "7443", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https",
        **environ_extra,
    }
    out = app(environ, lambda status, headers, exc_info=None: None)
    reply = b"".join(out)
    close = getattr(out, "close", None)
    if close is not None:
        close()
    return reply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--calls", type=int, default=2000, help="getVersion calls per window (jobSubmit: a tenth)")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--profile", choices=["getVersion", "jobSubmit", "delegation"])
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callees", help="also print the callees of the functions matching this")
    parser.add_argument("--only", choices=["delegation"], help="getVersion and delegation only")
    parser.add_argument("--cas", type=int, default=0,
                        help=f"more CAs in the CA directory (an IGTF trust store: about {IGTF_CAS})")
    parser.add_argument("--voms", action="store_true", help="the user's proxy carries a VOMS AC")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp)) as url:
        bench = build(Path(tmp), url, args.cas, args.voms)
        post = bench.post
        check_reply("getVersion", post(GET_VERSION))
        check_reply("jobSubmit", post(SUBMIT))
        delegations = max(1, args.calls // 20)
        bench.delegations(2, -1)  # warm-up
        ops = {"getVersion": (GET_VERSION, args.calls), "jobSubmit": (SUBMIT, max(1, args.calls // 10))}
        if args.only == "delegation":
            del ops["jobSubmit"]
        if args.profile:
            profiler = cProfile.Profile(time.process_time)  # CPU, as the figures
            if args.profile == "delegation":
                bench.delegations(delegations, 0, profiler)
            else:
                body, calls = ops[args.profile]
                profiler.enable()
                for _ in range(calls):
                    post(body)
                profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
            if args.callees:
                pstats.Stats(profiler).sort_stats("cumulative").print_callees(args.callees)
            return
        figures: dict[str, list[float]] = {}
        for window in range(args.windows):
            for name, (body, calls) in ops.items():
                start = time.process_time()
                for _ in range(calls):
                    reply = post(body)
                figures.setdefault(name, []).append((time.process_time() - start) / calls * 1000)
                check_reply(name, reply)  # the window's last reply: the figure is of calls that worked
            pair = bench.delegations(delegations, window) / delegations * 1000
            figures.setdefault("delegation (getProxyReq + putProxy)", []).append(pair)
            figures.setdefault("delegation / getVersion, inverse CPU", []).append(figures["getVersion"][-1] / pair)
        for name, values in figures.items():
            unit = "" if "/" in name else " CPU ms per call"
            print(f"{name} ({args.database}):{unit} min/median/max "
                  f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}", flush=True)


if __name__ == "__main__":
    main()
