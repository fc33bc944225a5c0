"""Client side of delegation: choose the port, sign the service's CSR with the user's proxy.

The gLite UI (``wmproxy-behaviour.md`` §5.4) asks getVersion first and uses the
delegation-2 port from WMProxy 2.9.0 on, the WMProxy port's getProxyReq/putProxy
before. An empty delegation id lets the service choose its default id (≥ 3.0.0).
"""

from __future__ import annotations

import re
from typing import Literal

from wmproxy.client.faults import WMProxyClientError

Port = Literal["wmproxy", "delegation1", "delegation2"]

DELEGATION2_SINCE = (2, 9, 0)
AUTO_ID_SINCE = (3, 0, 0)


def parse_version(text: str) -> tuple[int, int, int]:
    """``"3.5.0"`` → ``(3, 5, 0)``; each field's leading digits (``"1-2"`` → 1), else 0."""
    fields: list[int] = []
    for part in (text or "").strip().split(".")[:3]:
        match = re.match(r"\s*(\d+)", part)
        fields.append(int(match.group(1)) if match else 0)
    while len(fields) < 3:
        fields.append(0)
    return fields[0], fields[1], fields[2]


def delegation_port(version: tuple[int, int, int]) -> Port:
    """The port the gLite UI uses for getProxyReq/putProxy with a server of ``version``."""
    return "delegation2" if version >= DELEGATION2_SINCE else "wmproxy"


def sign_request(csr_pem: str, proxy_file: str) -> str:
    """Sign a getProxyReq CSR with the user's proxy, for as long as that proxy lives.

    Args:
        csr_pem: the PEM certificate request from getProxyReq.
        proxy_file: the user's proxy file (cert, key, chain).

    Returns:
        The PEM for putProxy: new proxy certificate, then the signer's chain.

    Raises:
        WMProxyClientError: ``ProxyError`` if the proxy is unreadable, has no key,
            has expired, holds a proxy of another RFC 3820 policy language than inheritAll and
            limited (an independent proxy: the service refuses such a chain, the message names
            the language), or the CSR is invalid.
    """
    from wmproxy.errors import WMProxyError
    from wmproxy.security.chain import check_proxy_policies
    from wmproxy.security.proxy import load_credential, sign_proxy_request, time_left

    try:
        signer = load_credential(proxy_file)
        if signer.key is None:
            raise WMProxyClientError("ProxyError", f"no private key in {proxy_file}", None, "putProxy")
        check_proxy_policies(signer.full_chain)
        lifetime = int(time_left(signer.cert))
        if lifetime <= 0:
            raise WMProxyClientError("ProxyError", f"the proxy {proxy_file} has expired", None, "putProxy")
        return sign_proxy_request(csr_pem.encode(), signer, lifetime=lifetime).decode()
    except WMProxyError as exc:
        raise WMProxyClientError("ProxyError", str(exc), None, "putProxy") from None


def default_id_candidates(proxy_file: str) -> list[str]:
    """The ids the service may have chosen for an automatic (empty id) delegation from this
    proxy: its default id over the DN with the proxy's FQANs, then over the DN alone (the
    service counts only FQANs it can verify; the client cannot tell which).

    Returns:
        Candidate ids, most likely first; empty when the proxy cannot be read.
    """
    from wmproxy.errors import WMProxyError
    from wmproxy.security.chain import identity_dn
    from wmproxy.security.delegation import default_delegation_id
    from wmproxy.security.proxy import load_credential
    from wmproxy.security.voms import voms_attributes

    try:
        chain = load_credential(proxy_file).full_chain
        dn = identity_dn(chain)
        fqans = [fqan for ac in voms_attributes(chain) for fqan in ac.fqans]
    except WMProxyError:
        return []
    candidates = [default_delegation_id(dn, fqans)] if fqans else []
    return [*candidates, default_delegation_id(dn)]
