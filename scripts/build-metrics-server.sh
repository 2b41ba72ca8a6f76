#!/usr/bin/env bash
# Build metrics-server (sigs.k8s.io/metrics-server, the version pinned in versions.env) from the Go module
# proxy into a version-keyed cache folder. Idempotent: a present binary is never rebuilt.
#
# `go install module/cmd@version` builds with the module's own go.mod and go.sum as the main module, so
# the dependency versions are exactly the ones upstream releases with. The build runs at low priority:
# it takes minutes of both cores and must not starve what else runs on the machine.
set -euo pipefail

VERSIONS="$(dirname "$0")/../versions.env"
MS_VERSION="${RAYOP_METRICS_SERVER_VERSION:-$(sed -n 's/^RAYOP_METRICS_SERVER_VERSION=//p' "$VERSIONS")}"
CACHE_ROOT="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}"
OUT="$CACHE_ROOT/metrics-server/$MS_VERSION"
if [[ -x "$OUT/metrics-server" ]]; then echo "metrics-server present in $OUT"; exit 0; fi

# shellcheck source=scripts/go-env.sh
source "$(dirname "$0")/go-env.sh"
export GOFLAGS=

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rayop-ms-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
# The version the binary reports (`metrics-server --version`, its User-Agent), as upstream's Makefile sets it.
LD="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$MS_VERSION"
echo ">> building metrics-server $MS_VERSION"
t0=$(date +%s)
if ! GOBIN="$WORK" nice -n 10 go install -trimpath -ldflags "$LD" "sigs.k8s.io/metrics-server/cmd/metrics-server@$MS_VERSION"; then
  echo "error: building metrics-server $MS_VERSION failed; the compiler output is above" >&2
  exit 1
fi
mv "$WORK/metrics-server" "$OUT/metrics-server.tmp"
mv "$OUT/metrics-server.tmp" "$OUT/metrics-server"
echo "   metrics-server built in $(( $(date +%s) - t0 )) s; ready in $OUT"
