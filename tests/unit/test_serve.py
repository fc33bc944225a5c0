"""wmproxy-server: gunicorn with the packaged configuration; a bad configuration stops it with
one line naming the culprit, before it listens, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Pki
from wmproxy.serve import APPLICATION, GUNICORN_CONFIG, gunicorn_argv

BIN = Path(sys.executable).parent


def test_gunicorn_gets_the_packaged_configuration_and_the_application() -> None:
    assert gunicorn_argv("/venv/bin/wmproxy-server", ["--log-level", "debug"]) == [
        "/venv/bin/wmproxy-server", "-c", "python:wmproxy.gunicorn_conf", "--log-level", "debug",
        "wmproxy.soap.app:application"]
    assert (GUNICORN_CONFIG, APPLICATION) == ("python:wmproxy.gunicorn_conf", "wmproxy.soap.app:application")


def test_a_misspelt_section_stops_the_server_with_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "wmproxy.conf"
    conf.write_text("[databse]\nurl = sqlite:///x.db\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}
    env["WMPROXY_CONFIG"] = str(conf)
    done = subprocess.run([str(BIN / "wmproxy-server")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert f"wmproxy: refusing to start: {conf}: unknown section(s) [databse]" in done.stderr
    assert "Traceback" not in done.stderr


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
