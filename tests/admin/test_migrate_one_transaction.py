"""``wmproxy-admin migrate`` runs every pending revision in one transaction, SQLite included
(docs/operations.md): a revision that fails after others ran leaves the database at the
revision it started from, not between the two."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from tests.admin.support import write_ini
from wmproxy.admin import cli, upgrade_database
from wmproxy.config import Settings
from wmproxy.store import make_engine
from wmproxy.store.migrations import head_revision, schema_revisions

START = "0010"
#: An index the last revision creates: made beforehand (on another table), it fails that revision.
LAST_INDEX = "ix_inspection_requests_asked_at"


def test_a_revision_failing_after_others_leaves_the_database_where_it_was(settings: Settings,
                                                                          tmp_path: Path) -> None:
    if settings.database.url.startswith("sqlite"):
        Path(settings.database.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings, START)
    if settings.database.url.startswith("sqlite"):
        os.chmod(settings.database.url.removeprefix("sqlite:///"), 0o600)
    engine = make_engine(settings.database.url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"create index {LAST_INDEX} on jobs (state)"))
    finally:
        engine.dispose()
    config = write_ini(settings, tmp_path / "wmproxy.conf")
    result = CliRunner().invoke(cli, ["-c", str(config), "migrate"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and LAST_INDEX in result.output, result.output
    assert schema_revisions(settings.database.url) == (START, head_revision())
    engine = make_engine(settings.database.url)
    try:
        with engine.begin() as conn:  # nothing of the revisions that ran before the failure stayed
            names = {row[0] for row in conn.execute(text(
                "select name from sqlite_master where type = 'index'" if engine.dialect.name == "sqlite"
                else "select indexname from pg_indexes"))}
            conn.execute(text(f"drop index {LAST_INDEX}"))
    finally:
        engine.dispose()
    assert "ix_jobs_parent_state" not in names  # made by 0011
    result = CliRunner().invoke(cli, ["-c", str(config), "migrate"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert schema_revisions(settings.database.url) == (head_revision(), head_revision())
