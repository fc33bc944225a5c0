"""A TCP relay in front of PostgreSQL that cuts one connection at its COMMIT, as a network
failure would (tests/admin/test_rotation_interrupted.py).

Every connection is relayed both ways unchanged until a client that locked rows (its messages
held ``FOR UPDATE``) sends ``COMMIT``. That connection, the first such and only it, is cut:

* ``lose-reply``: the COMMIT goes to the server, which commits; its answer is dropped and both
  sides closed. The client sees its connection fail although the transaction committed.
* ``hold``: the COMMIT is held back and the client's side closed; the server's side stays open,
  the transaction with it (its row locks held), until :meth:`CommitCut.release` sends the
  COMMIT (the server commits after the client saw the failure) or :meth:`CommitCut.abort`
  closes it (the server rolls back). With ``refuse_after_cut`` the relay stops taking
  connections before the client's side is closed, so the client cannot reach the database
  again.

The relay reads the clear protocol: connect through :meth:`CommitCut.url` (``sslmode=disable``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

#: In the client's Query message and in the server's CommandComplete tag.
COMMIT = b"COMMIT\x00"
LOCKING = b"FOR UPDATE"
#: Bytes kept from one read to the next, so a pattern split between two reads is found.
TAIL = 16
#: Seconds :meth:`CommitCut.release` waits for the server's answer (generous: a shared machine).
ANSWER_TIMEOUT = 120.0


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    drop_reply: bool = False
    held: bytes | None = None
    answered: threading.Event = field(default_factory=threading.Event)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


class CommitCut:
    """The relay, listening on loopback from construction until :meth:`close`."""

    def __init__(self, database_url: str, mode: str, *, refuse_after_cut: bool = False) -> None:
        assert mode in ("lose-reply", "hold")
        target = make_url(database_url)
        self._database_url = target
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self.mode = mode
        self.refuse_after_cut = refuse_after_cut
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.cut = threading.Event()
        self._cut_pair: _Pair | None = None
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        threading.Thread(target=self._accept, name="commit-cut", daemon=True).start()

    @property
    def url(self) -> str:
        """The database URL through the relay."""
        return self._database_url.set(host="127.0.0.1", port=self.port,
                                      query={**self._database_url.query, "sslmode": "disable"}
                                      ).render_as_string(hide_password=False)

    def release(self) -> None:
        """Send the held COMMIT to the server and wait for its answer (the commit done)."""
        pair = self._cut_pair
        assert pair is not None and pair.held is not None, "no COMMIT held"
        pair.server.sendall(pair.held)
        assert pair.answered.wait(ANSWER_TIMEOUT), "the server did not answer the held COMMIT"

    def abort(self) -> None:
        """Close the server side of the held connection: the server rolls the transaction back."""
        pair = self._cut_pair
        assert pair is not None and pair.held is not None, "no COMMIT held"
        _close(pair.server)

    def close(self) -> None:
        _close(self._listener)
        with self._lock:
            for pair in self._pairs:
                _close(pair.client)
                _close(pair.server)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._upstream, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(pair,), daemon=True).start()

    def _take_cut(self, pair: _Pair) -> bool:
        with self._lock:
            if self._cut_pair is not None:
                return False
            self._cut_pair = pair
            return True

    def _upstream(self, pair: _Pair) -> None:
        locked, tail = False, b""
        while data := _recv(pair.client):
            seen = tail + data
            locked = locked or LOCKING in seen
            if locked and COMMIT in seen and self._take_cut(pair):
                if self.mode == "hold":
                    pair.held = data
                    if self.refuse_after_cut:
                        _close(self._listener)
                    _close(pair.client)
                    self.cut.set()
                    return
                pair.drop_reply = True
            try:
                pair.server.sendall(data)
            except OSError:
                break
            tail = seen[-TAIL:]
        if pair.held is None:
            _close(pair.server)

    def _downstream(self, pair: _Pair) -> None:
        tail = b""
        while data := _recv(pair.server):
            seen = tail + data
            if (pair.drop_reply or pair.held is not None) and COMMIT in seen:
                _close(pair.client)
                _close(pair.server)
                pair.answered.set()
                self.cut.set()
                return
            if pair.held is None:
                try:
                    pair.client.sendall(data)
                except OSError:
                    break
            tail = b"" if pair.drop_reply else seen[-TAIL:]
        _close(pair.client)
