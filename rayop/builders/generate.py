"""RayCluster and RayJob manifests from a few flags (`rayop create cluster`, `rayop job submit`).

The same shape as KubeRay's `kubectl ray create cluster` (kubectl-plugin/pkg/util/generation/generation.go):
a head with the GCS, dashboard and client ports, one worker group named `default-group`, CPU and memory
requests, memory limits (no CPU limit, so Ray's processes are not throttled), GPUs as `nvidia.com/gpu`
requests and limits. With `autoscale`, Ray's in-tree autoscaler owns the group between min and max.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders.quantity import QuantityError, parse_quantity

# The Ray release this rayop is tested with (versions.env's RAYOP_RAY_VERSION; a unit test keeps them equal).
DEFAULT_RAY_VERSION: Final = "2.60.0"
DEFAULT_GROUP: Final = "default-group"
GPU_RESOURCE: Final = "nvidia.com/gpu"
HEAD_PORTS: Final = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("serve", 8000))


class ShapeError(ValueError):
    """Flags that cannot make a valid cluster; the message names the flag and the rule."""


@dataclass(frozen=True)
class ClusterShape:
    ray_version: str = DEFAULT_RAY_VERSION
    image: str = ""  # default: rayproject/ray:<ray_version>
    head_cpu: str = "2"
    head_memory: str = "4Gi"
    head_gpu: str = "0"
    worker_group: str = DEFAULT_GROUP
    worker_replicas: int = 1
    worker_cpu: str = "2"
    worker_memory: str = "4Gi"
    worker_gpu: str = "0"
    autoscale: bool = False
    min_replicas: int | None = None
    max_replicas: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_or_default(self) -> str:
        return self.image or f"rayproject/ray:{self.ray_version}"


def check_shape(shape: ClusterShape) -> list[str]:
    """Every problem at once, each naming its flag."""
    errs: list[str] = []
    for flag, value in (
        ("--head-cpu", shape.head_cpu),
        ("--head-memory", shape.head_memory),
        ("--head-gpu", shape.head_gpu),
        ("--worker-cpu", shape.worker_cpu),
        ("--worker-memory", shape.worker_memory),
        ("--worker-gpu", shape.worker_gpu),
    ):
        try:
            q = parse_quantity(value)
        except QuantityError:
            errs.append(f"{flag} {value!r} is not a Kubernetes quantity (e.g. 2, 500m, 4Gi)")
            continue
        if q.as_float() < 0:
            errs.append(f"{flag} {value!r} must not be negative")
    for flag, val in (("--head-cpu", shape.head_cpu), ("--head-memory", shape.head_memory)):
        try:
            if parse_quantity(val).is_zero():
                errs.append(f"{flag} must be more than 0: the head runs Ray's GCS and dashboard")
        except QuantityError:
            pass
    if shape.worker_replicas < 0:
        errs.append(f"--worker-replicas {shape.worker_replicas} must not be negative")
    lo, hi = shape.min_replicas, shape.max_replicas
    if lo is not None and lo < 0:
        errs.append(f"--min {lo} must not be negative")
    if hi is not None and hi < 0:
        errs.append(f"--max {hi} must not be negative")
    if shape.autoscale and hi is None:
        errs.append("--autoscale needs --max: the most workers Ray's autoscaler may start")
    if lo is not None and hi is not None and lo > hi:
        errs.append(f"--min {lo} must not be more than --max {hi}")
    if lo is not None and shape.worker_replicas < lo:
        errs.append(f"--worker-replicas {shape.worker_replicas} must not be less than --min {lo}")
    if hi is not None and shape.worker_replicas > hi:
        errs.append(f"--worker-replicas {shape.worker_replicas} must not be more than --max {hi}")
    if not shape.worker_group:
        errs.append("--worker-group must not be empty")
    return errs


def _resources(cpu: str, memory: str, gpu: str) -> Obj:
    requests: Obj = {"cpu": cpu, "memory": memory}
    limits: Obj = {"memory": memory}
    if not parse_quantity(gpu).is_zero():
        requests[GPU_RESOURCE] = gpu
        limits[GPU_RESOURCE] = gpu
    return {"requests": requests, "limits": limits}


def ray_cluster_spec(shape: ClusterShape) -> Obj:
    """A RayCluster's spec; raises ShapeError listing every bad flag."""
    errs = check_shape(shape)
    if errs:
        raise ShapeError("; ".join(errs))
    image = shape.image_or_default
    group: Obj = {"groupName": shape.worker_group, "replicas": shape.worker_replicas}
    if shape.min_replicas is not None:
        group["minReplicas"] = shape.min_replicas
    if shape.max_replicas is not None:
        group["maxReplicas"] = shape.max_replicas
    group |= {
        "rayStartParams": {},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "ray-worker",
                        "image": image,
                        "resources": _resources(shape.worker_cpu, shape.worker_memory, shape.worker_gpu),
                    }
                ]
            }
        },
    }
    spec: Obj = {"rayVersion": shape.ray_version}
    if shape.autoscale:
        spec["enableInTreeAutoscaling"] = True
    spec["headGroupSpec"] = {
        "rayStartParams": {},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "ray-head",
                        "image": image,
                        "ports": [{"name": n, "containerPort": p} for n, p in HEAD_PORTS],
                        "resources": _resources(shape.head_cpu, shape.head_memory, shape.head_gpu),
                    }
                ]
            }
        },
    }
    spec["workerGroupSpecs"] = [group]
    return spec


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> Obj:
    md: Obj = {"name": name, "namespace": namespace}
    if labels:
        md["labels"] = dict(labels)
    return md


def build_raycluster(name: str, namespace: str, shape: ClusterShape) -> Obj:
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": _metadata(name, namespace, shape.labels),
        "spec": ray_cluster_spec(shape),
    }


def build_rayjob(
    name: str,
    namespace: str,
    *,
    entrypoint: str,
    submission_mode: str,
    shape: ClusterShape | None = None,
    cluster: str | None = None,
    shutdown_after_finish: bool = False,
    ttl_seconds: int | None = None,
    runtime_env_yaml: str = "",
) -> Obj:
    """A RayJob on a new cluster of `shape`, or on the existing RayCluster `cluster` (clusterSelector)."""
    if (shape is None) == (cluster is None):
        raise ShapeError("give either cluster flags or --cluster, not both")
    spec: Obj = {"submissionMode": submission_mode, "entrypoint": entrypoint}
    if runtime_env_yaml:
        spec["runtimeEnvYAML"] = runtime_env_yaml
    if cluster is not None:
        spec["clusterSelector"] = {C.LABEL_CLUSTER: cluster}
    else:
        assert shape is not None
        spec["rayClusterSpec"] = ray_cluster_spec(shape)
        if shutdown_after_finish:
            spec["shutdownAfterJobFinishes"] = True
            if ttl_seconds is not None:
                spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYJOB,
        "metadata": _metadata(name, namespace, shape.labels if shape else {}),
        "spec": spec,
    }
