"""The test processes' ring of RSA keys (tests/key_support.py): any RING keys asked for one
after the other are distinct, other sizes are made fresh."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import key_support


@pytest.mark.skipif(os.environ.get("WMPROXY_TEST_FRESH_KEYS") == "1", reason="the ring is off")
def test_the_ring_is_installed_and_consecutive_keys_are_distinct() -> None:
    assert rsa.generate_private_key is key_support._from_ring
    numbers = [rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers().d
               for _ in range(2 * key_support.RING + 1)]
    for start in range(key_support.RING + 1):
        assert len(set(numbers[start:start + key_support.RING])) == key_support.RING


def test_another_size_is_made_fresh() -> None:
    first, second = (rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a size the ring passes by
                     for _ in range(2))
    assert first.key_size == 1024
    assert first.private_numbers().d != second.private_numbers().d
