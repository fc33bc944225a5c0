"""The test processes' RSA keys (tests/key_support.py): every 2048-bit key a process is handed is
distinct, other sizes are made fresh."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests import key_support


@pytest.mark.skipif(os.environ.get("WMPROXY_TEST_FRESH_KEYS") == "1", reason="the keys are all made fresh")
def test_every_key_of_a_process_is_distinct_and_a_working_key() -> None:
    """Far more keys than the real keys made (a ring of 64 handed out in turn gave a test the
    same key twice, 64 keys apart); each signs and verifies as an RSA-2048 key does."""
    assert rsa.generate_private_key is key_support._distinct_key
    made_before = key_support.real_keys()
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(300)]
    moduli = [key.public_key().public_numbers().n for key in keys]
    assert len(set(moduli)) == len(keys)
    assert all(key.key_size == 2048 for key in keys)
    assert key_support.real_keys() - made_before <= 25  # 300 keys from at most 25 real ones
    for key in (keys[0], keys[-1]):
        signature = key.sign(b"proxy", padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, b"proxy", padding.PKCS1v15(), hashes.SHA256())


def test_another_size_is_made_fresh() -> None:
    first, second = (rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a size the ring passes by
                     for _ in range(2))
    assert first.key_size == 1024
    assert first.private_numbers().d != second.private_numbers().d
