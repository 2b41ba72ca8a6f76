#!/usr/bin/env bash
# Copy the Gateway API's CRDs (standard channel: Gateway, HTTPRoute and the rest, plus the
# ValidatingAdmissionPolicy that guards upgrades) out of the Go module sigs.k8s.io/gateway-api, the version
# pinned in versions.env, into a version-keyed cache folder. The local plane installs them for the
# RayService incremental upgrade, as envtest users load them from the same module. Idempotent: a complete
# folder is never fetched again. Nothing is built.
set -euo pipefail

VERSIONS="$(dirname "$0")/../versions.env"
GW_VERSION="${RAYOP_GATEWAY_API_VERSION:-$(sed -n 's/^RAYOP_GATEWAY_API_VERSION=//p' "$VERSIONS")}"
CACHE_ROOT="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}"
OUT="$CACHE_ROOT/gateway-api/$GW_VERSION/standard"
MODULE=sigs.k8s.io/gateway-api

if [[ -f "$OUT/.complete" ]]; then echo "Gateway API $GW_VERSION CRDs present in $OUT"; exit 0; fi

# shellcheck source=scripts/go-env.sh
source "$(dirname "$0")/go-env.sh"
export GOFLAGS=

echo ">> downloading $MODULE@$GW_VERSION"
DIR=$(go mod download -json "$MODULE@$GW_VERSION" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "Dir" not in d:
    sys.exit("error: cannot fetch the Gateway API module: " + d.get("Error", "no directory in the answer"))
print(d["Dir"])')

SRC="$DIR/config/crd/standard"
if ! ls "$SRC"/*.yaml >/dev/null 2>&1; then
  echo "error: $MODULE@$GW_VERSION has no CRDs in config/crd/standard" >&2
  exit 1
fi
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
cp "$SRC"/*.yaml "$OUT.tmp/"
chmod u+w "$OUT.tmp"/*.yaml
touch "$OUT.tmp/.complete"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "Gateway API $GW_VERSION CRDs ready in $OUT ($(ls "$OUT"/*.yaml | wc -l) files)"
