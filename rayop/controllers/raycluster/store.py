"""What the RayCluster reconciler reads from the shared caches (informers).

The reconciler never lists from the API server for the objects it owns: Pods and Services come from
caches indexed by the `ray.io/cluster` label, the other kinds it creates from caches selected by that
label. Unit tests hand in in-memory fakes of the same `Cache` Protocol.
"""

from __future__ import annotations

from collections.abc import Mapping

from rayop.api import constants as C
from rayop.base.objects import labels_of
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.controllers.common import INDEX_CLUSTER, cluster_key
from rayop.runtime.protocols import Cache


class Store:
    """What the reconciler reads from the caches. Backed by the runtime's informers in production and by
    in-memory fakes in unit tests."""

    def __init__(
        self,
        clusters: Cache,
        pods: Cache,
        services: Cache,
        children: Mapping[Resource, Cache] | None = None,
    ) -> None:
        self.clusters = clusters
        self.pods = pods
        self.services = services
        # Caches of the other kinds we create (labelled ray.io/cluster); a kind without one is read from
        # the API server instead.
        self.children = dict(children or {})

    def cached(self, res: Resource) -> bool:
        return res in self.children

    def child(self, res: Resource, namespace: str, name: str) -> Obj | None:
        return self.children[res].get(namespace, name)

    def cluster(self, namespace: str, name: str) -> Obj | None:
        return self.clusters.get(namespace, name)

    def cluster_pods(self, namespace: str, name: str) -> list[Obj]:
        return list(self.pods.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.pods.get(namespace, name)

    def cluster_services(self, namespace: str, name: str) -> list[Obj]:
        return list(self.services.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))

    def head_services(self, namespace: str, name: str) -> list[Obj]:
        """The cluster's Services labelled as the head's (`ray.io/node-type: head`); KubeRay expects one."""
        return [
            s
            for s in self.cluster_services(namespace, name)
            if labels_of(s).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD
        ]
