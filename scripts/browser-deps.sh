#!/usr/bin/env bash
# What the browser tests need besides Debian's Chromium (scripts/system-deps.sh) and Python's Playwright
# (pyproject.toml): axe-core from npm, at the version pinned in versions.env, in the shared cache. The tests
# inject its axe.min.js into each page. Playwright never downloads a browser here.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/versions.env"
dir="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}/npm/axe-core-$RAYOP_AXE_CORE_VERSION"
if [[ -f "$dir/.complete" ]]; then echo "axe-core present in $dir"; exit 0; fi
command -v npm >/dev/null || { echo "npm is needed for the browser tests' axe-core" >&2; exit 1; }
rm -rf "$dir"; mkdir -p "$dir"
(cd "$dir" && npm init -y >/dev/null && npm install --no-audit --no-fund --ignore-scripts "axe-core@$RAYOP_AXE_CORE_VERSION" >/dev/null)
test -f "$dir/node_modules/axe-core/axe.min.js"
touch "$dir/.complete"
echo "axe-core $RAYOP_AXE_CORE_VERSION ready in $dir"
