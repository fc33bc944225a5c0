"""How the long-running processes start, refuse and stop, run as an operator runs them: the real
console scripts on an initialised deployment (SQLite and PostgreSQL; a test marked ``any_database``
on one: an option, a refusal that comes before the database, gunicorn's boot).

``wmproxy-server -c FILE`` takes the wmproxy configuration and keeps the packaged gunicorn one;
``wmproxy-metrics`` is a command like the others; a refusal exits with the status the units do
not restart (:mod:`wmproxy.services.startup`), a stop and a ``--once`` pass say what they did.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from tests import port_support
from tests.admin.support import BIN, key_path, run, write_ini
from tests.port_support import on_free_port, wait_until_listening
from tests.support import wait_for
from wmproxy.config import Settings
from wmproxy.security.sealing import Sealer
from wmproxy.serve import APPLICATION
from wmproxy.services.startup import EXIT_REFUSED
from wmproxy.store import make_engine
from wmproxy.store.schema import ExecutionWorkerRow

#: The source tree of these tests (deploy/gunicorn.conf.py).
SOURCE_TREE = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """This environment without any ``WMPROXY_*`` variable (``WMPROXY_CONFIG`` unset, as under sudo)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WMPROXY_")}


@pytest.fixture
def config(settings: Settings, tmp_path: Path) -> Path:
    """The deployment's INI file, initialised with ``wmproxy-admin init``."""
    path = write_ini(settings, tmp_path / "wmproxy.conf")
    done = run("wmproxy-admin", "init", config=path)
    assert done.returncode == 0, done.stderr
    return path


def other_key(settings: Settings) -> None:
    """Another store key in the key file (a node set up with its own key)."""
    path = key_path(settings)
    path.unlink()
    path.write_bytes(Sealer.generate_key() + b"\n")
    path.chmod(0o600)


def refusal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "refusing to start" in line]


def serve_until_listening(argv: list[str], config: Path | None, cwd: Path, **env: str) -> tuple[int, str]:
    """Run ``argv`` (a server command) with ``--bind 127.0.0.1:<a free port>`` on ``config``
    (``WMPROXY_CONFIG``; None: unset) until it listens, stop it (SIGTERM) and return the port and
    its stderr; it must stop with status 0. A port taken before the server binds it is replaced
    (:func:`tests.port_support.on_free_port`); the stderr of each start is ``cwd/server-<port>.err``."""
    variable = {} if config is None else {"WMPROXY_CONFIG": str(config)}

    def start(port: int) -> tuple[int, subprocess.Popen[bytes], Path]:
        err_file = cwd / f"server-{port}.err"
        with err_file.open("wb") as sink:
            proc = subprocess.Popen([argv[0], "--bind", f"127.0.0.1:{port}", *argv[1:]],
                                    env={**clean_env(), **variable, **env}, cwd=cwd, stdout=subprocess.DEVNULL,
                                    stderr=sink)
        wait_until_listening(proc, port, err_file, what=argv[0])
        return port, proc, err_file

    port, proc, err_file = on_free_port(start)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = err_file.read_text()
    assert proc.returncode == 0, err
    return port, err


class TestServerConfigOption:
    @pytest.mark.any_database  # the option; the service's start on PostgreSQL: every integration deployment
    def test_c_names_the_wmproxy_configuration_and_the_service_listens(self, config: Path, tmp_path: Path) -> None:
        """``-c FILE`` with ``WMPROXY_CONFIG`` unset: the service starts on that file's database and
        keys, with the packaged gunicorn configuration (TLS); gunicorn options still pass through."""
        port, err = serve_until_listening([str(BIN / "wmproxy-server"), "-c", str(config)], None, tmp_path)
        assert "Traceback" not in err and "SyntaxError" not in err, err
        assert f"https://127.0.0.1:{port}" in err  # gunicorn's "Listening at": TLS, the packaged configuration

    @pytest.mark.any_database  # the key check on both: TestRefusalsExitWithTheRefusedStatus
    def test_a_refusal_names_the_file_of_c_and_exits_with_the_refused_status(
            self, settings: Settings, config: Path, tmp_path: Path) -> None:
        other_key(settings)
        done = subprocess.run([str(BIN / "wmproxy-server"), "--config", str(config)], env=clean_env(), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == EXIT_REFUSED, done.stderr
        assert len(refusal_lines(done.stderr)) == 1 and "is not the key of this database" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


    def test_a_port_taken_before_gunicorn_binds_it_is_replaced(self, config: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """gunicorn says the port is in use (and would try it again for five seconds): the tests'
        start takes another one (tests/port_support.py) rather than fail, or take the other
        process for the service."""
        probe = port_support.free_port
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            taken = holder.getsockname()[1]
            chosen = iter([taken])
            monkeypatch.setattr(port_support, "free_port", lambda host="127.0.0.1": next(chosen, None) or probe(host))
            port, err = serve_until_listening([str(BIN / "wmproxy-server")], config, tmp_path,
                                              WMPROXY_MAPPING_MODE="none")
        assert port != taken
        assert f"Listening at: https://127.0.0.1:{port}" in err, err
        first = (tmp_path / f"server-{taken}.err").read_text()
        assert "Address already in use" in first and "Listening at" not in first, first


class TestStartChecksRunOnce:
    """Before, ``wmproxy-server`` ran the start checks (store key, schema, file modes, the sandbox
    root) four times: itself and as gunicorn read its configuration, both again after the master's
    ``PYTHONMALLOC`` re-exec; their WARNING and gunicorn's start were logged twice."""

    def test_wmproxy_server_logs_each_check_and_its_start_once(self, config: Path, tmp_path: Path) -> None:
        _port, err = serve_until_listening([str(BIN / "wmproxy-server")], config, tmp_path,
                                           WMPROXY_MAPPING_MODE="none")
        assert err.count("[mapping] mode = none: jobs run as the service user itself") == 1, err
        assert err.count("Starting gunicorn") == 1, err
        assert "Traceback" not in err

    @pytest.mark.any_database  # the checks' count is the other test's, on both databases
    def test_gunicorn_run_from_the_source_tree_checks_too(self, settings: Settings, config: Path,
                                                          tmp_path: Path) -> None:
        """``gunicorn -c deploy/gunicorn.conf.py``: the checks run (once) there as well."""
        gunicorn = [str(BIN / "gunicorn"), "-c", str(SOURCE_TREE / "deploy" / "gunicorn.conf.py")]
        _port, err = serve_until_listening([*gunicorn, APPLICATION], config, tmp_path, WMPROXY_MAPPING_MODE="none")
        assert err.count("[mapping] mode = none: jobs run as the service user itself") == 1, err
        other_key(settings)
        done = subprocess.run([*gunicorn, "--bind", "127.0.0.1:0", APPLICATION], cwd=tmp_path, capture_output=True,
                              env={**clean_env(), "WMPROXY_CONFIG": str(config)}, text=True, timeout=120, check=False)
        assert done.returncode == EXIT_REFUSED, done.stderr
        assert len(refusal_lines(done.stderr)) == 1 and "is not the key of this database" in done.stderr, done.stderr


@pytest.mark.any_database
class TestAWorkerThatFailsToBoot:
    """gunicorn halts when a worker fails to boot; ``wmproxy-server`` made that status 1, which the
    unit restarts in a loop, and the reason was only in the worker's traceback."""

    def test_wmproxy_server_exits_refused_with_the_reason_in_one_line(self, config: Path) -> None:
        """Every worker fails (``--threads 0``): gunicorn's master, halting on the first, met the
        next one's boot error while it stopped and ended with a HaltServer traceback, status 1."""
        done = run("wmproxy-server", "--bind", "127.0.0.1:0", "--threads", "0", "--workers", "4", config=config,
                   timeout=120)
        assert done.returncode == EXIT_REFUSED, done.stderr
        (line,) = refusal_lines(done.stderr)
        assert re.fullmatch(r"wmproxy: refusing to start: a gunicorn worker \(pid \d+\) failed to boot: "
                            r"ValueError: max_workers must be greater than 0", line), line
        assert "Traceback" not in done.stderr.split("Shutting down: Master")[-1], done.stderr  # the workers' only

    def test_an_application_whose_import_raises(self, config: Path, tmp_path: Path) -> None:
        (tmp_path / "broken_app.py").write_text('raise RuntimeError("this application cannot be imported")\n')
        done = subprocess.run([str(BIN / "gunicorn"), "-c", str(SOURCE_TREE / "deploy" / "gunicorn.conf.py"),
                               "--bind", "127.0.0.1:0", "--pythonpath", str(tmp_path), "broken_app:application"],
                              env={**clean_env(), "WMPROXY_CONFIG": str(config)}, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == EXIT_REFUSED, done.stderr
        (line,) = refusal_lines(done.stderr)
        assert line.endswith("failed to boot: RuntimeError: this application cannot be imported"), line


class TestRefusalsExitWithTheRefusedStatus:
    """The units restart on failure but not on :data:`EXIT_REFUSED`: every process exits once with it."""

    @pytest.mark.parametrize("argv", [["wmproxy-server", "--bind", "127.0.0.1:0"], ["wmproxy-renewal", "--once"],
                                      ["wmproxy-metrics"], ["wmproxy-worker", "--name", "w1"]],
                             ids=["server", "renewal", "metrics", "worker"])
    def test_another_store_key(self, settings: Settings, config: Path, argv: list[str]) -> None:
        other_key(settings)
        done = run(*argv, config=config, timeout=120)  # a crash loop would not return
        assert done.returncode == EXIT_REFUSED, (done.stdout, done.stderr)
        assert "is not the key of this database" in done.stderr and "Traceback" not in done.stderr, done.stderr

    @pytest.mark.parametrize("argv", [["wmproxy-server", "--bind", "127.0.0.1:0"], ["wmproxy-renewal", "--once"],
                                      ["wmproxy-metrics"]], ids=["server", "renewal", "metrics"])
    @pytest.mark.any_database  # the key file's mode, checked before the database is opened
    def test_a_store_key_others_can_read(self, settings: Settings, config: Path, argv: list[str]) -> None:
        key_path(settings).chmod(0o644)
        done = run(*argv, config=config, timeout=120)
        assert done.returncode == EXIT_REFUSED, (done.stdout, done.stderr)
        assert f"chmod 600 {key_path(settings)}" in done.stderr and "Traceback" not in done.stderr, done.stderr

    @pytest.mark.parametrize("argv", [["wmproxy-server", "--bind", "127.0.0.1:0"], ["wmproxy-renewal", "--once"],
                                      ["wmproxy-metrics"], ["wmproxy-worker", "--name", "w1"]],
                             ids=["server", "renewal", "metrics", "worker"])
    @pytest.mark.any_database  # the configuration file, read before the database is opened
    def test_a_bad_value_names_its_file_and_exits_2(self, config: Path, argv: list[str]) -> None:
        config.write_text(config.read_text().replace("[execution]\n", "[execution]\nmax_running = eight\n"))
        done = run(*argv, config=config, timeout=120)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert f"{config}: [execution] max_running: cannot convert 'eight' to int" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


class TestMetricsCommand:
    def test_help_names_the_config_option_and_starts_nothing(self, tmp_path: Path) -> None:
        done = subprocess.run([str(BIN / "wmproxy-metrics"), "--help"], env=clean_env(), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "-c, --config" in done.stdout and done.stderr == ""

    @pytest.mark.any_database
    def test_a_busy_port_names_the_bind_setting_in_one_line(self, settings: Settings, config: Path) -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            config.write_text(config.read_text() + f"[metrics]\nbind = 127.0.0.1:{port}\n")
            done = run("wmproxy-metrics", config=config, timeout=120)
        assert done.returncode == 1, done.stderr
        assert f"[metrics] bind = 127.0.0.1:{port}: cannot listen" in done.stderr, done.stderr
        assert "Address already in use" in done.stderr and "Traceback" not in done.stderr


class TestWithoutAConfigurationFile:
    @pytest.mark.parametrize("command", ["wmproxy-metrics", "wmproxy-renewal"])
    def test_it_says_none_was_read(self, tmp_path: Path, command: str) -> None:
        """``WMPROXY_CONFIG`` unset (sudo drops it): the defaults apply and the message says so (the
        renewal worker finds no database in the working directory; wmproxy-metrics, which starts
        without a database to report it on /readyz, no store key at the default path)."""
        done = subprocess.run([str(BIN / command)], env=clean_env(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == EXIT_REFUSED, done.stderr
        (line,) = refusal_lines(done.stderr)
        assert f"there is no database at {tmp_path}" in line or "/var/lib/wmproxy/store.key is missing" in line
        assert "no configuration file was read" in line
        assert "WMPROXY_CONFIG" in line and "Traceback" not in done.stderr


class TestWhatAStartAndAStopSay:
    def test_renewal_once_logs_its_pass_and_no_alembic_plugin_lines(self, config: Path) -> None:
        done = run("wmproxy-renewal", "--once", config=config)
        assert done.returncode == 0, done.stderr
        assert "renewal pass done: 0 renewal(s) attempted" in done.stderr, done.stderr
        assert "setup plugin" not in done.stderr

    def test_the_worker_logs_its_stop_on_sigterm(self, settings: Settings, config: Path) -> None:
        env = clean_env()
        env["WMPROXY_CONFIG"] = str(config)
        proc = subprocess.Popen([str(BIN / "wmproxy-worker"), "--name", "w-stop"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        engine = make_engine(settings.database.url)
        try:
            def heartbeat() -> bool:
                assert proc.poll() is None, "the worker exited"
                with engine.connect() as conn:
                    query = select(ExecutionWorkerRow.name).where(ExecutionWorkerRow.name == "w-stop")
                    return conn.execute(query).first() is not None

            wait_for(heartbeat, what="the worker's heartbeat")
        finally:
            engine.dispose()
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 0, err
        assert "execution worker w-stop stopped on SIGTERM" in err, err
        assert "setup plugin" not in err
