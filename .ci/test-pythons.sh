#!/usr/bin/env bash
# `make test`: the whole suite on Python 3.11 (.venv) and, at the same time, the 3.13 run (.venv313)
# and the Slurm tests.
#
# What runs where (README "Python versions"):
#   3.11  every test (PYTEST_ARGS are passed on), in PYTEST_WORKERS pytest-xdist processes (default
#         3; 0 for one process), each test file in one of them (--dist loadfile: a module's
#         deployment is started once; --no-loadscope-reorder: handed out in the order
#         tests/conftest.py gives them, the longest files first). Without PYTEST_ARGS, SIDE_311 (tests/slurm: one throwaway
#         Slurm cluster per session) runs in a second, single-process 3.11 session beside the
#         others (log in $LOG_SIDE, printed at the end), and the main session skips it.
#   3.13  TESTS_313, in PYTEST_WORKERS_313 processes (default 2): unit, functional (the SOAP contract
#         in process), the layout checks, the unit files, and an integration slice: the
#         CLI end to end (test_cli.py), every SOAP operation (test_operations.py) and the workers
#         (test_workers.py) with real gunicorn and worker processes, which go through the store.
#         Not tests/store nor tests/fuzz (since 7 December 2026): on a 2-core machine where the
#         whole CI took 35 minutes they were a quarter of the 3.13 run's test time (11.4 and 1.6 of
#         51.3 minutes over its processes), and the 3.11 run has them on both databases;
#         TESTS_313="... tests/store tests/fuzz" runs them. A test that runs on both
#         databases runs on BACKENDS_313 alone (default sqlite: WMPROXY_TEST_BACKENDS, tests/conftest.py;
#         the 3.11 run has every PostgreSQL variant, and the database driver is not what differs
#         between the Python versions). Not on 3.13: the rest of integration/, slurm/ and
#         packaging/test_wheel.py (time: on a machine 2.6 times slower per request than usual, the
#         whole run with PostgreSQL on 3.13 as well took 28.5 minutes, 5 December 2026).
# As root the integration tests run the service and the worker as a throwaway service user, who
# cannot reach an interpreter under /root/.pyenv: a copy of the 3.13 interpreter and its standard
# library (no site-packages) is kept in SHARED_PY313 and named by WMPROXY_TEST_SYSTEM_PYTHON, with
# LD_LIBRARY_PATH for its libpython (jobs still run /usr/bin/python3's job wrapper).
# The suite mostly waits for processes it started (one process used about 1.1 of the 2 cores), so
# the three sessions run at once: in one clean-clone run (4 December 2026) one process per session,
# the 3.13 run and then Slurm after it took 15:44 in all, and 3 pytest-xdist processes brought the
# main session from 12:57 to 6:26. Every test waits for conditions with generous deadlines, never
# for a speed, so the extra load changes no outcome. The 3.13 output goes to $LOG_313 and is
# printed at the end. Under CI=true a missing Python 3.13 fails; elsewhere it is skipped with a
# warning, as it is with SKIP_313=1 (e.g. `make test SKIP_313=1 PYTEST_ARGS=tests/unit`).
set -uo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
LOG_313=${LOG_313:-test-3.13.log}
TESTS_313=${TESTS_313:-tests/unit tests/functional tests/test_layout.py tests/test_migration_template.py tests/packaging/test_units.py tests/integration/test_cli.py tests/integration/test_operations.py tests/integration/test_workers.py}
SHARED_PY313=${SHARED_PY313:-/opt/wmproxy-ci/python3.13}
PYTHON313=${PYTHON313:-$(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1)}
PYTHON313=${PYTHON313:-$(command -v python3.13 || true)}

run_313=""
env_313=()
WORKERS=${PYTEST_WORKERS:-3}
WORKERS_313=${PYTEST_WORKERS_313:-2}
BACKENDS_313=${BACKENDS_313-sqlite}
SIDE_311=${SIDE_311-tests/slurm}
LOG_SIDE=${LOG_SIDE:-test-3.11-side.log}
[[ -n "${PYTEST_ARGS:-}" ]] && SIDE_311=""
if [[ "${SKIP_313:-}" == "1" && "${CI:-}" != "true" ]]; then
    echo "warning: SKIP_313=1: only the 3.11 run" >&2
elif [[ -n "$PYTHON313" && -x "$PYTHON313" ]]; then
    if ! "$MAKE" --no-print-directory venv PYTHON="$PYTHON313" VENV=.venv313; then
        echo "error: could not set up .venv313 with $PYTHON313" >&2
        exit 1
    fi
    env_313=()
    if [[ $(id -u) -eq 0 ]] && setpriv --reuid=nobody --regid=nogroup --clear-groups "$PYTHON313" -c pass 2>/dev/null; then
        env_313=(WMPROXY_TEST_SYSTEM_PYTHON="$PYTHON313")
    elif [[ $(id -u) -eq 0 ]]; then
        home=$(cd "$(dirname "$(readlink -f "$PYTHON313")")/.." && pwd)
        if [[ ! -x "$SHARED_PY313/bin/python3.13" || "$home/bin/python3.13" -nt "$SHARED_PY313/bin/python3.13" ]]; then
            rm -rf "$SHARED_PY313" && mkdir -p "$SHARED_PY313"
            (cd "$home" && tar --exclude='lib/python3.13/site-packages/*' --exclude='lib/python3.13/test' \
                 --exclude='*.pyc' -cf - bin/python3.13 lib/libpython3.13.so* lib/python3.13) | tar -xf - -C "$SHARED_PY313"
            chmod -R a+rX,go-w "$SHARED_PY313"
        fi
        env_313=(WMPROXY_TEST_SYSTEM_PYTHON="$SHARED_PY313/bin/python3.13"
                 LD_LIBRARY_PATH="$SHARED_PY313/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    fi
    run_313=1
elif [[ "${CI:-}" == "true" ]]; then
    echo "error: Python 3.13 not found (set PYTHON313=/path/to/python3.13); CI runs the suite on 3.11 and 3.13" >&2
    exit 1
else
    echo "warning: Python 3.13 not found (PYTHON313): only the 3.11 run" >&2
fi

# Byte-code compiled once, before the sessions start: where PYTHONDONTWRITEBYTECODE is set (as on
# the CI machines) no process writes it, and every one of the suite's process starts (services,
# workers, CLI and admin runs, spawn children) compiled the project from source again, about 4 %
# of the suite's CPU (py-spy of a 3.11 session, 5 December 2026). compileall writes it anyway;
# the service user's /usr/bin/python3 of the same minor version reads the same files.
.venv/bin/python -m compileall -q -j 0 wmproxy tests > /dev/null
# pytest keeps a test module's assertion-rewritten code in __pycache__ only where byte-code may be
# written: with PYTHONDONTWRITEBYTECODE each pytest process (three 3.11 workers, two 3.13 ones)
# rewrote every test module at collection again, 31 s of CPU against 9 s with the kept code
# (`pytest --collect-only tests`, one process, 7 December 2026). The sessions below run without it.
unset PYTHONDONTWRITEBYTECODE
if [[ -n "$run_313" ]]; then .venv313/bin/python -m compileall -q -j 0 wmproxy tests > /dev/null; fi

rc_dir=$(mktemp -d)
trap 'rm -rf "$rc_dir"' EXIT
pids=()
side_ignore=()
for dir in $SIDE_311; do side_ignore+=("--ignore=$dir"); done
if [[ -n "$run_313" ]]; then
    # shellcheck disable=SC2086  # TESTS_313 is a list of paths
    (env "${env_313[@]}" WMPROXY_TEST_BACKENDS="$BACKENDS_313" .venv313/bin/pytest -q -p no:cacheprovider -n "$WORKERS_313" --dist loadfile --no-loadscope-reorder $TESTS_313 \
         > "$LOG_313" 2>&1; echo $? > "$rc_dir/313") &
    pids+=($!)
fi
if [[ -n "$SIDE_311" ]]; then
    # shellcheck disable=SC2086  # SIDE_311 is a list of paths
    (.venv/bin/pytest -q -p no:cacheprovider -p no:xdist $SIDE_311 > "$LOG_SIDE" 2>&1; echo $? > "$rc_dir/side") &
    pids+=($!)
fi

# shellcheck disable=SC2086  # PYTEST_ARGS are pytest's words
.venv/bin/pytest -n "$WORKERS" --dist loadfile --no-loadscope-reorder "${side_ignore[@]}" ${PYTEST_ARGS:-}
rc_311=$?

rc_313=0
rc_side=0
for pid in "${pids[@]}"; do wait "$pid"; done
if [[ -n "$run_313" ]]; then
    rc_313=$(cat "$rc_dir/313" 2>/dev/null || echo 1)
    echo "=== Python 3.13 run ($TESTS_313): exit status $rc_313, full log in $LOG_313 ==="
    if ((rc_313)); then cat "$LOG_313"; else tail -n 5 "$LOG_313"; fi
fi
if [[ -n "$SIDE_311" ]]; then
    rc_side=$(cat "$rc_dir/side" 2>/dev/null || echo 1)
    echo "=== Python 3.11 side run ($SIDE_311): exit status $rc_side, full log in $LOG_SIDE ==="
    if ((rc_side)); then cat "$LOG_SIDE"; else tail -n 40 "$LOG_SIDE"; fi
fi
echo "=== Python 3.11: exit status $rc_311 (side run $rc_side); Python 3.13: exit status $rc_313 ==="
((rc_311 == 0 && rc_side == 0 && rc_313 == 0))
