"""Distinguished names in the grid "slash" form (OpenSSL ``X509_NAME_oneline``).

``/C=XX/O=Grid/OU=Users/CN=Jane Doe, Jr/emailAddress=jd@x.org``: one ``/short=value``
per attribute, raw (unescaped) values, DER order. This is *not* RFC 4514; see
``peers.md`` §2.6.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

# OpenSSL short names (obj_dat.h) of the attributes seen in grid DNs.
_SHORT_NAMES: dict[ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.USER_ID: "UID",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    ObjectIdentifier("2.5.4.41"): "name",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
}
_OIDS: dict[str, ObjectIdentifier] = {v: k for k, v in _SHORT_NAMES.items()}


def slash_dn(name: x509.Name) -> str:
    """Format ``name`` as a grid slash DN, e.g. ``/C=XX/O=Grid/OU=Users/CN=Jane Doe``.

    Attributes appear in DER order (country first for usual DNs), each as
    ``/<OpenSSL short name>=<raw value>``; an attribute without a short name uses
    its dotted OID. Values are not escaped (as ``openssl -nameopt compat``); bytes
    values (bit strings) are shown as lowercase hex. The empty name gives ``""``.
    """
    parts = []
    for attr in name:
        key = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
        value = attr.value.hex() if isinstance(attr.value, bytes) else attr.value
        parts.append(f"/{key}={value}")
    return "".join(parts)


def parse_slash_dn(dn: str) -> x509.Name:
    """Parse a slash DN (``/C=XX/O=Grid/CN=Jane``) into an ``x509.Name``, one RDN per part.

    Only for DNs we write ourselves (test PKI, configuration): values must not
    contain ``/``. Short names are those of :func:`slash_dn` or dotted OIDs.

    Raises:
        ValueError: not of the form ``/k=v/k=v...`` or an unknown attribute name.
    """
    if not dn.startswith("/"):
        raise ValueError(f"not a slash DN: {dn!r}")
    attrs = []
    for part in dn[1:].split("/"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"bad DN component {part!r} in {dn!r}")
        oid = _OIDS.get(key)
        if oid is None:
            try:
                oid = ObjectIdentifier(key)
            except ValueError:
                raise ValueError(f"unknown DN attribute {key!r} in {dn!r}") from None
        attrs.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
    return x509.Name(attrs)
