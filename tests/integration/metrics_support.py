"""``wmproxy-metrics`` of a real deployment for the tests: started as the service processes run,
read over plain HTTP (tests/integration/test_metrics.py, test_start_checks.py)."""

from __future__ import annotations

import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.service import BIN, Deployment
from tests.port_support import on_free_port
from tests.support import wait_for


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),  # noqa: S310 - http://127.0.0.1
                                    timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start_metrics(deployment: Deployment, prefix: tuple[str, ...] = (), **env: str) -> int:
    """``wmproxy-metrics`` as the service processes run (the service user, when root), its
    command after ``prefix`` (e.g. ``prlimit``), on a free port, once it listens; that port."""
    argv = [*prefix, *deployment.service_prefix,
            *deployment.python_command("wmproxy.monitoring", BIN / "wmproxy-metrics")]

    def on(port: int) -> int:
        saved = dict(deployment.env)
        deployment.env.update(WMPROXY_METRICS_BIND=f"127.0.0.1:{port}", **env)
        try:
            deployment.start_listening(argv, f"metrics-{port}.log", port, "wmproxy-metrics")
        finally:
            deployment.env.clear()
            deployment.env.update(saved)
        return port

    port = on_free_port(on)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), what=f"wmproxy-metrics on port {port}")
    return port


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def token_file(deployment: Deployment, token: str) -> Path:
    """A ``[metrics] token_file`` holding ``token``, the service user's (0600)."""
    path = deployment.state / f"metrics-token-{secrets.token_hex(8)}"
    path.write_text(token + "\n")
    path.chmod(0o600)
    owner = deployment.state.stat()
    os.chown(path, owner.st_uid, owner.st_gid)
    return path
