"""Status writes: only when something changed, always with the resourceVersion that was read.

A reconciler computes the new status from a cached object; writing it with that object's
resourceVersion makes the API server refuse (409) a write based on stale state instead of silently
overwriting a newer status. The caller lets the controller requeue on 409 (KubeRay does the same with
`r.Status().Update`). Skipping unchanged writes keeps etcd and the watchers quiet: KubeRay compares with
`utils.InconsistentRayClusterStatus` for the same reason.

The body carries only what the status subresource reads (kind, name, namespace, resourceVersion,
status): the API server keeps the stored spec whatever the body says, so sending it would only cost a
copy and bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable

from rayop.base.objects import meta
from rayop.base.types import Obj
from rayop.runtime.client import ApiClient, Resource

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


def status_body(resource: Resource, obj: Obj, status: Obj) -> Obj:
    m = meta(obj)
    if not m.get("resourceVersion"):
        raise ValueError("a status write needs the object's metadata.resourceVersion")
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "resourceVersion": m["resourceVersion"],
        },
        "status": status,
    }


async def write_status(client: ApiClient, resource: Resource, obj: Obj, status: Obj) -> Obj:
    """PUT obj's /status; returns the stored object (with its new resourceVersion). Raises ApiError (409
    on a stale resourceVersion). `obj`, typically a shared cached object, is not modified."""
    return await client.replace_status(resource, status_body(resource, obj, status))


async def write_status_if_changed(
    client: ApiClient,
    resource: Resource,
    obj: Obj,
    new_status: Obj,
    changed: Changed = status_differs,
) -> Obj | None:
    """`write_status` when changed(old status, new status); None when nothing was written."""
    if not changed(obj.get("status") or {}, new_status):
        return None
    return await write_status(client, resource, obj, new_status)
