"""What the operator keeps of each object it caches, kind by kind.

An informer's transform runs on every object before it is stored (rayop.runtime.cache). The operator
caches Ray Pods by the thousand, and a Pod as the API server returns it is mostly its spec, which the
operator wrote from the RayCluster's template and never reads back: keeping only the fields below cuts
the cache from about 27 KiB to a few KiB per Pod (bench/informer_memory.py). Every controller asks for an
informer of a kind with the transform listed here, so the manager's shared informer is the same whoever
asks first.

Kept fields per kind (also in ARCHITECTURE.md):

- Pod: `POD_FIELDS`: identity, labels, annotations, owner and deletion metadata; `spec.nodeName`,
  `spec.restartPolicy`, each container's name, image and ports (the Serve and metrics ports RayService reads); the status a controller or a web view reads:
  phase, reason, message, IPs, start time, conditions, and each (init) container's name, readiness,
  restarts and states. Readers: builders/status.py (readiness, head Pod IP, waiting reasons),
  builders/cluster.py `should_delete_pod` (phase, Ray container state, restartPolicy), controllers/podplan.py
  (labels, creationTimestamp, readiness), raycluster.py (labels, annotations for the Recreate upgrade),
  rayjob_machine.py (the submitter sidecar's terminated state), the runtime (ownerReferences,
  deletionTimestamp, resourceVersion, uid).
- RayCluster: everything except `metadata.managedFields`, of which only the entries that own a worker
  group's `replicas`, `minReplicas` or `maxReplicas` are kept, pruned to those fields: who scales a
  cluster (a user's kubectl, Ray's autoscaler, an HPA through the scale subresource) stays answerable
  (`replicas_managers`) for status, events and a web view.
- Every other kind: everything except `metadata.managedFields` (the runtime's default).

Cached objects are read-only and never sent back whole (status writes send only the status; metadata
changes are patches), so a pruned `managedFields` never reaches the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rayop.api.kinds import RAYCLUSTERS
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.cache import FieldSpec, intern_strings, keep_fields, strip_managed_fields
from rayop.runtime.client import PODS
from rayop.runtime.protocols import Informer, Manager, Transform

_CONDITION: Final[FieldSpec] = {
    "type": True,
    "status": True,
    "reason": True,
    "message": True,
    "lastTransitionTime": True,
}
_CONTAINER_STATUS: Final[FieldSpec] = {
    "name": True,
    "ready": True,
    "started": True,
    "restartCount": True,
    "state": True,
    "lastState": True,
}

POD_FIELDS: Final[FieldSpec] = {
    "apiVersion": True,
    "kind": True,
    "metadata": {
        "name": True,
        "namespace": True,
        "uid": True,
        "resourceVersion": True,
        "generation": True,
        "creationTimestamp": True,
        "deletionTimestamp": True,
        "deletionGracePeriodSeconds": True,
        "labels": True,
        "annotations": True,
        "finalizers": True,
        "ownerReferences": {"apiVersion": True, "kind": True, "name": True, "uid": True, "controller": True},
    },
    "spec": {
        "nodeName": True,
        "restartPolicy": True,
        "containers": {"name": True, "image": True, "ports": {"name": True, "containerPort": True}},
    },
    "status": {
        "phase": True,
        "reason": True,
        "message": True,
        "podIP": True,
        "hostIP": True,
        "startTime": True,
        "conditions": _CONDITION,
        "containerStatuses": _CONTAINER_STATUS,
        "initContainerStatuses": _CONTAINER_STATUS,
    },
}

# Interned: label values, images, condition types and reasons repeat across thousands of Pods.
pod_transform: Final[Transform] = keep_fields(POD_FIELDS, then=intern_strings)

# Fields of a worker group whose managers are kept (managedFields' fieldsV1 names them "f:<field>").
_SCALE_FIELDS = ("f:replicas", "f:minReplicas", "f:maxReplicas", "f:groupName")


def _prune_groups(fields: Any) -> Any:
    """Keep a workerGroupSpecs subtree's scale fields and the keys that locate them ("k:{...}", ".")."""
    if not isinstance(fields, dict):
        return fields
    out: dict[str, Any] = {}
    for key, sub in fields.items():
        if key in _SCALE_FIELDS or key == ".":
            out[key] = sub
        elif key.startswith(("k:", "i:", "v:")):
            pruned = _prune_groups(sub)
            if pruned:
                out[key] = pruned
    return out


def _scale_entry(entry: Mapping[str, Any]) -> Obj | None:
    """A managedFields entry pruned to the worker groups' scale fields, or None if it owns none.

    An atomic list (how the CRD declares workerGroupSpecs) shows as "f:workerGroupSpecs": {}: its manager
    owns the whole list, replicas included."""
    spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
    if not isinstance(spec, dict) or "f:workerGroupSpecs" not in spec:
        return None
    groups = spec["f:workerGroupSpecs"]
    pruned = _prune_groups(groups) if groups else {}
    if groups and not pruned:
        return None  # owns other fields of the groups only
    kept = {k: entry[k] for k in ("manager", "operation", "subresource", "time", "apiVersion") if k in entry}
    kept["fieldsType"] = "FieldsV1"
    kept["fieldsV1"] = {"f:spec": {"f:workerGroupSpecs": pruned}}
    return kept


def raycluster_transform(obj: Obj) -> Obj:
    md = obj.get("metadata")
    if isinstance(md, dict):
        entries = md.pop("managedFields", None) or []
        scale = [e for e in (_scale_entry(x) for x in entries if isinstance(x, dict)) if e is not None]
        if scale:
            md["managedFields"] = scale
    return obj


def replicas_managers(cluster: Mapping[str, Any]) -> list[str]:
    """The field managers (e.g. "kubectl-edit", "autoscaler", "kube-controller-manager") that own some
    worker group's replica fields of a cached RayCluster, in managedFields order."""
    out: list[str] = []
    for e in (cluster.get("metadata") or {}).get("managedFields") or []:
        name = str(e.get("manager") or "")
        if name and name not in out:
            out.append(name)
    return out


TRANSFORMS: Final[Mapping[Resource, Transform]] = {PODS: pod_transform, RAYCLUSTERS: raycluster_transform}


def transform_for(resource: Resource) -> Transform:
    """The transform every informer of that kind uses (see the module docstring)."""
    return TRANSFORMS.get(resource, strip_managed_fields)


def informer(manager: Manager, resource: Resource, *, label_selector: str | None = None) -> Informer:
    """The manager's shared informer of `resource`, caching what this module keeps of that kind."""
    return manager.informer(resource, label_selector=label_selector, transform=transform_for(resource))
