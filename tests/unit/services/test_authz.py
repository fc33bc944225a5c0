"""Who may use the service at all, and the drain switch (services/authz.py; §6.2, §3.1 step 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import principal_of
from wmproxy.config import SecuritySettings, ServiceSettings, Settings
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError
from wmproxy.services.authz import DRAINED_OPERATIONS, authorized, check_caller

#: The integration deployments' pattern: every demo user except those whose CN starts with M,
#: plus anybody whose first FQAN is in the atlas VO.
PATTERNS = "/C=XX/O=wmproxy-demo/OU=Users/CN=[!M]*, /atlas*"


def settings(authorized_users: str = PATTERNS, drain_file: str = "") -> Settings:
    return Settings(security=SecuritySettings(authorized_users=authorized_users),
                    service=ServiceSettings(host="localhost", drain_file=drain_file))


class TestAuthorizedUsers:
    def test_dn_glob_admits_and_refuses(self, pki: Pki) -> None:
        assert authorized(settings(), principal_of(pki, "alice"))
        assert authorized(settings(), principal_of(pki, "bob"))
        assert not authorized(settings(), principal_of(pki, "mallory"))

    def test_fqan_glob_matches_the_first_fqan_only(self, pki: Pki) -> None:
        assert authorized(settings(), principal_of(pki, "mallory", ("/atlas/Role=NULL/Capability=NULL",)))
        assert not authorized(settings(), principal_of(pki, "mallory", ("/dteam/Role=NULL", "/atlas/Role=NULL")))

    def test_bare_fqan_pattern_is_exact(self) -> None:
        only_dteam = settings("/dteam")
        assert authorized(only_dteam, Principal("/CN=x", fqans=("/dteam",)))
        assert not authorized(only_dteam, Principal("/CN=x", fqans=("/dteam/Role=NULL/Capability=NULL",)))
        assert not authorized(only_dteam, Principal("/CN=x"))

    def test_star_admits_every_authenticated_caller(self, pki: Pki) -> None:
        assert authorized(settings("*"), principal_of(pki, "mallory"))

    def test_nothing_configured_admits_nobody(self, pki: Pki) -> None:
        assert not authorized(settings(" , "), principal_of(pki, "alice"))

    def test_check_caller_refuses_with_the_reference_message(self, pki: Pki) -> None:
        with pytest.raises(AuthorizationError, match="Authorization error: user not authorized") as err:
            check_caller(settings(), principal_of(pki, "mallory"), "getVersion")
        assert err.value.code == 1207


class TestDrain:
    def test_drain_file_refuses_new_work_only(self, pki: Pki, tmp_path: Path) -> None:
        drain = tmp_path / "drain"
        drained = settings(drain_file=str(drain))
        alice = principal_of(pki, "alice")
        check_caller(drained, alice, "jobRegister")  # no file yet
        drain.touch()
        for operation in sorted(DRAINED_OPERATIONS):
            with pytest.raises(AuthorizationError, match="temporarily drained"):
                check_caller(drained, alice, operation)
        for operation in ("getJobStatus", "jobCancel", "getOutputFileList", "putProxy"):
            check_caller(drained, alice, operation)
        drain.unlink()
        check_caller(drained, alice, "jobSubmit")
