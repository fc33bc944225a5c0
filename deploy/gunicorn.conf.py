"""gunicorn configuration of the wmproxy service, for runs from the source tree:
``gunicorn -c deploy/gunicorn.conf.py wmproxy.soap.app:application``.

The configuration itself ships in the package (:mod:`wmproxy.gunicorn_conf`); an installed
service runs ``wmproxy-server`` (deploy/wmproxy.service), which uses it directly.
"""

from wmproxy.gunicorn_conf import *  # noqa: F403 -- gunicorn reads this module's settings and hooks
