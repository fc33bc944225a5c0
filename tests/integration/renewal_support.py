"""Helpers shared by the renewal integration tests (test_renewal.py, test_renewal_info.py)."""

from __future__ import annotations

import subprocess

from tests.integration.service import BIN, REPO, Deployment


def sleeper(seconds: int, server: str | None = "") -> str:
    """A JDL running sleep for ``seconds``; ``server`` None = no MyProxyServer attribute."""
    attr = "" if server is None else f'MyProxyServer = "{server}";'
    return f'[ Executable = "/bin/sleep"; Arguments = "{seconds}"; {attr} ]'


def start_renewal_worker(dep: Deployment, name: str) -> None:
    """Start ``wmproxy-renewal --name <name>`` for ``dep``, logging to ``<state>/<name>.log``;
    ``dep.stop()`` stops it with the deployment's other processes."""
    with open(dep.state / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
        dep.processes.append(subprocess.Popen(
            [str(BIN / "wmproxy-renewal"), "--name", name], env=dep.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True,
        ))
