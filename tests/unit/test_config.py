"""Configuration loading: strict sections and keys, literal values, validation at start."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from wmproxy.config import (
    ConfigError,
    Settings,
    areas,
    env_name,
    keys,
    load_settings,
    no_config_note,
    parse_bind,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "wmproxy.conf.example"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wmproxy.conf"
    path.write_text(text)
    return path


class TestStrictness:
    def test_a_misspelt_section_is_named(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[databse]\nurl = postgresql+psycopg://db/wmproxy\n")
        with pytest.raises(ConfigError, match=r"unknown section\(s\) \[databse\]") as info:
            load_settings(conf, environ={})
        assert str(conf) in str(info.value)

    def test_a_misspelt_key_is_named_with_its_section(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[database]\nurl = sqlite:///x.db\n[execution]\nmax_runing = 3\n")
        with pytest.raises(ConfigError, match=r"unknown key\(s\) \[execution\] max_runing"):
            load_settings(conf, environ={})

    def test_a_default_section_is_not_merged_into_every_section(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[DEFAULT]\nurl = sqlite:///x.db\n")
        with pytest.raises(ConfigError, match=r"\[DEFAULT\]"):
            load_settings(conf, environ={})

    def test_a_misspelt_environment_variable_is_named(self) -> None:
        with pytest.raises(ConfigError, match="WMPROXY_DATABASE_URI"):
            load_settings(environ={"WMPROXY_DATABASE_URI": "sqlite:///x.db"})

    def test_variables_of_other_tools_are_not_settings(self) -> None:
        settings = load_settings(environ={"WMPROXY_ENDPOINT": "https://wms:7443/x", "WMPROXY_CONFIG": "",
                                          "WMPROXY_TEST_POSTGRES_URL": "postgresql://x"})
        assert settings == load_settings(environ={})

    def test_a_file_that_is_not_ini_is_refused_with_its_name(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "url = sqlite:///x.db\n")
        with pytest.raises(ConfigError, match=f"{conf}: cannot read"):
            load_settings(conf, environ={})

    def test_a_missing_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="configuration file not found"):
            load_settings(tmp_path / "nope.conf", environ={})


class TestValues:
    def test_percent_in_a_url_is_taken_literally(self, tmp_path: Path) -> None:
        url = "postgresql+psycopg://wmproxy:p%40ss%25w@db.example.org/wmproxy"
        conf = write(tmp_path, f"[database]\nurl = {url}\n")
        conf.chmod(0o640)
        loaded = load_settings(conf, environ={}).database.url
        assert loaded == url
        assert make_url(loaded).password == "p@ss%w"  # noqa: S105 -- a test URL, the decoded form

    @pytest.mark.parametrize("mode", [0o644, 0o604, 0o641])
    def test_a_file_holding_the_database_password_readable_by_every_user_is_refused(
            self, tmp_path: Path, mode: int) -> None:
        conf = write(tmp_path, "[database]\nurl = postgresql+psycopg://wmproxy:secret@db.example.org/wmproxy\n")
        conf.chmod(mode)
        with pytest.raises(ConfigError, match=rf"{conf} holds the database password .* \(mode {mode:04o}\)") as caught:
            load_settings(conf, environ={})
        assert "secret" not in str(caught.value)
        conf.chmod(0o640)  # the service user's group may read it
        assert load_settings(conf, environ={}).database.url.endswith("@db.example.org/wmproxy")

    def test_a_readable_file_without_a_database_password_is_loaded(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[database]\nurl = postgresql+psycopg://wmproxy@db.example.org/wmproxy\n")
        conf.chmod(0o644)
        assert load_settings(conf, environ={}).database.url == "postgresql+psycopg://wmproxy@db.example.org/wmproxy"
        exposed = write(tmp_path, "[database]\nurl = postgresql+psycopg://wmproxy:secret@db.example.org/wmproxy\n")
        exposed.chmod(0o644)  # the URL the environment gives wins: the file's password is not used
        env = {"WMPROXY_DATABASE_URL": "postgresql+psycopg://wmproxy@db.example.org/other"}
        assert load_settings(exposed, environ=env).database.url.endswith("/other")

    def test_the_environment_overrides_the_file(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[execution]\nmax_running = 3\n")
        settings = load_settings(conf, environ={"WMPROXY_EXECUTION_MAX_RUNNING": "7"})
        assert settings.execution.max_running == 7

    @pytest.mark.parametrize(("section", "key", "value", "message"), [
        ("execution", "max_running", "many", r"\[execution\] max_running: cannot convert 'many'"),
        ("execution", "poll_interval", "nan", r"\[execution\] poll_interval: cannot convert"),
        ("execution", "poll_interval", "0", r"\[execution\] heartbeat_lease and poll_interval"),
        ("execution", "max_job_memory", "-1", r"\[execution\] max_job_memory must not be negative"),
        ("service", "port", "70000", r"\[service\] port: a TCP port"),
        ("service", "workers", "0", r"\[service\] workers and threads"),
        ("service", "default_protocol", "gsiftp", r"only https"),
        ("service", "graceful_timeout", "0", r"\[service\] graceful_timeout: 1-3600 seconds"),
        ("service", "graceful_timeout", "3601", r"\[service\] graceful_timeout: 1-3600 seconds"),
        ("renewal", "myproxy_server", "not a host!", r"\[renewal\] myproxy_server"),
        ("renewal", "myproxy_allowed_servers", "a.org, *:7512", r"\[renewal\] myproxy_allowed_servers"),
        ("mapping", "mode", "lcmaps", r"\[mapping\] mode"),
        ("slurm", "max_array", "0", r"\[slurm\] max_array: must be at least 1"),
        ("slurm", "submit_settle", "-1", r"\[slurm\] .*submit_settle: must not be negative"),
    ])
    def test_a_bad_value_is_refused_naming_the_setting(self, tmp_path: Path, section: str, key: str, value: str,
                                                       message: str) -> None:
        conf = write(tmp_path, f"[{section}]\n{key} = {value}\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(conf, environ={})

    def test_slurm_max_array_reaches_the_backend(self, tmp_path: Path) -> None:
        from wmproxy.execution.__main__ import build_backends

        settings = load_settings(write(tmp_path, f"[execution]\nwork_dir = {tmp_path / 'work'}\n"
                                                 "[slurm]\nmax_array = 50\n"), environ={})
        backend = build_backends(settings, ["slurm"])["slurm"]
        assert getattr(backend, "max_array", None) == 50

    def test_slurm_submit_settle_reaches_the_backend(self, tmp_path: Path) -> None:
        from wmproxy.execution.__main__ import build_backends

        settings = load_settings(write(tmp_path, f"[execution]\nwork_dir = {tmp_path / 'work'}\n"
                                                 "[slurm]\nsubmit_settle = 600\n"), environ={})
        backend = build_backends(settings, ["slurm"])["slurm"]
        assert getattr(backend, "submit_settle", None) == 600.0

    def test_a_bad_environment_value_names_the_variable(self) -> None:
        with pytest.raises(ConfigError, match="WMPROXY_SERVICE_THREADS: cannot convert"):
            load_settings(environ={"WMPROXY_SERVICE_THREADS": "four"})


class TestWhereABadValueCameFrom:
    """The message names the file or the variable that gave the bad value (docs/operations.md)."""

    def test_a_value_that_does_not_convert_names_its_file(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[execution]\nmax_running = eight\n")
        with pytest.raises(ConfigError) as info:
            load_settings(conf, environ={})
        assert str(info.value) == f"{conf}: [execution] max_running: cannot convert 'eight' to int"

    def test_an_out_of_range_value_names_its_file(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[service]\ngraceful_timeout = 0\n")
        with pytest.raises(ConfigError, match=r"\[service\] graceful_timeout: 1-3600 seconds") as info:
            load_settings(conf, environ={})
        assert str(info.value).endswith(f"(set in {conf})")

    def test_an_out_of_range_value_names_its_variable(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[service]\nworkers = 2\n")
        with pytest.raises(ConfigError, match=r"\[service\] workers and threads") as info:
            load_settings(conf, environ={"WMPROXY_SERVICE_THREADS": "0"})
        assert str(info.value).endswith(f"(set in {conf}, WMPROXY_SERVICE_THREADS)")

    def test_the_file_read_is_recorded_and_none_is_said(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[execution]\nmax_running = 3\n")
        assert load_settings(conf, environ={}).config_file == str(conf)
        assert load_settings(environ={"WMPROXY_CONFIG": str(conf)}).config_file == str(conf)
        assert no_config_note(load_settings(conf, environ={})) == ""
        note = no_config_note(load_settings(environ={}))
        assert "no configuration file was read" in note and "WMPROXY_CONFIG" in note


class TestDatabaseUrl:
    @pytest.mark.parametrize("scheme", ["postgresql", "postgres", "POSTGRES"])
    def test_postgresql_without_a_driver_is_taken_as_psycopg(self, scheme: str, tmp_path: Path) -> None:
        conf = write(tmp_path, f"[database]\nurl = {scheme}://wmproxy:s%40cret@db.example.org:5433/wmproxy\n")
        conf.chmod(0o600)
        url = load_settings(conf, environ={}).database.url
        assert url == "postgresql+psycopg://wmproxy:s%40cret@db.example.org:5433/wmproxy"
        assert make_url(url).password == "s@cret"  # noqa: S105 - a test value

    @pytest.mark.parametrize("url", ["mysql://wmproxy:s3cret@db/wmproxy", "postgresql+psycopg2://wmproxy:s3cret@db/w",
                                     "oracle://wmproxy:s3cret@db/w", "wmproxy:s3cret@db/wmproxy", "wmproxy.db"])
    def test_another_scheme_is_refused_naming_the_setting_and_the_forms_never_the_password(
            self, url: str, tmp_path: Path) -> None:
        conf = write(tmp_path, f"[database]\nurl = {url}\n")
        conf.chmod(0o600)
        with pytest.raises(ConfigError) as info:
            load_settings(conf, environ={})
        message = str(info.value)
        assert "[database] url" in message and "sqlite:////" in message and "postgresql+psycopg://" in message
        assert "s3cret" not in message and str(conf) in message

    def test_a_url_from_the_environment_is_checked_too(self) -> None:
        with pytest.raises(ConfigError, match=r"\[database\] url: the scheme 'mysql'.*WMPROXY_DATABASE_URL"):
            load_settings(environ={"WMPROXY_DATABASE_URL": "mysql://u:p@h/d"})


#: Values that convert but would break a process at run time (the renewal worker spinning on
#: ``cycle = 0``, every getProxyReq failing on a 512-bit key...), each refused at start naming
#: its setting: ``(section, key, value, message)``.
OUT_OF_RANGE = [
    ("limits", "max_output_sandbox_size", "-1", r"\[limits\] max_output_sandbox_size: must not be negative"),
    ("limits", "max_acl_items", "0", r"\[limits\] max_acl_items: must be at least 1"),
    ("limits", "max_acl_item_length", "0", r"\[limits\] max_acl_item_length: must be at least 1"),
    ("limits", "max_acl_item_length", "513", r"\[limits\] max_acl_item_length: must be at most 512"),
    ("renewal", "cycle", "0", r"\[renewal\] cycle: must be positive"),
    ("renewal", "cycle", "-300", r"\[renewal\] cycle: must be positive"),
    ("renewal", "timeout", "0", r"\[renewal\] timeout: must be positive"),
    ("renewal", "timeout", "-1", r"\[renewal\] timeout: must be positive"),
    ("renewal", "threshold", "-5", r"\[renewal\] threshold: must not be negative"),
    ("renewal", "lifetime", "0", r"\[renewal\] lifetime: must be more than threshold"),
    ("renewal", "lifetime", "2100", r"\[renewal\] lifetime: must be more than threshold \(2100 s\)"),
    ("security", "delegation_key_bits", "0", r"\[security\] delegation_key_bits: 0 is outside 2048-16384 bits"),
    ("security", "delegation_key_bits", "512", r"\[security\] delegation_key_bits: 512 is outside 2048-16384 bits"),
    # accepted before: the CLI refuses to sign a request for a key under 2048 bits
    ("security", "delegation_key_bits", "1024", r"\[security\] delegation_key_bits: 1024 is outside 2048-16384 bits"),
    ("security", "delegation_key_bits", "2047", r"\[security\] delegation_key_bits: 2047 is outside 2048-16384 bits"),
    ("security", "delegation_key_bits", "16385", r"\[security\] delegation_key_bits: 16385 is outside 2048-16384 bits"),
    ("security", "delegation_key_pool", "-3", r"\[security\] delegation_key_pool: must not be negative"),
    ("security", "min_proxy_lifetime", "-100", r"\[security\] min_proxy_lifetime: must not be negative"),
    ("service", "bind", "garbage", r"\[service\] bind: 'garbage' is not host:port"),
    ("service", "bind", "127.0.0.1", r"\[service\] bind: '127.0.0.1' is not host:port"),
    ("service", "bind", "0.0.0.0:99999", r"\[service\] bind: .* is not host:port"),
    ("service", "bind", "::1:7443", r"\[service\] bind: .* is not host:port"),
    ("service", "bind", "[nonsense]:7443", r"\[service\] bind: .* is not host:port"),
    ("service", "max_input_sandbox_size", "-1", r"\[service\] max_input_sandbox_size: must not be negative"),
    ("jobs", "max_nodes", "0", r"\[jobs\] max_nodes: must be at least 1"),
    ("jobs", "quota_soft_limit", "-1", r"\[jobs\] quota_soft_limit: must not be negative"),
    ("jobs", "quota_hard_limit", "-1", r"\[jobs\] quota_hard_limit: must not be negative"),
    ("jobs", "max_perusal_files", "-1", r"\[jobs\] max_perusal_files: must not be negative"),
    ("jobs", "min_perusal_interval", "-1", r"\[jobs\] min_perusal_interval: must not be negative"),
    ("metrics", "bind", "nonsense:99999", r"\[metrics\] bind: 'nonsense:99999' is not host\[:port\]"),
    ("metrics", "bind", "", r"\[metrics\] bind: '' is not host\[:port\]"),
    ("metrics", "crl_grace", "-86400", r"\[metrics\] crl_grace: must not be negative"),
    ("metrics", "sandbox_scan_interval", "-1", r"\[metrics\] sandbox_scan_interval: must not be negative"),
    # 0 would purge a job at once (its output as it ends, a registered job before its jobStart)
    ("purge", "final_age", "0", r"\[purge\] final_age = 0: must be positive .*enabled = false"),
    ("purge", "registered_age", "0", r"\[purge\] registered_age = 0: must be positive"),
    ("purge", "forced_age", "0", r"\[purge\] forced_age = 0: must be positive"),
    ("purge", "forced_age", "-1", r"\[purge\] forced_age = -1: must be positive"),
]


class TestRanges:
    @pytest.mark.parametrize(("section", "key", "value", "message"), OUT_OF_RANGE)
    def test_an_out_of_range_value_in_the_file_is_refused_naming_the_setting(
            self, tmp_path: Path, section: str, key: str, value: str, message: str) -> None:
        conf = write(tmp_path, f"[{section}]\n{key} = {value}\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(conf, environ={})

    @pytest.mark.parametrize(("section", "key", "value", "message"), OUT_OF_RANGE)
    def test_an_out_of_range_environment_value_is_refused_naming_the_setting(
            self, section: str, key: str, value: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            load_settings(environ={env_name(section, key): value})

    def test_a_soft_quota_over_the_hard_one_is_refused(self) -> None:
        with pytest.raises(ConfigError, match=r"\[jobs\] quota_soft_limit: must not exceed quota_hard_limit"):
            load_settings(environ={"WMPROXY_JOBS_QUOTA_SOFT_LIMIT": "2000", "WMPROXY_JOBS_QUOTA_HARD_LIMIT": "1000"})

    def test_a_lifetime_at_a_raised_threshold_is_refused(self) -> None:
        with pytest.raises(ConfigError, match=r"\[renewal\] lifetime: must be more than threshold \(36000 s\)"):
            load_settings(environ={"WMPROXY_RENEWAL_THRESHOLD": "36000"})

    @pytest.mark.parametrize("env", [
        {"WMPROXY_RENEWAL_THRESHOLD": "0", "WMPROXY_RENEWAL_LIFETIME": "1", "WMPROXY_RENEWAL_CYCLE": "0.5",
         "WMPROXY_RENEWAL_TIMEOUT": "0.5"},
        {"WMPROXY_RENEWAL_THRESHOLD": "30", "WMPROXY_RENEWAL_LIFETIME": "100"},  # the integration tests'
        {"WMPROXY_SECURITY_DELEGATION_KEY_BITS": "2048", "WMPROXY_SECURITY_DELEGATION_KEY_POOL": "0",
         "WMPROXY_SECURITY_MIN_PROXY_LIFETIME": "0"},
        {"WMPROXY_SECURITY_DELEGATION_KEY_BITS": "16384"},
        {"WMPROXY_JOBS_MAX_NODES": "1", "WMPROXY_JOBS_MAX_PERUSAL_FILES": "0", "WMPROXY_JOBS_MIN_PERUSAL_INTERVAL": "0",
         "WMPROXY_SERVICE_MAX_INPUT_SANDBOX_SIZE": "0"},
        {"WMPROXY_JOBS_QUOTA_SOFT_LIMIT": "1000", "WMPROXY_JOBS_QUOTA_HARD_LIMIT": "1000"},
        {"WMPROXY_JOBS_QUOTA_SOFT_LIMIT": "0", "WMPROXY_JOBS_QUOTA_HARD_LIMIT": "1000"},
        {"WMPROXY_SERVICE_BIND": "[::]:7443", "WMPROXY_METRICS_BIND": "localhost"},
        {"WMPROXY_SERVICE_BIND": "wms.example.org:443", "WMPROXY_METRICS_BIND": "127.0.0.1:9000"},
        {"WMPROXY_METRICS_CRL_GRACE": "0", "WMPROXY_METRICS_SANDBOX_SCAN_INTERVAL": "0"},
        {"WMPROXY_LIMITS_MAX_ACL_ITEMS": "1", "WMPROXY_LIMITS_MAX_ACL_ITEM_LENGTH": "512"},
        {"WMPROXY_PURGE_FINAL_AGE": "1", "WMPROXY_PURGE_REGISTERED_AGE": "1", "WMPROXY_PURGE_FORCED_AGE": "1",
         "WMPROXY_PURGE_TOMBSTONE_AGE": "0", "WMPROXY_PURGE_DELEGATION_GRACE": "0"},
    ])
    def test_values_at_the_edges_of_their_ranges_load(self, env: dict[str, str]) -> None:
        load_settings(environ=env)

    def test_the_binds_are_parsed_as_their_listeners_take_them(self) -> None:
        assert parse_bind("[::]:7443") == ("::", 7443)
        assert parse_bind(" 127.0.0.1:7443 ") == ("127.0.0.1", 7443)
        assert load_settings(environ={"WMPROXY_METRICS_BIND": "localhost"}).metrics.bind == "localhost"

    def test_the_shipped_defaults_load(self) -> None:
        settings = load_settings(environ={})
        assert settings == Settings()
        assert (settings.renewal.cycle, settings.renewal.threshold, settings.renewal.lifetime) == (300, 2100, 36000)
        assert settings.security.delegation_key_bits == 2048

    def test_the_smallest_delegation_key_is_one_the_cli_signs(self) -> None:
        from wmproxy.security.proxy import MIN_REQUEST_RSA_BITS

        smallest = load_settings(environ={"WMPROXY_SECURITY_DELEGATION_KEY_BITS": str(MIN_REQUEST_RSA_BITS)})
        assert smallest.security.delegation_key_bits == MIN_REQUEST_RSA_BITS
        with pytest.raises(ConfigError, match=r"\[security\] delegation_key_bits"):
            load_settings(environ={"WMPROXY_SECURITY_DELEGATION_KEY_BITS": str(MIN_REQUEST_RSA_BITS - 1)})


def _server_ini_blocks() -> list[tuple[str, str]]:
    """``(where, text)`` of every ```ini block of the docs whose sections are all settings
    sections (not the client's ``[client]``, not systemd units)."""
    blocks = []
    for doc in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]:
        for number, match in enumerate(re.finditer(r"^ *```ini\n(.*?)^ *```", doc.read_text(), re.S | re.M)):
            sections = re.findall(r"^\s*\[([^\]]+)\]", match.group(1), re.M)
            if sections and set(sections) <= set(areas()):
                blocks.append((f"{doc.name}#{number}", textwrap.dedent(match.group(1))))
    return blocks


DOCS_INI = _server_ini_blocks()


@pytest.mark.parametrize(("where", "text"), DOCS_INI, ids=[where for where, _ in DOCS_INI])
def test_the_docs_configuration_examples_load(tmp_path: Path, where: str, text: str) -> None:
    settings = load_settings(write(tmp_path, text), environ={})
    for section, cls in areas().items():  # every value as written, no comment taken into a value
        for key in keys(cls):
            assert "#" not in str(getattr(getattr(settings, section), key)), (where, section, key)


def test_the_docs_have_configuration_examples() -> None:
    assert {where.split("#")[0] for where, _ in DOCS_INI} >= {"monitoring.md", "brokering.md",
                                                                          "slurm.md", "mapping.md"}


class TestExample:
    def test_the_example_configuration_loads(self) -> None:
        settings = load_settings(EXAMPLE, environ={})
        assert settings.database.url.startswith("sqlite:////var/lib/wmproxy/")

    def test_the_example_names_no_policy_file_that_nothing_creates(self) -> None:
        """A policy file named but missing refuses every caller: the example names none."""
        assert load_settings(EXAMPLE, environ={}).security.policy_file == ""

    def test_the_example_names_no_mapping_file_or_catalogue_that_nothing_creates(self) -> None:
        """It named /etc/wmproxy/voms-mapfile, ban-mapfile and ce-catalogue.ads, which an install
        does not make: every submission was refused, then every started job stayed Waiting."""
        settings = load_settings(EXAMPLE, environ={})
        assert (settings.mapping.voms_rules_file, settings.mapping.ban_file, settings.jobs.ce_catalogue) == ("", "", "")

    def test_the_example_sends_no_renewal_to_a_made_up_server(self) -> None:
        renewal = load_settings(EXAMPLE, environ={}).renewal
        servers = [renewal.myproxy_server, *renewal.myproxy_servers_by_vo.values()]
        assert not [server for server in servers if "example" in server]


def test_every_setting_has_an_environment_name() -> None:
    names = [env_name(section, key) for section, cls in areas().items() for key in keys(cls)]
    assert len(names) == len(set(names))
    assert set(areas()) == {f.name for f in Settings.__dataclass_fields__.values()} - {"config_file"}
