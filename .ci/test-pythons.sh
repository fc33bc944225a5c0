#!/usr/bin/env bash
# `make test`: the whole suite on Python 3.11 (.venv) and, at the same time, the 3.13 run (.venv313).
#
# What runs where (README "Python versions"):
#   3.11  every test (PYTEST_ARGS are passed on); without PYTEST_ARGS, SIDE_311 (tests/slurm and the two
#         MyProxy renewal modules) runs in a second 3.11 session after the 3.13 run, beside the main
#         3.11 session, which skips it (log in $LOG_SIDE, printed at the end)
#   3.13  TESTS_313: unit, functional (the SOAP contract in process), fuzz, store (SQLite and
#         PostgreSQL), the layout checks, the unit files, and an integration slice: the CLI end to
#         end (test_cli.py), every SOAP operation (test_operations.py) and the workers
#         (test_workers.py), each on SQLite and PostgreSQL with real gunicorn and worker processes.
#         Not on 3.13: the rest of integration/, slurm/ and packaging/test_wheel.py (time).
# As root the integration tests run the service and the worker as a throwaway service user, who
# cannot reach an interpreter under /root/.pyenv: a copy of the 3.13 interpreter and its standard
# library (no site-packages) is kept in SHARED_PY313 and named by WMPROXY_TEST_SYSTEM_PYTHON, with
# LD_LIBRARY_PATH for its libpython (jobs still run /usr/bin/python3's job wrapper).
# Both runs share the 2 cores; the 3.13 run is a fraction of the 3.11 one, so the two together stay
# within the CI budget (25 minutes). Its output goes to $LOG_313 and is printed at the end. Under
# CI=true a missing Python 3.13 fails; elsewhere it is skipped with a warning, as it is with
# SKIP_313=1 (e.g. `make test SKIP_313=1 PYTEST_ARGS=tests/unit`).
set -uo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
LOG_313=${LOG_313:-test-3.13.log}
TESTS_313=${TESTS_313:-tests/unit tests/functional tests/fuzz tests/store tests/test_layout.py tests/test_migration_template.py tests/packaging/test_units.py tests/integration/test_cli.py tests/integration/test_operations.py tests/integration/test_workers.py}
SHARED_PY313=${SHARED_PY313:-/opt/wmproxy-ci/python3.13}
PYTHON313=${PYTHON313:-$(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1)}
PYTHON313=${PYTHON313:-$(command -v python3.13 || true)}

run_313=""
env_313=()
# The full suite (no PYTEST_ARGS): SIDE_311's directories and files run in a second 3.11 session
# once the 3.13 run is done, beside the main 3.11 run (which skips them). The suite mostly waits for
# processes (load about 1.5 on the 2 cores), so this takes minutes off the wall time. What goes
# there balances the two: the main session took 23:34 and 3.13 + Slurm 13:57 (7:30 + 6:27) in one
# clean-clone run (3 December 2026); test_renewal.py and test_renewal_info.py (about 230 s, each
# with its own myproxy-server on a free port, as tests/slurm's renewal test has) move over.
SIDE_311=${SIDE_311-tests/slurm tests/integration/test_renewal.py tests/integration/test_renewal_info.py}
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

rc_dir=$(mktemp -d)
trap 'rm -rf "$rc_dir"' EXIT
pid_bg=""
side_ignore=()
for dir in $SIDE_311; do side_ignore+=("--ignore=$dir"); done
if [[ -n "$run_313" || -n "$SIDE_311" ]]; then
    (
        if [[ -n "$run_313" ]]; then
            # shellcheck disable=SC2086  # TESTS_313 is a list of paths
            env "${env_313[@]}" .venv313/bin/pytest -q -p no:cacheprovider $TESTS_313 > "$LOG_313" 2>&1
            echo $? > "$rc_dir/313"
        fi
        if [[ -n "$SIDE_311" ]]; then
            # shellcheck disable=SC2086  # SIDE_311 is a list of paths
            .venv/bin/pytest -q -p no:cacheprovider $SIDE_311 > "$LOG_SIDE" 2>&1
            echo $? > "$rc_dir/side"
        fi
    ) &
    pid_bg=$!
fi

# shellcheck disable=SC2086  # PYTEST_ARGS are pytest's words
.venv/bin/pytest "${side_ignore[@]}" ${PYTEST_ARGS:-}
rc_311=$?

rc_313=0
rc_side=0
if [[ -n "$pid_bg" ]]; then
    wait "$pid_bg"
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
fi
echo "=== Python 3.11: exit status $rc_311 (side run $rc_side); Python 3.13: exit status $rc_313 ==="
((rc_311 == 0 && rc_side == 0 && rc_313 == 0))
