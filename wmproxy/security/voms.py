"""VOMS attribute certificates (RFC 5755 ACs) carried by VOMS proxies.

Layout (``peers.md`` §4.3): the proxy extension ``1.3.6.1.4.1.8005.100.100.5`` holds
``SEQUENCE OF SEQUENCE OF AttributeCertificate``. In each AC, the attribute
``1.3.6.1.4.1.8005.100.100.4`` (IetfAttrSyntax) gives the policy authority
``<vo>://<host>:<port>`` and the FQANs; the AC extension ``1.3.6.1.4.1.8005.100.100.10``
(certseq, ``SEQUENCE { SEQUENCE OF Certificate }``) embeds the VOMS server's
certificate chain.

Verification is one function, :func:`_judge` (:func:`_verify`, then the VO of the FQANs),
reached through :func:`voms_attributes` (with ``vomsdir`` and ``ca_dir``), :func:`ac_attributes`
and :func:`verified_fqans`; every service path that
believes an FQAN (the caller's FQANs at the TLS edge, a delegated proxy's FQANs for the
registered JDL's ``VOMS_FQAN``, mapping, ACL checks and getDelegatedProxyInfo /
getJobProxyInfo) goes through it. It does what libvomsapi's VERIFY_FULL does for the
cases the service meets:

* the AC holder is a certificate of the chain (serial and issuer, or subject);
* the signer is trusted: the embedded VOMS certificate chain matches the
  ``<vomsdir>/<vo>/<host>.lsc`` DN list (or, old style, is a byte-identical copy of a
  certificate in ``<vomsdir>/<vo>/`` or ``<vomsdir>/``), and that certificate verifies
  against ``ca_dir`` by OpenSSL, which checks each issuer's *signature* (its key), so a
  fake CA that copies the real CA's DN does not pass;
* the AC signature over the raw ``acinfo`` bytes verifies with the signer's key;
* the AC is inside its validity period at the time of the check;
* AC targeting (RFC 5755 §4.3.2, libvomsapi's VER_TARGETS): an AC with a Targets extension
  (``2.5.29.55``) is only for the services it names; it verifies only when a ``targetName``
  (a uniformResourceIdentifier holding the FQDN, as ``voms-proxy-init --target`` writes
  it, or a dNSName; a URI ``scheme://host...`` counts by its host) names one of the
  ``host_names`` given, compared case-insensitively without a trailing dot. The service
  passes its own names (:func:`service_host_names`: ``[service] host`` and the host
  certificate's DNS names); with none, every AC with targets is refused;
* critical AC extensions (RFC 5755 §4.3): an AC with a critical extension the service does
  not know (:data:`KNOWN_CRITICAL_EXTENSIONS`) does not verify.
* every FQAN is of the AC's VO (its first group is ``/<vo>``, the VO of the policy authority
  the ``.lsc`` was chosen by): a server trusted for one VO does not speak for another. An AC
  holding another VO's FQAN does not verify at all, as libvomsapi refuses it (logged once per
  AC, :func:`_foreign_fqans`).

An AC that fails any check is returned with ``verified=False`` and the reason; such an AC
is never a source of FQANs (:func:`verified_fqans` skips it).

Issue 14 (a stored proxy's ACs are checked at every jobSubmit): an AC's decoding, what it says
by itself and its signature's check by a given signer are kept per process (:func:`_kept`,
:func:`_facts`, :func:`_checked_signature`); the VOMS server's certificate goes through
:func:`wmproxy.security.chain.verify_chain`, which keeps what OpenSSL verified while nothing
it was verified against changed. The holder, the validity at ``at``, the vomsdir and the
targets are checked at every call.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from cachetools import LRUCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ObjectIdentifier
from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ, useful

from wmproxy.errors import ProxyError
from wmproxy.security.chain import certificate_der, load_pem_chain, verify_chain
from wmproxy.security.dn import slash_dn

if TYPE_CHECKING:
    from pyasn1_modules import rfc5280, rfc5755

T = TypeVar("T")

log = logging.getLogger(__name__)

VOMS_AC_OID = ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")
VOMS_FQAN_ATTRIBUTE_OID = "1.3.6.1.4.1.8005.100.100.4"
VOMS_CERTSEQ_OID = "1.3.6.1.4.1.8005.100.100.10"
#: AC Targets extension (RFC 5755 §4.3.2), always critical.
AC_TARGETS_OID = "2.5.29.55"
#: The AC extensions that may be critical: Targets (checked), no-revocation-available
#: (RFC 5755 §4.3.6), authority key identifier (§4.3.3) and VOMS's certseq (read). VOMS marks
#: none but Targets critical (voms-proxy-fake, tags ``1.3.6.1.4.1.8005.100.100.11`` included).
KNOWN_CRITICAL_EXTENSIONS = frozenset({AC_TARGETS_OID, "2.5.29.56", "2.5.29.35", VOMS_CERTSEQ_OID})

_SIGNATURE_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.5": hashes.SHA1,
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
    "1.2.840.113549.1.1.14": hashes.SHA224,
    "1.2.840.10045.4.1": hashes.SHA1,
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}


@dataclass(frozen=True)
class VomsAttributes:
    """One VOMS AC of a proxy chain.

    Attributes:
        vo: VO name, from the policy authority ``<vo>://<host>:<port>``.
        fqans: the FQANs in AC order (first = primary), e.g. ``/atlas/Role=NULL/Capability=NULL``.
        holder_dn, holder_ca_dn: slash DNs of the holder certificate (the user's
            certificate named by the AC holder) and of its issuer.
        issuer_dn: slash DN of the VOMS server (the AC issuer).
        issuer_ca_dn: issuer DN of the VOMS certificate embedded in the AC, "" without one.
        uri: ``host:port`` of the VOMS server.
        not_before, not_after: AC validity, UTC-aware.
        verified: True only if verification was asked for and passed (trust, signature,
            holder and validity period, see the module docstring).
        verify_error: why verification failed ("" when verified or not asked for); it names
            no server path.
    """

    vo: str
    fqans: tuple[str, ...]
    holder_dn: str
    holder_ca_dn: str
    issuer_dn: str
    issuer_ca_dn: str
    uri: str
    not_before: datetime
    not_after: datetime
    verified: bool = False
    verify_error: str = ""

    def valid_at(self, at: datetime | None = None) -> bool:
        """True when ``at`` (UTC, naive means UTC; default now) is inside the AC validity."""
        at = _utc(at)
        return self.not_before <= at <= self.not_after


@functools.cache
def _asn1() -> SimpleNamespace:
    """pyasn1-modules' RFC 5280 and RFC 5755 modules (``rfc5280``, ``rfc5755``) and the shapes
    of a VOMS extension built on them: ``ACSeqs`` (the extension, a ``SEQUENCE OF SEQUENCE OF
    AttributeCertificate``) and ``CertSeq`` (an AC's certseq, a ``SEQUENCE OF SEQUENCE OF
    Certificate``), imported and built at the first use: importing them is about 0.2 s of CPU
    (their classes are built at import) that a process never reading an AC (most of the
    service's processes, the admin commands) does not pay."""
    from pyasn1_modules import rfc5280, rfc5755

    class ACs(univ.SequenceOf):
        componentType = rfc5755.AttributeCertificate()

    class ACSeqs(univ.SequenceOf):
        componentType = ACs()

    class Certs(univ.SequenceOf):
        componentType = rfc5280.Certificate()

    class CertSeq(univ.SequenceOf):
        componentType = Certs()

    return SimpleNamespace(rfc5280=rfc5280, rfc5755=rfc5755, ACSeqs=ACSeqs, CertSeq=CertSeq)


@dataclass(frozen=True)
class _RawAC:
    ac: rfc5755.AttributeCertificate
    acinfo_der: bytes  # the signed bytes, cut from the extension (never re-encoded)
    # what is read of the AC alone (_facts), and the signature checks done (by the signer's DER):
    # kept with the AC, which _kept keeps per process
    known: dict[object, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class _Facts:
    """What an AC says by itself (:func:`_facts`): :class:`VomsAttributes` but the holder's
    certificate, and what the checks need of it."""

    vo: str
    fqans: tuple[str, ...]
    issuer_dn: str
    uri: str
    not_before: datetime
    not_after: datetime
    holder: tuple[int, str] | None  # the holder's serial and issuer (or subject) DN
    embedded: tuple[x509.Certificate, ...]  # the VOMS server's certificates in the AC
    issuer_ca_dn: str
    lsc_dns: tuple[str, ...]  # the DN list an .lsc must start with (_check_lsc)
    signer_dn: str  # the first embedded certificate's subject, "" without one


def voms_attributes(
    chain: list[x509.Certificate],
    *,
    vomsdir: str | os.PathLike[str] | None = None,
    ca_dir: str | os.PathLike[str] | None = None,
    at: datetime | None = None,
    host_names: Collection[str] = (),
) -> list[VomsAttributes]:
    """The VOMS ACs of a leaf-first proxy chain.

    The ACs of the leaf-most certificate carrying the VOMS extension are returned (as
    libvomsapi's RECURSE_CHAIN does), so proxies made below a VOMS proxy still expose
    them. No VOMS extension gives ``[]``.

    Args:
        chain: leaf first (proxies, user certificate, optionally the CA).
        vomsdir: ``X509_VOMS_DIR``-style directory with ``<vo>/<host>.lsc`` files.
        ca_dir: grid CA directory the VOMS server certificate must chain to.
        at: time of the check (UTC; default now): AC validity and the VOMS certificate chain.
        host_names: the names of the service the ACs are verified for (an AC with targets
            verifies only if one names one of them, RFC 5755 §4.3.2): normally
            :func:`service_host_names`; empty, every AC with targets is refused.

    With both ``vomsdir`` and ``ca_dir`` each AC is verified at ``at`` (see the module
    docstring) and ``verified``/``verify_error`` set; a failed check is not an exception.

    Raises:
        ProxyError: the VOMS extension or an AC in it is malformed.
    """
    ext = _voms_extension(chain)
    if ext is None:
        return []
    if not isinstance(ext.value, x509.UnrecognizedExtension):  # cryptography does not parse VOMS ACs
        raise _malformed("the VOMS extension was parsed as a known extension type")
    result = []
    for raw in _decode_extension(ext.value.value):
        facts = _facts(raw)
        holder = _holder_cert(facts, chain)
        attrs = _attributes(facts, holder)
        if vomsdir is not None and ca_dir is not None:
            problem = _judge(raw, facts, holder, str(vomsdir), str(ca_dir), at, host_names)
            attrs = replace(attrs, verified=not problem, verify_error=problem)
        result.append(attrs)
    return result


def _voms_extension(chain: list[x509.Certificate]) -> x509.Extension[x509.ExtensionType] | None:
    """The VOMS extension of the first certificate of ``chain`` that carries one; None without.

    Raises:
        ProxyError: a certificate's extensions are unreadable.
    """
    for cert in chain:
        try:
            # a loop, not get_extension_for_oid: its ExtensionNotFound for each certificate
            # without ACs cost about 3 µs a certificate (issue 14)
            ext: x509.Extension[x509.ExtensionType] | None = next(
                (e for e in cert.extensions if e.oid == VOMS_AC_OID), None)
        except ValueError as exc:
            raise ProxyError(f"unreadable certificate extensions: {exc}") from None
        if ext is not None:
            return ext
    return None


def carries_acs(chain: list[x509.Certificate]) -> bool:
    """Whether a certificate of ``chain`` carries the VOMS extension, so that
    :func:`voms_attributes` may find ACs in it; True also when a certificate's extensions
    are unreadable (:func:`voms_attributes` then raises)."""
    try:
        return _voms_extension(chain) is not None
    except ProxyError:
        return True


def verified_fqans(
    chain: list[x509.Certificate],
    *,
    vomsdir: str | os.PathLike[str] | None,
    ca_dir: str | os.PathLike[str] | None,
    at: datetime | None = None,
    host_names: Collection[str] = (),
) -> tuple[str, ...]:
    """The FQANs the service believes for a leaf-first chain: those of its VOMS ACs that
    verify at ``at`` for a service named ``host_names`` (:func:`voms_attributes`), in AC
    order, so the first is the primary FQAN.

    Unverifiable ACs (untrusted signer, bad signature, another holder, outside their validity
    period, targeted at other services, an unknown critical extension, an FQAN of another VO
    than the AC's) contribute nothing;
    without ``vomsdir`` or ``ca_dir`` nothing verifies and the result is ``()``.

    Raises:
        ProxyError: the VOMS extension or an AC in it is malformed.
    """
    if not vomsdir or not ca_dir:
        return ()
    acs = voms_attributes(chain, vomsdir=vomsdir, ca_dir=ca_dir, at=at, host_names=host_names)
    return tuple(fqan for ac in acs if ac.verified for fqan in ac.fqans)


def service_host_names(host_cert: str | os.PathLike[str], host: str = "") -> tuple[str, ...]:
    """The names under which this service is an AC target (RFC 5755 §4.3.2): ``host`` (the
    ``[service] host`` setting), then the DNS names of the host certificate ``host_cert`` (the
    ``[security] host_cert`` PEM file): its subjectAltName dNSNames and its subject CN (a
    Globus ``host/`` prefix removed). Lower case, without a trailing dot, each once.

    The certificate is read again only when its file changes (size, mtime, inode); a missing
    or unreadable file adds no names (``host`` is still given).
    """
    names = [host, *_host_cert_names(str(host_cert))]
    return tuple(dict.fromkeys(key for key in map(_host_key, names) if key))


def _host_cert_names(path: str) -> tuple[str, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _HOST_CERT_NAMES_LOCK:
        kept = _HOST_CERT_NAMES.get(path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    try:
        with open(path, "rb") as handle:
            cert = load_pem_chain(handle.read())[0]
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns = []
        cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    except (OSError, ProxyError, ValueError):
        return ()
    names = (*dns, *(cn.removeprefix("host/") for cn in cns))
    with _HOST_CERT_NAMES_LOCK:
        _HOST_CERT_NAMES[path] = (stamp, names)
    return names


#: host certificate path -> ((inode, size, mtime), its DNS names): :func:`service_host_names`.
_HOST_CERT_NAMES: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {}
_HOST_CERT_NAMES_LOCK = threading.Lock()


def _host_key(name: str) -> str:
    """A host name as targets are compared: lower case, one trailing dot removed."""
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


# --- decoding ---


def _malformed(what: str) -> ProxyError:
    return ProxyError(f"malformed VOMS attribute certificate: {what}")


#: Decoded VOMS extensions (their ACs) and embedded VOMS certificate sequences, by their DER,
#: per process: the ACs of a stored proxy are verified again at every jobSubmit with it, and
#: pyasn1's decoding of them was about 80 % of that (7-9 ms per jobSubmit with a VOMS proxy,
#: issue 14). Decoding is a function of the bytes alone: what depends on the time, the vomsdir
#: or the CA directory is still checked on every call. What fails to decode is not kept, nor
#: what is decoded from more than :data:`DECODED_DER_MAX` bytes (real ACs are 1-5 KB; decoded,
#: pyasn1 holds about thirty times their size, and a user writes the extensions of the proxies
#: it delegates). Bounded LRU; entries kept in :data:`_decoded`.
DECODED_MAX = 256
#: Largest DER (bytes) whose decoding is kept.
DECODED_DER_MAX = 16 * 1024
_decoded: LRUCache[tuple[str, bytes], Any] = LRUCache(DECODED_MAX)
_decoded_lock = threading.Lock()


def _kept(kind: str, der: bytes, decode: Callable[[bytes], Any]) -> Any:
    """``decode(der)``, once per distinct ``der`` of ``kind`` (:data:`_decoded`) of at most
    :data:`DECODED_DER_MAX` bytes; its errors are raised and not kept."""
    with _decoded_lock:
        found = _decoded.get((kind, der))
    if found is not None:
        return found
    value = decode(der)
    if len(der) <= DECODED_DER_MAX:
        with _decoded_lock:
            _decoded[(kind, der)] = value
    return value


def _decode_extension(der: bytes) -> list[_RawAC]:
    """The ACs of a VOMS extension's DER (decoded once per distinct DER: :func:`_kept`).

    Raises:
        ProxyError: malformed.
    """
    return list(cast(list[_RawAC], _kept("extension", der, _decode_acs)))


def _decode_acs(der: bytes) -> list[_RawAC]:
    try:
        decoded, rest = decoder.decode(der, asn1Spec=_asn1().ACSeqs())
    except PyAsn1Error as exc:
        raise _malformed(f"cannot decode the AC sequence ({exc})") from None
    if rest:
        raise _malformed("trailing bytes after the AC sequence")
    acs = [ac for seq in decoded for ac in seq]
    infos = [info for seq in _children(der) for ac in _children(seq) for info in _children(ac)[:1]]
    if not acs:
        raise _malformed("the VOMS extension holds no AC")
    if len(infos) != len(acs):
        raise _malformed("inconsistent AC encoding")
    return [_RawAC(ac, info) for ac, info in zip(acs, infos, strict=True)]


def ac_attributes(
    der: bytes,
    chain: list[x509.Certificate],
    *,
    vomsdir: str | os.PathLike[str],
    ca_dir: str | os.PathLike[str],
    at: datetime | None = None,
    host_names: Collection[str] = (),
) -> VomsAttributes:
    """One DER attribute certificate (as a VOMS server answers it) read and verified for the
    holder certificates of the leaf-first ``chain`` at ``at``, as :func:`voms_attributes`
    verifies the ACs a proxy carries.

    Raises:
        ProxyError: ``der`` is not a DER AttributeCertificate, or a malformed VOMS AC.
    """
    (raw,) = _decode_extension(voms_extension([der]).value)
    facts = _facts(raw)
    holder = _holder_cert(facts, chain)
    problem = _judge(raw, facts, holder, str(vomsdir), str(ca_dir), at, host_names)
    return replace(_attributes(facts, holder), verified=not problem, verify_error=problem)


def voms_extension(acs: Collection[bytes]) -> x509.UnrecognizedExtension:
    """The proxy extension (:data:`VOMS_AC_OID`, not critical) carrying the DER attribute
    certificates ``acs``, in their order, in one ``SEQUENCE OF AttributeCertificate`` inside
    the outer ``SEQUENCE OF``, as ``voms-proxy-init`` writes several VOs' ACs.

    Raises:
        ProxyError: ``acs`` is empty, or one is not a DER ``AttributeCertificate``.
    """
    if not acs:
        raise ProxyError("no VOMS attribute certificate to carry")
    for der in acs:
        try:
            _, rest = decoder.decode(der, asn1Spec=_asn1().rfc5755.AttributeCertificate())
        except PyAsn1Error:
            rest = b"?"
        if rest:
            raise _malformed("not a DER attribute certificate")
    return x509.UnrecognizedExtension(VOMS_AC_OID, _der_sequence(_der_sequence(b"".join(acs))))


def _der_sequence(content: bytes) -> bytes:
    """A DER SEQUENCE of the encoded ``content``."""
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return b"\x30" + length + content


def _children(tlv: bytes) -> list[bytes]:
    """The complete TLVs inside the constructed DER TLV ``tlv``."""
    start, end = _header(tlv, 0)
    out, pos = [], start
    while pos < end:
        _, stop = _header(tlv, pos)
        out.append(tlv[pos:stop])
        pos = stop
    return out


def _header(data: bytes, pos: int) -> tuple[int, int]:
    """(content start, TLV end) of the DER TLV at ``pos`` (single-byte tags only)."""
    try:
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[pos:pos + n], "big")
            pos += n
    except IndexError:
        raise _malformed("truncated DER") from None
    if pos + length > len(data):
        raise _malformed("truncated DER")
    return pos, pos + length


def _once(raw: _RawAC, key: object, compute: Callable[[], T]) -> T:
    """``compute()``, once per decoded AC ``raw`` and ``key`` (kept in ``raw.known``, which the
    decoding keeps per process: :func:`_kept`); what it raises is not kept."""
    found = raw.known.get(key)
    if found is None:
        found = raw.known[key] = compute()
    return cast(T, found)


def _facts(raw: _RawAC) -> _Facts:
    """What ``raw`` says by itself, read once per decoded AC (:func:`_once`).

    Raises:
        ProxyError: malformed (not kept: raised again at each call).
    """
    return _once(raw, _Facts, lambda: _read_facts(raw.ac))


def _read_facts(ac: rfc5755.AttributeCertificate) -> _Facts:
    info = ac["acinfo"]
    policy, fqans = _fqan_attribute(info)
    vo, sep, uri = policy.partition("://")
    if not sep or not vo:
        raise _malformed(f"policy authority {policy!r} is not <vo>://<host>:<port>")
    issuer = info["issuer"]
    if issuer.getName() != "v2Form":
        raise _malformed("AC issuer is not in v2Form")
    issuer_dn = _general_names_dn(issuer["v2Form"]["issuerName"])
    embedded = tuple(_embedded_certs(info))
    base = info["holder"]["baseCertificateID"]
    holder = (int(base["serial"]), _general_names_dn(base["issuer"])) if base.isValue else None
    period = info["attrCertValidityPeriod"]
    signers = [c for c in embedded if c.subject != c.issuer] or list(embedded[:1])
    return _Facts(
        vo=vo,
        fqans=fqans,
        issuer_dn=issuer_dn,
        uri=uri,
        not_before=_time(period["notBeforeTime"]),
        not_after=_time(period["notAfterTime"]),
        holder=holder,
        embedded=embedded,
        issuer_ca_dn=slash_dn(embedded[0].issuer) if embedded else "",
        lsc_dns=(slash_dn(signers[0].subject), *(slash_dn(c.issuer) for c in signers)) if signers else (),
        signer_dn=slash_dn(embedded[0].subject) if embedded else "",
    )


def _attributes(facts: _Facts, holder: _Holder | None) -> VomsAttributes:
    """The :class:`VomsAttributes` of an AC (not verified) whose holder in the chain is ``holder``
    (without one, the DN the AC names)."""
    if holder is not None:
        holder_dn, holder_ca_dn = holder.dn, holder.ca_dn
    else:
        holder_dn, holder_ca_dn = (facts.holder[1] if facts.holder is not None else ""), ""
    return VomsAttributes(
        vo=facts.vo,
        fqans=facts.fqans,
        holder_dn=holder_dn,
        holder_ca_dn=holder_ca_dn,
        issuer_dn=facts.issuer_dn,
        issuer_ca_dn=facts.issuer_ca_dn,
        uri=facts.uri,
        not_before=facts.not_before,
        not_after=facts.not_after,
    )


def _fqan_attribute(info: rfc5755.AttributeCertificateInfo) -> tuple[str, tuple[str, ...]]:
    for attribute in info["attributes"]:
        if str(attribute["type"]) != VOMS_FQAN_ATTRIBUTE_OID:
            continue
        if len(attribute["values"]) != 1:
            raise _malformed("the FQAN attribute must have one value")
        return cast(tuple[str, tuple[str, ...]], _kept("fqans", bytes(attribute["values"][0]), _decode_fqans))
    raise _malformed("no FQAN attribute (1.3.6.1.4.1.8005.100.100.4)")


def _decode_fqans(der: bytes) -> tuple[str, tuple[str, ...]]:
    """The policy authority URI and the FQANs of the DER of an FQAN attribute's value.

    Raises:
        ProxyError: malformed.
    """
    try:
        value, _ = decoder.decode(der, asn1Spec=_asn1().rfc5755.IetfAttrSyntax())
    except PyAsn1Error as exc:
        raise _malformed(f"cannot decode the FQAN attribute ({exc})") from None
    authority = value["policyAuthority"]
    uris = [str(gn["uniformResourceIdentifier"]) for gn in authority
            if gn.getName() == "uniformResourceIdentifier"] if authority.isValue else []
    if not uris:
        raise _malformed("the FQAN attribute has no policy authority URI")
    fqans = []
    for item in value["values"]:
        kind = item.getName()
        if kind == "octets":
            fqans.append(bytes(item["octets"]).decode("utf-8", "replace"))
        elif kind == "string":
            fqans.append(str(item["string"]))
    return uris[0], tuple(fqans)


def _name(name: rfc5280.Name) -> x509.Name:
    rdns = []
    try:
        for rdn in name["rdnSequence"]:
            attrs = []
            for atv in rdn:
                value = _kept("text", bytes(atv["value"]), _decode_text)
                attrs.append(x509.NameAttribute(ObjectIdentifier(str(atv["type"])), value))
            rdns.append(x509.RelativeDistinguishedName(attrs))
        return x509.Name(rdns)
    except (PyAsn1Error, ValueError) as exc:
        raise _malformed(f"unreadable distinguished name ({exc})") from None


def _decode_text(der: bytes) -> str:
    """The text of a DER string (a name attribute's value). Raises PyAsn1Error."""
    value, _ = decoder.decode(der)
    return str(value)


def _general_names_dn(names: rfc5280.GeneralNames) -> str:
    for gn in names:
        if gn.getName() == "directoryName":
            return slash_dn(_name(gn["directoryName"]))
    raise _malformed("no directory name")


@dataclass(frozen=True)
class _Holder:
    """The chain's certificate an AC names as its holder, and its slash DNs."""

    cert: x509.Certificate
    dn: str
    ca_dn: str


def _holder_cert(facts: _Facts, chain: list[x509.Certificate]) -> _Holder | None:
    """The chain certificate the AC holder names: its serial, and its issuer or subject.

    RFC 5755 names the holder by (issuer, serial); voms-proxy-fake writes the holder's
    own subject instead of its issuer, which libvomsapi accepts too.
    """
    if facts.holder is None:
        return None
    serial, dn = facts.holder
    for cert in chain:
        if cert.serial_number != serial:
            continue
        subject, issuer = slash_dn(cert.subject), slash_dn(cert.issuer)
        if dn in (issuer, subject):
            return _Holder(cert, subject, issuer)
    return None


def _embedded_certs(info: rfc5755.AttributeCertificateInfo) -> list[x509.Certificate]:
    extensions = info["extensions"]
    if not extensions.isValue:
        return []
    for ext in extensions:
        if str(ext["extnID"]) != VOMS_CERTSEQ_OID:
            continue
        return list(cast(list[x509.Certificate], _kept("certificates", bytes(ext["extnValue"]), _decode_certs)))
    return []


def _decode_certs(der: bytes) -> list[x509.Certificate]:
    """The certificates of an embedded VOMS certificate sequence (VOMS_CERTSEQ_OID's value).

    Raises:
        ProxyError: malformed.
    """
    try:
        decoder.decode(der, asn1Spec=_asn1().CertSeq())  # shape check
        ders = [c for seq in _children(der) for c in _children(seq)]
        certs = [x509.load_der_x509_certificate(c) for c in ders]
        for cert in certs:  # cryptography reads names when asked: an unreadable one is malformed here
            _ = (cert.subject, cert.issuer)
        return certs
    except (PyAsn1Error, ValueError) as exc:
        raise _malformed(f"unreadable embedded VOMS certificate ({exc})") from None


def _time(value: useful.GeneralizedTime) -> datetime:
    try:
        return _utc(value.asDateTime)
    except (PyAsn1Error, ValueError) as exc:
        raise _malformed(f"bad validity time ({exc})") from None


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


# --- verification ---


def _judge(
    raw: _RawAC, facts: _Facts, holder: _Holder | None, vomsdir: str, ca_dir: str,
    at: datetime | None, host_names: Collection[str],
) -> str:
    """"" when the AC verifies (:func:`_verify`) and every FQAN it holds is of its own VO
    (:func:`_foreign_fqans`), else the reason."""
    return _verify(raw, facts, holder, vomsdir, ca_dir, at, host_names) or _once(
        raw, "foreign FQANs", lambda: _foreign_fqans(facts))


def _foreign_fqans(facts: _Facts) -> str:
    """"" when every FQAN of a trusted AC is of the AC's VO, else the reason, logged (once per AC:
    the caller keeps it with the AC, :func:`_once`).

    The vomsdir trusts a VOMS server for one VO (``<vomsdir>/<vo>/<host>.lsc``): what it says of
    another VO's groups is not believed. As libvomsapi (``checkAttributes``: the top group of
    every FQAN must be ``/<vo>``, else the whole AC fails, ``AC_ERR_ATTRIB_FQAN``, which
    ``voms-proxy-info`` reports), the AC is refused, not only those FQANs: its other FQANs come
    from a server that asserts what it may not.
    """
    top = f"/{facts.vo}"
    foreign = [fqan for fqan in facts.fqans if fqan != top and not fqan.startswith(top + "/")]
    if not foreign:
        return ""
    shown = ", ".join(repr(f[:200]) for f in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    holder = facts.holder[1] if facts.holder is not None else "?"
    log.warning("VOMS server %s (%s), trusted for VO %s, issued an AC to %s asserting FQANs of another VO (%s): "
                "the AC is not believed", facts.issuer_dn, facts.uri, facts.vo, holder, shown)
    return f"the AC of VO {facts.vo} holds FQANs of another VO ({shown})"


def _verify(
    raw: _RawAC, facts: _Facts, holder: _Holder | None, vomsdir: str, ca_dir: str,
    at: datetime | None, host_names: Collection[str],
) -> str:
    """"" when the AC verifies, else the reason (naming no server path). ``holder``: the chain's
    certificate the AC names (:func:`_holder_cert`)."""
    if holder is None:
        return "the AC holder is not a certificate of the chain"
    when = _utc(at)
    if not facts.not_before <= when <= facts.not_after:
        return (f"the AC is not valid at {when:%Y-%m-%d %H:%M:%S} UTC (valid from "
                f"{facts.not_before:%Y-%m-%d %H:%M:%S} to {facts.not_after:%Y-%m-%d %H:%M:%S} UTC)")
    embedded = facts.embedded
    host = facts.uri.rpartition(":")[0] or facts.uri
    if not _safe_component(facts.vo) or not _safe_component(host):
        return f"no trust anchor for VO {facts.vo!r} and VOMS host {host!r}"
    vo_dir = Path(vomsdir) / facts.vo
    if embedded:
        signer = embedded[0]
        lsc = vo_dir / f"{host}.lsc"
        if lsc.is_file():
            problem = _check_lsc(lsc, facts.lsc_dns, f"{facts.vo}/{host}.lsc")
        else:
            problem = "" if _trusted_copy(signer, vo_dir, Path(vomsdir)) else f"no {facts.vo}/{host}.lsc in the vomsdir"
        if problem:
            return problem
    else:
        found = _certs_named(facts.issuer_dn, vo_dir, Path(vomsdir))
        if not found:
            return f"no certificate of VOMS server {facts.issuer_dn} in the vomsdir"
        signer = found[0]
    if (facts.signer_dn if embedded else slash_dn(signer.subject)) != facts.issuer_dn:
        return "the embedded VOMS certificate is not the AC issuer"
    problem = _checked_signature(raw, signer)
    if problem:
        return problem
    try:
        verify_chain([signer, *[c for c in embedded[1:] if c.subject != c.issuer]], ca_dir, at=at)
    except ProxyError as exc:
        return f"VOMS server certificate: {exc}"
    # the AC's extensions and the names alone decide
    return _once(raw, ("extensions", tuple(host_names)), lambda: _check_extensions(raw.ac["acinfo"], host_names))


def _safe_component(name: str) -> bool:
    """A VO or host name from the AC that may name a vomsdir entry (no path tricks)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def _check_lsc(lsc: Path, expected: tuple[str, ...], label: str) -> str:
    """Compare the DN list(s) of an .lsc with the embedded VOMS chain's (``expected``: the
    server's DN, then the issuer DN of each of its certificates but a self-signed one,
    :attr:`_Facts.lsc_dns`); ``label`` names the file in messages (``<vo>/<host>.lsc``).

    An .lsc holds the VOMS server DN, its issuer's DN, and further issuers for
    intermediates; several chains may be separated by ``------NEXT CHAIN------``.
    """
    try:
        text = lsc.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable {label}: {type(exc).__name__}"
    chains: list[list[str]] = []
    current: list[str] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if line.startswith("-"):
            chains.append(current)
            current = []
        elif line and not line.startswith("#"):
            current.append(line)
    chains.append(current)
    for dns in chains:
        if dns and tuple(dns) == expected[: len(dns)] and len(dns) >= 2:
            return ""
    return f"lsc mismatch: {label} does not list {expected[0]} issued by {expected[1]}"


def _pem_certs(*dirs: Path) -> list[x509.Certificate]:
    out = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.suffix != ".lsc":
                try:
                    out.extend(load_pem_chain(path.read_bytes()))
                except (OSError, ProxyError):
                    continue
    return out


def _trusted_copy(signer: x509.Certificate, *dirs: Path) -> bool:
    return any(cert == signer for cert in _pem_certs(*dirs))


def _certs_named(dn: str, *dirs: Path) -> list[x509.Certificate]:
    return [cert for cert in _pem_certs(*dirs) if slash_dn(cert.subject) == dn]


def _checked_signature(raw: _RawAC, signer: x509.Certificate) -> str:
    """:func:`_check_signature`, once per AC and signer: the outcome depends on the signed bytes,
    the signature and the signer's key alone, and is kept with the AC (by the signer's DER)."""
    return _once(raw, ("signature", certificate_der(signer)), lambda: _check_signature(raw, signer))


def _check_signature(raw: _RawAC, signer: x509.Certificate) -> str:
    algorithm = str(raw.ac["signatureAlgorithm"]["algorithm"])
    hash_cls = _SIGNATURE_HASHES.get(algorithm)
    if hash_cls is None:
        return f"unsupported AC signature algorithm {algorithm}"
    signature = raw.ac["signatureValue"].asOctets()
    try:
        key = signer.public_key()  # an unknown key algorithm raises here
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, raw.acinfo_der, padding.PKCS1v15(), hash_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, raw.acinfo_der, ec.ECDSA(hash_cls()))
        else:
            return "unsupported VOMS server key type"
    except InvalidSignature:
        return "Cannot verify AC signature"
    except (UnsupportedAlgorithm, ValueError) as exc:
        return f"Cannot verify AC signature: {exc}"
    return ""


def _check_extensions(info: rfc5755.AttributeCertificateInfo, host_names: Collection[str]) -> str:
    """"" when the AC extensions allow the AC here, else the reason: the Targets extension
    (critical or not) must name one of ``host_names`` (RFC 5755 §4.3.2), and every other
    critical extension must be known (§4.3, :data:`KNOWN_CRITICAL_EXTENSIONS`)."""
    extensions = info["extensions"]
    if not extensions.isValue:
        return ""
    for ext in extensions:
        oid = str(ext["extnID"])
        if oid == AC_TARGETS_OID:
            problem = _check_targets(bytes(ext["extnValue"]), host_names)
            if problem:
                return problem
        elif bool(ext["critical"]) and oid not in KNOWN_CRITICAL_EXTENSIONS:
            return f"unknown critical AC extension {oid}"
    return ""


def _check_targets(der: bytes, host_names: Collection[str]) -> str:
    try:
        targets = _target_names(der)
    except (ProxyError, PyAsn1Error, UnicodeDecodeError):
        return "unable to parse the AC Targets extension"
    wanted = {key for key in map(_host_key, host_names) if key}
    if any(_host_key(_target_host(target)) in wanted for target in targets):
        return ""
    shown = ", ".join(repr(t[:100]) for t in targets[:3]) + (", ..." if len(targets) > 3 else "")
    if not targets:
        return "the AC is targeted at target groups or certificates only, not at this service"
    if not wanted:
        return f"the AC is targeted at {shown}; this service has no host name to match"
    return f"the AC is targeted at {shown}, not at this service"


def _target_host(target: str) -> str:
    """The host a target names: the FQDN itself (VOMS), or a URI's host."""
    if "://" not in target:
        return target
    try:
        return urlsplit(target).hostname or ""
    except ValueError:
        return ""


def _target_names(der: bytes) -> list[str]:
    """The dNSName and uniformResourceIdentifier ``targetName`` values of a Targets extension
    value, in either encoding met:

    * RFC 5755 §4.3.2: ``SEQUENCE OF Targets``, ``Targets ::= SEQUENCE OF Target``, ``Target``
      a CHOICE whose ``targetName`` is ``[0] EXPLICIT GeneralName``;
    * VOMS (``AC_TARGETS``/``AC_TARGET`` of libvomsapi): ``SEQUENCE { SEQUENCE OF SEQUENCE {
      [0] EXPLICIT GeneralName OPTIONAL, [1] group, [2] cert } }``.

    ``targetGroup`` and ``targetCert`` entries name no host and are left out.

    Raises:
        ProxyError, PyAsn1Error: not such a structure.
    """
    if not der or der[0] != 0x30 or _header(der, 0)[1] != len(der):
        raise _malformed("Targets is not a SEQUENCE")
    names: list[str] = []
    for targets in _children(der):
        if targets[0] != 0x30:
            raise _malformed("Targets is not a SEQUENCE OF")
        for target in _children(targets):
            tagged = [t for t in _children(target) if t[0] == 0xA0] if target[0] == 0x30 else [target]
            for name in tagged:
                if name[0] != 0xA0:
                    continue  # targetGroup [1], targetCert [2]
                inner = _children(name)
                if len(inner) != 1:
                    raise _malformed("targetName is not one GeneralName")
                general, rest = decoder.decode(inner[0], asn1Spec=_asn1().rfc5280.GeneralName())
                if rest:
                    raise _malformed("trailing bytes after a targetName")
                if general.getName() in ("dNSName", "uniformResourceIdentifier"):
                    names.append(bytes(general.getComponent().asOctets()).decode("ascii"))
    return names
