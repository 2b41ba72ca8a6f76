"""Reading and copying Kubernetes objects held as plain dicts.

Every accessor is total: a missing or malformed field (an object written while the webhook was off, a
hand-edited status) reads as empty, never raises. Kind-specific readers build on these (`rayop.api`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from rayop.base.types import Obj

T = TypeVar("T")

_EMPTY: Mapping[str, Any] = {}


def clone(obj: T) -> T:
    """A deep copy of JSON-shaped data (what the API server sends and the builders make).

    An orjson round trip copies a pod about seven times faster than `copy.deepcopy`, which matters
    when every reconcile copies its cluster and every built pod copies its group's template. Anything
    orjson refuses (non-string keys, integers beyond 64 bits, other types) falls back to
    `copy.deepcopy`; a tuple inside the data comes back as a list, as it would from the API server.
    """
    try:
        out = orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)
    if type(out) is not type(obj):  # a tuple became a list
        return copy.deepcopy(obj)
    return out  # type: ignore[no-any-return]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _map((obj or _EMPTY).get("metadata"))


def spec_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _map((obj or _EMPTY).get("spec"))


def status_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _map((obj or _EMPTY).get("status"))


def name_of(obj: Mapping[str, Any] | None) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any] | None) -> str:
    return str(meta(obj).get("namespace") or "")


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return _map(meta(obj).get("labels"))


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return _map(meta(obj).get("annotations"))


def ref(obj: Mapping[str, Any] | None) -> str:
    """`namespace/name`, for logs and messages."""
    return f"{namespace_of(obj)}/{name_of(obj)}"


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


# Ownership ----------------------------------------------------------------------------------------------


def owner_reference(
    owner: Mapping[str, Any], *, api_version: str | None = None, kind: str | None = None
) -> Obj:
    """The controller ownerReference to `owner` (garbage collection follows it; deletion of the owner
    waits for it with blockOwnerDeletion). `api_version` and `kind` default to the owner's own."""
    m = meta(owner)
    return {
        "apiVersion": api_version or str(owner.get("apiVersion") or ""),
        "kind": kind or str(owner.get("kind") or ""),
        "name": str(m.get("name") or ""),
        "uid": str(m.get("uid") or ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_references(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    refs = meta(obj).get("ownerReferences")
    return [r for r in refs if isinstance(r, Mapping)] if isinstance(refs, list) else []


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference marked `controller: true`, if any."""
    return next((r for r in owner_references(obj) if r.get("controller")), None)


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = meta(owner).get("uid")
    c = controller_ref(obj)
    return bool(uid) and c is not None and c.get("uid") == uid


def set_controller(obj: Obj, owner: Mapping[str, Any], *, api_version: str = "", kind: str = "") -> Obj:
    """Put `obj` in its owner's namespace under its controller reference, unless it already has a
    controller (a builder that chose another owner wins)."""
    m = obj.setdefault("metadata", {})
    m["namespace"] = namespace_of(owner)
    refs = list(owner_references(obj))
    if not any(r.get("controller") for r in refs):
        refs.append(owner_reference(owner, api_version=api_version or None, kind=kind or None))
    m["ownerReferences"] = refs
    return obj


# Conditions ---------------------------------------------------------------------------------------------


def conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conds = status_of(obj).get("conditions")
    return [c for c in conds if isinstance(c, Mapping)] if isinstance(conds, list) else []


def find_condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions(obj) if c.get("type") == ctype), None)


def condition_true(obj: Mapping[str, Any], ctype: str) -> bool:
    c = find_condition(obj, ctype)
    return c is not None and c.get("status") == "True"


# Label selectors ----------------------------------------------------------------------------------------


def selector(labels: Mapping[str, str]) -> str:
    """An equality label selector, `a=1,b=2`, for list and watch requests."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def labels_match(obj: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    have = labels_of(obj)
    return all(have.get(k) == v for k, v in wanted.items())
