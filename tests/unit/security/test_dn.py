from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from wmproxy.security.dn import parse_slash_dn, slash_dn


def _name(*pairs):
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v)]) for o, v in pairs])


class TestSlashDn:
    def test_grid_user_dn_in_der_order(self):
        name = _name(
            (NameOID.COUNTRY_NAME, "XX"), (NameOID.ORGANIZATION_NAME, "Grid"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"), (NameOID.COMMON_NAME, "Jane Doe"),
        )
        assert slash_dn(name) == "/C=XX/O=Grid/OU=Users/CN=Jane Doe"

    def test_values_are_raw_and_short_names_are_openssls(self):
        name = _name(
            (NameOID.DOMAIN_COMPONENT, "ch"), (NameOID.DOMAIN_COMPONENT, "cern"),
            (NameOID.COMMON_NAME, "Jane Doe, Jr+x=y"), (NameOID.EMAIL_ADDRESS, "jd@x.org"),
            (NameOID.USER_ID, "jdoe"), (NameOID.SERIAL_NUMBER, "42"), (NameOID.LOCALITY_NAME, "Geneva"),
            (NameOID.STATE_OR_PROVINCE_NAME, "GE"),
        )
        assert slash_dn(name) == (
            "/DC=ch/DC=cern/CN=Jane Doe, Jr+x=y/emailAddress=jd@x.org/UID=jdoe/serialNumber=42/L=Geneva/ST=GE"
        )

    def test_unknown_attribute_uses_dotted_oid(self):
        name = _name((x509.ObjectIdentifier("1.2.3.4"), "v"))
        assert slash_dn(name) == "/1.2.3.4=v"

    def test_empty_name(self):
        assert slash_dn(x509.Name([])) == ""


class TestParseSlashDn:
    def test_round_trip(self):
        dn = "/C=XX/O=wmproxy-demo/OU=Users/CN=Demo User/emailAddress=d@x.org"
        assert slash_dn(parse_slash_dn(dn)) == dn

    @pytest.mark.parametrize("bad", ["C=XX", "/C=XX/nonsense", "/Foo=bar"])
    def test_refuses_malformed(self, bad):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_slash_dn(bad)
