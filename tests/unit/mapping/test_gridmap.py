"""The mapping policy (grid-mapfile, VOMS rules, ban list) without accounts or database."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from wmproxy.config import ConfigError, MappingSettings, load_settings
from wmproxy.errors import AuthorizationError
from wmproxy.security.dn import slash_dn
from wmproxy.security.gridmap import (
    MapEntry,
    MappingError,
    MappingNotAllowedError,
    MappingPolicy,
    decide,
    fqan_forms,
    normalise_fqan,
    parse_banfile,
    parse_mapfile,
    pool_members,
    read_policy,
)

ALICE = "/C=XX/O=Grid/CN=Alice Smith"
BOB = "/C=XX/O=Grid/CN=Bob"

NO_TARGET = """expected '"<DN>" <account>|.<pool>'"""
SITE_VOMS_RULES = """\
# the site's VOMS rules: first FQAN, first matching rule
"/atlas/Role=production" .atlprd
"/atlas/Role=pilot"      .atlplt
"/lhcb/Role=pilot"       .lhcplt
"/atlas/*"               atlasuser
"/atlas"                 atlasuser
"""


class TestParseMapfile:
    def test_quoted_dns_with_blanks_comments_and_escapes(self) -> None:
        text = f'''
# comment
"{ALICE}" alice
   "/C=XX/O=Grid/CN=Quote \\"Q\\" Back\\\\slash" qq
/C=XX/O=Grid/CN=NoBlanks plain
"/C=XX/O=Grid/CN=Pool" .wmpatl
'''
        entries = parse_mapfile(text)
        assert [(e.pattern, e.target) for e in entries] == [
            (ALICE, "alice"),
            ('/C=XX/O=Grid/CN=Quote "Q" Back\\slash', "qq"),
            ("/C=XX/O=Grid/CN=NoBlanks", "plain"),
            ("/C=XX/O=Grid/CN=Pool", ".wmpatl"),
        ]
        assert entries[0].line == 3
        assert entries[3].pool == "wmpatl" and entries[0].pool is None

    @pytest.mark.parametrize(
        "line",
        [
            '"/C=XX/O=Test/CN=Jos\\xC3\\xA9" jose',  # X509_NAME_oneline, as LCMAPS logs it
            '"/C=XX/O=Test/CN=Jos\\xc3\\xa9" jose',
            "/C=XX/O=Test/CN=Jos\\xc3\\xa9 jose",
            '"/C=XX/O=Test/CN=José" jose',
        ],
    )
    def test_openssl_hex_bytes_are_read_as_utf8(self, line: str) -> None:
        (entry,) = parse_mapfile(line)
        assert entry.pattern == "/C=XX/O=Test/CN=José"

    @pytest.mark.parametrize(
        ("line", "pattern"),
        [
            ('"/C=XX/O=Test/CN=B\\\\x41" b', "/C=XX/O=Test/CN=B\\x41"),  # an escaped backslash, then x41
            ('"/C=XX/O=Test/CN=B\\xE9" b', "/C=XX/O=Test/CN=B\\xE9"),  # not UTF-8: kept as written
            ('"/C=XX/O=Test/CN=B\\xZZ" b', "/C=XX/O=Test/CN=B\\xZZ"),  # no hex: a backslash, as LCMAPS
            ('"/C=XX/O=Test/CN=B\\s" b', "/C=XX/O=Test/CN=B\\s"),
        ],
    )
    def test_other_backslashes_and_non_utf8_bytes_stay_as_written(self, line: str, pattern: str) -> None:
        (entry,) = parse_mapfile(line)
        assert entry.pattern == pattern

    @pytest.mark.parametrize("targets", ["first,second", "first second", "first, second,third"])
    def test_several_accounts_on_a_line_the_first_wins(self, targets: str) -> None:
        (entry,) = parse_mapfile(f'"{ALICE}" {targets}')
        assert entry.target == "first"

    def test_an_unterminated_quote_fails_the_file_naming_the_line(self) -> None:
        with pytest.raises(MappingError) as info:
            parse_mapfile(f'# header\n"{ALICE} alice\n"{BOB}" bob\n', "/etc/grid-security/grid-mapfile")
        assert "/etc/grid-security/grid-mapfile line 2: unterminated quote" in str(info.value)
        assert str(info.value).startswith("LCMAPS failed to map user credential: ")

    @pytest.mark.parametrize(
        ("line", "why"),
        [
            (f'"{ALICE}"', NO_TARGET),
            ('"" alice', NO_TARGET),
            (f'"{ALICE}" bad/name', "invalid account or pool name 'bad/name'"),
            (f'"{ALICE}" .', "invalid account or pool name '.'"),
            (f'"{ALICE}" a:b', "invalid account or pool name 'a:b'"),
        ],
    )
    def test_a_bad_line_is_skipped_with_a_warning_once_per_file_version(
        self, line: str, why: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
    ) -> None:
        # LCMAPS 1.6.6 skips '"<DN>"' alone and maps the other lines
        name = str(tmp_path / "grid-mapfile")
        text = f'# header\n{line}\n"{BOB}" bob\n'
        with caplog.at_level("WARNING", logger="wmproxy.security.gridmap"):
            assert parse_mapfile(text, name) == (MapEntry(BOB, "bob", 3),)
            assert parse_mapfile(text, name) == (MapEntry(BOB, "bob", 3),)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [f"{name} line 2: {why}; line skipped"]
        with caplog.at_level("WARNING", logger="wmproxy.security.gridmap"):
            parse_mapfile(text + f'"{ALICE}" alice\n', name)  # a new version: logged again
        assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2

    @pytest.mark.parametrize("account", ["dan@ad.example.org", "1user", "first.last", "a-b_c", "AD\\dan"])
    def test_account_names_pwd_can_resolve_are_accepted(self, account: str) -> None:
        (entry,) = parse_mapfile(f"{ALICE.replace(' ', '_')} {account}\n")
        assert entry.target == account

    def test_a_site_file_with_a_bad_line_still_maps_everyone_else(self) -> None:
        policy = MappingPolicy(parse_mapfile(f'"/C=XX/O=Grid/CN=Nobody"\n"{ALICE}" dan@ad.example.org\n'))
        assert decide(ALICE, (), policy).account == "dan@ad.example.org"

    def test_voms_rules_are_stored_in_short_form(self) -> None:
        (entry,) = parse_mapfile('"/atlas/Role=NULL/Capability=NULL" atlasuser', fqans=True)
        assert entry.pattern == "/atlas"

    def test_voms_rules_with_a_wildcard_are_stored_as_written(self) -> None:
        (entry,) = parse_mapfile('"/atlas/*/Role=NULL/Capability=NULL" .atl', fqans=True)
        assert entry.pattern == "/atlas/*/Role=NULL/Capability=NULL"


class TestNormaliseFqan:
    @pytest.mark.parametrize(
        ("fqan", "short"),
        [
            ("/atlas/Role=NULL/Capability=NULL", "/atlas"),
            ("/atlas/Role=production/Capability=NULL", "/atlas/Role=production"),
            ("/atlas/higgs/Role=NULL", "/atlas/higgs"),
            ("/atlas", "/atlas"),
            ("/lhcb/Role=pilot", "/lhcb/Role=pilot"),
        ],
    )
    def test_null_role_and_capability_are_dropped(self, fqan: str, short: str) -> None:
        assert normalise_fqan(fqan) == short

    @pytest.mark.parametrize(
        ("fqan", "forms"),
        [
            ("/atlas", ("/atlas", "/atlas/Role=NULL/Capability=NULL")),
            ("/atlas/Role=NULL/Capability=NULL", ("/atlas", "/atlas/Role=NULL/Capability=NULL")),
            ("/atlas/higgs/Role=pilot", ("/atlas/higgs/Role=pilot", "/atlas/higgs/Role=pilot/Capability=NULL")),
        ],
    )
    def test_short_and_long_forms(self, fqan: str, forms: tuple[str, str]) -> None:
        assert fqan_forms(fqan) == forms


class TestDecide:
    def policy(self, gridmap: str = "", rules: str = SITE_VOMS_RULES, bans: str = "") -> MappingPolicy:
        return MappingPolicy(parse_mapfile(gridmap), parse_mapfile(rules, fqans=True), parse_banfile(bans))

    def test_static_account_from_the_grid_mapfile(self) -> None:
        decision = decide(ALICE, (), self.policy(f'"{ALICE}" alice\n"{BOB}" .pool'))
        assert (decision.account, decision.pool, decision.group) == ("alice", None, "")
        assert decision.source == "grid-mapfile line 1"

    def test_pool_from_the_grid_mapfile_has_the_empty_group(self) -> None:
        decision = decide(BOB, (), self.policy(f'"{ALICE}" alice\n"{BOB}" .pool'))
        assert (decision.account, decision.pool, decision.group) == (None, "pool", "")

    def test_dn_wildcards(self) -> None:
        policy = self.policy('"/C=XX/O=Grid/*" .grid\n')
        assert decide(ALICE, (), policy).pool == "grid"
        with pytest.raises(MappingError, match="no mapping for DN /C=YY/O=Grid/CN=x"):
            decide("/C=YY/O=Grid/CN=x", (), policy)

    def test_a_static_account_line_compares_the_dn_literally(self) -> None:
        # lcmaps_localaccount 1.6.6: "No matching mapping found ... CN=Mallory*" for CN=Mallory Victim
        policy = self.policy('"/C=XX/O=Test/CN=Mallory*" mallory\n')
        with pytest.raises(MappingError, match=r"no mapping for DN /C=XX/O=Test/CN=Mallory Victim$"):
            decide("/C=XX/O=Test/CN=Mallory Victim", (), policy)
        assert decide("/C=XX/O=Test/CN=Mallory*", (), policy).account == "mallory"

    def test_a_pool_line_takes_wildcards_and_a_later_static_line_still_applies(self) -> None:
        policy = self.policy('"/C=XX/O=Test/CN=Mallory*" mallory\n"/C=XX/O=Test/*" .guest\n')
        assert decide("/C=XX/O=Test/CN=Mallory Victim", (), policy).pool == "guest"

    @pytest.mark.parametrize(
        ("fqan", "pool", "account"),
        [
            ("/atlas/Role=production/Capability=NULL", "atlprd", None),
            ("/atlas/Role=pilot/Capability=NULL", "atlplt", None),
            ("/lhcb/Role=pilot/Capability=NULL", "lhcplt", None),
            ("/atlas/higgs/Role=NULL/Capability=NULL", None, "atlasuser"),
            ("/atlas/Role=NULL/Capability=NULL", None, "atlasuser"),
        ],
    )
    def test_the_first_matching_rule_on_the_first_fqan_wins(self, fqan: str, pool: str | None,
                                                            account: str | None) -> None:
        decision = decide(ALICE, (fqan, "/lhcb/Role=pilot"), self.policy())
        assert (decision.pool, decision.account) == (pool, account)

    def test_a_null_role_after_a_wildcard_still_restricts_the_rule(self) -> None:
        # LCMAPS 1.6.6 (lcmaps_voms_poolaccount): production goes to its own pool, not the generic one
        policy = self.policy(rules='"/atlas/*/Role=NULL/Capability=NULL" .atl\n'
                                   '"/atlas/Role=production/Capability=NULL" .atlprd\n')
        assert decide(ALICE, ("/atlas/Role=production/Capability=NULL",), policy).pool == "atlprd"
        assert decide(ALICE, ("/atlas/higgs/Role=NULL/Capability=NULL",), policy).pool == "atl"
        with pytest.raises(MappingError, match="no mapping"):
            decide(ALICE, ("/atlas/higgs/Role=pilot/Capability=NULL",), policy)

    @pytest.mark.parametrize("fqan", ["/atlas/Role=NULL/Capability=NULL", "/atlas"])
    def test_a_vo_wildcard_matches_plain_members(self, fqan: str) -> None:
        # LCMAPS 1.6.6 maps /atlas/Role=NULL/Capability=NULL with "/atlas/*"
        decision = decide(ALICE, (fqan,), self.policy(rules='"/atlas/*" .atl\n'))
        assert (decision.pool, decision.group) == ("atl", "/atlas/*")

    def test_wildcard_fqan_bans_match_the_long_form_too(self) -> None:
        # LCMAPS 1.6.6 lcmaps_ban_fqan: "/atlas/*" bans plain members, the NULL role is not dropped
        with pytest.raises(MappingError, match=r"the FQAN /atlas is banned"):
            decide(ALICE, ("/atlas/Role=NULL/Capability=NULL",), self.policy(bans='"/atlas/*"\n'))
        narrow = self.policy(bans='"/atlas/*/Role=NULL/Capability=NULL"\n')
        assert decide(ALICE, ("/atlas/Role=production/Capability=NULL",), narrow).pool == "atlprd"
        with pytest.raises(MappingError, match="is banned"):
            decide(ALICE, ("/atlas/higgs/Role=NULL/Capability=NULL",), narrow)

    def test_rule_order_decides_between_overlapping_rules(self) -> None:
        fqans = ("/atlas/Role=production/Capability=NULL",)
        specific_first = self.policy(rules='"/atlas/Role=production" .atlprd\n"/atlas/*" atlasuser\n')
        general_first = self.policy(rules='"/atlas/*" atlasuser\n"/atlas/Role=production" .atlprd\n')
        assert decide(ALICE, fqans, specific_first).pool == "atlprd"
        assert decide(ALICE, fqans, general_first).account == "atlasuser"

    def test_only_the_first_fqan_selects_a_rule(self) -> None:
        with pytest.raises(MappingError, match=r"no mapping for DN .* with FQAN /cms"):
            decide(ALICE, ("/cms/Role=NULL/Capability=NULL", "/atlas/Role=production"), self.policy())

    def test_the_lease_group_is_the_matched_rule(self) -> None:
        policy = self.policy(rules='"/atlas/*" .atl\n')
        production = decide(ALICE, ("/atlas/Role=production",), policy)
        higgs = decide(ALICE, ("/atlas/higgs",), policy)
        assert production.group == higgs.group == "/atlas/*"
        pilot = decide(ALICE, ("/atlas/Role=pilot",), self.policy())
        assert pilot.group == "/atlas/Role=pilot"

    def test_exact_vo_pattern_does_not_match_subgroups_or_roles(self) -> None:
        policy = self.policy(rules='"/dteam" dteamuser\n')
        assert decide(ALICE, ("/dteam/Role=NULL/Capability=NULL",), policy).account == "dteamuser"
        with pytest.raises(MappingError):
            decide(ALICE, ("/dteam/Role=lcgadmin",), policy)

    def test_voms_rules_come_before_the_grid_mapfile_and_it_is_the_fallback(self) -> None:
        policy = self.policy(gridmap=f'"{ALICE}" alice\n')
        assert decide(ALICE, ("/atlas/Role=pilot",), policy).pool == "atlplt"
        assert decide(ALICE, ("/cms",), policy).account == "alice"
        assert decide(ALICE, (), policy).account == "alice"

    def test_banned_dn(self) -> None:
        policy = self.policy(gridmap=f'"{ALICE}" alice\n', bans=f'"{ALICE}"\n')
        with pytest.raises(MappingError) as info:
            decide(ALICE, ("/atlas/Role=pilot",), policy)
        assert str(info.value) == f"LCMAPS failed to map user credential: the DN {ALICE} is banned"
        assert info.value.code == 1207
        assert decide(BOB, ("/atlas/Role=pilot",), policy).pool == "atlplt"

    def test_banned_dn_by_wildcard(self) -> None:
        policy = self.policy(gridmap='"/C=XX/*" .grid', bans='"/C=XX/O=Grid/CN=Bob*"')
        with pytest.raises(MappingError, match="is banned"):
            decide(BOB, (), policy)
        assert decide(ALICE, (), policy).pool == "grid"

    def test_banned_fqan_matches_any_of_the_callers_fqans(self) -> None:
        policy = self.policy(bans='# pilots of atlas are suspended\n"/atlas/Role=pilot/Capability=NULL"\n')
        with pytest.raises(MappingError, match=r"the FQAN /atlas/Role=pilot is banned"):
            decide(ALICE, ("/atlas/Role=pilot/Capability=NULL",), policy)
        with pytest.raises(MappingError, match=r"the FQAN /atlas/Role=pilot is banned"):
            decide(ALICE, ("/atlas/Role=production", "/atlas/Role=pilot"), policy)
        assert decide(ALICE, ("/atlas/Role=production",), policy).pool == "atlprd"

    def test_a_non_ascii_dn_maps_and_is_banned_in_openssl_spelling(self) -> None:
        # LCMAPS 1.6.6 maps the X509_NAME_oneline DN /C=XX/O=Test/CN=Jos\xC3\xA9 by a line written so
        jose = slash_dn(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
                                   x509.NameAttribute(NameOID.COMMON_NAME, "José")]))
        policy = self.policy('"/C=XX/O=Test/CN=Jos\\xC3\\xA9" jose\n')
        assert decide(jose, (), policy).account == "jose"
        banned = self.policy('"/C=XX/O=Test/CN=Jos\\xc3\\xa9" jose\n', bans='"/C=XX/O=Test/CN=Jos\\xC3\\xA9"\n')
        with pytest.raises(MappingError, match="is banned"):
            decide(jose, (), banned)

    def test_no_fqan_and_no_grid_mapfile_line(self) -> None:
        with pytest.raises(MappingError, match=f"no mapping for DN {ALICE}$"):
            decide(ALICE, (), self.policy())


class TestErrors:
    def test_mapping_errors_are_authorization_errors_with_the_reference_codes(self) -> None:
        assert issubclass(MappingError, AuthorizationError)
        assert issubclass(MappingNotAllowedError, AuthorizationError)
        assert MappingError("x").code == 1207
        assert str(MappingNotAllowedError("account root (uid 0)")) == "Mapping not allowed: account root (uid 0)"
        assert MappingNotAllowedError("x").code == 1208


class TestPoolMembers:
    def test_strict_prefix_then_digits_sorted(self) -> None:
        names = ["atl010", "atl002", "atlprd001", "atl", "xatl001", "atl001", "atl01a"]
        assert pool_members("atl", names) == ["atl001", "atl002", "atl010"]


class TestReadPolicy:
    def test_reads_the_three_files(self, tmp_path: Path) -> None:
        (tmp_path / "grid-mapfile").write_text(f'"{ALICE}" alice\n')
        (tmp_path / "voms").write_text(SITE_VOMS_RULES)
        (tmp_path / "ban").write_text('"/lhcb/Role=pilot"\n')
        policy = read_policy(str(tmp_path / "grid-mapfile"), str(tmp_path / "voms"), str(tmp_path / "ban"))
        assert policy.gridmap == (MapEntry(ALICE, "alice", 1),)
        assert len(policy.voms_rules) == 5
        assert policy.bans == ("/lhcb/Role=pilot",)

    def test_empty_paths_mean_no_file(self) -> None:
        assert read_policy() == MappingPolicy()

    def test_a_non_utf8_line_matches_nobody_and_the_rest_maps(self, tmp_path: Path) -> None:
        (tmp_path / "grid-mapfile").write_bytes(b'"/C=XX/O=Test/CN=Jos\xe9" latin\n' + f'"{ALICE}" alice\n'.encode())
        policy = read_policy(str(tmp_path / "grid-mapfile"))
        assert decide(ALICE, (), policy).account == "alice"
        with pytest.raises(MappingError, match="no mapping"):
            decide("/C=XX/O=Test/CN=José", (), policy)

    def test_a_missing_configured_file_is_a_mapping_failure(self, tmp_path: Path) -> None:
        with pytest.raises(MappingError, match=r"cannot read the grid-mapfile .*/absent"):
            read_policy(str(tmp_path / "absent"))


class TestMappingSettings:
    def test_defaults_map_nobody(self) -> None:
        settings = load_settings(environ={})
        assert settings.mapping == MappingSettings()
        assert settings.mapping.mode == "none"
        assert settings.mapping.lease_idle_time == 7 * 24 * 3600

    def test_read_from_the_mapping_section_and_the_environment(self, tmp_path: Path) -> None:
        config = tmp_path / "wmproxy.conf"
        config.write_text(
            "[mapping]\nmode = gridmap\ngridmap_file = /etc/grid-security/grid-mapfile\n"
            "voms_rules_file = /etc/wmproxy/voms-mapfile\nban_file = /etc/wmproxy/ban-mapfile\n"
        )
        settings = load_settings(config, environ={"WMPROXY_MAPPING_LEASE_IDLE_TIME": "3600"})
        assert settings.mapping == MappingSettings(
            mode="gridmap",
            gridmap_file="/etc/grid-security/grid-mapfile",
            voms_rules_file="/etc/wmproxy/voms-mapfile",
            ban_file="/etc/wmproxy/ban-mapfile",
            lease_idle_time=3600,
        )

    @pytest.mark.parametrize(("key", "value"), [("MODE", "lcmaps"), ("LEASE_IDLE_TIME", "-1"),
                                                ("LEASE_IDLE_TIME", "week")])
    def test_bad_values_are_refused_at_startup(self, key: str, value: str) -> None:
        with pytest.raises(ConfigError, match=r"(?i)mapping"):
            load_settings(environ={f"WMPROXY_MAPPING_{key}": value})
