"""Register, start and read the status tree of a 1,000-node collection (issue 3 scale target).

Starts a real deployment (gunicorn over TLS + SQLite by default, or the database URL
given with --database-url) on a throwaway PKI, then through the project's zeep client:
jobRegister of one collection JDL with N inline nodes, jobStart, getJobStatus of the
whole tree, and getSandboxBulkDestURI. Prints each figure in seconds. No worker is
started: the numbers are the service's, not the jobs'.

    .venv/bin/python benchmarks/collection_1000.py [--nodes 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.service import BIN, Deployment, free_port, write_config
from wmproxy.client import WMProxyClient
from wmproxy.security.pki import create_ca, write_proxy


def collection(nodes: int) -> str:
    body = ",\n".join(
        f'  [ Executable = "/bin/echo"; Arguments = "node {i}"; StdOutput = "o{i}.txt";'
        f' OutputSandbox = {{"o{i}.txt"}}; ]'
        for i in range(nodes)
    )
    return f'[ Type = "collection";\n  Requirements = true;\n  Nodes = {{\n{body}\n  }};\n]'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = create_ca(root / "certificates", key_path=root / "ca" / "key.pem")
        host_cert, host_key = ca.issue_host("localhost", root / "host")
        user = ca.issue_user("Bench User", root / "user")
        proxy = root / "user" / "x509up"
        write_proxy(user, proxy, lifetime=3600 * 12)
        port = free_port()
        config = root / "wmproxy.conf"
        db = args.database_url or f"sqlite:///{root}/wmproxy.db"
        write_config(config, db_url=db, ca_dir=root / "certificates", host_cert=host_cert, host_key=host_key,
                     state=root, port=port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
        env["WMPROXY_CONFIG"] = str(config)
        dep = Deployment(config=config, state=root, port=port, env=env)
        assert dep.run(str(BIN / "wmproxy-admin"), "init").returncode == 0
        dep.start_gunicorn()
        try:
            client = WMProxyClient(dep.endpoint, str(proxy), str(root / "certificates"))
            client.delegate("bench")
            jdl = collection(args.nodes)
            t0 = time.perf_counter()
            job = client.job_register(jdl, "bench")
            t1 = time.perf_counter()
            client.job_start(job.id)
            t2 = time.perf_counter()
            status = client.get_job_status(job.id)
            t3 = time.perf_counter()
            uris = client.get_sandbox_bulk_dest_uri(job.id, "https")
            t4 = time.perf_counter()
            assert len(job.children) == args.nodes and len(status.children) == args.nodes
            assert len(uris) == args.nodes + 1
            print(f"nodes:                    {args.nodes}")
            print(f"database:                 {db.split(':')[0]}")
            print(f"jobRegister:              {t1 - t0:.2f} s")
            print(f"jobStart:                 {t2 - t1:.2f} s")
            print(f"register + start:         {t2 - t0:.2f} s")
            print(f"getJobStatus (tree):      {t3 - t2:.2f} s")
            print(f"getSandboxBulkDestURI:    {t4 - t3:.2f} s")
        finally:
            dep.stop()


if __name__ == "__main__":
    main()
