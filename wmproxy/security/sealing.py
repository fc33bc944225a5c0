"""Encryption of secrets at rest (delegation keys, stored proxies).

The key file holds one URL-safe base64 Fernet key (32 random bytes). Its
:attr:`Sealer.fingerprint` (SHA-256 of the key, hex) is what the database records to tell
every process whether it holds the right key; the fingerprint reveals nothing of the key.

Two sealed formats, told apart by their first byte:

- **AES-256-GCM** (written since schema revision 0014): ``0x02``, a random 12-byte nonce, the
  ciphertext and its 16-byte tag; the version byte is the associated data. The AES key is
  derived from the key file's 32 bytes with HKDF-SHA256 (RFC 5869, info
  :data:`_AEAD_INFO`), so one key file seals both formats. `cryptography`'s AESGCM does one
  pass over the data (issue 14: Fernet's open and seal were about a fifth of a delegation's
  instructions).
- **Fernet** (AES-128-CBC + HMAC-SHA256, the format of earlier releases; its tokens are
  URL-safe base64 and begin with ``g``): still opened, never written. ``wmproxy-admin
  rotate-store-key`` re-seals every stored secret, so after a rotation none is left.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wmproxy.errors import WMProxyError

#: First byte of a token sealed with AES-256-GCM (a Fernet token's first byte is ``g``).
_AEAD_VERSION = b"\x02"
#: HKDF's info: the AES-256-GCM key is for this use only.
_AEAD_INFO = b"wmproxy sealed secret, AES-256-GCM, version 2"
_NONCE_BYTES = 12
#: The shortest AES-256-GCM token: version, nonce and tag.
_AEAD_MIN = 1 + _NONCE_BYTES + 16


class Sealer:
    """Seal and open byte strings with the store key.

    Args:
        key: URL-safe base64 Fernet key (32 raw bytes), as written by :meth:`generate_key`.

    Raises:
        ValueError: malformed key.
    """

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        raw = base64.urlsafe_b64decode(key)  # Fernet checked it: 32 bytes
        self._aead = AESGCM(HKDF(algorithm=SHA256(), length=32, salt=None, info=_AEAD_INFO).derive(raw))
        self.fingerprint = key_fingerprint(key)

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

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sealer | None:
        """The key of ``path``, None when the file does not exist.

        Raises:
            OSError: unreadable file; ValueError: it holds no Fernet key.
        """
        try:
            return cls(Path(path).read_bytes().strip())
        except FileNotFoundError:
            return None

    def seal(self, data: bytes) -> bytes:
        """Encrypt and authenticate ``data`` with AES-256-GCM; returns the binary token
        (``0x02``, 12-byte nonce, ciphertext and tag: ``len(data) + 29`` bytes)."""
        nonce = os.urandom(_NONCE_BYTES)
        return _AEAD_VERSION + nonce + self._aead.encrypt(nonce, data, _AEAD_VERSION)

    def open(self, token: bytes) -> bytes:
        """Decrypt a token made by :meth:`seal` with the same key, or a Fernet token of an
        earlier release.

        Raises:
            WMProxyError: (1201) the token is corrupt or sealed with another key.
        """
        token = bytes(token)
        try:
            if token[:1] == _AEAD_VERSION:
                if len(token) < _AEAD_MIN:
                    raise InvalidTag
                return self._aead.decrypt(token[1:1 + _NONCE_BYTES], token[1 + _NONCE_BYTES:], _AEAD_VERSION)
            return self._fernet.decrypt(token)
        except (InvalidTag, InvalidToken):
            raise WMProxyError("stored secret cannot be decrypted (wrong or changed store key?)") from None


def key_fingerprint(key: bytes) -> str:
    """``sha256:<hex>`` of a Fernet key (as written in the key file, base64)."""
    return "sha256:" + hashlib.sha256(key.strip()).hexdigest()


def write_new_key(path: str | os.PathLike[str], like: str | os.PathLike[str] | None = None) -> Sealer:
    """Write a new key to ``path`` (must not exist; mode 0600, fsync-ed, its directory too)
    and return its Sealer.

    Args:
        like: the key file the new one replaces: the new file gets its owner and group (when
            this process is root: ``rotate-store-key`` run as root keeps the key the service
            user's) and its owner permission bits (group and others get none), before the key
            is written.

    Raises:
        FileExistsError: ``path`` exists; OSError: cannot write (or chown as root).
    """
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        if like is not None:
            _same_owner_and_mode(fh.fileno(), like)
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    fsync_directory(Path(path).parent)
    return Sealer(key)


def _same_owner_and_mode(fd: int, like: str | os.PathLike[str]) -> None:
    """Give the open file ``fd`` the owner and group of ``like`` (only root may; another user's
    files are its own anyway) and its owner permission bits."""
    model = os.stat(like)
    if os.geteuid() == 0:
        os.fchown(fd, model.st_uid, model.st_gid)
    os.fchmod(fd, stat.S_IMODE(model.st_mode) & stat.S_IRWXU)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so that the names created, linked or renamed in it survive a crash
    of the machine (the files' own fsync does not cover their directory entries).

    Raises:
        OSError: cannot open or sync it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retire_key_file(path: str | os.PathLike[str], replacement: str | os.PathLike[str],
                    today: dt.date | None = None) -> Path:
    """Move the key file ``path`` to ``<path>.retired-<YYYYMMDD>`` (``-2``, ``-3``... if
    taken) and ``replacement`` into its place, and fsync their directory; returns the
    retired file.

    Raises:
        OSError: a rename failed (the retired key is then still at ``path``, or at the
            returned name with ``replacement`` still in place).
    """
    path = Path(path)
    stamp = (today or dt.datetime.now(dt.UTC).date()).strftime("%Y%m%d")
    retired = path.with_name(f"{path.name}.retired-{stamp}")
    suffix = 2
    while retired.exists():
        retired = path.with_name(f"{path.name}.retired-{stamp}-{suffix}")
        suffix += 1
    os.link(path, retired)
    os.replace(replacement, path)
    fsync_directory(path.parent)
    return retired
