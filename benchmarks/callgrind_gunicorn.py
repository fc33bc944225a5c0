"""Instructions per request of one gunicorn worker serving getVersion and jobSubmit over TLS
(issue 14, stop 52): what the in-process harnesses do not see (gunicorn, TLS, the caller's chain,
the access line's handler and metrics).

The service (``perf_support``'s deployment: TLS with client proxies, SQLite or a fresh PostgreSQL
database) runs under ``valgrind --tool=callgrind --trace-children=yes`` with one worker
(``[service] workers = 1``, its 4 threads) and the key pool off (``delegation_key_pool = 0``: no
background key generation; the one delegation is made before the windows). One client on one
kept-alive connection sends, per operation, ``WARM`` requests, then ``callgrind_control -z`` on the
worker, ``COUNTED`` requests, ``callgrind_control -d``: the dump's ``summary:`` / ``COUNTED`` is the
worker's instructions per request (its event loop and request threads together).

    PYTHONPATH=<checkout> .venv/bin/python benchmarks/callgrind_gunicorn.py OUT_DIR \\
        [--database sqlite|postgresql] [--warm 60] [--counted 150]

Prints the instructions per request of each operation; the dumps stay in ``OUT_DIR`` for
``callgrind_annotate``. Under valgrind a request costs some fifty times its usual time: on a
loaded machine the service may need minutes to start (``--start-timeout``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import (
    DELEGATION2_NS,
    WMPROXY_NS,
    client_context,
    database,
    envelope,
    post,
)

from tests.integration.service import BIN, Deployment, free_port, wait_for_tls, write_config
from wmproxy.security.pki import create_ca, write_proxy

OPERATIONS = {
    "getVersion": envelope(WMPROXY_NS, "getVersion"),
    "jobSubmit": envelope(WMPROXY_NS, "jobSubmit", jdl='[ Executable = "/bin/true"; Requirements = true; ]',
                          delegationId="bench"),
}


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        kids += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return kids


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=True, timeout=300)
    time.sleep(1)  # the worker reads the command when it next runs


def _delegate(conn: http.client.HTTPSConnection, proxy: Path) -> None:
    from lxml import etree

    from wmproxy.security.proxy import load_credential, sign_proxy_request

    reply = post(conn, envelope(DELEGATION2_NS, "getProxyReq", delegationID="bench"))
    csr = etree.fromstring(reply).findtext(".//getProxyReqReturn")
    assert csr, reply[:400]
    signed = sign_proxy_request(csr.encode(), load_credential(proxy), lifetime=6 * 3600)
    reply = post(conn, envelope(DELEGATION2_NS, "putProxy", delegationID="bench", proxy=signed.decode()))
    assert b"Fault" not in reply, reply[:400]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--warm", type=int, default=60)
    parser.add_argument("--counted", type=int, default=150)
    parser.add_argument("--start-timeout", type=float, default=900.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    valgrind = ["valgrind", "--tool=callgrind", "--trace-children=yes",  # wmproxy-server execs gunicorn
                f"--callgrind-out-file={args.out.resolve()}/callgrind.%p"]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp, database(args.database, Path(tmp)) as url:
        root = Path(tmp)
        ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
        host_cert, host_key = ca.issue_host("localhost", root / "host")
        proxy = root / "user" / "x509up"
        write_proxy(ca.issue_user("Bench User", root / "user"), proxy, lifetime=12 * 3600)
        port = free_port()
        config = root / "wmproxy.conf"
        write_config(config, db_url=url, ca_dir=root / "certificates", host_cert=host_cert, host_key=host_key,
                     state=root, port=port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
        env.update(WMPROXY_CONFIG=str(config), WMPROXY_SERVICE_WORKERS="1", WMPROXY_SECURITY_DELEGATION_KEY_POOL="0")
        dep = Deployment(config=config, state=root, port=port, env=env)
        init = dep.run(str(BIN / "wmproxy-admin"), "init")
        if init.returncode != 0:
            raise SystemExit(f"wmproxy-admin init failed: {init.stderr}")
        master = dep.start([*valgrind, sys.executable, "-m", "wmproxy.serve"], "gunicorn.log")
        try:
            wait_for_tls(port, timeout=args.start_timeout)
            while not _children(master.pid):
                time.sleep(0.5)
            worker = str(_children(master.pid)[0])
            conn = http.client.HTTPSConnection("localhost", port, context=client_context(root / "certificates", proxy),
                                               timeout=600)
            _delegate(conn, proxy)
            for name, body in OPERATIONS.items():
                for _ in range(args.warm):
                    reply = post(conn, body)
                assert b"Fault" not in reply, reply[:400]
                _control("-z", worker)
                for _ in range(args.counted):
                    post(conn, body)
                _control("-d", name, worker)
            conn.close()
        finally:
            dep.stop()
    for dump in sorted(args.out.glob("callgrind.*.*")):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: dump (\w+)", text, re.MULTILINE)
        summary = re.search(r"^summary: (\d+)", text, re.MULTILINE)
        if trigger and summary and trigger.group(1) in OPERATIONS:
            print(f"{trigger.group(1)}: {int(summary.group(1)) / args.counted:,.0f} instructions per request "
                  f"({dump.name})")


if __name__ == "__main__":
    main()
