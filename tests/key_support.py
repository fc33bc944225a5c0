"""RSA-2048 keys for the pytest processes, every one distinct, made from a few real keys' primes.

Making an RSA-2048 key costs about 40 ms of CPU, and the suite's own PKIs, proxies and
delegations made thousands of them: 86 % of ``tests/unit/security/test_chain.py``'s CPU (472 keys,
18.0 s of its 20.9 s, 7 December 2026). :func:`install` makes ``cryptography``'s
``rsa.generate_private_key`` hand out keys whose moduli are products of two primes taken from
real keys: the primes of ``k`` real keys give ``2k (2k - 1) / 2`` distinct keys (16 real keys:
496), and a real key is made when the pairs run out. Every key a process is handed is distinct
(no two share a modulus), so a test may compare any key it is given with any other, however many
keys were made between them (a ring of 64 keys handed out in turn, stop 50's, gave a test's
"another key" the same key as a proxy made 64 keys earlier: a CI failure of stop 51).

Only the test processes themselves are affected, and only 2048-bit keys with the exponent 65537:
other sizes (the delegation key size settings) are made as before, and every process a test
starts (the service, the workers, the CLI, the admin tool, the grid tools) makes its own keys.
``WMPROXY_TEST_FRESH_KEYS=1`` turns this off (tests/conftest.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

EXPONENT = 65537
SIZE = 2048

_primes: list[int] = []
_lock = threading.Lock()
_original = rsa.generate_private_key


def _pair_order() -> Iterator[tuple[int, int]]:
    """Indexes ``(i, j)``, ``i < j``, of the primes, each pair once, ``j`` never decreasing: the
    pairs of the first ``j + 1`` primes come before any pair with a later one."""
    j = 1
    while True:
        yield from ((i, j) for i in range(j))
        j += 1


_pairs = _pair_order()
"""The pairs still to hand out (:func:`_pair_order`)."""


def real_keys() -> int:
    """Real keys made by this process (two primes each)."""
    return len(_primes) // 2


def _key_of(p: int, q: int) -> rsa.RSAPrivateKey:
    """The RSA key of the primes ``p`` and ``q`` (each with ``gcd(e, p - 1) == 1``, as OpenSSL's
    key generation makes them), not checked again by OpenSSL (its primes were, when made)."""
    n = p * q
    d = pow(EXPONENT, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q), iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(EXPONENT, n))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _distinct_key(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
    if public_exponent != EXPONENT or key_size != SIZE:
        return _original(public_exponent=public_exponent, key_size=key_size)
    with _lock:
        while True:
            i, j = next(_pairs)
            while j >= len(_primes):
                numbers = _original(public_exponent=EXPONENT, key_size=SIZE).private_numbers()
                _primes.extend((numbers.p, numbers.q))
            p, q = _primes[i], _primes[j]
            if (p * q).bit_length() == SIZE:  # OpenSSL's primes have their two top bits set: always
                return _key_of(p, q)


def install() -> None:
    """Make ``rsa.generate_private_key`` (as every caller reaches it: through the module) hand
    out distinct keys made from a few real keys' primes in this process."""
    rsa.generate_private_key = _distinct_key  # type: ignore[assignment]
