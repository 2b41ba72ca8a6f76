"""Status writes: only when something changed, always with the resourceVersion that was read.

A reconciler computes the new status from a cached object; writing it with that object's
resourceVersion makes the API server refuse (409) a write based on stale state instead of silently
overwriting a newer status. The caller lets the controller requeue on 409 (KubeRay does the same with
`r.Status().Update`). Skipping unchanged writes keeps etcd and the watchers quiet: KubeRay compares with
`utils.InconsistentRayClusterStatus` for the same reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from rayop.runtime.client import ApiClient, Resource

Obj = dict[str, Any]
Changed = Callable[[Obj, Obj], bool]


def status_differs(old: Obj, new: Obj) -> bool:
    return old != new


def ignoring(*fields: str) -> Changed:
    """A `changed` test that ignores top-level status fields (e.g. "lastUpdateTime")."""

    def changed(old: Obj, new: Obj) -> bool:
        strip = set(fields)
        return {k: v for k, v in old.items() if k not in strip} != {
            k: v for k, v in new.items() if k not in strip
        }

    return changed


async def write_status_if_changed(
    client: ApiClient,
    resource: Resource,
    obj: Obj,
    new_status: Obj,
    changed: Changed = status_differs,
) -> Obj | None:
    """PUT obj's /status with new_status if changed(old_status, new_status); returns the stored object
    (with its new resourceVersion), or None when nothing was written. Raises ApiError (409 on a stale
    resourceVersion). obj itself, typically a shared cached object, is not modified."""
    old_status = obj.get("status") or {}
    if not changed(old_status, new_status):
        return None
    body = {k: v for k, v in obj.items() if k != "status"}
    body = copy.deepcopy(body)
    md = body.setdefault("metadata", {})
    if not md.get("resourceVersion"):
        raise ValueError("write_status_if_changed needs the object's metadata.resourceVersion")
    body.setdefault("kind", resource.kind)
    body.setdefault("apiVersion", resource.api_version)
    body["status"] = new_status
    return await client.replace_status(resource, body)
