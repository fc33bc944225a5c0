"""Delegation of proxies to the service (gridsite delegation-1/-2, WMProxy getProxyReq/putProxy).

Implements ``wmproxy-behaviour.md`` §5: a pending request (server RSA key + CSR) per
(caller DN, delegation id), then putProxy stores the signed RFC 3820 proxy, sealed,
in the same scope. Another DN can neither see, use, replace nor destroy it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import weakref
from collections.abc import Collection, Iterator

from cachetools import LRUCache
from cryptography import x509

from wmproxy.domain import FINAL_STATES, JobState, Principal, utcnow
from wmproxy.errors import (
    DelegationError,
    DelegationLimitError,
    DelegationNotFoundError,
    FqanMismatchError,
    InvalidArgumentError,
    LimitedProxyError,
    ProxyError,
    ProxyExpiredError,
    ProxyPolicyError,
    ProxyVerificationError,
)
from wmproxy.security import delegation as crypto
from wmproxy.security.chain import has_limited_proxy, load_pem_chain, unknown_proxy_policy
from wmproxy.security.gridmap import normalise_fqan
from wmproxy.security.proxy_info import ProxyInfo, proxy_info
from wmproxy.security.voms import carries_acs, service_host_names, verified_fqans
from wmproxy.services.delegation_keys import claim_request, new_key
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.delegation_writes import StoredDelegation, delegation_writes
from wmproxy.store.delegations import StoredProxy
from wmproxy.store.schema import Delegation
from wmproxy.text import log_text

log = logging.getLogger(__name__)

#: A proxy starting later than this (seconds) is refused (clock skew, §5.3).
NOT_BEFORE_SKEW = 5
#: States of jobs that still need their delegation.
UNFINISHED_STATES = tuple(s.value for s in JobState if s not in FINAL_STATES)
#: getTerminationTime's text when (DN, id) has no stored proxy (§5.2; two spaces, as in the reference).
TERMINATION_TIME_NOT_FOUND = "Client delegated proxy not found:  get termination time not allowed"


def resolve_delegation_id(principal: Principal, delegation_id: str | None) -> str:
    """An empty id means the default id computed from the caller's DN and FQANs (§3.1 step 1).

    Raises:
        InvalidDelegationIdError: the id contains ``/`` or other unusable characters.
    """
    if not delegation_id:
        return crypto.default_delegation_id(principal.dn, principal.fqans)
    return crypto.check_delegation_id(delegation_id)


def create_proxy_request(rt: Runtime, principal: Principal, delegation_id: str | None) -> tuple[str, str]:
    """getProxyReq: take a server key pair and return ``(delegation id, PEM CSR)``.

    The key comes from the pool of pre-generated keys (:mod:`wmproxy.services.delegation_keys`),
    or is generated now when the pool is empty; it serves this request only.

    The private key is sealed and kept as the pending request of (DN, id); an older
    pending request for the same scope is replaced. A stored proxy is left untouched
    until putProxy succeeds.

    Raises:
        InvalidDelegationIdError: unusable delegation id.
    """
    delegation_id = resolve_delegation_id(principal, delegation_id)
    pooled = claim_request(rt, principal.dn, delegation_id)
    if pooled is not None:
        csr, sealed_key = pooled
    else:
        sealed_key, csr_pem = new_key(rt)  # outside a transaction: it takes a while
        csr = csr_pem.decode()
        with rt.uow() as uow:
            uow.delegations.put_request(principal.dn, delegation_id, sealed_key, csr, utcnow())
    _remember_request(rt, principal.dn, delegation_id, sealed_key)
    _bound_pending(rt, principal.dn)
    return delegation_id, csr


#: getProxyReq-like requests of one DN in a process between two looks at how many pending
#: requests it has (:func:`_bound_pending`): the count stays off nearly every request's path.
TRIM_EVERY = 32
#: DN → such requests since its last look, in this process (cleared when it names more DNs).
_since_look: dict[str, int] = {}
_LOOKED_DNS = 4096


def _bound_pending(rt: Runtime, dn: str) -> None:
    """Every :data:`TRIM_EVERY` requests of ``dn`` in this process, drop its pending requests
    beyond the newest ``[limits] max_pending_delegation_requests`` (a user who asks with new ids
    and never answers no longer fills the table with sealed keys for a day)."""
    keep = rt.settings.limits.max_pending_delegation_requests
    if keep <= 0:
        return
    seen = _since_look.get(dn, 0) + 1
    if seen < TRIM_EVERY:
        if len(_since_look) >= _LOOKED_DNS and dn not in _since_look:
            _since_look.clear()
        _since_look[dn] = seen
        return
    _since_look.pop(dn, None)
    if delegation_writes(rt.session_factory).pending_count(dn) <= keep:  # no write lock for the look
        return
    with rt.uow() as uow:
        dropped = uow.delegations.trim_requests(dn, keep)
    log.warning("dropped %d pending delegation request(s) of %s beyond its newest %d "
                "([limits] max_pending_delegation_requests)", dropped, log_text(dn), keep)


def create_new_proxy_request(rt: Runtime, principal: Principal) -> tuple[str, str]:
    """delegation-2 getNewProxyReq: a request under the caller's default delegation id.

    Returns ``(delegation id, PEM CSR)``.

    Raises:
        DelegationError: a proxy under that id is still valid ("Unable to complete New
            Proxy request: Previous client delegated proxy still valid", §5.2).
    """
    delegation_id = resolve_delegation_id(principal, None)
    with rt.uow() as uow:
        row = uow.delegations.get(principal.dn, delegation_id)
        if row is not None and row.not_after > utcnow():
            raise DelegationError(
                "Unable to complete New Proxy request: Previous client delegated proxy still valid"
            )
    return create_proxy_request(rt, principal, delegation_id)


def renew_proxy_request(rt: Runtime, principal: Principal, delegation_id: str | None) -> str:
    """delegation-2 renewProxyReq: a new request for an existing delegation; returns the PEM CSR.

    The stored proxy stays usable until putProxy replaces it.

    Raises:
        DelegationNotFoundError: "No previous client delegated proxy found".
    """
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        if uow.delegations.get(principal.dn, delegation_id) is None:
            raise DelegationNotFoundError("No previous client delegated proxy found")
    return create_proxy_request(rt, principal, delegation_id)[1]


def store_proxy(rt: Runtime, principal: Principal, delegation_id: str | None, proxy_pem: str) -> StoredDelegation:
    """putProxy: verify the signed proxy against the pending key and store it sealed; returns
    the stored row's values.

    Args:
        proxy_pem: PEM chain, the new proxy first, then the signer's chain (no key).

    Raises:
        InvalidDelegationIdError: unusable delegation id.
        DelegationNotFoundError: no pending getProxyReq for (DN, id), or its request was
            replaced (a new getProxyReq) or used (another putProxy) while the proxy was checked.
        ProxyVerificationError: the chain fails a check (key mismatch, not RFC 3820,
            another identity, outside its validity, untrusted or revoked issuer, more than
            ``[limits] max_proxy_chain_depth`` proxy levels); ``ProxyPolicyError`` for a proxy
            of another RFC 3820 policy language than inheritAll and the Globus limited proxy
            (an independent proxy, or a language not understood; the message names it).
        LimitedProxyError: the chain holds a limited proxy.
        DelegationLimitError: ``delegation_id`` is not stored and the DN has ``[limits]
            max_delegations_per_user`` delegations (nothing is written: the request stays
            pending, for a putProxy once the DN has destroyed one).

    The stored FQANs are those of the VOMS ACs that verify now (vomsdir and CA directory).
    """
    delegation_id = resolve_delegation_id(principal, delegation_id)
    now = utcnow()
    # The pending request's key is read, the proxy checked against it, then the request taken
    # and the proxy stored in one transaction, only if the request still holds that key
    # (wmproxy.store.delegation_writes; on PostgreSQL two statements, no BEGIN or COMMIT, issue
    # 14). Nothing is written when a check fails: the request stays pending.
    # The key this process claimed for the request (getProxyReq came on this connection, as
    # clients do) is not read back; another process may have replaced the request since, which
    # the guarded write sees, and a proxy that fails its checks against it is checked again
    # against the key the store holds (issue 14: one read less per delegation).
    writes = delegation_writes(rt.session_factory)
    sealed_key = _claimed_request(rt, principal.dn, delegation_id)
    remembered = sealed_key is not None
    if sealed_key is None:
        sealed_key = writes.pending_key(principal.dn, delegation_id)
        if sealed_key is None:
            raise _no_request(delegation_id)
    try:
        accepted = _accept(rt, principal, sealed_key, proxy_pem, now)
    except ProxyVerificationError:
        if not remembered:
            raise
        current = writes.pending_key(principal.dn, delegation_id)
        if current is None:
            raise _no_request(delegation_id) from None
        if current == sealed_key:
            raise
        sealed_key = current
        accepted = _accept(rt, principal, sealed_key, proxy_pem, now)
    bound = rt.settings.limits.max_delegations_per_user
    stored = writes.put_proxy_for_request(
        principal.dn,
        delegation_id,
        sealed_key,
        rt.sealer.seal(accepted.pem),
        accepted.not_before,
        accepted.not_after,
        accepted.fqans,
        now,
        max_delegations=bound,
    )
    if stored is None and writes.no_room(principal.dn, delegation_id, bound):
        log.warning("putProxy of %s refused: it has %d delegations stored ([limits] max_delegations_per_user)",
                    log_text(principal.dn), bound)
        raise DelegationLimitError(
            f"Unable to store client Proxy: the maximum number of stored delegations is reached ({bound} per "
            f"user); destroy unused delegations or reuse a delegation id")
    if stored is None:  # taken by a concurrent putProxy, or replaced by a new getProxyReq
        if remembered and writes.pending_key(principal.dn, delegation_id) is None:
            raise _no_request(delegation_id)  # as when the read finds none (taken, purged, destroyed)
        raise DelegationNotFoundError(
            f"Unable to store client Proxy: the proxy request for delegation id {delegation_id!r} was replaced "
            "or used while the proxy was checked")
    # Committed: this process's next jobSubmits with it check it without reading it again.
    remember_proxy(rt, principal.dn, StoredProxy(
        delegation_id, stored.sealed_proxy, stored.not_before, stored.not_after, stored.fqans))
    return stored


def _accept(rt: Runtime, principal: Principal, sealed_key: bytes, proxy_pem: str,
            now: dt.datetime) -> crypto.DelegatedProxy:
    return crypto.accept_delegated_proxy(
        rt.sealer.open(sealed_key),
        proxy_pem.encode(),
        principal.dn,
        rt.settings.security.ca_dir,
        now=now,
        vomsdir=rt.settings.security.vomsdir,
        max_depth=rt.settings.limits.max_proxy_chain_depth,
        host_names=_AcHostNames(rt),
    )


class _AcHostNames(Collection[str]):
    """:func:`ac_host_names` of ``rt``, found when first asked: only a VOMS AC's verification
    asks, so a putProxy of a chain without ACs does not ``stat`` the host certificate (issue 14)."""

    __slots__ = ("_names", "_rt")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._names: tuple[str, ...] | None = None

    def _found(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = ac_host_names(self._rt)
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self._found()

    def __iter__(self) -> Iterator[str]:
        return iter(self._found())

    def __len__(self) -> int:
        return len(self._found())


def termination_time(rt: Runtime, principal: Principal, delegation_id: str | None) -> dt.datetime:
    """getTerminationTime: notAfter (UTC) of the stored proxy of (DN, id).

    ``delegation_id``: the id, or empty/None for the caller's default id (§3.1 step 1).

    Raises:
        InvalidDelegationIdError: unusable delegation id.
        DelegationNotFoundError: no stored proxy: "Client delegated proxy not found:  get
            termination time not allowed" (two spaces, the reference's text, §5.2).
    """
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        row = uow.delegations.get(principal.dn, delegation_id)
        if row is None:
            raise DelegationNotFoundError(TERMINATION_TIME_NOT_FOUND)
        return row.not_after


def destroy(rt: Runtime, principal: Principal, delegation_id: str | None) -> None:
    """destroy: delete the stored proxy (and any pending request) of (DN, id).

    The pending request goes first, then the stored proxy: the order in which putProxy's write
    takes their rows (:meth:`~wmproxy.store.delegation_writes.DelegationWrites.put_proxy_for_request`),
    so that on PostgreSQL a destroy and a putProxy of the same (DN, id) wait for each other
    rather than deadlock (each holding the row the other needs next).

    Jobs that use the delegation keep running with their own proxy copies, which are no longer
    renewed; once a copy ends its job is aborted, and a job not started yet waits for a proxy
    delegated again under the id (:mod:`wmproxy.services.renewal.expiry`). A warning is logged
    when unfinished jobs use it.

    Raises:
        DelegationNotFoundError: nothing stored under (DN, id); a pending request is left as it was.
    """
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        uow.delegations.take_request(principal.dn, delegation_id)
        if not uow.delegations.delete_proxy(principal.dn, delegation_id):
            raise _not_found(delegation_id)  # the unit of work rolls back: the request stays
        used = uow.renewals.has_jobs(principal.dn, delegation_id, UNFINISHED_STATES)
    forget_proxy(rt, principal.dn, delegation_id)
    if used:
        log.warning("delegation %s of %s destroyed while unfinished jobs use it: their proxies are no longer "
                    "renewed; running jobs run on with their own copies until those end, jobs not started wait "
                    "for a proxy delegated again under this id", delegation_id, principal.dn)


def delegated_proxy_info(rt: Runtime, principal: Principal, delegation_id: str) -> ProxyInfo:
    """getDelegatedProxyInfo (§5.5): subject, issuer, type, strength, times, VOMS ACs.

    Raises:
        InvalidArgumentError: empty id ("Provided Delegation Id not valid").
        DelegationNotFoundError: nothing stored under (DN, id).
    """
    if not delegation_id:
        raise InvalidArgumentError("Provided Delegation Id not valid")
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        pem = rt.sealer.open(_get(uow, principal.dn, delegation_id).sealed_proxy)
    return describe_proxy(rt, pem)


def describe_proxy(rt: Runtime, pem: bytes) -> ProxyInfo:
    """The getProxyInfo data of a PEM proxy (typed: times aware UTC, key size in bits),
    VOMS ACs verified now against the service's vomsdir and CA directory (an AC that does
    not verify is listed without FQANs, with the reason); no transaction.

    Raises:
        ProxyError: no or unreadable certificate, or a malformed VOMS AC.
    """
    sec = rt.settings.security
    return proxy_info(pem, vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, host_names=ac_host_names(rt))


def believed_fqans(rt: Runtime, row: StoredProxy, now: dt.datetime, action: str) -> tuple[str, ...]:
    """The FQANs the service believes for the stored proxy of ``row`` at ``now``: those of
    its VOMS ACs that verify (:func:`wmproxy.security.voms.verified_fqans`), primary first.

    Args:
        action: what the proxy is about to be used for, for the message ("register jobs").

    Raises:
        LimitedProxyError: the stored chain holds a limited proxy (stored by an older
            release: putProxy and the MyProxy renewal refuse them); it cannot be used for
            ``action``.
        ProxyPolicyError: the stored chain holds a proxy of another RFC 3820 policy language
            than inheritAll and limited (an independent proxy: stored by an older release,
            which took it for an impersonation proxy); the message names it.
        ProxyError: the stored proxy or its VOMS extension is unreadable.
    """
    chain, limited, acs = _stored_chain(rt, row.sealed_proxy)
    if limited:
        # such a proxy counts as limited (is_limited_proxy): refused as what it is
        language = unknown_proxy_policy(chain)
        if language is not None:
            raise ProxyPolicyError(
                f"delegated proxy {row.delegation_id!r} holds a proxy of RFC 3820 policy language {language}, "
                f"which does not carry its owner's rights; it cannot be used to {action}: delegate again",
                policy_language=language)
        raise LimitedProxyError(
            f"Authorization error: delegated proxy {row.delegation_id!r} was signed by a limited proxy and "
            f"cannot be used to {action}"
        )
    if not acs:  # no VOMS extension: no FQAN, whatever the time and this service's names (issue 14)
        return ()
    sec = rt.settings.security
    return verified_fqans(chain, vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, at=now, host_names=ac_host_names(rt))


def ac_host_names(rt: Runtime) -> tuple[str, ...]:
    """The names an AC with targets must give to be believed here (RFC 5755 §4.3.2): this
    service's ``[service] host`` and its host certificate's DNS names
    (:func:`wmproxy.security.voms.service_host_names`). The MyProxy renewal, which stores
    proxies for this service, verifies their ACs for the same names."""
    return service_host_names(rt.settings.security.host_cert, rt.settings.service.host)


#: Stored proxies whose chain was already unsealed and parsed, per worker: ``(store key
#: fingerprint, sealed bytes)`` -> (leaf-first chain, has a limited proxy, carries the VOMS
#: extension). The key is the whole sealed token, so a replaced or re-sealed proxy is a new
#: entry; what depends on the time (validity, VOMS ACs) is still checked on every call.
#: Certificates only, no private key. Bounded LRU.
#: Entries kept in :data:`_STORED_CHAINS`.
STORED_CHAINS_MAX = 256
_STORED_CHAINS: LRUCache[tuple[str, bytes], tuple[list[x509.Certificate], bool, bool]] = LRUCache(STORED_CHAINS_MAX)
_STORED_CHAINS_LOCK = threading.Lock()


def _stored_chain(rt: Runtime, sealed: bytes) -> tuple[list[x509.Certificate], bool, bool]:
    """The leaf-first chain of a sealed stored proxy, whether it holds a limited proxy
    (:func:`wmproxy.security.chain.has_limited_proxy`) and whether it carries the VOMS
    extension (:func:`wmproxy.security.voms.carries_acs`), unsealed and parsed once per worker
    (issue 14: the Fernet open, the PEM parse and the proxyCertInfo decoding were a sixth of
    a jobSubmit).

    Raises:
        ProxyError: the stored proxy is unreadable (never cached).
        WMProxyError: the seal does not open with the store key (never cached).
    """
    key = (rt.sealer.fingerprint, bytes(sealed))  # certificates only: the cache holds no private key
    with _STORED_CHAINS_LOCK:
        found = _STORED_CHAINS.get(key)
    if found is not None:
        return found
    chain = load_pem_chain(rt.sealer.open(sealed))
    entry = (chain, has_limited_proxy(chain), carries_acs(chain))
    with _STORED_CHAINS_LOCK:
        _STORED_CHAINS[key] = entry
    return entry


def check_fqan_match(principal: Principal, delegated_fqans: tuple[str, ...]) -> None:
    """The client proxy must present the delegated proxy's primary FQAN (WMS 3.3; WTS bug
    54728, group *and* role compared, ``/Role=NULL`` and ``/Capability=NULL`` ignored).

    Compared only when the delegated proxy has a (verified) FQAN: a delegation without VOMS
    attributes grants no more than the client already has.

    Raises:
        FqanMismatchError: "Client proxy FQAN (<x>) does not match delegated proxy FQAN (<y>)",
            ``<x>`` "no FQAN" when the client proxy has none.
    """
    if not delegated_fqans:
        return
    client = principal.fqans[0] if principal.fqans else ""
    if normalise_fqan(client) != normalise_fqan(delegated_fqans[0]) or not client:
        raise FqanMismatchError(
            f"Client proxy FQAN ({client or 'no FQAN'}) does not match delegated proxy FQAN ({delegated_fqans[0]})"
        )


def usable_proxy(uow: UnitOfWork, dn: str, delegation_id: str, now: dt.datetime, min_lifetime: int) -> StoredProxy:
    """The stored proxy of (DN, id) if it is valid now and for ``min_lifetime`` more seconds.

    Raises:
        DelegationNotFoundError: no stored proxy ("Unable to get delegated Proxy").
        ProxyError: its validity starts in the future.
        ProxyExpiredError: expired or fewer than ``min_lifetime`` seconds left
            ("The delegated Proxy has expired", the WMS 3.3 wording).
    """
    row = uow.delegations.stored_proxy(dn, delegation_id)
    if row is None:
        raise _not_found(delegation_id)
    return check_usable(row, now, min_lifetime)


def check_usable(row: StoredProxy, now: dt.datetime, min_lifetime: int) -> StoredProxy:
    """:func:`usable_proxy`'s checks of a stored proxy already read; returns ``row``.

    Raises:
        ProxyError, ProxyExpiredError: as :func:`usable_proxy`.
    """
    if row.not_before > now + dt.timedelta(seconds=NOT_BEFORE_SKEW):
        raise ProxyError("proxy validity starting time in the future\nPlease check client date/time")
    if row.not_after <= now:
        raise ProxyExpiredError("The delegated Proxy has expired")
    if row.not_after - now < dt.timedelta(seconds=min_lifetime):
        raise ProxyExpiredError(
            f"The delegated Proxy has expired or has less than {min_lifetime // 60} minutes left"
        )
    return row


#: The stored proxy this process last read or stored for each (DN, delegation id), per session
#: factory (one per runtime; issue 14: jobSubmit's guarded write, :func:`recent_proxy`). Sealed
#: proxies only, as the store holds them; a bounded LRU (about 7 kB an entry).
RECENT_PROXIES_MAX = 256
_RECENT: weakref.WeakKeyDictionary[object, LRUCache[tuple[str, str], StoredProxy]] = weakref.WeakKeyDictionary()
_RECENT_LOCK = threading.Lock()


def recent_proxy(rt: Runtime, dn: str, delegation_id: str) -> StoredProxy | None:
    """The stored proxy of (DN, id) as this process last read or stored it (:func:`remember_proxy`;
    putProxy, jobSubmit), or None. Another process may have replaced or destroyed it since: only
    a write that checks the store still holds it (``wmproxy.store.job_writes``) may rely on it."""
    with _RECENT_LOCK:
        kept = _RECENT.get(rt.session_factory)
        return None if kept is None else kept.get((dn, delegation_id))


def remember_proxy(rt: Runtime, dn: str, row: StoredProxy) -> None:
    """Keep ``row``, the stored proxy of (DN, ``row.delegation_id``) just read or stored, for
    :func:`recent_proxy`."""
    with _RECENT_LOCK:
        kept = _RECENT.get(rt.session_factory)
        if kept is None:
            kept = _RECENT[rt.session_factory] = LRUCache(RECENT_PROXIES_MAX)
        kept[(dn, row.delegation_id)] = row


def forget_proxy(rt: Runtime, dn: str, delegation_id: str) -> None:
    """Drop what :func:`recent_proxy` keeps for (DN, id) (the store holds another proxy or none)."""
    with _RECENT_LOCK:
        kept = _RECENT.get(rt.session_factory)
        if kept is not None:
            kept.pop((dn, delegation_id), None)


#: Pending requests this process made, per runtime: (DN, id) -> the sealed key it stored.
PENDING_REQUESTS_MAX = 1024
_PENDING: weakref.WeakKeyDictionary[object, LRUCache[tuple[str, str], bytes]] = weakref.WeakKeyDictionary()


def _remember_request(rt: Runtime, dn: str, delegation_id: str, sealed_key: bytes) -> None:
    """Keep the sealed key this process just stored as (DN, id)'s pending request, for the
    putProxy that follows (:func:`_claimed_request`). Sealed, as in the store."""
    with _RECENT_LOCK:
        kept = _PENDING.get(rt.session_factory)
        if kept is None:
            kept = _PENDING[rt.session_factory] = LRUCache(PENDING_REQUESTS_MAX)
        kept[(dn, delegation_id)] = sealed_key


def _claimed_request(rt: Runtime, dn: str, delegation_id: str) -> bytes | None:
    """The sealed key :func:`_remember_request` kept for (DN, id), taken out (a request serves
    one putProxy), or None. The store may hold another key by now, or none."""
    with _RECENT_LOCK:
        kept = _PENDING.get(rt.session_factory)
        return None if kept is None else kept.pop((dn, delegation_id), None)


def _get(uow: UnitOfWork, dn: str, delegation_id: str) -> Delegation:
    row = uow.delegations.get(dn, delegation_id)
    if row is None:
        raise _not_found(delegation_id)
    return row


def _no_request(delegation_id: str) -> DelegationNotFoundError:
    return DelegationNotFoundError(
        f"Unable to store client Proxy: no proxy request for delegation id {delegation_id!r}")


def _not_found(delegation_id: str) -> DelegationNotFoundError:
    return DelegationNotFoundError(f"Unable to get delegated Proxy for delegation id {delegation_id!r}")
