#!/usr/bin/env bash
# The wmproxy demo: a throwaway PKI, the service (gunicorn over TLS) and a worker on a
# SQLite database, and a real job submitted, followed and retrieved with the CLI.
# Fails (non-zero) if any step fails; stops every process it started.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
STATE=${DEMO_STATE:-$REPO/demo-state}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$STATE"
mkdir -p "$STATE"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        echo "demo FAILED (exit $rc); logs in $STATE/*.log" >&2
        tail -n 20 "$STATE"/*.log >&2 2>/dev/null || true
    fi
    exit $rc
}
trap cleanup EXIT

step "Throwaway grid PKI (CA dir with CRL, host certificate, user, RFC 3820 proxy)"
"$BIN/python" -m wmproxy.security.pki "$STATE/pki" > "$STATE/pki.env"
# shellcheck disable=SC1091
source "$STATE/pki.env"
export X509_CERT_DIR X509_USER_PROXY
echo "user: $USER_DN"
ls "$X509_CERT_DIR"

PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$STATE/wmproxy.conf" <<CONF
[database]
url = sqlite:///$STATE/wmproxy.db
[security]
ca_dir = $X509_CERT_DIR
host_cert = $HOST_CERT
host_key = $HOST_KEY
store_key_file = $STATE/store.key
[service]
host = localhost
port = $PORT
bind = 127.0.0.1:$PORT
[sandbox]
root = $STATE/sandbox
[execution]
work_dir = $STATE/work
poll_interval = 0.2
CONF
export WMPROXY_CONFIG=$STATE/wmproxy.conf
export GLITE_WMS_WMPROXY_ENDPOINT=https://localhost:$PORT/glite_wms_wmproxy_server

step "Database through the Alembic migrations"
"$BIN/wmproxy-admin" init

step "Service (gunicorn, HTTPS on 127.0.0.1:$PORT, client certificates required) and worker"
"$BIN/gunicorn" -c deploy/gunicorn.conf.py wmproxy.soap.app:application > "$STATE/gunicorn.log" 2>&1 &
PIDS+=($!)
"$BIN/wmproxy-worker" --name demo-worker > "$STATE/worker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    "$BIN/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done
echo "endpoint: $GLITE_WMS_WMPROXY_ENDPOINT"

step "A job: a shell script and a data file in the input sandbox"
JOB=$STATE/job
mkdir -p "$JOB"
cat > "$JOB/analyse.sh" <<'SH'
#!/bin/sh
echo "Hello from $(hostname) running job $GLITE_WMS_JOBID"
echo "proxy: $X509_USER_PROXY"
echo "words in data.txt: $(wc -w < data.txt)"
sort data.txt > sorted.txt
echo "greeting: $GREETING"
SH
printf 'grid\nproxy\ndelegation\nsandbox\n' > "$JOB/data.txt"
cat > "$JOB/analyse.jdl" <<'JDL'
[
  Executable    = "analyse.sh";
  StdOutput     = "std.out";
  StdError      = "std.err";
  Environment   = { "GREETING=hello grid" };
  InputSandbox  = { "analyse.sh", "data.txt" };
  OutputSandbox = { "std.out", "std.err", "sorted.txt" };
]
JDL
cat "$JOB/analyse.jdl"

step "wmproxy delegate-proxy -d demo"
"$BIN/wmproxy" delegate-proxy -d demo

step "wmproxy submit -d demo -o jobid.txt analyse.jdl"
START=$(date +%s.%N)
"$BIN/wmproxy" submit -d demo -o "$STATE/jobid.txt" "$JOB/analyse.jdl"
JOBID=$(tail -n 1 "$STATE/jobid.txt")

step "Following the job"
last=""
for _ in $(seq 1 600); do
    status=$("$BIN/wmproxy" status --json "$JOBID" | "$BIN/python" -c \
        'import json,sys; print(next(iter(json.load(sys.stdin).values()))["Current Status"])')
    if [[ "$status" != "$last" ]]; then
        printf '%s  %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$status"
        last=$status
    fi
    case "$status" in Done*|Aborted*|Cancelled*|Cleared*) break ;; esac
    sleep 0.2
done
case "$last" in "Done (Success)") ;; *) echo "job did not succeed: $last" >&2; exit 1 ;; esac

step "wmproxy output --dir $STATE/output $JOBID"
"$BIN/wmproxy" output --dir "$STATE/output" "$JOBID"
END=$(date +%s.%N)

step "The job's stdout"
cat "$STATE/output/std.out"
grep -q "words in data.txt: 4" "$STATE/output/std.out"
"$BIN/python" -c "print(f'\nsubmit to output: {float($END) - float($START):.2f} s')"
echo "demo OK"
