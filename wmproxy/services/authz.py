"""Who may use the service at all, and the drain switch (``wmproxy-behaviour.md`` §6.2, §3.1 step 4).

The site lists allowed callers in ``[security] authorized_users``: comma-separated
patterns, each a DN glob (``/C=IT/O=INFN/*``), an FQAN glob matched against the caller's
first FQAN (``/dteam*`` admits ``/dteam/Role=NULL/Capability=NULL``; ``/dteam`` alone
admits only that exact FQAN, as the reference's anchored GACL patterns), or ``*`` for
every authenticated caller (the default). ``[security] policy_file`` adds deny entries
(:func:`policy_admits`, the reference's server GACL, ``wmproxy-behaviour.md`` §6.2): a
caller must pass both. While the file ``[service] drain_file`` exists,
new work is refused (jobRegister, jobSubmit, jobStart, jobListMatch and their JSDL forms)
while everything else keeps working.

A **limited proxy** (RFC 3820 limited policy, or a legacy ``CN=limited proxy``; anywhere in
the caller's chain) is for data access: it may read (status, JDL, output lists, proxy
information, templates, jobListMatch, getPerusalFiles, sandbox GET/HEAD) but every operation
that creates, starts, changes or delegates is refused, as listed in
:data:`LIMITED_PROXY_REFUSED`.

A proxy of any other RFC 3820 policy language (id-ppl-independent, which has none of its
issuer's rights, or a language the service does not understand) never gets here: the TLS edge
refuses it (:func:`wmproxy.soap.auth.tls_principal`,
:func:`wmproxy.security.chain.check_proxy_policies`). Should a caller authenticated otherwise
present one, :func:`is_limited` counts it as limited (the least,
:func:`wmproxy.security.chain.is_limited_proxy`).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import threading
from dataclasses import dataclass

from wmproxy.config import Settings
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError, LimitedProxyError, ProxyError
from wmproxy.security.chain import has_limited_proxy, load_pem_chain

log = logging.getLogger(__name__)

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


class PolicyFileError(ValueError):
    """A policy file line that is not ``allow <pattern>`` or ``deny <pattern>``."""


@dataclass(frozen=True)
class PolicyEntry:
    """One line of the policy file: ``allow`` or ``deny``, of kind ``dn``, ``fqan`` or
    ``any`` (the pattern ``*``)."""

    allow: bool
    kind: str
    pattern: str

    def matches(self, principal: Principal) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "dn":
            return fnmatch.fnmatchcase(principal.dn, self.pattern)
        return bool(principal.fqans) and fnmatch.fnmatchcase(principal.fqans[0], self.pattern)


def parse_policy(text: str) -> tuple[PolicyEntry, ...]:
    """The entries of a policy file: one ``allow <pattern>`` or ``deny <pattern>`` a line,
    ``#`` comments and blank lines ignored; a pattern is ``*`` (any user), a DN glob
    (``/C=IT/O=INFN/CN=*``) or an FQAN glob matched on the first FQAN (``/dteam*``), optionally
    in double quotes (DNs with spaces may be written either way).

    Raises:
        PolicyFileError: a line with another keyword or without a pattern (its number in the message).
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        pattern = rest.strip()
        if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
            pattern = pattern[1:-1]
        if keyword not in ("allow", "deny") or not pattern:
            raise PolicyFileError(f"line {number}: expected 'allow <pattern>' or 'deny <pattern>'")
        kind = "any" if pattern == "*" else "dn" if _is_dn_pattern(pattern) else "fqan"
        entries.append(PolicyEntry(keyword == "allow", kind, pattern))
    return tuple(entries)


def decide(entries: tuple[PolicyEntry, ...], principal: Principal) -> bool:
    """Does the policy admit ``principal``? The most specific kind of entry that matches
    decides: the caller's DN, else the caller's first FQAN, else any-user entries; within a
    kind a matching ``deny`` beats a matching ``allow``; nothing matching = refused. So a
    person-DN allow wins over an FQAN deny and an any-user deny (reference test 38739), and
    a person-DN deny refuses whatever the FQAN."""
    for kind in ("dn", "fqan", "any"):
        matching = [entry.allow for entry in entries if entry.kind == kind and entry.matches(principal)]
        if matching:
            return all(matching)
    return False


_policy_lock = threading.Lock()
_policies: dict[str, tuple[tuple[int, int], tuple[PolicyEntry, ...] | None]] = {}


def read_policy(path: str) -> tuple[PolicyEntry, ...]:
    """The entries of the policy file ``path``, read now.

    Raises:
        OSError: it is missing or unreadable.
        UnicodeDecodeError: it is not UTF-8.
        PolicyFileError: a malformed line.
    """
    with open(path, encoding="utf-8") as policy:
        return parse_policy(policy.read())


def policy_file_problem(settings: Settings) -> str | None:
    """Why ``[security] policy_file`` refuses every caller (missing, unreadable by this
    process, not UTF-8, a malformed line), with the fix; None when it is not set or reads
    (``wmproxy-admin check`` and ``/readyz``)."""
    path = settings.security.policy_file
    if not path:
        return None
    try:
        read_policy(path)
    except OSError as exc:
        why = exc.strerror or str(exc)
    except (UnicodeDecodeError, PolicyFileError) as exc:
        why = str(exc)
    else:
        return None
    return (f"[security] policy_file {path}: {why}: every caller is refused; create it (`allow *` admits every "
            "caller authorized_users admits) or set policy_file empty")


def load_policy(path: str) -> tuple[PolicyEntry, ...] | None:
    """The entries of the policy file ``path``, parsed again whenever its modification time
    or size changes; None (everyone refused) when it is missing, unreadable or malformed
    (logged)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        log.error("policy file %s: %s; every caller is refused", path, exc.strerror)
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    with _policy_lock:
        kept = _policies.get(path)
        if kept is not None and kept[0] == stamp:
            return kept[1]
    entries: tuple[PolicyEntry, ...] | None
    try:
        entries = read_policy(path)
    except (OSError, UnicodeDecodeError, PolicyFileError) as exc:
        log.error("policy file %s: %s; every caller is refused", path, exc)
        entries = None
    with _policy_lock:
        _policies[path] = (stamp, entries)
    return entries


def policy_admits(settings: Settings, principal: Principal) -> bool:
    """Does ``[security] policy_file`` admit this caller (True without a policy file)?"""
    path = settings.security.policy_file
    if not path:
        return True
    entries = load_policy(path)
    return entries is not None and decide(entries, principal)


@functools.lru_cache(maxsize=256)
def _limited(chain_pem: bytes) -> bool:
    try:
        return has_limited_proxy(load_pem_chain(chain_pem))
    except ProxyError:
        return True  # an unreadable chain gets the least


def is_limited(principal: Principal) -> bool:
    """Is the caller's credential a limited proxy (or below one)? False without a chain
    (a caller authenticated otherwise: tests, admin). A proxy of another policy language than
    inheritAll counts as limited (:func:`wmproxy.security.chain.is_limited_proxy`)."""
    return bool(principal.chain_pem) and _limited(principal.chain_pem)


class NotAdmittedError(AuthorizationError):
    """The site does not admit the caller at all (``authorized_users``, the policy file): the
    same fault as any AuthorizationError (1207); the edges tell it apart to spend nothing more
    on such a caller (no request body read at its pace, ``docs/load.md``)."""


def check_admitted(settings: Settings, principal: Principal) -> None:
    """Refuse callers the site does not admit (``authorized_users`` and the policy file):
    the part of :func:`check_caller` that depends on the caller only, not on the operation.

    Raises:
        NotAdmittedError: "Authorization error: user not authorized" (1207).
    """
    if not authorized(settings, principal) or not policy_admits(settings, principal):
        raise NotAdmittedError("Authorization error: user not authorized")


def check_operation(settings: Settings, principal: Principal, operation: str) -> None:
    """The part of :func:`check_caller` that depends on the operation, for an admitted caller:
    limited proxies for what they may not do, and new work while drained.

    Raises:
        AuthorizationError, LimitedProxyError: as :func:`check_caller`.
    """
    action = LIMITED_PROXY_REFUSED.get(operation)
    if action is not None and is_limited(principal):
        raise LimitedProxyError(
            f"Authorization error: a limited proxy cannot {action} ({operation}); limited proxies grant data "
            "access only"
        )
    drain = settings.service.drain_file
    if drain and operation in DRAINED_OPERATIONS and os.path.exists(drain):
        raise AuthorizationError("Unavailable service (the server is temporarily drained)")


def check_caller(settings: Settings, principal: Principal, operation: str) -> None:
    """Refuse callers the site does not admit (``authorized_users`` and the policy file),
    limited proxies for what they may not do, and new work while drained
    (:func:`check_admitted`, then :func:`check_operation`).

    Args:
        operation: the SOAP operation's local name, or ``sandbox <HTTP method>``.

    Raises:
        NotAdmittedError: "Authorization error: user not authorized" (1207).
        AuthorizationError: "Unavailable service (the server is temporarily drained)" (1207).
        LimitedProxyError: "Authorization error: a limited proxy cannot <action> ..." (1207).
    """
    check_admitted(settings, principal)
    check_operation(settings, principal, operation)
