"""Helpers shared by the renewal integration tests (test_renewal.py, test_renewal_info.py)."""

from __future__ import annotations

from tests.integration.service import BIN, Deployment


def sleeper(seconds: int, server: str | None = "") -> str:
    """A JDL running sleep for ``seconds``; ``server`` None = no MyProxyServer attribute."""
    attr = "" if server is None else f'MyProxyServer = "{server}";'
    return f'[ Executable = "/bin/sleep"; Arguments = "{seconds}"; {attr} ]'


def start_renewal_worker(dep: Deployment, name: str) -> None:
    """Start ``wmproxy-renewal --name <name>`` for ``dep`` as the service (``service_prefix``: the
    service user, without capabilities, when the deployment has one), logging to
    ``<state>/<name>.log``; ``dep.stop()`` stops it with the deployment's other processes."""
    command = [*dep.service_prefix, *dep.python_command("wmproxy.renewal", BIN / "wmproxy-renewal"), "--name", name]
    dep.start(command, f"{name}.log")
