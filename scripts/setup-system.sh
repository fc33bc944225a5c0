#!/usr/bin/env bash
# Install and start what the test suite needs beyond Python packages:
#   - Debian grid tools used as real peers (grid-proxy-info, myproxy, voms-proxy-fake, htcp...)
#   - a running PostgreSQL server (the suite creates and drops its own databases)
#   - systemd (systemd-analyze verifies the units in deploy/; nothing is started)
#   - Slurm (slurm-wlm: slurmctld, slurmd, client commands) and munge; nothing is started
#     here: the tests start a throwaway cluster of their own (tests/peers/slurm.py)
#   - a VOMS server (voms-server, voms-mysql-plugin) and the mysql client (mariadb-client);
#     nothing is started or configured here: tests/peers/voms_server.py runs its own voms on a
#     database of its own in the MariaDB server this machine kind already runs (127.0.0.1:3306,
#     root without password), which this script neither installs nor starts
# Runs only what is missing. Needs root for apt-get; without root it only reports.
set -euo pipefail

PACKAGES=(python3 util-linux openssl postgresql globus-proxy-utils myproxy myproxy-server voms-clients gridsite-clients gsoap libgsoap-dev libssl-dev g++ make
          slurm-wlm munge systemd strace
          voms-server voms-mysql-plugin mariadb-client
          chromium chromium-driver libnss3-tools)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing: ${missing[*]}"
        # apt's chatter (debconf notes) is shown only when it fails.
        if ! log=$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive \
                   apt-get install -y -qq --no-install-recommends "${missing[@]}" 2>&1); then
            echo "$log" >&2
            exit 1
        fi
    else
        echo "warning: missing Debian packages (run as root to install): ${missing[*]}" >&2
    fi
fi

# PostgreSQL: start the cluster if nothing answers on 127.0.0.1:5432.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if [[ $(id -u) -eq 0 ]]; then
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        if [[ -n "$version" ]]; then
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        fi
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
fi
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    # The suite connects as postgres over TCP without a password (trust on loopback, as on
    # this machine kind); make sure such a login works.
    if ! psql -h 127.0.0.1 -U postgres -Atc 'select 1' >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        hba=$(su postgres -c "psql -Atc 'show hba_file'")
        sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
        su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
    fi
    echo "PostgreSQL is up on 127.0.0.1:5432"
else
    echo "warning: PostgreSQL is not running on 127.0.0.1:5432" >&2
fi
