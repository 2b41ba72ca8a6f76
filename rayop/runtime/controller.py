"""Level-based controllers: informer events become keys in a work queue, N workers reconcile them.

A reconcile is handed only a key (namespace, name) and must read the current state from the caches:
events are merged, so any number of changes between two reconciles lead to one reconcile of the newest
state. This is controller-runtime's model (KubeRay's `SetupWithManager`: `For(RayCluster)` with
generation/label/annotation predicates, `Owns(Pod, Service, ...)`).

Error policy: an exception or a returned `Result(requeue=True)` requeues the key with per-key
exponential backoff; a `Result(requeue_after=s)` requeues after s seconds and resets the backoff. A
worker never dies from a reconcile's exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

import aiohttp

from rayop.base.objects import meta, namespace_of, owner_references
from rayop.base.types import Obj
from rayop.runtime import metrics
from rayop.runtime.cache import ADDED, DELETED
from rayop.runtime.client import ApiError
from rayop.runtime.protocols import Informer, Key, Mapper, Predicate, Reconcile, Result
from rayop.runtime.queue import QueueShutDown, RateLimiter, WorkQueue

log = logging.getLogger("rayop.runtime.controller")

# -- predicates ---------------------------------------------------------------------------------


def generation_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    """True for adds and deletes, and for updates that changed metadata.generation (spec changes)."""
    if event != "MODIFIED" or old is None:
        return True
    return meta(obj).get("generation") != meta(old).get("generation")


def labels_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return (meta(obj).get("labels") or {}) != (meta(old).get("labels") or {})


def annotations_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return (meta(obj).get("annotations") or {}) != (meta(old).get("annotations") or {})


def deletion_started(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return bool(meta(obj).get("deletionTimestamp")) != bool(meta(old).get("deletionTimestamp"))


def any_of(*preds: Predicate) -> Predicate:
    def pred(event: str, obj: Obj, old: Obj | None) -> bool:
        return any(p(event, obj, old) for p in preds)

    return pred


def always(event: str, obj: Obj, old: Obj | None) -> bool:
    return True


# KubeRay's RayCluster predicate: GenerationChanged | LabelChanged | AnnotationChanged, so status-only
# writes (our own, every reconcile) do not trigger reconciles. Deletion start is added because a
# finalizer-holding object must be reconciled when deletionTimestamp appears; the API server also
# bumps generation then, so this only makes the rule explicit.
default_predicate: Predicate = any_of(
    generation_changed, labels_changed, annotations_changed, deletion_started
)


# -- owner mapping ------------------------------------------------------------------------------


def controller_owner(obj: Obj, owner_kind: str, owner_group: str | None = None) -> Key | None:
    """The (namespace, name) of obj's controller ownerReference of the given kind, if any."""
    for ref in owner_references(obj):
        if not ref.get("controller") or ref.get("kind") != owner_kind:
            continue
        if owner_group is not None:
            api_version = str(ref.get("apiVersion") or "")
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            if group != owner_group:
                continue
        return (namespace_of(obj), str(ref.get("name")))
    return None


def map_by_label(label: str) -> Mapper:
    """Map a child to the parent named by one of its labels (e.g. ray.io/cluster), same namespace."""

    def mapper(obj: Obj) -> list[Key]:
        md = meta(obj)
        value = (md.get("labels") or {}).get(label)
        return [(md.get("namespace") or "", str(value))] if value else []

    return mapper


# -- controller ---------------------------------------------------------------------------------


class Controller:
    """Reconciles keys from its queue with `concurrency` workers. See the module docstring."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        concurrency: int = 4,
        rate_limiter: RateLimiter[Key] | None = None,
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        self.concurrency = max(1, concurrency)
        self.queue: WorkQueue[Key] = WorkQueue(name, rate_limiter)
        self.informers: list[Informer] = []
        self._workers: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._ids = itertools.count(1)
        self._m_total = {
            r: metrics.RECONCILE_TOTAL.labels(name, r)
            for r in ("success", "error", "requeue", "requeue_after")
        }
        self._m_errors = metrics.RECONCILE_ERRORS.labels(name)
        self._m_panics = metrics.RECONCILE_PANICS.labels(name)
        self._m_time = metrics.RECONCILE_TIME.labels(name)
        self._m_active = metrics.ACTIVE_WORKERS.labels(name)
        metrics.MAX_CONCURRENT.labels(name).set(self.concurrency)

    def __repr__(self) -> str:
        return f"Controller({self.name})"

    # -- wiring ----------------------------------------------------------------------------------

    def watch_primary(self, informer: Informer, predicate: Predicate = default_predicate) -> None:
        """Enqueue the object's own key for events that pass the predicate."""

        def handler(event: str, obj: Obj, old: Obj | None) -> None:
            if predicate(event, obj, old):
                md = meta(obj)
                self.queue.add((md.get("namespace") or "", str(md.get("name"))))

        self._track(informer)
        informer.add_handler(handler)

    def watch_owned(
        self,
        informer: Informer,
        owner_kind: str,
        mapper: Mapper | None = None,
        *,
        owner_group: str | None = None,
        predicate: Predicate = always,
    ) -> None:
        """Enqueue the parent of a child: its controller ownerReference of owner_kind, or mapper(obj).

        On an update that changed the owner both the old and the new parent are enqueued.
        """

        def parents(obj: Obj) -> list[Key]:
            if mapper is not None:
                return mapper(obj)
            key = controller_owner(obj, owner_kind, owner_group)
            return [key] if key else []

        def handler(event: str, obj: Obj, old: Obj | None) -> None:
            if not predicate(event, obj, old):
                return
            keys = parents(obj)
            if old is not None:
                keys = keys + [k for k in parents(old) if k not in keys]
            for key in keys:
                self.queue.add(key)

        self._track(informer)
        informer.add_handler(handler)

    def watch_map(self, informer: Informer, mapper: Mapper, predicate: Predicate = always) -> None:
        """Enqueue whatever keys mapper(obj) returns (any relation, not only ownership)."""
        self.watch_owned(informer, "", mapper, predicate=predicate)

    def _track(self, informer: Informer) -> None:
        if informer not in self.informers:
            self.informers.append(informer)

    def enqueue(self, key: Key, after: float | None = None) -> None:
        if after:
            self.queue.add_after(key, after)
        else:
            self.queue.add(key)

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for the watched caches, run the workers until stop(), then let them finish their item."""
        for inf in self.informers:
            await inf.wait_synced()
        log.info("starting workers", extra={"controller": self.name, "workers": self.concurrency})
        self._workers = [
            asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
            for i in range(self.concurrency)
        ]
        try:
            await self._stopped.wait()
        finally:
            self.queue.shutdown_now()
            await asyncio.gather(*self._workers, return_exceptions=True)

    def stop(self) -> None:
        self._stopped.set()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: Key) -> None:
        rid = next(self._ids)
        extra = {"controller": self.name, "namespace": key[0], "object": key[1], "reconcileID": rid}
        start = time.monotonic()
        self._m_active.inc()
        try:
            res = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except ApiError as e:
            self._m_errors.inc()
            self._m_total["error"].inc()
            self.queue.add_rate_limited(key)
            if e.conflict or e.status == 429:
                # Stale cache or write race: normal under load, the retry reads fresher state.
                log.info("reconcile conflict, requeued: %s", e.message, extra=extra)
            else:
                log.error("reconcile failed: %s", e, extra=extra)
            return
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as e:
            # The API server (or a dashboard) restarting or unreachable: an error to retry, as a Go client
            # returns one, not a panic; no traceback either, since every in-flight reconcile hits it at once.
            self._m_errors.inc()
            self._m_total["error"].inc()
            self.queue.add_rate_limited(key)
            log.warning("reconcile failed, will retry: %s: %s", type(e).__name__, e, extra=extra)
            return
        except Exception:
            self._m_errors.inc()
            self._m_panics.inc()
            self._m_total["error"].inc()
            self.queue.add_rate_limited(key)
            log.exception("reconcile failed with an unexpected exception", extra=extra)
            return
        finally:
            self._m_active.dec()
            self._m_time.observe(time.monotonic() - start)
        if res is not None and res.requeue_after is not None and res.requeue_after > 0:
            self.queue.forget(key)
            self.queue.add_after(key, res.requeue_after)
            self._m_total["requeue_after"].inc()
        elif res is not None and res.requeue:
            self.queue.add_rate_limited(key)
            self._m_total["requeue"].inc()
        else:
            self.queue.forget(key)
            self._m_total["success"].inc()


async def run_all(controllers: list[Controller]) -> None:
    """Run several controllers until all stop; used by the manager."""
    tasks = [asyncio.create_task(c.run(), name=f"controller-{c.name}") for c in controllers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = [
    "ADDED",
    "DELETED",
    "Controller",
    "Key",
    "Mapper",
    "Predicate",
    "Reconcile",
    "Result",
    "always",
    "annotations_changed",
    "any_of",
    "controller_owner",
    "default_predicate",
    "deletion_started",
    "generation_changed",
    "labels_changed",
    "map_by_label",
]
