"""What every verb shares: endpoint/credential lookup, the client factory, error reporting."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from wmproxy.client import WMProxyClient, WMProxyClientError

ENDPOINT_ENV = "GLITE_WMS_WMPROXY_ENDPOINT"
DEFAULT_CA_DIR = "/etc/grid-security/certificates"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``."""

    def __init__(self, kind: str, description: str) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description


@dataclass(frozen=True)
class Environment:
    """Where to connect and with which credentials, read once from options and environment.

    Attributes:
        endpoint: ``-e`` or ``$GLITE_WMS_WMPROXY_ENDPOINT``.
        proxy_file: ``$X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``.
        ca_dir: ``$X509_CERT_DIR`` or ``/etc/grid-security/certificates``.
    """

    endpoint: str
    proxy_file: str
    ca_dir: str

    @classmethod
    def load(cls, endpoint: str | None, environ: dict[str, str] | None = None) -> Environment:
        """Raises: CliError("Configuration") when no endpoint is given anywhere."""
        env = dict(os.environ) if environ is None else environ
        endpoint = endpoint or env.get(ENDPOINT_ENV)
        if not endpoint:
            raise CliError("Configuration", f"no WMProxy endpoint: use -e/--endpoint or set {ENDPOINT_ENV}")
        proxy = env.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"  # noqa: S108 - the Globus default
        return cls(endpoint, proxy, env.get("X509_CERT_DIR") or DEFAULT_CA_DIR)


def make_client(env: Environment) -> WMProxyClient:
    """The client used by every verb (tests replace this function)."""
    if not os.path.isfile(env.proxy_file):
        raise CliError("ProxyError", f"proxy file not found: {env.proxy_file} (set X509_USER_PROXY)")
    if not os.path.isdir(env.ca_dir):
        raise CliError("Configuration", f"CA directory not found: {env.ca_dir} (set X509_CERT_DIR)")
    return WMProxyClient(env.endpoint, env.proxy_file, env.ca_dir)


def common_options(func: F) -> F:
    """``-e/--endpoint URL`` and ``--json`` for a verb."""
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)
    return click.option(
        "-e", "--endpoint", metavar="URL", help=f"WMProxy endpoint (default ${ENDPOINT_ENV})."
    )(func)


def reports_errors(func: F) -> F:
    """Print ``Error - <type>: <description>`` on stderr and exit 1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WMProxyClientError as exc:
            fail(exc.fault_type, exc.description)
        except CliError as exc:
            fail(exc.kind, exc.description)

    return wrapper  # type: ignore[return-value]


def fail(kind: str, description: str) -> None:
    """Report one error line on stderr and exit with status 1."""
    click.echo(f"Error - {kind}: {' '.join(description.split())}", err=True)
    sys.exit(1)


def error_console() -> Console:
    """Console for progress bars and prompts: stderr, so stdout stays parseable."""
    return Console(stderr=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Rich progress on stderr; yields ``task(label, total bytes) -> advance(bytes)``."""
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
            task_id = progress.add_task(label, total=total or None)
            return lambda n: progress.advance(task_id, n)

        yield task


def one_job_id(job_id: str | None, input_file: str | None) -> str:
    """The single job id of a verb that takes one: ``JOBID`` or the only id of ``-i FILE``.

    Raises:
        click.UsageError: none given, both given, or the file holds several ids.
        CliError: ``Input`` when the file cannot be read.
    """
    from wmproxy.cli import jobids

    if job_id and input_file:
        raise click.UsageError("the job id must not be given together with -i/--input")
    if job_id:
        return job_id
    if not input_file:
        raise click.UsageError("no job id given (JOBID or -i FILE)")
    try:
        ids = jobids.read_job_ids(input_file)
    except OSError as exc:
        raise CliError("Input", f"cannot read {input_file}: {exc.strerror}") from None
    if len(ids) != 1:
        raise click.UsageError(
            f"{input_file} holds {len(ids)} job ids; this command accepts only one: adjust the file or give JOBID"
        )
    return ids[0]
