"""List+watch caches ("informers") of plain dicts, with indexes and event handlers.

One Informer caches one kind, optionally scoped to namespaces and a label selector (KubeRay caches only
Ray Pods, `ray-operator/internal/managercache/cache.go`). Per namespace scope a reflector
task keeps the cache in step with the API server:

- LIST (paged), then WATCH from the list's resourceVersion with bookmarks and a server timeout of
  5-10 min (jittered so many watches do not reconnect together).
- After a normal stream end or a disconnect the watch resumes from the last resourceVersion seen (an
  object's or a BOOKMARK's), so nothing is missed and nothing is re-listed.
- 410 Gone (the resourceVersion was compacted away) forces a fresh LIST whose result replaces the cache:
  objects that vanished meanwhile get synthetic DELETED events, changed ones MODIFIED.
- Stall detection: a watch that delivers neither an event nor a bookmark for `stall_timeout` (70 s; the
  API server sends a bookmark about every minute) is dropped and resumed. Dead-but-open connections behind
  load balancers are the known failure mode (kopf#1276, #787).
- Errors (429, 5xx, network) back off exponentially with full jitter, honouring Retry-After.

Memory: the transform (default: strip metadata.managedFields, often half an object) runs before an object
is stored, and lists are processed page by page (100 objects) so a full list never sits in memory in
raw and parsed form at once; `compact` also interns strings, and `keep_fields` keeps only the fields a
caller names (the operator's lists per kind are in rayop/controllers/cached_fields.py; figures in
bench/informer_memory.py).

Cached objects are shared, not copied: treat everything `get`/`list`/`by_index` return as read-only and
deep-copy before changing it. Handlers run in the reflector task: keep them short (enqueue a key).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from rayop.base.objects import controller_ref, labels_match, owner_references
from rayop.base.types import Obj
from rayop.runtime import metrics
from rayop.runtime.client import ApiClient, ApiError, Resource
from rayop.runtime.protocols import Handler, IndexFunc, Transform

log = logging.getLogger("rayop.runtime.cache")

ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

# Aliases for annotations inside Informer, whose `list` method shadows the builtin there.
_ObjList = list[Obj]
_KeyList = list[ObjKey]
_StrList = list[str]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


def strip_managed_fields(obj: Obj) -> Obj:
    """Drop metadata.managedFields: often half an object's size and never read by reconcilers."""
    md = obj.get("metadata")
    if isinstance(md, dict):
        md.pop("managedFields", None)
    return obj


_INTERN_MAX = 64


def _intern_dict(d: dict[str, Any]) -> dict[str, Any]:
    # Hand-inlined type checks: this runs on every watch event, and function calls per scalar would
    # double its cost.
    intern = sys.intern
    out: dict[str, Any] = {}
    for k, v in d.items():
        t = type(v)
        if t is str:
            if len(v) <= _INTERN_MAX:
                v = intern(v)
        elif t is dict:
            v = _intern_dict(v)
        elif t is list:
            v = [_intern_item(x) for x in v]
        out[intern(k)] = v
    return out


def _intern_item(x: Any) -> Any:
    t = type(x)
    if t is dict:
        return _intern_dict(x)
    if t is str and len(x) <= _INTERN_MAX:
        return sys.intern(x)
    if t is list:
        return [_intern_item(y) for y in x]
    return x


def intern_strings(obj: Obj) -> Obj:
    """Share equal keys and short strings between cached objects. Each watch event is parsed on its
    own, so without this every cached Pod holds private copies of the same ~150 field names and of
    values such as image names, label values and condition types."""
    return _intern_dict(obj)


# What keep_fields keeps of an object: per key, True keeps the whole value; a nested FieldSpec keeps those
# keys of a dict value, or of each dict in a list value.
FieldSpec = Mapping[str, "FieldSpec | bool"]


def _keep(value: Any, spec: FieldSpec) -> Any:
    if type(value) is dict:
        out: dict[str, Any] = {}
        for k, sub in spec.items():
            v = value.get(k)
            if v is None:
                continue
            out[k] = v if sub is True else _keep(v, sub)  # type: ignore[arg-type]
        return out
    if type(value) is list:
        return [_keep(x, spec) for x in value]
    return value


def keep_fields(spec: FieldSpec, then: Transform | None = None) -> Transform:
    """A transform that keeps only the fields `spec` names (see FieldSpec), then applies `then` (if any).

    For caches of objects the operator creates by the thousand (Pods): a Pod as the API server returns it
    is mostly what the operator wrote itself (the template) and never reads back."""

    def transform(obj: Obj) -> Obj:
        kept: Obj = _keep(obj, spec)
        return then(kept) if then is not None else kept

    transform.__qualname__ = transform.__name__ = f"keep_fields({', '.join(spec)})"
    return transform


def compact(obj: Obj) -> Obj:
    """Strip managedFields, then intern strings: about a third less memory than stripping alone
    (bench/informer_memory.py), for roughly 0.1-0.4 ms of CPU per event; opt-in for that reason."""
    return intern_strings(strip_managed_fields(obj))


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    md = obj.get("metadata") or {}
    return (md.get("namespace") or "", md.get("name") or "")


def rv_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# -- ready-made index functions ------------------------------------------------------------------

INDEX_OWNER_UID = "owner-uid"
INDEX_CONTROLLER_UID = "controller-uid"


def index_by_owner_uid(obj: Obj) -> list[str]:
    """Every ownerReference's uid."""
    return [str(r["uid"]) for r in owner_references(obj) if r.get("uid")]


def index_by_controller_uid(obj: Obj) -> list[str]:
    """The uid of the controller ownerReference (controller: true), if any."""
    c = controller_ref(obj)
    return [str(c["uid"])] if c is not None and c.get("uid") else []


def index_by_label(label: str, *, namespaced: bool = True) -> IndexFunc:
    """Index by one label's value; with `namespaced` the value is "namespace/value" so that equal
    names in different namespaces (e.g. two RayClusters "demo") never mix."""

    def fn(obj: Obj) -> list[str]:
        md = obj.get("metadata") or {}
        value = (md.get("labels") or {}).get(label)
        if value is None:
            return []
        return [f"{md.get('namespace') or ''}/{value}" if namespaced else str(value)]

    return fn


def index_by_labels(*labels: str, namespaced: bool = True) -> IndexFunc:
    """Index by several labels' values joined with "/" (e.g. cluster and group); all must be set."""

    def fn(obj: Obj) -> list[str]:
        md = obj.get("metadata") or {}
        have = md.get("labels") or {}
        values = [have.get(label) for label in labels]
        if any(v is None for v in values):
            return []
        joined = "/".join(str(v) for v in values)
        return [f"{md.get('namespace') or ''}/{joined}" if namespaced else joined]

    return fn


def label_index_value(namespace: str, *values: str) -> str:
    """The by_index value that index_by_label(s)(namespaced=True) produce for these label values."""
    return "/".join([namespace, *values])


class Backoff:
    """Exponential backoff with full jitter, reset after a success."""

    def __init__(self, base: float = 0.8, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self, at_least: float = 0.0) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 16)
        return max(at_least, random.uniform(ceiling / 2, ceiling))

    def reset(self) -> None:
        self.attempt = 0


class _Stalled(Exception):
    pass


class Informer:
    """A cache of one kind; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        namespaces: Iterable[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = strip_managed_fields,
        page_size: int = 100,
        stall_timeout: float = 70.0,
        watch_timeout: tuple[int, int] = (300, 600),
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.client = client
        self.resource = resource
        scopes: list[str | None] = [namespace]
        if namespaces is not None:
            # An empty list means "all namespaces", like KubeRay's --watch-namespace="".
            scopes = [*sorted(set(namespaces))] or [None]
        if not resource.namespaced:
            scopes = [None]
        self.scopes = scopes
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.page_size = page_size
        self.stall_timeout = stall_timeout
        self.watch_timeout = watch_timeout
        self._backoff_factory = backoff
        self._store: dict[ObjKey, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[ObjKey]]] = {}
        self._index_values: dict[str, dict[ObjKey, list[str]]] = {}
        self._handlers: list[Handler] = []
        self._synced_scopes: set[str | None] = set()
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.resource_versions: dict[str | None, str] = {}
        sel = label_selector or ""
        self._m_objects = metrics.INFORMER_OBJECTS.labels(resource.plural, sel)
        self._metric_labels = (resource.plural, sel)
        self.relists = 0
        self.watch_restarts = 0

    def __repr__(self) -> str:
        return f"Informer({self.resource.plural}, scopes={self.scopes}, selector={self.label_selector!r})"

    # -- public reads ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self._store.get((namespace or "", name))

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[Obj]:
        out = []
        # A snapshot: /metrics collectors call this from the scrape thread while the loop mutates the store.
        for (ns, _), obj in list(self._store.items()):
            if namespace is not None and ns != namespace:
                continue
            if labels and not labels_match(obj, labels):
                continue
            out.append(obj)
        return out

    def keys(self) -> _KeyList:
        return [*self._store]

    def __len__(self) -> int:
        return len(self._store)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Add an index; existing objects are indexed at once."""
        self._indexers[name] = fn
        self._indices[name] = {}
        self._index_values[name] = {}
        for key, obj in self._store.items():
            self._index_one(name, fn, key, obj)

    def by_index(self, name: str, value: str) -> _ObjList:
        keys = self._indices[name].get(value)
        if not keys:
            return []
        return [self._store[k] for k in keys if k in self._store]

    def index_values(self, name: str) -> _StrList:
        return [v for v, ks in self._indices[name].items() if ks]

    def add_handler(self, fn: Handler) -> None:
        """Register fn(event_type, obj, old). Objects already cached are replayed to it as ADDED."""
        self._handlers.append(fn)
        for obj in list(self._store.values()):
            self._call(fn, ADDED, obj, None)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reflectors (returns at once; use wait_synced to wait for the first list)."""
        if self._tasks:
            return
        self._stopping = False
        for scope in self.scopes:
            self._tasks.append(
                asyncio.create_task(self._reflect(scope), name=f"informer-{self.resource.plural}-{scope}")
            )

    def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()

    async def wait_stopped(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- store mutation --------------------------------------------------------------------------

    def _index_one(self, name: str, fn: IndexFunc, key: ObjKey, obj: Obj) -> None:
        try:
            values = fn(obj)
        except Exception:
            log.exception("index %s failed on %s/%s", name, key[0], key[1])
            values = []
        index = self._indices[name]
        for v in values:
            index.setdefault(v, set()).add(key)
        if values:
            self._index_values[name][key] = values

    def _unindex(self, key: ObjKey) -> None:
        for name, per_key in self._index_values.items():
            old = per_key.pop(key, None)
            if not old:
                continue
            index = self._indices[name]
            for v in old:
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]

    def _put(self, obj: Obj) -> tuple[Obj, Obj | None]:
        if self.transform is not None:
            obj = self.transform(obj)
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        key = obj_key(obj)
        old = self._store.get(key)
        if old is not None:
            self._unindex(key)
        self._store[key] = obj
        for name, fn in self._indexers.items():
            self._index_one(name, fn, key, obj)
        return obj, old

    def _remove(self, key: ObjKey) -> Obj | None:
        old = self._store.pop(key, None)
        if old is not None:
            self._unindex(key)
        return old

    def _call(self, fn: Handler, event: str, obj: Obj, old: Obj | None) -> None:
        try:
            fn(event, obj, old)
        except Exception:
            log.exception("%s handler failed on %s %s/%s", self.resource.plural, event, *obj_key(obj))

    def _dispatch(self, event: str, obj: Obj, old: Obj | None) -> None:
        for fn in self._handlers:
            self._call(fn, event, obj, old)

    def _in_scope(self, key: ObjKey, scope: str | None) -> bool:
        return scope is None or key[0] == scope

    # -- reflector -------------------------------------------------------------------------------

    async def _reflect(self, scope: str | None) -> None:
        backoff = self._backoff_factory()
        need_list = True
        while not self._stopping:
            reason = "closed"
            delay = 0.0
            try:
                if need_list:
                    await self._list(scope)
                    need_list = False
                    backoff.reset()
                started = asyncio.get_running_loop().time()
                got_events = await self._watch(scope)
                if got_events:
                    backoff.reset()
                    continue
                if asyncio.get_running_loop().time() - started >= 1.0:
                    continue  # a quiet watch that ran its course
                # An empty stream that closed at once (a misbehaving proxy, an overloaded server):
                # back off instead of spinning.
                reason, delay = "empty", backoff.next()
            except asyncio.CancelledError:
                raise
            except _Stalled:
                reason = "stalled"
                log.warning("%r: watch of %s stalled for %.0fs; resuming", self, scope, self.stall_timeout)
            except ApiError as e:
                if e.gone:
                    reason = "gone"
                    need_list = True
                    log.info("%r: resourceVersion too old in %s; re-listing", self, scope)
                else:
                    reason = f"http-{e.status}"
                    delay = backoff.next(at_least=e.retry_after)
                    log.warning("%r: %s; retrying in %.1fs", self, e, delay)
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as e:
                # ValueError covers a truncated JSON line from a connection cut mid-event.
                reason = "disconnect"
                delay = backoff.next()
                log.info("%r: watch/list of %s interrupted (%s); retrying in %.1fs", self, scope, e, delay)
            except Exception:
                reason = "error"
                delay = backoff.next()
                log.exception("%r: unexpected error; retrying in %.1fs", self, delay)
            self.watch_restarts += 1
            metrics.INFORMER_WATCH_RESTARTS.labels(*self._metric_labels, reason).inc()
            if delay:
                await asyncio.sleep(delay)

    async def _list(self, scope: str | None) -> None:
        reason = "resync" if scope in self._synced_scopes else "initial"
        self.relists += 1
        metrics.INFORMER_RELISTS.labels(*self._metric_labels, reason).inc()
        seen: set[ObjKey] = set()
        list_rv = ""
        # Page by page, so the raw and parsed form of the whole list never sit in memory together
        # (that peak, not the cache, would set the process's RSS). A list that fails half-way leaves
        # the cache updated but not pruned; the retry prunes.
        async for page in self.client.list_pages(
            self.resource,
            scope,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=self.page_size,
        ):
            items: list[Obj] = page.get("items") or []
            page["items"] = None
            for item in items:
                key = obj_key(item)
                seen.add(key)
                current = self._store.get(key)
                if current is not None and rv_of(current) == rv_of(item):
                    continue
                obj, old = self._put(item)
                self._dispatch(MODIFIED if old is not None else ADDED, obj, old)
            del items
            list_rv = str((page.get("metadata") or {}).get("resourceVersion") or "")
        # Replace semantics: whatever this scope held that the list no longer has was deleted while
        # we were not watching; tell the handlers with the last state we knew.
        for key in [k for k in self._store if self._in_scope(k, scope) and k not in seen]:
            old = self._remove(key)
            if old is not None:
                self._dispatch(DELETED, old, None)
        self.resource_versions[scope] = list_rv
        self._m_objects.set(len(self._store))
        self._synced_scopes.add(scope)
        if len(self._synced_scopes) == len(self.scopes):
            self._synced.set()

    async def _watch(self, scope: str | None) -> bool:
        """Run one watch request; returns whether any event arrived. Raises on errors and stalls."""
        loop = asyncio.get_running_loop()
        got = False
        timeout_s = random.randint(*self.watch_timeout)
        try:
            async with asyncio.timeout(self.stall_timeout) as deadline:
                async for ev in self.client.watch(
                    self.resource,
                    scope,
                    resource_version=self.resource_versions.get(scope) or None,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=timeout_s,
                ):
                    deadline.reschedule(loop.time() + self.stall_timeout)
                    got = True
                    self._handle_event(scope, ev)
        except TimeoutError:
            if deadline.expired():
                raise _Stalled() from None
            raise
        return got

    def _handle_event(self, scope: str | None, ev: Obj) -> None:
        etype = ev.get("type")
        obj = ev.get("object")
        if not isinstance(obj, dict):
            return
        rv = rv_of(obj)
        if etype == "BOOKMARK":
            if rv:
                self.resource_versions[scope] = rv
            return
        if etype in (ADDED, MODIFIED):
            new, old = self._put(obj)
            self._dispatch(MODIFIED if old is not None else ADDED, new, old)
        elif etype == DELETED:
            if self.transform is not None:
                obj = self.transform(obj)
            obj.setdefault("kind", self.resource.kind)
            obj.setdefault("apiVersion", self.resource.api_version)
            self._remove(obj_key(obj))
            self._dispatch(DELETED, obj, None)
        else:
            log.debug("%r: ignoring watch event type %s", self, etype)
            return
        if rv:
            self.resource_versions[scope] = rv
        self._m_objects.set(len(self._store))
