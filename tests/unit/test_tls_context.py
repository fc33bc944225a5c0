"""The TLS context of the packaged gunicorn configuration (``wmproxy.gunicorn_conf.ssl_context``):
rebuilt once it is ``_CONTEXT_TTL`` seconds old; a rebuild that fails (host certificate and key
briefly mismatched while they are renewed) is logged and the previous context kept.

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


def test_a_failed_rebuild_keeps_the_previous_context_until_a_rebuild_succeeds(
        host: tuple[Path, Path], pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert, key = host
    good, mismatched = key.read_bytes(), other_key(pki, tmp_path / "other")
    conf = load_conf()
    conf._REBUILD_RETRY = 3600  # no retry within this test unless the failure's time is moved back
    caplog.set_level(logging.INFO)
    key.write_bytes(mismatched)  # no context yet: the error is raised (the connection closed), as before
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        conf.ssl_context(None, None)
    key.write_bytes(good)
    first = conf.ssl_context(None, None)
    assert isinstance(first, ssl.SSLContext)
    assert conf.ssl_context(None, None) is first  # reused within the TTL

    key.write_bytes(mismatched)  # a renewal has written the new key, not yet the new cert
    conf._cache["built"] -= conf._CONTEXT_TTL + 1
    assert conf.ssl_context(None, None) is first
    (line,) = errors(caplog)
    assert f"host_cert {cert}" in line and f"host_key {key}" in line and "KEY_VALUES_MISMATCH" in line, line
    assert "PRIVATE KEY" not in line and "\n" not in line
    assert conf.ssl_context(None, None) is first and len(errors(caplog)) == 1  # not tried again at once

    key.write_bytes(good)  # the renewal is complete
    conf._cache["failed"] -= conf._REBUILD_RETRY
    rebuilt = conf.ssl_context(None, None)
    assert isinstance(rebuilt, ssl.SSLContext) and rebuilt is not first
    assert conf.ssl_context(None, None) is rebuilt and len(errors(caplog)) == 1


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
