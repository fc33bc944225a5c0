"""``wmproxy-admin``: site administration (initialise state, run database migrations).

``wmproxy-admin init`` creates the sandbox and work directories, the key file that seals
stored proxies (mode 0600) and brings the database to the newest Alembic revision.
"""

from __future__ import annotations

from pathlib import Path

import click

from wmproxy.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Run the Alembic migrations in ``migrations/`` up to ``revision`` on settings' database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["url"] = settings.database.url
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


def initialise(settings: Settings) -> None:
    """Create directories and the store key, and migrate the database (idempotent)."""
    from wmproxy.security.sealing import Sealer

    for directory in (settings.sandbox.root, settings.execution.work_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
    Path(settings.security.store_key_file).parent.mkdir(parents=True, exist_ok=True)
    Sealer.from_key_file(settings.security.store_key_file, create=True)
    upgrade_database(settings)


@click.group()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Administer a wmproxy service."""
    ctx.obj = load_settings(config_file)


@cli.command()
@click.pass_obj
def init(settings: Settings) -> None:
    """Create state directories and the store key, then migrate the database."""
    initialise(settings)
    click.echo(f"initialised: database {settings.database.url}, sandboxes in {settings.sandbox.root}")


@cli.command()
@click.argument("revision", default="head")
@click.pass_obj
def migrate(settings: Settings, revision: str) -> None:
    """Run the database migrations up to REVISION (default: head)."""
    upgrade_database(settings, revision)


def main() -> None:
    cli()
