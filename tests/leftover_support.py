"""A payload that leaves processes outside its wrapper's session, for the job wrapper's and the
deployment's tests: a ``setsid``'ed ``sleep`` and a double-forked ``setsid``'ed daemon, each
writing its pid to a file, and the probes that tell whether they still run."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

#: In the command line of each process :data:`LEAVE` leaves (``/proc/<pid>/cmdline``), before
#: and after it executes ``sleep``: a pid read from its file counts only while it runs that, never
#: a later user of the pid.
LEFT_MARK = b"100017"
_LIVE = 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 100017'
#: ``sh -c LEAVE sh <prefix> [hold]``: start ``setsid sleep &`` (its pid in ``<prefix>.setsid``)
#: and a daemon (a child that starts a ``setsid``'ed one and exits at once: ``<prefix>.daemon``),
#: wait until both have written their pid files, then exit 0, or, with ``hold``, create
#: ``<prefix>.ready`` and run until killed.
LEAVE = (f"p=$1; setsid sh -c '{_LIVE}' \"$p.setsid\" & "
         f"sh -c 'setsid sh -c \"$1\" \"$0\" &' \"$p.daemon\" '{_LIVE}'; "
         'while [ ! -e "$p.setsid" ] || [ ! -e "$p.daemon" ]; do sleep 0.05; done; '
         'if [ "$2" = hold ]; then touch "$p.ready"; while :; do sleep 0.2; done; fi')


def left_files(prefix: Path) -> list[Path]:
    """The pid files :data:`LEAVE` writes for ``prefix``."""
    return [prefix.with_name(prefix.name + ".setsid"), prefix.with_name(prefix.name + ".daemon")]


def still_running(files: list[Path]) -> list[int]:
    """The pids in ``files`` (those written) whose process still runs what :data:`LEAVE` left."""
    found = []
    for path in files:
        try:
            pid = int(path.read_text())
            if LEFT_MARK not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


def kill_left(files: list[Path]) -> None:
    """SIGKILL what :data:`LEAVE` left that still runs (a failed test must not leave it)."""
    for pid in still_running(files):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
