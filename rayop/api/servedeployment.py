"""Names of rayop's own kind RayServeDeployment: one deployment of one Serve application of a RayService as
an object with a `scale` subresource, so `kubectl scale` and the HorizontalPodAutoscaler can size its
replicas (docs/scaling.md, "Serve deployments as scale targets").

The RayService controller keeps one per deployment that Ray reports on the RayService's active cluster and
folds `spec.replicas` into the Serve config it applies as that deployment's `num_replicas`. It lives in
rayop's API group beside RayWorkerGroup; nothing here is a KubeRay name.
"""

from collections.abc import Mapping
from typing import Any, Final

from rayop.api.constants import DEFAULT_SERVE_APP_NAME
from rayop.api.workergroup import API_VERSION, GROUP, VERSION

__all__ = ["API_VERSION", "GROUP", "VERSION"]

KIND: Final = "RayServeDeployment"
PLURAL: Final = "rayservedeployments"
SHORT_NAME: Final = "rsd"

# Labels on the object (the RayService's name is under KubeRay's ray.io/originated-from-cr-name).
LABEL_APPLICATION: Final = "rayop.io/serve-application"
# The num_replicas Serve ran for a deployment that serveConfigV2 does not size, when the object was made:
# the code's number, which needs no override in the config.
ANN_CODE_REPLICAS: Final = "rayop.io/code-num-replicas"

# Who decides the deployment's replica count (status.scaledBy).
SCALED_BY_SCALE_TARGET: Final = "ScaleTarget"  # this object's spec.replicas (kubectl scale, an HPA)
SCALED_BY_SERVE_AUTOSCALER: Final = "ServeAutoscaler"  # autoscaling_config / num_replicas: auto
SCALED_BY_VALUES: Final = (SCALED_BY_SCALE_TARGET, SCALED_BY_SERVE_AUTOSCALER)

# The condition Synced: whether Ray runs what spec.replicas asks for.
COND_SYNCED: Final = "Synced"
REASON_IN_SYNC: Final = "InSync"
REASON_APPLYING: Final = "ApplyingServeConfig"
REASON_SCALING_UP: Final = "ScalingUp"
REASON_SCALING_DOWN: Final = "ScalingDown"
REASON_SERVE_AUTOSCALER: Final = "ServeAutoscalerOwnsReplicas"
REASON_SERVE_UNKNOWN: Final = "ServeStateUnavailable"
# The condition DedicatedPods: whether the Pods status.selector names run only this deployment's
# replicas, which is when their CPU utilisation measures this deployment alone.
COND_DEDICATED_PODS: Final = "DedicatedPods"
REASON_DEDICATED: Final = "OnlyThisDeployment"
REASON_SHARED: Final = "SharedWithOtherDeployments"
REASON_NO_REPLICAS: Final = "NoReplicasPlaced"

# Events, on the RayServeDeployment (and on the RayService for creating and deleting it).
EV_CREATED: Final = "CreatedRayServeDeployment"
EV_DELETED: Final = "DeletedRayServeDeployment"
EV_FAILED_CREATE: Final = "FailedToCreateRayServeDeployment"
EV_FAILED_DELETE: Final = "FailedToDeleteRayServeDeployment"
EV_NAME_TAKEN: Final = "RayServeDeploymentNameTaken"
EV_SCALED: Final = "ScaledServeDeployment"
EV_SYNCED_FROM_CONFIG: Final = "ReplicasChangedInServeConfig"
EV_SCALE_IGNORED: Final = "ScaleIgnored"

# Ray Serve's replica states (python/ray/serve/_private/common.py ReplicaState): a replica in STOPPING is
# on its way out and is not counted.
REPLICA_RUNNING: Final = "RUNNING"
REPLICA_STOPPING: Final = "STOPPING"


# Readers of serveConfigV2 (parsed), shared by the webhook and the RayService controller ------------------


def app_name(app: Mapping[str, Any]) -> str:
    """applications[].name; Serve's default for a config that leaves it out is `default`."""
    name = app.get("name")
    return name if isinstance(name, str) and name else DEFAULT_SERVE_APP_NAME


def config_apps(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    apps = config.get("applications")
    out: dict[str, Mapping[str, Any]] = {}
    for a in apps if isinstance(apps, list) else []:
        if isinstance(a, Mapping):
            out.setdefault(app_name(a), a)
    return out


def config_entry(config: Mapping[str, Any], app: str, deployment: str) -> Mapping[str, Any] | None:
    """The application's `deployments[]` entry of that name in serveConfigV2, if it lists one."""
    a = config_apps(config).get(app)
    deps = a.get("deployments") if a is not None else None
    for d in deps if isinstance(deps, list) else []:
        if isinstance(d, Mapping) and d.get("name") == deployment:
            return d
    return None


def entry_autoscaled(entry: Mapping[str, Any] | None) -> bool:
    """Serve's own autoscaler sizes the deployment: `autoscaling_config` set, or `num_replicas: auto`."""
    if not entry:
        return False
    return entry.get("autoscaling_config") is not None or entry.get("num_replicas") == "auto"


def entry_replicas(entry: Mapping[str, Any] | None) -> int | None:
    """An integer num_replicas the config states for the deployment."""
    n = (entry or {}).get("num_replicas")
    return n if isinstance(n, int) and not isinstance(n, bool) else None
