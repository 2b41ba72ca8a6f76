"""What a RayCluster spec switches on, read once for builders, validation and controllers.

Each reader takes a `RayClusterSpec` (a RayCluster's `spec`, or the `rayClusterSpec` embedded in a
RayJob or RayService) and, where KubeRay also looks at them, the RayCluster's annotations. They are
total: a malformed value (the webhook off, a hand-edited object) reads as "off", never raises. The
rules are KubeRay's (`ray-operator/controllers/ray/utils/util.go`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import workergroup as W

_EMPTY: Mapping[str, Any] = {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def autoscaling_enabled(spec: Mapping[str, Any]) -> bool:
    """`enableInTreeAutoscaling: true` (utils.IsAutoscalingEnabled)."""
    return spec.get("enableInTreeAutoscaling") is True


def autoscaler_version(spec: Mapping[str, Any]) -> str | None:
    """`autoscalerOptions.version` (`v1`, `v2`), or None when unset: Ray then picks its default."""
    v = _map(spec.get("autoscalerOptions")).get("version")
    return v if isinstance(v, str) and v else None


def gcs_ft_enabled(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> bool:
    """GCS fault tolerance: the legacy annotation `ray.io/ft-enabled: "true"` (any case), or
    `gcsFaultToleranceOptions` present at all, even empty (utils.IsGCSFaultToleranceEnabled tests the
    pointer for nil)."""
    ann = annotations.get(C.ANN_FT_ENABLED)
    return (isinstance(ann, str) and ann.lower() == "true") or spec.get(
        "gcsFaultToleranceOptions"
    ) is not None


def gcs_ft_backend(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> str | None:
    """`redis` (the default, and the only one of the legacy annotation) or `rocksdb`; None when GCS FT is
    off. Compared as written: the CRD's enum admits only the lower-case names."""
    if not gcs_ft_enabled(spec, annotations):
        return None
    backend = _map(spec.get("gcsFaultToleranceOptions")).get("backend")
    return backend if isinstance(backend, str) and backend else C.GCS_BACKEND_REDIS


def auth_enabled(spec: Mapping[str, Any]) -> bool:
    """Ray token authentication: `authOptions.mode: token`."""
    return _map(spec.get("authOptions")).get("mode") == "token"


def k8s_auth_enabled(spec: Mapping[str, Any]) -> bool:
    """Token authentication through Kubernetes service-account tokens: `authOptions.enableK8sTokenAuth`."""
    return _map(spec.get("authOptions")).get("enableK8sTokenAuth") is True


# Worker groups as scale targets (rayop's RayWorkerGroup, docs/scaling.md) ------------------------------

MAX_INT32 = 2147483647


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def worker_group(spec: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The entry of `workerGroupSpecs` named `name`, or None."""
    groups = spec.get("workerGroupSpecs")
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, Mapping) and g.get("groupName") == name:
            return g
    return None


def replica_bounds(group: Mapping[str, Any]) -> tuple[int, int]:
    """(minReplicas, maxReplicas) as KubeRay reads them: unset min is 0, unset max is unbounded; a min
    above the max yields the max (a spec validation rejects it)."""
    hi = _int(group.get("maxReplicas"), MAX_INT32)
    lo = min(_int(group.get("minReplicas"), 0), hi)
    return lo, hi


def clamp_replicas(group: Mapping[str, Any], replicas: int) -> int:
    lo, hi = replica_bounds(group)
    return min(max(replicas, lo), hi)


def group_replicas(group: Mapping[str, Any]) -> int:
    """The group's `replicas` as written (the CRD defaults it to 0; unset reads as minReplicas, as
    KubeRay reads it)."""
    lo, _ = replica_bounds(group)
    return _int(group.get("replicas"), lo)


def scaled_by(spec: Mapping[str, Any], group: Mapping[str, Any]) -> str:
    """Who sizes a worker group: Ray's autoscaler when it runs, nobody while the cluster or the group is
    suspended (KubeRay then keeps no worker Pods at all), else the RayWorkerGroup's spec.replicas."""
    if autoscaling_enabled(spec):
        return W.SCALED_BY_RAY_AUTOSCALER
    if spec.get("suspend") is True or group.get("suspend") is True:
        return W.SCALED_BY_NONE
    return W.SCALED_BY_SCALE_TARGET
