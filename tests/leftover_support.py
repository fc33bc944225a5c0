"""A payload that leaves processes outside its wrapper's session, for the job wrapper's and the
deployment's tests: a ``setsid``'ed ``sleep`` and a double-forked ``setsid``'ed daemon, each
writing its pid to a file, and the probes that tell whether they still run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
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


#: ``python3 -I -c HOP <sid file> <zombies> <hop ms>`` (a hostile review's payload): write the
#: wrapper's session id to ``<sid file>``; leave X, an orphan in a process group of its own (same
#: session), that waits until the payload has been reaped (the wrapper's kill of what is left
#: begins), then ``<hop ms>`` later forks Y (which executes ``sleep 100017``) and exits; leave
#: ``<zombies>`` zombies to the wrapper, adopted after X (a child that forks them and exits without
#: reaping them); exit 0. A pass of the wrapper's kill that reads its children, visits the zombies
#: first and X last, finds X a zombie and Y, adopted after the read, never.
HOP = r'''
import os, sys, time
out, zombies, hop_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(out + ".tmp", "w") as f:
    f.write(str(os.getsid(0)))
os.rename(out + ".tmp", out)
payload = os.getpid()
go_r, go_w = os.pipe()
a = os.fork()
if a == 0:
    if os.fork() == 0:
        os.close(go_w)
        os.setpgid(0, 0)
        os.read(go_r, 1)
        while os.path.exists(f"/proc/{payload}"):
            time.sleep(0.0002)
        time.sleep(hop_ms / 1000)
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "100017"])
        os._exit(0)
    os._exit(0)
os.waitpid(a, 0)
os.close(go_r)
f = os.fork()
if f == 0:
    os.close(go_w)
    for _ in range(zombies):
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError:
            break
    os._exit(0)
os.waitpid(f, 0)
'''


def session_members(sid: int, uid: int | None = None) -> list[int]:
    """The live processes (not zombies) of the session ``sid`` but its leader, those of ``uid`` if given."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == sid:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[3]) != sid or fields[0] == b"Z":
                continue
            if uid is not None and os.stat(f"/proc/{entry}").st_uid != uid:
                continue
        except (OSError, IndexError, ValueError):
            continue
        found.append(int(entry))
    return found


def kill_members(sid: int, uid: int | None = None) -> None:
    """SIGKILL what :func:`session_members` finds (a failed test must not leave it)."""
    for pid in session_members(sid, uid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)



#: ``stopchain <sid file> <seconds>`` (a hostile review's payload, C: a Python process forks too
#: slowly to outrun a pass over ``/proc``): S, in a session of its own (``setsid``, its pid written
#: to ``<sid file>``), a child subreaper that reaps its children, runs a chain of processes that each
#: fork their successor and exit about every 300 us, for ``<seconds>``; then the payload stops
#: its wrapper (``SIGSTOP``) and waits. Killing the wrapper first handed the chain to init (S killed).
STOPCHAIN_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  char tmp[4200]; double end; FILE *f;
  if (argc < 3) return 2;
  end = now() + atof(argv[2]);
  if (fork() == 0) {
    setsid(); prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    if (fork() == 0) {
      while (now() < end) { pid_t c; usleep(300); c = fork(); if (c < 0) usleep(1000); else if (c > 0) _exit(0); }
      _exit(0);
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    f = fopen(tmp, "w"); if (f) { fprintf(f, "%d", getpid()); fclose(f); rename(tmp, argv[1]); }
    for (;;) if (waitpid(-1, 0, 0) < 0) usleep(1000);
  }
  while (access(argv[1], F_OK) != 0) usleep(10000);
  usleep(100000);
  kill(getppid(), SIGSTOP);
  for (;;) sleep(1);
}
"""


def build(source: str, binary: Path) -> Path:
    """Compile the C ``source`` into ``binary`` (mode 0755) with gcc."""
    c_file = binary.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(c_file)], check=True, capture_output=True)
    binary.chmod(0o755)
    return binary


def group_left(pgid: int) -> bool:
    """Whether the process group ``pgid`` has a process still, zombies included (the kernel's own
    look at the group: a chain of processes that fork and exit is never missed, as one pass over
    ``/proc`` may miss it)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` until it is gone or 60 s have passed (a failed test must
    not leave it; a fork the kill meets is undone or signalled too)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.05)
