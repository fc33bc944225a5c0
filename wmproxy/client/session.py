"""The one HTTPS session a client uses for SOAP calls and sandbox transfers."""

from __future__ import annotations

import requests


def grid_session(proxy_file: str, ca_dir: str) -> requests.Session:
    """A requests Session authenticating with a grid proxy and trusting a grid CA directory.

    Args:
        proxy_file: PEM file with the proxy certificate, its key and the issuer chain
            (``X509_USER_PROXY``); urllib3 sends the extra certificates as the chain.
        ca_dir: hashed CA directory (``/etc/grid-security/certificates``).

    ``trust_env`` is off: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would otherwise
    override ``verify`` and proxy variables would reroute the service traffic
    (``peers.md`` §2.5).
    """
    session = requests.Session()
    session.cert = proxy_file
    session.verify = ca_dir
    session.trust_env = False
    return session
