"""The TLS context of the packaged gunicorn configuration (``wmproxy.gunicorn_conf.ssl_context``):
built by the start checks (in gunicorn's master, before it listens: a host key it cannot
load stops the start, status 3), rebuilt once it is ``_CONTEXT_TTL`` seconds old; a rebuild that fails
(host certificate and key briefly mismatched while they are renewed) is logged once per error and
the previous context kept.

The module is loaded afresh for each test, as gunicorn loads it (its settings from
``WMPROXY_CONFIG``), on host credentials of the test's own; the lapse of time is made by moving
the cache's times back, never by waiting."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import ssl
import threading
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import Pki
from wmproxy.services.startup import EXIT_REFUSED

CONF = "wmproxy.gunicorn_conf"


@pytest.fixture
def host(tmp_path: Path, pki: Pki, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A service under ``tmp_path`` (``WMPROXY_CONFIG``) whose host certificate and key are
    files of its own, issued by the test CA; returns their paths."""
    from wmproxy.admin import initialise
    from wmproxy.config import load_settings

    cert, key = pki.ca.issue_host("localhost", tmp_path / "host")
    (tmp_path / "db").mkdir()
    shutil.copyfile(template_db, tmp_path / "db" / "wmproxy.db")
    conf = tmp_path / "wmproxy.conf"
    conf.write_text(f"[database]\nurl = sqlite:///{tmp_path}/db/wmproxy.db\n"
                    f"[security]\nca_dir = {pki.ca_dir}\nhost_cert = {cert}\nhost_key = {key}\n"
                    f"store_key_file = {tmp_path}/keys/store.key\n"
                    f"[sandbox]\nroot = {tmp_path}/sandbox\n[execution]\nwork_dir = {tmp_path}/work\n"
                    "[mapping]\nmode = gridmap\n")
    for name in [name for name in os.environ if name.startswith("WMPROXY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WMPROXY_CONFIG", str(conf))
    initialise(load_settings())
    return cert, key


def load_conf() -> ModuleType:
    """The gunicorn configuration module as a gunicorn process loads it: its own cache."""
    spec = importlib.util.find_spec(CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def other_key(pki: Pki, directory: Path) -> bytes:
    """The key of another host credential of the test CA: it does not match the host certificate."""
    _cert, key = pki.ca.issue_host("localhost", directory)
    return key.read_bytes()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CONF and r.levelno >= logging.ERROR]


def started_conf() -> ModuleType:
    """The configuration module after the master's start checks (its ``on_starting`` hook)."""
    conf = load_conf()
    conf.start_checks()
    return conf


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """The line of a start that is refused (status 3, the units do not restart it)."""
    with pytest.raises(SystemExit) as stopped:
        started_conf()
    assert stopped.value.code == EXIT_REFUSED
    (line,) = capsys.readouterr().err.splitlines()
    return line


def test_host_credentials_that_cannot_be_loaded_stop_the_start_naming_the_file(
        host: tuple[Path, Path], pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The master's start checks run before it listens: a context it cannot build ends the
    process with the file named and the refused status (before, gunicorn listened and closed
    every connection; then the process exited 1, which systemd restarts in a loop)."""
    cert, key = host
    good = key.read_bytes()
    key.write_bytes(other_key(pki, tmp_path / "other"))
    assert refusal(capsys).startswith(
        f"wmproxy: refusing to start: the host key {key} does not match the host certificate {cert}")
    key.unlink()
    assert refusal(capsys).startswith(f"wmproxy: refusing to start: cannot read the host key {key}: No such file or "
                                      "directory")
    key.write_bytes(b"not a key\n")
    key.chmod(0o600)  # made again with the umask's mode: a key others may read is refused first
    assert f"the host certificate {cert} and key {key} cannot be loaded" in refusal(capsys)
    key.write_bytes(good)
    monkeypatch.setenv("WMPROXY_SECURITY_CA_DIR", str(tmp_path / "no-ca-dir"))
    assert f"cannot read the CA directory {tmp_path / 'no-ca-dir'}" in refusal(capsys)
    monkeypatch.delenv("WMPROXY_SECURITY_CA_DIR")
    conf = started_conf()
    assert isinstance(conf._cache["context"], ssl.SSLContext)
    assert conf.ssl_context(None, None) is conf._cache["context"]  # the workers inherit the master's
    assert conf.control_socket_disable is True  # no $HOME/.gunicorn/gunicorn.ctl shared by the user's services


def test_a_failed_rebuild_keeps_the_previous_context_and_is_logged_once_per_error(
        host: tuple[Path, Path], pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert, key = host
    good, mismatched = key.read_bytes(), other_key(pki, tmp_path / "other")
    conf = started_conf()
    first = conf.ssl_context(None, None)
    assert isinstance(first, ssl.SSLContext)
    assert conf.ssl_context(None, None) is first  # reused within the TTL
    caplog.set_level(logging.INFO)

    def retry() -> ssl.SSLContext:
        """The next connection after the TTL and the retry delay have passed."""
        conf._cache["built"] -= conf._CONTEXT_TTL + 1
        if conf._cache["failed"] is not None:
            conf._cache["failed"] -= conf._REBUILD_RETRY
        return conf.ssl_context(None, None)

    key.write_bytes(mismatched)  # a renewal has written the new key, not yet the new cert
    assert retry() is first
    (line,) = errors(caplog)
    assert f"the host key {key} does not match the host certificate {cert}" in line, line
    assert "PRIVATE KEY" not in line and "\n" not in line
    for _ in range(3):  # tried again, the same error: not logged again (before: every 5 s per worker)
        assert retry() is first
    assert len(errors(caplog)) == 1
    key.unlink()  # another error: logged
    assert retry() is first
    assert len(errors(caplog)) == 2 and f"cannot read the host key {key}" in errors(caplog)[1]

    key.write_bytes(good)  # the renewal is complete
    rebuilt = retry()
    assert isinstance(rebuilt, ssl.SSLContext) and rebuilt is not first
    assert conf.ssl_context(None, None) is rebuilt and len(errors(caplog)) == 2
    assert any("TLS context rebuilt" in r.getMessage() for r in caplog.records if r.name == CONF)
    key.write_bytes(mismatched)  # the same error as before, after a success: logged again
    assert retry() is rebuilt and len(errors(caplog)) == 3


def test_a_delayed_memory_release_follows_big_posts_only_one_at_a_time(host: tuple[Path, Path]) -> None:
    """After a POST of a MiB or more, one release of memory is scheduled (and no second while it
    is); a sandbox upload (PUT) of any size schedules none: it builds nothing to release."""
    conf = load_conf()
    big = str(conf.BIG_REQUEST_BYTES)
    conf._RELEASE_DELAY = 3600.0  # scheduled, not run, while the test looks
    conf.post_request(None, None, {"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": big}, None)
    assert not conf._release_scheduled.locked()
    conf.post_request(None, None, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(int(big) - 1)}, None)
    assert not conf._release_scheduled.locked()
    before = threading.active_count()
    conf.post_request(None, None, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": big}, None)
    conf.post_request(None, None, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": big}, None)
    assert conf._release_scheduled.locked()
    assert threading.active_count() == before + 1
    conf._delayed_release()  # what the scheduled timer runs; frees the slot
    assert not conf._release_scheduled.locked()
    for timer in threading.enumerate():
        if isinstance(timer, threading.Timer) and timer.function is conf._delayed_release:
            timer.cancel()
