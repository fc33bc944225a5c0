"""The local proxy check made before every connection (issue 12), and its certificate cache."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.client import WMProxyClientError
from wmproxy.client.credential import check_proxy
from wmproxy.security.proxy import credential_pem


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "wmproxy" / "proxy-certificates.json"


def test_a_valid_proxy_and_the_cache_of_its_certificate(pki: Pki, cache_home: Path) -> None:
    proxy = pki.proxy("alice", 3600)
    left = check_proxy(str(proxy))
    assert 3500 < left <= 3600
    cached = json.loads(cache_home.read_text())
    assert len(cached) == 1 and next(iter(cached.values()))[0] is True
    assert oct(cache_home.parent.stat().st_mode & 0o777) == "0o700"
    later = datetime.now(UTC) + timedelta(minutes=30)
    assert 1700 < check_proxy(str(proxy), now=later) <= 1800  # from the cache, same answer


def test_expired_and_too_short(pki: Pki) -> None:
    proxy = pki.proxy("alice", 600)
    with pytest.raises(WMProxyClientError, match=r"has [0-9] minutes left .* at least 20 minutes are needed"):
        check_proxy(str(proxy), 1200)
    with pytest.raises(WMProxyClientError, match=r"expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        check_proxy(str(proxy), now=datetime.now(UTC) + timedelta(hours=1))


def test_a_user_certificate_is_not_a_proxy_even_when_cached(pki: Pki, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(credential_pem(pki.users["bob"].credential))
    for _ in range(2):
        with pytest.raises(WMProxyClientError, match="holds a certificate that is not a proxy") as err:
            check_proxy(str(cert))
        assert err.value.fault_type == "ProxyError"


def test_key_of_another_certificate(pki: Pki, tmp_path: Path) -> None:
    from wmproxy.security.chain import chain_pem
    from wmproxy.security.proxy import key_pem, load_credential

    alice, bob = load_credential(pki.proxy("alice", 3600)), load_credential(pki.proxy("bob", 3600))
    assert bob.key is not None
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(chain_pem([alice.cert]) + key_pem(bob.key) + chain_pem(alice.chain))
    with pytest.raises(WMProxyClientError, match="is not a usable proxy file"):
        check_proxy(str(mixed))
