#!/usr/bin/env bash
# Install rayop (its runtime dependencies only, as pinned in pyproject.toml) into a new virtual
# environment at PREFIX. The Dockerfile's build stage runs this, and tests/integration/test_image.py runs
# it into a clean folder, then `PREFIX/bin/rayop operator --help`, so the image recipe is tested here
# without a container engine.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:?usage: install-rayop.sh PREFIX}
python=${PYTHON:-python3}

# Build from a copy holding only what the package needs: setuptools writes build/ and *.egg-info next
# to the sources, which must not land in a checkout (or bloat the image's build context).
work=$(mktemp -d "${TMPDIR:-/tmp}/rayop-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$src/pyproject.toml" "$work/"
cp -r "$src/rayop" "$work/rayop"
find "$work/rayop" -name __pycache__ -prune -exec rm -rf {} +

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --upgrade pip
"$prefix/bin/python" -m pip install -q "$work"
# Bytecode now: at run time the root filesystem is read-only.
"$prefix/bin/python" -m compileall -q "$prefix/lib"
"$prefix/bin/rayop" --help >/dev/null
echo "rayop installed in $prefix"
