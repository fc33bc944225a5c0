"""The web job monitor: read-only HTML pages under ``/monitor/`` of the service, behind the same
TLS client-certificate authentication as the SOAP endpoint (``wmproxy.soap.app`` routes to
:class:`wmproxy.web.app.MonitorApp`). What a page may show is decided in
:mod:`wmproxy.services.monitor`; here are only the WSGI edge, the templates (Jinja2,
autoescaped) and the DAG picture (server-rendered SVG, no JavaScript).
"""
