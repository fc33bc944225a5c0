#!/usr/bin/env bash
# The wmproxy demo: a throwaway PKI, the service (gunicorn over TLS) and a worker on a
# SQLite database, and a real job submitted, followed and retrieved with the CLI. While the
# job runs, the demo inspects it (wmproxy inspect: ps and tail run inside the job, as its
# account, through the job's agent; docs/inspection.md); the job waits for that.
# Fails (non-zero) if any step fails; stops every process it started.
#
# --long (make demo DEMO_ARGS=--long): a job that outlives its delegated proxy. A real
# myproxy-server (Debian package myproxy-server) holds the user's renewable credential, the
# proxy is delegated for 75 s and the renewal worker (wmproxy-renewal) renews it 65 s before
# its end; the job prints the end of its X509_USER_PROXY every few seconds and ends Done.
#
# --slurm (make demo DEMO_ARGS=--slurm, as root): a throwaway Slurm cluster (munged, slurmctld,
# slurmd on this host, its own ports; tests/peers/slurm.py) behind a Slurm CE in the catalogue;
# the job asks for that CE, is sbatched as the mapped account and shows its Slurm job id. The
# cluster is stopped at the end.
#
# Run as root, the demo maps the user to a throwaway local account (wmpdemo, removed at the
# end) and the job runs as that account; run as another user, it runs with [mapping] mode =
# none (jobs as that user: the service warns about what that exposes).
set -euo pipefail

LONG=0
SLURM=0
for arg in "$@"; do
    case "$arg" in
        --long) LONG=1 ;;
        --slurm) SLURM=1 ;;
        *) echo "usage: $0 [--long] [--slurm]" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
STATE=${DEMO_STATE:-$REPO/demo-state}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$STATE"
mkdir -p "$STATE"
chmod 0711 "$STATE"  # a mapped account traverses it to its work dir; the files in it stay private
DEMO_ACCOUNT=""
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "${MYPROXY_PID:-}" ]]; then kill -TERM "$MYPROXY_PID" 2>/dev/null || true; fi
    if [[ $SLURM == 1 && -d "$STATE/slurm" ]]; then "$BIN/python" -m tests.peers.slurm stop "$STATE/slurm" || true; fi
    if [[ -n "$DEMO_ACCOUNT" ]]; then
        pkill -KILL -u "$DEMO_ACCOUNT" 2>/dev/null || true
        userdel "$DEMO_ACCOUNT" 2>/dev/null || true
        groupdel "$DEMO_ACCOUNT" 2>/dev/null || true
    fi
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

if [[ $(id -u) -eq 0 ]]; then
    step "Mapping: the grid user runs jobs as the throwaway local account wmpdemo (grid-mapfile)"
    DEMO_ACCOUNT=wmpdemo
    userdel "$DEMO_ACCOUNT" 2>/dev/null || true
    groupdel "$DEMO_ACCOUNT" 2>/dev/null || true
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$DEMO_ACCOUNT"
    printf '"%s" %s\n' "$USER_DN" "$DEMO_ACCOUNT" > "$STATE/grid-mapfile"
    cat "$STATE/grid-mapfile"
    printf '[mapping]\nmode = gridmap\ngridmap_file = %s\n' "$STATE/grid-mapfile" >> "$STATE/wmproxy.conf"
else
    printf '[mapping]\nmode = none\n' >> "$STATE/wmproxy.conf"
fi

if [[ $LONG == 1 ]]; then
    step "myproxy-server on 127.0.0.1 with the user's credential, renewable by the service's DN"
    [[ -x /usr/sbin/myproxy-server ]] || { echo "--long needs Debian's myproxy-server and myproxy packages" >&2; exit 1; }
    # tests/peers/myproxy_server.py writes the server configuration (authorized_renewers =
    # the service DN) and runs the real myproxy-init -d -n -x -R '<service DN>' as the user.
    "$BIN/python" - "$STATE" > "$STATE/myproxy.env" <<'PY'
import sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from tests.peers.myproxy_server import start_myproxy_server, store_renewable_credential
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.pki import CertificateAuthority

state = Path(sys.argv[1])
pki = state / "pki"
ca_cert = next(x509.load_pem_x509_certificate(p.read_bytes()) for p in (pki / "certificates").glob("*.0"))
ca = CertificateAuthority(ca_cert, load_pem_private_key((pki / "ca" / "ca-key.pem").read_bytes(), None),
                          pki / "certificates")
host_dn = slash_dn(load_pem_chain((pki / "host" / "hostcert.pem").read_bytes())[0].subject)
server = start_myproxy_server(state / "myproxy", ca=ca, ca_dir=pki / "certificates", authorized_renewers=[host_dn])
store_renewable_credential(server, pki / "user" / "x509up", host_dn, lifetime_hours=2, proxy_lifetime_hours=1)
print(f"MYPROXY_PORT={server.port}\nMYPROXY_PID={server.pid}\nHOST_DN='{host_dn}'")
PY
    # shellcheck disable=SC1091
    source "$STATE/myproxy.env"
    echo "myproxy-server on localhost:$MYPROXY_PORT (pid $MYPROXY_PID); authorized renewer: $HOST_DN"
    grep -v '^#' "$STATE/myproxy/myproxy-server.config"
    cat >> "$STATE/wmproxy.conf" <<CONF
[renewal]
myproxy_allowed_servers = localhost:$MYPROXY_PORT
cycle = 1
threshold = 65
lifetime = 240
timeout = 5
CONF
    export WMPROXY_SECURITY_MIN_PROXY_LIFETIME=20
fi
if [[ $SLURM == 1 ]]; then
    step "A throwaway Slurm cluster (munged, slurmctld, slurmd) and a catalogue with one Slurm CE"
    [[ $(id -u) -eq 0 ]] || { echo "--slurm runs the Slurm daemons and sbatch as the mapped account: run it as root" >&2; exit 1; }
    mkdir -m 0755 "$STATE/slurm"
    "$BIN/python" -m tests.peers.slurm start "$STATE/slurm" > "$STATE/slurm.env"
    # shellcheck disable=SC1091
    source "$STATE/slurm.env"
    echo "SLURM_CONF=$SLURM_CONF"
    cat > "$STATE/ce-catalogue.ads" <<ADS
[ GlueCEUniqueID = "localhost:$PORT/wmproxy-local"; GlueCEStateStatus = "Production" ]
[ GlueCEUniqueID = "localhost:6817/slurm-debug"; WMProxyBackend = "slurm"; SlurmPartition = "debug";
  GlueCEStateStatus = "Production" ]
ADS
    cat "$STATE/ce-catalogue.ads"
    cat >> "$STATE/wmproxy.conf" <<CONF
[jobs]
ce_catalogue = $STATE/ce-catalogue.ads
[slurm]
conf = $SLURM_CONF
refresh_interval = 2
CONF
    sed -i 's/^poll_interval = 0.2$/poll_interval = 0.2\nbackend = local, slurm/' "$STATE/wmproxy.conf"
fi
export WMPROXY_CONFIG=$STATE/wmproxy.conf
export GLITE_WMS_WMPROXY_ENDPOINT=https://localhost:$PORT/glite_wms_wmproxy_server

step "Database through the Alembic migrations"
"$BIN/wmproxy-admin" init

step "Service (gunicorn, HTTPS on 127.0.0.1:$PORT, client certificates required) and worker"
"$BIN/gunicorn" -c deploy/gunicorn.conf.py wmproxy.soap.app:application > "$STATE/gunicorn.log" 2>&1 &
PIDS+=($!)
"$BIN/wmproxy-worker" --name demo-worker > "$STATE/worker.log" 2>&1 &
PIDS+=($!)
if [[ $LONG == 1 ]]; then
    "$BIN/wmproxy-renewal" --name demo-renewal > "$STATE/renewal.log" 2>&1 &
    PIDS+=($!)
fi
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
# lasts until the demo has inspected it (wmproxy inspect) and left a release file, 120 s at most
i=0
while [ ! -e release ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
SH
printf 'grid\nproxy\ndelegation\nsandbox\n' > "$JOB/data.txt"
cat > "$JOB/analyse.jdl" <<'JDL'
[
  Executable    = "analyse.sh";
  StdOutput     = "std.out";
  StdError      = "std.err";
  Environment   = { "GREETING='hello grid'" };
  InputSandbox  = { "analyse.sh", "data.txt" };
  OutputSandbox = { "std.out", "std.err", "sorted.txt" };
]
JDL
if [[ $LONG == 1 ]]; then
    cat > "$JOB/analyse.sh" <<'SH'
#!/bin/sh
# outlives the 75 s proxy it was started with; prints the end of the proxy it sees
for i in $(seq 1 18); do
    echo "$(date -u +%H:%M:%S) X509_USER_PROXY ends $(openssl x509 -noout -enddate -in "$X509_USER_PROXY" | cut -d= -f2)"
    sleep 5
done
echo "words in data.txt: $(wc -w < data.txt)"
SH
    cat > "$JOB/analyse.jdl" <<JDL
[
  Executable    = "analyse.sh";
  StdOutput     = "std.out";
  StdError      = "std.err";
  MyProxyServer = "localhost:$MYPROXY_PORT";
  InputSandbox  = { "analyse.sh", "data.txt" };
  OutputSandbox = { "std.out", "std.err" };
]
JDL
fi
if [[ $SLURM == 1 ]]; then
    cat > "$JOB/analyse.jdl" <<'JDL'
[
  Executable    = "analyse.sh";
  Arguments     = "slurm";
  StdOutput     = "std.out";
  StdError      = "std.err";
  InputSandbox  = { "analyse.sh", "data.txt" };
  OutputSandbox = { "std.out", "std.err", "sorted.txt" };
  Requirements  = RegExp("slurm", other.GlueCEUniqueID) && other.GlueCEStateFreeCPUs > 0;
]
JDL
    sed -i 's/^echo "greeting: \$GREETING"$/echo "Slurm job $SLURM_JOB_ID in partition $SLURM_JOB_PARTITION"/' "$JOB/analyse.sh"
fi
cat "$JOB/analyse.jdl"

if [[ $LONG == 1 ]]; then
    step "wmproxy delegate-proxy -d demo, from a 75 s proxy (the delegated proxy lives 75 s)"
    "$BIN/python" -c "
import sys
from wmproxy.security.pki import write_proxy
from wmproxy.security.proxy import load_credential
write_proxy(load_credential(sys.argv[1], sys.argv[2]), sys.argv[3], lifetime=75)
" "$USER_CERT" "$USER_KEY" "$STATE/short-proxy"
    X509_USER_PROXY=$STATE/short-proxy "$BIN/wmproxy" delegate-proxy -d demo
else
    step "wmproxy delegate-proxy -d demo"
    "$BIN/wmproxy" delegate-proxy -d demo
fi

step "wmproxy submit -d demo -o jobid.txt analyse.jdl"
START=$(date +%s.%N)
"$BIN/wmproxy" submit -d demo -o "$STATE/jobid.txt" "$JOB/analyse.jdl"
JOBID=$(tail -n 1 "$STATE/jobid.txt")

step "Following the job until it runs"
last=""
for _ in $(seq 1 600); do
    status=$("$BIN/wmproxy" status --json "$JOBID" | "$BIN/python" -c \
        'import json,sys; print(json.load(sys.stdin)["jobs"][0]["current_status"])')
    if [[ "$status" != "$last" ]]; then
        printf '%s  %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$status"
        last=$status
    fi
    case "$status" in Running*|Done*|Aborted*|Cancelled*|Cleared*) break ;; esac
    sleep 0.2
done
[[ "$last" == Running* ]] || { echo "the job did not run: $last" >&2; exit 1; }

step "wmproxy inspect $JOBID -- ps -o pid,etime,rss,args  (run inside the running job, as its account)"
"$BIN/wmproxy" inspect "$JOBID" -- ps -o pid,etime,rss,args
step "wmproxy inspect $JOBID -- tail -n 5 std.out"
"$BIN/wmproxy" inspect "$JOBID" -- tail -n 5 std.out
if [[ $LONG == 0 ]]; then
    WORK_DIR=$STATE/work/$("$BIN/python" -c 'import sys; from wmproxy.domain import to_filename; print(to_filename(sys.argv[1]))' "$JOBID")
    touch "$WORK_DIR/release"  # the job may end now
fi

step "Following the job"
for _ in $(seq 1 600); do
    status=$("$BIN/wmproxy" status --json "$JOBID" | "$BIN/python" -c \
        'import json,sys; print(json.load(sys.stdin)["jobs"][0]["current_status"])')
    if [[ "$status" != "$last" ]]; then
        printf '%s  %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$status"
        last=$status
    fi
    case "$status" in Done*|Aborted*|Cancelled*|Cleared*) break ;; esac
    sleep 0.2
done
case "$last" in "Done (Success)") ;; *) echo "job did not succeed: $last" >&2; exit 1 ;; esac

step "wmproxy output --dir $STATE/output --nosubdir $JOBID"
"$BIN/wmproxy" output --dir "$STATE/output" --nosubdir "$JOBID"
END=$(date +%s.%N)

step "The job's stdout"
cat "$STATE/output/std.out"
grep -q "words in data.txt: 4" "$STATE/output/std.out"
[[ $LONG == 1 || $SLURM == 1 ]] || grep -q "greeting: hello grid" "$STATE/output/std.out" \
    || { echo "the job did not get its JDL Environment" >&2; exit 1; }
if [[ $SLURM == 1 ]]; then
    grep -q "Slurm job [0-9]* in partition debug" "$STATE/output/std.out" || { echo "the job did not run in Slurm" >&2; exit 1; }
fi
if [[ $LONG == 1 ]]; then
    step "The renewal worker's log"
    grep -E "renewing proxy|renewed proxy|failed|aborted" "$STATE/renewal.log" | cut -d' ' -f2- || true
    ends=$(grep -c "X509_USER_PROXY ends" "$STATE/output/std.out")
    distinct=$(grep "X509_USER_PROXY ends" "$STATE/output/std.out" | cut -d' ' -f4- | sort -u | wc -l)
    grep -q "renewed proxy demo of" "$STATE/renewal.log"
    [[ $ends -ge 10 && $distinct -ge 2 ]] || { echo "the job's proxy was not renewed" >&2; exit 1; }
    echo "the job ran past its first proxy's end and saw $distinct different proxy ends"
fi
"$BIN/python" -c "print(f'\nsubmit to output: {float($END) - float($START):.2f} s')"
echo "demo OK"
