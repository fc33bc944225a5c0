"""The inspection rules that need no running job (services/inspection.py): the site's
``[inspection]`` mode and allow-list, command limits, the settings' validation, and the
per-job agent secret."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from wmproxy.config import ConfigError, InspectionSettings, SecuritySettings, Settings
from wmproxy.errors import InvalidArgumentError, OperationNotAllowedError
from wmproxy.services.inspection import (
    ENV_CA_DIR,
    ENV_DELAY,
    ENV_TOKEN,
    ENV_URL,
    agent_environment,
    agent_token,
    check_command,
)


def settings(tmp_path: Path, **inspection: object) -> Settings:
    key = tmp_path / "store.key"
    if not key.exists():
        key.write_bytes(b"k" * 44)
    return dataclasses.replace(
        Settings(), inspection=InspectionSettings(**inspection),  # type: ignore[arg-type]
        security=SecuritySettings(store_key_file=str(key), ca_dir="/grid/certificates"),
    )


class TestCheckCommand:
    def test_an_allowed_program_passes_with_its_arguments(self, tmp_path: Path) -> None:
        assert check_command(settings(tmp_path), ["ps", "-o", "pid,etime"]) == ["ps", "-o", "pid,etime"]

    def test_a_program_off_the_allow_list_is_refused_naming_the_list(self, tmp_path: Path) -> None:
        with pytest.raises(OperationNotAllowedError, match=r"'rm' is not allowed .*allowed: cat, ls"):
            check_command(settings(tmp_path, allowed_commands="ls, cat"), ["rm", "-rf", "."])

    def test_a_path_is_not_the_allowed_name(self, tmp_path: Path) -> None:
        with pytest.raises(OperationNotAllowedError):
            check_command(settings(tmp_path), ["/usr/bin/ps"])

    def test_mode_any_allows_every_program(self, tmp_path: Path) -> None:
        assert check_command(settings(tmp_path, mode="any"), ["/usr/bin/env"]) == ["/usr/bin/env"]

    def test_mode_off_refuses_everything(self, tmp_path: Path) -> None:
        with pytest.raises(OperationNotAllowedError, match="disabled"):
            check_command(settings(tmp_path, mode="off"), ["ls"])

    @pytest.mark.parametrize("argv", [[], [""], ["ls", "a\0b"], ["ls"] * 300, ["ls", "x" * 5000]])
    def test_empty_nul_or_oversized_commands_are_invalid(self, tmp_path: Path, argv: list[str]) -> None:
        with pytest.raises(InvalidArgumentError):
            check_command(settings(tmp_path, mode="any"), argv)


class TestSettings:
    @pytest.mark.parametrize("kwargs", [{"mode": "some"}, {"time_limit": 0}, {"output_cap": -1},
                                        {"pickup_timeout": 0}, {"allowed_commands": "ls,/bin/rm"},
                                        {"agent_delay": -1}, {"agent_delay": float("nan")}])
    def test_bad_values_are_refused_at_start(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ConfigError, match=r"\[inspection\]"):
            InspectionSettings(**kwargs)  # type: ignore[arg-type]


class TestAgentSecret:
    def test_one_secret_per_job_the_same_in_every_process(self, tmp_path: Path) -> None:
        conf = settings(tmp_path)
        script = ("import dataclasses, sys; from wmproxy.config import SecuritySettings, Settings; "
                  "from wmproxy.services.inspection import agent_token; "
                  "conf = dataclasses.replace(Settings(), security=SecuritySettings(store_key_file=sys.argv[1])); "
                  "print(agent_token(conf, sys.argv[2], attempt=0))")
        argv = [sys.executable, "-c", script, str(tmp_path / "store.key"), "https://h:9000/a"]
        other = subprocess.run(argv, check=True, capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parents[3]).stdout.strip()
        assert agent_token(conf, "https://h:9000/a", attempt=0) == other  # another process derives it alike
        assert agent_token(conf, "https://h:9000/a", attempt=0) != agent_token(conf, "https://h:9000/b", attempt=0)
        assert len(agent_token(conf, "https://h:9000/a", attempt=0)) == 64

    def test_another_store_key_gives_other_secrets(self, tmp_path: Path) -> None:
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "store.key").write_bytes(b"z" * 44)
        mine, other = settings(tmp_path), settings(tmp_path / "other")
        assert agent_token(mine, "j", attempt=0) != agent_token(other, "j", attempt=0)

    def test_the_agent_environment_names_the_service_its_ca_dir_and_the_delay(self, tmp_path: Path) -> None:
        conf = dataclasses.replace(settings(tmp_path, agent_delay=1.5), service=dataclasses.replace(Settings().service,
                                                                                  host="wms.example.org", port=7443))
        env = agent_environment(conf, "j", attempt=0)
        assert env == {ENV_URL: "https://wms.example.org:7443/wmproxy-inspection/agent",
                       ENV_TOKEN: agent_token(conf, "j", attempt=0), ENV_CA_DIR: "/grid/certificates", ENV_DELAY: "1.5"}
        assert agent_environment(settings(tmp_path), "j", attempt=0)[ENV_DELAY] == "2.0"  # the default

    def test_no_agent_when_inspection_is_off(self, tmp_path: Path) -> None:
        assert agent_environment(settings(tmp_path, mode="off"), "j", attempt=0) == {}
