"""The renewal decisions of ``wmproxy.services.renewal`` that need no database: which server
(and the per-VO defaults of the configuration), when, what is reported, and how a job's proxy
file is replaced."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cachetools import LRUCache
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import Pki
from tests.support import INDEPENDENT, PRIVATE_POLICY, policy_proxy
from tests.unit.renewal.copy_support import big_exponent_key, count_verifications, proxy_levels, self_signed
from tests.voms_support import fake_voms_proxy, fake_voms_server
from wmproxy.config import (
    ConfigError,
    ExecutionSettings,
    LimitsSettings,
    RenewalSettings,
    SecuritySettings,
    Settings,
    load_settings,
)
from wmproxy.domain import utcnow
from wmproxy.errors import InvalidJdlAttributeError, ProxyError, ProxyPolicyError
from wmproxy.jdl import parse_jdl
from wmproxy.renewal.jobfiles import push_job_proxy
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security import chain as chain_module
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import credential_pem, make_proxy
from wmproxy.security.renewed import check_renewed_proxy, verified_proxy_end
from wmproxy.services.renewal import (
    COPY_NOT_VALID,
    expired_voms_attributes,
    job_proxy_end,
    job_proxy_path,
    myproxy_server_for,
    parse_server,
    renewal_due,
    renewal_margin,
    server_allowed,
    server_listed,
    stale_copies,
)
from wmproxy.services.renewal import jobfiles as jobfiles_module
from wmproxy.store.renewals import JobProxyTarget

JOB = "https://localhost:9000/abcdefghijklmnopqrstuv"
NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def settings(**renewal: object) -> RenewalSettings:
    return RenewalSettings(**renewal)  # type: ignore[arg-type]


class TestMyProxyServerFor:
    def test_the_jdl_value_wins_and_the_ad_is_left_alone(self) -> None:
        ad = parse_jdl('[ Executable = "a"; MyProxyServer = " myproxy.example.org:7600 "; ]')
        before = str(ad)
        s = settings(myproxy_server="default.example.org", myproxy_allowed_servers="myproxy.example.org:7600")
        assert myproxy_server_for(s, ad, None) == "myproxy.example.org:7600"
        assert str(ad) == before

    def test_without_the_attribute_the_vo_default(self) -> None:
        ad = parse_jdl('[ Executable = "a"; ]')
        s = settings(myproxy_server="global.example.org", myproxy_servers_by_vo="atlas=px.cern.ch, cms=cms-px:7512")
        assert myproxy_server_for(s, ad, "atlas") == "px.cern.ch"
        assert myproxy_server_for(s, ad, "cms") == "cms-px:7512"
        assert "MyProxyServer" not in ad

    def test_without_a_vo_default_the_global_default(self) -> None:
        ad = parse_jdl('[ Executable = "a"; ]')
        s = settings(myproxy_server="global.example.org", myproxy_servers_by_vo={"atlas": "px.cern.ch"})
        assert myproxy_server_for(s, ad, "dteam") == "global.example.org"
        assert myproxy_server_for(s, ad, None) == "global.example.org"

    def test_an_empty_vo_default_turns_renewal_off_for_that_vo(self) -> None:
        ad = parse_jdl('[ Executable = "a"; ]')
        s = settings(myproxy_server="global.example.org", myproxy_servers_by_vo="dteam=")
        assert myproxy_server_for(s, ad, "dteam") is None

    def test_an_empty_jdl_value_means_no_renewal(self) -> None:
        ad = parse_jdl('[ Executable = "a"; MyProxyServer = ""; ]')
        assert myproxy_server_for(settings(myproxy_server="global.example.org"), ad, None) is None
        assert ad["MyProxyServer"] == ""

    def test_no_attribute_and_no_default_means_no_renewal(self) -> None:
        assert myproxy_server_for(settings(), parse_jdl('[ Executable = "a"; ]'), "atlas") is None

    @pytest.mark.parametrize("value", ['"host:0"', '"host:99999"', '"ho st"', '"host:port"', "42", '"-bad-"'])
    def test_a_bad_value_is_a_jdl_attribute_error(self, value: str) -> None:
        ad = parse_jdl(f'[ Executable = "a"; MyProxyServer = {value}; ]')
        with pytest.raises(InvalidJdlAttributeError):
            myproxy_server_for(settings(), ad, None)


class TestAllowedServers:
    """``[renewal] myproxy_allowed_servers``: which servers a JDL may name (issue: a JDL could
    make the renewal worker connect to any host and port of the site's network)."""

    def test_by_default_only_the_configured_defaults(self) -> None:
        s = settings(myproxy_server="px.example.org", myproxy_servers_by_vo="atlas=a.example.org:7600, dteam=")
        assert server_allowed(s, "px.example.org")
        assert server_allowed(s, "PX.Example.org.:7512")  # same host and port, other spelling
        assert server_allowed(s, "a.example.org:7600")
        assert not server_allowed(s, "a.example.org")  # 7512: another port
        assert not server_allowed(s, "10.0.0.5:22")
        assert not server_allowed(settings(), "px.example.org")

    def test_listed_hosts_and_ports(self) -> None:
        s = settings(myproxy_allowed_servers="myproxy.cern.ch, other.example.org:7600, 192.0.2.7:7512")
        assert server_allowed(s, "myproxy.cern.ch") and server_allowed(s, "myproxy.cern.ch:7512")
        assert not server_allowed(s, "myproxy.cern.ch:22")  # no port given: 7512 only
        assert server_allowed(s, "other.example.org:7600") and not server_allowed(s, "other.example.org")
        assert server_allowed(s, "192.0.2.7")
        assert not server_allowed(s, "cern.ch") and not server_allowed(s, "evil-myproxy.cern.ch")

    def test_a_domain_wildcard_takes_hosts_under_it_not_the_domain(self) -> None:
        s = settings(myproxy_allowed_servers="*.example.org, *.grid.test:7600")
        assert server_allowed(s, "px.example.org") and server_allowed(s, "a.b.example.org")
        assert not server_allowed(s, "example.org") and not server_allowed(s, "px.example.org.evil.net")
        assert not server_allowed(s, "pxexample.org") and not server_allowed(s, "px.example.org:22")
        assert server_allowed(s, "px.grid.test:7600") and not server_allowed(s, "px.grid.test")

    def test_only_the_servers_the_site_names_are_listed(self) -> None:
        """A server allowed through a wildcard only is reached at public addresses only, with no
        detail of a failed connection for the user (renew_proxy's ``listed``)."""
        s = settings(myproxy_server="px.example.org", myproxy_servers_by_vo="atlas=px.cern.ch:7600",
                     myproxy_allowed_servers="myproxy.grid.test, 10.0.0.5:7600, *.example.org, *")
        assert server_listed(s, "px.example.org", 7512) and server_listed(s, "PX.cern.ch.", 7600)
        assert server_listed(s, "myproxy.grid.test", 7512) and server_listed(s, "10.0.0.5", 7600)
        assert not server_listed(s, "myproxy.grid.test", 7600) and not server_listed(s, "10.0.0.5", 7512)
        assert not server_listed(s, "other.example.org", 7512) and not server_listed(s, "127.0.0.1", 5432)
        assert server_allowed(s, "other.example.org") and server_allowed(s, "127.0.0.1:5432")

    def test_a_star_allows_any_host_and_port_as_the_original(self) -> None:
        s = settings(myproxy_allowed_servers="*")
        assert server_allowed(s, "10.0.0.5:22") and server_allowed(s, "anything.example")

    def test_a_value_that_is_no_server_is_not_allowed(self) -> None:
        assert not server_allowed(settings(myproxy_allowed_servers="*"), "ho st:1")

    def test_the_jdl_may_name_a_default_or_a_listed_server_only(self) -> None:
        s = settings(myproxy_server="px.example.org", myproxy_allowed_servers="*.grid.test")
        ad = lambda value: parse_jdl(f'[ Executable = "a"; MyProxyServer = "{value}"; ]')  # noqa: E731
        assert myproxy_server_for(s, ad("px.example.org:7512"), None) == "px.example.org:7512"
        assert myproxy_server_for(s, ad("a.grid.test"), None) == "a.grid.test"
        assert myproxy_server_for(s, ad(""), None) is None  # no renewal: always accepted
        for refused in ("10.0.0.5:22", "localhost", "px.example.org:22"):
            with pytest.raises(InvalidJdlAttributeError, match=f"MyProxyServer: '{refused}' is not a MyProxy server"):
                myproxy_server_for(s, ad(refused), None)

    def test_the_configuration_refuses_a_bad_item_naming_the_setting(self) -> None:
        for bad in ("*:7512", "*.", "ho st", "a.org:0", "**.a.org", "a.*.org"):
            with pytest.raises(ConfigError, match=r"\[renewal\] myproxy_allowed_servers"):
                settings(myproxy_allowed_servers=f"good.example.org, {bad}")
        env = {"WMPROXY_RENEWAL_MYPROXY_ALLOWED_SERVERS": " A.Example.org. , *.Grid.test:7600,, * "}
        assert load_settings(environ=env).renewal.allowed_server_patterns == (
            ("a.example.org", 7512), ("*.grid.test", 7600), ("*", 0))


class TestServerNames:
    def test_port_defaults_to_7512(self) -> None:
        assert parse_server("myproxy.cern.ch") == ("myproxy.cern.ch", 7512)
        assert parse_server("localhost:7600") == ("localhost", 7600)


class TestPerVoDefaultsAreParsedOnceInTheConfiguration:
    def test_the_configuration_syntax_gives_a_read_only_mapping(self) -> None:
        s = load_settings(environ={"WMPROXY_RENEWAL_MYPROXY_SERVERS_BY_VO": " atlas = a.org , cms=b:1,, dteam="})
        assert dict(s.renewal.myproxy_servers_by_vo) == {"atlas": "a.org", "cms": "b:1", "dteam": ""}
        with pytest.raises(TypeError):
            s.renewal.myproxy_servers_by_vo["lhcb"] = "c.org"  # type: ignore[index]

    def test_the_ini_file_gives_the_same(self, tmp_path: Path) -> None:
        ini = tmp_path / "wmproxy.ini"
        ini.write_text("[renewal]\nmyproxy_server = px.example.org:7600\nmyproxy_servers_by_vo = atlas=a.org\n")
        s = load_settings(ini, environ={})
        assert (s.renewal.myproxy_server, dict(s.renewal.myproxy_servers_by_vo)) == (
            "px.example.org:7600", {"atlas": "a.org"})

    @pytest.mark.parametrize("text", ["atlas", "=a.org", "atlas=a.org, atlas=b.org", "atlas=ho st", "cms=b:0"])
    def test_a_bad_entry_is_a_configuration_error_at_start(self, text: str) -> None:
        with pytest.raises(ConfigError, match="WMPROXY_RENEWAL_MYPROXY_SERVERS_BY_VO"):
            load_settings(environ={"WMPROXY_RENEWAL_MYPROXY_SERVERS_BY_VO": text})

    def test_a_bad_global_default_is_a_configuration_error_at_start(self) -> None:
        with pytest.raises(ConfigError, match="myproxy_server"):
            load_settings(environ={"WMPROXY_RENEWAL_MYPROXY_SERVER": "host:99999"})

    def test_settings_built_in_code_are_checked_too(self) -> None:
        with pytest.raises(ConfigError):
            RenewalSettings(myproxy_servers_by_vo={"atlas": "not a host"})


class TestSchedule:
    def test_defaults_renew_a_ten_hour_proxy_when_two_and_a_half_hours_remain(self) -> None:
        margin = renewal_margin(35 * 60, 10 * 3600)
        assert margin == 2.5 * 3600
        end = NOW + dt.timedelta(hours=2, minutes=31)
        assert not renewal_due(end, NOW, margin)
        assert renewal_due(end, NOW + 2 * MIN, margin)

    def test_the_threshold_applies_when_the_lifetime_asked_is_short(self) -> None:
        assert renewal_margin(35 * 60, 3600) == 35 * 60

    def test_a_short_grant_is_renewed_at_its_own_three_quarters_not_every_cycle(self) -> None:
        renewed_at = NOW
        end = NOW + dt.timedelta(hours=4)  # MyProxy granted 4 h of the 10 h asked
        margin = renewal_margin(35 * 60, 10 * 3600, end, renewed_at)
        assert margin == 3600
        assert not renewal_due(end, NOW + dt.timedelta(hours=2), margin)
        assert renewal_due(end, NOW + dt.timedelta(hours=3), margin)

    def test_an_expired_proxy_is_never_due(self) -> None:
        assert not renewal_due(NOW, NOW, 2100)
        assert not renewal_due(NOW - MIN, NOW, 2100)


class TestExpiredVomsAttributes:
    def test_expired_acs_of_a_valid_proxy_are_reported(self, pki: Pki, tmp_path: Path) -> None:
        server = fake_voms_server(pki, tmp_path)
        # AC valid for 1 h starting 2 h ago; the X.509 proxy is valid for 24 h
        pem = fake_voms_proxy(pki, server, tmp_path / "x509up", "-pastac", "7200", "-vomslife", "1").read_bytes()
        now = dt.datetime.now(dt.UTC)
        assert load_pem_chain(pem)[0].not_valid_after_utc > now + dt.timedelta(hours=20)
        (report,) = expired_voms_attributes(pem, now)
        assert report.startswith("/atlas/Role=production/Capability=NULL ") and "(VO atlas, ended " in report

    def test_valid_acs_and_plain_proxies_report_nothing(self, pki: Pki, tmp_path: Path) -> None:
        server = fake_voms_server(pki, tmp_path)
        pem = fake_voms_proxy(pki, server, tmp_path / "x509up").read_bytes()
        assert expired_voms_attributes(pem, dt.datetime.now(dt.UTC)) == ()
        plain = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=600))
        assert expired_voms_attributes(plain, dt.datetime.now(dt.UTC)) == ()


class TestPushJobProxy:
    @pytest.fixture
    def rt(self, tmp_path: Path, pki: Pki) -> SimpleNamespace:
        storage = FilesystemSandboxStorage(tmp_path / "sandbox")
        storage.create_job_area(JOB)
        settings = Settings(execution=ExecutionSettings(work_dir=str(tmp_path / "work")),
                            security=SecuritySettings(ca_dir=str(pki.ca_dir)))
        return SimpleNamespace(storage=storage, settings=settings)

    def test_replaces_the_file_by_rename_never_in_place(self, rt: SimpleNamespace, pki: Pki) -> None:
        old = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=600))
        new = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=7200))
        target = job_proxy_path(rt, JOB)  # type: ignore[arg-type]
        target.parent.mkdir(parents=True)
        target.write_bytes(old)
        os.chmod(target, 0o600)
        with open(target, "rb") as reader:  # a job holding the old file open
            assert push_job_proxy(rt, JOB, new)  # type: ignore[arg-type]
            assert reader.read() == old  # the old inode was not truncated
        assert target.read_bytes() == new
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert job_proxy_end(rt, JOB, pki.users["alice"].dn, utcnow()) == load_pem_chain(new)[0].not_valid_after_utc  # type: ignore[arg-type]
        assert [p.name for p in target.parent.iterdir() if p.name.startswith(".user.proxy")] == []

    def test_a_job_not_staged_yet_is_left_alone(self, rt: SimpleNamespace, pki: Pki) -> None:
        pem = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=600))
        assert not push_job_proxy(rt, JOB, pem)  # type: ignore[arg-type]
        assert not job_proxy_path(rt, JOB).exists()  # type: ignore[arg-type]
        assert job_proxy_end(rt, JOB, pki.users["alice"].dn, utcnow()) is None  # type: ignore[arg-type]

    def test_the_copy_is_read_without_trusting_the_job(self, rt: SimpleNamespace, pki: Pki, tmp_path: Path) -> None:
        """The job's account owns its work dir: a link, a FIFO or a huge file in place of its proxy
        copy counts as an ended copy and never blocks or floods the reader."""
        alice = pki.users["alice"]
        target = job_proxy_path(rt, JOB)  # type: ignore[arg-type]
        target.parent.mkdir(parents=True)
        elsewhere = tmp_path / "someone-elses.proxy"
        elsewhere.write_bytes(credential_pem(make_proxy(alice.credential, lifetime=600)))
        target.symlink_to(elsewhere)
        assert job_proxy_end(rt, JOB, alice.dn, utcnow()) == COPY_NOT_VALID  # type: ignore[arg-type]
        target.unlink()
        os.mkfifo(target)  # opened for reading without a writer, it would wait for ever
        assert job_proxy_end(rt, JOB, alice.dn, utcnow()) == COPY_NOT_VALID  # type: ignore[arg-type]
        target.unlink()
        target.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (2 * 1024 * 1024))
        assert job_proxy_end(rt, JOB, alice.dn, utcnow()) == COPY_NOT_VALID  # type: ignore[arg-type]
        target.unlink()
        proxy = credential_pem(make_proxy(alice.credential, lifetime=600))
        target.write_bytes(proxy)
        assert job_proxy_end(rt, JOB, alice.dn, utcnow()) == load_pem_chain(proxy)[0].not_valid_after_utc  # type: ignore[arg-type]

    def test_a_stale_crl_does_not_make_a_valid_copy_count_as_ended(self, pki: Pki, tmp_path: Path) -> None:
        """Whether a job's copy has ended is not a question of revocation: with the CA's CRL past
        its nextUpdate (fetch-crl late) the copy's end still counts (it counted as ended, and the
        renewal worker aborted running jobs whose copies had hours left)."""
        ca_dir = tmp_path / "certificates"
        shutil.copytree(pki.ca_dir, ca_dir)
        (crl_file,) = [p for p in ca_dir.iterdir() if ".r" in p.name]
        now = dt.datetime.now(dt.UTC)
        crl_file.write_bytes(
            x509.CertificateRevocationListBuilder().issuer_name(pki.ca.cert.subject)
            .last_update(now - dt.timedelta(days=2)).next_update(now - dt.timedelta(hours=1))
            .sign(pki.ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        alice = pki.users["alice"]
        own = make_proxy(alice.credential, lifetime=3600)
        assert verified_proxy_end(credential_pem(own), alice.dn, str(ca_dir), utcnow()) == own.cert.not_valid_after_utc

    def test_copies_are_verified_by_the_store_kept_for_the_clock(self, pki: Pki,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """A renewal pass checks every held job's copy with one ``now``: verified at that time,
        each copy past the pass's first second built an OpenSSL store of every CA and CRL (206 ms
        each with an IGTF-sized CA directory); verified at the clock's time, they share one."""
        built: list[object] = []
        real = chain_module._new_store
        monkeypatch.setattr(chain_module, "_new_store", lambda *args: built.append(args) or real(*args))
        alice = pki.users["alice"]
        pem = credential_pem(make_proxy(alice.credential, lifetime=3600))
        pass_start = utcnow() - dt.timedelta(seconds=30)  # a pass that has run for half a minute
        for _ in range(5):
            verified_proxy_end(pem, alice.dn, str(pki.ca_dir), pass_start)
        assert len(built) <= 1

    def test_only_a_copy_verifying_as_a_proxy_of_the_owner_has_an_end(self, rt: SimpleNamespace, pki: Pki) -> None:
        """The job's account can write its copy: a certificate it made itself, a proxy of another
        user, or its own proxy once ended all count as ended (a job would otherwise never be
        aborted for an expired credential); a proxy the job signed below its own ends no later."""
        alice, now = pki.users["alice"], utcnow()
        target = job_proxy_path(rt, JOB)  # type: ignore[arg-type]
        target.parent.mkdir(parents=True)
        target.write_bytes(self_signed(days=3650))
        assert job_proxy_end(rt, JOB, alice.dn, now) == COPY_NOT_VALID  # type: ignore[arg-type]
        target.write_bytes(credential_pem(make_proxy(pki.users["bob"].credential, lifetime=3600)))
        assert job_proxy_end(rt, JOB, alice.dn, now) == COPY_NOT_VALID  # type: ignore[arg-type]
        own = make_proxy(alice.credential, lifetime=3600, now=now)
        target.write_bytes(credential_pem(own))
        end = own.cert.not_valid_after_utc
        assert job_proxy_end(rt, JOB, alice.dn, now) == end  # type: ignore[arg-type]
        assert job_proxy_end(rt, JOB, alice.dn, end + MIN) == COPY_NOT_VALID  # type: ignore[arg-type]
        below = make_proxy(own, lifetime=10 * 3600, now=now)
        target.write_bytes(credential_pem(below))
        assert job_proxy_end(rt, JOB, alice.dn, now) == end  # type: ignore[arg-type]


class TestCopiesSlowToVerify:
    """Red team: a job rewrote its own copy as a valid chain of its owner slow to verify (22
    proxy levels, 3072-bit RSA keys with 3072-bit public exponents: 156 ms a check), which every
    renewal pass verified again, in its transaction."""

    @pytest.fixture
    def rt(self, tmp_path: Path, pki: Pki) -> SimpleNamespace:
        storage = FilesystemSandboxStorage(tmp_path / "sandbox")
        storage.create_job_area(JOB)
        settings = Settings(execution=ExecutionSettings(work_dir=str(tmp_path / "work")),
                            security=SecuritySettings(ca_dir=str(pki.ca_dir)),
                            limits=LimitsSettings(max_proxy_chain_depth=3))
        rt = SimpleNamespace(storage=storage, settings=settings)
        job_proxy_path(rt, JOB).parent.mkdir(parents=True)  # type: ignore[arg-type]
        return rt

    @staticmethod
    def write(rt: SimpleNamespace, pem: bytes) -> None:
        target = job_proxy_path(rt, JOB)  # type: ignore[arg-type]
        target.unlink(missing_ok=True)
        target.write_bytes(pem)

    def test_a_deep_copy_or_a_key_with_a_huge_exponent_is_not_valid_and_never_verified(
        self, rt: SimpleNamespace, pki: Pki, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        alice, now = pki.users["alice"], utcnow()
        verified = count_verifications(monkeypatch)
        slow = proxy_levels(alice.credential, 2, key=big_exponent_key())  # its signature: a 40-bit exponent
        self.write(rt, credential_pem(make_proxy(slow, lifetime=3600)))
        assert job_proxy_end(rt, JOB, alice.dn, now) == COPY_NOT_VALID  # type: ignore[arg-type]
        self.write(rt, credential_pem(proxy_levels(alice.credential, 4)))  # [limits] max_proxy_chain_depth = 3
        assert job_proxy_end(rt, JOB, alice.dn, now) == COPY_NOT_VALID  # type: ignore[arg-type]
        assert verified == []
        deepest = proxy_levels(alice.credential, 3)
        self.write(rt, credential_pem(deepest))
        assert job_proxy_end(rt, JOB, alice.dn, now) == deepest.cert.not_valid_after_utc  # type: ignore[arg-type]
        assert len(verified) == 1

    def test_a_renewed_proxy_deeper_than_the_limit_or_slow_to_verify_is_refused(self, pki: Pki) -> None:
        """putProxy's depth limit holds for a proxy from MyProxy too, when the service checks it."""
        alice = pki.users["alice"]
        stored = alice.proxy.read_bytes()
        deep = credential_pem(proxy_levels(alice.credential, 4))
        with pytest.raises(ProxyError, match="4 proxy levels, at most 3"):
            check_renewed_proxy(deep, alice.dn, str(pki.ca_dir), utcnow(), stored_pem=stored, max_depth=3)
        check_renewed_proxy(deep, alice.dn, str(pki.ca_dir), utcnow(), stored_pem=stored)  # the client's check
        slow = credential_pem(make_proxy(proxy_levels(alice.credential, 1, key=big_exponent_key()), lifetime=3600))
        with pytest.raises(ProxyError, match="exponent"):
            check_renewed_proxy(slow, alice.dn, str(pki.ca_dir), utcnow(), stored_pem=stored)

    @pytest.mark.parametrize(("language", "policy"), [(INDEPENDENT, None), PRIVATE_POLICY])
    def test_a_renewed_proxy_of_another_policy_language_is_refused(self, pki: Pki, language: str,
                                                                  policy: bytes | None) -> None:
        """What MyProxy (or a VOMS refresh) returns is held to putProxy's rule: an independent proxy,
        or one of a language not understood, does not carry the owner's rights."""
        alice = pki.users["alice"]
        stored = alice.proxy.read_bytes()
        for renewed in (policy_proxy(alice.credential, language, policy),
                        make_proxy(policy_proxy(alice.credential, language, policy), lifetime=3600)):
            with pytest.raises(ProxyPolicyError, match=re.escape(f"policy language {language}" if policy
                                                                 else f"id-ppl-independent, {language}")):
                check_renewed_proxy(credential_pem(renewed), alice.dn, str(pki.ca_dir), utcnow(), stored_pem=stored)
        with pytest.raises(ProxyError, match="MyProxy returned a limited proxy"):
            check_renewed_proxy(credential_pem(make_proxy(alice.credential, lifetime=3600, limited=True)), alice.dn,
                                str(pki.ca_dir), utcnow(), stored_pem=stored)
        check_renewed_proxy(credential_pem(make_proxy(alice.credential, lifetime=3600)), alice.dn, str(pki.ca_dir),
                            utcnow(), stored_pem=stored)

    def test_an_unchanged_copy_is_verified_once(self, rt: SimpleNamespace, pki: Pki,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """Its result is kept by the copy's stat: verified again once rewritten, or once the CA
        directory changed; an ended copy ends without a verification. A copy written within the
        file system's timestamp granularity is verified each time (a second write could keep its stat)."""
        alice, now = pki.users["alice"], utcnow()
        verified = count_verifications(monkeypatch)
        own = make_proxy(alice.credential, lifetime=3600)
        self.write(rt, credential_pem(own))
        job_proxy_end(rt, JOB, alice.dn, now)  # type: ignore[arg-type]
        verified.clear()
        monkeypatch.setattr(jobfiles_module, "SETTLED_NS", 0)  # as if written seconds ago
        for _ in range(3):
            assert job_proxy_end(rt, JOB, alice.dn, now) == own.cert.not_valid_after_utc  # type: ignore[arg-type]
        assert len(verified) == 1
        assert job_proxy_end(rt, JOB, alice.dn, own.cert.not_valid_after_utc) == COPY_NOT_VALID  # type: ignore[arg-type]
        assert len(verified) == 1
        self.write(rt, credential_pem(make_proxy(pki.users["bob"].credential, lifetime=3600)))  # another user's
        for _ in range(3):
            assert job_proxy_end(rt, JOB, alice.dn, now) == COPY_NOT_VALID  # type: ignore[arg-type]
        assert len(verified) == 2
        self.write(rt, credential_pem(own))
        assert job_proxy_end(rt, JOB, alice.dn, now) == own.cert.not_valid_after_utc  # type: ignore[arg-type]
        assert len(verified) == 3
        monkeypatch.setattr(jobfiles_module, "ca_dir_state", lambda ca_dir: object())  # a CA added, say
        assert job_proxy_end(rt, JOB, alice.dn, now) == own.cert.not_valid_after_utc  # type: ignore[arg-type]
        assert len(verified) == 4

    def test_what_is_kept_of_a_copy_goes_with_its_job(self, rt: SimpleNamespace, pki: Pki,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """A pass keeps one checked copy a held job, not one a job ever held (the soak's renewal
        worker grew by every job it had seen, up to 100,000 entries)."""
        alice, now = pki.users["alice"], utcnow()
        monkeypatch.setattr(jobfiles_module, "SETTLED_NS", 0)
        monkeypatch.setattr(jobfiles_module, "_checked", LRUCache(maxsize=100_000))
        pem = credential_pem(make_proxy(alice.credential, lifetime=3600))
        jobs = [JOB] + [f"https://localhost:9000/{letter * 22}" for letter in "xyz"]
        for job_id in jobs[1:]:
            rt.storage.create_job_area(job_id)
            job_proxy_path(rt, job_id).parent.mkdir(parents=True)  # type: ignore[arg-type]
        for job_id in jobs:
            job_proxy_path(rt, job_id).write_bytes(pem)  # type: ignore[arg-type]
        later = now + dt.timedelta(hours=2)
        held = [JobProxyTarget(job_id, alice.dn, "d", later) for job_id in jobs]
        assert set(stale_copies(rt, held, now)[(alice.dn, "d")]) == set(jobs)  # type: ignore[arg-type]
        assert set(jobfiles_module._checked) == set(jobs)
        assert set(stale_copies(rt, held[2:3], now)[(alice.dn, "d")]) == {jobs[2]}  # type: ignore[arg-type]
        assert set(jobfiles_module._checked) == {jobs[2]}
