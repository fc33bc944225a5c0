"""VOMS refresh after a MyProxy renewal (anchors.md §2.2 "VOMS refresh", row 10).

MyProxy gives back a proxy without VOMS attributes (or with the AC stored by ``myproxy-init
--voms``, which ends after 12 h). The gLite proxy renewal daemon then asked a VOMS server for
a new AC, authenticated with the user's *renewed* proxy ("no special authorization is needed
on the VOMS server side"), and put it in a new proxy signed by the renewed one. So does this
service:

* :func:`voms_requests` (at the claim): for each VO of the delegated FQANs, which FQANs to
  ask, in the delegated order, and which servers to ask, in order: the one named in the stored
  proxy's AC for that VO (its URI, with the AC's issuer as the subject the server must present),
  then the VO's servers in ``[renewal] vomses``;
* the renewal worker asks them (:mod:`wmproxy.renewal.voms_client`, the edge) and makes the
  refreshed proxy;
  each answer is checked at once (:func:`ac_problem`: trusted, of the user, of the VO, proving
  the delegated FQANs), so a server answering an unusable AC is passed over for the next one;
* :func:`settle_voms_refresh` keeps the refreshed proxy only when it is a valid proxy of the
  owner that proves the delegated FQANs (:func:`proves_delegated`, which matching and the
  account mapping read); otherwise the proxy from MyProxy is stored as before, and a note says
  why the attributes were not refreshed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from wmproxy.errors import ProxyError
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.gridmap import normalise_fqan
from wmproxy.security.renewed import check_renewed_proxy
from wmproxy.security.voms import VomsAttributes, ac_attributes, verified_fqans, voms_attributes
from wmproxy.security.vomses import VomsServer, read_vomses, servers_of
from wmproxy.services.delegation import ac_host_names
from wmproxy.services.runtime import Runtime

if TYPE_CHECKING:
    from wmproxy.services.renewal.attempt import RenewalOrder, RenewalOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VomsRequest:
    """One VO's part of a refresh: the FQANs to ask for, as delegated (long form, primary
    first), and the servers to ask, in order, until one grants them."""

    vo: str
    fqans: tuple[str, ...]
    servers: tuple[VomsServer, ...]

    @property
    def requested(self) -> tuple[str, ...]:
        """The FQANs in the short form VOMS servers take (``/atlas/Role=production``,
        ``/atlas``)."""
        return tuple(normalise_fqan(fqan) for fqan in self.fqans)


def proves_delegated(proven: Sequence[str], delegated: Sequence[str]) -> bool:
    """Whether the verified FQANs ``proven`` (in AC order) prove the ``delegated`` ones (primary
    first): the same primary FQAN, and every delegated FQAN in the delegated order, compared in
    VOMS short form (``/atlas/Role=NULL/Capability=NULL`` is ``/atlas``). Further FQANs are
    allowed: a VOMS server asked for a group lists every group the user holds, so a group the
    VO added since the delegation, or a server writing short FQANs, still proves them. Nothing
    delegated is proven only by nothing.
    """
    have = [normalise_fqan(f) for f in proven]
    want = [normalise_fqan(f) for f in delegated]
    if not want:
        return not have
    if not have or have[0] != want[0]:
        return False
    rest = iter(have)
    return all(any(f == g for g in rest) for f in want)


def fqan_vo(fqan: str) -> str:
    """The VO of an FQAN: its first group (``/atlas/uk/Role=NULL`` → ``atlas``)."""
    return fqan.strip("/").split("/", 1)[0]


def voms_requests(rt: Runtime, stored_pem: bytes, delegated: tuple[str, ...]) -> tuple[VomsRequest, ...]:
    """What to ask VOMS servers for after renewing the proxy ``stored_pem`` (grid file layout)
    delegated with the FQANs ``delegated`` (primary first): one :class:`VomsRequest` per VO, in
    the order the VOs first appear. Empty when ``[renewal] voms_refresh`` is off or no FQAN was
    delegated. A VO without any known server still gets a request (no servers), so that the
    renewal says why nothing was refreshed.

    The servers named by the stored proxy's ACs come first (their signed URI, and their
    issuer's subject, which the server must present); only ACs this service trusts name one
    (:func:`_trusted_acs`): a URI in a forged AC would make the worker connect where a user
    wants. An unreadable AC extension names none.
    """
    settings = rt.settings.renewal
    if not settings.voms_refresh or not delegated:
        return ()
    named = [VomsServer(vo=ac.vo, host=host, port=int(port), dn=ac.issuer_dn)
             for ac in _trusted_acs(rt, stored_pem)
             for host, _, port in [ac.uri.rpartition(":")]
             if host and port.isdigit() and 0 < int(port) < 65536]
    listed = read_vomses(settings.vomses)
    by_vo: dict[str, list[str]] = {}
    for fqan in delegated:
        by_vo.setdefault(fqan_vo(fqan), []).append(fqan)
    return tuple(VomsRequest(vo, tuple(fqans), tuple(servers_of(vo, named + listed)))
                 for vo, fqans in by_vo.items())


def _trusted_acs(rt: Runtime, pem: bytes) -> list[VomsAttributes]:
    """The ACs of the proxy ``pem`` that verify (trust, signature, holder, targets) at their
    own start: an old AC has usually ended by the renewal, and its server is still the one to
    ask."""
    sec = rt.settings.security
    try:
        chain = load_pem_chain(pem)
        starts = sorted({ac.not_before for ac in voms_attributes(chain)})
        return [ac for at in starts
                for ac in voms_attributes(chain, vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, at=at,
                                          host_names=ac_host_names(rt))
                if ac.verified and ac.not_before == at]
    except ProxyError:
        return []


def ac_problem(rt: Runtime, renewed_pem: bytes, request: VomsRequest, der: bytes, now: dt.datetime) -> str | None:
    """None when the DER AC a VOMS server answered for ``request`` is usable with the renewed
    proxy ``renewed_pem`` at ``now`` (aware UTC): it verifies (a server this service trusts,
    holder the proxy's user, valid, targets), is of the request's VO and proves its FQANs
    (:func:`proves_delegated`); else why not (the edge then asks the next server)."""
    sec = rt.settings.security
    try:
        attrs = ac_attributes(der, load_pem_chain(renewed_pem), vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, at=now,
                              host_names=ac_host_names(rt))
    except ProxyError as exc:
        return f"its answer is not a usable AC: {exc}"
    if not attrs.verified:
        return f"its AC does not verify: {attrs.verify_error}"
    if attrs.vo != request.vo:
        return f"its AC is of VO {attrs.vo}, not {request.vo}"
    if not proves_delegated(attrs.fqans, request.fqans):
        return f"its AC holds {' '.join(attrs.fqans) or 'no FQAN'}, not {' '.join(request.requested)}"
    return None


def settle_voms_refresh(rt: Runtime, order: RenewalOrder, outcome: RenewalOutcome,
                        now: dt.datetime) -> RenewalOutcome:
    """The outcome to store: the refreshed proxy in place of MyProxy's when it is usable, else
    MyProxy's with a note (``outcome.notes``) saying why the VOMS attributes were not refreshed.

    Usable: a valid proxy of the owner at ``now`` (aware UTC; the checks of a renewed proxy,
    :func:`~wmproxy.security.renewed.check_renewed_proxy`) whose verified FQANs prove the
    delegated ones (``order.fqans``, :func:`proves_delegated`). An outcome without a proxy, or of an order
    without VOMS requests, is returned as it is.
    """
    if not order.voms or outcome.proxy_pem is None:
        return outcome
    problem = outcome.voms_error or "no VOMS server answered"
    if outcome.refreshed_pem is not None:
        sec = rt.settings.security
        try:
            check_renewed_proxy(outcome.refreshed_pem, order.owner_dn, sec.ca_dir, now, stored_pem=order.proxy_pem,
                                max_depth=rt.settings.limits.max_proxy_chain_depth)
            fqans = verified_fqans(load_pem_chain(outcome.refreshed_pem), vomsdir=sec.vomsdir, ca_dir=sec.ca_dir,
                                   at=now, host_names=ac_host_names(rt))
        except ProxyError as exc:
            problem = f"the refreshed proxy is not usable: {exc}"
        else:
            if proves_delegated(fqans, order.fqans):
                return replace(outcome, proxy_pem=outcome.refreshed_pem, refreshed_pem=None, voms_error=None)
            problem = (f"the VOMS server granted {' '.join(fqans) or 'no attribute this service can verify'}, "
                       f"which does not prove the delegated {' '.join(order.fqans)}")
    return replace(outcome, refreshed_pem=None,
                   notes=(*outcome.notes, f"VOMS attributes not refreshed: {problem}"))
