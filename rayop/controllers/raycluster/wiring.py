"""Registers the RayCluster controller on a Manager: its caches, the events that enqueue a RayCluster,
the reconciler and (with `--enable-metrics`) the `kuberay_cluster_*` gauges.

The caches follow KubeRay's manager cache (`ray-operator/internal/managercache/cache.go`): Pods of Ray
nodes only, Jobs the operator created, and the other kinds the reconciler creates selected by the
`ray.io/cluster` label, so the operator never holds every Pod of a large cluster in memory.
"""

from __future__ import annotations

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.controllers import cached_fields, raycluster_metrics
from rayop.controllers.common import INDEX_CLUSTER, JOB_SELECTOR, POD_SELECTOR
from rayop.controllers.raycluster.reconciler import RayClusterReconciler
from rayop.controllers.raycluster.store import Store
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import (
    INGRESSES,
    JOBS,
    PODS,
    PVCS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
)
from rayop.runtime.protocols import ControllerHandle, Manager


def setup(manager: Manager, settings: ControllerSettings) -> ControllerHandle:
    """Register the RayCluster controller, its caches and (when enabled) its metrics on `manager`."""
    # Informers keep what cached_fields lists for their kind.
    clusters = cached_fields.informer(manager, RAYCLUSTERS)
    pods = cached_fields.informer(manager, PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    services = cached_fields.informer(manager, SERVICES)
    services.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    jobs = cached_fields.informer(manager, JOBS, label_selector=JOB_SELECTOR)
    # Every other kind we create carries ray.io/cluster: caching just those spares the API server a GET
    # per kind on every reconcile (KubeRay reads them from its cache too).
    children = {
        res: cached_fields.informer(manager, res, label_selector=C.LABEL_CLUSTER)
        for res in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, INGRESSES, SECRETS, PVCS)
    }
    reconciler = RayClusterReconciler(
        manager.client, Store(clusters, pods, services, children), manager.events, settings.raycluster
    )
    ctrl = manager.new_controller(
        "raycluster", reconciler.reconcile, concurrency=settings.reconcile_concurrency
    )
    ctrl.watch_primary(clusters)
    for inf in (pods, services, jobs, *children.values()):
        ctrl.watch_owned(inf, C.KIND_RAYCLUSTER, owner_group=C.GROUP)
    if settings.enable_metrics:
        raycluster_metrics.register(clusters)
    return ctrl
