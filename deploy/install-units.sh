#!/bin/sh
# Install the wmproxy systemd units for the virtualenv the wheel is installed in.
#   deploy/install-units.sh [WMPROXY_VENV [UNIT_DIR]]
# WMPROXY_VENV: the virtualenv (default /usr/lib/wmproxy/venv, the path written in the units);
# UNIT_DIR: where the units go (default /etc/systemd/system). systemd takes no variable in a
# program's path, so the path is written into the copies. Then: systemctl daemon-reload.
set -eu
venv=${1:-/usr/lib/wmproxy/venv}
unit_dir=${2:-/etc/systemd/system}
case $venv in
    /*) ;;
    *) echo "install-units.sh: WMPROXY_VENV must be an absolute path: $venv" >&2; exit 2 ;;
esac
venv=${venv%/}  # a trailing slash would give venv//bin in the units
case $venv in
    *[!A-Za-z0-9/._+-]*)  # written into the units' ExecStart= lines through sed: no space, quote, | or &
        echo "install-units.sh: WMPROXY_VENV may hold only letters, digits and / . _ + -: $venv" >&2; exit 2 ;;
esac
for program in wmproxy-server wmproxy-worker wmproxy-renewal wmproxy-metrics wmproxy-admin; do
    if [ ! -x "$venv/bin/$program" ]; then
        echo "install-units.sh: $venv/bin/$program missing: pip install 'wmproxy[server]' into $venv first" >&2
        exit 1
    fi
done
here=$(dirname "$0")
mkdir -p "$unit_dir"
for unit in wmproxy.service wmproxy-worker.service wmproxy-renewal.service wmproxy-metrics.service; do
    sed "s|/usr/lib/wmproxy/venv/|$venv/|g" "$here/$unit" > "$unit_dir/$unit.tmp"
    chmod 0644 "$unit_dir/$unit.tmp"
    mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
done
echo "installed wmproxy units for $venv in $unit_dir"
