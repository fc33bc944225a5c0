"""Configuration loading: strict sections and keys, literal values, validation at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from wmproxy.config import ConfigError, Settings, areas, env_name, keys, load_settings

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
        loaded = load_settings(conf, environ={}).database.url
        assert loaded == url
        assert make_url(loaded).password == "p@ss%w"  # noqa: S105 -- a test URL, the decoded form

    def test_the_environment_overrides_the_file(self, tmp_path: Path) -> None:
        conf = write(tmp_path, "[execution]\nmax_running = 3\n")
        settings = load_settings(conf, environ={"WMPROXY_EXECUTION_MAX_RUNNING": "7"})
        assert settings.execution.max_running == 7

    @pytest.mark.parametrize(("section", "key", "value", "message"), [
        ("execution", "max_running", "many", r"\[execution\] max_running: cannot convert 'many'"),
        ("execution", "poll_interval", "nan", r"\[execution\] poll_interval: cannot convert"),
        ("execution", "poll_interval", "0", r"\[execution\] heartbeat_lease and poll_interval"),
        ("service", "port", "70000", r"\[service\] port: a TCP port"),
        ("service", "workers", "0", r"\[service\] workers and threads"),
        ("service", "default_protocol", "gsiftp", r"only https"),
        ("service", "graceful_timeout", "0", r"\[service\] graceful_timeout: 1-3600 seconds"),
        ("service", "graceful_timeout", "3601", r"\[service\] graceful_timeout: 1-3600 seconds"),
        ("renewal", "myproxy_server", "not a host!", r"\[renewal\] myproxy_server"),
        ("renewal", "myproxy_allowed_servers", "a.org, *:7512", r"\[renewal\] myproxy_allowed_servers"),
        ("mapping", "mode", "lcmaps", r"\[mapping\] mode"),
        ("slurm", "max_array", "0", r"\[slurm\] max_array: must be at least 1"),
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

    def test_a_bad_environment_value_names_the_variable(self) -> None:
        with pytest.raises(ConfigError, match="WMPROXY_SERVICE_THREADS: cannot convert"):
            load_settings(environ={"WMPROXY_SERVICE_THREADS": "four"})


class TestExample:
    def test_the_example_configuration_loads(self) -> None:
        settings = load_settings(EXAMPLE, environ={})
        assert settings.database.url.startswith("sqlite:////var/lib/wmproxy/")

    def test_the_example_sends_no_renewal_to_a_made_up_server(self) -> None:
        renewal = load_settings(EXAMPLE, environ={}).renewal
        servers = [renewal.myproxy_server, *renewal.myproxy_servers_by_vo.values()]
        assert not [server for server in servers if "example" in server]


def test_every_setting_has_an_environment_name() -> None:
    names = [env_name(section, key) for section, cls in areas().items() for key in keys(cls)]
    assert len(names) == len(set(names))
    assert set(areas()) == {f.name for f in Settings.__dataclass_fields__.values()}
