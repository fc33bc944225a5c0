"""Schema revisions: run the Alembic migrations under a database-wide lock, and tell whether
a database is at the revision this code needs.

Only ``wmproxy-admin migrate`` and ``init`` migrate; the service and the workers only
compare (:func:`schema_revisions`) and refuse to start on an older schema.

The lock makes concurrent runs safe (two nodes upgraded at once): PostgreSQL takes the
session advisory lock :data:`MIGRATION_LOCK_ID` on a connection of its own for the whole
run; SQLite takes an exclusive ``flock`` on ``<database>.migrate-lock`` next to the file.
The second run waits, then finds the schema current and does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, make_url, text

from wmproxy.security.nofollow import open_state_path
from wmproxy.store.engine import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

#: The Alembic scripts, shipped inside the package (wheel and source tree alike).
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
#: pg_advisory_lock key of a migration run (any constant; "wmproxy" in ASCII).
MIGRATION_LOCK_ID = 0x776D70726F7879
#: Mode of the SQLite lock file ``<database>.migrate-lock`` (empty).
LOCK_FILE_MODE = 0o644

# Alembic logs an INFO line per plugin ("setup plugin alembic.autogenerate.tables", 7 of them)
# when its autogenerate package is imported, by any of the functions below: not for a process's log.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def head_revision() -> str:
    """The newest revision of the shipped migrations (e.g. ``"0007"``)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError(f"no Alembic revision under {MIGRATIONS_DIR}")
    return head


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of the shipped migrations (False for a database migrated by
    a newer wmproxy, e.g. after a package rollback)."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def newer_database_message(revision: str) -> str:
    """What to say of a database at ``revision``, which the shipped migrations do not know."""
    return (f"the database is newer than this wmproxy ({revision}): install the release that has it, "
            "or restore a backup")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("select version_num from alembic_version")).scalar_one_or_none()


def schema_revisions(url: str) -> tuple[str | None, str]:
    """``(database revision, needed revision)`` of the database at ``url``."""
    engine = make_engine(url)
    try:
        return current_revision(engine), head_revision()
    finally:
        engine.dispose()


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the database-wide migration lock (see the module doc) while the block runs.

    Raises:
        OSError: (SQLite) the lock file cannot be created next to the database.
        wmproxy.security.nofollow.UnsafePathError: (SQLite) the lock file is a symbolic link,
            hard-linked or owned by another user than root, this user or its directory's owner.
    """
    if url.startswith("sqlite"):
        database = make_url(url).database
        if not database or database == ":memory:":
            yield
            return
        # Empty and world-readable: opened read-only, so a lock file root created at
        # ``init --user`` still serves the service user's later ``migrate``.
        # Never through a link (root runs migrate in the service user's directory): a link
        # there, or another user's file, is refused (UnsafePathError, a ConfigError).
        fd = open_state_path(f"{database}.migrate-lock", create_mode=LOCK_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_ID})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("select pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on the database at ``url``, under :func:`migration_lock`.

    Raises:
        alembic.util.CommandError: unknown revision.
        sqlalchemy.exc.SQLAlchemyError: the database refused a migration.
    """
    from alembic import command

    with migration_lock(url):
        command.upgrade(_alembic_config(url), revision)
