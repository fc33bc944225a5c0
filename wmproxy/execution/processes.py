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
    if the process is gone; with ``live``, None for a zombie too (it runs nothing any more).

    A process whose main thread has ended alone (``SYS_exit``) while other threads run shows
    ``Z`` as its state: it is live as long as ``Threads:`` counts more than one."""
    fields = _status(pid)
    if fields is None:
        return None
    if live and fields.get(b"State:", b"")[:1] in (b"Z", b"X") and _threads(fields) <= 1:
        return None
    try:
        return int(fields[b"Uid:"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def all_uids(pid: int) -> set[int]:
    """The real, effective, saved and file-system uids of ``pid`` (empty if it is gone), zombie or
    not: every uid in whose name the process may still act or hold something."""
    fields = _status(pid)
    try:
        return set() if fields is None else {int(uid) for uid in fields[b"Uid:"].split()[:4]}
    except (KeyError, ValueError):
        return set()


def uids_with_processes() -> set[int]:
    """Every uid of every process now (:func:`all_uids`, zombies included): the accounts whose
    pool lease must not be released (the purger)."""
    found: set[int] = set()
    for pid in pids():
        found |= all_uids(pid)
    return found


def live_uids() -> set[int]:
    """The real uids of the live (not zombie) processes now."""
    return {uid for pid in pids() if (uid := real_uid(pid, live=True)) is not None}


def live_pids_of(uids: set[int]) -> list[int]:
    """The live (not zombie) processes whose real uid is in ``uids``."""
    return [pid for pid in pids() if real_uid(pid, live=True) in uids]


def _status(pid: int) -> dict[bytes, bytes] | None:
    """``/proc/<pid>/status``'s ``State:``, ``Uid:`` and ``Threads:`` values, None if it is gone."""
    wanted = (b"State:", b"Uid:", b"Threads:")
    found: dict[bytes, bytes] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                name, colon, value = line.partition(b":")
                if name + colon in wanted:
                    found[name + colon] = value.strip()
                    if len(found) == len(wanted):
                        break
    except OSError:
        return None
    return found


def _threads(fields: dict[bytes, bytes]) -> int:
    try:
        return int(fields.get(b"Threads:", b"1"))
    except ValueError:
        return 1
