"""Who changed a worker group's `replicas`: read from the object's managedFields before the cache drops them.

The API server records, per field manager, the fields it last set (`metadata.managedFields`). The informer
caches strip managedFields (`rayop.runtime.cache.strip_managed_fields`: often half an object), so the view
wraps the RayCluster cache's transform with `remember_managers`, which keeps just the answer to "which manager
last set each group's replicas" in a small side table, then lets the usual transform run.

`workerGroupSpecs` is an atomic list in the CRD (no `x-kubernetes-list-type`), so whoever last changed any
element owns the whole list; a keyed list (`k:{"groupName":...}` entries) is read per group as well, so the
answer stays right if the schema ever makes the list a map.

Field managers name clients, not people. The names mapped here are the ones the API server derives from each
client's User-Agent (or its `fieldManager` parameter): Ray's autoscaler calls the API with Python `requests`
(`python/ray/autoscaler/_private/kuberay/node_provider.py`), the HPA and `kubectl scale` write through a
kind's `scale` subresource, kubectl names itself, and rayop's controllers use `rayop`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rayop.base.objects import meta
from rayop.base.times import parse_timestamp
from rayop.base.types import Obj

log = logging.getLogger("rayop.ui")

AUTOSCALER = "Ray autoscaler"
SERVE_AUTOSCALER = "Ray Serve autoscaler"
HPA = "HPA"
OPERATOR = "operator"
USER = "user"
UNKNOWN = "unknown"

# Field managers as the API server records them for the clients that change replicas. Ray Serve's
# autoscaler changes replicas inside Ray, not in an object: the view names it with SERVE_AUTOSCALER_MANAGER.
SERVE_AUTOSCALER_MANAGER = "ray-serve-autoscaler"
_AUTOSCALER_MANAGERS = ("python-requests", "ray-autoscaler", "autoscaler")
_HPA_MANAGERS = ("kube-controller-manager", "horizontal-pod-autoscaler")
_OPERATOR_MANAGERS = ("rayop", "kuberay-operator", "ray-operator")


@dataclass(frozen=True)
class FieldManager:
    """The manager that last set a field, what kind of actor that is, and when (seconds; 0 if unknown)."""

    manager: str
    operation: str = ""
    time: float = 0.0

    @property
    def actor(self) -> str:
        return classify(self.manager)

    @property
    def label(self) -> str:
        """How the view names it: the actor, with the manager when that says more."""
        actor = self.actor
        if actor in (USER, UNKNOWN) and self.manager:
            return f"{actor} ({self.manager})"
        return actor


def classify(manager: str) -> str:
    """Ray autoscaler, HPA, operator or user, from a field manager's name."""
    m = manager.lower()
    if not m:
        return UNKNOWN
    if m == SERVE_AUTOSCALER_MANAGER:
        return SERVE_AUTOSCALER
    if m.startswith(_AUTOSCALER_MANAGERS):
        return AUTOSCALER
    if m.startswith(_HPA_MANAGERS):
        return HPA
    if m.startswith(_OPERATOR_MANAGERS):
        return OPERATOR
    return USER


def _fields(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    f = entry.get("fieldsV1")
    return f if isinstance(f, Mapping) else {}


def _group_key(key: str) -> str | None:
    # `k:{"groupName":"small"}` in a keyed list.
    if not key.startswith("k:"):
        return None
    try:
        k = json.loads(key[2:])
    except ValueError:
        return None
    name = k.get("groupName") if isinstance(k, dict) else None
    return name if isinstance(name, str) else None


def replicas_managers(obj: Mapping[str, Any], groups: list[str]) -> dict[str, FieldManager]:
    """For each named worker group, the manager that last set its replicas (latest `time` wins)."""
    found: dict[str, FieldManager] = {}
    entries = meta(obj).get("managedFields")
    if not isinstance(entries, list):
        return found
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("subresource") == "status":
            continue  # status writes never touch the spec (a `scale` subresource write does)
        wgs = _fields(entry).get("f:spec")
        wgs = wgs.get("f:workerGroupSpecs") if isinstance(wgs, Mapping) else None
        if not isinstance(wgs, Mapping):
            continue
        who = FieldManager(
            str(entry.get("manager") or ""),
            str(entry.get("operation") or ""),
            parse_timestamp(entry.get("time")) or 0.0,
        )
        keyed = {g: v for k, v in wgs.items() if (g := _group_key(k)) is not None}
        if keyed:
            owned = [g for g, v in keyed.items() if isinstance(v, Mapping) and "f:replicas" in v]
        else:
            owned = list(groups)  # atomic list: the manager owns every element
        for g in owned:
            prev = found.get(g)
            if prev is None or who.time >= prev.time:
                found[g] = who
    return found


def field_manager(obj: Mapping[str, Any], *path: str) -> FieldManager | None:
    """The manager that last set the field at `path` (e.g. "f:spec", "f:serveConfigV2"), latest `time` first."""
    best: FieldManager | None = None
    entries = meta(obj).get("managedFields")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or entry.get("subresource") == "status":
            continue
        node: Any = _fields(entry)
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            continue
        who = FieldManager(
            str(entry.get("manager") or ""),
            str(entry.get("operation") or ""),
            parse_timestamp(entry.get("time")) or 0.0,
        )
        if best is None or who.time >= best.time:
            best = who
    return best


def serve_config_manager(obj: Mapping[str, Any]) -> dict[str, FieldManager]:
    """A RayService's `spec.serveConfigV2` (where Serve's replica counts are written), keyed "serveConfigV2"."""
    who = field_manager(obj, "f:spec", "f:serveConfigV2")
    return {"serveConfigV2": who} if who is not None else {}


def group_replicas_managers(obj: Mapping[str, Any]) -> dict[str, FieldManager]:
    return replicas_managers(obj, group_names(obj))


def group_names(obj: Mapping[str, Any]) -> list[str]:
    spec = obj.get("spec")
    groups = spec.get("workerGroupSpecs") if isinstance(spec, Mapping) else None
    if not isinstance(groups, list):
        return []
    return [str(g.get("groupName")) for g in groups if isinstance(g, Mapping) and g.get("groupName")]


class ManagerTable:
    """The side table: (namespace, name) -> {field: FieldManager}, filled by the cache's transform with what
    `reader` finds (by default: who last set each worker group's replicas)."""

    def __init__(self, reader: Callable[[Obj], dict[str, FieldManager]] | None = None) -> None:
        self._by_key: dict[tuple[str, str], dict[str, FieldManager]] = {}
        self.reader = reader or group_replicas_managers

    def get(self, namespace: str, name: str) -> dict[str, FieldManager]:
        return self._by_key.get((namespace, name), {})

    def forget(self, namespace: str, name: str) -> None:
        self._by_key.pop((namespace, name), None)

    def note(self, obj: Obj) -> None:
        md = meta(obj)
        if not isinstance(md.get("managedFields"), list):
            return  # already stripped (or never sent): keep what we knew
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        self._by_key[key] = self.reader(obj)

    def wrap(self, transform: Callable[[Obj], Obj] | None) -> Callable[[Obj], Obj]:
        """A transform that notes the managers, then runs `transform` (which may strip managedFields)."""

        def noting(obj: Obj) -> Obj:
            try:
                self.note(obj)
            except Exception:  # never let the view break the cache that the controllers read
                log.debug("could not read the field managers of %s", meta(obj).get("name"), exc_info=True)
            return transform(obj) if transform is not None else obj

        noting.__wrapped__ = transform  # type: ignore[attr-defined]
        return noting

    def __len__(self) -> int:
        return len(self._by_key)
