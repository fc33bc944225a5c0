"""The local proxy check made before every connection (issue 12), and its certificate cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.client import WMProxyClientError
from wmproxy.client.credential import check_proxy
from wmproxy.security.proxy import credential_pem


def private(path: Path, data: bytes) -> Path:
    """``path`` holding ``data``, mode 0600: the only mode a proxy file may have."""
    path.write_bytes(data)
    path.chmod(0o600)
    return path


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
    cert = private(tmp_path / "cert.pem", credential_pem(pki.users["bob"].credential))
    for _ in range(2):
        with pytest.raises(WMProxyClientError, match="holds a certificate that is not a proxy") as err:
            check_proxy(str(cert))
        assert err.value.fault_type == "ProxyError"


def test_key_of_another_certificate(pki: Pki, tmp_path: Path) -> None:
    from wmproxy.security.chain import chain_pem
    from wmproxy.security.proxy import key_pem, load_credential

    alice, bob = load_credential(pki.proxy("alice", 3600)), load_credential(pki.proxy("bob", 3600))
    assert bob.key is not None
    mixed = private(tmp_path / "mixed.pem", chain_pem([alice.cert]) + key_pem(bob.key) + chain_pem(alice.chain))
    with pytest.raises(WMProxyClientError, match="is not a usable proxy file"):
        check_proxy(str(mixed))


#: the uid of ``nobody``, an account every Linux system has: the other local user of these tests
NOBODY = 65534

def says(path: Path, text: str) -> str:
    """The pattern of the refusal of the proxy file ``path`` for ``text`` (a regular expression)."""
    return rf"^ProxyError: the proxy file {re.escape(str(path))} {text}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


class TestOnlyTheUsersOwnPrivateProxy:
    """Globus' rule for a proxy (globus_gsi_sysconfig_check_keyfile_unix): the user's own file,
    nobody else may read or write it; a link is not followed. Else another local user could put
    their proxy where the user's is looked for, and the user's jobs would run as them."""

    @needs_root
    def test_a_proxy_of_another_user_is_refused(self, pki: Pki, tmp_path: Path) -> None:
        planted = private(tmp_path / "planted.pem", pki.proxy("mallory", 3600).read_bytes())
        os.chown(planted, NOBODY, NOBODY)
        with pytest.raises(WMProxyClientError) as err:
            check_proxy(str(planted))
        assert err.value.fault_type == "ProxyError"
        assert err.value.description.startswith(
            f"the proxy file {planted} belongs to uid {NOBODY} (nobody), not to you (uid {os.getuid()} (")
        assert "remove it" in err.value.description and "X509_USER_PROXY" in err.value.description

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o700])
    def test_a_proxy_others_can_open_is_refused(self, pki: Pki, mode: int) -> None:
        proxy = pki.proxy("alice", 3600)
        proxy.chmod(mode)
        refusal = says(proxy, rf"has mode {mode:04o}: a proxy must be readable and writable by its owner only.*chmod")
        with pytest.raises(WMProxyClientError, match=refusal):
            check_proxy(str(proxy))
        proxy.chmod(0o400)  # read-only for the owner is fine, as for Globus
        assert check_proxy(str(proxy)) > 3000

    def test_a_link_is_not_followed(self, pki: Pki, tmp_path: Path) -> None:
        link = tmp_path / "x509up_link"
        link.symlink_to(pki.proxy("alice", 3600))
        with pytest.raises(WMProxyClientError, match=says(link, "is a symbolic link, which is not followed")):
            check_proxy(str(link))
        dangling = tmp_path / "dangling"
        dangling.symlink_to(tmp_path / "not-yet")
        with pytest.raises(WMProxyClientError, match="is a symbolic link"):
            check_proxy(str(dangling))

    def test_a_fifo_or_a_directory_is_refused_at_once(self, tmp_path: Path) -> None:
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo, 0o600)  # no writer: a blocking open would hang here
        with pytest.raises(WMProxyClientError, match=says(fifo, "is not a regular file")):
            check_proxy(str(fifo))
        with pytest.raises(WMProxyClientError, match=says(tmp_path, "is not a regular file")):
            check_proxy(str(tmp_path))

    def test_an_empty_file_is_refused(self, tmp_path: Path) -> None:
        empty = private(tmp_path / "empty", b"")
        with pytest.raises(WMProxyClientError, match=says(empty, "is empty: create one")):
            check_proxy(str(empty))


@needs_root
def test_a_proxy_planted_at_the_default_path_by_another_user(pki: Pki) -> None:
    """The attack itself, with real accounts: the attacker (a process of their own uid) writes their
    proxy as ``/tmp/x509up_u<victim uid>``, mode 0644; the victim, without ``X509_USER_PROXY``, is
    told and does not use it."""
    import ssl  # noqa: F401 - loaded before the fork: the victim cannot read the interpreter's tree

    from cryptography import x509  # noqa: F401 - likewise

    from tests.accounts import local_accounts
    from wmproxy.cli.common import Environment

    attacker_pem = pki.proxy("mallory", 3600).read_bytes()
    with local_accounts({"red": ["atk", "vic"]}) as accounts:
        attacker, victim = accounts.passwd("atk"), accounts.passwd("vic")
        default = Path(f"/tmp/x509up_u{victim.pw_uid}")
        try:
            subprocess.run(["/bin/sh", "-c", f"umask 022; cat > {default}"], input=attacker_pem, check=True,
                           user=attacker.pw_uid, group=attacker.pw_gid, extra_groups=[], timeout=60)
            assert default.stat().st_uid == attacker.pw_uid
            outcome = _as_user(victim.pw_uid, victim.pw_gid,
                               lambda: check_proxy(Environment.load("https://wms.example.org/x", {}).proxy_file))
        finally:
            default.unlink(missing_ok=True)
    assert outcome.startswith(f"ProxyError: the proxy file {default} belongs to uid {attacker.pw_uid} "
                              f"({attacker.pw_name}), not to you (uid {victim.pw_uid} ({victim.pw_name}))"), outcome


def _as_user(uid: int, gid: int, action: Callable[[], object]) -> str:
    """``action()`` run in a forked child under ``uid``/``gid``: ``"returned <value>"`` or
    ``"<fault type>: <description>"`` of the WMProxyClientError it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                text = f"returned {action()!r}"
            except WMProxyClientError as exc:
                text = f"{exc.fault_type}: {exc.description}"
            os.write(write, text.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        text = fh.read().decode()
    os.waitpid(pid, 0)
    return text
