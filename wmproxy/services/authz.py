"""Who may use the service at all, and the drain switch (``wmproxy-behaviour.md`` §6.2, §3.1 step 4).

The site lists allowed callers in ``[security] authorized_users``: comma-separated
patterns, each a DN glob (``/C=IT/O=INFN/*``), an FQAN glob matched against the caller's
first FQAN (``/dteam*`` admits ``/dteam/Role=NULL/Capability=NULL``; ``/dteam`` alone
admits only that exact FQAN, as the reference's anchored GACL patterns), or ``*`` for
every authenticated caller (the default). While the file ``[service] drain_file`` exists,
new work is refused (jobRegister, jobSubmit, jobStart, jobListMatch and their JSDL forms)
while everything else keeps working.
"""

from __future__ import annotations

import fnmatch
import os

from wmproxy.config import Settings
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError

DRAINED_OPERATIONS = frozenset(
    {"jobRegister", "jobRegisterJSDL", "jobSubmit", "jobSubmitJSDL", "jobStart", "jobListMatch", "jobListMatchJSDL"}
)


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


def check_caller(settings: Settings, principal: Principal, operation: str) -> None:
    """Refuse callers the site does not admit, and new work while drained.

    Raises:
        AuthorizationError: "Authorization error: user not authorized" (1207), or
            "Unavailable service (the server is temporarily drained)" (1207).
    """
    if not authorized(settings, principal):
        raise AuthorizationError("Authorization error: user not authorized")
    drain = settings.service.drain_file
    if drain and operation in DRAINED_OPERATIONS and os.path.exists(drain):
        raise AuthorizationError("Unavailable service (the server is temporarily drained)")
