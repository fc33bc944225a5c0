"""The client configuration file: ``-c/--config FILE``, else ``$WMPROXY_CLIENT_CONFIG``, else (gLite
UI, ``Utils::checkConf``) ``$GLITE_WMSUI_COMMANDS_CONFIG``, else the VO's
``<prefix>/etc/glite-wms/<vo>/glite_wms.conf`` when it exists (``<prefix>``: ``$EMI_UI_CONF``, else
``/``; the VO: ``--vo``, else the VOMS attribute of the user proxy, else the
``VirtualOrganisation`` of the JDL of ``submit``/``list-match``).

Two spellings are read (``docs/cli.md``):

* INI, the project's own::

      [client]
      endpoints = https://wms1:7443/glite_wms_wmproxy_server
                  https://wms2:7443/glite_wms_wmproxy_server
      vo = dteam
      myproxy_server = myproxy.example.org
      min_proxy_lifetime = 1200        ; seconds, checked before submit/delegate
      timeout = 120                    ; seconds per connection and read

      [jdl-defaults]                   ; added to a submitted JDL that lacks them
      RetryCount = 3

* the gLite UI's ``glite_wms.conf`` ClassAd (``wmproxy-behaviour.md`` §11.2), top level or
  inside ``WmsClient = [...]``: ``WMProxyEndpoints``, ``VirtualOrganisation``,
  ``MyProxyServer``, ``OutputStorage``, ``JdlDefaultAttributes = [...]``; parsed with classad2.

Endpoints are tried in the order written; on a connection or TLS failure the next one is
used (the gLite UI picks one at random first: here the order is the site's choice).
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wmproxy.cli.errors import CliError, read_text_file, unreadable

CONFIG_ENV = "WMPROXY_CLIENT_CONFIG"
#: the gLite UI's variable naming its configuration file (``WMS_CLIENT_CONFIG`` in utils.cpp)
GLITE_CONFIG_ENV = "GLITE_WMSUI_COMMANDS_CONFIG"
#: the gLite UI's installation prefix of ``etc/glite-wms/<vo>/glite_wms.conf`` (``Utils::checkPrefix``)
PREFIX_ENV = "EMI_UI_CONF"
DEFAULT_MIN_PROXY_LIFETIME = 20 * 60  # the service's default [jobs] min_proxy_lifetime
_INI_HEADER = re.compile(r"^\[[A-Za-z0-9_. -]+\]\s*$")


@dataclass(frozen=True)
class ClientConfig:
    """What a configuration file may set.

    Attributes:
        endpoints: WMProxy URLs in failover order.
        vo: default ``VirtualOrganisation`` added to a JDL without one.
        myproxy_server: default ``MyProxyServer`` added to a JDL without one.
        jdl_defaults: further attributes (name → ClassAd expression text) added to a JDL
            without them.
        min_proxy_lifetime: seconds the user proxy must still be valid for submit and
            delegate-proxy.
        timeout: seconds for connecting and for each read.
        output_storage: ``OutputStorage`` (gLite; INI ``output_storage``): where ``output`` and
            ``perusal --get`` store a job's files without ``--dir`` (``<it>/<LOGNAME>_<id>``),
            ``$NAME`` expanded; None: ``/tmp``.
        source: the file read, or None for the built-in defaults.
    """

    endpoints: tuple[str, ...] = ()
    vo: str | None = None
    myproxy_server: str | None = None
    jdl_defaults: dict[str, str] = field(default_factory=dict)
    min_proxy_lifetime: int = DEFAULT_MIN_PROXY_LIFETIME
    timeout: float = 120.0
    output_storage: str | None = None
    source: str | None = None


def jdl_defaults(config: ClientConfig, *, myproxy: bool = True) -> dict[str, str]:
    """Attributes (name → ClassAd expression text) added to a JDL that lacks them: the
    ``[jdl-defaults]``, the VO and (with ``myproxy``) the MyProxy server of the configuration,
    else ``$MYPROXY_SERVER`` (gLite UI)."""
    import json

    defaults = dict(config.jdl_defaults)
    if config.vo:
        defaults.setdefault("VirtualOrganisation", json.dumps(config.vo))
    server = config.myproxy_server or os.environ.get("MYPROXY_SERVER")
    if myproxy and server:
        defaults.setdefault("MyProxyServer", json.dumps(server))
    return defaults


def vo_config_path(vo: str, environ: Mapping[str, str]) -> str:
    """``<prefix>/etc/glite-wms/<vo in lower case>/glite_wms.conf``: the VO's configuration file
    of the gLite UI (``<prefix>``: ``$EMI_UI_CONF``, else ``/``)."""
    return os.path.join(environ.get(PREFIX_ENV) or "/", "etc", "glite-wms", vo.lower(), "glite_wms.conf")


def load(path: str | None, environ: Mapping[str, str] | None = None, *, vo: str | None = None,
         proxy_vo: Callable[[], str | None] | None = None,
         jdl_vo: Callable[[], str | None] | None = None) -> ClientConfig:
    """The configuration of ``path``, else of ``$WMPROXY_CLIENT_CONFIG``, else of
    ``$GLITE_WMSUI_COMMANDS_CONFIG``, else of the VO's :func:`vo_config_path` when that file
    exists, else the defaults.

    The VO is ``vo``, else what ``proxy_vo`` returns, else what ``jdl_vo`` returns (the JDL's
    ``VirtualOrganisation``), each asked only when the directory ``<prefix>/etc/glite-wms``
    exists and the ones before gave none: gLite's ``Utils::checkConf`` reads the JDL's only
    when the proxy has no VOMS VO (``--vo`` there only when it has none either).

    Raises:
        CliError: ``Configuration`` when the file cannot be read or parsed, naming the file (a
            missing VO file is no error: as in gLite, the defaults apply).
    """
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV) or env.get(GLITE_CONFIG_ENV)
    if not path:
        path = _vo_file(env, vo, proxy_vo, jdl_vo)
    if not path:
        return ClientConfig()
    try:
        text = read_text_file(path)  # bounded: a FIFO or /dev/zero named here never fills the memory
    except OSError as exc:
        raise CliError("Configuration", f"cannot read the configuration file {path}: {unreadable(exc)}") from None
    first = next((ln.strip() for ln in text.splitlines()
                  if ln.strip() and not ln.strip().startswith(("#", ";", "//"))), "")
    if _INI_HEADER.match(first):
        return _from_ini(text, path)
    return _from_classad(text, path)


def _vo_file(environ: Mapping[str, str], vo: str | None, *sources: Callable[[], str | None] | None) -> str | None:
    """The VO's configuration file, if it exists (:func:`load`): ``vo``, else the first VO one
    of ``sources`` (the proxy's, the JDL's) gives, each asked in turn."""
    if not os.path.isdir(os.path.join(environ.get(PREFIX_ENV) or "/", "etc", "glite-wms")):
        return None  # no file to find: the proxy is not read
    name = vo
    for source in sources:
        if name or source is None:
            continue
        name = source()
    if not name or "/" in name or name in (".", ".."):
        return None
    path = vo_config_path(name, environ)
    return path if os.path.isfile(path) else None


def output_storage(config: ClientConfig) -> str:
    """The directory of ``OutputStorage`` (``$NAME`` expanded, as gLite's
    ``Utils::getOutputStorage``), else ``/tmp``.

    Raises:
        CliError: ``Configuration`` when it is not a directory, naming it and the file.
    """
    if not config.output_storage:
        return "/tmp"  # noqa: S108 - gLite's default
    storage = os.path.expandvars(config.output_storage)
    storage = storage.rstrip("/") or "/"
    if not os.path.isdir(storage):
        raise CliError("Configuration", f"the OutputStorage {storage} of {config.source} is not a directory: make "
                                        "it, or correct the configuration file")
    return storage


def _words(value: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\s,]+", value) if w)


def _number(value: str, key: str, path: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CliError("Configuration", f"{path}: {key} must be a number of seconds, not {value!r}") from None
    if number < 0:
        raise CliError("Configuration", f"{path}: {key} must not be negative")
    return number


class _CaseKeepingParser(configparser.ConfigParser):
    """Keys keep their case: ``[jdl-defaults]`` names are JDL attributes."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _from_ini(text: str, path: str) -> ClientConfig:
    parser = _CaseKeepingParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise CliError("Configuration", f"{path}: {' '.join(str(exc).split())}") from None
    client = parser["client"] if parser.has_section("client") else {}
    known = {"endpoints", "vo", "myproxy_server", "min_proxy_lifetime", "timeout", "output_storage"}
    unknown = sorted(set(client) - known)
    if unknown:
        raise CliError("Configuration", f"{path}: unknown key(s) in [client]: {', '.join(unknown)}")
    defaults = dict(parser["jdl-defaults"]) if parser.has_section("jdl-defaults") else {}
    return ClientConfig(
        endpoints=_words(client.get("endpoints", "")),
        vo=client.get("vo") or None,
        myproxy_server=client.get("myproxy_server") or None,
        jdl_defaults=defaults,
        min_proxy_lifetime=int(_number(client.get("min_proxy_lifetime", str(DEFAULT_MIN_PROXY_LIFETIME)),
                                       "min_proxy_lifetime", path)),
        timeout=_number(client.get("timeout", "120"), "timeout", path) or 120.0,
        output_storage=client.get("output_storage") or None,
        source=path,
    )


def _from_classad(text: str, path: str) -> ClientConfig:
    import classad2

    try:
        ad = classad2.ClassAd(text)
    except (classad2.ClassAdException, ValueError):
        raise CliError("Configuration", f"{path} is neither an INI file nor a ClassAd (glite_wms.conf)") from None
    inner = ad.get("WmsClient")
    if isinstance(inner, classad2.ClassAd):
        ad = inner
    endpoints = ad.get("WMProxyEndpoints") or ad.get("WMProxyEndPoints") or ()
    if isinstance(endpoints, str):
        endpoints = (endpoints,)
    defaults_ad = ad.get("JdlDefaultAttributes")
    defaults: dict[str, str] = {}
    if isinstance(defaults_ad, classad2.ClassAd):
        defaults = {key: str(defaults_ad.lookup(key)) for key in defaults_ad}
    vo = ad.get("VirtualOrganisation") or defaults.pop("VirtualOrganisation", "").strip('"') or None
    myproxy = ad.get("MyProxyServer") or defaults.pop("MyProxyServer", "").strip('"') or None
    storage = ad.get("OutputStorage")
    return ClientConfig(
        endpoints=tuple(str(e) for e in endpoints),
        vo=str(vo) if vo else None,
        myproxy_server=str(myproxy) if myproxy else None,
        jdl_defaults=defaults,
        output_storage=storage if isinstance(storage, str) and storage else None,
        source=path,
    )
