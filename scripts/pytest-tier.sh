#!/usr/bin/env bash
# Run one pytest tier (unit|integration|e2e) or, with "", all of them.
# pytest exits 5 when a selection holds no test; that is not a failure of the suite.
set -uo pipefail
tier="$1"; shift || true
args=()
[[ -n "$tier" ]] && args+=(-m "$tier")
.venv/bin/python -m pytest "${args[@]}" "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "no tests selected for tier '${tier:-all}'"; exit 0; fi
exit $rc
