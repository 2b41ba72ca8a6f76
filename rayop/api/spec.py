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
