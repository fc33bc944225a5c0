"""The web job monitor in headless Chromium, with the user's certificate as a browser holds it.

Chromium (Debian ``chromium`` + ``chromium-driver``, driven by selenium) gets alice's
certificate and key in an NSS database under its ``$HOME`` (``pk12util``), the test CA as a
trusted authority (``certutil``), and the ``AutoSelectCertificateForUrls`` policy for the
service's URL (a managed policy file in ``/etc/chromium/policies/managed``, removed after),
which is how a grid user's browser presents the certificate without a prompt. JavaScript is
switched off: the pages must work without it. Screenshots go to ``$WMPROXY_TEST_ARTIFACTS``
(default: a pytest temporary directory) and their paths are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from tests.conftest import IN_CI, Pki, need_peer
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment, tls_client_context
from tests.support import ECHO_JDL, delegate, wait_for, wait_for_final

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment of this module's own (it counts the rows of its job list), on a fresh database."""
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state")) as dep:
        yield dep

POLICY_DIR = Path("/etc/chromium/policies/managed")
TOOLS = ("chromium", "chromedriver", "certutil", "pk12util")

DAG = """[ Type = "dag";
nodes = [
  prepare = [ Description = [ Executable = "/bin/true"; ]; ];
  simulate = [ Description = [ Executable = "/bin/echo"; Arguments = "sim"; ]; ];
  analyse = [ Description = [ Executable = "/bin/echo"; Arguments = "ana"; ]; ];
  dependencies = { { prepare, simulate }, { simulate, analyse } };
];
]"""


def _check_peers() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        need_peer(f"the browser tests need {', '.join(missing)} (Debian chromium chromium-driver libnss3-tools)")
    if os.geteuid() != 0:
        if IN_CI:
            raise AssertionError("the browser tests install a Chromium policy: CI must run them as root")
        need_peer("the browser tests write a Chromium policy under /etc (root)")


def nss_database(home: Path, pki: Pki, user: str) -> None:
    """``$HOME/.pki/nssdb`` with the test CA trusted and ``user``'s certificate and key."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    credential = pki.users[user].credential
    p12 = home / f"{user}.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(user.encode(), credential.key, credential.cert, None,
                                                          NoEncryption()))  # type: ignore[arg-type]
    ca_file = next(pki.ca_dir.glob("*.0"))
    for argv in (["certutil", "-N", "-d", f"sql:{db}", "--empty-password"],
                 ["certutil", "-A", "-d", f"sql:{db}", "-n", "wmproxy-test-ca", "-t", "CT,,", "-i", str(ca_file)],
                 ["pk12util", "-i", str(p12), "-d", f"sql:{db}", "-W", ""]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    p12.unlink()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Path:
    """``$WMPROXY_TEST_ARTIFACTS/monitor/<database backend>/``."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    path = Path(os.environ.get("WMPROXY_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts")) / "monitor" / backend
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(deployment: Deployment, pki: Pki, downloads: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium presenting alice's certificate to the service, JavaScript off."""
    _check_peers()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    home = tmp_path_factory.mktemp("browser-home")
    nss_database(home, pki, "alice")
    POLICY_DIR.mkdir(parents=True, exist_ok=True)
    policy = POLICY_DIR / f"wmproxy-test-{os.getpid()}-{deployment.port}.json"
    pattern = json.dumps({"pattern": f"https://localhost:{deployment.port}", "filter": {}})
    policy.write_text(json.dumps({"AutoSelectCertificateForUrls": [pattern]}))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                f"--user-data-dir={home / 'profile'}", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "profile.managed_default_content_settings.javascript": 2})
    service = Service(executable_path=shutil.which("chromedriver") or "", env={**os.environ, "HOME": str(home)})
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
        policy.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "monitor")
    return ref


@pytest.fixture(scope="module")
def jobs(alice: ReferenceClient, deployment: Deployment, pki: Pki) -> dict[str, str]:
    """alice's simple job and DAG (both ended) and bob's job."""
    simple = alice.wmproxy.jobSubmit(ECHO_JDL, "monitor").id
    dag = alice.wmproxy.jobSubmit(DAG, "monitor").id
    bob = reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)
    delegate(bob, pki.users["bob"].proxy, "monitor")
    bobs = bob.wmproxy.jobRegister(ECHO_JDL.replace("hello grid", "bob's secret"), "monitor").id
    wait_for_final(alice, simple)
    wait_for_final(alice, dag)
    return {"simple": simple, "dag": dag, "bob": bobs}


def open_page(browser: Any, deployment: Deployment, path: str, artifacts: Path, shot: str) -> str:
    browser.get(f"https://localhost:{deployment.port}{path}")
    browser.save_screenshot(str(artifacts / f"{shot}.png"))
    print(f"screenshot: {artifacts / shot}.png")
    source = str(browser.page_source)
    assert "<script" not in source  # the pages need no JavaScript (and this browser runs none)
    return source


def job_path(job_id: str) -> str:
    return "/monitor/job?id=" + quote(job_id, safe="")


def test_job_list(browser: Any, deployment: Deployment, jobs: dict[str, str], artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, deployment, "/monitor/", artifacts, "jobs")
    assert browser.title.startswith("Your jobs")
    listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#jobs a")]
    assert jobs["simple"] in listed and jobs["dag"] in listed
    assert jobs["bob"] not in listed
    totals = browser.find_element(By.ID, "totals").text
    assert "Done" in totals
    open_page(browser, deployment, "/monitor/?state=Done", artifacts, "jobs-done")
    assert {a.text for a in browser.find_elements(By.CSS_SELECTOR, "#jobs a")} >= {jobs["simple"], jobs["dag"]}
    open_page(browser, deployment, "/monitor/?state=Running", artifacts, "jobs-running")
    assert browser.find_elements(By.CSS_SELECTOR, "#jobs a") == []


def test_job_page_events_and_download(browser: Any, deployment: Deployment, jobs: dict[str, str],
                                      artifacts: Path, downloads: Path) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, deployment, job_path(jobs["simple"]), artifacts, "job")
    assert "Done (Exit Code 0)" in browser.find_element(By.ID, "status").text
    states = [row.find_elements(By.TAG_NAME, "td")[1].text
              for row in browser.find_elements(By.CSS_SELECTOR, "#events tr") if row.find_elements(By.TAG_NAME, "td")]
    assert states[0] == "Submitted" and states[-1] == "Done" and "Running" in states
    assert browser.find_element(By.ID, "destination").text
    assert "hello grid" in browser.find_element(By.ID, "jdl").text
    links = {a.text: a for a in browser.find_elements(By.CSS_SELECTOR, "#outputs a")}
    assert set(links) == {"std.out", "std.err"}
    links["std.out"].click()
    target = downloads / "std.out"
    wait_for(lambda: target.is_file() and target.read_bytes(), what="the browser to download std.out")
    assert target.read_bytes() == b"hello grid\n"


def test_dag_picture(browser: Any, deployment: Deployment, jobs: dict[str, str], artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, deployment, job_path(jobs["dag"]), artifacts, "dag")
    nodes = browser.find_elements(By.CSS_SELECTOR, "#dag svg g.node")
    assert sorted(n.get_attribute("data-state") for n in nodes) == ["Done", "Done", "Done"]
    x = {n.find_element(By.TAG_NAME, "text").text: float(n.find_element(By.TAG_NAME, "rect").get_attribute("x"))
         for n in nodes}
    assert x["prepare"] < x["simulate"] < x["analyse"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dag svg line")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nodes tr td a")) == 3
    simulate = next(n for n in nodes if n.find_element(By.TAG_NAME, "text").text == "simulate")
    simulate.click()  # each node of the picture links to its own page
    assert "Done (Exit Code 0)" in browser.find_element(By.ID, "status").text
    assert "sim" in browser.find_element(By.ID, "jdl").text


def test_another_users_job_is_refused(browser: Any, deployment: Deployment, jobs: dict[str, str],
                                      artifacts: Path) -> None:
    source = open_page(browser, deployment, job_path(jobs["bob"]), artifacts, "refused")
    assert browser.title.startswith("403 Forbidden")
    assert "bob's secret" not in source and jobs["bob"] not in source
    source = open_page(browser, deployment, "/monitor/dag.svg?id=" + quote(jobs["bob"], safe=""), artifacts,
                       "refused-dag")
    assert "403 Forbidden" in source and "bob" not in source.lower()


def test_no_tls_session_is_resumed(deployment: Deployment, pki: Pki) -> None:
    """A browser resumes TLS sessions, and a resumed session carries no client chain: the
    service offers none (else every page after the first would be 'no TLS client certificate')."""
    context = tls_client_context(pki.ca_dir, pki.users["alice"].proxy)
    session = None
    for _ in range(12):  # each gunicorn worker has its own ticket keys: try to reach the same one again
        with socket.create_connection(("localhost", deployment.port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"GET /monitor/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
            assert not tls.session_reused
            assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
            session = tls.session
