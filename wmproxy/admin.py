"""``wmproxy-admin``: site administration.

Commands: ``init``, ``migrate`` (the only ways the schema changes; under a database lock),
``rotate-store-key``, ``jobs list`` / ``jobs show``, ``purge`` (a dry run first),
``drain on|off``, ``stats`` and ``check`` (docs/keys-and-lifecycle.md).

``wmproxy-admin init`` creates the state directories, the key file that seals stored
proxies and the database (newest Alembic revision), and sets the modes that keep them
from mapped grid accounts (:func:`initialise`). Run as root, ``--user <service user>``
also hands them to the service user. Every other command first checks those modes
(:func:`wmproxy.security.filemodes.check_private_files`) and refuses to run on a store
key or SQLite file that group or others can read.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from wmproxy import admintools
from wmproxy.config import ConfigError, Settings, load_settings, no_config_note, shown_database_url
from wmproxy.security.filemodes import SQLITE_COMPANIONS, check_private_files, sqlite_path
from wmproxy.security.nofollow import UnsafePathError, open_state_path
from wmproxy.store.migrations import MIGRATIONS_DIR, upgrade

__all__ = ["MIGRATIONS_DIR", "cli", "initialise", "main", "upgrade_database"]


#: Modes ``init`` sets: the sandbox root is private to the service user; the work root
#: is traversable (jobs reach their own 0700 directory by name) but not listable.
STORE_KEY_MODE = 0o600
DATABASE_MODE = 0o600
SANDBOX_ROOT_MODE = 0o700
WORK_ROOT_MODE = 0o711
STATE_DIR_MODE = 0o711


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Run the Alembic migrations in ``wmproxy/migrations/`` up to ``revision`` on settings'
    database, under the migration lock (concurrent runs wait; ``wmproxy.store.migrations``)."""
    upgrade(settings.database.url, revision)


def _failed(command: str, exc: OSError | SQLAlchemyError, url: str) -> click.ClickException:
    """The one line ``init`` or ``migrate`` ends with (exit 1) when a file or the database
    fails it (a full or read-only file system, a database that refuses the change): the
    reason, then the file (the errno text and the path) or the database (its URL shown
    without secrets, for SQLite its file), never a traceback."""
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return click.ClickException(f"{command} failed: {exc.strerror or exc}{where}")
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    db = sqlite_path(url)
    where = f"{shown_database_url(url)} ({db.absolute()})" if db is not None else shown_database_url(url)
    return click.ClickException(f"{command} failed: {reason}: the database {where}")


def service_account(user: str | None) -> tuple[int, int] | None:
    """``(uid, gid)`` of the service user ``user`` (its primary group), or None for no user.

    Raises:
        ConfigError: the account does not exist, or another user than oneself is asked
            for by a process that is not root (it could not chown to it).
    """
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"service user {user!r} does not exist (getent passwd {user})") from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise ConfigError(f"--user {user}: only root can hand the state files to another user")
    return entry.pw_uid, entry.pw_gid


def _uids(owner: tuple[int, int] | None) -> tuple[int, ...]:
    return () if owner is None else (owner[0],)


def _settle_fd(fd: int, mode: int, owner: tuple[int, int] | None) -> None:
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, *owner)


def _new_dir(owner: tuple[int, int] | None) -> Callable[[int, Path], None]:
    """What a directory ``init`` creates gets: STATE_DIR_MODE and ``owner``."""
    return lambda fd, _path: _settle_fd(fd, STATE_DIR_MODE, owner)


def _settle(path: Path, mode: int, owner: tuple[int, int] | None, *, directory: bool = False,
            make: bool = False, create_mode: int | None = None) -> None:
    """Give ``path`` ``mode`` and ``owner`` through a descriptor opened without following a
    link (:func:`wmproxy.security.nofollow.open_state_path`: a link, a hard-linked file or a
    file of another user is refused). With ``make`` the missing directories on the way (and
    ``path`` itself, a directory) are created with STATE_DIR_MODE and ``owner``; a file is
    created with ``create_mode`` when given."""

    with _named(path):
        fd = open_state_path(path, directory=directory, create_mode=create_mode, owners=_uids(owner),
                             new_dir=_new_dir(owner) if make else None)
    try:
        _settle_fd(fd, mode, owner)
    finally:
        os.close(fd)


def _make_dirs(path: Path, owner: tuple[int, int] | None) -> None:
    """Create ``path`` and missing parents; each directory created here gets STATE_DIR_MODE
    and ``owner``. Existing directories are left as they are (but refused when a link or
    another user's, as :func:`_settle` does)."""

    with _named(path):
        os.close(open_state_path(path, directory=True, owners=_uids(owner), new_dir=_new_dir(owner)))


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """An OSError of the block names ``path`` (the walk opens each component relative to its
    directory, so the error would name the component alone, e.g. ``state``)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).is_absolute():
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def initialise(settings: Settings, user: str | None = None) -> None:
    """Create the state and set its modes; migrate the database. Idempotent.

    After it: store key 0600 (created with a new key if missing, but never for a database
    that holds sealed data or records another key), its fingerprint recorded in the
    database, SQLite file 0600 and its
    ``-wal``/``-shm``/``-journal`` files 0600 if present, sandbox root 0700, work root 0711;
    directories it creates on the way are 0711. With ``user`` all of these (and the
    directories created) belong to that account and its primary group; existing parent
    directories are never changed, so the database's directory must already be writable
    by the service user if it exists (SQLite writes its journal there).

    Nothing is changed through a symbolic link (the service user could plant one in its own
    directories to have root chown ``/etc``): each path is opened with ``O_NOFOLLOW`` and
    changed through the descriptor; a link, a hard-linked file or a file owned by neither
    root nor the service user is refused (:class:`wmproxy.security.nofollow.UnsafePathError`).
    Every path is checked so before the first is created or changed: a refusal changes
    nothing. A path of a plain account refused (run without ``--user`` on a deployment made
    with it) names ``--user <that account>``, as does a missing path whose directory is such an
    account's (it is not created there for another owner).

    Args:
        settings: the service's settings.
        user: the service user's name (only root may name another account than its own).

    Raises:
        ConfigError: unknown ``user``, or not root and ``user`` is someone else; a path
            that is a link, of the wrong type or another user's, or a missing one in another
            user's directory.
        OSError: a directory or file cannot be created, chmod-ed or chown-ed.
        ValueError: the existing store key file holds no Fernet key.
        StoreStateError: the key file is missing for a database holding sealed data, or
            is not the database's key (the message names the fix).
    """
    owner = service_account(user)
    try:
        _check_state_paths(settings, owner)  # all of them before anything is created or changed
        _initialise(settings, owner)
    except UnsafePathError as exc:
        exc.args = (_with_user_hint(exc, owner),)
        raise


def _state_paths(settings: Settings) -> list[tuple[Path, bool]]:
    """``(path, is a directory)`` of everything ``init`` creates or changes, in its order."""
    key = Path(settings.security.store_key_file)
    paths = [(Path(settings.sandbox.root), True), (Path(settings.execution.work_dir), True), (key.parent, True)]
    db = sqlite_path(settings.database.url)
    if db is not None:
        paths += [(db.parent, True), (db, False), *((Path(f"{db}{suffix}"), False) for suffix in SQLITE_COMPANIONS),
                  (Path(f"{db}.migrate-lock"), False)]
    return [*paths, (key, False)]


def _check_state_paths(settings: Settings, owner: tuple[int, int] | None) -> None:
    """Open every path ``init`` will touch as it will (:func:`_settle`), creating nothing: a
    link, a path of the wrong type or another user's is refused before any is created or
    changed. A missing path is fine (``init`` creates it); the part of its way that exists was
    checked as ``init`` walks it.

    Raises:
        UnsafePathError: as :func:`wmproxy.security.nofollow.open_state_path` says.
    """
    for path, directory in _state_paths(settings):
        owners = () if path.name.endswith(".migrate-lock") else _uids(owner)  # as migration_lock opens it
        try:
            os.close(open_state_path(path, directory=directory, owners=owners))
        except FileNotFoundError:
            _check_new_path(Path(os.path.abspath(path)), owner)


def _check_new_path(path: Path, owner: tuple[int, int] | None) -> None:
    """As root, refuse to create the missing ``path`` in a directory of a plain account other
    than ``owner``: made there as root without ``--user``, the new sandbox root or key
    directory was root's, which the service cannot use, and that account could rename it away.
    The directory is the one the creation would happen in, links followed as the walk follows
    them (a root-owned link into the account's directory is no way round). Without ``--user``
    the likely cause is a forgotten ``--user <that account>``, which the message names.

    Raises:
        ConfigError: the nearest existing directory above ``path`` is such an account's.
    """
    if os.geteuid() != 0:
        return  # a plain user's init makes its own files, wherever it may write
    parent = path.parent
    while True:
        try:
            found = os.stat(parent)  # followed: where the mkdir happens
            break
        except FileNotFoundError:
            parent = parent.parent
    if found.st_uid == 0 or found.st_uid in _uids(owner):
        return
    try:
        account = pwd.getpwuid(found.st_uid).pw_name
    except KeyError:
        account = str(found.st_uid)
    where = f"{path} would be created in {parent}, which belongs to {account}"
    if owner is None:
        raise ConfigError(f"{where}: if {account} is the service user, run `wmproxy-admin init --user {account}` "
                          f"(nothing was changed); else give {parent} to root or to the service user")
    raise ConfigError(f"{where}, not the service user (nothing was changed): give {parent} to root or to the "
                      "service user")


def _with_user_hint(exc: UnsafePathError, owner: tuple[int, int] | None) -> str:
    """The refusal, with the likelier cause first when the path is not a link but a plain
    account's (a deployment initialised with ``--user``, run again without it or with another
    user): name ``--user <that account>``."""
    try:
        found = os.lstat(exc.path)
        account = pwd.getpwuid(found.st_uid).pw_name
    except (OSError, KeyError):
        return str(exc)
    if stat.S_ISLNK(found.st_mode) or found.st_uid == 0 or (owner is not None and found.st_uid == owner[0]):
        return str(exc)
    return (f"{exc.path} belongs to {account}: if {account} is the service user, run "
            f"`wmproxy-admin init --user {account}` (nothing was changed). {exc}")


def _initialise(settings: Settings, owner: tuple[int, int] | None) -> None:
    """:func:`initialise` once the account is known and the paths checked."""
    from wmproxy.services.storekey import record_store_key

    for directory, mode in ((settings.sandbox.root, SANDBOX_ROOT_MODE), (settings.execution.work_dir, WORK_ROOT_MODE)):
        _settle(Path(directory), mode, owner, directory=True, make=True)
    key = Path(settings.security.store_key_file)
    _make_dirs(key.parent, owner)
    db = sqlite_path(settings.database.url)
    if db is not None:
        _make_dirs(db.parent, owner)
        _settle(db, DATABASE_MODE, owner, create_mode=DATABASE_MODE)
        _settle_companions(db, owner)  # before SQLite opens them as root: a link is refused first
    upgrade_database(settings)
    with contextlib.suppress(FileNotFoundError):  # before root reads it: not through a link either
        _settle(key, STORE_KEY_MODE, owner)
    record_store_key(settings, create=True)
    _settle(key, STORE_KEY_MODE, owner)
    if db is not None:
        _settle(db, DATABASE_MODE, owner)
        _settle_companions(db, owner)


def _settle_companions(db: Path, owner: tuple[int, int] | None) -> None:
    """The SQLite ``-wal``/``-shm``/``-journal`` files that exist: DATABASE_MODE and ``owner``."""
    for suffix in SQLITE_COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            _settle(Path(f"{db}{suffix}"), DATABASE_MODE, owner)


# --- the command line ------------------------------------------------------------------------

#: Commands that run before or without the store checks (they set up, repair or report them).
_UNCHECKED = {"init", "migrate", "check", "drain", "rotate-store-key"}


def _checked_settings(config_file: str | None, command: str | None) -> Settings:
    """The settings of ``config_file``, checked as ``command`` needs: the private files' modes
    (all but ``init`` and ``check``, which report or repair them) and the store (schema and key;
    not for the commands in :data:`_UNCHECKED`).

    Raises:
        click.ClickException: a configuration error or a failed check, with its fix.
    """
    from wmproxy.services.storekey import check_store

    try:
        settings = load_settings(config_file)
        if command not in ("init", "check"):
            check_private_files(settings)
        if command not in _UNCHECKED:
            check_store(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


@click.group()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Administer a wmproxy service."""
    ctx.obj = admintools.AdminSetup(config_file, ctx.invoked_subcommand, _checked_settings)


@cli.command()
@click.option("--user", default=None, metavar="NAME",
              help="service user to own the state (the user gunicorn and the workers run as); needs root")
@admintools.pass_settings
def init(settings: Settings, user: str | None) -> None:
    """Create state directories, the store key and the database, set their modes, migrate.

    Never creates a new store key for a database that already holds sealed proxies: copy
    the key file from another node or from its backup instead.
    """
    try:
        initialise(settings, user)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:  # a full or read-only file system, the database refusing
        raise _failed("init", exc, settings.database.url) from None
    shown = shown_database_url(settings.database.url)
    click.echo(f"initialised: database {shown}, sandboxes in {settings.sandbox.root}")
    if user is None and os.geteuid() == 0:
        click.echo("warning: the state belongs to root (no --user): a service running as its own user, as the units "
                   "in deploy/ run it, cannot open it; run `wmproxy-admin init --user <service user>` to hand it over",
                   err=True)


def _refuse_downgrade(url: str, revision: str) -> None:
    """Refuse ``revision`` when the database at ``url`` is already past it (nothing is run).

    Raises:
        click.ClickException: "downgrades are not supported", with both revisions; "the
            database is newer than this wmproxy" when its revision is unknown to the shipped
            migrations (a package rollback: nothing can be run on it).
    """
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    from wmproxy.store.engine import make_engine
    from wmproxy.store.migrations import current_revision, is_known_revision, newer_database_message

    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    if current is None:
        return
    if not is_known_revision(current):
        raise click.ClickException(newer_database_message(current))
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    try:
        target = script.get_revision(revision)
    except (CommandError, RevisionError):  # unknown or relative ("+1"): the upgrade says or does it
        return
    if target is None or target.revision == current:
        return
    ancestors = {rev.revision for rev in script.iterate_revisions(current, "base")}
    if target.revision in ancestors:
        raise click.ClickException(
            f"cannot migrate to {revision!r}: the database is at revision {current}, which is newer; "
            "downgrades are not supported (restore the database from a backup taken at that revision)")


def _has_wmproxy_schema(url: str) -> bool:
    """Whether the database at ``url`` was created by wmproxy (has Alembic's version table).
    An SQLite file that does not exist is not created; an existing one is only read, as it is
    (no journal mode switched on a file that may not be wmproxy's).

    Raises:
        wmproxy.services.storekey.DatabaseUnreachableError: the database cannot be reached.
    """
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from wmproxy.services.storekey import DatabaseUnreachableError, unreachable_database
    from wmproxy.store.engine import make_engine

    db = sqlite_path(url)
    if db is not None:
        import sqlite3

        if not db.exists():
            return False
        try:  # mode=rw: never creates the file (it may have gone since)
            with contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode=rw", uri=True)) as conn:
                found = conn.execute("select 1 from sqlite_master where type = 'table' and name = 'alembic_version'")
                return found.fetchone() is not None
        except sqlite3.Error as exc:
            raise DatabaseUnreachableError(unreachable_database(url, exc)) from None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    except SQLAlchemyError as exc:
        raise DatabaseUnreachableError(unreachable_database(url, exc)) from None
    finally:
        engine.dispose()


@cli.command()
@click.argument("revision", default="head")
@admintools.pass_settings
def migrate(settings: Settings, revision: str) -> None:
    """Run the database migrations up to REVISION (default: head), under a database lock.

    A REVISION older than the database's is refused: downgrades are not supported. So is a
    database without a wmproxy schema (exit status 3; a missing SQLite file is not created):
    ``init`` creates the database, ``migrate`` only upgrades one. Also records this node's
    store key fingerprint if the database has none yet.
    """
    from alembic.util import CommandError

    from wmproxy.services.startup import refuse
    from wmproxy.services.storekey import StoreStateError, record_store_key
    from wmproxy.store.migrations import schema_revisions

    url = settings.database.url
    try:
        if not _has_wmproxy_schema(url):
            # The state the configuration names is not there: refused (3) as the processes refuse a
            # missing SQLite file; e.g. no configuration was read and the default URL applied.
            db = sqlite_path(url)
            where = f"{shown_database_url(url)} ({db.absolute()})" if db is not None else shown_database_url(url)
            raise StoreStateError(f"no wmproxy database at {where}: `wmproxy-admin init` creates one"
                                  f"{no_config_note(settings)}")
    except ConfigError as exc:  # that refusal, or the database unreachable (1)
        refuse(exc, prefix="")
    try:
        _refuse_downgrade(url, revision)
        try:
            upgrade_database(settings, revision)
        except CommandError as exc:  # an unknown revision: nothing was run
            raise click.ClickException(f"cannot migrate to {revision!r}: {exc}") from None
        except ConfigError as exc:  # the migration lock file is a link or another user's
            raise click.ClickException(str(exc)) from None
        try:
            record_store_key(settings, create=False)
        except StoreStateError as exc:
            click.echo(f"warning: {exc}", err=True)
        current, head = schema_revisions(url)
    except (OSError, SQLAlchemyError) as exc:  # a full or read-only file system, the database refusing
        raise _failed("migrate", exc, url) from None
    newest = " (the newest)" if current == head else f" (the newest is {head})"
    click.echo(f"database {shown_database_url(url)}: at revision {current}{newest}")


@cli.command("rotate-store-key")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--force", is_flag=True,
              help="rotate even while execution workers heartbeat or renewal workers hold leases")
@admintools.pass_settings
def rotate_store_key_command(settings: Settings, yes: bool, force: bool) -> None:
    """Re-seal every stored proxy and pending key with a new store key, then retire the old key.

    Stop the service and the workers on every node first; afterwards copy the new key file
    to every node, then start them again. Refused while an execution worker heartbeats or a
    renewal worker holds a renewal lease (the service records nothing: stop it anyway),
    unless --force.
    """
    from wmproxy.services.storekey import rotate_store_key

    if not yes:
        click.confirm("Are the service and the workers stopped on every node?", abort=True)
    try:
        done = rotate_store_key(settings, force=force)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"re-sealed {done.delegations} delegation(s) and {done.requests} pending request(s)\n"
               f"store key {settings.security.store_key_file}: {done.new_fingerprint}\n"
               f"old key ({done.old_fingerprint}) kept as {done.retired}: copy the new key to every node and "
               "to the backup, then remove the retired one")


#: Mode of the drain file ``drain on`` creates (the service only looks whether it exists).
DRAIN_FILE_MODE = 0o644


def _switch_drain(path: Path, on: bool) -> None:
    """Create (``on``) or remove the drain file, never through a link (root runs this in a
    directory the service user owns: a link there could name ``/etc/shadow``)."""
    if on:
        fd = open_state_path(path, flags=os.O_WRONLY, create_mode=DRAIN_FILE_MODE)
        try:  # truncated once checked (O_TRUNC would cut a refused file first)
            os.ftruncate(fd, 0)
            os.write(fd, b"drained by wmproxy-admin\n")
        finally:
            os.close(fd)
        return
    parent = open_state_path(path.parent, directory=True, owners=None)
    try:
        os.unlink(path.name, dir_fd=parent)  # removes a link itself, never its target
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


@cli.command()
@click.argument("switch", type=click.Choice(["on", "off"]))
@admintools.pass_settings
def drain(settings: Settings, switch: str) -> None:
    """Refuse new jobs (on) or accept them again (off): the ``[service] drain_file`` switch."""
    path = settings.service.drain_file
    if not path:
        raise click.ClickException("[service] drain_file is not set: the service has no drain switch")
    action = "created" if switch == "on" else "removed"
    try:
        _switch_drain(Path(path), switch == "on")
    except ConfigError as exc:  # a link or another user's file: never written through
        raise click.ClickException(f"[service] drain_file {path} cannot be {action}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"[service] drain_file {path} cannot be {action}: {exc.strerror or exc}") from None
    if switch == "on":
        click.echo(f"draining: new jobs are refused while {path} exists")
    else:
        click.echo("not draining: new jobs are accepted")


for _command in (admintools.jobs, admintools.purge, admintools.stats, admintools.check, admintools.recount_usage):
    cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
