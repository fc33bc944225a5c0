"""Typed domain values become the wire strings of the WSDL types only here (``soap/convert.py``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.voms_support import fake_voms_proxy, fake_voms_server
from wmproxy.security.proxy_info import proxy_info
from wmproxy.services.renewal_info import ProxyRenewalInfo
from wmproxy.soap.convert import epoch, proxy_info_struct, proxy_renewal_info_struct


@pytest.fixture(scope="module")
def voms_server(pki, tmp_path_factory):
    return fake_voms_server(pki, tmp_path_factory.mktemp("voms-convert"))


@pytest.fixture(scope="module")
def voms_proxy(pki, voms_server):
    return fake_voms_proxy(pki, voms_server, voms_server.vomsdir.parent / "voms-proxy.pem")


def test_epoch_is_decimal_unix_seconds() -> None:
    assert epoch(datetime(2011, 3, 13, 7, 6, 40, tzinfo=UTC)) == "1300000000"
    assert epoch(datetime(2011, 3, 13, 8, 6, 40, 999_999, tzinfo=timezone(timedelta(hours=1)))) == "1300000000"


class TestProxyInfoStruct:
    def test_strength_is_decimal_bits_and_times_epoch_second_strings(self, voms_proxy, voms_server, pki) -> None:
        info = proxy_info(voms_proxy.read_bytes(), vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir))
        wire = proxy_info_struct(info)
        assert (wire.Subject, wire.Issuer, wire.Identity, wire.Type) == (
            info.subject, info.issuer, info.identity, "proxy")
        assert wire.Strength == "2048"
        assert wire.StartTime == str(int(info.start_time.timestamp()))
        assert wire.EndTime == str(int(info.end_time.timestamp()))
        (vo,) = wire.VOsInfo
        assert vo.StartTime == str(int(info.vos[0].start_time.timestamp()))
        assert vo.EndTime == str(int(info.vos[0].end_time.timestamp()))
        assert vo.Attribute == info.vos[0].attributes
        for value in (wire.StartTime, wire.EndTime, vo.StartTime, vo.EndTime):
            assert re.fullmatch(r"\d{10}", value)

    def test_an_unverified_ac_is_listed_with_its_reason_instead_of_fqans(self, voms_proxy, pki, tmp_path) -> None:
        info = proxy_info(voms_proxy.read_bytes(), vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir))
        (vo,) = proxy_info_struct(info).VOsInfo
        assert vo.VOName == "atlas"
        (attribute,) = vo.Attribute
        assert attribute.startswith("not verified: no atlas/voms.localhost.lsc")
        assert not attribute.startswith("/")


class TestProxyRenewalInfoStruct:
    def test_end_as_epoch_and_attempt_to_the_second(self) -> None:
        end = datetime(2011, 3, 13, 7, 6, 40, 500_000, tzinfo=UTC)
        attempt = datetime(2011, 3, 13, 6, 0, 1, 750_000, tzinfo=UTC)
        info = ProxyRenewalInfo("px.example.org:7512", True, attempt, "renewed", None, 2, end)
        wire = proxy_renewal_info_struct(info)
        assert wire.proxyEndTime == "1300000000"
        assert wire.lastAttempt == attempt.replace(microsecond=0)
        assert (wire.myProxyServer, wire.registered, wire.lastResult, wire.renewals) == (
            "px.example.org:7512", True, "renewed", 2)
