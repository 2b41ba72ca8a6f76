#!/usr/bin/env bash
# Run a command confined to N CPUs' worth of time (a CFS quota on a new cgroup), to see how tests behave on a
# slower or busier host than this one: scripts/with-cpus.sh 1.2 .venv/bin/python -m pytest tests/e2e/...
# Every process the command starts (planes, node agents, Ray) stays in the cgroup. Needs root.
set -euo pipefail
cpus="$1"; shift
period=100000
quota=$(awk -v c="$cpus" -v p="$period" 'BEGIN { printf "%d", c * p }')
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  cg="/sys/fs/cgroup/rayop-cpus-$$"
  mkdir "$cg"; echo "$quota $period" > "$cg/cpu.max"
else
  cg="/sys/fs/cgroup/cpu/rayop-cpus-$$"
  mkdir "$cg"; echo "$period" > "$cg/cpu.cfs_period_us"; echo "$quota" > "$cg/cpu.cfs_quota_us"
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' _ "$cg" "$@"
