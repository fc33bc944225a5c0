"""Alembic environment: the URL comes from the wmproxy DatabaseSettings, as for the service."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from wmproxy.config import load_settings
from wmproxy.store.engine import make_engine
from wmproxy.store.schema import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("url") or load_settings().database.url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # Batch mode rebuilds a table (copy, drop, rename) to drop or alter a column; with
                # foreign keys on, dropping the old ``jobs`` would cascade-delete every row that
                # references it (events, queue, ACLs). The pragma only works outside a transaction,
                # so it goes to the driver before the migration's BEGIN.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            # One transaction for the whole run on every database: Alembic takes SQLite's DDL as
            # not transactional and commits each revision, so a run stopped by a full disk left
            # the database between revisions (at one the code it replaced calls newer). SQLite's
            # DDL is transactional, the batch copies (create, copy, drop, rename) too; the one
            # statement that is not, the foreign_keys pragma, went above. The transaction is the
            # engine's BEGIN IMMEDIATE (wmproxy.store.engine).
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:  # also after a failed run (an unknown revision): no connection left to the garbage collector
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
