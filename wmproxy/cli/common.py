"""What every verb shares: endpoint/credential lookup, the client factory, error reporting."""

from __future__ import annotations

import functools
import inspect
import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, overload

import click

from wmproxy.cli import clientconf
from wmproxy.cli.clientconf import ClientConfig
from wmproxy.cli.errors import CliError, unreadable
from wmproxy.client.faults import WMProxyClientError

if TYPE_CHECKING:
    from rich.console import Console

    from wmproxy.client import WMProxyClient

__all__ = ["CliError", "Environment", "WMProxyClientError", "common_options", "fail", "make_client"]

ENDPOINT_ENV = "GLITE_WMS_WMPROXY_ENDPOINT"
DEFAULT_CA_DIR = "/etc/grid-security/certificates"
_META = "wmproxy.options"

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("wmproxy.cli")
log.addHandler(logging.NullHandler())  # errors are printed by fail(), logged only with --logfile/--debug


@dataclass(frozen=True)
class RunOptions:
    """The options every verb takes besides ``-e`` and ``--json`` (gLite UI spelling).

    Attributes:
        config_file: ``-c/--config FILE``.
        logfile: ``--logfile FILE``: the run's log is appended there.
        debug: ``--debug``: log every call (on stderr, and in the log file).
        noint: ``--noint``: never ask; answers are "yes".
        vo: ``--vo NAME`` (gLite UI): the VirtualOrganisation a submitted JDL without one gets
            (before the configuration's ``vo``), and the VO of the default configuration file
            (:func:`wmproxy.cli.clientconf.load`).
    """

    config_file: str | None = None
    logfile: str | None = None
    debug: bool = False
    noint: bool = False
    vo: str | None = None


def run_options() -> RunOptions:
    """The current verb's :class:`RunOptions` (defaults outside a click context)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_root().meta.get(_META) if ctx is not None else None
    return found if isinstance(found, RunOptions) else RunOptions()


def json_requested() -> bool:
    """Whether the running verb was given ``--json``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


@dataclass(frozen=True)
class Environment:
    """Where to connect and with which credentials, read once from options, environment and
    the client configuration file.

    Attributes:
        endpoint: the first endpoint to try: ``-e``, else ``$GLITE_WMS_WMPROXY_ENDPOINT``,
            else the first of the configuration's ``endpoints``.
        proxy_file: ``$X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``; :func:`make_client` uses it
            only once it is known to be the user's own private file (anyone can create that name
            in ``/tmp``: :func:`wmproxy.client.credential.read_own_proxy`).
        ca_dir: ``$X509_CERT_DIR`` or ``/etc/grid-security/certificates``.
        endpoints: every endpoint in failover order (``endpoint`` first).
        config: the client configuration (:mod:`wmproxy.cli.clientconf`).
    """

    endpoint: str
    proxy_file: str
    ca_dir: str
    endpoints: tuple[str, ...] = ()
    config: ClientConfig = field(default_factory=ClientConfig)

    @classmethod
    def load(cls, endpoint: str | None, environ: dict[str, str] | None = None, *,
             jdl: str | None = None) -> Environment:
        """``jdl``: the text of the JDL the verb sends (``submit``, ``list-match``), whose
        ``VirtualOrganisation`` chooses the VO's configuration file when neither ``--vo`` nor
        the proxy names a VO (:func:`wmproxy.cli.clientconf.load`).

        Raises: CliError("Configuration") when no endpoint is given anywhere, an endpoint is
        not an ``https://`` URL, or the configuration file is unusable."""
        from wmproxy.cli.jdlprep import virtual_organisation

        env = dict(os.environ) if environ is None else environ
        options = run_options()
        proxy = env.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"  # noqa: S108 - the Globus default
        config = clientconf.load(options.config_file, env, vo=options.vo, proxy_vo=lambda: proxy_vo(proxy),
                                 jdl_vo=None if jdl is None else lambda: virtual_organisation(jdl))
        if options.vo:
            config = replace(config, vo=options.vo)
        first = endpoint or env.get(ENDPOINT_ENV)
        endpoints = (first,) if first else config.endpoints
        if not endpoints:
            raise CliError(
                "Configuration", f"no WMProxy endpoint: use -e/--endpoint, set {ENDPOINT_ENV} or list "
                "endpoints in the configuration file (-c)"
            )
        for url in endpoints:
            check_endpoint(url)
        return cls(endpoints[0], proxy, env.get("X509_CERT_DIR") or DEFAULT_CA_DIR, tuple(endpoints), config)


def proxy_vo(proxy_file: str) -> str | None:
    """The VO of the user proxy's first VOMS attribute (not verified: it only chooses the VO's
    configuration file, as gLite's ``Utils::getDefaultVo``), None without one or when the file
    is not the user's own private proxy (:func:`make_client` says why later)."""
    from cryptography import x509

    from wmproxy.client.credential import read_own_proxy
    from wmproxy.security.voms import voms_attributes

    try:
        chain = x509.load_pem_x509_certificates(read_own_proxy(proxy_file))
        found = voms_attributes(chain)
    except Exception:  # noqa: BLE001 - any unreadable proxy: no VO from it
        return None
    return found[0].vo if found and found[0].vo else None


def check_endpoint(url: str) -> None:
    """Raises: CliError("Configuration") unless ``url`` is ``https://host[:port]/path``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest.split("/", 1)[0]:
        raise CliError("Configuration", f"the endpoint {url!r} is not a URL: use https://<host>:<port>/<path>")
    if scheme.lower() != "https":
        raise CliError(
            "Configuration",
            f"the endpoint {url} uses {scheme}://: a WMProxy is reached over https:// only "
            f"(https://{rest})",
        )


def make_client(env: Environment, *, min_lifetime: int = 0, short_is_fatal: bool = True) -> WMProxyClient:
    """The client used by every verb (tests replace this function).

    Checks the CA directory and the user proxy first
    (:func:`wmproxy.client.credential.check_proxy`: missing, unreadable, not a proxy,
    expired); a proxy with less than ``min_lifetime`` seconds left is an error, or with
    ``short_is_fatal`` False a warning on stderr (``delegate-proxy``: a service configured
    for short proxies may accept it). With several endpoints each is probed with getVersion in turn and the first
    that answers is used; an endpoint that cannot be reached (connection or TLS failure) is
    reported as a warning and the next one tried, as the gLite UI does.

    Raises:
        CliError: ``Configuration`` for a missing CA directory.
        WMProxyClientError: ``ProxyError`` from the proxy check; ``ConnectionError`` when no
            endpoint answers (every endpoint's reason is listed).
    """
    from wmproxy.client import WMProxyClient
    from wmproxy.client.credential import check_proxy

    if not os.path.isdir(env.ca_dir):
        raise CliError("Configuration", f"CA directory not found: {env.ca_dir} (set X509_CERT_DIR)")
    left = check_proxy(env.proxy_file)
    if left < min_lifetime:
        short = short_proxy(env.proxy_file, left, min_lifetime)
        if short_is_fatal:
            raise WMProxyClientError("ProxyError", short, None, "local proxy check")
        echo(f"Warning - {short}", err=True)
    timeout = env.config.timeout
    endpoints = env.endpoints or (env.endpoint,)
    if len(endpoints) == 1:
        return WMProxyClient(endpoints[0], env.proxy_file, env.ca_dir, timeout)
    failures = []
    for url in endpoints:
        client = WMProxyClient(url, env.proxy_file, env.ca_dir, timeout)
        try:
            client.get_version()
        except WMProxyClientError as exc:
            if exc.fault_type not in FAILOVER_ERRORS:
                raise
            failures.append(f"{url} ({exc.description})")
            log.info("endpoint %s failed: %s", url, exc.description)
            echo(f"Warning - {url}: {exc.description}; switching to the next WMProxy server", err=True)
            continue
        return client
    raise WMProxyClientError("ConnectionError", "unable to contact any specified endpoint: " + "; ".join(failures))


def short_proxy(proxy_file: str, left: float, min_lifetime: int) -> str:
    """The words for a proxy with ``left`` seconds, less than ``min_lifetime``."""
    return (f"the proxy {proxy_file} has {int(left // 60)} minutes left; the service needs at least "
            f"{min_lifetime // 60} minutes (default [jobs] min_proxy_lifetime) to register jobs with it: renew it "
            "with voms-proxy-init or grid-proxy-init")


#: client error kinds after which the next configured endpoint is tried
FAILOVER_ERRORS = ("ConnectionError", "TLSError")


@overload
def common_options(func: F, /) -> F: ...


@overload
def common_options(*, short_endpoint: bool = True) -> Callable[[F], F]: ...


def common_options(func: F | None = None, /, *, short_endpoint: bool = True) -> F | Callable[[F], F]:
    """The options of every verb: ``-e/--endpoint URL``, ``--json``, ``-c/--config FILE``,
    ``--logfile FILE``, ``--debug``, ``--noint`` and ``--version`` (client and server version).

    The last five are taken off before the verb runs (:func:`run_options` gives them back);
    a verb with its own ``noint`` parameter still receives it. So are two more options of the
    gLite UI commands, for the scripts written for them: ``--vo NAME`` (:class:`RunOptions`;
    not with ``-c``, as in gLite) and ``--pretty-print`` (with ``--json``, the document is
    printed indented, as gLite's; :func:`_pretty_printed`).

    ``@common_options(short_endpoint=False)``: ``--endpoint`` has no ``-e``, which the verb
    takes for something else (``status`` and ``logging-info``: ``-e`` is ``--exclude``, as in
    glite-wms-job-status and glite-wms-job-logging-info).
    """
    if func is None:
        return functools.partial(_with_common_options, short_endpoint=short_endpoint)
    return _with_common_options(func, short_endpoint=short_endpoint)


def _with_common_options(func: F, *, short_endpoint: bool) -> F:
    takes_noint = "noint" in inspect.signature(func).parameters

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = RunOptions(kwargs.pop("config_file"), kwargs.pop("logfile"), kwargs.pop("debug"),
                             kwargs["noint"] if takes_noint else kwargs.pop("noint"), kwargs.pop("vo"))
        show_version = kwargs.pop("show_version")
        kwargs.pop("pretty_print")
        if options.vo and options.config_file:
            raise click.UsageError("--vo and -c/--config cannot be given together (the VO of a configuration "
                                   "file is its own)")
        click.get_current_context().find_root().meta[_META] = options
        _setup_logging(options)
        if show_version:
            return _print_versions(kwargs.get("endpoint"), bool(kwargs.get("as_json")))
        return func(*args, **kwargs)

    wrapper = _pretty_printed(_guarded(wrapper))
    for decorator in (
        click.option("--version", "show_version", is_flag=True,
                     help="Print the client and the service version (getVersion), then exit."),
        click.option("--pretty-print", "pretty_print", is_flag=True,
                     help="With --json: print the document indented."),
        click.option("--vo", metavar="NAME",
                     help="VirtualOrganisation of a submitted JDL without one, and of the default configuration "
                          "/etc/glite-wms/NAME/glite_wms.conf."),
        click.option("--debug", is_flag=True, help="Log every call on stderr (and in --logfile)."),
        click.option("--logfile", metavar="FILE", help="Append a log of this run to FILE."),
        click.option("-c", "--config", "config_file", metavar="FILE",
                     help="Client configuration file (endpoints, VO, MyProxy server; see docs/cli.md)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option(*(("-e",) if short_endpoint else ()), "--endpoint", metavar="URL",
                     help=f"WMProxy endpoint (default ${ENDPOINT_ENV})."),
    ):
        wrapper = decorator(wrapper)
    if not takes_noint:
        wrapper = click.option("--noint", is_flag=True, help="Never ask for confirmation.")(wrapper)
    return wrapper  # type: ignore[return-value]


def _pretty_printed(func: F) -> F:
    """With ``--pretty-print --json``, what the verb prints on stdout (its document, or its error
    document) is printed again indented by two spaces when it is one JSON document, as is
    otherwise."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (kwargs.get("pretty_print") and kwargs.get("as_json")):
            return func(*args, **kwargs)
        buffer = io.StringIO()
        try:
            with redirect_stdout(buffer):
                return func(*args, **kwargs)
        finally:
            click.echo(_indented(buffer.getvalue()), nl=False)

    return wrapper  # type: ignore[return-value]


def _indented(text: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        return text
    return json.dumps(document, indent=2) + "\n"


def _setup_logging(options: RunOptions) -> None:
    """``--logfile`` gets INFO (DEBUG with ``--debug``), stderr gets DEBUG with ``--debug``.
    Only the ``wmproxy`` loggers: zeep and urllib3 log whole messages, delegated proxies
    included, and are left quiet."""
    if not (options.logfile or options.debug):
        return
    root = logging.getLogger("wmproxy")
    root.setLevel(logging.DEBUG if options.debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if options.logfile:
        try:
            handler: logging.Handler = logging.FileHandler(options.logfile, encoding="utf-8")
        except OSError as exc:
            raise CliError("Configuration", f"cannot write the log file {options.logfile}: {exc.strerror}") from None
        handler.setFormatter(fmt)
        root.addHandler(handler)
    if options.debug:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
    log.info("wmproxy %s", " ".join(sys.argv[1:]))


def client_version() -> str:
    """The installed wmproxy package version (:data:`wmproxy.__version__`)."""
    import wmproxy

    return wmproxy.__version__


def _print_versions(endpoint: str | None, as_json: bool) -> None:
    env = Environment.load(endpoint)
    client = make_client(env)
    server = client.get_version()
    if as_json:
        click.echo(json.dumps({"result": "success", "client": client_version(), "endpoint": client.endpoint,
                               "server": server}))
    else:
        echo(f"wmproxy client version {client_version()}\n\nConnecting to the service {client.endpoint}\n\n"
                   f"Version successfully retrieved :\nWMProxy Version: {server}")


def _guarded(func: F) -> F:
    """Print ``Error - <type>: <description>`` (a JSON error object under ``--json``) and exit
    1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WMProxyClientError as exc:
            fail(exc.fault_type, exc.description)
        except CliError as exc:
            fail(exc.kind, exc.description, exc.job_id)

    return wrapper  # type: ignore[return-value]


def reports_errors(func: F) -> F:
    """Print ``Error - <type>: <description>`` on stderr and exit 1 instead of a traceback."""
    return _guarded(func)


def error_json(kind: str, description: str, job_id: str | None = None) -> str:
    """The ``--json`` document of a verb that failed as a whole (docs/cli-json.md):
    ``{"result": "failure", "error": {"type": kind, "message": description}}`` (and
    ``"jobid"`` when a job was registered all the same)."""
    from wmproxy.cli.render import error_json as document

    return document(kind, description, job_id)


#: the control characters (Unicode category Cc: C0, DEL and C1) but tab and newline
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` for a terminal: each control character (Unicode category Cc: C0, DEL, C1) but
    tab and newline shown as ``\\xNN`` (U+009B as ``\\x9b``), so that text the server gives (file
    names, reasons, JDL values) cannot move the cursor, rewrite lines or send the terminal
    commands (CSI, OSC...)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: what :func:`one_line` escapes besides :data:`_CONTROLS`: newline, and the line and paragraph
#: separators ``str.splitlines`` breaks at (a text read back by a script)
_LINE_BREAKS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: object) -> str:
    """``text`` (``str()`` of it) for one line of ``key: value`` output: as :func:`printable`,
    and a line break shown as ``\\x0a`` (``\\u2028``/``\\u2029`` for the Unicode separators)
    too, so that a value the server gives (a status, a reason, a job id) cannot add a line
    (``Current Status: Aborted``) that a person or a script would take for the CLI's."""
    return _LINE_BREAKS.sub(_escaped, str(text))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def echo(text: str = "", *, nl: bool = True, err: bool = False) -> None:
    """``click.echo`` of text in a human format, through :func:`printable`. JSON documents are
    printed with ``click.echo``, exact (``json.dumps`` escapes every control character)."""
    click.echo(printable(text), nl=nl, err=err)


def fail(kind: str, description: str, job_id: str | None = None) -> None:
    """Report one error and exit with status 1: ``Error - <kind>: <description>`` on stderr,
    or under ``--json`` the :func:`error_json` object on stdout."""
    log.error("%s: %s", kind, description)
    if json_requested():
        click.echo(error_json(kind, description, job_id))
    else:
        echo(f"Error - {kind}: {' '.join(description.split())}", err=True)
    sys.exit(1)


def error_console() -> Console:
    """Console for progress bars and prompts: stderr, so stdout stays parseable."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Rich progress on stderr; yields ``task(label, total bytes) -> advance(bytes)``. A label (a
    file name the server gave) is shown as written: its rich markup (``[link=...]``,
    ``[reverse]``) is escaped, its control characters too (:func:`printable`)."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = error_console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not enabled or not console.is_terminal,
    ) as progress:

        def task(label: str, total: int) -> Callable[[int], None]:
            task_id = progress.add_task(escape(one_line(label)), total=total or None)
            return lambda n: progress.advance(task_id, n)

        yield task


def one_job_id(job_id: str | None, input_file: str | None) -> str:
    """The single job id of a verb that takes one: ``JOBID`` or the only id of ``-i FILE``,
    checked as a job id (:func:`checked_job_ids`).

    Raises:
        click.UsageError: none given, or both given.
        CliError: ``Input`` when the file cannot be read, or does not hold exactly one id, or
            the id is not a job id.
    """
    from wmproxy.cli import jobids

    if job_id and input_file:
        raise click.UsageError("the job id must not be given together with -i/--input")
    if job_id:
        return checked_job_ids([job_id])[0]
    if not input_file:
        raise click.UsageError("no job id given (JOBID or -i FILE)")
    try:
        ids = jobids.read_job_ids(input_file)
    except OSError as exc:
        raise CliError("Input", f"cannot read {input_file}: {unreadable(exc)}") from None
    if not ids:
        raise CliError("Input", f"{input_file} holds no job id")
    if len(ids) != 1:
        # as gLite, which checked the file's ids before counting them: say which are not job ids
        bad = [job_id for job_id in ids if bad_format(job_id)]
        shown = f" ({len(bad)} in bad format: {', '.join(bad)})" if bad else ""
        raise CliError("Input", f"{input_file} holds {len(ids)} job ids{shown}; this command accepts only one: "
                                "adjust the file or give JOBID")
    return checked_job_ids(ids)[0]


#: the form of a job id, as gLite's messages name it
JOB_ID_FORM = "https://<host>:<port>/<ID>"


def checked_job_ids(ids: list[str]) -> list[str]:
    """``ids`` unchanged, once checked as job ids (:func:`wmproxy.domain.parse_job_id`, the
    service's own check) before any call, as gLite's ``Utils::checkJobIds``. Those that are not
    job ids stay in the list: each verb reports each of them as its own failure, type ``Input``
    (:func:`check_job_id`), and goes on with the others, as a batch does for any job that fails
    (gLite's status printed ``JOBID HAS WRONG FORMAT`` for it, and asked no question: a script
    without a terminal must not stop there).

    Raises:
        CliError: ``Input`` when none is a job id (the verb fails as a whole).
    """
    bad = [job_id for job_id in ids if bad_format(job_id)]
    if bad and len(bad) == len(ids):
        if len(bad) == 1:
            raise CliError("Input", bad_format(bad[0]))
        raise CliError("Input", f"all the job ids are in bad format (expected {JOB_ID_FORM}): {', '.join(bad)}")
    return ids


def bad_format(job_id: str) -> str:
    """Why ``job_id`` is not a job id (``https://<host>:<port>/<ID>``), or ``""``."""
    from wmproxy.domain import parse_job_id
    from wmproxy.errors import InvalidArgumentError

    try:
        parse_job_id(job_id)
    except InvalidArgumentError:
        return f"the job id {job_id} is in bad format (expected {JOB_ID_FORM})"
    return ""


def check_job_id(job_id: str) -> None:
    """Refuse ``job_id`` before any call when it is not a job id, as a failure of that job.

    Raises:
        WMProxyClientError: ``Input`` (:func:`bad_format`).
    """
    problem = bad_format(job_id)
    if problem:
        raise WMProxyClientError("Input", problem)
