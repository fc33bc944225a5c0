"""The store key and the schema as every process checks them before it starts, and the
key's life: recorded at ``wmproxy-admin init``, rotated by ``rotate-store-key``.

Every node of a deployment shares one database and so must share one store key (the
Fernet key of ``[security] store_key_file`` that seals delegated proxies and pending
delegation keys). The database records the key's fingerprint (``sha256:<hex>`` of the key,
never the key); :func:`check_store` refuses to start a process whose key differs, or whose
database schema is older than the code, with a message naming the fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from wmproxy.config import ConfigError, Settings, no_config_note, shown_database_url
from wmproxy.domain import utcnow
from wmproxy.errors import WMProxyError
from wmproxy.security.filemodes import sqlite_path
from wmproxy.security.nofollow import open_state_path
from wmproxy.security.sealing import Sealer, key_fingerprint, retire_key_file, write_new_key
from wmproxy.store.engine import make_engine, make_session_factory
from wmproxy.store.housekeeping import STORE_KEY_FINGERPRINT, SqlHousekeepingStore
from wmproxy.store.migrations import is_known_revision, newer_database_message, schema_revisions
from wmproxy.store.schema import Delegation, DelegationRequest
from wmproxy.store.uow import UnitOfWork

#: Seconds the look at the database after a rotation's failed commit waits for the rotation's
#: own transaction, which may still be open on the PostgreSQL server (its COMMIT on the way while
#: the client saw the connection fail), to end; after that the outcome is called unknown.
SETTLE_TIMEOUT = 30


class StoreStateError(ConfigError):
    """The database and this process disagree (schema revision or store key); the message
    says what and the command or file that fixes it."""


class DatabaseUnreachableError(StoreStateError):
    """The database could not be reached at start: unlike the others, a later try may succeed
    (the processes exit 1 on it, which their units restart; :mod:`wmproxy.services.startup`)."""


class RetiredKeyError(StoreStateError):
    """This process seals with a key the database no longer records (rotated while it ran)."""


def check_sealing_key(session: Session, fingerprint: str) -> None:
    """Refuse to seal with the key of ``fingerprint`` when the database records another one:
    read in the sealing transaction, the recorded fingerprint's row locked against a
    rotation until that transaction ends (a rotation locks it first, so either it waits for
    this transaction and discards what it wrote, or this one waits for it and refuses).

    Raises:
        RetiredKeyError: another key is recorded; restart the process with the new key.
    """
    recorded = SqlHousekeepingStore(session).meta(STORE_KEY_FINGERPRINT, for_share=True)
    if recorded is not None and recorded != fingerprint:
        raise RetiredKeyError(
            f"this process's store key ({fingerprint[:19]}...) is not the database's any more ({recorded[:19]}...): "
            "the key was rotated while it ran; restart it with the new key file")


def _uow(settings: Settings) -> tuple[UnitOfWork, Engine]:
    engine = make_engine(settings.database.url)
    return UnitOfWork(make_session_factory(engine)), engine


def _require_database_file(settings: Settings) -> None:
    """Refuse an SQLite database file that does not exist instead of creating it (empty,
    with the umask's mode) by connecting."""
    db = sqlite_path(settings.database.url)
    if db is not None and not db.exists():
        raise StoreStateError(f"there is no database at {db.absolute()} ([database] url): run `wmproxy-admin init` "
                              f"for a new service, or set [database] url to the existing one{no_config_note(settings)}")


def check_schema(settings: Settings) -> None:
    """Refuse a database not at the revision this code needs.

    Raises:
        StoreStateError: "database schema is at revision X, this wmproxy needs Y: run
            wmproxy-admin migrate"; "the database is newer than this wmproxy" when its
            revision is unknown to the shipped migrations (a package rollback); an SQLite
            file that does not exist (it is not created: ``wmproxy-admin init`` creates it
            with its mode).
    """
    _require_database_file(settings)
    try:
        current, head = schema_revisions(settings.database.url)
    except SQLAlchemyError as exc:
        raise DatabaseUnreachableError(unreachable_database(settings.database.url, exc)) from None
    if current is not None and current != head and not is_known_revision(current):
        raise StoreStateError(newer_database_message(current))
    if current != head:
        where = "not migrated yet" if current is None else f"at revision {current}"
        raise StoreStateError(f"the database schema is {where}, this wmproxy needs revision {head}: "
                              "run `wmproxy-admin migrate` (once, from any node) and start again")


def unreachable_database(url: str, exc: Exception) -> str:
    """The refusal of a process whose database cannot be reached: the database named (its URL
    without its secrets: :func:`wmproxy.config.shown_database_url`) and the first line of the
    error; for SQLite the file's and its directory's owner and mode, and the user this process
    runs as (a restore that left a root-owned file: the fix is a ``chown``)."""
    shown = shown_database_url(url)
    message = f"the database {shown} cannot be reached: {str(exc).splitlines()[0]}"
    db = sqlite_path(url)
    if db is None:
        return message
    owners = []
    for path in (db, db.absolute().parent):
        try:
            info = path.stat()
        except OSError as error:
            owners.append(f"{path}: {error.strerror or error}")
            continue
        owners.append(f"{path} belongs to {account_name(info.st_uid)} with mode {stat.S_IMODE(info.st_mode):04o}")
    return (f"{message} ({'; '.join(owners)}; this process runs as {account_name(os.geteuid())}: the service user must "
            f"own the database file and be able to write its directory, e.g. `chown <service user> {db}` as root)")


def staged_key_path(key_file: str | os.PathLike[str]) -> Path:
    """``<key>.new``: where :func:`rotate_store_key` writes the new key until it is in place."""
    path = Path(key_file)
    return path.with_name(path.name + ".new")


def _recorded_fingerprint(settings: Settings, *, settle: bool = False) -> str | None:
    """The fingerprint the database records, read in a transaction of its own on a new
    connection (None: none).

    With ``settle`` it is read ``FOR UPDATE``, once no transaction holds its row: a rotation's
    transaction holds the row from its start to its end, so a read while its COMMIT is
    still on the way to the server (the client saw the connection fail first) waits for the
    outcome instead of reading the old key, at most :data:`SETTLE_TIMEOUT` seconds on
    PostgreSQL. On SQLite a commit is over when the call returns or raises.

    Raises:
        SQLAlchemyError: the database cannot be reached, or (``settle``) the row stayed locked.
    """
    uow, engine = _uow(settings)
    try:
        with uow:
            if settle and uow.session.get_bind().dialect.name == "postgresql":
                uow.session.execute(text(f"SET LOCAL lock_timeout = '{SETTLE_TIMEOUT}s'"))
            return SqlHousekeepingStore(uow.session).meta(STORE_KEY_FINGERPRINT, for_update=settle)
    finally:
        engine.dispose()


def _interrupted_rotation(path: Path, recorded: str) -> str | None:
    """The fix, when ``<key>.new`` holds the recorded key: a rotation that committed but did
    not move its new key into place (killed in between); None otherwise."""
    staged = staged_key_path(path)
    try:
        staged_fingerprint = fingerprint_of_file(staged)
    except (OSError, ValueError):
        return None
    if staged_fingerprint != recorded:
        return None
    return (f"a store key rotation was interrupted after its commit: {staged} holds the key of this database "
            f"({recorded[:19]}...), not {path}: run `mv {staged} {path}` on this node (the key it replaces "
            f"opens nothing in the database any more), then copy {path} to every other node of this service "
            "and to the backup (docs/keys-and-lifecycle.md)")


def _load_key(path: Path) -> Sealer | None:
    """The key of ``path`` (None: no such file).

    Raises:
        StoreStateError: the file is not readable by this process's user (the message names
            the file's owner and the ``chown`` that fixes it: the key itself is fine), or it
            cannot be read or holds no Fernet key (then restore it from a copy).
    """
    try:
        return Sealer.load(path)
    except PermissionError:
        raise StoreStateError(_unreadable_key(path)) from None
    except (OSError, ValueError) as exc:
        raise StoreStateError(f"store key {path} cannot be used ({exc}): restore it from another node or from "
                              "its backup") from None


def account_name(uid: int) -> str:
    """The user name of ``uid`` (the number when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _unreadable_key(path: Path) -> str:
    """Why ``path`` cannot be read by this user, and the command that fixes it."""
    user = account_name(os.geteuid())
    try:
        info = path.stat()
    except OSError:  # its directory cannot be entered
        return (f"store key {path} is not readable by user {user}: a directory on its path cannot be entered by "
                f"{user}; give {user} access to {path.parent} (`chown {user} {path.parent}`, as root)")
    return (f"store key {path} is not readable by user {user}: it belongs to {account_name(info.st_uid)} with mode "
            f"{stat.S_IMODE(info.st_mode):04o}; run `chown {user} {path}` (as root) and start again (the key "
            "itself is fine, nothing needs restoring)")


def check_store_key(settings: Settings) -> str:
    """Refuse a store key that is not the database's; returns the fingerprint.

    Raises:
        StoreStateError: the key file is missing or unreadable, the SQLite database file
            does not exist, no fingerprint is recorded (``wmproxy-admin init`` records it), or
            the key differs from the recorded one. When ``<key>.new`` holds the recorded key
            (a rotation killed between its commit and the rename), the message says so and
            gives the ``mv`` that finishes it.
    """
    path = Path(settings.security.store_key_file)
    sealer = _load_key(path)
    missing = _missing_key(settings)
    if sealer is None and not staged_key_path(path).exists():
        raise StoreStateError(missing)
    _require_database_file(settings)
    recorded = _recorded_fingerprint(settings)
    if recorded is None:
        raise StoreStateError("the database records no store key fingerprint: run `wmproxy-admin init` "
                              "(or `wmproxy-admin migrate`) with this node's store key")
    if sealer is None or recorded != sealer.fingerprint:
        mismatch = missing if sealer is None else (
            f"store key {path} ({sealer.fingerprint[:19]}...) is not the key of this database ({recorded[:19]}...): "
            "copy the store key file from another node of this service or from its backup to this path; every "
            "node must use the same key")
        raise StoreStateError(_interrupted_rotation(path, recorded) or mismatch)
    return recorded


def _missing_key(settings: Settings) -> str:
    return (f"store key {settings.security.store_key_file} is missing: on a new node (an empty database) run "
            "`wmproxy-admin init`, which creates it; on a node of a running service copy it from another node or from "
            f"its backup (a new key cannot open the proxies already stored){no_config_note(settings)}")


def check_store_key_file(settings: Settings) -> None:
    """Refuse a store key file that is missing or cannot be read, without the database (for a
    process that starts without one: ``wmproxy-metrics``).

    Raises:
        StoreStateError: as :func:`check_store_key` says of the file.
    """
    if _load_key(Path(settings.security.store_key_file)) is None:
        raise StoreStateError(_missing_key(settings))


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
    sealer = _load_key(path)
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


#: Rows of each sealed column ``wmproxy-admin check`` tries to open with the store key.
SEALED_SAMPLE = 200


def running_processes(settings: Settings) -> list[str]:
    """What the database shows running against it: execution workers that heartbeat within
    ``[execution] heartbeat_lease``, renewal workers holding an unexpired renewal lease (the
    service records nothing of its own). One description per process, with where it runs.

    Raises:
        SQLAlchemyError: the database cannot be read.
    """
    now = utcnow()
    since = now - dt.timedelta(seconds=settings.execution.heartbeat_lease)
    uow, engine = _uow(settings)
    try:
        with uow:
            store = SqlHousekeepingStore(uow.session)
            workers = [f"execution worker {w.name} on {w.host} (pid {w.pid}, heartbeat "
                       f"{max(0, int((now - w.heartbeat_at).total_seconds()))} s ago): `systemctl stop "
                       "wmproxy-worker` there" for w in store.live_execution_workers(since)]
            renewals = [f"renewal worker {name} (holds a renewal lease): `systemctl stop wmproxy-renewal` there"
                        for name in store.renewal_claimers(now)]
            return workers + renewals
    finally:
        engine.dispose()


def unopenable_sealed(settings: Settings, limit: int = SEALED_SAMPLE) -> tuple[int, list[str]]:
    """Try the store key on the newest ``limit`` rows of each sealed column (delegations,
    pending requests, pooled delegation keys): ``(rows tried, descriptions of those it cannot
    open)``. A process that kept running through a key rotation seals with the retired key.

    Raises:
        StoreStateError: the key file cannot be loaded; the SQLite file does not exist.
        SQLAlchemyError: the database cannot be read.
    """
    path = Path(settings.security.store_key_file)
    sealer = _load_key(path)
    if sealer is None:
        raise StoreStateError(f"store key {path} is missing")
    _require_database_file(settings)
    uow, engine = _uow(settings)
    try:
        with uow:
            rows = SqlHousekeepingStore(uow.session).sealed_sample(limit)
    finally:
        engine.dispose()
    bad = []
    for what, whose, token in rows:
        try:
            sealer.open(token)
        except WMProxyError:
            bad.append(f"{what} {whose}")
    return len(rows), bad


def rotate_store_key(settings: Settings, today: dt.date | None = None, *, force: bool = False) -> Rotation:
    """Re-seal every sealed row with a new key in one transaction, then retire the old key.

    Steps: check the current key (:func:`check_store_key`); write the new key to
    ``<key>.new`` with the owner, group and mode of the current key (run as root, the new key
    stays the service user's); in one transaction lock and re-seal every delegation and pending
    delegation request, discard the pool of pre-generated delegation keys (never handed out)
    and record the new fingerprint; then keep the old key as
    ``<key>.retired-<YYYYMMDD>`` and move the new one into place. Stop the service and the
    workers of every node first, and copy the new key to them before starting them again.

    When the transaction fails once its commit has begun (the connection lost while COMMIT is
    answered, Ctrl-C), whether it committed is read from the database: ``<key>.new`` is
    removed only when the database still records the old key; otherwise it is kept (it may
    be the only copy of the key that opens every stored proxy) and the error says what to do.

    Unless ``force``, refuses while the database shows a process running against it
    (:func:`running_processes`): it would go on sealing with the old key, and what it seals
    could not be opened after the rotation.

    Refuses, before any change, a database not at this code's revision (:func:`check_schema`):
    one migrated by a newer release may hold sealed columns this code does not know, which
    would stay sealed with the retired key.

    Raises:
        wmproxy.security.nofollow.UnsafePathError: the key file is a symbolic link or hard-linked, or a link is on its
            way (:func:`wmproxy.security.nofollow.open_state_path`).
        StoreStateError: the schema is not this code's (newer: "the database is newer than
            this wmproxy"; older: run ``wmproxy-admin migrate``); an execution worker
            heartbeats or a renewal worker holds a lease
            (without ``force``; the message names them and how to stop them); the current
            key is not the database's; ``<key>.new`` exists (an
            interrupted rotation: see docs/keys-and-lifecycle.md); a sealed row cannot be
            opened with the current key (the message names its owner DN and delegation id;
            nothing is changed); the rotation committed but the new key could not be moved
            into place, or may have committed (the database could not be read afterwards):
            the message names ``<key>.new`` and the fix.
    """
    path = Path(settings.security.store_key_file)
    # Run as root in the service user's directory: the key read, and the owner the new key
    # copies, never through a link (nor a hard link) the service user put there.
    with contextlib.suppress(FileNotFoundError):  # missing: check_store_key says what to do
        os.close(open_state_path(path, owners=None))
    check_schema(settings)  # a newer database may have sealed columns this code does not re-seal
    old_fp = check_store_key(settings)
    running = [] if force else running_processes(settings)
    if running:
        raise StoreStateError(
            "processes still run against this database and would go on sealing with the old key (what they seal "
            f"then cannot be opened after the rotation): {'; '.join(running)}. Stop them, and the service "
            "(`systemctl stop wmproxy`), on every node and rotate again; --force rotates anyway (a worker "
            "killed without a chance to deregister heartbeats no more: wait heartbeat_lease, then it is not listed)")
    old = Sealer.from_key_file(path)
    staged = staged_key_path(path)
    try:
        new = write_new_key(staged, like=path)  # the service user's, as the key it replaces
    except FileExistsError:
        raise StoreStateError(f"{staged} exists, left by a rotation that did not commit (the database records "
                              f"the key of {path}, {old_fp[:19]}...): remove {staged} and run the rotation "
                              "again (docs/keys-and-lifecycle.md)") from None
    uow, engine = _uow(settings)
    committing = False
    try:
        with uow:
            store = SqlHousekeepingStore(uow.session)
            store.meta(STORE_KEY_FINGERPRINT, for_update=True)  # first: sealers wait (check_sealing_key)
            delegations, requests = store.sealed_rows_locked()
            for row in delegations:
                row.sealed_proxy = _reseal(old, new, row.sealed_proxy, "the delegated proxy", row)
            for req in requests:
                req.sealed_key = _reseal(old, new, req.sealed_key, "the pending delegation request", req)
            store.discard_key_pool()  # unused pre-generated keys: made again under the new key
            store.put_meta(STORE_KEY_FINGERPRINT, new.fingerprint, utcnow())
            committing = True  # from here an error may come after the database committed
    except BaseException as exc:
        engine.dispose()
        _after_failed_rotation(settings, staged, old_fp, new.fingerprint, exc, committing)
        raise
    engine.dispose()
    try:
        retired = retire_key_file(path, staged, today)
    except OSError as exc:
        if not staged.exists():  # moved into place; what failed is the directory's fsync after it
            raise StoreStateError(
                f"the store key rotation committed and the new key is in place in {path}, but its directory "
                f"could not be synced to disk ({exc}): check the disk, then copy {path} to every other node and "
                "to the backup") from exc
        raise StoreStateError(
            f"the store key rotation committed (the database records {new.fingerprint[:19]}...) but the new key "
            f"could not be moved into place ({exc}): {staged} is the key of this database: run "
            f"`mv {staged} {path}`, then copy {path} to every other node and to the backup") from exc
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


def _after_failed_rotation(settings: Settings, staged: Path, old_fp: str, new_fp: str, exc: BaseException,
                           committing: bool) -> None:
    """Clean up after the rotation's transaction failed with ``exc``: remove ``staged`` when
    the database certainly kept the old key (the error came before the commit, or the
    database still records ``old_fp``); otherwise keep it.

    Raises:
        StoreStateError: the database records the new key (the rotation committed), or it
            cannot be read (it may have): ``staged`` is kept, the message names it and the fix.
    """
    recorded: str | None = old_fp
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'interrupted'}"
    if committing:
        try:
            recorded = _recorded_fingerprint(settings, settle=True)
        except SQLAlchemyError as read_error:
            path = Path(settings.security.store_key_file)
            raise StoreStateError(
                f"the store key rotation failed ({reason}) during its commit and the database cannot be read "
                f"now ({str(read_error).splitlines()[0]}), so whether it committed is unknown: {staged} is kept. "
                f"Once the database is back, `wmproxy-admin check` tells: if the database records "
                f"{new_fp[:19]}... (the key in {staged}), run `mv {staged} {path}` and copy {path} to every "
                f"node; if it records {old_fp[:19]}..., remove {staged}") from exc
    if recorded == old_fp:
        staged.unlink()
        return
    path = Path(settings.security.store_key_file)
    if recorded == new_fp:
        raise StoreStateError(
            f"the store key rotation committed (the database records {new_fp[:19]}..., the key in {staged}) "
            f"but failed after its commit ({reason}): run `mv {staged} {path}` (the key it replaces opens "
            f"nothing in the database any more), then copy {path} to every other node and to the backup") from exc
    raise StoreStateError(
        f"the store key rotation failed ({reason}) and the database now records neither the old key nor the "
        f"new one ({recorded[:19] if recorded else 'none'}...): {staged} is kept; compare the key files' "
        "fingerprints with the database's (`wmproxy-admin check`) and keep the matching one") from exc


def fingerprint_of_file(path: str | os.PathLike[str]) -> str | None:
    """Fingerprint of the key in ``path``; None when missing.

    Raises:
        OSError: unreadable.
    """
    try:
        return key_fingerprint(Path(path).read_bytes())
    except FileNotFoundError:
        return None
