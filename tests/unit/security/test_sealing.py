from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet, InvalidToken

from wmproxy.errors import WMProxyError
from wmproxy.security.sealing import Sealer


class TestSealer:
    def test_round_trip(self, tmp_path):
        sealer = Sealer.from_key_file(tmp_path / "store.key", create=True)
        token = sealer.seal(b"secret key")
        assert b"secret key" not in token
        assert sealer.open(token) == b"secret key"
        assert Sealer.from_key_file(tmp_path / "store.key").open(token) == b"secret key"

    def test_created_key_file_is_private(self, tmp_path):
        Sealer.from_key_file(tmp_path / "store.key", create=True)
        assert os.stat(tmp_path / "store.key").st_mode & 0o777 == 0o600

    def test_wrong_key_fails(self):
        token = Sealer(Sealer.generate_key()).seal(b"x")
        with pytest.raises(WMProxyError, match="cannot be decrypted"):
            Sealer(Sealer.generate_key()).open(token)

    def test_tampered_token_fails(self):
        sealer = Sealer(Sealer.generate_key())
        token = bytearray(sealer.seal(b"x"))
        token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
        with pytest.raises(WMProxyError):
            sealer.open(bytes(token))

    def test_missing_file_without_create(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            Sealer.from_key_file(tmp_path / "none.key")


class TestFormats:
    """What is written is AES-256-GCM (issue 14); what earlier releases wrote (Fernet) is
    still opened with the same key file."""

    def test_a_sealed_secret_is_version_nonce_ciphertext_and_tag(self):
        sealer = Sealer(Sealer.generate_key())
        first, second = sealer.seal(b"secret key"), sealer.seal(b"secret key")
        assert first[:1] == second[:1] == b"\x02"
        assert len(first) == 1 + 12 + len(b"secret key") + 16
        assert first[1:13] != second[1:13]  # a fresh nonce each time
        assert b"secret key" not in first

    def test_a_fernet_token_of_an_earlier_release_is_opened(self):
        key = Sealer.generate_key()
        legacy = Fernet(key).encrypt(b"proxy sealed before the upgrade")
        assert Sealer(key).open(legacy) == b"proxy sealed before the upgrade"
        assert Sealer(key).open(memoryview(legacy)) == b"proxy sealed before the upgrade"

    def test_the_aead_key_is_not_the_fernet_key(self):
        """The AES key is derived (HKDF): a Fernet token cannot be passed off as the other
        format by changing its first byte, nor an AES-GCM token opened by Fernet."""
        key = Sealer.generate_key()
        sealer = Sealer(key)
        with pytest.raises(InvalidToken):
            Fernet(key).decrypt(sealer.seal(b"x"))
        forged = b"\x02" + Fernet(key).encrypt(b"x")[1:]
        with pytest.raises(WMProxyError, match="cannot be decrypted"):
            sealer.open(forged)

    @pytest.mark.parametrize("where", [0, 1, 12, 13, -1])
    def test_any_changed_byte_is_refused(self, where):
        sealer = Sealer(Sealer.generate_key())
        token = bytearray(sealer.seal(b"secret key"))
        token[where] ^= 0x01
        with pytest.raises(WMProxyError, match="cannot be decrypted"):
            sealer.open(bytes(token))

    @pytest.mark.parametrize("length", [0, 1, 13, 28])
    def test_a_truncated_token_is_refused(self, length):
        sealer = Sealer(Sealer.generate_key())
        with pytest.raises(WMProxyError, match="cannot be decrypted"):
            sealer.open(sealer.seal(b"")[:length])

    def test_the_other_keys_token_is_refused_in_either_format(self):
        mine, theirs = Sealer.generate_key(), Sealer.generate_key()
        for token in (Sealer(theirs).seal(b"x"), Fernet(theirs).encrypt(b"x")):
            with pytest.raises(WMProxyError, match="cannot be decrypted"):
                Sealer(mine).open(token)
