#!/usr/bin/env bash
# Vendor the web view's one JavaScript library, uPlot, at the version pinned in versions.env, into
# rayop/ui/static/vendor/. The files are committed: the view needs nothing from the network at run time.
# Re-run after changing RAYOP_UPLOT_VERSION; the command it runs is
#   npm install --no-audit --no-fund --ignore-scripts uplot@$RAYOP_UPLOT_VERSION
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/versions.env"
dest="$here/rayop/ui/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts "uplot@$RAYOP_UPLOT_VERSION" >/dev/null
pkg="$tmp/node_modules/uplot"
got=$(node -p "require('$pkg/package.json').version")
[[ "$got" == "$RAYOP_UPLOT_VERSION" ]] || { echo "npm gave uplot $got, wanted $RAYOP_UPLOT_VERSION" >&2; exit 1; }
mkdir -p "$dest"
cp "$pkg/dist/uPlot.iife.min.js" "$pkg/dist/uPlot.min.css" "$dest/"
cp "$pkg/LICENSE" "$dest/uPlot.LICENSE"
{
  echo "uplot $RAYOP_UPLOT_VERSION from the npm registry (npm install uplot@$RAYOP_UPLOT_VERSION); MIT, see uPlot.LICENSE"
  echo "integrity $(node -p "require('$tmp/package-lock.json').packages['node_modules/uplot'].integrity")"
  (cd "$dest" && sha256sum uPlot.iife.min.js uPlot.min.css)
} > "$dest/VERSION"
echo "vendored uplot $RAYOP_UPLOT_VERSION into $dest"
