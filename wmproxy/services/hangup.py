"""SIGHUP to the long-running processes other than the service: ``wmproxy-worker``,
``wmproxy-renewal``, ``wmproxy-metrics``.

Python's default for SIGHUP ends the process (status 129) without a word, and systemd counts a
death by SIGHUP as clean: ``Restart=on-failure`` did not restart it. A HUP sent out of habit
(``systemctl kill -s HUP``, a reload script that signals every wmproxy unit) stopped the worker,
the renewal or the metrics for good. They re-read nothing while they run, so the signal is
ignored with one log line saying how a changed configuration is applied (a restart).
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)


def ignore_hangup(program: str) -> None:
    """Make SIGHUP log one WARNING line instead of ending this process (the main thread's call).

    Args:
        program: the command, also its systemd unit's name (``wmproxy-worker``).
    """

    def hangup(signum: int, frame: FrameType | None) -> None:
        log.warning("%s: SIGHUP ignored: it re-reads nothing while it runs; a changed configuration is applied by a "
                    "restart (systemctl restart %s)", program, program)

    signal.signal(signal.SIGHUP, hangup)
