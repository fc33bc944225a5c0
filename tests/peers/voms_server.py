"""A real Debian ``voms`` server (voms-server 2.1.0~rc3, MySQL plugin) on loopback for tests.

``start_voms_server`` gives one VO (default ``atlas``) its own MariaDB database (a unique name,
the schema of the plugin's ``/usr/share/voms/voms-mysql.data``, the bootstrap rows of
``voms_install_db``, groups ``/atlas`` and ``/atlas/uk``, role ``production``) and its own
read-only database account, issues the server a ``voms.localhost`` host credential from the
test CA (SAN localhost and 127.0.0.1), writes a ``vomses`` file and a vomsdir ``.lsc`` for the
clients, and runs ``/usr/sbin/voms -debug`` (``-debug`` keeps it in the foreground, so the
helper owns its process; it still forks one child per connection). ``VomsServer.add_user``
registers a user by DN and CA DN with group memberships and roles, by direct SQL (voms-admin is
not packaged). ``stop()`` ends the server's process group and drops the database and account.

What this server speaks, and what it does not (the REST ``/generate-ac`` interface is dead in
this build): ``docs/voms.md``. The AC's policy authority is ``<vo>://<uri_host>:<port>``;
``uri_host`` defaults to ``localhost`` so that the URI is contactable as written (glibc does not
resolve ``voms.localhost`` here); the ``.lsc`` is named after it.

MariaDB: ``127.0.0.1:3306``, user root with an empty password (the machine kind's default;
``WMPROXY_TEST_MARIADB_HOST``/``_PORT``/``_USER``/``_PASSWORD`` change it), reached with the
``mysql`` client. The server itself connects over TCP with its own account.

For a test module: ``from tests.peers.voms_server import voms_server_factory``.
By hand: ``python -m tests.peers.voms_server DIR`` starts one on a throwaway PKI and waits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.port_support import on_free_port, wait_until_listening
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import CertificateAuthority

VOMS_SERVER = "/usr/sbin/voms"
MYSQL_PLUGIN = "/usr/lib/voms/libvomsmysql.so"
SCHEMA = "/usr/share/voms/voms-mysql.data"
MYSQL = "mysql"
VOMS_PROXY_INIT = "voms-proxy-init"
START_TIMEOUT = 30.0  # seconds; it normally listens within a fraction of one
#: What voms logs when it cannot bind its port.
VOMS_BIND_FAILED = "Cannot bind to socket"
#: voms listens on every address: its port is probed there.
WILDCARD = "0.0.0.0"  # noqa: S104
#: The longest AC the server issues (``-timeout``); a longer request is cut to it with warning 2.
DEFAULT_MAX_LIFETIME = 24 * 3600

MARIADB_HOST = os.environ.get("WMPROXY_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("WMPROXY_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("WMPROXY_TEST_MARIADB_USER", "root")
MARIADB_PASSWORD = os.environ.get("WMPROXY_TEST_MARIADB_PASSWORD", "")

#: The VOMS virtual CAs and bootstrap rows ``voms_install_db`` writes (cid 1-5 are reserved).
_BOOTSTRAP = """
INSERT INTO ca VALUES (1, '/O=VOMS/O=System/CN=Dummy Certificate Authority',
                       'A dummy CA for local database maintenance.');
INSERT INTO ca VALUES (2, '/O=VOMS/O=System/CN=Authorization Manager Attributes',
                       'A virtual CA corresponding to authz manager attributes');
INSERT INTO ca VALUES (3, '/O=VOMS/O=System/CN=VOMS Group', 'A virtual CA corresponding to a VO group');
INSERT INTO ca VALUES (4, '/O=VOMS/O=System/CN=VOMS Role', 'A virtual CA corresponding to a VO role');
INSERT INTO ca VALUES (5, '/O=VOMS/O=System/CN=VOMS Capability', 'A the virtual CA corresponding to a VO capability');
INSERT INTO admins VALUES (1, '/O=VOMS/O=System/CN=Local Database Administrator', '', 1);
INSERT INTO admins VALUES (2, '/{vo}/Role=VO-Admin', '', 4);
INSERT INTO `groups` VALUES (1, '/{vo}', 1, 1);
INSERT INTO roles VALUES (1, 'VO-Admin');
INSERT INTO seqnumber VALUES ('00');
INSERT INTO version (version) VALUES (2);
"""


class VomsPeerError(RuntimeError):
    """The helper could not prepare or start the server (output attached)."""


def have_voms_server() -> bool:
    """Whether voms-server, its MySQL plugin and the mysql client are installed."""
    return (os.access(VOMS_SERVER, os.X_OK) and os.path.exists(MYSQL_PLUGIN) and os.path.exists(SCHEMA)
            and shutil.which(MYSQL) is not None)


def _quote(value: str) -> str:
    """A SQL string literal (MariaDB, default sql_mode: backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql(template: str, *values: str | int | None) -> str:
    """``template`` with each ``%s`` replaced by a SQL literal of the next value (None is NULL)."""
    return template % tuple("NULL" if v is None else str(v) if isinstance(v, int) else _quote(v) for v in values)


def run_sql(sql: str, database: str | None = None) -> str:
    """Run ``sql`` with the ``mysql`` client as the MariaDB admin; return its tab-separated output.

    Raises:
        VomsPeerError: the client failed (its output attached).
    """
    args = [MYSQL, "--protocol=tcp", "-h", MARIADB_HOST, "-P", str(MARIADB_PORT), "-u", MARIADB_USER,
            "--batch", "--skip-column-names"]
    if database:
        args.append(database)
    env = dict(os.environ)
    if MARIADB_PASSWORD:
        env["MYSQL_PWD"] = MARIADB_PASSWORD
    result = subprocess.run(args, input=sql, capture_output=True, text=True, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise VomsPeerError(f"mysql failed ({result.returncode}): {result.stderr.strip()}\nSQL: {sql[:2000]}")
    return result.stdout


def mariadb_reachable() -> str:
    """'' when the MariaDB admin login works, else why not."""
    try:
        run_sql("SELECT 1;")
    except (VomsPeerError, OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return ""


@dataclass
class VomsServer:
    """A running voms server for one VO.

    Contact it at 127.0.0.1:``port`` (TLS; its certificate names voms.localhost, localhost and
    127.0.0.1). ``uri`` (``host:port``) is what its ACs carry, ``vomsdir`` trusts it
    (``<vomsdir>/<vo>/<uri host>.lsc``), ``vomses`` lists it for ``voms-proxy-init``.
    """

    vo: str
    port: int
    uri: str
    dn: str
    ca_dn: str
    cert: Path
    key: Path
    ca_dir: Path
    directory: Path
    vomsdir: Path
    vomses: Path
    database: str
    db_user: str
    max_lifetime: int
    process: subprocess.Popen = field(repr=False)
    log: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def host(self) -> str:
        """The host part of :attr:`uri` (resolvable: ``localhost`` by default)."""
        return self.uri.rsplit(":", 1)[0]

    @property
    def policy_authority(self) -> str:
        """``<vo>://<host>:<port>``, as the ACs write it."""
        return f"{self.vo}://{self.uri}"

    def add_group(self, group: str) -> int:
        """Create the group ``group`` (``/<vo>/...``) and its missing parents; return its id."""
        return _add_group(self.database, self.vo, group)

    def add_role(self, role: str) -> int:
        """Create the role ``role`` (a bare name, e.g. ``production``) if missing; return its id."""
        return _add_role(self.database, role)

    def add_user(
        self,
        dn: str,
        ca_dn: str,
        groups: Sequence[str] = (),
        roles: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Register a user (slash DNs of the certificate and of its issuing CA), member of the VO
        root group, of ``groups`` and holding ``roles`` (``(group, role)`` pairs, e.g.
        ``("/atlas", "production")``); missing groups, roles and the CA are created. Returns the user id.

        The server finds users by ``usr.dn`` = the subject of the client's end-entity
        certificate and ``usr.ca`` = the id of ``ca.ca`` = its issuer (OpenSSL one-line DNs,
        which are the slash DNs of :func:`wmproxy.security.dn.slash_dn` for these certificates).
        """
        run_sql(_sql("INSERT IGNORE INTO ca (ca, cadescr) VALUES (%s, %s);", ca_dn, ca_dn.rsplit("=", 1)[-1]),
                self.database)
        cid = int(run_sql(_sql("SELECT cid FROM ca WHERE ca = %s;", ca_dn), self.database).split()[0])
        run_sql(_sql("INSERT INTO usr (dn, ca, cn) VALUES (%s, %s, %s);", dn, cid, dn.rsplit("=", 1)[-1]),
                self.database)
        uid = int(run_sql(_sql("SELECT userid FROM usr WHERE dn = %s AND ca = %s;", dn, cid),
                          self.database).split()[0])
        mappings: list[tuple[int, int | None]] = []
        for group in dict.fromkeys([f"/{self.vo}", *groups, *(g for g, _ in roles)]):
            mappings.append((self.add_group(group), None))
        for group, role in roles:
            mappings.append((self.add_group(group), self.add_role(role)))
        for gid, rid in mappings:
            run_sql(_sql("INSERT INTO m (userid, gid, rid) VALUES (%s, %s, %s);", uid, gid, rid), self.database)
        return uid

    def remove_user(self, dn: str) -> None:
        """Delete the user (and its memberships) registered with the subject ``dn``."""
        run_sql(_sql("DELETE FROM usr WHERE dn = %s;", dn), self.database)

    def env(self) -> dict[str, str]:
        """Environment for the VOMS command line clients talking to this server."""
        return {"X509_CERT_DIR": str(self.ca_dir), "X509_VOMS_DIR": str(self.vomsdir),
                "VOMS_USERCONF": str(self.vomses)}

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the server's process group (the server and any request child), wait, then
        drop its database and database account."""
        if self._stopped:
            return
        self._stopped = True
        _end_group(self.process)
        _drop(self.database, self.db_user)


def _add_group(database: str, vo: str, group: str) -> int:
    if group != f"/{vo}" and not group.startswith(f"/{vo}/"):
        raise ValueError(f"group {group!r} is not in VO {vo}")
    found = run_sql(_sql("SELECT gid FROM `groups` WHERE dn = %s;", group), database).split()
    if found:
        return int(found[0])
    parent = _add_group(database, vo, group.rsplit("/", 1)[0])
    run_sql(_sql("INSERT INTO `groups` (dn, parent, must) VALUES (%s, %s, 1);", group, parent), database)
    return int(run_sql(_sql("SELECT gid FROM `groups` WHERE dn = %s;", group), database).split()[0])


def _add_role(database: str, role: str) -> int:
    run_sql(_sql("INSERT IGNORE INTO roles (role) VALUES (%s);", role), database)
    return int(run_sql(_sql("SELECT rid FROM roles WHERE role = %s;", role), database).split()[0])


def _end_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _drop(database: str, db_user: str) -> None:
    run_sql(f"DROP DATABASE IF EXISTS `{database}`; DROP USER IF EXISTS '{db_user}'@'localhost', "
            f"'{db_user}'@'127.0.0.1';")


def _create_database(database: str, db_user: str, password: str, vo: str) -> None:
    run_sql(f"CREATE DATABASE `{database}`;")
    run_sql(Path(SCHEMA).read_text(), database)
    run_sql(_BOOTSTRAP.format(vo=vo), database)
    grants = "".join(
        f"CREATE USER '{db_user}'@'{host}' IDENTIFIED BY {_quote(password)}; "
        f"GRANT SELECT, LOCK TABLES ON `{database}`.* TO '{db_user}'@'{host}'; "
        for host in ("localhost", "127.0.0.1"))
    run_sql(grants)


def start_voms_server(
    directory: str | os.PathLike,
    *,
    ca: CertificateAuthority,
    ca_dir: str | os.PathLike,
    vo: str = "atlas",
    groups: Sequence[str] = ("/atlas", "/atlas/uk"),
    roles: Sequence[str] = ("production",),
    uri_host: str = "localhost",
    max_lifetime: int = DEFAULT_MAX_LIFETIME,
    short_fqans: bool = False,
    trust_own_acs: bool = False,
) -> VomsServer:
    """Start ``voms`` for ``vo`` on a free port with its own database, credential and config.

    Args:
        directory: created; holds ``host/`` (hostcert.pem, hostkey.pem for ``voms.localhost``
            issued by ``ca``), ``voms.pass`` (0640), ``vomses``, ``vomsdir/``, ``voms.log``
            (the server's debug log) and ``voms.out`` (its stdout/stderr).
        ca: issues the server's host credential.
        ca_dir: grid CA directory (the server's ``-x509_cert_dir``; it verifies clients with it).
        vo, groups, roles: the VO and its groups and role names (``groups`` within ``/<vo>``).
        uri_host: the host of ``-uri`` (written into each AC's policy authority) and the name of
            the ``.lsc``.
        max_lifetime: ``-timeout``, the longest AC in seconds.
        short_fqans: ``-shortfqans`` (``/atlas`` rather than ``/atlas/Role=NULL/Capability=NULL``).
        trust_own_acs: give the server ``X509_VOMS_DIR`` = its own vomsdir, so that it sees the
            ACs its clients already carry and issues only the intersection with them
            (``docs/voms.md``); without it such ACs fail its check and are ignored.

    Raises:
        VomsPeerError: MariaDB refused, or the server did not listen within 30 s (log attached);
            a port taken before the server bound it is replaced by another (up to
            :data:`tests.port_support.PORT_TRIES` ports).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue_host("voms.localhost", root / "host")
    dn = slash_dn(load_pem_chain(cert.read_bytes())[0].subject)
    tag = uuid.uuid4().hex[:10]
    database, db_user, password = f"voms_test_{tag}", f"vt_{tag}", uuid.uuid4().hex
    _create_database(database, db_user, password, vo)
    try:
        for group in groups:
            _add_group(database, vo, group)
        for role in roles:
            _add_role(database, role)
        passfile = root / "voms.pass"
        passfile.write_text(password + "\n")
        os.chmod(passfile, 0o640)  # the server insists on exactly 0640
        vomsdir = root / "vomsdir"
        (vomsdir / vo).mkdir(parents=True, exist_ok=True)
        (vomsdir / vo / f"{uri_host}.lsc").write_text(f"{dn}\n{ca.dn}\n")
        log, out = root / "voms.log", root / "voms.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "VOMS"))}
        if trust_own_acs:
            env["X509_VOMS_DIR"] = str(vomsdir)

        def start(port: int) -> VomsServer:
            args = [VOMS_SERVER, "-debug", "-vo", vo, "-port", str(port), "-uri", f"{uri_host}:{port}",
                    "-dbname", database, "-username", db_user, "-passfile", str(passfile),
                    "-sqlloc", MYSQL_PLUGIN, "-contactstring", MARIADB_HOST, "-mysql-port", str(MARIADB_PORT),
                    "-x509_cert_dir", str(ca_dir), "-x509_user_cert", str(cert), "-x509_user_key", str(key),
                    "-logfile", str(log), "-newformat", "-timeout", str(max_lifetime), "-socktimeout", "30"]
            if short_fqans:
                args.append("-shortfqans")
            offset = log.stat().st_size if log.exists() else 0
            with open(out, "ab") as sink:
                process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                           start_new_session=True)
            try:
                # Its log's one message for a failed bind (it then exits 0); on the wildcard at an
                # unprivileged port probed free, the port is in use. Listening is read from the
                # kernel's tables, not by connecting: a connection would make the server fork a
                # child that waits for a TLS handshake.
                wait_until_listening(process, port, log, offset=offset, in_use=(VOMS_BIND_FAILED,), what="voms",
                                     timeout=START_TIMEOUT)
            except AssertionError as exc:
                _end_group(process)
                raise VomsPeerError(f"voms did not start: {exc}\noutput:\n{out.read_text(errors='replace')}") from None
            vomses = root / "vomses"
            vomses.write_text(f'"{vo}" "localhost" "{port}" "{dn}" "{vo}"\n')
            return VomsServer(vo, port, f"{uri_host}:{port}", dn, ca.dn, cert, key, Path(ca_dir), root,
                              vomsdir, vomses, database, db_user, max_lifetime, process, log)

        try:
            return on_free_port(start, host=WILDCARD)
        except AssertionError as exc:  # every port probed was taken
            raise VomsPeerError(f"voms did not start: {exc}") from None
    except BaseException:
        _drop(database, db_user)
        raise


def voms_proxy_init(
    server: VomsServer,
    out: str | os.PathLike,
    *,
    fqan: str,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    proxy: str | os.PathLike | None = None,
    lifetime: str = "12:00",
    home: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run the real ``voms-proxy-init -rfc -voms <vo>:<fqan>`` against ``server``.

    Either ``cert``/``key`` (the user's credential; voms-proxy-init signs with it) or ``proxy``
    (an existing proxy: ``-noregen``, it contacts the server with that proxy and signs the new
    proxy with it). Returns the completed process (not checked).
    """
    args = [VOMS_PROXY_INIT, "-rfc", "-vomses", str(server.vomses), "-voms", f"{server.vo}:{fqan}",
            "-valid", lifetime, "-out", str(out), "-timeout", "60"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "VOMS"))}
    env.update(server.env(), HOME=str(home or Path(out).parent))
    if proxy is not None:
        args.append("-noregen")
        env["X509_USER_PROXY"] = str(proxy)
    else:
        args += ["-cert", str(cert), "-key", str(key)]
    return subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          check=False)


def client_context(proxy_file: str | os.PathLike, ca_dir: str | os.PathLike) -> ssl.SSLContext:
    """TLS client context for talking to the server as the owner of a grid proxy file.

    ``load_cert_chain`` takes the proxy file as it is (proxy certificate, its key, then the
    user certificate and any further proxies: OpenSSL reads the certificates in order and skips
    the key block), so the server receives the whole chain; the server's certificate is
    verified against the grid CA directory (``capath``: ``<hash>.0`` files) and its name
    (``localhost`` or ``127.0.0.1`` are in its SAN)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(capath=str(ca_dir))
    context.load_cert_chain(str(proxy_file))
    return context


def exchange(server: VomsServer, proxy_file: str | os.PathLike, request: bytes, *, timeout: float = 30) -> bytes:
    """Send ``request`` in one TLS write to ``server`` as the owner of ``proxy_file`` and read
    until the server closes; return what it sent (b"" if nothing)."""
    context = client_context(proxy_file, server.ca_dir)
    chunks = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(request)
        while True:
            try:
                chunk = tls.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def legacy_request(commands: Sequence[str], lifetime: int | None, order: str = "") -> bytes:
    """The request of the legacy VOMS protocol, byte for byte as libvomsapi writes it
    (``XML_Req_Encode``); ``commands`` are ``G/vo/group``, ``B/vo/group:role``, ``Rrole`` or ``A``."""
    body = "".join(f"<command>{c}</command>" for c in commands)
    if order:
        body += f"<order>{order}</order>"
    body += "<base64>1</base64><version>4</version>"
    body += "<lifetime></lifetime>" if lifetime is None else f"<lifetime>{lifetime}</lifetime>"
    return f'<?xml version="1.0" encoding="US-ASCII"?><voms>{body}</voms>'.encode("ascii")


@dataclass
class LegacyAnswer:
    """A parsed ``<vomsans>``: the AC's DER (None when there is none), and the (number, message)
    items: numbers below 1000 are warnings, 1000 and above errors."""

    ac: bytes | None
    items: list[tuple[int, str]]
    raw: bytes


def parse_legacy_answer(raw: bytes) -> LegacyAnswer:
    """Parse the server's ``<vomsans>``. An error answer still carries ``<ac>QQ==</ac>`` (base64
    of the server's placeholder "A"); that is not an AC and gives ``ac=None``."""
    import base64
    import xml.etree.ElementTree as ET

    root = ET.fromstring(raw)  # noqa: S314 - the answer of the test's own server
    if root.tag != "vomsans":
        raise VomsPeerError(f"not a vomsans: {raw[:200]!r}")
    items = [(int(item.findtext("number", "0")), item.findtext("message", ""))
             for item in root.iterfind("error/item")]
    text = root.findtext("ac")
    der = base64.b64decode(text) if text else None
    if der == b"A":
        der = None
    return LegacyAnswer(der, items, raw)


@pytest.fixture(scope="session")
def voms_server_factory(pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Callable ``start(**kwargs) -> VomsServer`` on the session ``pki``; keyword arguments are
    those of :func:`start_voms_server` (not ``ca``/``ca_dir``). Every server started is stopped
    (and its database dropped) at the end of the session. Without the Debian packages
    voms-server, voms-mysql-plugin and a mysql client, or without MariaDB:
    :func:`tests.conftest.need_peer`."""
    from tests.conftest import need_peer

    if not have_voms_server():
        need_peer("voms / libvomsmysql.so / mysql not installed (Debian voms-server, voms-mysql-plugin, "
                  "mariadb-client)")
    problem = mariadb_reachable()
    if problem:
        need_peer(f"MariaDB not reachable as {MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}: {problem}")
    servers: list[VomsServer] = []

    def start(**kwargs) -> VomsServer:
        server = start_voms_server(tmp_path_factory.mktemp("voms"), ca=pki.ca, ca_dir=pki.ca_dir, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.peers.voms_server DIR``: a throwaway PKI (``DIR/pki``) and a server with
    user ``Demo User`` (``/atlas``, ``/atlas/uk``, ``/atlas/Role=production``); runs until Ctrl-C."""
    import sys

    from wmproxy.security.pki import create_ca, write_proxy

    root = Path((argv or sys.argv[1:])[0]).resolve()
    ca = create_ca(root / "pki" / "certificates")
    user = ca.issue_user("Demo User", root / "pki" / "user")
    write_proxy(user, root / "pki" / "user" / "x509up")
    server = start_voms_server(root / "voms", ca=ca, ca_dir=root / "pki" / "certificates")
    server.add_user(slash_dn(user.cert.subject), ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    print(f"voms for atlas on 127.0.0.1:{server.port} (uri {server.uri}); database {server.database}")
    for name, value in server.env().items():
        print(f"export {name}={value}")
    print(f"proxy: {root / 'pki' / 'user' / 'x509up'}; Ctrl-C or SIGTERM stops", flush=True)

    def interrupt(_signo: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
