"""How a wmproxy process that cannot start says so: its exit status.

Every long-running process (``wmproxy-server``, ``wmproxy-worker``, ``wmproxy-renewal``,
``wmproxy-metrics``) runs its start checks (configuration, file modes, schema, store key,
writable directories) before it serves, and on a failure prints one line and exits with:

* :data:`EXIT_CONFIG` (2): the configuration is wrong (a file, a variable, an option);
* :data:`EXIT_REFUSED` (3): it refused to start (a store key or SQLite file others can read,
  another store key, an older schema, a directory it cannot write, privileges);
* 1: the database could not be reached, or another failure a later try may not repeat.

Their systemd units (deploy/) restart on failure but not on 2 or 3
(``RestartPreventExitStatus=2 3``): a restart would only repeat the same refusal.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from wmproxy.config import ConfigError
from wmproxy.services.storekey import DatabaseUnreachableError

#: The configuration (a file, a variable, an option) is wrong.
EXIT_CONFIG = 2
#: The process refused to start: its message names the file or the command that fixes it.
EXIT_REFUSED = 3
#: A failure a later start may not repeat (the database unreachable).
EXIT_FAILED = 1


def exit_status(exc: ConfigError) -> int:
    """The exit status of a process whose start checks raised ``exc``."""
    if isinstance(exc, DatabaseUnreachableError):
        return EXIT_FAILED
    if type(exc) is ConfigError:
        return EXIT_CONFIG
    return EXIT_REFUSED


def refuse(exc: ConfigError, prefix: str = "refusing to start: ") -> NoReturn:
    """Print ``Error: <prefix><exc>`` on stderr, as click prints a command's error, and exit
    with :func:`exit_status`."""
    print(f"Error: {prefix}{exc}", file=sys.stderr)
    sys.exit(exit_status(exc))
