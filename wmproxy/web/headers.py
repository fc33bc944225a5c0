"""Response headers the service's two browser-facing edges share: the monitor's pages
(:mod:`wmproxy.web.app`) and the sandbox's HTTPS answers (:mod:`wmproxy.sandbox.http`), which
are on the same origin."""

from __future__ import annotations

#: What a browser may not do with any response of the service's origin: take it for another
#: type than the one sent (a job's output loaded cross-site as a script), frame it, load it
#: into another origin's page (an ``<img>`` of a DAG picture told that page whether its
#: visitor may read the job), or send its address as a referrer (job ids are in URLs).
BROWSER_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
