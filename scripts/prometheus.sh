#!/usr/bin/env bash
# Installs Prometheus (Debian's package: `prometheus` and `promtool`) for `make lint`
# (promtool test rules deploy/prometheus/) and the dashboard test, which starts its own
# server on a free port (tests/ops/test_dashboard.py). Idempotent: a no-op when promtool
# is there. The package's own services stay off: nothing here uses them.
set -euo pipefail

say() { echo "prometheus: $*" >&2; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { say "ERROR: promtool is missing and installing it needs root"; exit 1; }
exec 9>/run/lock/users-v1-prometheus.lock
flock -w 300 9 || { say "ERROR: another install holds /run/lock/users-v1-prometheus.lock"; exit 1; }
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && exit 0
say "installing Prometheus"
apt-get update -q 9>&- >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus 9>&- >/dev/null
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus prometheus-node-exporter 9>&- >/dev/null 2>&1 || true
fi
for packaged in prometheus prometheus-node-exporter; do  # started by an init script
  invoke-rc.d "$packaged" stop 9>&- >/dev/null 2>&1 || true
done
say "$(promtool --version 2>&1 | head -n 1)"
