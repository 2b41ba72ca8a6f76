"""The caches the view reads, and the lookups its pages and fetches share.

They are the operator's own informers (the manager shares one per kind and selector), so a page costs no
API call. The view adds one index (Pods and Services by their `ray.io/cluster` label) under its own name;
an index costs a set entry per object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rayop.api import constants as C
from rayop.base.objects import labels_of, meta, spec_of
from rayop.base.types import Obj
from rayop.builders.status import is_running_and_ready
from rayop.runtime.protocols import Cache

INDEX_CLUSTER = "rayop-ui/cluster"


def cluster_index_value(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class Caches:
    clusters: Cache
    jobs: Cache
    rayservices: Cache
    pods: Cache
    services: Cache

    def all(self) -> dict[str, Cache]:
        return {
            "RayClusters": self.clusters,
            "RayJobs": self.jobs,
            "RayServices": self.rayservices,
            "Pods": self.pods,
            "Services": self.services,
        }

    def not_synced(self) -> list[str]:
        """Kinds whose first list has not finished (caches without the notion count as synced)."""
        return [k for k, c in self.all().items() if getattr(c, "synced", True) is False]

    def cluster_pods(self, namespace: str, name: str) -> Sequence[Obj]:
        return self.pods.by_index(INDEX_CLUSTER, cluster_index_value(namespace, name))

    def cluster_services(self, namespace: str, name: str) -> Sequence[Obj]:
        return self.services.by_index(INDEX_CLUSTER, cluster_index_value(namespace, name))

    def head_service(self, namespace: str, name: str) -> Obj | None:
        """The cluster's head Service (labelled as the head's), whatever its name."""
        for s in self.cluster_services(namespace, name):
            labels = labels_of(s)
            if labels.get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD and not labels.get(
                C.LABEL_HEADLESS_WORKER_SVC
            ):
                return s
        return None

    def head_ready(self, namespace: str, name: str) -> bool:
        return any(
            labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD
            and not meta(p).get("deletionTimestamp")
            and is_running_and_ready(p)
            for p in self.cluster_pods(namespace, name)
        )


def dashboard_port(service: Obj) -> int:
    for p in spec_of(service).get("ports") or []:
        if isinstance(p, dict) and p.get("name") == "dashboard" and isinstance(p.get("port"), int):
            return int(p["port"])
    return C.PORT_DASHBOARD
