"""gunicorn's logger for the service: its access line (``gunicorn.access``) only when one is
asked for (``wmproxy-server --access-logfile -``).

Every request the application answers writes its own ``wmproxy.access`` line
(:mod:`wmproxy.monitoring.access`), which names the caller. gunicorn writes its access line
whenever a ``logconfig_dict`` is set (:mod:`wmproxy.gunicorn_conf` sets one for the format of
the application's loggers), whatever ``accesslog`` says: this logger writes it, and builds it,
only with ``accesslog`` set.
"""

from __future__ import annotations

from typing import Any

from gunicorn import glogging  # type: ignore[import-untyped]


class Logger(glogging.Logger):  # type: ignore[misc]
    """``glogging.Logger`` with the access line on ``accesslog`` alone."""

    @property
    def access_log_enabled(self) -> bool:
        """Whether gunicorn writes (and builds) its access line: ``accesslog`` is set."""
        return self.cfg.accesslog is not None

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """gunicorn's access line, with ``accesslog`` set only."""
        if self.cfg.accesslog is not None:
            super().access(resp, req, environ, request_time)
