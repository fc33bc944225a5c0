"""The wheel as a site installs it: built from this checkout, installed into fresh virtualenvs
outside the source tree, and run from there (cwd not the repository, the repository not on
``sys.path``).

* the server virtualenv (``pip install 'wmproxy-<v>.whl[server]'``) runs ``wmproxy-admin init``,
  ``wmproxy-server`` (gunicorn with the packaged configuration) and ``wmproxy-worker``, as the
  service user when the tests run as root (:func:`tests.integration.isolated.isolated_deployment`);
* the CLI-only virtualenv (``pip install wmproxy-<v>.whl``: no server stack) submits a job to
  that service, follows it and retrieves its output; its server commands exit with the fix;
* a wheel built from a later commit has a greater version (setuptools-scm) and ``pip install
  --upgrade`` of it replaces the installed one (docs/operations.md, "Upgrade").

As root the virtualenvs use ``/usr/bin/python3`` (the service user cannot reach an interpreter
under ``/root``), so they run the system Python's version; otherwise the tests' interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from tests.conftest import Pki
from tests.integration.isolated import SYSTEM_PYTHON, standard_deployment
from tests.integration.service import REPO, Deployment
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

#: Seconds pip may take to build the wheel or to fill a virtualenv (downloads on a loaded machine).
PIP_TIMEOUT = 1200


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = PIP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without wmproxy settings and Python path variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "X509_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def outside() -> Iterator[Path]:
    """A directory outside the source tree that every account may traverse."""
    root = Path(tempfile.mkdtemp(prefix="wmproxy-wheel-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def wheel(outside: Path) -> Path:
    dist = outside / "dist"
    done = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, REPO, cwd=outside)
    assert done.returncode == 0, done.stderr
    (built,) = dist.glob("wmproxy-*.whl")
    return built


def make_venv(outside: Path, name: str, requirement: str) -> Path:
    venv = outside / name
    python = SYSTEM_PYTHON if os.geteuid() == 0 else sys.executable
    done = run(python, "-m", "venv", venv, cwd=outside)
    assert done.returncode == 0, done.stderr
    done = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", requirement, cwd=outside, env=clean_env())
    assert done.returncode == 0, done.stderr
    return venv


@pytest.fixture(scope="session")
def server_venv(outside: Path, wheel: Path) -> Path:
    return make_venv(outside, "server-venv", f"{wheel}[server]")


@pytest.fixture(scope="session")
def cli_venv(outside: Path, wheel: Path) -> Path:
    return make_venv(outside, "cli-venv", str(wheel))


def imported_from(venv: Path, module: str, cwd: Path) -> str:
    done = run(venv / "bin" / "python", "-c", f"import {module}; print({module}.__file__)", cwd=cwd, env=clean_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class TestWheelContents:
    def test_carries_what_the_service_loads_at_run_time(self, wheel: Path) -> None:
        names = set(zipfile.ZipFile(wheel).namelist())
        needed = {"wmproxy/wsdl/wmproxy.wsdl", "wmproxy/migrations/env.py", "wmproxy/migrations/script.py.mako",
                  "wmproxy/gunicorn_conf.py", "wmproxy/serve.py", "wmproxy/execution/jobwrapper.py",
                  "wmproxy/py.typed"}
        assert needed - names == set()
        assert [n for n in names if n.startswith("wmproxy/migrations/versions/") and n.endswith(".py")]
        assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert not [n for n in names if n.startswith(("tests/", "deploy/", "benchmarks/"))]

    def test_declares_the_server_extra_and_the_entry_points(self, wheel: Path) -> None:
        archive = zipfile.ZipFile(wheel)
        dist_info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        assert "Provides-Extra: server" in metadata
        assert 'Requires-Dist: spyne==2.14.0; extra == "server"' in metadata
        for script in ("wmproxy", "wmproxy-server", "wmproxy-admin", "wmproxy-worker", "wmproxy-renewal"):
            assert f"\n{script} = " in entry_points


class TestInstalledDeployment:
    def test_a_job_runs_through_the_installed_service_and_cli(self, server_venv: Path, cli_venv: Path, pki: Pki,
                                                              database_url: str, tmp_path: Path,
                                                              outside: Path) -> None:
        assert imported_from(server_venv, "wmproxy", outside).startswith(str(server_venv))
        state = outside / f"state-{tmp_path.name}"
        state.mkdir()
        with standard_deployment(pki, database_url, state, venv=server_venv) as deployment:
            assert deployment.cwd != REPO and "PYTHONPATH" not in deployment.env
            run_job(deployment, cli_venv, tmp_path)


def run_job(deployment: Deployment, cli_venv: Path, tmp_path: Path) -> None:
    """Delegate, submit a job with an input sandbox, wait for Done, fetch the output: with the
    CLI-only virtualenv's ``wmproxy``, in a directory outside the source tree."""
    env = dict(deployment.env, GLITE_WMS_WMPROXY_ENDPOINT=deployment.endpoint)
    env["PATH"] = f"{cli_venv / 'bin'}:{env['PATH']}"
    env.pop("PYTHONPATH", None)
    job_dir = tmp_path / "job"
    job_dir.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run(cli_venv / "bin" / "wmproxy", *args, cwd=job_dir, env=env, timeout=300)

    (job_dir / "run.sh").write_text('#!/bin/sh\necho "from the wheel: $1"\n')
    (job_dir / "job.jdl").write_text('[ Executable = "run.sh"; Arguments = "ok"; StdOutput = "out.txt";\n'
                                     '  InputSandbox = {"run.sh"}; OutputSandbox = {"out.txt"}; ]\n')
    done = cli("delegate-proxy", "-d", "wheel")
    assert done.returncode == 0, done.stderr
    done = cli("submit", "-d", "wheel", "-o", str(job_dir / "ids.txt"), str(job_dir / "job.jdl"))
    assert done.returncode == 0, done.stderr
    job_id = (job_dir / "ids.txt").read_text().splitlines()[1]

    def status() -> str:
        done = cli("status", job_id)
        assert done.returncode == 0, done.stderr
        return done.stdout

    final = wait_for(status, lambda out: "Current Status:     Done" in out or "Aborted" in out,
                     what=f"{job_id} to end")
    assert "Current Status:     Done" in final, final
    done = cli("output", "--dir", str(job_dir / "out"), "--nosubdir", job_id)
    assert done.returncode == 0, done.stderr
    assert (job_dir / "out" / "out.txt").read_text() == "from the wheel: ok\n"


class TestCliOnlyInstall:
    def test_has_no_server_stack(self, cli_venv: Path, outside: Path) -> None:
        done = run(cli_venv / "bin" / "python", "-c",
                   "import importlib.util as u; print([m for m in ('spyne', 'sqlalchemy', 'alembic', 'gunicorn', "
                   "'psycopg') if u.find_spec(m)])", cwd=outside, env=clean_env())
        assert done.stdout.strip() == "[]", done.stderr

    def test_the_cli_runs(self, cli_venv: Path, outside: Path) -> None:
        done = run(cli_venv / "bin" / "wmproxy", "--help", cwd=outside, env=clean_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "submit" in done.stdout

    @pytest.mark.parametrize("command", ["wmproxy-admin", "wmproxy-server", "wmproxy-worker", "wmproxy-renewal"])
    def test_a_server_command_names_the_extra_to_install(self, cli_venv: Path, outside: Path, command: str) -> None:
        done = run(cli_venv / "bin" / command, "--help", cwd=outside, env=clean_env(), timeout=120)
        assert done.returncode == 1
        assert "pip install 'wmproxy[server]'" in done.stderr and "Traceback" not in done.stderr


def wheel_version(wheel: Path) -> Version:
    return parse_wheel_filename(wheel.name)[1]


class TestUpgrade:
    def test_a_wheel_from_a_later_commit_replaces_an_earlier_one(self, wheel: Path, outside: Path,
                                                                 tmp_path: Path) -> None:
        """The version comes from git: the checkout's wheel (the session's) against one built from a
        clone with one more (empty) commit; then both into a bare virtualenv, without dependencies."""
        clone = tmp_path / "clone"
        done = run("git", "clone", "--quiet", REPO, clone, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        done = run("git", "-c", "user.name=wheel test", "-c", "user.email=wheel@test.invalid", "commit", "--quiet",
                   "--allow-empty", "-m", "a later commit", cwd=clone)
        assert done.returncode == 0, done.stderr
        done = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "dist", clone,
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (later,) = (tmp_path / "dist").glob("wmproxy-*.whl")
        assert wheel_version(later) > wheel_version(wheel), (later.name, wheel.name)

        venv = tmp_path / "upgrade-venv"
        done = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps")
        done = run(*pip, wheel, cwd=outside, env=clean_env())
        assert done.returncode == 0, done.stderr
        done = run(*pip, "--upgrade", later, cwd=outside, env=clean_env())
        assert done.returncode == 0, done.stderr
        assert "already installed" not in done.stdout + done.stderr
        (site,) = (venv / "lib").glob("python3.*/site-packages")
        assert [d.name for d in site.glob("wmproxy-*.dist-info")] == [f"wmproxy-{wheel_version(later)}.dist-info"]
        done = run(venv / "bin" / "python", "-c", "import wmproxy; print(wmproxy.__version__)", cwd=outside,
                   env=clean_env())
        assert done.returncode == 0, done.stderr
        assert Version(done.stdout.strip()) == wheel_version(later)
