"""The store key and the schema as every process checks them before it starts, and the
key's life: recorded at ``wmproxy-admin init``, rotated by ``rotate-store-key``.

Every node of a deployment shares one database and so must share one store key (the
Fernet key of ``[security] store_key_file`` that seals delegated proxies and pending
delegation keys). The database records the key's fingerprint (``sha256:<hex>`` of the key,
never the key); :func:`check_store` refuses to start a process whose key differs, or whose
database schema is older than the code, with a message naming the fix.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from wmproxy.config import ConfigError, Settings
from wmproxy.domain import utcnow
from wmproxy.errors import WMProxyError
from wmproxy.security.filemodes import sqlite_path
from wmproxy.security.sealing import Sealer, key_fingerprint, retire_key_file, write_new_key
from wmproxy.store.engine import make_engine, make_session_factory
from wmproxy.store.housekeeping import STORE_KEY_FINGERPRINT, SqlHousekeepingStore
from wmproxy.store.migrations import schema_revisions
from wmproxy.store.schema import Delegation, DelegationRequest
from wmproxy.store.uow import UnitOfWork


class StoreStateError(ConfigError):
    """The database and this process disagree (schema revision or store key); the message
    says what and the command or file that fixes it."""


def _uow(settings: Settings) -> tuple[UnitOfWork, Engine]:
    engine = make_engine(settings.database.url)
    return UnitOfWork(make_session_factory(engine)), engine


def _require_database_file(settings: Settings) -> None:
    """Refuse an SQLite database file that does not exist instead of creating it (empty,
    with the umask's mode) by connecting."""
    db = sqlite_path(settings.database.url)
    if db is not None and not db.exists():
        raise StoreStateError(f"there is no database at {db.absolute()} ([database] url): run `wmproxy-admin init` "
                              "for a new service, or set [database] url to the existing one")


def check_schema(settings: Settings) -> None:
    """Refuse a database not at the revision this code needs.

    Raises:
        StoreStateError: "database schema is at revision X, this wmproxy needs Y: run
            wmproxy-admin migrate"; an SQLite file that does not exist (it is not created:
            ``wmproxy-admin init`` creates it with its mode).
    """
    _require_database_file(settings)
    try:
        current, head = schema_revisions(settings.database.url)
    except SQLAlchemyError as exc:
        raise StoreStateError(f"the database cannot be reached: {str(exc).splitlines()[0]}") from None
    if current != head:
        where = "not migrated yet" if current is None else f"at revision {current}"
        raise StoreStateError(f"the database schema is {where}, this wmproxy needs revision {head}: "
                              "run `wmproxy-admin migrate` (once, from any node) and start again")


def check_store_key(settings: Settings) -> str:
    """Refuse a store key that is not the database's; returns the fingerprint.

    Raises:
        StoreStateError: the key file is missing or unreadable, the SQLite database file
            does not exist, no fingerprint is recorded (``wmproxy-admin init`` records it), or
            the key differs from the recorded one.
    """
    path = settings.security.store_key_file
    try:
        sealer = Sealer.load(path)
    except (OSError, ValueError) as exc:
        raise StoreStateError(f"store key {path} cannot be used ({exc}): restore it from another node or from "
                              "its backup") from None
    if sealer is None:
        raise StoreStateError(f"store key {path} is missing: copy it from another node of this service or from "
                              "its backup (a new key cannot open the proxies already stored)")
    _require_database_file(settings)
    uow, engine = _uow(settings)
    try:
        with uow:
            recorded = SqlHousekeepingStore(uow.session).meta(STORE_KEY_FINGERPRINT)
    finally:
        engine.dispose()
    if recorded is None:
        raise StoreStateError("the database records no store key fingerprint: run `wmproxy-admin init` "
                              "(or `wmproxy-admin migrate`) with this node's store key")
    if recorded != sealer.fingerprint:
        raise StoreStateError(
            f"store key {path} ({sealer.fingerprint[:19]}...) is not the key of this database "
            f"({recorded[:19]}...): copy the store key file from another node of this service or from its "
            "backup to this path; every node must use the same key")
    return recorded


def check_store(settings: Settings) -> None:
    """The start check of the service, the workers and ``wmproxy-admin``: schema current,
    then store key matching (:func:`check_schema`, :func:`check_store_key`).

    Raises:
        StoreStateError: see those functions.
    """
    check_schema(settings)
    check_store_key(settings)


def record_store_key(settings: Settings, *, create: bool) -> str:
    """Record the key of ``[security] store_key_file`` as the database's (init, migrate).

    With ``create`` a missing key file is created, but only for a database that holds no
    sealed data and records no other key. An existing key is checked against a sealed
    row before it is recorded. A key that is already the recorded one is left alone.

    Returns:
        The fingerprint recorded.

    Raises:
        StoreStateError: the key file is missing (and may not be created), another key is
            recorded, or sealed rows cannot be opened with this key.
    """
    path = Path(settings.security.store_key_file)
    sealer = Sealer.load(path)
    uow, engine = _uow(settings)
    try:
        with uow:
            store = SqlHousekeepingStore(uow.session)
            recorded = store.meta(STORE_KEY_FINGERPRINT)
            if sealer is None:
                if recorded is not None or store.sealed_count():
                    raise StoreStateError(
                        f"store key {path} is missing and this database already holds sealed proxies"
                        + (f" (key {recorded[:19]}...)" if recorded else "")
                        + ": copy the key file from another node of this service or from its backup; "
                        "init never creates a new key for such a database")
                if not create:
                    raise StoreStateError(f"store key {path} is missing: run `wmproxy-admin init`")
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    sealer = write_new_key(path)
                except FileExistsError:  # created concurrently: use theirs
                    sealer = Sealer.from_key_file(path)
            if recorded is not None and recorded != sealer.fingerprint:
                raise StoreStateError(
                    f"store key {path} ({sealer.fingerprint[:19]}...) is not the key of this database "
                    f"({recorded[:19]}...): copy the key file from another node of this service or from its backup")
            if recorded is None:
                token = store.any_sealed()
                if token is not None:
                    try:
                        sealer.open(token)
                    except WMProxyError:
                        raise StoreStateError(
                            f"store key {path} cannot open the proxies stored in this database: copy the key "
                            "file from another node of this service or from its backup") from None
                store.put_meta(STORE_KEY_FINGERPRINT, sealer.fingerprint, utcnow())
            return sealer.fingerprint
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_store_key` did: old and new fingerprints, rows re-sealed, and
    where the old key now is."""

    old_fingerprint: str
    new_fingerprint: str
    delegations: int
    requests: int
    retired: Path


def rotate_store_key(settings: Settings, today: dt.date | None = None) -> Rotation:
    """Re-seal every sealed row with a new key in one transaction, then retire the old key.

    Steps: check the current key (:func:`check_store_key`); write the new key to
    ``<key>.new`` (0600); in one transaction lock and re-seal every delegation and pending
    delegation request, discard the pool of pre-generated delegation keys (never handed out)
    and record the new fingerprint; then keep the old key as
    ``<key>.retired-<YYYYMMDD>`` and move the new one into place. Stop the service and the
    workers of every node first, and copy the new key to them before starting them again.

    Raises:
        StoreStateError: the current key is not the database's, ``<key>.new`` exists
            (an interrupted rotation: see docs/keys-and-lifecycle.md), or a sealed row
            cannot be opened with the current key (the message names its owner DN and
            delegation id; nothing is changed).
    """
    path = Path(settings.security.store_key_file)
    old_fp = check_store_key(settings)
    old = Sealer.from_key_file(path)
    staged = path.with_name(path.name + ".new")
    try:
        new = write_new_key(staged)
    except FileExistsError:
        raise StoreStateError(f"{staged} exists (an interrupted rotation?): compare its fingerprint with the "
                              "database's (`wmproxy-admin check`), keep the matching key, remove the other") from None
    uow, engine = _uow(settings)
    try:
        try:
            with uow:
                store = SqlHousekeepingStore(uow.session)
                delegations, requests = store.sealed_rows_locked()
                for row in delegations:
                    row.sealed_proxy = _reseal(old, new, row.sealed_proxy, "the delegated proxy", row)
                for req in requests:
                    req.sealed_key = _reseal(old, new, req.sealed_key, "the pending delegation request", req)
                store.discard_key_pool()  # unused pre-generated keys: made again under the new key
                store.put_meta(STORE_KEY_FINGERPRINT, new.fingerprint, utcnow())
        except BaseException:
            os.unlink(staged)
            raise
    finally:
        engine.dispose()
    retired = retire_key_file(path, staged, today)
    return Rotation(old_fp, new.fingerprint, len(delegations), len(requests), retired)


def _reseal(old: Sealer, new: Sealer, token: bytes, what: str, row: Delegation | DelegationRequest) -> bytes:
    """``token`` opened with ``old`` and sealed with ``new``.

    Raises:
        StoreStateError: ``old`` cannot open it; names ``what`` and the row's owner and id.
    """
    try:
        return new.seal(old.open(token))
    except WMProxyError:
        raise StoreStateError(
            f"{what} of {row.owner_dn} with delegation id {row.delegation_id} cannot be opened with the store key "
            "(corrupt, or sealed with another key): the rotation changed nothing") from None


def fingerprint_of_file(path: str | os.PathLike[str]) -> str | None:
    """Fingerprint of the key in ``path``; None when missing.

    Raises:
        OSError: unreadable.
    """
    try:
        return key_fingerprint(Path(path).read_bytes())
    except FileNotFoundError:
        return None
