"""The one HTTPS session a client uses for SOAP calls and sandbox transfers, and the zeep
transport over it (:func:`soap_transport`)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from wmproxy.client.connection import MAX_REPLY, call_deadline, tls_context
from wmproxy.client.faults import WMProxyClientError, redirect_error, reply_too_large

_CHUNK = 64 * 1024


class _GridAdapter(HTTPAdapter):
    """HTTPS with :func:`~wmproxy.client.connection.tls_context` (CRLs checked, no CN fallback,
    the proxy as credential, calls bounded by their deadline), made on the first request: a proxy
    file that cannot be read fails that request, not the session's creation."""

    def __init__(self, proxy_file: str, ca_dir: str) -> None:
        self._proxy_file, self._ca_dir = proxy_file, ca_dir
        self._context: ssl.SSLContext | None = None
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if self._context is None:
            try:
                self._context = tls_context(self._proxy_file, self._ca_dir)
            except (ssl.SSLError, OSError) as exc:
                raise WMProxyClientError(
                    "ProxyError", f"cannot use {self._proxy_file} or {self._ca_dir} for TLS: {exc}") from None
        pool_kwargs["ssl_context"] = self._context
        return host_params, pool_kwargs


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: a redirect is an error naming where it pointed (requests would follow it,
    from https:// to plain http:// too, re-sending a putProxy or an upload there)."""
    if response.is_redirect:
        where = urlsplit(response.url).netloc or "the service"
        response.close()
        raise redirect_error(where, response.status_code, response.headers.get("Location", ""))
    return response


def grid_session(proxy_file: str, ca_dir: str) -> requests.Session:
    """A requests Session authenticating with a grid proxy and trusting a grid CA directory.

    Args:
        proxy_file: PEM file with the proxy certificate, its key and the issuer chain
            (``X509_USER_PROXY``); the extra certificates are sent as the chain.
        ca_dir: hashed CA directory (``/etc/grid-security/certificates``) with the CAs' CRLs.

    TLS as :func:`~wmproxy.client.connection.tls_context` sets it. ``trust_env`` is off:
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would otherwise override ``verify`` and proxy
    variables would reroute the service traffic (``peers.md`` §2.5). Redirects are never
    followed: a :class:`~wmproxy.client.WMProxyClientError` (``ConnectionError``) names them.
    """
    session = requests.Session()
    session.mount("https://", _GridAdapter(proxy_file, ca_dir))
    session.verify = ca_dir
    session.trust_env = False
    session.max_redirects = 0
    session.hooks["response"].append(_refuse_redirect)
    return session


def reply_content(response: requests.Response) -> bytes:
    """The body of a ``stream=True`` response, at most :data:`~wmproxy.client.connection.MAX_REPLY`
    bytes once decoded (a gzip body included); it becomes ``response.content`` too. A response
    made without a connection (``raw`` None: tests) gives its content as it is.

    Raises:
        WMProxyClientError: ``InvalidResponse`` for a larger reply (the connection is closed).
        requests.RequestException: the body broke off or did not come in time (``ReadTimeout``).
    """
    if response.raw is None:
        return bytes(response.content)
    where = urlsplit(response.url).netloc or "the service"
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_REPLY:
        response.close()
        raise reply_too_large(where)
    data = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            data += chunk
            if len(data) > MAX_REPLY:
                response.close()
                raise reply_too_large(where)
    except requests.ConnectionError as exc:
        if exc.args and isinstance(exc.args[0], ReadTimeoutError):  # how requests words a body's timeout
            raise requests.ReadTimeout(exc.args[0], request=response.request) from None
        raise
    content = bytes(data)
    response._content = content
    response._content_consumed = True
    return content


def bounded_post(session: requests.Session, url: str, data: bytes, headers: dict[str, str],
                 timeout: float | None) -> requests.Response:
    """POST through ``session``, the whole exchange within ``timeout`` seconds and the reply read
    whole (:func:`reply_content`, then ``response.content``)."""
    with call_deadline(timeout):
        response = session.post(url, data=data, headers=headers, timeout=timeout, stream=True)
        reply_content(response)
    return response


def soap_transport(session: requests.Session, timeout: float | None, operation_timeout: float | None) -> Any:
    """A zeep Transport over ``session`` whose calls (``operation_timeout``) and document loads
    (``timeout``, a WSDL read from the service) each end within their timeout and read at most
    :data:`~wmproxy.client.connection.MAX_REPLY` bytes."""
    from contextlib import closing

    from zeep.transports import Transport

    class BoundedTransport(Transport):
        def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
            return bounded_post(self.session, address, message, headers, self.operation_timeout)

        def _load_remote_data(self, url: str) -> bytes:
            with call_deadline(self.load_timeout):
                response = self.session.get(url, timeout=self.load_timeout, stream=True)
                with closing(response):
                    response.raise_for_status()
                    return reply_content(response)

    return BoundedTransport(session=session, timeout=timeout, operation_timeout=operation_timeout)  # type: ignore[no-untyped-call]
