"""The service policy file: allow and deny entries of DN and FQAN globs, their precedence
(the reference's server GACL, wmproxy-behaviour.md §6.2, test 38739) and its reload when the
file changes (services/authz.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wmproxy.config import SecuritySettings, Settings
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError
from wmproxy.services.authz import PolicyFileError, check_caller, decide, parse_policy, policy_admits

JOHN = "/C=IT/O=INFN/CN=John Smith"
JANE = "/C=IT/O=INFN/CN=Jane"
DTEAM = "/dteam/Role=NULL/Capability=NULL"


def admits(policy: str, dn: str = JOHN, fqans: tuple[str, ...] = ()) -> bool:
    return decide(parse_policy(policy), Principal(dn, fqans=fqans))


def settings_with(path: Path, authorized_users: str = "*") -> Settings:
    return Settings(security=SecuritySettings(policy_file=str(path), authorized_users=authorized_users))


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` and move the modification time on, as a later edit would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


class TestParse:
    def test_kinds_quotes_and_comments(self) -> None:
        entries = parse_policy(f'# site policy\n\nallow *\ndeny "{JOHN}"\n  allow /dteam*  \n')
        assert [(e.allow, e.kind, e.pattern) for e in entries] == [
            (True, "any", "*"), (False, "dn", JOHN), (True, "fqan", "/dteam*")]

    @pytest.mark.parametrize("line", ["permit *", "allow", "deny   ", "allow:/dteam"])
    def test_bad_lines_are_refused_with_their_number(self, line: str) -> None:
        with pytest.raises(PolicyFileError, match="line 2"):
            parse_policy(f"allow *\n{line}\n")


class TestPrecedence:
    def test_nothing_matching_is_refused(self) -> None:
        assert not admits("")
        assert not admits("allow /atlas*", fqans=(DTEAM,))

    def test_any_user_deny_beats_any_user_allow(self) -> None:
        assert admits("allow *")
        assert not admits("allow *\ndeny *")

    def test_reference_38739_person_allow_beats_voms_and_any_user_deny(self) -> None:
        policy = f"deny *\ndeny /dteam*\nallow {JOHN}"
        assert admits(policy, JOHN, (DTEAM,))
        assert not admits(policy, JANE, (DTEAM,))

    def test_person_deny_refuses_whatever_the_fqan(self) -> None:
        assert not admits(f"allow *\nallow /dteam*\ndeny {JOHN}", JOHN, (DTEAM,))
        assert admits(f"allow *\nallow /dteam*\ndeny {JOHN}", JANE, (DTEAM,))

    def test_fqan_entries_use_the_first_fqan_and_deny_wins_within(self) -> None:
        policy = "allow /dteam*\ndeny /dteam/Role=pilot*"
        assert admits(policy, fqans=(DTEAM,))
        assert not admits(policy, fqans=("/dteam/Role=pilot/Capability=NULL",))
        assert not admits(policy, fqans=("/atlas/Role=NULL", DTEAM))

    def test_fqan_deny_beats_any_user_allow(self) -> None:
        assert not admits("allow *\ndeny /dteam*", fqans=(DTEAM,))
        assert admits("allow *\ndeny /dteam*")  # no FQAN: the any-user entry decides

    def test_dn_globs(self) -> None:
        assert admits("allow /C=IT/O=INFN/*", JANE)
        assert not admits("allow /C=IT/O=INFN/*", "/C=CH/O=CERN/CN=Jane")


class TestPolicyFile:
    def test_no_policy_file_admits_whom_authorized_users_admits(self) -> None:
        assert policy_admits(Settings(), Principal(JOHN))

    def test_missing_or_malformed_file_refuses_everyone(self, tmp_path: Path) -> None:
        path = tmp_path / "policy"
        assert not policy_admits(settings_with(path), Principal(JOHN))
        rewrite(path, "allow everybody please\n")
        assert not policy_admits(settings_with(path), Principal(JOHN))

    def test_reloaded_when_the_file_changes(self, tmp_path: Path) -> None:
        path = tmp_path / "policy"
        rewrite(path, "allow *\n")
        settings = settings_with(path)
        check_caller(settings, Principal(JOHN), "jobRegister")
        rewrite(path, f"allow *\ndeny {JOHN}\n")
        with pytest.raises(AuthorizationError, match="user not authorized"):
            check_caller(settings, Principal(JOHN), "jobRegister")
        check_caller(settings, Principal(JANE), "getVersion")
        rewrite(path, "allow *\n")
        check_caller(settings, Principal(JOHN), "jobRegister")

    def test_both_authorized_users_and_the_policy_must_admit(self, tmp_path: Path) -> None:
        path = tmp_path / "policy"
        rewrite(path, "allow *\n")
        with pytest.raises(AuthorizationError):
            check_caller(settings_with(path, authorized_users="/dteam*"), Principal(JOHN), "getVersion")
        check_caller(settings_with(path, authorized_users="/dteam*"), Principal(JOHN, fqans=(DTEAM,)), "getVersion")
