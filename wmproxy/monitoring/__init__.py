"""Operations visibility: the per-operation access log, Prometheus metrics and health checks.

``access`` writes one ``wmproxy.access`` log line per SOAP operation and sandbox request and
counts it; ``metrics`` holds the request metrics (prometheus_client multiprocess mode, one
file per gunicorn worker) and the scrape-time collector of the database gauges; ``health``
the readiness checks; ``server`` the plain-HTTP ``wmproxy-metrics`` listener
(``/metrics``, ``/healthz``, ``/readyz``). Format and names: ``docs/monitoring.md``.
"""
