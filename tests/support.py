"""Helpers shared by test modules, so that no test module imports another one.

Waiting (use these instead of ``time.sleep``; machines are loaded, so deadlines are generous
and nothing asserts that something was fast):

- :func:`wait_for` ``(probe, until=bool, *, what, timeout=WAIT_TIMEOUT)``: poll ``probe()``
  until ``until(value)``; return the value, or fail saying what was awaited and the last value.
- :func:`wait_for_job_state` ``(get_status, states=FINAL_STATES, *, job, timeout)``: poll a
  getJobStatus-style text (``"Done (Exit Code 0)"``) until its state word is in ``states``.
- :func:`wait_for_final` ``(ref, job_id)``: the same through a :class:`ReferenceClient`.
- :func:`wait_for_cli_status` ``(deployment, job_id, prefixes)``: the CLI's ``status --json``
  entry once "Current Status" starts with one of ``prefixes``.

Calling a deployment: :func:`run_cli` (the ``wmproxy`` command), :func:`cli_status`,
:func:`delegate` (getProxyReq + putProxy through a ReferenceClient), :data:`ECHO_JDL`,
:func:`assert_fault` (a WMProxy typed fault seen by zeep).

In-process services (no TLS, no processes): :func:`migrated_sqlite`, :func:`build_runtime`,
:func:`close_runtime`, :func:`principal_of`, :func:`principal_fixture`, :func:`delegate_in_process`;
the SOAP application in-process: :class:`SoapApp` with :func:`caller_from_environ`.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pytest
    from lxml import etree

    from tests.conftest import Pki
    from tests.integration.refclient import ReferenceClient
    from tests.integration.service import Deployment
    from wmproxy.domain import Principal
    from wmproxy.services.runtime import Runtime
    from wmproxy.soap.app import WMProxyApplication

T = TypeVar("T")

#: Seconds any wait gives a condition by default: far above what an idle machine needs.
WAIT_TIMEOUT = 120.0
#: Seconds between two polls.
POLL_INTERVAL = 0.2
#: Job states after which nothing changes any more (getJobStatus state words).
FINAL_STATES = ("Done", "Aborted", "Cancelled", "Cleared")

#: A simple job that ends Done (Exit Code 0) with two output files.
ECHO_JDL = """[
  Executable = "/bin/echo";
  Arguments = "hello grid";
  StdOutput = "std.out";
  StdError = "std.err";
  OutputSandbox = {"std.out", "std.err"};
]"""


# --- waiting ------------------------------------------------------------------------------------


def wait_for(probe: Callable[[], T], until: Callable[[T], object] = bool, *, what: str,
             timeout: float = WAIT_TIMEOUT, interval: float = POLL_INTERVAL) -> T:
    """Poll ``probe()`` every ``interval`` seconds until ``until(value)`` is true; return that value.

    ``probe`` is called at least once, and once more after the deadline passes, so a slow
    probe never makes the wait fail without a last look. Exceptions from ``probe`` propagate.

    Raises:
        AssertionError: "timed out after <timeout> s waiting for <what>; last value: <value>".
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


def flock_waiters(path: Path) -> int:
    """Processes waiting for a ``flock`` of ``path`` (``/proc/locks``: ``N: -> FLOCK ... dev:inode ...``)."""
    inode = str(os.stat(path).st_ino)
    with open("/proc/locks", encoding="ascii") as locks:
        rows = [line.split() for line in locks]
    return sum(1 for row in rows if row[1:3] == ["->", "FLOCK"] and row[-3].rsplit(":", 1)[1] == inode)


def start_thread(name: str, call: Callable[[], Any], outcome: dict[str, Any]) -> threading.Thread:
    """A started thread running ``call``; its result, or the exception it raised, goes to
    ``outcome[name]``."""
    def run() -> None:
        try:
            outcome[name] = call()
        except Exception as exc:  # noqa: BLE001 - compared by the test
            outcome[name] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def bytes_or_refusal(write: Callable[..., bytes], *args: Any) -> bytes | str:
    """``write(*args)``, or the text of the ValueError it raises (lxml refusing a character):
    for comparing a reply writer with Spyne's serialiser, refusals included."""
    try:
        return write(*args)
    except ValueError as exc:
        return str(exc)


def state_word(status: str) -> str:
    """``"Done (Exit Code 0)"`` → ``"Done"``: the state of a getJobStatus status text."""
    return status.split(" ", 1)[0]


def wait_for_job_state(get_status: Callable[[], str], states: Iterable[str] = FINAL_STATES, *, job: str = "job",
                       timeout: float = WAIT_TIMEOUT) -> str:
    """Poll ``get_status()`` (a status text as getJobStatus returns it) until its state word is
    one of ``states``; return the full status text."""
    wanted = tuple(states)
    return wait_for(get_status, lambda status: state_word(status) in wanted,
                    what=f"{job} to reach one of {wanted}", timeout=timeout)


def wait_for_final(ref: ReferenceClient, job_id: str, timeout: float = WAIT_TIMEOUT,
                   states: Iterable[str] = FINAL_STATES) -> str:
    """The status text of ``job_id`` (via ``ref.wmproxy.getJobStatus``) once in ``states``."""
    return wait_for_job_state(lambda: str(ref.wmproxy.getJobStatus(job_id).status), states, job=job_id,
                              timeout=timeout)


# --- the CLI ------------------------------------------------------------------------------------


def run_cli(deployment: Deployment, *args: str, proxy: Path | None = None) -> tuple[int, str, str]:
    """Run ``wmproxy <args>`` against ``deployment`` (as alice unless ``proxy``); ``(rc, stdout, stderr)``."""
    env = dict(deployment.env, GLITE_WMS_WMPROXY_ENDPOINT=deployment.endpoint)
    if proxy is not None:
        env["X509_USER_PROXY"] = str(proxy)
    done = subprocess.run([str(deployment.bin_dir / "wmproxy"), *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=deployment.cwd)
    return done.returncode, done.stdout, done.stderr


def cli_status(deployment: Deployment, job_id: str) -> dict[str, Any]:
    """The job's entry of ``wmproxy status --json``."""
    rc, out, err = run_cli(deployment, "status", "--json", job_id)
    assert rc == 0, err or out
    entry: dict[str, Any] = next(j for j in json.loads(out)["jobs"] if j["jobid"] == job_id)
    # the keys of the JSON before its schema (docs/cli-json.md), which older tests read
    entry.update({"Current Status": entry["current_status"], "Exit code": entry["exit_code"],
                  "Status Reason": entry["status_reason"]})
    return entry


def wait_for_cli_status(deployment: Deployment, job_id: str, prefixes: tuple[str, ...],
                        timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
    """The CLI's JSON status entry once "Current Status" starts with one of ``prefixes``."""
    return wait_for(lambda: cli_status(deployment, job_id),
                    lambda entry: str(entry["Current Status"]).startswith(prefixes),
                    what=f"{job_id} to reach {prefixes}", timeout=timeout)


# --- the wire -----------------------------------------------------------------------------------


def outputs(ref: ReferenceClient, job_id: str) -> dict[str, bytes]:
    """The job's output sandbox as the service serves it (getOutputFileList, then GET of each
    https URI): base name → content."""
    files = ref.wmproxy.getOutputFileList(job_id, "https") or []
    return {f.name.rsplit("/", 1)[-1]: ref.session.get(f.name).content for f in files}


def delegate(ref: ReferenceClient, proxy_file: Path, delegation_id: str, port: str = "deleg2",
             lifetime: int = 6 * 3600) -> None:
    """getProxyReq + putProxy on ``port`` (``wmproxy``, ``deleg1`` or ``deleg2``), signing the
    request with ``proxy_file`` for ``lifetime`` seconds."""
    from wmproxy.security.proxy import load_credential, sign_proxy_request

    service = getattr(ref, port)
    csr = service.getProxyReq(delegation_id)
    signed = sign_proxy_request(csr.encode(), load_credential(proxy_file), lifetime=lifetime)
    service.putProxy(delegation_id, signed.decode())


BASE_FAULT_FIELDS = ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]


def assert_fault(err: pytest.ExceptionInfo[Any], kind: str, method: str, code: str | None = None,
                 text: str | None = None) -> etree._Element:
    """A WMProxy typed fault caught from zeep: ``<ns1:kind>`` of BaseFaultType with the expected
    methodName (and ErrorCode, and ``text`` within Description); returns the detail element."""
    from lxml import etree

    from tests.integration.refclient import WMP, fault_detail

    detail = fault_detail(err.value)
    assert etree.QName(detail) == etree.QName(WMP, kind), etree.tostring(detail)
    assert [c.tag for c in detail][:4] == BASE_FAULT_FIELDS[:4]
    assert {c.tag for c in detail} <= set(BASE_FAULT_FIELDS)
    assert detail.findtext("methodName") == method
    if code is not None:
        assert detail.findtext("ErrorCode") == code
    if text is not None:
        assert text in (detail.findtext("Description") or ""), detail.findtext("Description")
    return detail


# --- in-process services ------------------------------------------------------------------------


def migrated_sqlite(directory: Path) -> Path:
    """An SQLite file in ``directory`` brought to the newest Alembic revision (as ``wmproxy-admin init``)."""
    from wmproxy.admin import upgrade_database
    from wmproxy.config import DatabaseSettings, Settings

    path = directory / "template.db"
    upgrade_database(Settings(database=DatabaseSettings(url=f"sqlite:///{path}")))
    return path


def build_runtime(root: Path, pki: Pki, template_db: Path | None = None, **sections: dict[str, Any]) -> Runtime:
    """A :class:`Runtime` on a fresh SQLite database, sandbox root and store key under ``root``.

    The database is a copy of ``template_db`` (see :func:`migrated_sqlite`) or migrated here.
    Settings are those of the integration deployments (``authorized_users`` refuses mallory,
    quotas 40/50 MB, host ``localhost``); ``sections`` override fields per area, e.g.
    ``jobs={"quota_hard_limit": 0}``. Dispose of it with :func:`close_runtime`.
    """
    from wmproxy.admin import initialise
    from wmproxy.config import (
        DatabaseSettings,
        ExecutionSettings,
        JobsSettings,
        SandboxSettings,
        SecuritySettings,
        ServiceSettings,
        Settings,
    )
    from wmproxy.config import areas as config_areas
    from wmproxy.services.runtime import Runtime

    root.mkdir(parents=True, exist_ok=True)
    db = root / "wmproxy.db"
    if template_db is not None:
        shutil.copyfile(template_db, db)
    areas: dict[str, Any] = {
        "database": DatabaseSettings(url=f"sqlite:///{db}"),
        "security": SecuritySettings(ca_dir=str(pki.ca_dir), vomsdir=str(root / "vomsdir"),
                                     host_cert=str(pki.host_cert), host_key=str(pki.host_key),
                                     store_key_file=str(root / "store.key"),
                                     authorized_users="/C=XX/O=wmproxy-demo/OU=Users/CN=[!M]*, /atlas*"),
        "service": ServiceSettings(host="localhost", port=7443, drain_file=str(root / "drain")),
        "sandbox": SandboxSettings(root=str(root / "sandbox")),
        "execution": ExecutionSettings(work_dir=str(root / "work")),
        "jobs": JobsSettings(quota_soft_limit=40_000_000, quota_hard_limit=50_000_000),
    }
    for area, overrides in sections.items():
        base = areas[area] if area in areas else config_areas()[area]()  # e.g. renewal: the defaults
        areas[area] = dataclasses.replace(base, **overrides)
    settings = Settings(**areas)
    initialise(settings)
    return Runtime.from_settings(settings)


def close_runtime(rt: Runtime) -> None:
    """Release the database connections of ``rt``."""
    bind = rt.session_factory.kw.get("bind")
    if bind is not None:
        bind.dispose()


def counted_on_disk(rt: Runtime, owner_dn: str) -> int:
    """What the job areas of ``owner_dn``'s live (not Cleared) jobs hold as the usage counter
    counts it (``FilesystemSandboxStorage.counted_bytes``): the counter must equal it."""
    from wmproxy.domain import JobState

    with rt.uow() as uow:
        ids = [j.id for j in uow.jobs.owned_by(owner_dn) if j.state != JobState.CLEARED.value]
    return sum(rt.storage.counted_bytes(i) for i in ids)


def principal_of(pki: Pki, user: str, fqans: tuple[str, ...] = ()) -> Principal:
    """The Principal the TLS edge would make for ``user`` (of the test PKI) with ``fqans``."""
    from wmproxy.domain import Principal

    return Principal(dn=pki.users[user].dn, fqans=fqans)


def principal_fixture(user: str) -> Any:
    """A function-scoped pytest fixture giving :func:`principal_of` ``user`` (no FQANs);
    in a conftest: ``alice = principal_fixture("alice")``."""
    import pytest

    @pytest.fixture
    def principal(pki: Pki) -> Principal:
        return principal_of(pki, user)

    return principal


#: Server key pairs (private key PEM, CSR PEM) this test process made for
#: :func:`delegate_in_process`, handed out in turn: an in-process runtime has no pool filler, and
#: every delegation of a fixture generated an RSA key (about 5 % of the suite's CPU).
_DELEGATION_KEYS: list[tuple[bytes, bytes]] = []
_DELEGATION_KEYS_MAX = 8
_DELEGATION_KEY_TURNS = itertools.count()


def _pool_a_key(rt: Runtime) -> None:
    """Put one of :data:`_DELEGATION_KEYS` (made on first use) in ``rt``'s pool of getProxyReq
    keys, sealed with its store key, when the pool of its key size is empty: the delegation
    claims it as it claims a pooled key in a deployment."""
    from wmproxy.domain import utcnow
    from wmproxy.security.delegation import new_proxy_request

    bits = rt.settings.security.delegation_key_bits
    if bits != 2048 or rt.settings.security.delegation_key_pool <= 0:
        return
    with rt.uow() as uow:
        if uow.key_pool.size(bits):
            return
        if len(_DELEGATION_KEYS) < _DELEGATION_KEYS_MAX:
            _DELEGATION_KEYS.append(new_proxy_request(bits))
        key_pem, csr_pem = _DELEGATION_KEYS[next(_DELEGATION_KEY_TURNS) % len(_DELEGATION_KEYS)]
        uow.key_pool.add(rt.sealer.seal(key_pem), csr_pem.decode(), bits, utcnow())


def delegate_in_process(rt: Runtime, principal: Principal, proxy_file: Path, delegation_id: str,
                        lifetime: int = 6 * 3600) -> str:
    """Delegate through the services as a client does (getProxyReq, sign with ``proxy_file``
    for ``lifetime`` seconds, putProxy); returns the delegation id. The server key comes from
    the runtime's pool, topped up with one of this process's few keys (:func:`_pool_a_key`)."""
    from wmproxy.security.proxy import load_credential, sign_proxy_request
    from wmproxy.services.delegation import create_proxy_request, store_proxy

    _pool_a_key(rt)
    delegation_id, csr = create_proxy_request(rt, principal, delegation_id)
    signed = sign_proxy_request(csr.encode(), load_credential(proxy_file), lifetime=lifetime)
    store_proxy(rt, principal, delegation_id, signed.decode())
    return delegation_id


def odd_proxy(csr_pem: str | bytes, signer: Any, *, cn: str = "123", extension: Any = None) -> str:
    """A delegated chain as a client may send it to putProxy for the CSR ``csr_pem``: an RFC 3820
    proxy signed by the Credential ``signer`` whose added CN is ``cn`` (any text: U+0001...) and
    which carries ``extension`` too (an ``x509.ExtensionType``, e.g. a malformed
    ``UnrecognizedExtension`` of keyUsage's OID), then the signer's chain."""
    import datetime as dt
    import secrets

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from wmproxy.security.chain import chain_pem
    from wmproxy.security.pci import INHERIT_ALL_OID, ProxyCertInfo, pci_extension

    csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    now = dt.datetime.now(dt.UTC)
    added = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(x509.Name([*signer.cert.subject.rdns, added]))
               .issuer_name(signer.cert.subject).public_key(csr.public_key())
               .serial_number(secrets.randbits(31)).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(pci_extension(ProxyCertInfo(INHERIT_ALL_OID, None)), critical=True))
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(signer.key, hashes.SHA256())
    return chain_pem([cert, signer.cert, *signer.chain]).decode()


#: RFC 3820 id-ppl-independent: a proxy with none of its issuer's rights.
INDEPENDENT = "1.3.6.1.5.5.7.21.2"
#: A policy language no relying party knows (a private arc), with a policy of its own.
PRIVATE_POLICY = ("1.3.6.1.4.1.99999.1.1", b"allow getJobStatus only")


def policy_proxy(issuer: Any, language: str, policy: bytes | None = None, *, lifetime: int = 3600,
                 csr_pem: bytes | None = None) -> Any:
    """A proxy Credential of the Credential ``issuer`` (with its key) whose proxyCertInfo has the
    policy ``language`` (a dotted OID: :data:`INDEPENDENT`, a private one...) and ``policy`` bytes,
    otherwise as ``make_proxy`` makes one (a fresh 2048-bit key, ``CN=<serial>``, keyUsage); with
    ``csr_pem`` (a getProxyReq's request), of the request's key, and without a key."""
    import datetime as dt
    import secrets

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from wmproxy.security.pci import ProxyCertInfo, pci_extension
    from wmproxy.security.proxy import Credential

    key = None if csr_pem is not None else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key() if key is not None else x509.load_pem_x509_csr(csr_pem or b"").public_key()
    now = dt.datetime.now(dt.UTC)
    serial = secrets.randbits(31) | 1 << 30
    added = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([*issuer.cert.subject.rdns, added]))
            .issuer_name(issuer.cert.subject).public_key(public).serial_number(serial)
            .not_valid_before(max(now - dt.timedelta(minutes=5), issuer.cert.not_valid_before_utc))
            .not_valid_after(min(now + dt.timedelta(seconds=lifetime), issuer.cert.not_valid_after_utc))
            .add_extension(pci_extension(ProxyCertInfo(language, None, policy)), critical=True)
            .add_extension(usage, critical=True)
            .sign(issuer.key, hashes.SHA256()))
    return Credential(cert, key, [issuer.cert, *issuer.chain])


# --- the SOAP application in-process ------------------------------------------------------------


#: Environ key the tests' authenticate callable reads the caller from.
CALLER_KEY = "tests.caller"


def caller_from_environ(environ: dict[str, Any]) -> Principal:
    """The ``authenticate`` of an in-process app: the Principal under :data:`CALLER_KEY`.

    Raises:
        AuthenticationError: none there (as the TLS resolver without a client certificate).
    """
    from wmproxy.domain import Principal
    from wmproxy.errors import AuthenticationError

    caller = environ.get(CALLER_KEY)
    if caller is None:
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    assert isinstance(caller, Principal)
    return caller


@dataclasses.dataclass
class Reply:
    """A WSGI response: status line, headers, body bytes."""

    status: str
    headers: dict[str, str]
    body: bytes

    @property
    def element(self) -> etree._Element:
        """The SOAP Body's first child."""
        from lxml import etree

        from wmproxy.soap.namespaces import SOAP_ENV

        root = etree.fromstring(self.body)
        assert root.tag == f"{{{SOAP_ENV}}}Envelope", self.body
        return root.find(f"{{{SOAP_ENV}}}Body")[0]

    @property
    def fault_detail(self) -> etree._Element:
        """The one child of the SOAP Fault's ``<detail>``."""
        from wmproxy.soap.namespaces import SOAP_ENV

        fault = self.element
        assert fault.tag == f"{{{SOAP_ENV}}}Fault", self.body
        detail = fault.find("detail")
        assert detail is not None and len(detail) == 1, self.body
        return detail[0]


@dataclasses.dataclass
class SoapApp:
    """The WSGI application driven in-process: :meth:`request` sends raw bytes, :meth:`call`
    an rpc/literal operation. Build the app with ``authenticate=caller_from_environ`` (the
    app's own injection point; production uses the TLS resolver): each request then runs as
    the ``caller`` Principal passed in, or unauthenticated with ``None``."""

    app: WMProxyApplication
    rt: Runtime

    def request(self, body: bytes, caller: Principal | None, *, method: str = "POST", path: str | None = None,
                query: str = "", content_type: str | None = "text/xml; charset=utf-8",
                stream: Any = None) -> Reply:
        """Send ``body``; ``content_type`` None sends no ``Content-Type``; ``stream``: the
        ``wsgi.input`` to read ``body`` from instead of a BytesIO of it (it must hold ``body``)."""
        import io

        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path or self.rt.settings.service.endpoint_path,
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "7443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body) if stream is None else stream,
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "https",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        if caller is not None:
            environ[CALLER_KEY] = caller
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            seen["status"], seen["headers"] = status, dict(headers)

        body_out = b"".join(self.app(environ, start_response))
        return Reply(seen["status"], seen["headers"], body_out)

    def call(self, namespace: str, operation: str, caller: Principal | None, prefix: str = "ns",
             **parts: str) -> Reply:
        """POST ``<prefix:operation xmlns:prefix=namespace>`` with unqualified ``parts`` (rpc/literal)."""
        from xml.sax.saxutils import escape

        from wmproxy.soap.namespaces import SOAP_ENV

        inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in parts.items())
        envelope = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:{prefix}="{namespace}"><SOAP-ENV:Body>'
                    f"<{prefix}:{operation}>{inner}</{prefix}:{operation}></SOAP-ENV:Body></SOAP-ENV:Envelope>")
        return self.request(envelope.encode(), caller)


def imported_modules(path: Path, *, with_names: bool = False) -> set[str]:
    """Every module an absolute import statement of ``path`` names, lazy (function-level) ones
    included; ``with_names`` adds ``module.name`` for each ``from module import name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if with_names:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found
