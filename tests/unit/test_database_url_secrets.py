"""A database password given as a query parameter of ``[database] url`` (libpq takes
``password`` and ``sslpassword`` from there) is a password: a configuration file others can
read is refused, and every message that shows the URL masks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy.config import ConfigError, database_url_secret, load_settings, shown_database_url
from wmproxy.services.storekey import unreachable_database

QUERY_PASSWORD = "postgresql+psycopg://wmproxy@127.0.0.1:5999/wmproxy?password=S3cretPW"  # noqa: S105 - a test URL


@pytest.mark.parametrize("url", [QUERY_PASSWORD,
                                 "postgresql+psycopg://wmproxy@db/wmproxy?sslmode=require&sslpassword=S3cretPW",
                                 "postgresql://wmproxy@db/wmproxy?pass%77ord=S3cretPW"])
def test_a_file_with_a_password_parameter_readable_by_everyone_is_refused(tmp_path: Path, url: str) -> None:
    conf = tmp_path / "wmproxy.conf"
    conf.write_text(f"[database]\nurl = {url}\n")
    conf.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"{conf} holds the database password .* \(mode 0644\)") as caught:
        load_settings(conf, environ={})
    assert "S3cretPW" not in str(caught.value)
    conf.chmod(0o640)
    load_settings(conf, environ={})


@pytest.mark.parametrize(("url", "shown"), [
    (QUERY_PASSWORD, "postgresql+psycopg://wmproxy@127.0.0.1:5999/wmproxy?password=***"),
    ("postgresql+psycopg://wmproxy:S3cretPW@db/wmproxy?sslmode=require&sslpassword=S3cretPW&password=S3cretPW",
     "postgresql+psycopg://wmproxy:***@db/wmproxy?sslmode=require&sslpassword=***&password=***"),
    ("postgresql+psycopg://wmproxy@db/wmproxy?sslmode=require", "postgresql+psycopg://wmproxy@db/wmproxy?sslmode=require"),
    ("sqlite:////var/lib/wmproxy/wmproxy.db", "sqlite:////var/lib/wmproxy/wmproxy.db"),
])
def test_the_shown_url_masks_every_password(url: str, shown: str) -> None:
    assert shown_database_url(url) == shown
    assert database_url_secret(url) == ("S3cretPW" in url)


def test_the_unreachable_database_message_does_not_show_a_query_password() -> None:
    message = unreachable_database(QUERY_PASSWORD, OSError("connection refused"))
    assert "S3cretPW" not in message and "wmproxy?password=***" in message, message


def test_a_passfile_is_not_a_password() -> None:
    url = "postgresql+psycopg://wmproxy@db/wmproxy?passfile=/etc/wmproxy/pgpass"
    assert not database_url_secret(url)
    assert "/etc/wmproxy/pgpass" in shown_database_url(url).replace("%2F", "/")


def test_migrate_on_an_unreachable_database_does_not_print_the_query_password(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wmproxy.admin import cli

    conf = tmp_path / "wmproxy.conf"
    conf.write_text("[database]\nurl = postgresql+psycopg://wmproxy@127.0.0.1:1/wmproxy?password=S3cretPW\n")
    conf.chmod(0o640)
    result = CliRunner().invoke(cli, ["-c", str(conf), "migrate"], env={"WMPROXY_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert "cannot be reached" in result.output and "S3cretPW" not in result.output, result.output
