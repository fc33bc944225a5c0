"""What a site admin meets on a fresh install when a file the service needs is not the service
user's, checked on a real deployment with the privilege split (root runs the tests; gunicorn,
``wmproxy-metrics`` and ``wmproxy-admin check`` run as the throwaway service user, or
``check --user`` as root):

- a host key the service user cannot read stops ``wmproxy-server`` at start, the key named in
  one line, with the refused status 3, which the unit does not restart (before, gunicorn listened
  and its workers closed every connection without a log line; then it exited 1, restarted in a
  loop), and ``check`` and ``/readyz`` report it;
- a configured mapping file or CE catalogue that is missing or unreadable is a problem for
  ``check`` and ``/readyz`` (before, both were green while every submission was refused, or
  every started job stayed waiting);
- a store key or SQLite database a restore left root's: the service's refusal names the file,
  its owner and mode, and ``check --user`` reports the owner;
- gunicorn makes no control socket (``$HOME/.gunicorn/gunicorn.ctl``, shared by every service of
  the same user: one that stopped removed the running one's).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.isolated import Isolated, isolated_deployment
from tests.integration.metrics_support import http_get, start_metrics, token_file
from tests.integration.service import BIN
from tests.support import WAIT_TIMEOUT
from wmproxy.services.startup import EXIT_REFUSED

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url, start_worker=False) as deployment:
        yield deployment


def check(iso: Isolated, *args: str, as_service: bool = False, **env: str) -> dict[str, dict[str, object]]:
    """``wmproxy-admin check --json``: as root (``--user`` in ``args``) or as the service user."""
    dep = iso.deployment
    prefix = dep.service_prefix if as_service else []
    command = [*prefix, *dep.python_command("wmproxy.admin", BIN / "wmproxy-admin"), "check", "--json", *args]
    done = subprocess.run(command, env={**dep.env, **env}, capture_output=True, text=True, timeout=120, check=False,
                          cwd=dep.cwd)
    assert done.returncode in (0, 1), done.stderr
    return {row["check"]: row for row in json.loads(done.stdout)}


def refused_start(iso: Isolated, log_name: str, status: int | None = None) -> str:
    """Start ``wmproxy-server`` as the service user, which must exit (not listen), with ``status``
    when given; its output."""
    dep = iso.deployment
    proc = dep.start([*dep.service_prefix, *dep.python_command("wmproxy.serve", dep.bin_dir / "wmproxy-server")],
                     log_name)
    code = proc.wait(timeout=WAIT_TIMEOUT)
    output = (dep.state / log_name).read_text()
    assert code != 0 and (status is None or code == status), (code, output)
    return output


def refusal_line(output: str) -> str:
    """The one line of a refused start."""
    (line,) = [line for line in output.splitlines() if "refusing to start" in line]
    return line


def readiness(iso: Isolated, **env: str) -> tuple[int, dict[str, str]]:
    """``/readyz`` of a ``wmproxy-metrics`` of the service user (``env``: its settings), with
    the details a token holder reads."""
    token = "start-checks-" + "t" * 32
    port = start_metrics(iso.deployment, WMPROXY_METRICS_TOKEN_FILE=str(token_file(iso.deployment, token)), **env)
    status, text = http_get(f"http://127.0.0.1:{port}/readyz", token)
    return status, {line.split()[0]: line for line in text.splitlines()}


def test_gunicorn_makes_no_control_socket(iso: Isolated) -> None:
    """gunicorn 25.1+ makes ``$HOME/.gunicorn/gunicorn.ctl`` (the directory first) in a thread of
    the master, and a stop waits for that thread to be serving before it removes the socket: once
    the master has exited, a control socket it made has left its directory (and its log line)."""
    dep = iso.deployment
    dep.stop()
    try:
        home = Path(dep.env["HOME"])
        assert not (home / ".gunicorn").exists()
        runtime_dir = dep.env.get("XDG_RUNTIME_DIR")
        assert runtime_dir is None or not (Path(runtime_dir) / "gunicorn.ctl").exists()
        assert "Control socket" not in (dep.state / "gunicorn.log").read_text()
    finally:
        dep.start_gunicorn()


def test_a_host_key_the_service_user_cannot_read_stops_the_start_and_is_reported(iso: Isolated) -> None:
    dep, key, svc = iso.deployment, iso.host_key, iso.service.pw_name
    dep.stop()
    os.chown(key, 0, 0)  # as a copy made as root leaves it (0600)
    try:
        output = refused_start(iso, "gunicorn-unreadable-key.log", EXIT_REFUSED)  # before: 1, restarted in a loop
        assert refusal_line(output).startswith(f"wmproxy: refusing to start: host key {key} is not readable by user "
                                               f"{svc}: it belongs to root with mode 0600"), output
        found = check(iso, as_service=True)
        assert not found["host key"]["ok"]
        assert f"host key {key} is not readable by user {svc}" in str(found["host key"]["detail"])
        found = check(iso, "--user", svc)
        assert not found["host key"]["ok"]
        assert f"host key {key} is not readable by the service user {svc}" in str(found["host key"]["detail"])
        status, rows = readiness(iso)
        assert status == 503
        assert rows["host_key"].startswith(f"host_key FAIL host key {key} is not readable by user {svc}"), rows
    finally:
        os.chown(key, iso.service.pw_uid, iso.service.pw_gid)
        dep.start_gunicorn()
    assert check(iso, "--user", svc)["host key"]["ok"]


def test_a_key_that_is_not_the_certificates_stops_the_start(iso: Isolated, pki: Pki, tmp_path: Path) -> None:
    dep, key = iso.deployment, iso.host_key
    good = key.read_bytes()
    _cert, other = pki.ca.issue_host("localhost", tmp_path / "other")
    dep.stop()
    key.write_bytes(other.read_bytes())
    try:
        output = refused_start(iso, "gunicorn-mismatched-key.log", EXIT_REFUSED)
        assert refusal_line(output).startswith(f"wmproxy: refusing to start: the host key {key} does not match the "
                                               "host certificate"), output
        found = check(iso, "--user", iso.service.pw_name)
        assert not found["host key"]["ok"] and "does not match" in str(found["host key"]["detail"])
    finally:
        key.write_bytes(good)
        dep.start_gunicorn()


def test_missing_or_unreadable_mapping_files_and_catalogue_are_problems(iso: Isolated) -> None:
    """The example configuration named /etc/wmproxy/voms-mapfile and ce-catalogue.ads, which a
    fresh install does not have: submissions were refused and jobs stayed waiting, all green."""
    svc = iso.service.pw_name
    rules, catalogue = iso.root / "voms-mapfile", iso.state / "ce-catalogue.ads"
    env = {"WMPROXY_MAPPING_VOMS_RULES_FILE": str(rules), "WMPROXY_JOBS_CE_CATALOGUE": str(iso.root / "none.ads")}
    found = check(iso, "--user", svc, **env)
    assert not found["mapping files"]["ok"] and not found["CE catalogue"]["ok"]
    assert f"cannot read the [mapping] voms_rules_file {rules}: No such file or directory" in str(
        found["mapping files"]["detail"])
    assert f"cannot read the [jobs] ce_catalogue {iso.root / 'none.ads'}: No such file or directory" in str(
        found["CE catalogue"]["detail"])
    status, rows = readiness(iso, **env)
    assert status == 503
    assert rows["mapping"].startswith("mapping FAIL") and str(rules) in rows["mapping"], rows
    assert rows["ce_catalogue"].startswith("ce_catalogue FAIL") and "none.ads" in rows["ce_catalogue"], rows

    rules.write_text("")
    os.chmod(catalogue, 0o600)  # root's, as the deployment wrote it: the service user cannot read it now
    try:
        env["WMPROXY_JOBS_CE_CATALOGUE"] = str(catalogue)
        found = check(iso, "--user", svc, **env)
        assert found["mapping files"]["ok"], found
        assert not found["CE catalogue"]["ok"]
        assert (f"[jobs] ce_catalogue {catalogue} is not readable by the service user {svc}: it belongs to root with "
                "mode 0600") in str(found["CE catalogue"]["detail"])
        status, rows = readiness(iso, **env)
        assert status == 503 and rows["ce_catalogue"].startswith("ce_catalogue FAIL"), rows
    finally:
        os.chmod(catalogue, 0o644)
    assert check(iso, "--user", svc, **env)["CE catalogue"]["ok"]


def test_state_files_a_restore_left_to_root_are_named_with_their_owner(iso: Isolated, database_url: str) -> None:
    dep, svc = iso.deployment, iso.service
    sqlite = database_url.startswith("sqlite")
    private = [iso.store_key, *([iso.state / "wmproxy.db"] if sqlite else [])]
    dep.stop()
    for path in private:
        os.chown(path, 0, 0)  # restored as root, 0600
    try:
        found = check(iso, "--user", svc.pw_name)
        assert not found["file modes"]["ok"]
        for path in private:
            assert (f"{path} belongs to root, not to the service user {svc.pw_name}: run `chown {svc.pw_name} {path}`"
                    in str(found["file modes"]["detail"])), found["file modes"]
        output = refused_start(iso, "gunicorn-restored-as-root.log")
        if sqlite:
            db = iso.state / "wmproxy.db"
            assert f"refusing to start: the database sqlite:///{db} cannot be reached: " in output, output
            assert f"{db} belongs to root with mode 0600" in output and f"this process runs as {svc.pw_name}" in output
        else:
            assert f"store key {iso.store_key} is not readable by user {svc.pw_name}" in output, output
    finally:
        for path in private:
            os.chown(path, svc.pw_uid, svc.pw_gid)
        dep.start_gunicorn()
    assert check(iso, "--user", svc.pw_name)["file modes"]["ok"]
