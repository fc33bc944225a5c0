#!/usr/bin/env bash
# Run the whole test suite N times in a row under CPU pressure, stopping at the first failure.
#
#   bash scripts/stress-suite.sh [RUNS] [STRESS_WORKERS]      (defaults: 5 runs, stress --cpu 4)
#
# The load is Debian's `stress --cpu W` (W busy-looping processes; on 2 cores, load 4 + the
# suite's own), started before the first run and stopped when the script ends. Each run is
# `make test` (lint, then pytest) with CI=true, so a missing peer fails instead of skipping.
# Logs: stress-logs/run-<i>.log, the service and worker logs of every integration deployment in
# stress-logs/run-<i>-services/ (WMPROXY_TEST_KEEP_LOGS), and stress-logs/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
WORKERS=${2:-4}
command -v stress >/dev/null || apt-get install -y -q stress >/dev/null
mkdir -p stress-logs
stress --cpu "$WORKERS" >/dev/null 2>&1 &
STRESS=$!
trap 'kill "$STRESS" 2>/dev/null; pkill -P "$STRESS" 2>/dev/null || true' EXIT
summary=stress-logs/summary.txt
echo "stress --cpu $WORKERS on $(nproc) cores; $RUNS runs of CI=true make test; $(git rev-parse --short HEAD)" >"$summary"
for i in $(seq 1 "$RUNS"); do
    start=$(date -u +%FT%TZ)
    mkdir -p "stress-logs/run-$i-services"
    if WMPROXY_TEST_KEEP_LOGS="$PWD/stress-logs/run-$i-services" CI=true make test PYTEST_ARGS="${PYTEST_ARGS:---durations=25}" >"stress-logs/run-$i.log" 2>&1; then
        result=passed
    else
        result=FAILED
    fi
    echo "run $i $result: $start .. $(date -u +%FT%TZ); $(grep -E '(passed|failed|error)' "stress-logs/run-$i.log" | tail -1); load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$summary"
    [ "$result" = passed ] || { cat "$summary"; exit 1; }
done
cat "$summary"
