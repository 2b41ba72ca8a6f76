#!/usr/bin/env bash
# A separate, version-keyed Python environment with the pinned Ray: the node agent runs pod
# containers with it (there is no image to pull), so it must not share rayop's own venv.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/versions.env"
env_dir="${RAYOP_RAY_ENV:-${RAYOP_CACHE_DIR:-$HOME/.cache/rayop}/ray/$RAYOP_RAY_VERSION}"
if [[ -x "$env_dir/bin/ray" && -f "$env_dir/.complete" ]]; then echo "ray env present in $env_dir"; exit 0; fi
echo ">> creating Ray $RAYOP_RAY_VERSION environment in $env_dir"
rm -rf "$env_dir"; mkdir -p "$(dirname "$env_dir")"
python3 -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q --upgrade pip
"$env_dir/bin/python" -m pip install -q "ray[default,serve]==$RAYOP_RAY_VERSION"
touch "$env_dir/.complete"
echo "ray env ready in $env_dir"
