"""The scrape-time metrics of :class:`wmproxy.monitoring.metrics.SiteCollector` and the readiness checks."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Pki
from tests.support import ECHO_JDL, WAIT_TIMEOUT
from wmproxy.admintools import check_ca_dir
from wmproxy.config import MetricsSettings
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.monitoring.health import Check, ca_checks, readiness, schema_check, service_check
from wmproxy.monitoring.metrics import SiteCollector, scrape_registry
from wmproxy.monitoring.server import MetricsApp
from wmproxy.security import ca_policy
from wmproxy.services import jobs
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.store.schema import PurgedJob


def samples(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_jobs_by_state_queue_and_purges(rt: Runtime, alice: Principal, delegated: str, tmp_path: Path) -> None:
    ids = [register_job(rt, alice, ECHO_JDL, delegated).job_id for _ in range(3)]
    now = utcnow()
    with rt.uow() as uow:
        job = uow.jobs.get(ids[0])
        assert job is not None
        uow.jobs.set_state(job, JobState.WAITING.value, now)
        uow.queue.enqueue(job.id, "start", now)
        done = uow.jobs.get(ids[1])
        assert done is not None
        uow.jobs.set_state(done, JobState.CLEARED.value, now)
    got = samples(scrape_registry(rt, tmp_path / "metrics"))
    assert got[("wmproxy_jobs", (("state", "Submitted"),))] == 1
    assert got[("wmproxy_jobs", (("state", "Waiting"),))] == 1
    assert got[("wmproxy_execution_queue_depth", ())] == 1
    assert got[("wmproxy_purges_total", ())] == 1
    assert got[("wmproxy_proxy_renewals_total", (("result", "failed"),))] == 0
    assert got[("wmproxy_sandbox_bytes", ())] >= 0
    assert alice.dn not in generate_latest(scrape_registry(rt, tmp_path / "m2")).decode()


def test_a_jobpurge_counts_once_whatever_its_events_and_nodes(rt: Runtime, alice: Principal, delegated: str,
                                                               tmp_path: Path) -> None:
    collection = """[ Type = "collection";
        Nodes = { [ Executable = "/bin/echo"; ], [ Executable = "/bin/echo"; ] }; ]"""
    job_id = register_job(rt, alice, collection, delegated).job_id
    jobs.cancel_job(rt, alice, job_id)
    jobs.purge_job(rt, alice, job_id)  # a cleared and a purged event, and a cleared event per node
    got = samples(scrape_registry(rt, tmp_path / "metrics"))
    assert got[("wmproxy_purges_total", ())] == 1
    assert got[("wmproxy_jobs", (("state", "Cleared"),))] == 3


def test_jobs_the_purger_removed_count_as_purges(rt: Runtime, tmp_path: Path) -> None:
    with rt.uow() as uow:
        uow.session.add(PurgedJob(job_id="https://localhost:9000/gone", owner_dn="/CN=x", state="Done",
                                  reason="ended 7 days ago", purged_at=utcnow()))
    assert samples(scrape_registry(rt, tmp_path / "metrics"))[("wmproxy_purges_total", ())] == 1


def test_readiness_passes_on_a_migrated_database(rt: Runtime, pki: Pki) -> None:
    checks = readiness(rt.settings, rt.session_factory.kw["bind"])
    assert [(c.name, c.ok) for c in checks[:7]] == [("database", True), ("schema", True), ("ca", True),
                                                    ("crls", True), ("ca_policy", True), ("host_cert", True),
                                                    ("host_key", True)], checks
    assert checks[-1].name == "service"


def test_a_closed_service_port_fails_readiness() -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        check = service_check(f"0.0.0.0:{port}")
        assert not check.ok and f"127.0.0.1:{port} refuses" in check.detail
        sock.listen()
        assert service_check(f"127.0.0.1:{port}").ok


def test_a_bind_name_the_resolver_does_not_answer_fails_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that does not answer (a name server dropping queries: glibc waits 30 s or more)
    fails the service check by its deadline; before, ``/readyz`` waited for the resolver. The
    check runs in a thread, waited for far longer than its deadline (no time is measured)."""
    release = threading.Event()
    asked: list[str] = []

    def hanging_resolver(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        asked.append(host)
        release.wait(WAIT_TIMEOUT)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_resolver)
    found: list[Check] = []
    checking = threading.Thread(target=lambda: found.append(service_check("wmproxy.example.invalid:7443",
                                                                          timeout=0.2)), daemon=True)
    try:
        checking.start()
        checking.join(WAIT_TIMEOUT / 2)
        assert found, "the service check waited for the resolver"
    finally:
        release.set()
    (check,) = found
    assert asked == ["wmproxy.example.invalid"]
    assert not check.ok and check.detail.startswith("wmproxy.example.invalid:7443 cannot be looked up "
                                                    "(LookupTimeoutError: the name lookup of wmproxy.example.invalid "
                                                    "did not answer"), check.detail


def test_schema_behind_or_missing_names_the_command() -> None:
    assert not schema_check("0005", "0006").ok and "wmproxy-admin migrate" in schema_check("0005", "0006").detail
    assert not schema_check(None, "0006").ok
    assert schema_check("0006", "0006").ok


def test_an_expired_crl_fails_readiness(pki: Pki) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    ca, crls = ca_checks(pki.ca_dir, later)
    assert ca.ok and not crls.ok and "expired" in crls.detail and "fetch-crl" in crls.detail
    assert all(check.ok for check in ca_checks(pki.ca_dir, dt.datetime.now(dt.UTC)))


def _readyz(rt: Runtime, token: str | None = "t0ken") -> tuple[str, str]:  # noqa: S107 - a test token
    """/readyz, asked with the bearer token the app is given (the checks' details shown)."""
    seen: list[str] = []
    environ = {"PATH_INFO": "/readyz", "REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"Bearer {token}"}
    body = b"".join(MetricsApp(rt, token)(environ, lambda status, headers: seen.append(status)))
    return seen[0], body.decode()


def test_readiness_details_need_the_token(rt: Runtime, tmp_path: Path) -> None:
    """The details name the site's files: without a token configured (or given) each check is
    named with ok or FAIL alone."""
    rt.settings = dataclasses.replace(rt.settings, security=dataclasses.replace(rt.settings.security,
                                                                                ca_dir=str(tmp_path)))
    status, text = _readyz(rt, None)
    assert status.startswith("503") and "ca FAIL\n" in text and str(tmp_path) not in text, text
    assert str(tmp_path) in _readyz(rt)[1]


def test_a_ca_directory_without_a_ca_certificate_fails_readiness(rt: Runtime, pki: Pki, tmp_path: Path) -> None:
    # Empty, or holding only CRLs: every client handshake fails, and /readyz says so (as
    # wmproxy-admin check does, from the same reading of the directory).
    only_crls = tmp_path / "only-crls"
    only_crls.mkdir()
    for crl in pki.ca_dir.glob("*.r*"):
        (only_crls / crl.name).write_bytes(crl.read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    for ca_dir, crls in ((only_crls, 1), (empty, 0)):
        rt.settings = dataclasses.replace(rt.settings, security=dataclasses.replace(rt.settings.security,
                                                                                    ca_dir=str(ca_dir)))
        status, text = _readyz(rt)
        assert status.startswith("503"), text
        lines = {line.split()[0]: line for line in text.splitlines()}
        assert lines["ca"] == (f"ca FAIL no CA certificate (<hash>.0) in {ca_dir}: every client handshake fails; "
                               "install the CA certificates")
        assert lines["crls"] == f"crls ok {crls} CRLs current"
        assert check_ca_dir(str(ca_dir)) == [f"CA directory {ca_dir}: no CA certificate (<hash>.0)"]


def test_an_unparsable_ca_policy_file_is_a_readiness_warning(rt: Runtime, pki: Pki, tmp_path: Path,
                                                              caplog) -> None:
    """Its CA's users are refused at authentication (unless its other policy file decides):
    /readyz names each such file with the parse error, one line each, details with the token,
    and logs them, but stays ready (the other CAs' users are served; every node reads the same
    file, so failing would take them all out of the load balancer)."""
    ca_dir = tmp_path / "certificates"
    shutil.copytree(pki.ca_dir, ca_dir)
    old = ca_policy.old_name_hash(pki.ca.cert.subject.public_bytes())
    (ca_dir / f"{pki.ca.hash}.namespaces").write_text('TO Issuer SELF PERMIT Subject "/C=XX/.*\n')
    (ca_dir / f"{old}.signing_policy").write_text("access_id_CA X509 '/C=XX/CN=CA'\nneg_rights globus CA:sign\n")
    with socket.create_server(("127.0.0.1", 0)) as service:  # the service port accepting: all else passes
        addr = f"127.0.0.1:{service.getsockname()[1]}"
        rt.settings = dataclasses.replace(rt.settings,
                                          security=dataclasses.replace(rt.settings.security, ca_dir=str(ca_dir)),
                                          service=dataclasses.replace(rt.settings.service, bind=addr))
        with caplog.at_level(logging.WARNING, logger="wmproxy.monitoring.server"):
            status, text = _readyz(rt)
        assert status.startswith("200"), text
        assert any(f"ca_policy WARN {old}.signing_policy cannot be parsed" in r.getMessage() for r in caplog.records)
        effect = "the certificates of its CA are refused unless its other policy file decides; fix or remove it"
        assert [line for line in text.splitlines() if line.startswith("ca_policy")] == [
            (f"ca_policy WARN {old}.signing_policy cannot be parsed (line 2: expected pos_rights globus CA:sign or "
             f"cond_subjects globus '\"<pattern>\" ...': 'neg_rights globus CA:sign'): {effect}"),
            (f"ca_policy WARN {pki.ca.hash}.namespaces cannot be parsed (line 1: not a 'TO Issuer \"<DN>\"|SELF "
             f"PERMIT|DENY Subject \"<pattern>\"' rule: 'TO Issuer SELF PERMIT Subject \"/C=XX/.*'): {effect}")], text
        status, text = _readyz(rt, None)
        assert status.startswith("200") and text.count("ca_policy WARN\n") == 2 and pki.ca.hash not in text, text
        shutil.copy(pki.ca_dir / f"{pki.ca.hash}.namespaces", ca_dir / f"{pki.ca.hash}.namespaces")
        (ca_dir / f"{old}.signing_policy").unlink()
        status, text = _readyz(rt)
        assert status.startswith("200") and "ca_policy ok 2 policy files parse\n" in text, text


def test_an_expired_or_unreadable_host_certificate_fails_readiness(rt: Runtime, pki: Pki, tmp_path: Path) -> None:
    # A TLS server with the expired host credential: every client's handshake fails, and
    # /readyz (and wmproxy-admin check) must say so, whatever else is up.
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cert, key = pki.ca.issue_host("localhost", tmp_path / "expired", not_after=ended)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(ssl.SSLError, OSError):
                server.wrap_socket(conn, server_side=True).close()

        threading.Thread(target=serve, daemon=True).start()
        client = ssl.create_default_context(capath=str(pki.ca_dir))
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"), \
                socket.create_connection(listener.getsockname()) as raw, \
                client.wrap_socket(raw, server_hostname="localhost"):
            pass
    missing = tmp_path / "missing.pem"
    unreadable = f"host_cert FAIL cannot read the host certificate {missing} (FileNotFoundError)"
    for host_cert, detail in ((cert, f"host_cert FAIL {cert} expired "), (missing, unreadable)):
        rt.settings = dataclasses.replace(rt.settings, security=dataclasses.replace(rt.settings.security,
                                                                                    host_cert=str(host_cert)))
        status, text = _readyz(rt)
        assert status.startswith("503"), text
        lines = {line.split()[0]: line for line in text.splitlines()}
        assert lines["host_cert"].startswith(detail), text
    rt.settings = dataclasses.replace(rt.settings, security=dataclasses.replace(rt.settings.security,
                                                                                host_cert=str(pki.host_cert)))
    _status, text = _readyz(rt)
    assert {line.split()[0]: line for line in text.splitlines()}["host_cert"].startswith("host_cert ok valid until ")


def test_a_policy_file_that_refuses_everyone_fails_readiness(rt: Runtime, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    rt.settings = dataclasses.replace(rt.settings, security=dataclasses.replace(rt.settings.security,
                                                                                policy_file=str(policy)))
    status, text = _readyz(rt)
    assert status.startswith("503"), text
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert lines["policy"].startswith(f"policy FAIL [security] policy_file {policy}: No such file or directory: "
                                      "every caller is refused"), text
    policy.write_text("allow *\n")
    _status, text = _readyz(rt)
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert lines["policy"] == f"policy ok {policy} reads"


def test_an_unreadable_ca_directory_fails_both_ca_checks(tmp_path: Path) -> None:
    ca, crls = ca_checks(tmp_path / "nowhere", dt.datetime.now(dt.UTC))
    assert not ca.ok and not crls.ok
    assert ca.detail == f"cannot read the CA directory {tmp_path / 'nowhere'} (FileNotFoundError)"


def test_sandbox_size_is_walked_at_most_every_scan_interval(rt: Runtime) -> None:
    collector = SiteCollector(rt)
    before = collector.sandbox_bytes()
    (Path(rt.settings.sandbox.root) / "extra.bin").write_bytes(b"x" * 1000)
    assert collector.sandbox_bytes() == before  # within the default 300 s
    rt.settings = dataclasses.replace(rt.settings, metrics=MetricsSettings(sandbox_scan_interval=0))
    assert collector.sandbox_bytes() == before + 1000
