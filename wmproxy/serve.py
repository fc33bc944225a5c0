"""Entry points of the server side, runnable from an installed wheel (no source tree).

* ``wmproxy-server [gunicorn options]``: gunicorn with the packaged configuration
  (:mod:`wmproxy.gunicorn_conf`) serving ``wmproxy.soap.app:application``; the service
  configuration comes from ``WMPROXY_CONFIG`` as for every wmproxy process. Extra
  arguments go to gunicorn (e.g. ``--log-level debug``).
* ``wmproxy-admin``, ``wmproxy-worker``, ``wmproxy-renewal``: the server commands.

The server stack (Spyne, SQLAlchemy, Alembic, psycopg, gunicorn) is the ``server`` extra:
``pip install wmproxy`` installs the CLI only (``wmproxy``); ``pip install 'wmproxy[server]'``
the service. Every server entry point first checks that the stack is importable and
otherwise exits with status 1 and the command that installs it, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

#: Top-level modules of the ``server`` extra (pyproject.toml), as imported.
SERVER_MODULES = ("spyne", "sqlalchemy", "alembic", "psycopg", "gunicorn", "werkzeug", "prometheus_client", "jinja2")

#: The gunicorn configuration inside the package, in gunicorn's ``-c python:<module>`` form.
GUNICORN_CONFIG = "python:wmproxy.gunicorn_conf"
#: The WSGI application gunicorn serves.
APPLICATION = "wmproxy.soap.app:application"


def missing_server_modules() -> list[str]:
    """Modules of the ``server`` extra that cannot be imported here."""
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def require_server(command: str) -> None:
    """Exit with status 1 and the fix when the ``server`` extra is not installed.

    Args:
        command: the command's name, for the message.
    """
    missing = missing_server_modules()
    if missing:
        sys.exit(f"{command}: the wmproxy server stack is not installed (missing: {', '.join(missing)}); "
                 f"install it with: pip install 'wmproxy[server]'")


def gunicorn_argv(program: str, args: list[str]) -> list[str]:
    """gunicorn's argv for ``program args``: the packaged config, the caller's options, the app.

    ``program`` stays first so that gunicorn's binary upgrade (SIGUSR2) re-executes it.
    """
    return [program, "-c", GUNICORN_CONFIG, *args, APPLICATION]


def server() -> None:
    """``wmproxy-server [gunicorn options]``: gunicorn in this process (the unit's main process)."""
    require_server("wmproxy-server")
    from gunicorn.app.wsgiapp import WSGIApplication  # type: ignore[import-untyped]

    sys.argv = gunicorn_argv(sys.argv[0], sys.argv[1:])
    WSGIApplication("%(prog)s [OPTIONS]").run()


def _delegate(command: str, target: str) -> Callable[[], Any]:
    module_name, function = target.split(":")

    def main() -> Any:
        require_server(command)
        return getattr(importlib.import_module(module_name), function)()

    main.__doc__ = f"``{command}``: {target} once the server stack is known to be installed."
    return main


admin = _delegate("wmproxy-admin", "wmproxy.admin:main")
worker = _delegate("wmproxy-worker", "wmproxy.execution.__main__:main")
renewal = _delegate("wmproxy-renewal", "wmproxy.renewal.__main__:main")
metrics = _delegate("wmproxy-metrics", "wmproxy.monitoring.server:main")


if __name__ == "__main__":
    server()
