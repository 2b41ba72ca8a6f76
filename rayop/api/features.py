"""Feature gates, named and defaulted as KubeRay v1.7 does (`ray-operator/pkg/features/features.go`;
docs/compatibility.md#operator).

Gates are plain ``dict[str, bool]`` values so pure code (validation, builders) can take them as a parameter
instead of reading process-wide state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

RAY_CLUSTER_STATUS_CONDITIONS: Final = "RayClusterStatusConditions"
RAY_JOB_DELETION_POLICY: Final = "RayJobDeletionPolicy"
RAY_MULTI_HOST_INDEXING: Final = "RayMultiHostIndexing"
RAY_SERVICE_INCREMENTAL_UPGRADE: Final = "RayServiceIncrementalUpgrade"
RAY_CRON_JOB: Final = "RayCronJob"
SIDECAR_SUBMITTER_RESTART: Final = "SidecarSubmitterRestart"
RAY_CLUSTER_NETWORK_POLICY: Final = "RayClusterNetworkPolicy"
GCS_FT_EMBEDDED_STORAGE: Final = "GCSFaultToleranceEmbeddedStorage"
RAY_CLUSTER_MTLS: Final = "RayClusterMTLS"
RAY_CLUSTER_HISTORY_SERVER: Final = "RayClusterHistoryServer"
KUBERNETES_WAS: Final = "KubernetesWAS"

DEFAULT_GATES: Final[Mapping[str, bool]] = {
    RAY_CLUSTER_STATUS_CONDITIONS: True,
    RAY_JOB_DELETION_POLICY: True,
    RAY_MULTI_HOST_INDEXING: True,
    RAY_SERVICE_INCREMENTAL_UPGRADE: True,
    RAY_CRON_JOB: False,
    SIDECAR_SUBMITTER_RESTART: False,
    RAY_CLUSTER_NETWORK_POLICY: False,
    GCS_FT_EMBEDDED_STORAGE: False,
    RAY_CLUSTER_MTLS: False,
    RAY_CLUSTER_HISTORY_SERVER: False,
    KUBERNETES_WAS: False,
}


def resolve_gates(gates: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """The defaults overlaid with ``gates`` (unknown names are kept, so callers can test new gates)."""
    out = dict(DEFAULT_GATES)
    if gates:
        out.update({str(k): bool(v) for k, v in gates.items()})
    return out


# strconv.ParseBool, which component-base's feature gates use.
_GO_TRUE = {"1", "t", "true"}
_GO_FALSE = {"0", "f", "false"}


def parse_feature_gates(spec: str | Mapping[str, object] | None) -> dict[str, bool]:
    """The gates a ``--feature-gates`` value (``A=true,B=false``, as component-base parses it) or a
    config file's mapping turns on or off; the defaults are not included (see resolve_gates).

    Raises ValueError on an unknown gate or a value that is not a boolean, so a typo fails at startup
    instead of silently leaving a gate at its default.
    """
    if not spec:
        return {}
    items: list[tuple[str, object]]
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        items = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"missing bool value for feature gate {key.strip()!r}")
            items.append((key.strip(), text.strip()))
    out: dict[str, bool] = {}
    for name, value in items:
        if name not in DEFAULT_GATES:
            raise ValueError(f"unrecognized feature gate: {name}")
        if isinstance(value, bool):
            out[name] = value
            continue
        val = str(value).strip().lower()
        if val not in _GO_TRUE | _GO_FALSE:
            raise ValueError(f"invalid value of {name}={value}, err: must be true or false")
        out[name] = val in _GO_TRUE
    return out
