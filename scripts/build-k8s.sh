#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy
# into a version-keyed cache folder. Idempotent: a complete folder is never rebuilt.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 through
# replace directives, which Go ignores in a dependency, so the wrapper re-points each
# staging module at its published v0.<minor>.<patch> tag.
set -euo pipefail

K8S_VERSION="${RAYOP_K8S_VERSION:-$(sed -n "s/^RAYOP_K8S_VERSION=//p" "$(dirname "$0")/../versions.env")}"
CACHE_ROOT="${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}"
OUT="$CACHE_ROOT/k8s/$K8S_VERSION"
BINS=(kube-apiserver kube-controller-manager kubectl etcd)

complete() { for b in "${BINS[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done; }
if complete; then echo "k8s binaries present in $OUT"; exit 0; fi

VERSIONS="$(dirname "$0")/../versions.env"
# shellcheck source=scripts/go-env.sh
source "$(dirname "$0")/go-env.sh"
export GOFLAGS=-mod=mod

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rayop-k8s-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/k8s" "$WORK/etcd"
SV="v0.${K8S_VERSION#v1.}"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

echo ">> resolving k8s.io/kubernetes@$K8S_VERSION"
cd "$WORK/k8s"
go mod init local.invalid/rayop-k8s-testbin >/dev/null 2>&1
KGOMOD=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "GoMod" not in d:
    sys.exit("error: cannot fetch k8s.io/kubernetes: " + d.get("Error", "no go.mod in the answer"))
print(d["GoMod"])')
go mod edit -go="$(awk '$1=="go"{print $2;exit}' "$KGOMOD")"
GODEBUG_LINE=$(awk '$1=="godebug"{print $2;exit}' "$KGOMOD")
if [[ -n "$GODEBUG_LINE" && "$GODEBUG_LINE" != "(" ]]; then go mod edit -godebug="$GODEBUG_LINE"; fi
for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*#\1#p' "$KGOMOD"); do
  go mod edit -replace="$m=$m@$SV"
done
go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" \
  -tool=k8s.io/kubernetes/cmd/kube-apiserver \
  -tool=k8s.io/kubernetes/cmd/kube-controller-manager \
  -tool=k8s.io/kubernetes/cmd/kubectl
go mod tidy
LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD="$LD -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
done
for b in kube-apiserver kube-controller-manager kubectl; do
  [[ -x "$OUT/$b" ]] && continue
  echo ">> building $b ($K8S_VERSION)"
  t0=$(date +%s)
  # shellcheck disable=SC2086 # extra flags are word-split on purpose
  if ! go build -trimpath ${RAYOP_GO_BUILD_FLAGS:-} -ldflags "$LD" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b"; then
    rm -f "$OUT/$b.tmp"
    echo "error: building $b ($K8S_VERSION) failed; the compiler output is above" >&2
    exit 1
  fi
  mv "$OUT/$b.tmp" "$OUT/$b"
  echo "   $b built in $(( $(date +%s) - t0 )) s"
done

if [[ ! -x "$OUT/etcd" ]]; then
  ETCD_VERSION=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2;exit}' "$KGOMOD")
  echo ">> building etcd $ETCD_VERSION"
  cd "$WORK/etcd"
  go mod init local.invalid/rayop-etcd-testbin >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
echo "k8s binaries ready in $OUT"
