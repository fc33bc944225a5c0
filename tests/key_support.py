"""RSA-2048 keys for the pytest processes, made once per process and handed out in turn.

Making an RSA-2048 key costs about 40 ms of CPU, and the suite's own PKIs, proxies and
delegations made thousands of them: 86 % of ``tests/unit/security/test_chain.py``'s CPU (472 keys,
18.0 s of its 20.9 s, 7 December 2026). :func:`install` makes
``cryptography``'s ``rsa.generate_private_key`` hand out keys from a ring of :data:`RING` keys
per process instead: the first :data:`RING` calls make real keys, later calls take them again in
turn. Any :data:`RING` keys asked for one after the other are distinct, so a test that makes
several keys (a CA, its users, their proxies, a key that must not match) gets different ones.

Only the test processes themselves are affected, and only 2048-bit keys with the exponent 65537:
other sizes (the delegation key size settings) are made as before, and every process a test
starts (the service, the workers, the CLI, the admin tool, the grid tools) makes its own keys.
``WMPROXY_TEST_FRESH_KEYS=1`` turns the ring off (tests/conftest.py).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

RING = 64
"""Keys made per process before they are handed out again (about 2.6 s of CPU)."""

_made: list[rsa.RSAPrivateKey] = []
_turn = itertools.count()
_lock = threading.Lock()
_original = rsa.generate_private_key


def _from_ring(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
    if public_exponent != 65537 or key_size != 2048:
        return _original(public_exponent=public_exponent, key_size=key_size)
    with _lock:
        if len(_made) < RING:
            _made.append(_original(public_exponent=public_exponent, key_size=key_size))
            return _made[-1]
        return _made[next(_turn) % RING]


def install() -> None:
    """Make ``rsa.generate_private_key`` (as every caller reaches it: through the module) use
    the ring in this process."""
    rsa.generate_private_key = _from_ring  # type: ignore[assignment]
