"""``wmproxy-admin rotate-store-key --yes`` (configuration from ``WMPROXY_CONFIG``) interrupted
right after the rotation's transaction committed, as an operator or the machine could
(tests/admin/test_rotation_interrupted.py):

* ``python -m tests.admin.interrupt_rotation sigint``: the process sends itself SIGINT (Ctrl-C);
* ``python -m tests.admin.interrupt_rotation stop``: it writes ``committed`` to stdout and waits
  for a signal; the test kills it with SIGKILL, before the new key is moved into place.

The rotation's commit is told from the others (the start check's read) by its session having
flushed re-sealed delegations (SQLAlchemy's ``after_flush`` and ``after_commit`` events).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from wmproxy.admin import cli
from wmproxy.store.schema import Delegation

MODE = sys.argv[1]
assert MODE in ("sigint", "stop"), MODE
# Ctrl-C as in an operator's terminal: a test session started in the background by a shell
# without job control (`pytest ... &`, as .ci/test-pythons.sh starts its side runs) hands its
# children SIGINT ignored, and Python then keeps it ignored instead of raising KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)


@event.listens_for(Session, "after_flush")
def _resealed(session: Session, _context: Any) -> None:
    if any(isinstance(obj, Delegation) for obj in session.dirty):
        session.info["resealed"] = True


@event.listens_for(Session, "after_commit")
def _interrupt(session: Session) -> None:
    if not session.info.pop("resealed", False):
        return
    if MODE == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        print("committed", flush=True)
        signal.pause()


cli(["rotate-store-key", "--yes"], prog_name="wmproxy-admin")
