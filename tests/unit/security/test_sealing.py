from __future__ import annotations

import os

import pytest

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
