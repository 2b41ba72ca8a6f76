"""The rows `rayop get` prints: pure functions from objects (and the time now) to table cells.

Columns follow KubeRay's `kubectl ray get` where it has them (kubectl-plugin/pkg/cmd/get/), plus what a
user asks next: who scales a worker group, and each Ray pod's phase, restarts and IP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rayop.api import constants as C
from rayop.base.objects import labels_of, meta, spec_of, status_of
from rayop.base.times import parse_time
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import is_gpu_resource_key
from rayop.builders.quantity import Quantity, canonical, parse_quantity
from rayop.builders.status import pod_resources

NONE = "<none>"


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration (k8s.io/apimachinery/pkg/util/duration), as kubectl prints AGE."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"  # more than the clock skew kubectl tolerates
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        y = h // (24 * 365)
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{h // (24 * 365)}y"


def age(obj: Mapping[str, Any], now: dt.datetime) -> str:
    created = parse_time(meta(obj).get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


def _s(value: Any) -> str:
    return str(value) if value not in (None, "") else ""


def _with_ns(all_namespaces: bool, obj: Mapping[str, Any], cells: list[str]) -> list[str]:
    return [str(meta(obj).get("namespace", "")), *cells] if all_namespaces else cells


def _headers(all_namespaces: bool, headers: Sequence[str]) -> list[str]:
    return ["namespace", *headers] if all_namespaces else list(headers)


# RayClusters ----------------------------------------------------------------------------------------

CLUSTER_COLUMNS = ("name", "desired workers", "available workers", "cpus", "gpus", "memory", "status", "age")


def cluster_headers(all_namespaces: bool) -> list[str]:
    return _headers(all_namespaces, CLUSTER_COLUMNS)


def cluster_row(obj: Mapping[str, Any], now: dt.datetime, all_namespaces: bool = False) -> list[str]:
    st = status_of(obj)
    state = _s(st.get("state"))
    if meta(obj).get("deletionTimestamp"):
        state = "terminating"
    cells = [
        str(meta(obj).get("name", "")),
        _s(st.get("desiredWorkerReplicas", 0)),
        _s(st.get("availableWorkerReplicas", 0)),
        _s(st.get("desiredCPU")) or "0",
        _s(st.get("desiredGPU")) or "0",
        _s(st.get("desiredMemory")) or "0",
        state or "pending",
        age(obj, now),
    ]
    return _with_ns(all_namespaces, obj, cells)


# RayJobs --------------------------------------------------------------------------------------------

JOB_COLUMNS = ("name", "job status", "deployment status", "cluster", "duration", "age")


def job_headers(all_namespaces: bool) -> list[str]:
    return _headers(all_namespaces, JOB_COLUMNS)


def job_duration(obj: Mapping[str, Any], now: dt.datetime) -> str:
    st = status_of(obj)
    start = parse_time(st.get("startTime"))
    if start is None:
        return ""
    end = parse_time(st.get("endTime")) or now
    return human_duration((end - start).total_seconds())


def job_row(obj: Mapping[str, Any], now: dt.datetime, all_namespaces: bool = False) -> list[str]:
    st = status_of(obj)
    cluster = _s(st.get("rayClusterName")) or _s(
        (spec_of(obj).get("clusterSelector") or {}).get(C.LABEL_CLUSTER)
    )
    cells = [
        str(meta(obj).get("name", "")),
        _s(st.get("jobStatus")),
        _s(st.get("jobDeploymentStatus")),
        cluster,
        job_duration(obj, now),
        age(obj, now),
    ]
    return _with_ns(all_namespaces, obj, cells)


# RayServices ----------------------------------------------------------------------------------------

SERVICE_COLUMNS = ("name", "service status", "serve endpoints", "active cluster", "pending cluster", "age")


def service_headers(all_namespaces: bool) -> list[str]:
    return _headers(all_namespaces, SERVICE_COLUMNS)


def service_row(obj: Mapping[str, Any], now: dt.datetime, all_namespaces: bool = False) -> list[str]:
    st = status_of(obj)
    active = st.get("activeServiceStatus") if isinstance(st.get("activeServiceStatus"), dict) else {}
    pending = st.get("pendingServiceStatus") if isinstance(st.get("pendingServiceStatus"), dict) else {}
    ready = next(
        (c for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), None
    )
    status = _s(st.get("serviceStatus")) or (
        ("Ready" if ready.get("status") == "True" else _s(ready.get("reason"))) if ready else ""
    )
    cells = [
        str(meta(obj).get("name", "")),
        status,
        _s(st.get("numServeEndpoints", 0)),
        _s((active or {}).get("rayClusterName")),
        _s((pending or {}).get("rayClusterName")),
        age(obj, now),
    ]
    return _with_ns(all_namespaces, obj, cells)


# Worker groups --------------------------------------------------------------------------------------

WORKERGROUP_COLUMNS = ("name", "min", "max", "replicas", "cpus", "gpus", "memory", "cluster", "scaled by")


def workergroup_headers(all_namespaces: bool) -> list[str]:
    return _headers(all_namespaces, WORKERGROUP_COLUMNS)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    st = status_of(pod)
    return st.get("phase") == "Running" and any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in st.get("conditions") or []
    )


def _gpus(total: Mapping[str, Quantity]) -> Quantity:
    acc = parse_quantity(0)
    for name in sorted(total):
        if is_gpu_resource_key(name):
            acc = acc + total[name]
    return acc


@dataclass(frozen=True)
class WorkerGroup:
    """One worker group of one RayCluster, with the pods it has now."""

    namespace: str
    cluster: str
    name: str
    min_replicas: int | None
    max_replicas: int | None
    desired: int
    ready: int
    cpu: str
    gpu: str
    memory: str
    scaled_by: str

    def as_dict(self) -> Obj:
        return {
            "namespace": self.namespace,
            "cluster": self.cluster,
            "name": self.name,
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "desiredReplicas": self.desired,
            "readyReplicas": self.ready,
            "cpus": self.cpu,
            "gpus": self.gpu,
            "memory": self.memory,
            "scaledBy": self.scaled_by,
        }


def scaled_by(cluster: Mapping[str, Any], target: str | None = None) -> str:
    """Who sets a group's replicas: Ray's autoscaler when in-tree autoscaling is on, else its scale target
    (a RayWorkerGroup, when the operator keeps one), else the RayCluster's `replicas`."""
    if cl.is_autoscaling_enabled(cluster):
        return "autoscaler"
    return f"rayworkergroup/{target}" if target else "replicas"


def worker_groups(
    cluster: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    targets: Mapping[str, str] | None = None,
) -> list[WorkerGroup]:
    """`targets`: group name -> the name of the RayWorkerGroup that sizes it."""
    out: list[WorkerGroup] = []
    name = str(meta(cluster).get("name", ""))
    for group in spec_of(cluster).get("workerGroupSpecs") or []:
        if not isinstance(group, dict):
            continue
        gname = str(group.get("groupName", ""))
        desired = cl.desired_worker_replicas(group)
        per_pod = pod_resources((group.get("template") or {}).get("spec") or {})
        count = (
            0 if group.get("suspend") is True else cl.as_int(group.get("replicas")) * cl.num_of_hosts(group)
        )
        zero = parse_quantity(0)
        ready = sum(
            1
            for p in pods
            if labels_of(p).get(C.LABEL_GROUP) == gname
            and labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_WORKER
            and labels_of(p).get(C.LABEL_CLUSTER) == name
            and pod_ready(p)
        )
        out.append(
            WorkerGroup(
                namespace=str(meta(cluster).get("namespace", "")),
                cluster=name,
                name=gname,
                min_replicas=cl.as_int(group["minReplicas"])
                if group.get("minReplicas") is not None
                else None,
                max_replicas=cl.as_int(group["maxReplicas"])
                if group.get("maxReplicas") is not None
                else None,
                desired=desired,
                ready=ready,
                cpu=canonical(per_pod.get("cpu", zero) * count),
                gpu=canonical(_gpus(per_pod) * count),
                memory=canonical(per_pod.get("memory", zero) * count),
                scaled_by=scaled_by(cluster, (targets or {}).get(gname)),
            )
        )
    return out


def workergroup_row(g: WorkerGroup, all_namespaces: bool = False) -> list[str]:
    cells = [
        g.name,
        str(g.min_replicas) if g.min_replicas is not None else "0",
        str(g.max_replicas) if g.max_replicas is not None else NONE,
        f"{g.ready}/{g.desired}",
        g.cpu,
        g.gpu,
        g.memory,
        g.cluster,
        g.scaled_by,
    ]
    return [g.namespace, *cells] if all_namespaces else cells


# Ray nodes (pods) -----------------------------------------------------------------------------------

NODE_COLUMNS = (
    "name",
    "cluster",
    "type",
    "group",
    "phase",
    "ready",
    "restarts",
    "ip",
    "cpus",
    "gpus",
    "memory",
    "age",
)


def node_headers(all_namespaces: bool) -> list[str]:
    return _headers(all_namespaces, NODE_COLUMNS)


def pod_phase(pod: Mapping[str, Any]) -> str:
    """The phase, or what kubectl's STATUS would say instead (Terminating, a waiting reason)."""
    if meta(pod).get("deletionTimestamp"):
        return "Terminating"
    st = status_of(pod)
    for cs in st.get("containerStatuses") or []:
        waiting = ((cs or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
            return str(waiting["reason"])
    return _s(st.get("phase")) or "Pending"


def node_sort_key(pod: Mapping[str, Any]) -> tuple[str, str, int, str, str]:
    labels = labels_of(pod)
    return (
        str(meta(pod).get("namespace", "")),
        labels.get(C.LABEL_CLUSTER, ""),
        0 if labels.get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD else 1,
        labels.get(C.LABEL_GROUP, ""),
        str(meta(pod).get("name", "")),
    )


def node_row(pod: Mapping[str, Any], now: dt.datetime, all_namespaces: bool = False) -> list[str]:
    labels = labels_of(pod)
    st = status_of(pod)
    statuses = [cs for cs in st.get("containerStatuses") or [] if isinstance(cs, dict)]
    containers = (pod.get("spec") or {}).get("containers") or []
    res = pod_resources(pod.get("spec") or {})
    zero = parse_quantity(0)
    node_type = labels.get(C.LABEL_NODE_TYPE, "")
    cells = [
        str(meta(pod).get("name", "")),
        labels.get(C.LABEL_CLUSTER, ""),
        node_type,
        labels.get(C.LABEL_GROUP, ""),
        pod_phase(pod),
        f"{sum(1 for cs in statuses if cs.get('ready'))}/{len(containers)}",
        str(sum(cl.as_int(cs.get("restartCount")) for cs in statuses)),
        _s(st.get("podIP")) or NONE,
        canonical(res.get("cpu", zero)),
        canonical(_gpus(res)),
        canonical(res.get("memory", zero)),
        age(pod, now),
    ]
    return _with_ns(all_namespaces, pod, cells)
