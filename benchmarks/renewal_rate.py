"""Renewals per second from a local myproxy-server: ``renew_proxy`` vs ``myproxy-get-delegation``.

Standalone: ``.venv/bin/python benchmarks/renewal_rate.py [-n 50]``. Generates a throwaway
PKI in a temporary directory (``wmproxy.security.pki``), starts Debian's myproxy-server on
loopback (``tests.peers.myproxy_server``), stores one renewable credential with the real
``myproxy-init -x -R '<service DN>'`` and renews it N times each way, as the service would:
TLS with the service host credential plus the user's still valid proxy as authorization
(``myproxy-get-delegation -a``, host credential via X509_USER_CERT/X509_USER_KEY).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers.myproxy_server import have_myproxy, start_myproxy_server, store_renewable_credential
from wmproxy.renewal.myproxy import renew_proxy
from wmproxy.security.chain import identity_dn, load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import create_ca, write_proxy

LIFETIME = 3600  # seconds requested per renewal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--renewals", type=int, default=50, help="renewals per client (default 50)")
    args = parser.parse_args(argv)
    if not have_myproxy():
        print("myproxy-server / myproxy tools not installed (Debian packages myproxy-server, myproxy)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="renewal-bench-") as tmp:
        root = Path(tmp)
        ca = create_ca(root / "certificates")
        svc_cert, svc_key = ca.issue_host("wms.localhost", root / "wms")
        svc_dn = slash_dn(load_pem_chain(svc_cert.read_bytes())[0].subject)
        user = ca.issue_user("Bench User", root / "user")
        proxy = root / "user" / "x509up"
        write_proxy(user, proxy, lifetime=12 * 3600)
        server = start_myproxy_server(root / "myproxy", ca=ca, ca_dir=root / "certificates",
                                      authorized_renewers=[svc_dn])
        try:
            username = store_renewable_credential(server, proxy, svc_dn, lifetime_hours=24)
            proxy_pem = proxy.read_bytes()

            start = time.perf_counter()
            for _ in range(args.renewals):
                pem = renew_proxy(server.host, server.port, host_cert=str(svc_cert), host_key=str(svc_key),
                                  ca_dir=str(root / "certificates"), user_proxy_pem=proxy_pem,
                                  username=username, lifetime=LIFETIME, timeout=30.0)
            python_s = time.perf_counter() - start
            assert identity_dn(load_pem_chain(pem)) == username

            env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "MYPROXY_"))}
            env.update(server.env(), X509_USER_CERT=str(svc_cert), X509_USER_KEY=str(svc_key))
            out = root / "renewed.pem"
            cmd = ["myproxy-get-delegation", "-s", server.host, "-p", str(server.port), "-l", username,
                   "-a", str(proxy), "-t", str(LIFETIME // 3600), "-o", str(out), "-q"]
            start = time.perf_counter()
            for _ in range(args.renewals):
                subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
            tool_s = time.perf_counter() - start
            assert identity_dn(load_pem_chain(out.read_bytes())) == username
        finally:
            server.stop()
    n = args.renewals
    print(f"{n} renewals each against myproxy-server on 127.0.0.1:{server.port} (lifetime {LIFETIME} s)")
    print(f"renew_proxy (Python, in process): {n / python_s:7.1f} renewals/s  ({python_s / n * 1000:6.1f} ms each)")
    print(f"myproxy-get-delegation -a (exec): {n / tool_s:7.1f} renewals/s  ({tool_s / n * 1000:6.1f} ms each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
