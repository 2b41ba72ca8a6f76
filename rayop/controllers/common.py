"""What the reconcilers share: event helpers, the writes they make on behalf of an owner object (each
with the event KubeRay records for it), status writes, and the caches' selectors and indexes.

Every reconciler follows the same rules here: an event is best effort and never fails a reconcile; a
create that finds the object already there is not an error (an earlier pass, whose status write did not
land, made it); a status is written with the resourceVersion it was computed from, so a stale write is
refused (409) rather than overwriting a newer status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

from rayop.api import constants as C
from rayop.base.objects import labels_of, name_of, namespace_of, ref
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.client import ApiClient, ApiError
from rayop.runtime.protocols import Key, Recorder
from rayop.runtime.status import write_status

log = logging.getLogger("rayop.controllers")

NORMAL: Final = "Normal"
WARNING: Final = "Warning"

# Event actions (events.k8s.io `action`), as KubeRay's recorder sets them.
ACT_CREATE: Final = "Create"
ACT_DELETE: Final = "Delete"
ACT_UPDATE: Final = "Update"
ACT_VALIDATE: Final = "Validate"
ACT_CLEANUP: Final = "Cleanup"
ACT_SUSPEND: Final = "Suspend"
ACT_RECONCILE: Final = "Reconcile"

# The Pods the operator caches: Ray's own, never every Pod of the cluster (KubeRay's manager cache,
# ray-operator/controllers/ray/utils/... internal/managercache). Every controller uses the same
# selectors, so the manager shares one informer per kind.
POD_SELECTOR: Final = (
    f"{C.LABEL_NODE_TYPE} in ({C.NODE_TYPE_HEAD},{C.NODE_TYPE_WORKER},{C.NODE_TYPE_REDIS_CLEANUP})"
)
JOB_SELECTOR: Final = f"{C.LABEL_CREATED_BY}={C.CREATED_BY_VALUE}"

# Index name on the Pod and Service caches: "<namespace>/<cluster>" of the `ray.io/cluster` label.
INDEX_CLUSTER: Final = "raycluster"


def cluster_key(namespace: str, name: str) -> str:
    """The INDEX_CLUSTER value of a RayCluster's Pods and Services."""
    return f"{namespace}/{name}"


def cluster_selector(cluster: str, *, node_type: str | None = None, group: str | None = None) -> str:
    """A label selector for one RayCluster's objects, narrowed to a node type or a worker group."""
    terms = [f"{C.LABEL_CLUSTER}={cluster}"]
    if node_type is not None:
        terms.append(f"{C.LABEL_NODE_TYPE}={node_type}")
    if group is not None:
        terms.append(f"{C.LABEL_GROUP}={group}")
    return ",".join(terms)


def node_type(pod: Mapping[str, object]) -> str:
    return str(labels_of(pod).get(C.LABEL_NODE_TYPE, ""))


def split_key(key: Key | str) -> tuple[str, str]:
    if isinstance(key, tuple):
        return str(key[0]), str(key[1])
    ns, _, name = str(key).partition("/")
    return ns, name


class StatusPacer:
    """When a status change that is only progress (Pods turning ready one by one) may be written.

    News is written at once. Progress waits until `interval` has passed since the object's last status
    write, doubled for each progress-only write in a row, up to `interval_max`: Pods turning ready one
    after another make a few writes, not one each, however long they take. Keys are (namespace, name).
    """

    def __init__(self, interval: float, interval_max: float) -> None:
        self.interval = interval
        self.interval_max = interval_max
        self._at: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last write, progress streak)

    def wait(self, key: tuple[str, str], now: float, progress: bool) -> float:
        """Seconds the write must still wait; 0: write now."""
        if not progress:
            return 0.0
        last, streak = self._at.get(key, (float("-inf"), 0))
        interval = min(self.interval * 2.0**streak, self.interval_max)
        return max(0.05, interval - (now - last)) if now - last < interval else 0.0

    def hold(self, key: tuple[str, str], now: float) -> None:
        """Start the clock for an object whose status was never written, so that its first status, when
        it is only progress, waits `interval` from now rather than going out at once."""
        self._at.setdefault(key, (now, 0))

    def wrote(self, key: tuple[str, str], now: float, progress: bool) -> None:
        streak = self._at.get(key, (0.0, 0))[1] + 1 if progress else 0
        self._at[key] = (now, min(streak, 16))

    def forget(self, gone: Callable[[tuple[str, str]], bool]) -> None:
        """Drop the keys `gone` says belong to deleted objects."""
        self._at = {k: v for k, v in self._at.items() if not gone(k)}


class CalmGate:
    """When a write that can wait may go: bookkeeping (a RayWorkerGroup's creation and status) waits while
    the client is busy (ApiClient.busy: a burst of Pod creates in flight), at most `longest` seconds per
    key, so the API server spends a burst on the Pods the user waits for. Non-blocking: `wait` says how
    long to requeue, and the reconcile worker is free meanwhile. Keys are (namespace, name)."""

    RECHECK = 0.25

    def __init__(self, busy: Callable[[], bool], longest: float) -> None:
        self.busy = busy
        self.longest = longest
        self._since: dict[tuple[str, str], float] = {}  # key -> when it was first put off

    def wait(self, key: tuple[str, str], now: float) -> float:
        """Seconds to put the write off; 0: write now."""
        if self.longest <= 0 or not self.busy():
            self._since.pop(key, None)
            return 0.0
        waited = now - self._since.setdefault(key, now)
        if waited >= self.longest:
            self._since.pop(key, None)
            return 0.0
        return min(self.RECHECK, self.longest - waited)

    def forget(self, gone: Callable[[tuple[str, str]], bool]) -> None:
        self._since = {k: v for k, v in self._since.items() if not gone(k)}


async def gather_first_error(coros: Iterable[Awaitable[None]]) -> None:
    """Run all, let each finish, then raise the first failure (none is left running or unobserved)."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


class Writer:
    """The writes a reconciler makes on behalf of one owner object, each followed by its event."""

    def __init__(self, client: ApiClient, recorder: Recorder) -> None:
        self.client = client
        self.recorder = recorder

    def event(self, obj: Obj, type_: str, reason: str, action: str, message: str) -> None:
        """Best effort: an event is a courtesy, never a reason to fail a reconcile."""
        try:
            self.recorder.record(obj, type_, reason, action, message)
        except Exception:
            log.debug("event %s for %s not recorded", reason, ref(obj), exc_info=True)

    async def create(
        self, owner: Obj, res: Resource, obj: Obj, *, what: str, created: str, failed: str
    ) -> Obj | None:
        """POST `obj`; event `created` on success, `failed` (then raise) on an error. Returns the created
        object, or None when one of that name exists already."""
        ns, name = namespace_of(obj) or namespace_of(owner), name_of(obj)
        try:
            out = await self.client.create(res, obj, ns)
        except ApiError as e:
            if e.already_exists:
                return None
            self.event(
                owner, WARNING, failed, ACT_CREATE, f"Failed to create {what} {ns}/{name}, {e.message}"
            )
            raise
        self.event(owner, NORMAL, created, ACT_CREATE, f"Created {what} {ns}/{name}")
        return out

    async def delete(
        self,
        owner: Obj,
        res: Resource,
        name: str,
        *,
        what: str,
        deleted: str,
        failed: str,
        propagation: str | None = None,
    ) -> bool:
        """DELETE one object of the owner's namespace; event `deleted` when it was there. Returns whether
        it was (a missing object is not an error)."""
        ns = namespace_of(owner)
        try:
            gone = await self.client.delete(res, name, ns, propagation=propagation, ignore_not_found=True)
        except ApiError as e:
            self.event(
                owner, WARNING, failed, ACT_DELETE, f"Failed to delete {what} {ns}/{name}, {e.message}"
            )
            raise
        if gone is None:
            return False
        self.event(owner, NORMAL, deleted, ACT_DELETE, f"Deleted {what} {ns}/{name}")
        return True

    async def set_finalizers(self, res: Resource, obj: Obj, finalizers: list[str]) -> Obj:
        """A merge patch of `metadata.finalizers` only, guarded by the resourceVersion: the spec, which
        users and Ray's autoscaler own, is never written."""
        m = obj.get("metadata") or {}
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": m.get("resourceVersion")}}
        out: Obj = await self.client.patch(res, name_of(obj), patch, namespace_of(obj), patch_type="merge")
        return out

    async def write_status(self, res: Resource, obj: Obj, status: Obj) -> Obj:
        """PUT /status with the resourceVersion `obj` was read at (409 when someone wrote since)."""
        return await write_status(self.client, res, obj, status)
