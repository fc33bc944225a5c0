"""The client configuration file: INI and the gLite ClassAd form."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from wmproxy.cli import clientconf
from wmproxy.cli.errors import CliError
from wmproxy.cli.main import cli

from .conftest import FakeClient


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


def vo_conf(prefix: Path, vo: str, endpoint: str, retry: int) -> None:
    """The gLite UI's ``<prefix>/etc/glite-wms/<vo>/glite_wms.conf``: ``endpoint``, ``RetryCount``."""
    conf = prefix / "etc" / "glite-wms" / vo / "glite_wms.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f'[ WmsClient = [ WMProxyEndpoints = {{"{endpoint}"}}; '
                    f"JdlDefaultAttributes = [ RetryCount = {retry}; ]; ]; ]")


class TestTheVoOfTheJdl:
    """gLite's ``Utils::checkConf``: without ``--vo`` or a VOMS VO in the proxy, the
    ``VirtualOrganisation`` of the JDL of ``submit``/``list-match`` chooses
    ``<prefix>/etc/glite-wms/<vo>/glite_wms.conf``."""

    @pytest.fixture
    def prefix(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeClient) -> Path:
        monkeypatch.delenv("GLITE_WMS_WMPROXY_ENDPOINT")
        monkeypatch.delenv(clientconf.CONFIG_ENV, raising=False)
        monkeypatch.delenv(clientconf.GLITE_CONFIG_ENV, raising=False)
        monkeypatch.setenv(clientconf.PREFIX_ENV, str(tmp_path / "prefix"))
        vo_conf(tmp_path / "prefix", "biomed", "https://biomed-wms:7443/w", 7)
        vo_conf(tmp_path / "prefix", "dteam", "https://dteam-wms:7443/w", 2)
        return tmp_path / "prefix"

    @pytest.mark.parametrize(("verb", "call"), [(["submit", "-d", "dg"], "job_submit"),
                                                (["list-match", "-d", "dg"], "job_list_match")])
    def test_chooses_the_vo_file(self, runner: CliRunner, fake: FakeClient, prefix: Path, tmp_path: Path,
                                 verb: list[str], call: str) -> None:
        """``--vo`` comes first; a JDL without a VO, or not parsing, chooses none."""
        jdl = tmp_path / "job.jdl"
        jdl.write_text('[ Executable = "/bin/true"; VirtualOrganisation = "BioMed"; ]')
        result = runner.invoke(cli, [*verb, str(jdl)])
        assert result.exit_code == 0, result.output  # without the file: no endpoint anywhere
        sent = next(args[0] for name, args in fake.calls if name == call)
        assert "RetryCount = 7" in sent, sent
        result = runner.invoke(cli, [*verb, "--vo", "dteam", str(jdl)])  # --vo first
        assert result.exit_code == 0, result.output
        sent = [args[0] for name, args in fake.calls if name == call][-1]
        assert "RetryCount = 2" in sent, sent
        calls = len(fake.calls)
        for text in ('[ Executable = "/bin/true"; ]', '[ Executable = ; VirtualOrganisation = "biomed"; ]'):
            jdl.write_text(text)  # no VO, or a JDL not parsing: no file chosen
            result = runner.invoke(cli, [*verb, str(jdl)])
            assert result.exit_code == 1 and "no WMProxy endpoint" in result.stderr, result.output
        assert len(fake.calls) == calls

    def test_the_proxy_vo_comes_before_the_jdl_vo(self, prefix: Path) -> None:
        asked: list[str] = []

        def jdl_vo() -> str:
            asked.append("jdl")
            return "biomed"

        env = {clientconf.PREFIX_ENV: str(prefix)}
        assert clientconf.load(None, env, proxy_vo=lambda: "dteam", jdl_vo=jdl_vo).endpoints == (
            "https://dteam-wms:7443/w",)
        assert asked == []  # not read when the proxy names the VO
        assert clientconf.load(None, env, proxy_vo=lambda: None, jdl_vo=jdl_vo).endpoints == (
            "https://biomed-wms:7443/w",)
        assert clientconf.load(None, env, vo="dteam", proxy_vo=lambda: None, jdl_vo=jdl_vo).endpoints == (
            "https://dteam-wms:7443/w",)
        assert asked == ["jdl"]
