"""Entry points of the server side, runnable from an installed wheel (no source tree).

* ``wmproxy-server [-c FILE] [gunicorn options]``: gunicorn with the packaged configuration
  (:mod:`wmproxy.gunicorn_conf`) serving ``wmproxy.soap.app:application``; the service
  configuration comes from ``-c/--config`` or ``WMPROXY_CONFIG`` as for every wmproxy process.
  Other options go to gunicorn (e.g. ``--log-level debug``); ``--help`` prints
  :data:`SERVER_HELP`. gunicorn's master runs the start checks once before it listens and
  exits as the other processes do (:mod:`wmproxy.services.startup`: 2 for a configuration
  error, 3 for a refusal, also for a worker that fails to boot; 1 for a database not reachable
  yet).
* ``wmproxy-admin``, ``wmproxy-worker``, ``wmproxy-renewal``, ``wmproxy-metrics``: the server
  commands.

The server stack (Spyne, SQLAlchemy, Alembic, psycopg, gunicorn) is the ``server`` extra:
``pip install wmproxy`` installs the CLI only (``wmproxy``); ``pip install 'wmproxy[server]'``
the service. Every server entry point first checks that the stack is importable and
otherwise exits with status 1 and the command that installs it, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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


SERVER_HELP = """\
Usage: wmproxy-server [-c FILE] [GUNICORN OPTIONS]

  Run the wmproxy SOAP service (the WMProxy and delegation ports, the sandbox and job agent
  transfers) over HTTPS with grid client certificates: gunicorn serving
  wmproxy.soap.app:application with the configuration shipped in the package
  (wmproxy.gunicorn_conf). The service checks the configuration, the file modes, the schema
  and the store key before it listens.

Options:
  -c, --config FILE  the wmproxy configuration file (INI, docs/configuration.md); sets
                     WMPROXY_CONFIG, which is read when this option is not given
  --check-config     read the configuration and load the host certificate, key and CA
                     directory as the service would, say what is wrong and exit (0: valid,
                     2: a configuration error, 3: TLS files); starts nothing. The unit's
                     ExecReload runs it before it signals the service (systemctl reload)
  -h, --help         show this message and exit

gunicorn's settings come from the wmproxy configuration: [service] bind, workers, threads and
graceful_timeout, [security] host_cert and host_key (TLS); the rest is fixed in
wmproxy.gunicorn_conf. Any other option is passed to gunicorn and overrides it there, e.g.
--log-level debug, --bind 127.0.0.1:8443, --workers 4 (gunicorn --help lists them); there is
no way to replace the packaged gunicorn configuration file.

Exit status: 0 after a stop, 2 for a configuration error, 3 when it refused to start (store
key, schema, file modes, directories, host certificate and key, a worker that failed to boot:
the one-line message names the cause), 1 otherwise (the database not reachable yet).
"""


class ServerArguments:
    """``wmproxy-server``'s command line: its own options and gunicorn's."""

    def __init__(self, args: list[str], flags: frozenset[str]) -> None:
        """``args`` after the program name; ``flags``: gunicorn's options without a value."""
        self.config: str | None = None
        self.help = False
        self.check = False
        self.gunicorn: list[str] = []
        self.error: str | None = None
        rest = iter(args)
        for arg in rest:
            if arg in ("-h", "--help"):
                self.help = True
            elif arg == "--check-config":
                self.check = True
            elif arg in ("-c", "--config"):
                self.config = next(rest, None)
                if not self.config:
                    self.error = f"{arg} needs a file name"
            elif arg.startswith("--config="):
                self.config = arg.split("=", 1)[1]
            elif arg.startswith("-c") and not arg.startswith("--"):
                self.config = arg[2:]
            elif arg == "--" or not arg.startswith("-"):
                self.error = f"unexpected argument {arg!r}: the application is wmproxy's, options only"
            else:
                self.gunicorn.append(arg)
                attached = "=" in arg or (not arg.startswith("--") and len(arg) > 2)  # --bind=X, -w4
                if not attached and arg not in flags:
                    value = next(rest, None)
                    if value is not None:
                        self.gunicorn.append(value)


def gunicorn_flags() -> frozenset[str]:
    """gunicorn's command-line options that take no value (every other one takes one)."""
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

    flags = {"-v", "--version"}
    for setting in KNOWN_SETTINGS:
        if setting.cli and setting.action in ("store_true", "store_false", "store_const"):
            flags.update(setting.cli)
    return frozenset(flags)


def gunicorn_argv(program: str, args: list[str]) -> list[str]:
    """gunicorn's argv for ``program args``: the packaged config, the caller's options, the app.

    ``program`` stays first so that gunicorn's binary upgrade (SIGUSR2) re-executes it.
    """
    return [program, "-c", GUNICORN_CONFIG, *args, APPLICATION]


def server() -> None:
    """``wmproxy-server [-c FILE] [gunicorn options]``: gunicorn in this process (the unit's main process).

    The process first starts again with ``PYTHONMALLOC=malloc``
    (:func:`wmproxy.allocator.exec_with_system_malloc`; gunicorn's master would otherwise do it
    in its ``on_starting`` hook, after reading its configuration and logging its start once
    more). The start checks run once, in gunicorn's master before it listens
    (:func:`wmproxy.gunicorn_conf.start_checks`), and a refusal exits there with its status
    (:mod:`wmproxy.services.startup`: 2 configuration, 3 refused, 1 the database not reachable
    yet); so does a worker that fails to boot (:func:`wmproxy.gunicorn_conf.on_exit`).
    """
    require_server("wmproxy-server")
    parsed = ServerArguments(sys.argv[1:], gunicorn_flags())
    if parsed.help:
        sys.stdout.write(SERVER_HELP)
        return
    if parsed.error:
        print(f"wmproxy-server: {parsed.error} (wmproxy-server --help)", file=sys.stderr)
        sys.exit(2)  # a usage error, as gunicorn's and click's
    if parsed.check:
        if parsed.config is not None:
            os.environ["WMPROXY_CONFIG"] = os.path.abspath(parsed.config)
        sys.exit(check_config())
    from wmproxy.allocator import exec_with_system_malloc

    exec_with_system_malloc()  # the same command line again: parsed again, -c included
    if parsed.config is not None:
        os.environ["WMPROXY_CONFIG"] = os.path.abspath(parsed.config)
    from gunicorn.app.wsgiapp import WSGIApplication  # type: ignore[import-untyped]

    sys.argv = gunicorn_argv(sys.argv[0], parsed.gunicorn)
    WSGIApplication("wmproxy-server [-c FILE] [OPTIONS]").run()


def check_config() -> int:
    """``wmproxy-server --check-config``: the configuration read as the service reads it
    (:func:`wmproxy.config.load_settings`) and its TLS files loaded as this user (the service
    user, under the unit): the host certificate and key as a pair, the CA directory. One line on
    stderr naming what is wrong, or on stdout that it is valid.

    Returns:
        The exit status: 0 valid, 2 a configuration error, 3 the TLS files
        (:mod:`wmproxy.services.startup`).
    """
    from wmproxy.config import ConfigError, load_settings
    from wmproxy.monitoring.health import host_pair_problem
    from wmproxy.services.startup import EXIT_REFUSED, exit_status

    source = os.environ.get("WMPROXY_CONFIG") or "no file (WMPROXY_CONFIG is not set)"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wmproxy-server: {exc}", file=sys.stderr)
        return exit_status(exc)
    sec = settings.security
    problem = host_pair_problem(sec.host_cert, sec.host_key)
    if problem is None and not os.path.isdir(sec.ca_dir):
        problem = f"the CA directory {sec.ca_dir} ([security] ca_dir) is not a directory"
    if problem is not None:
        print(f"wmproxy-server: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"wmproxy-server: the configuration is valid ({source})")
    return 0


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
