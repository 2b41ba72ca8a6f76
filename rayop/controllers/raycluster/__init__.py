"""The RayCluster controller, one module per reconcile step (KubeRay
`ray-operator/controllers/ray/raycluster_controller.go`; see docs/compatibility.md#raycluster-reconcile).

- `wiring`: `setup(manager, settings)`: the caches, the watches, the reconciler, the metrics;
- `reconciler`: `RayClusterReconciler`: the entry point, the ordered step list, and the status write;
- `step`: what every step is given (`ReconcilePass`, `StepServices`) and may raise (`ReconcileError`);
- `validation`: the validation step (rules shared with the webhook, refusals reported as KubeRay does);
- `gcs_ft`: the GCS fault tolerance finalizer and the Redis cleanup on deletion;
- `children`: ServiceAccount, Role, RoleBinding, Ingress, auth Secret, Services and the GCS PVC;
- `pods`: suspension, the Recreate upgrade, the head Pod and the worker groups;
- `store`: what the reconciler reads from the shared caches;
- `builders`: `RayClusterBuilders`, the pure builders the steps call, replaceable in tests.

The names other packages and tests use are importable from this package.
"""

from rayop.api.kinds import RAYCLUSTERS  # defined with the kind registry; kept importable from here
from rayop.controllers.raycluster.builders import RayClusterBuilders, StatusCalculator, WorkerPodBuilder
from rayop.controllers.raycluster.children import ChildObjects, new_auth_token
from rayop.controllers.raycluster.gcs_ft import GcsFaultTolerance, job_finished
from rayop.controllers.raycluster.pods import PodsStep
from rayop.controllers.raycluster.reconciler import RayClusterReconciler, set_defaults
from rayop.controllers.raycluster.step import (
    DEFAULT_REQUEUE,
    FAILED_CREATE_HEAD_POD,
    FAILED_CREATE_WORKER_POD,
    FAILED_DELETE_ALL_PODS,
    FAILED_DELETE_HEAD_POD,
    FAILED_DELETE_WORKER_POD,
    GCS_FT_DELETION_TIMEOUT,
    HEAD_GONE_REQUEUE,
    HEAD_SERVICE_EXPECTATION,
    ReconcileError,
    ReconcilePass,
    StepServices,
    ensure_owned,
)
from rayop.controllers.raycluster.store import Store
from rayop.controllers.raycluster.validation import Validate, ValidationStep
from rayop.controllers.raycluster.wiring import setup
from rayop.controllers.settings import DEFAULT_REQUEUE_SECONDS

__all__ = [
    "DEFAULT_REQUEUE",
    "DEFAULT_REQUEUE_SECONDS",
    "FAILED_CREATE_HEAD_POD",
    "FAILED_CREATE_WORKER_POD",
    "FAILED_DELETE_ALL_PODS",
    "FAILED_DELETE_HEAD_POD",
    "FAILED_DELETE_WORKER_POD",
    "GCS_FT_DELETION_TIMEOUT",
    "HEAD_GONE_REQUEUE",
    "HEAD_SERVICE_EXPECTATION",
    "RAYCLUSTERS",
    "ChildObjects",
    "GcsFaultTolerance",
    "PodsStep",
    "RayClusterBuilders",
    "RayClusterReconciler",
    "ReconcileError",
    "ReconcilePass",
    "StatusCalculator",
    "StepServices",
    "Store",
    "Validate",
    "ValidationStep",
    "WorkerPodBuilder",
    "ensure_owned",
    "job_finished",
    "new_auth_token",
    "set_defaults",
    "setup",
]
