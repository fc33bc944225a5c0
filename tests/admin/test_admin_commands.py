"""``wmproxy-admin jobs``, ``purge``, ``drain``, ``stats`` and ``check`` on an initialised
deployment (each backend), driven through click as an operator types them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pwd
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from tests.admin.support import days_ago, job_row, recorded, sealed_rows, settings_for, write_ini
from tests.conftest import POSTGRES_ADMIN_URL, Pki
from wmproxy.admin import cli, initialise
from wmproxy.admintools import check_ca_dir, parse_age
from wmproxy.config import DatabaseSettings, Settings
from wmproxy.security import ca_policy
from wmproxy.security.filemodes import sqlite_path
from wmproxy.security.sealing import Sealer
from wmproxy.services.runtime import Runtime
from wmproxy.store import make_engine
from wmproxy.store.migrations import head_revision, schema_revisions
from wmproxy.store.schema import ExecutionRequest

ALICE = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"
BOB = "/C=XX/O=wmproxy-demo/OU=Users/CN=Bob"
BASE = "https://localhost:7443/"


@pytest.fixture
def config(settings: Settings, tmp_path: Path) -> Path:
    initialise(settings)
    rt = Runtime.from_settings(settings)
    try:
        with rt.uow() as uow:
            rows = [job_row(BASE + "a-running", "Running", owner=ALICE, created=days_ago(0.5)),
                    job_row(BASE + "a-old-done", "Done", owner=ALICE, created=days_ago(10), updated=days_ago(8)),
                    job_row(BASE + "b-waiting", "Waiting", owner=BOB, created=days_ago(1)),
                    job_row(BASE + "b-submitted", "Submitted", owner=BOB, created=days_ago(3))]
            uow.session.add_all(rows)
            uow.session.flush()
            uow.session.add(ExecutionRequest(job_id=BASE + "b-waiting", command="start", created_at=days_ago(1)))
            uow.jobs.set_state(rows[0], "Running", days_ago(0.4), reason="started")
        for row in rows:
            rt.storage.create_job_area(row.id)
        (rt.storage.create_area(rt.storage.job_rel_dir(BASE + "a-old-done"), "output") / "big").write_bytes(b"x" * 5000)
    finally:
        rt.session_factory.kw["bind"].dispose()
    return write_ini(settings, tmp_path / "wmproxy.conf")


def admin(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args], input=stdin, catch_exceptions=False)


class TestJobs:
    def test_list_filters_by_owner_state_and_age(self, config: Path) -> None:
        def ids(*args: str) -> set[str]:
            result = admin(config, "jobs", "list", "--json", *args)
            assert result.exit_code == 0, result.output
            return {job["id"].removeprefix(BASE) for job in json.loads(result.output)}

        assert ids() == {"a-running", "a-old-done", "b-waiting", "b-submitted"}
        assert ids("--owner", BOB) == {"b-waiting", "b-submitted"}
        assert ids("--state", "done", "--state", "Running") == {"a-running", "a-old-done"}
        assert ids("--older-than", "2d") == {"a-old-done", "b-submitted"}
        assert ids("--newer-than", "13h") == {"a-running"}

    def test_list_prints_a_table(self, config: Path) -> None:
        result = admin(config, "jobs", "list")
        assert result.exit_code == 0 and "4 job(s)" in result.output and "Submitted" in result.output

    @pytest.mark.parametrize("columns", ["80", "150"])
    def test_tables_print_a_job_id_whole_to_be_copied(self, config: Path, settings: Settings, columns: str) -> None:
        job_id = "https://wms-01.grid.example.org:7443/Xq3LmN8vR2tY6wK0pZ4sHa"  # as the service makes them
        owner = "/DC=org/DC=example-grid/OU=Organic Units/OU=Users/CN=Alice Somebody-Longname 123456/CN=proxy"
        rt = Runtime.from_settings(settings)
        try:
            with rt.uow() as uow:
                uow.session.add(job_row(job_id, "Done", owner=owner, created=days_ago(9), updated=days_ago(8)))
        finally:
            rt.session_factory.kw["bind"].dispose()
        env = {"COLUMNS": columns}
        for args in (("jobs", "list"), ("purge", "--dry-run")):
            result = CliRunner().invoke(cli, ["-c", str(config), *args], env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            assert job_id in result.output and BASE + "a-old-done" in result.output, args
        shown = CliRunner().invoke(cli, ["-c", str(config), "jobs", "show", job_id], env=env, catch_exceptions=False)
        assert job_id in shown.output

    def test_text_of_grid_users_is_shown_as_written_never_as_markup(self, config: Path, settings: Settings) -> None:
        """Owner DNs and reasons (an OutputSandbox entry's name quoted in one) are the grid user's:
        rich markup in them is printed as it is, not read (an unbalanced ``[/]`` made rich raise,
        ``[link=...]`` an OSC 8 hyperlink, ``[conceal]`` hid the rest), and control characters
        are shown as ``\\xNN``."""
        job_id = BASE + "markup"
        owner = "/CN=[link=https://evil.example/fix]run this fix[/link]/CN=[conceal]x[/]"
        reason = "output [/]/ missing; [link=https://evil.example/fix]run this fix[/link] [conceal]hidden \x1b[2J"
        rt = Runtime.from_settings(settings)
        try:
            with rt.uow() as uow:
                row = job_row(job_id, "Running", owner=owner, created=days_ago(10), updated=days_ago(9))
                uow.session.add(row)
                uow.session.flush()
                uow.jobs.set_state(row, "Done", days_ago(9), reason=reason)
        finally:
            rt.session_factory.kw["bind"].dispose()
        shown_reason = reason.replace("\x1b", "\\x1b")
        for args in (("jobs", "show", job_id), ("jobs", "list"), ("purge", "--dry-run"), ("stats",)):
            plain = CliRunner().invoke(cli, ["-c", str(config), *args], env={"COLUMNS": "400"},
                                       catch_exceptions=False)
            assert plain.exit_code == 0, (args, plain.output)
            assert owner in plain.output, args
            if args[1:2] == ("show",):
                assert plain.output.count(shown_reason) == 2, plain.output  # the job's and its history's
            coloured = CliRunner().invoke(cli, ["-c", str(config), *args],
                                          env={"COLUMNS": "400", "FORCE_COLOR": "1", "TERM": "xterm-256color"},
                                          catch_exceptions=False)
            assert coloured.exit_code == 0, (args, coloured.output)
            assert "\x1b]8;" not in coloured.output and "\x1b[2J" not in coloured.output, args
            assert not re.search("\x1b\\[(?:[0-9;]*;)?8(?:;[0-9;]*)?m", coloured.output), args  # conceal

    def test_show_gives_owner_state_and_history(self, config: Path) -> None:
        result = admin(config, "jobs", "show", BASE + "a-running", "--json")
        data = json.loads(result.output)
        assert data["owner"] == ALICE and data["state"] == "Running"
        assert [e["state"] for e in data["events"]] == ["Running"]

    def test_show_of_a_purged_job_says_when_and_why(self, config: Path) -> None:
        assert admin(config, "purge", "--yes").exit_code == 0
        data = json.loads(admin(config, "jobs", "show", BASE + "a-old-done", "--json").output)
        assert data["state"] == "Done" and data["purged"] and "7 days" in data["purge_reason"]

    def test_show_of_an_unknown_job_fails(self, config: Path) -> None:
        result = admin(config, "jobs", "show", BASE + "nope")
        assert result.exit_code == 1 and "no job" in result.output

    def test_ages(self) -> None:
        assert parse_age("7d") == dt.timedelta(days=7) and parse_age("90") == dt.timedelta(seconds=90)
        with pytest.raises(Exception, match="expected a number"):
            parse_age("soon")


class TestPurge:
    def test_dry_run_shows_what_would_go_and_keeps_it(self, config: Path) -> None:
        result = admin(config, "purge", "--dry-run")
        assert result.exit_code == 0
        assert "would purge: 2 job(s)" in result.output
        assert admin(config, "jobs", "list", "--json").output.count(BASE) == 4

    @pytest.mark.parametrize("flags", [("--yes",), ("--yes", "--json")])
    def test_dry_run_with_yes_still_only_reports(self, config: Path, flags: tuple[str, ...]) -> None:
        result = admin(config, "purge", "--dry-run", *flags)
        assert result.exit_code == 0, result.output
        if "--json" in flags:
            report = json.loads(result.output)
            assert report["dry_run"] is True and len(report["jobs"]) == 2
        else:
            assert "would purge: 2 job(s)" in result.output
        assert admin(config, "jobs", "list", "--json").output.count(BASE) == 4

    def test_without_flags_the_dry_run_comes_first_and_no_keeps_everything(self, config: Path) -> None:
        result = admin(config, "purge", stdin="n\n")
        assert "would purge: 2 job(s)" in result.output and "Purge these now?" in result.output
        assert admin(config, "jobs", "list", "--json").output.count(BASE) == 4

    def test_confirmed_it_purges(self, config: Path) -> None:
        result = admin(config, "purge", stdin="y\n")
        assert result.exit_code == 0 and "purged: 2 job(s)" in result.output
        left = {j["id"].removeprefix(BASE) for j in json.loads(admin(config, "jobs", "list", "--json").output)}
        assert left == {"a-running", "b-waiting"}

    def test_it_runs_passes_until_the_backlog_is_gone(self, config: Path) -> None:
        # one pass, cut short after pass_time (run out after the first job here), stopped silently
        with config.open("a") as ini:
            ini.write("[purge]\nbatch = 1\npass_time = 1e-9\n")
        result = admin(config, "purge", "--yes")
        assert result.exit_code == 0 and "purged: 2 job(s)" in result.output
        left = {j["id"].removeprefix(BASE) for j in json.loads(admin(config, "jobs", "list", "--json").output)}
        assert left == {"a-running", "b-waiting"}


class TestUsage:
    def test_recount_sets_the_counters_from_the_disk_and_the_purge_takes_the_bytes_off(
            self, config: Path, settings: Settings) -> None:
        from wmproxy.services.quota import used_bytes

        result = admin(config, "recount-usage", "--json")
        assert result.exit_code == 0, result.output
        counted = json.loads(result.output)["usage_bytes"]
        assert counted[ALICE] >= 5000 and counted[BOB] < 5000
        assert admin(config, "purge", "--yes").exit_code == 0  # a-old-done (5000 bytes) goes
        rt = Runtime.from_settings(settings)
        try:
            assert used_bytes(rt, ALICE) == counted[ALICE] - 5000
        finally:
            rt.session_factory.kw["bind"].dispose()


class TestDrain:
    def test_on_and_off(self, config: Path, settings: Settings) -> None:
        drain = Path(settings.service.drain_file)
        assert admin(config, "drain", "on").exit_code == 0 and drain.exists()
        assert admin(config, "drain", "off").exit_code == 0 and not drain.exists()


def error_line(result: Result) -> str:
    """The one line a refused command writes (after click's usage lines for a bad option value)."""
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    if result.exit_code == 1:  # a ClickException: nothing but the line
        assert len(lines) == 1, result.stderr
    return lines[-1]


class TestRefusals:
    """Bad input gets one line saying what is wrong, never a traceback (``admin`` lets any
    other exception through to the test)."""

    @pytest.mark.parametrize("age", ["99999999999w", "200000w", "1" + "0" * 400])
    def test_an_age_past_what_a_date_holds(self, config: Path, age: str) -> None:
        for option in ("--older-than", "--newer-than"):
            result = admin(config, "jobs", "list", option, age)
            assert result.exit_code == 2
            line = error_line(result)
            assert option in line and age in line and "too long" in line

    def test_a_drain_file_that_cannot_be_created_or_removed(self, config: Path, settings: Settings,
                                                             tmp_path: Path) -> None:
        missing = tmp_path / "nodir" / "drain"
        config.write_text(config.read_text().replace(f"drain_file = {settings.service.drain_file}",
                                                     f"drain_file = {missing}"))
        result = admin(config, "drain", "on")
        assert result.exit_code == 1
        line = error_line(result)
        assert str(missing) in line and "No such file or directory" in line
        assert not missing.parent.exists()
        missing.mkdir(parents=True)  # a directory in its place: off cannot remove it
        result = admin(config, "drain", "off")
        assert result.exit_code == 1
        assert f"{missing} cannot be removed" in error_line(result) and missing.is_dir()

    def test_migrate_to_an_unknown_revision(self, config: Path) -> None:
        result = admin(config, "migrate", "nosuchrev")
        assert result.exit_code == 1
        assert "nosuchrev" in error_line(result)

    def test_rotation_with_a_row_sealed_with_another_key_names_the_row(self, config: Path,
                                                                       settings: Settings) -> None:
        key = Path(settings.security.store_key_file)
        before = key.read_bytes()
        rt = Runtime.from_settings(settings)
        try:
            with rt.uow() as uow:
                uow.session.add_all(sealed_rows(rt.sealer, ALICE, "fine"))
            with rt.uow() as uow:
                delegation, _request = sealed_rows(Sealer(Sealer.generate_key()), BOB, "foreign")
                uow.session.add(delegation)
        finally:
            rt.session_factory.kw["bind"].dispose()
        result = admin(config, "rotate-store-key", "--yes")
        assert result.exit_code == 1
        line = error_line(result)
        assert BOB in line and "foreign" in line and ALICE not in line
        assert key.read_bytes() == before and not key.with_name(key.name + ".new").exists()


class TestMigrate:
    def test_it_prints_the_revision_the_database_is_at(self, config: Path) -> None:
        result = admin(config, "migrate")
        assert result.exit_code == 0, result.output
        assert f"at revision {head_revision()} (the newest)" in result.output and "head" not in result.output

    def test_an_older_revision_is_refused_and_nothing_changes(self, config: Path, settings: Settings) -> None:
        result = admin(config, "migrate", "0001")
        assert result.exit_code == 1
        line = error_line(result)
        assert "downgrades are not supported" in line and f"at revision {head_revision()}" in line
        assert "at revision 0001" not in result.output
        assert schema_revisions(settings.database.url)[0] == head_revision()

    def test_the_current_revision_named_is_no_downgrade(self, config: Path) -> None:
        result = admin(config, "migrate", head_revision())
        assert result.exit_code == 0, result.output
        assert f"at revision {head_revision()} (the newest)" in result.output

    def test_a_database_without_a_wmproxy_schema_is_refused_untouched(self, settings: Settings,
                                                                       tmp_path: Path) -> None:
        """``init`` creates the database, ``migrate`` only upgrades one: a missing SQLite file is
        not created, an empty PostgreSQL database gets no tables; after ``init`` it migrates."""
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        db = sqlite_path(settings.database.url)
        if db is not None:
            db.parent.mkdir(parents=True)
        result = admin(config, "migrate")
        assert result.exit_code == 3
        line = error_line(result)
        assert f"no wmproxy database at {make_url(settings.database.url).render_as_string()}" in line
        assert "`wmproxy-admin init` creates one" in line
        if db is not None:
            assert list(db.parent.iterdir()) == []
        else:
            engine = make_engine(settings.database.url)
            try:
                with engine.connect() as conn:
                    assert inspect(conn).get_table_names() == []
            finally:
                engine.dispose()
        assert admin(config, "init").exit_code == 0
        result = admin(config, "migrate")
        assert result.exit_code == 0, result.output
        assert f"at revision {head_revision()} (the newest)" in result.output

    @pytest.mark.parametrize("args", [("migrate",), ("migrate", "head"), ("migrate", "0001"), ("jobs", "list"),
                                      ("stats",), ("rotate-store-key", "--yes"),
                                      ("rotate-store-key", "--yes", "--force")],
                             ids=["migrate", "migrate-head", "migrate-0001", "jobs-list", "stats", "rotate",
                                  "rotate-force"])
    def test_a_database_newer_than_the_code_says_so_without_a_traceback(self, config: Path, settings: Settings,
                                                                        args: tuple[str, ...]) -> None:
        """A package rollback: the database is at a revision the shipped migrations do not know.
        A rotation would re-seal only the columns this code knows, and leave those the newer
        release added sealed with the retired key: it changes nothing."""
        _set_revision(settings, "9999")
        key = Path(settings.security.store_key_file)
        before = key.read_bytes()
        fingerprint = recorded(settings)
        result = admin(config, *args)
        assert result.exit_code == 1
        line = error_line(result)
        assert "the database is newer than this wmproxy (9999)" in line and "restore a backup" in line
        assert "wmproxy-admin migrate" not in line
        assert schema_revisions(settings.database.url)[0] == "9999"
        assert key.read_bytes() == before and recorded(settings) == fingerprint
        assert sorted(p.name for p in key.parent.iterdir() if p.name.startswith(key.name)) == [key.name]

    @pytest.mark.postgresql_only
    def test_init_and_migrate_never_print_the_database_password(self, settings: Settings, tmp_path: Path) -> None:
        url = make_url(settings.database.url)
        if url.password is None and "PGPASSWORD" not in os.environ:  # the test server trusts: any password goes
            url = url.set(password="pw-never-shown")  # noqa: S106 - a test value
        password = str(url.password)
        secret = dataclasses.replace(settings, database=DatabaseSettings(
            url=url.render_as_string(hide_password=False)))
        config = write_ini(secret, tmp_path / "wmproxy.conf")
        for args in (("init",), ("migrate",), ("migrate", head_revision())):
            result = admin(config, *args)
            assert result.exit_code == 0, args
            assert password not in result.output and "***@" in result.output, args


def _set_revision(settings: Settings, revision: str) -> None:
    engine = make_engine(settings.database.url)
    try:
        with engine.begin() as conn:
            conn.execute(text("update alembic_version set version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


class TestStats:
    def test_jobs_by_state_and_owner_queue_and_disk(self, config: Path) -> None:
        data = json.loads(admin(config, "stats", "--json").output)
        assert data["jobs_by_state"] == {"Running": 1, "Done": 1, "Waiting": 1, "Submitted": 1}
        assert data["jobs_by_owner"] == {ALICE: 2, BOB: 2}
        assert data["queue_depth"] == 1
        assert data["sandbox_bytes"] >= 5000


def _expired_crl(pki: Pki, directory: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(pki.ca.cert.subject)
           .last_update(now - dt.timedelta(days=40)).next_update(now - dt.timedelta(days=10))
           .sign(pki.ca.key, hashes.SHA256()))
    (directory / f"{pki.ca.hash}.r0").write_bytes(crl.public_bytes(Encoding.PEM))


class TestCheck:
    def test_a_sound_deployment_passes(self, config: Path) -> None:
        result = admin(config, "check")
        assert result.exit_code == 0, result.output
        assert "PROBLEM" not in result.output

    def test_an_expired_crl_a_loose_key_and_an_old_schema_are_problems(self, config: Path, settings: Settings,
                                                                       pki: Pki, tmp_path: Path) -> None:
        ca_copy = tmp_path / "ca-copy"
        shutil.copytree(pki.ca_dir, ca_copy)
        _expired_crl(pki, ca_copy)
        assert any("expired" in p for p in check_ca_dir(str(ca_copy)))
        config.write_text(config.read_text().replace(f"ca_dir = {pki.ca_dir}", f"ca_dir = {ca_copy}"))
        Path(settings.security.store_key_file).chmod(0o644)
        result = admin(config, "check", "--json")
        assert result.exit_code == 1
        found = {c["check"]: c for c in json.loads(result.stdout)}
        assert not found["CA directory"]["ok"] and "expired" in found["CA directory"]["detail"]
        assert not found["file modes"]["ok"] and "chmod 600" in found["file modes"]["detail"]
        assert found["schema"]["ok"] and found["store key"]["ok"] and found["configuration"]["ok"]

    def test_a_database_newer_than_the_code_is_a_problem_named_as_such(self, config: Path,
                                                                       settings: Settings) -> None:
        _set_revision(settings, "9999")
        result = admin(config, "check", "--json")
        assert result.exit_code == 1
        found = {c["check"]: c for c in json.loads(result.stdout)}
        assert not found["schema"]["ok"]
        assert "the database is newer than this wmproxy (9999)" in found["schema"]["detail"]

    def test_a_policy_file_that_refuses_everyone_is_a_problem(self, config: Path, tmp_path: Path) -> None:
        """As in a fresh install that named /etc/wmproxy/policy and never created it."""
        policy = tmp_path / "policy"
        config.write_text(config.read_text().replace("[security]\n", f"[security]\npolicy_file = {policy}\n"))
        for made in ("missing", "a directory", "malformed"):
            if made == "a directory":
                policy.mkdir()
            elif made == "malformed":
                policy.rmdir()
                policy.write_text("permit *\n")
            result = admin(config, "check", "--json")
            assert result.exit_code == 1, made
            found = {c["check"]: c for c in json.loads(result.stdout)}
            assert not found["policy file"]["ok"], made
            detail = found["policy file"]["detail"]
            assert f"[security] policy_file {policy}" in detail and "every caller is refused" in detail, made
        policy.write_text("allow *\n")
        result = admin(config, "check", "--json")
        assert result.exit_code == 0, result.output
        assert {c["check"]: c for c in json.loads(result.stdout)}["policy file"]["ok"]

    def test_an_expired_or_missing_host_certificate_is_a_problem(self, config: Path, pki: Pki,
                                                                 tmp_path: Path) -> None:
        cert, _key = pki.ca.issue_host("localhost", tmp_path / "expired",
                                       not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        sound = config.read_text()
        for host_cert, detail in ((cert, f"{cert} expired "), (tmp_path / "missing.pem", "cannot read")):
            config.write_text(sound.replace(f"host_cert = {pki.host_cert}", f"host_cert = {host_cert}"))
            result = admin(config, "check", "--json")
            assert result.exit_code == 1, result.output
            found = {c["check"]: c for c in json.loads(result.stdout)}
            assert not found["host certificate"]["ok"] and detail in found["host certificate"]["detail"]
        config.write_text(sound)
        found = {c["check"]: c for c in json.loads(admin(config, "check", "--json").stdout)}
        assert found["host certificate"]["ok"] and "valid until" in found["host certificate"]["detail"]

    def test_an_unparsable_ca_policy_file_is_a_problem(self, config: Path, pki: Pki, tmp_path: Path) -> None:
        """One line per file, its name and the parse error; check fails, as the service refuses
        the certificates the file would decide (none read with namespace_mode ignore)."""
        ca_copy = tmp_path / "ca-copy"
        shutil.copytree(pki.ca_dir, ca_copy)
        old = ca_policy.old_name_hash(pki.ca.cert.subject.public_bytes())
        (ca_copy / f"{old}.namespaces").write_text("#NAMESPACES-VERSION: 2.0\n")
        (ca_copy / f"{pki.ca.hash}.signing_policy").write_text("cond_subjects globus '\"/*\"'\n")
        effect = "the certificates of its CA are refused unless its other policy file decides"
        expected = [(f"CA policy file {old}.namespaces: cannot be parsed (line 1: unsupported namespaces version "
                     f"'2.0'); {effect}"),
                    (f"CA policy file {pki.ca.hash}.signing_policy: cannot be parsed (line 1: expected access_id_CA "
                     f"X509 '<DN>': 'cond_subjects globus \\'\"/*\"\\''); {effect}")]
        assert check_ca_dir(str(ca_copy)) == expected
        sound = config.read_text().replace(f"ca_dir = {pki.ca_dir}", f"ca_dir = {ca_copy}")
        config.write_text(sound)
        result = admin(config, "check", "--json")
        assert result.exit_code == 1, result.output
        found = {c["check"]: c for c in json.loads(result.stdout)}
        assert found["CA directory"]["detail"].splitlines() == expected
        config.write_text(sound.replace("[security]\n", "[security]\nnamespace_mode = ignore\n"))
        result = admin(config, "check", "--json")
        assert result.exit_code == 0, result.output

    def test_before_init_nothing_is_said_private_and_the_missing_key_names_both_fixes(
            self, settings: Settings, tmp_path: Path) -> None:
        """No store key and no database yet (a new node): the file modes row says there is
        nothing to check (it said both were private); the missing key's fix names init for a
        new node beside the copy from another node; the checks that need the schema say they
        were not run, not the database's error with its SQL."""
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        result = admin(config, "check", "--json")
        assert result.exit_code == 1, result.output
        found = {c["check"]: c for c in json.loads(result.stdout)}
        assert found["file modes"]["ok"]
        assert found["file modes"]["detail"].startswith("no store key"), found["file modes"]
        assert "private" not in found["file modes"]["detail"]
        assert not found["schema"]["ok"]
        for name in ("store key", "sealed rows"):
            assert found[name]["ok"] is None, found[name]
            assert found[name]["detail"] == "not checked: the schema check failed"

    def test_an_unmigrated_database_shows_no_sql_beside_the_schema_message(self, settings: Settings,
                                                                            tmp_path: Path) -> None:
        initialise(settings)
        config = write_ini(settings, tmp_path / "wmproxy.conf")
        # every table gone: a database never migrated (init made the store key before)
        db = sqlite_path(settings.database.url)
        if db is not None:
            db.unlink()
            db.touch(mode=0o600)
        else:
            engine = make_engine(settings.database.url)
            try:
                with engine.begin() as conn:
                    for table in inspect(conn).get_table_names():
                        conn.execute(text(f'DROP TABLE "{table}" CASCADE'))
            finally:
                engine.dispose()
        result = admin(config, "check")
        assert result.exit_code == 1
        assert "not migrated yet" in result.output and "wmproxy-admin migrate" in result.output
        assert "ProgrammingError" not in result.output and "OperationalError" not in result.output
        assert "SELECT" not in result.output
        assert result.output.count("not checked: the schema check failed") == 2, result.output

    def test_a_missing_store_key_names_init_and_the_copy(self, config: Path, settings: Settings) -> None:
        Path(settings.security.store_key_file).unlink()
        found = {c["check"]: c for c in json.loads(admin(config, "check", "--json").stdout)}
        detail = found["store key"]["detail"]
        assert not found["store key"]["ok"]
        assert "on a new node (an empty database) run `wmproxy-admin init`" in detail, detail
        assert "copy it from another node or from its backup" in detail, detail

    def test_a_missing_ca_directory_is_a_problem(self, tmp_path: Path) -> None:
        assert check_ca_dir(str(tmp_path / "nowhere"))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="judging files as another user needs root")


@needs_root
class TestCheckAsRootWithoutUser:
    """``check`` run as root judged every file as root reads them: ok where the service user
    cannot read one. Without ``--user`` it now judges as the owner of the service's state (what
    ``init --user`` made), or warns naming ``--user`` when the state has no one owner but root."""

    def test_the_files_are_judged_as_the_owner_of_the_state(self, service_settings: Settings) -> None:
        state = Path(service_settings.sandbox.root).parent  # in a directory others may enter
        host = state / "host"
        host.mkdir(mode=0o755)
        cert, key = host / "hostcert.pem", host / "hostkey.pem"
        shutil.copyfile(service_settings.security.host_cert, cert)
        cert.chmod(0o644)
        shutil.copyfile(service_settings.security.host_key, key)
        key.chmod(0o600)  # root's: copied as root
        security = dataclasses.replace(service_settings.security, host_cert=str(cert), host_key=str(key))
        config = write_ini(dataclasses.replace(service_settings, security=security), state / "wmproxy.conf")
        result = admin(config, "check", "--json")
        assert result.exit_code == 1, result.output
        found = {c["check"]: c for c in json.loads(result.stdout)}
        assert not found["host key"]["ok"], found["host key"]
        assert (f"host key {key} is not readable by the service user nobody: it belongs to root with mode 0600"
                in str(found["host key"]["detail"])), found["host key"]
        (note,) = result.stderr.splitlines()
        assert note.startswith("note: run as root without --user: the files are judged as nobody reads them, the "
                               "owner of the service's state (store key nobody, "), note
        assert note.endswith("[sandbox] root nobody); --user NAME names the service user"), note
        os.chown(key, pwd.getpwnam("nobody").pw_uid, -1)
        result = admin(config, "check", "--json")
        assert {c["check"]: c for c in json.loads(result.stdout)}["host key"]["ok"], result.output

    def test_a_state_that_root_owns_is_judged_as_root_with_a_warning_naming_user(self, config: Path) -> None:
        result = admin(config, "check", "--json")
        assert result.exit_code == 0, result.output
        (warning,) = result.stderr.splitlines()
        assert warning.startswith("warning: run as root without --user, and the service's state has no one owner "
                                  "but root (store key root, "), warning
        assert "run `wmproxy-admin check --user <service user>`" in warning, warning
        assert json.loads(result.stdout)  # the JSON on stdout alone

    def test_user_names_the_account_and_says_nothing_more(self, service_settings: Settings, tmp_path: Path) -> None:
        result = admin(write_ini(service_settings, tmp_path / "wmproxy.conf"), "check", "--json", "--user", "nobody")
        assert result.stderr == "", result.stderr


def test_a_database_that_cannot_be_reached_is_named_without_its_password(tmp_path: Path, pki: Pki) -> None:
    """The refusal every process and ``check`` print names the database (it said "the database
    cannot be reached: ..." alone), its password hidden; the SQLite variant (owner and mode of
    the file) is tests/integration/test_start_checks.py's."""
    secret = "not-the-password-4711"  # noqa: S105 - made up: the output must not show it
    wrong = make_url(POSTGRES_ADMIN_URL).set(password=secret, database="wmproxy_no_such_database")
    settings = settings_for(tmp_path / "state", wrong.render_as_string(hide_password=False), pki)
    result = admin(write_ini(settings, tmp_path / "wmproxy.conf"), "check", "--json")
    assert result.exit_code == 1
    detail = {c["check"]: c for c in json.loads(result.stdout)}["schema"]["detail"]
    assert f"the database {wrong.render_as_string(hide_password=True)} cannot be reached: " in detail, detail
    assert secret not in result.output
