"""proxyCertInfo encoding and decoding (security/pci.py): round trips, and the decoding that
is remembered per value (issue 14) gives what a fresh decoding gives and never remembers a
malformed value."""

from __future__ import annotations

import pytest

from wmproxy.security.pci import INHERIT_ALL_OID, LIMITED_PROXY_OID, ProxyCertInfo, decode_pci, encode_pci


@pytest.mark.parametrize("info", [
    ProxyCertInfo(INHERIT_ALL_OID),
    ProxyCertInfo(INHERIT_ALL_OID, path_len=0),
    ProxyCertInfo(LIMITED_PROXY_OID, path_len=3),
    ProxyCertInfo("1.2.3.4", policy=b"policy bytes"),
])
def test_round_trip_with_and_without_the_remembered_decoding(info: ProxyCertInfo) -> None:
    der = encode_pci(info)
    assert decode_pci(der) == info
    assert decode_pci(bytes(der)) == info  # an equal value: the remembered result
    assert decode_pci.__wrapped__(der) == info  # decoded afresh


@pytest.mark.parametrize("der", [
    b"", b"\x30\x00", b"\x30\x03\x06\x01", encode_pci(ProxyCertInfo(INHERIT_ALL_OID)) + b"x",
])
def test_malformed_values_raise_every_time(der: bytes) -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="bad proxyCertInfo"):
            decode_pci(der)


def test_limited_and_unlimited_values_stay_apart() -> None:
    limited = encode_pci(ProxyCertInfo(LIMITED_PROXY_OID))
    full = encode_pci(ProxyCertInfo(INHERIT_ALL_OID))
    assert [decode_pci(der).policy_language for der in (limited, full, limited, full)] == [
        LIMITED_PROXY_OID, INHERIT_ALL_OID, LIMITED_PROXY_OID, INHERIT_ALL_OID]
