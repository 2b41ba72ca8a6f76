"""`cluster/NAME`, `job/NAME`, `service/NAME` or a plain name: which RayCluster, and which of its pods."""

from __future__ import annotations

from dataclasses import dataclass

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.base.objects import meta, status_of
from rayop.base.times import parse_timestamp
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.cli.kube import CliError
from rayop.runtime.client import PODS, ApiClient

KIND_WORDS = {
    "cluster": "cluster",
    "clusters": "cluster",
    "raycluster": "cluster",
    "rayclusters": "cluster",
    "job": "job",
    "jobs": "job",
    "rayjob": "job",
    "rayjobs": "job",
    "service": "service",
    "services": "service",
    "rayservice": "service",
    "rayservices": "service",
    "pod": "pod",
    "pods": "pod",
    "po": "pod",
}


@dataclass(frozen=True)
class Ref:
    kind: str  # cluster | job | service | pod
    name: str


def parse_ref(text: str, default_kind: str) -> Ref:
    """`kind/name` (kubectl's spelling, KubeRay's kinds accepted) or a bare name of `default_kind`."""
    word, sep, name = text.partition("/")
    if not sep:
        return Ref(default_kind, text)
    kind = KIND_WORDS.get(word.lower())
    if kind is None or not name or "/" in name:
        raise CliError(f"{text!r}: expected NAME or TYPE/NAME with TYPE one of cluster, job, service, pod")
    return Ref(kind, name)


async def cluster_of(api: ApiClient, namespace: str, ref: Ref) -> Obj:
    """The RayCluster a reference points at (a RayJob's or a RayService's active cluster)."""
    if ref.kind == "cluster":
        return await api.get(RAYCLUSTERS, ref.name, namespace)
    if ref.kind == "job":
        job = await api.get(RAYJOBS, ref.name, namespace)
        name = str(status_of(job).get("rayClusterName") or "")
        if not name:
            raise CliError(f"RayJob {ref.name} has no RayCluster yet (status.rayClusterName is empty)")
        return await api.get(RAYCLUSTERS, name, namespace)
    if ref.kind == "service":
        svc = await api.get(RAYSERVICES, ref.name, namespace)
        st = status_of(svc)
        active = st.get("activeServiceStatus") if isinstance(st.get("activeServiceStatus"), dict) else {}
        pending = st.get("pendingServiceStatus") if isinstance(st.get("pendingServiceStatus"), dict) else {}
        name = str((active or {}).get("rayClusterName") or (pending or {}).get("rayClusterName") or "")
        if not name:
            raise CliError(f"RayService {ref.name} has no RayCluster yet")
        return await api.get(RAYCLUSTERS, name, namespace)
    raise CliError(f"a pod is not a Ray cluster: {ref.name}")


async def head_pod(api: ApiClient, namespace: str, cluster: Obj) -> Obj | None:
    """The cluster's head pod: a running one, the newest first (during a restart an old one may linger)."""
    name = str(meta(cluster).get("name", ""))
    sel = f"{C.LABEL_CLUSTER}={name},{C.LABEL_NODE_TYPE}={C.NODE_TYPE_HEAD}"
    pods = [
        p
        for p in (await api.list(PODS, namespace, label_selector=sel))["items"]
        if not meta(p).get("deletionTimestamp")
    ]
    pods.sort(
        key=lambda p: (
            status_of(p).get("phase") != "Running",
            -(parse_timestamp(meta(p).get("creationTimestamp")) or 0.0),
        )
    )
    return pods[0] if pods else None


def head_service(cluster: Obj) -> str:
    return cl.head_service_name(cluster)
