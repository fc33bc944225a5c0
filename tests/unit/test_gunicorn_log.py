"""gunicorn's access line (``gunicorn.access``): off unless ``accesslog`` is set, although the
packaged configuration sets a ``logconfig_dict`` (with which gunicorn writes it whatever
``accesslog`` says): every request the application answers has its ``wmproxy.access`` line."""

from __future__ import annotations

from typing import Any

import pytest
from gunicorn import glogging  # type: ignore[import-untyped]
from gunicorn.config import Config  # type: ignore[import-untyped]

from wmproxy.monitoring.gunicorn_log import Logger


def _logger(accesslog: str | None) -> Logger:
    """The logger of a configuration with a ``logconfig_dict`` and ``accesslog`` (not set up:
    no global logging configuration changed)."""
    cfg = Config()
    cfg.set("logconfig_dict", {"version": 1, "disable_existing_loggers": False})
    cfg.set("accesslog", accesslog)
    logger = Logger.__new__(Logger)
    logger.cfg = cfg
    return logger


@pytest.mark.parametrize(("accesslog", "written"), [(None, False), ("-", True), ("/var/log/access.log", True)])
def test_the_access_line_is_written_with_accesslog_only(accesslog: str | None, written: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(glogging.Logger, "access", lambda self, *args: calls.append(args))
    logger = _logger(accesslog)
    assert logger.access_log_enabled is written
    logger.access("resp", "req", {}, 0.1)
    assert len(calls) == written

