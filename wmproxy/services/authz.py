"""Who may use the service at all, and the drain switch (``wmproxy-behaviour.md`` §6.2, §3.1 step 4).

The site lists allowed callers in ``[security] authorized_users``: comma-separated
patterns, each a DN glob (``/C=IT/O=INFN/*``), an FQAN glob matched against the caller's
first FQAN (``/dteam*`` admits ``/dteam/Role=NULL/Capability=NULL``; ``/dteam`` alone
admits only that exact FQAN, as the reference's anchored GACL patterns), or ``*`` for
every authenticated caller (the default). While the file ``[service] drain_file`` exists,
new work is refused (jobRegister, jobSubmit, jobStart, jobListMatch and their JSDL forms)
while everything else keeps working.

A **limited proxy** (RFC 3820 limited policy, or a legacy ``CN=limited proxy``; anywhere in
the caller's chain) is for data access: it may read (status, JDL, output lists, proxy
information, templates, jobListMatch, getPerusalFiles, sandbox GET/HEAD) but every operation
that creates, starts, changes or delegates is refused, as listed in
:data:`LIMITED_PROXY_REFUSED`.
"""

from __future__ import annotations

import fnmatch
import functools
import os

from wmproxy.config import Settings
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError, LimitedProxyError, ProxyError
from wmproxy.security.chain import has_limited_proxy, load_pem_chain

DRAINED_OPERATIONS = frozenset(
    {"jobRegister", "jobRegisterJSDL", "jobSubmit", "jobSubmitJSDL", "jobStart", "jobListMatch", "jobListMatchJSDL"}
)

#: Operations a limited proxy may not call → what the refusal says it cannot do. The names
#: are those of the three SOAP ports (the delegation ports share getProxyReq/putProxy) and
#: ``sandbox <HTTP method>`` for the sandbox edge. Everything else only reads.
LIMITED_PROXY_REFUSED: dict[str, str] = {
    "jobRegister": "register jobs",
    "jobRegisterJSDL": "register jobs",
    "jobSubmit": "submit jobs",
    "jobSubmitJSDL": "submit jobs",
    "jobStart": "start jobs",
    "jobCancel": "cancel jobs",
    "jobPurge": "purge jobs",
    "getProxyReq": "delegate proxies",
    "getNewProxyReq": "delegate proxies",
    "putProxy": "delegate proxies",
    "renewProxyReq": "renew delegated proxies",
    "destroy": "destroy delegated proxies",
    "addACLItems": "change job ACLs",
    "removeACLItem": "change job ACLs",
    "enableFilePerusal": "enable file perusal",
    "sandbox PUT": "upload sandbox files",
    "sandbox MOVE": "move sandbox files",
    "sandbox DELETE": "delete sandbox files",
}


def _patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _is_dn_pattern(pattern: str) -> bool:
    first = pattern.lstrip("/").split("/", 1)[0]
    return "=" in first


def authorized(settings: Settings, principal: Principal) -> bool:
    """Does ``[security] authorized_users`` admit this caller?"""
    patterns = _patterns(settings.security.authorized_users)
    fqan = principal.fqans[0] if principal.fqans else None
    for pattern in patterns:
        if pattern == "*":
            return True
        if _is_dn_pattern(pattern):
            if fnmatch.fnmatchcase(principal.dn, pattern):
                return True
        elif fqan is not None and fnmatch.fnmatchcase(fqan, pattern):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _limited(chain_pem: bytes) -> bool:
    try:
        return has_limited_proxy(load_pem_chain(chain_pem))
    except ProxyError:
        return True  # an unreadable chain gets the least


def is_limited(principal: Principal) -> bool:
    """Is the caller's credential a limited proxy (or below one)? False without a chain
    (a caller authenticated otherwise: tests, admin)."""
    return bool(principal.chain_pem) and _limited(principal.chain_pem)


def check_caller(settings: Settings, principal: Principal, operation: str) -> None:
    """Refuse callers the site does not admit, limited proxies for what they may not do,
    and new work while drained.

    Args:
        operation: the SOAP operation's local name, or ``sandbox <HTTP method>``.

    Raises:
        AuthorizationError: "Authorization error: user not authorized" (1207), or
            "Unavailable service (the server is temporarily drained)" (1207).
        LimitedProxyError: "Authorization error: a limited proxy cannot <action> ..." (1207).
    """
    if not authorized(settings, principal):
        raise AuthorizationError("Authorization error: user not authorized")
    action = LIMITED_PROXY_REFUSED.get(operation)
    if action is not None and is_limited(principal):
        raise LimitedProxyError(
            f"Authorization error: a limited proxy cannot {action} ({operation}); limited proxies grant data "
            "access only"
        )
    drain = settings.service.drain_file
    if drain and operation in DRAINED_OPERATIONS and os.path.exists(drain):
        raise AuthorizationError("Unavailable service (the server is temporarily drained)")
