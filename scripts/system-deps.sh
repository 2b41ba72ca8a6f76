#!/usr/bin/env bash
# Debian packages the local node agent and the tests (browser tests included) need. Installed only when missing.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v unshare >/dev/null || need+=(util-linux)
# The web view's browser tests drive Debian's Chromium (Playwright never downloads a browser here).
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need+=(chromium-driver)
# GCS fault tolerance with Redis: the chaos campaign (bench/chaos.py) runs Debian's redis-server as a pod.
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then echo "missing system packages: ${need[*]} (run as root or install them)" >&2; exit 1; fi
  echo ">> apt-get install ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
