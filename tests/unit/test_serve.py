"""wmproxy-server: gunicorn with the packaged configuration; ``-c`` names the wmproxy
configuration; a bad configuration stops it with one line naming the culprit, before it
listens, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.serve import APPLICATION, GUNICORN_CONFIG, ServerArguments, gunicorn_argv, gunicorn_flags

BIN = Path(sys.executable).parent


def test_gunicorn_gets_the_packaged_configuration_and_the_application() -> None:
    assert gunicorn_argv("/venv/bin/wmproxy-server", ["--log-level", "debug"]) == [
        "/venv/bin/wmproxy-server", "-c", "python:wmproxy.gunicorn_conf", "--log-level", "debug",
        "wmproxy.soap.app:application"]
    assert (GUNICORN_CONFIG, APPLICATION) == ("python:wmproxy.gunicorn_conf", "wmproxy.soap.app:application")


@pytest.mark.parametrize("how", ["variable", "-c", "--config", "--config="])
def test_a_misspelt_section_stops_the_server_with_one_line(tmp_path: Path, how: str) -> None:
    """The file of ``WMPROXY_CONFIG`` or of ``-c``/``--config`` is wmproxy's INI (gunicorn ran a
    ``-c`` file as Python: a SyntaxError); exit status 2, a configuration error."""
    conf = tmp_path / "wmproxy.conf"
    conf.write_text("[databse]\nurl = sqlite:///x.db\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    args = {"variable": [], "-c": ["-c", "wmproxy.conf"], "--config": ["--config", str(conf)],
            "--config=": [f"--config={conf}"]}[how]
    if how == "variable":
        env["WMPROXY_CONFIG"] = str(conf)
    done = subprocess.run([str(BIN / "wmproxy-server"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "refusing to start" in line]
    assert lines == [f"wmproxy: refusing to start: {conf}: unknown section(s) [databse]; "
                     "known: " + lines[0].split("known: ", 1)[-1]], done.stderr
    assert "Traceback" not in done.stderr and "SyntaxError" not in done.stderr


def test_help_is_wmproxys_and_starts_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    done = subprocess.run([str(BIN / "wmproxy-server"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("Usage: wmproxy-server [-c FILE]")
    assert "-c, --config FILE" in done.stdout and "wmproxy.gunicorn_conf" in done.stdout
    assert "--worker-class" not in done.stdout  # gunicorn's own help, with defaults that do not apply


class TestServerArguments:
    def test_c_is_the_wmproxy_configuration_and_the_rest_goes_to_gunicorn(self) -> None:
        parsed = ServerArguments(["-c", "/etc/wmproxy/wmproxy.conf", "--log-level", "debug", "--preload",
                                  "--bind=127.0.0.1:8443"], gunicorn_flags())
        assert parsed.config == "/etc/wmproxy/wmproxy.conf" and parsed.error is None and not parsed.help
        assert gunicorn_argv("wmproxy-server", parsed.gunicorn) == [
            "wmproxy-server", "-c", "python:wmproxy.gunicorn_conf", "--log-level", "debug", "--preload",
            "--bind=127.0.0.1:8443", "wmproxy.soap.app:application"]

    @pytest.mark.parametrize("args", [["--config=/x.conf"], ["-c/x.conf"], ["--config", "/x.conf"]])
    def test_every_spelling_of_the_config_option(self, args: list[str]) -> None:
        parsed = ServerArguments(args, gunicorn_flags())
        assert (parsed.config, parsed.gunicorn, parsed.error) == ("/x.conf", [], None)

    def test_a_short_option_with_its_value_attached_takes_nothing_more(self) -> None:
        parsed = ServerArguments(["-w4", "-c", "/x.conf"], gunicorn_flags())
        assert (parsed.config, parsed.gunicorn) == ("/x.conf", ["-w4"])

    def test_an_option_value_that_looks_like_c_is_gunicorns(self) -> None:
        parsed = ServerArguments(["--name", "-c"], gunicorn_flags())
        assert (parsed.config, parsed.gunicorn) == (None, ["--name", "-c"])

    @pytest.mark.parametrize("args", [["-c"], ["app:application"], ["--", "x"]])
    def test_a_missing_file_or_an_application_is_a_usage_error(self, args: list[str]) -> None:
        assert ServerArguments(args, gunicorn_flags()).error


def test_the_graceful_timeout_setting_reaches_gunicorn(tmp_path: Path, pki: Pki) -> None:
    """``[service] graceful_timeout`` (here from the environment) is gunicorn's ``graceful_timeout``;
    the packaged configuration module read in a process of its own, as gunicorn reads it."""
    from wmproxy.admin import initialise
    from wmproxy.config import load_settings

    conf = tmp_path / "wmproxy.conf"
    conf.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db/wmproxy.db\n[security]\n"
                    f"store_key_file = {tmp_path}/keys/store.key\nca_dir = {pki.ca_dir}\nhost_cert = {pki.host_cert}\n"
                    f"host_key = {pki.host_key}\n[sandbox]\nroot = {tmp_path}/sandbox\n"
                    f"[execution]\nwork_dir = {tmp_path}/work\n")
    initialise(load_settings(conf, environ={}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env.update(WMPROXY_CONFIG=str(conf), WMPROXY_SERVICE_GRACEFUL_TIMEOUT="7")
    done = subprocess.run([sys.executable, "-c", "import wmproxy.gunicorn_conf as c; print(c.graceful_timeout)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.split()[-1:]) == (0, ["7"]), done.stderr
