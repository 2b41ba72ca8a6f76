"""Names of rayop's own kind, RayWorkerGroup: one worker group of a RayCluster (or of a RayService's
active cluster) as an object with a `scale` subresource, so `kubectl scale` and the HorizontalPodAutoscaler
can size it.

It lives in rayop's API group, not in KubeRay's `ray.io`, so it can never clash with a kind KubeRay adds
later. Nothing here is a KubeRay name; see docs/scaling.md for what each value means to users.
"""

from typing import Final

GROUP: Final = "rayop.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RayWorkerGroup"
PLURAL: Final = "rayworkergroups"
SHORT_NAME: Final = "rwg"

# Who decides the group's replica count (status.scaledBy).
SCALED_BY_RAY_AUTOSCALER: Final = "RayAutoscaler"  # enableInTreeAutoscaling: Ray sizes the group
SCALED_BY_SCALE_TARGET: Final = "ScaleTarget"  # the RayWorkerGroup's spec.replicas (kubectl scale, HPA)
SCALED_BY_NONE: Final = "None"  # the cluster or the group is suspended: nothing runs to be sized
SCALED_BY_VALUES: Final = (SCALED_BY_RAY_AUTOSCALER, SCALED_BY_SCALE_TARGET, SCALED_BY_NONE)

# The one condition of a RayWorkerGroup: whether the RayCluster runs what spec.replicas asks for.
COND_SYNCED: Final = "Synced"
REASON_IN_SYNC: Final = "InSync"
REASON_SCALING_UP: Final = "ScalingUp"
REASON_SCALING_DOWN: Final = "ScalingDown"
REASON_DRAINING: Final = "DrainingWorkers"
REASON_WAITING_FOR_IDLE: Final = "WaitingForIdleWorkers"
REASON_RAY_UNREACHABLE: Final = "RayStateUnavailable"
REASON_AUTOSCALER_OWNS: Final = "RayAutoscalerOwnsReplicas"
REASON_SUSPENDED: Final = "Suspended"

# Event reasons, on the RayWorkerGroup (and on the RayCluster for creating and deleting it).
EV_CREATED: Final = "CreatedRayWorkerGroup"
EV_DELETED: Final = "DeletedRayWorkerGroup"
EV_FAILED_DELETE: Final = "FailedToDeleteRayWorkerGroup"
EV_FAILED_CREATE: Final = "FailedToCreateRayWorkerGroup"
EV_NAME_TAKEN: Final = "RayWorkerGroupNameTaken"
EV_SCALED: Final = "ScaledWorkerGroup"
EV_CLAMPED: Final = "ClampedReplicas"
EV_SYNCED_FROM_CLUSTER: Final = "ReplicasChangedInRayCluster"
EV_FOLLOWED_ACTIVE_CLUSTER: Final = "FollowedActiveRayCluster"  # a RayService promoted a new cluster
EV_SCALE_IGNORED: Final = "ScaleIgnored"
EV_SELECTED_WORKER: Final = "SelectedWorkerForRemoval"
EV_DRAINING_WORKER: Final = "DrainingWorker"
EV_DRAIN_REFUSED: Final = "DrainRefused"
EV_DRAIN_FAILED: Final = "DrainFailed"
EV_WORKERS_BUSY: Final = "WorkersBusy"
EV_RAY_UNREACHABLE: Final = "RayStateUnavailable"

# Labels and annotations rayop puts on the drain Pods it runs in a Ray cluster. The node-type value
# joins KubeRay's `head`, `worker` and `redis-cleanup` under `ray.io/node-type`, so
# `kubectl get pods -l ray.io/cluster=NAME` lists them with the cluster's other Pods.
NODE_TYPE_DRAIN: Final = "drain"
ANN_DRAIN_WORKER_POD: Final = "rayop.io/worker-pod"
ANN_DRAIN_RAY_NODE_ID: Final = "rayop.io/ray-node-id"

# Exit code of a drain Pod whose request Ray refused (the node was busy); any other non-zero code is a
# failure to ask (GCS unreachable, bad image, ...).
DRAIN_EXIT_REFUSED: Final = 3
# `ray drain-node --reason`: the reason a raylet accepts only while it is idle (autoscaler_pb2.DrainNodeReason).
DRAIN_REASON_IDLE: Final = "DRAIN_NODE_REASON_IDLE_TERMINATION"
