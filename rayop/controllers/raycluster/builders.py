"""The pure builders the RayCluster reconciler calls, gathered in one typed object.

The defaults are `rayop.builders`' functions. Tests replace single ones (`dataclasses.replace`) to check
the reconciler's decisions apart from the shape of the manifests, which the builders' golden tests cover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rayop.base.types import Obj
from rayop.builders import cluster as cluster_builders
from rayop.builders import ingress as ingress_builders
from rayop.builders import pod as pod_builders
from rayop.builders import rbac as rbac_builders
from rayop.builders import redis_cleanup as redis_cleanup_builders
from rayop.builders import secrets as secret_builders
from rayop.builders import service as service_builders
from rayop.builders import status as status_builders
from rayop.builders import storage as storage_builders
from rayop.builders.options import BuildOptions


class WorkerPodBuilder(Protocol):
    def __call__(
        self,
        cluster: Mapping[str, Any],
        group: Mapping[str, Any],
        opts: BuildOptions,
        *,
        replica_index: int | None = None,
        replica_name: str | None = None,
        host_index: int | None = None,
    ) -> Obj: ...


class StatusCalculator(Protocol):
    def __call__(
        self,
        cluster: Mapping[str, Any],
        pods: Sequence[Mapping[str, Any]],
        head_service: Mapping[str, Any] | None,
        *,
        reconcile_error: BaseException | str | None,
        now: datetime | str,
        gates: Mapping[str, bool] | None = None,
    ) -> Obj: ...


@dataclass(frozen=True)
class RayClusterBuilders:
    """The pure builders the reconciler calls; the defaults are rayop.builders'. Unit tests replace
    single ones (`dataclasses.replace`) to isolate the reconciler from what the builders produce."""

    head_pod: Callable[[Mapping[str, Any], BuildOptions], Obj] = pod_builders.build_head_pod
    worker_pod: WorkerPodBuilder = pod_builders.build_worker_pod
    head_service: Callable[[Mapping[str, Any], BuildOptions], Obj] = service_builders.build_head_service
    headless_worker_service: Callable[[Mapping[str, Any]], Obj] = (
        service_builders.build_headless_worker_service
    )
    serve_service: Callable[[Mapping[str, Any]], Obj | None] = service_builders.build_serve_service
    service_account: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_service_account
    role: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_role
    role_binding: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_role_binding
    ingress: Callable[[Mapping[str, Any]], Obj] = ingress_builders.build_ingress
    gcs_pvc: Callable[[Mapping[str, Any]], Obj | None] = storage_builders.build_gcs_pvc
    needs_auth_secret: Callable[[Mapping[str, Any]], bool] = secret_builders.needs_auth_secret
    auth_secret: Callable[[Mapping[str, Any], str], Obj] = secret_builders.build_auth_secret
    redis_cleanup_job: Callable[[Mapping[str, Any], Mapping[str, Any]], Obj] = (
        redis_cleanup_builders.build_redis_cleanup_job
    )
    calculate_status: StatusCalculator = status_builders.calculate_status
    status_changed: Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], bool] = (
        status_builders.status_changed
    )
    only_progress_changed: Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], bool] = (
        status_builders.only_progress_changed
    )
    desired_worker_replicas: Callable[[Mapping[str, Any]], int] = cluster_builders.desired_worker_replicas
    upgrade_recreate_hash: Callable[[Mapping[str, Any]], str] = cluster_builders.upgrade_recreate_hash
    should_delete_pod: Callable[[Mapping[str, Any], str], tuple[bool, str]] = (
        cluster_builders.should_delete_pod
    )
