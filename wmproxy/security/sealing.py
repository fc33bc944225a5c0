"""Encryption of secrets at rest (delegation keys, stored proxies) with Fernet.

Fernet = AES-128-CBC + HMAC-SHA256 with a timestamp; the key file holds one
URL-safe base64 Fernet key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from wmproxy.errors import WMProxyError


class Sealer:
    """Seal and open byte strings with one Fernet key.

    Args:
        key: URL-safe base64 Fernet key (32 raw bytes), as written by :meth:`generate_key`.

    Raises:
        ValueError: malformed key.
    """

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @staticmethod
    def generate_key() -> bytes:
        """A new random Fernet key (URL-safe base64)."""
        return Fernet.generate_key()

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], create: bool = False) -> Sealer:
        """Load the key from ``path``.

        With ``create=True`` a missing file is created atomically with a new key and mode
        0600 (parent directories are not created). Raises FileNotFoundError (missing,
        ``create=False``), OSError, or ValueError (the file does not hold a Fernet key).
        """
        path = Path(path)
        if create and not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # created concurrently: use theirs
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(Fernet.generate_key() + b"\n")
        return cls(path.read_bytes().strip())

    def seal(self, data: bytes) -> bytes:
        """Encrypt and authenticate ``data``; returns a URL-safe base64 token (bytes)."""
        return self._fernet.encrypt(data)

    def open(self, token: bytes) -> bytes:
        """Decrypt a token made by :meth:`seal` with the same key.

        Raises:
            WMProxyError: (1201) the token is corrupt or sealed with another key.
        """
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise WMProxyError("stored secret cannot be decrypted (wrong or changed store key?)") from None
