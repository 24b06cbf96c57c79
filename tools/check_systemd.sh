#!/usr/bin/env bash
# Checks systemd/nephrod.service with `systemd-analyze verify` (installing systemd when the
# machine lacks it) and prints its `systemd-analyze security` exposure score.
#   bash tools/check_systemd.sh [NEPHROD_BINARY]   (default: target/debug/nephrod)
# verify needs ExecStart's binary to exist: the unit is checked as a copy whose ExecStart
# points at the built binary; every other line is the shipped unit's.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/nephrod}")
if ! command -v systemd-analyze >/dev/null; then
  echo "installing systemd (for systemd-analyze)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq systemd >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/bin/nephrod |ExecStart=$bin |" systemd/nephrod.service > "$work/nephrod.service"
grep -q "^ExecStart=$bin serve" "$work/nephrod.service"
systemd-analyze verify "$work/nephrod.service"
echo "systemd-analyze verify: nephrod.service OK"
systemd-analyze security --offline=yes "$work/nephrod.service" 2>/dev/null | tail -n 1 || true
