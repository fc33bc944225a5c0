"""The client configuration file: INI and the gLite ClassAd form."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy.cli import clientconf
from wmproxy.cli.errors import CliError


def test_ini(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[client]\nendpoints = https://a/w,\n  https://b/w\nvo = dteam ; the VO\n"
                    "myproxy_server = mp.example.org\nmin_proxy_lifetime = 600\ntimeout = 30\n"
                    "[jdl-defaults]\nRetryCount = 3\nRank = -other.GlueCEStateEstimatedResponseTime\n")
    got = clientconf.load(str(conf), {})
    assert got.endpoints == ("https://a/w", "https://b/w")
    assert (got.vo, got.myproxy_server, got.min_proxy_lifetime, got.timeout) == ("dteam", "mp.example.org", 600, 30)
    assert got.jdl_defaults == {"RetryCount": "3", "Rank": "-other.GlueCEStateEstimatedResponseTime"}


def test_glite_classad(tmp_path: Path) -> None:
    conf = tmp_path / "glite_wms.conf"
    conf.write_text('[ WmsClient = [ VirtualOrganisation = "dteam"; WMProxyEndpoints = {"https://a/w", "https://b/w"};'
                    ' JdlDefaultAttributes = [ MyProxyServer = "mp"; RetryCount = 3; ]; ]; ]')
    got = clientconf.load(str(conf), {})
    assert (got.endpoints, got.vo, got.myproxy_server) == (("https://a/w", "https://b/w"), "dteam", "mp")
    assert got.jdl_defaults == {"RetryCount": "3"}


def test_environment_variable_and_none(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[client]\nvo = atlas\n")
    assert clientconf.load(None, {clientconf.CONFIG_ENV: str(conf)}).vo == "atlas"
    assert clientconf.load(None, {}) == clientconf.ClientConfig()


@pytest.mark.parametrize(("text", "message"), [
    ("[client]\nendpoint = x\n", "unknown key(s) in [client]: endpoint"),
    ("[client]\ntimeout = soon\n", "timeout must be a number of seconds"),
    ("neither = [\n", "is neither an INI file nor a ClassAd"),
])
def test_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    with pytest.raises(CliError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        clientconf.load(str(conf), {})
    with pytest.raises(CliError, match="cannot read the configuration file"):
        clientconf.load(str(tmp_path / "absent"), {})
