"""What every step of a RayCluster reconcile is given, and what it may raise.

A step is an async function of one `ReconcilePass`: the pass carries the private, defaulted copy of the
RayCluster being reconciled and the pass's own "come back soon" flag. One pass object is made per
reconcile call, so the steps of concurrent reconciles (one reconciler object serves every worker) never
see each other's flag, and steps run as gathered tasks still set their caller's. The long-lived parts
(API client, caches, event writer, builders, settings, expectations, clock) reach the steps through one
`StepServices`.

A step that cannot go on raises `ReconcileError` (its `reason` feeds the `ReplicaFailure` condition) or
lets an API error through; the reconciler stops the step list there and writes the status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.base.objects import meta, set_controller, spec_of
from rayop.base.types import Obj
from rayop.builders.options import BuildOptions
from rayop.controllers.common import Writer
from rayop.controllers.raycluster.builders import RayClusterBuilders
from rayop.controllers.raycluster.store import Store
from rayop.controllers.settings import RayClusterSettings
from rayop.runtime.client import ApiClient
from rayop.runtime.expectations import Expectations

# The Expectations group of the head Service a reconcile created ("/" cannot occur in a worker group name).
HEAD_SERVICE_EXPECTATION = "services/head"
DEFAULT_REQUEUE = 2.0  # KubeRay DefaultRequeueDuration
HEAD_GONE_REQUEUE = 10.0  # head Pod termination takes longer than 2 s (KubeRay comment)
GCS_FT_DELETION_TIMEOUT = 300

# ReplicaFailure condition reasons (KubeRay utils.RayClusterReplicaFailureReason).
FAILED_CREATE_HEAD_POD = "FailedCreateHeadPod"
FAILED_DELETE_HEAD_POD = "FailedDeleteHeadPod"
FAILED_CREATE_WORKER_POD = "FailedCreateWorkerPod"
FAILED_DELETE_WORKER_POD = "FailedDeleteWorkerPod"
FAILED_DELETE_ALL_PODS = "FailedDeleteAllPods"


class ReconcileError(Exception):
    """A step failed. `reason` (if any) becomes the ReplicaFailure condition reason, as KubeRay wraps its
    errors with ErrFailedCreateWorkerPod etc. to drive that condition."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ReconcilePass:
    """One reconcile call of one RayCluster."""

    cluster: Obj
    """Our private copy with KubeRay's defaults applied; never written back to the API server."""

    original: Obj
    """The object as the cache holds it (shared, read-only): status writes carry its resourceVersion."""

    more_work: bool = False
    """Set by a step that stopped short (a batch limit, a group waiting for the cache): the pass asks to
    come back in a second rather than at the resync period."""

    @property
    def namespace(self) -> str:
        return str(meta(self.cluster)["namespace"])

    @property
    def name(self) -> str:
        return str(meta(self.cluster)["name"])

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def come_back_soon(self) -> None:
        self.more_work = True


Step = Callable[[ReconcilePass], Awaitable[None]]


@dataclass(frozen=True)
class StepServices:
    """The parts every step shares; one per reconciler."""

    client: ApiClient
    store: Store
    writer: Writer
    builders: RayClusterBuilders
    settings: RayClusterSettings
    expectations: Expectations
    now: Callable[[], float]

    @property
    def opts(self) -> BuildOptions:
        return self.settings.build_options


def ensure_owned(obj: Obj, rc: Mapping[str, Any]) -> Obj:
    """Put a child in its RayCluster's namespace under the RayCluster's controller reference."""
    return set_controller(obj, rc, api_version=C.API_VERSION, kind=C.KIND_RAYCLUSTER)


def autoscaling(rc: Mapping[str, Any]) -> bool:
    """Whether Ray's in-tree autoscaler runs in the head (`enableInTreeAutoscaling`)."""
    return bool(RS.autoscaling_enabled(spec_of(rc)))
