"""The processes of this host by their real uid, read from ``/proc``: the one walker behind
the local backend's checks of a wrapper's account, the purger's "accounts that still own a
process" and the tests' clean-up of their throwaway accounts."""

from __future__ import annotations

import os


def pids() -> list[int]:
    """The pids listed in ``/proc`` now ([] if it cannot be read)."""
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def real_uid(pid: int, *, live: bool = False) -> int | None:
    """The real uid of ``pid`` (the first field of ``/proc/<pid>/status``'s ``Uid:`` line), None
    if the process is gone; with ``live``, None for a zombie too (it runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if live and line.startswith(b"State:") and line.split()[1:2] in ([b"Z"], [b"X"]):
                    return None
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def live_uids() -> set[int]:
    """The real uids of the live (not zombie) processes now."""
    return {uid for pid in pids() if (uid := real_uid(pid, live=True)) is not None}


def live_pids_of(uids: set[int]) -> list[int]:
    """The live (not zombie) processes whose real uid is in ``uids``."""
    return [pid for pid in pids() if real_uid(pid, live=True) in uids]
