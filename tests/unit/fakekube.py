"""An in-memory API server and lagging caches, for reconciler unit tests.

FakeKube answers the ApiClient methods the RayCluster reconciler calls. FakeInformer reads a snapshot of
it that only moves forward when the test calls `sync()`, so tests can reproduce a lagging cache.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

from rayop.runtime.client import ApiError, Resource

Obj = dict[str, Any]


def _match(obj: Mapping[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.rv = itertools.count(1)
        self.uid = itertools.count(1)
        self.calls: list[tuple[str, str, str]] = []
        self.fail_create: dict[str, ApiError] = {}  # plural -> error to raise on create
        self.timeouts_after_create: dict[str, int] = {}  # plural -> creates that succeed but time out
        self.before_create: Any = None  # optional hook(res, obj), may raise or move a cache forward

    def _kind(self, res: Resource) -> dict[tuple[str, str], Obj]:
        return self.objects.setdefault(res.plural, {})

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None, **_: Any) -> Obj:
        if res.plural in self.fail_create:
            raise self.fail_create[res.plural]
        if self.before_create is not None:
            self.before_create(res, obj)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        ns = namespace or md.get("namespace") or ""
        md["namespace"] = ns
        if not md.get("name"):
            md["name"] = f"{md['generateName']}{next(self.uid):05d}"
        key = (ns, md["name"])
        if key in self._kind(res):
            raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"})
        md["uid"] = f"uid-{next(self.uid)}"
        md["resourceVersion"] = str(next(self.rv))
        md.setdefault("creationTimestamp", f"2026-01-01T00:00:{next(self.uid) % 60:02d}Z")
        md.setdefault("generation", 1)
        obj.setdefault("kind", res.kind)
        self._kind(res)[key] = obj
        self.calls.append(("create", res.plural, md["name"]))
        if self.timeouts_after_create.get(res.plural, 0) > 0:
            self.timeouts_after_create[res.plural] -= 1
            raise TimeoutError("the answer was lost; the object exists")
        return copy.deepcopy(obj)

    def put(self, res: Resource, obj: Obj) -> Obj:
        """Test setup: store an object as if a user created it."""
        return self._put(res, obj)

    def _put(self, res: Resource, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("uid", f"uid-{next(self.uid)}")
        md["resourceVersion"] = str(next(self.rv))
        md.setdefault("generation", 1)
        self._kind(res)[(md.get("namespace", ""), md["name"])] = obj
        return obj

    async def get(
        self, res: Resource, name: str, namespace: str | None = None, sub: str | None = None
    ) -> Obj:
        try:
            return copy.deepcopy(self._kind(res)[(namespace or "", name)])
        except KeyError:
            raise ApiError(404, {"reason": "NotFound", "message": "not found"}) from None

    async def get_or_none(self, res: Resource, name: str, namespace: str | None = None) -> Obj | None:
        o = self._kind(res).get((namespace or "", name))
        return copy.deepcopy(o) if o is not None else None

    async def list(
        self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None, **_: Any
    ) -> Obj:
        items = [
            copy.deepcopy(o)
            for (ns, _n), o in self._kind(res).items()
            if (namespace is None or ns == namespace) and _match(o, label_selector)
        ]
        return {"items": items, "metadata": {"resourceVersion": str(next(self.rv))}}

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        ignore_not_found: bool = False,
        **_: Any,
    ) -> Obj | None:
        self.calls.append(("delete", res.plural, name))
        if self._kind(res).pop((namespace or "", name), None) is None:
            if ignore_not_found:
                return None
            raise ApiError(404, {"reason": "NotFound", "message": "not found"})
        return {}

    async def delete_collection(self, res: Resource, namespace: str, *, label_selector: str, **_: Any) -> Obj:
        self.calls.append(("deletecollection", res.plural, label_selector))
        for key, o in list(self._kind(res).items()):
            if key[0] == namespace and _match(o, label_selector):
                del self._kind(res)[key]
        return {}

    async def patch(
        self, res: Resource, name: str, patch: Any, namespace: str | None = None, **_: Any
    ) -> Obj:
        self.calls.append(("patch", res.plural, name))
        cur = self._kind(res).get((namespace or "", name))
        if cur is None:
            raise ApiError(404, {"reason": "NotFound", "message": "not found"})
        want_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict", "message": "conflict"})
        new = copy.deepcopy(cur)
        for k, v in (patch.get("metadata") or {}).items():
            if k == "resourceVersion":
                continue
            if k in ("annotations", "labels"):
                new["metadata"].setdefault(k, {}).update(v)
            else:
                new["metadata"][k] = v
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self._kind(res)[(namespace or "", name)]
            return new
        return self._put(res, new)

    async def replace(self, res: Resource, obj: Obj, sub: str | None = None) -> Obj:
        md = obj["metadata"]
        cur = self._kind(res).get((md.get("namespace", ""), md["name"]))
        if cur is None:
            raise ApiError(404, {"reason": "NotFound", "message": "not found"})
        if md.get("resourceVersion") and md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict", "message": "conflict"})
        new = copy.deepcopy(cur)
        if sub == "status":
            new["status"] = copy.deepcopy(obj.get("status"))
        else:
            new = copy.deepcopy(obj)
            new["metadata"]["uid"] = cur["metadata"]["uid"]
        self.calls.append(("replace" + (f"/{sub}" if sub else ""), res.plural, md["name"]))
        return self._put(res, new)

    async def replace_status(self, res: Resource, obj: Obj) -> Obj:
        return await self.replace(res, obj, sub="status")

    def names(self, res: Resource, **labels: str) -> list[str]:
        return sorted(
            n
            for (_, n), o in self._kind(res).items()
            if all(((o["metadata"].get("labels") or {}).get(k) == v) for k, v in labels.items())
        )


class FakeInformer:
    """A snapshot of one kind of FakeKube that only changes on sync() (or on every read when live)."""

    def __init__(
        self, kube: FakeKube, res: Resource, *, live: bool = True, has_label: str | None = None
    ) -> None:
        self.kube = kube
        self.res = res
        self.live = live
        self.has_label = has_label  # like an informer's existence label selector
        self.snapshot: dict[tuple[str, str], Obj] = {}
        self.sync()

    def sync(self) -> None:
        self.snapshot = {
            k: copy.deepcopy(o)
            for k, o in self.kube._kind(self.res).items()
            if self.has_label is None or self.has_label in ((o.get("metadata") or {}).get("labels") or {})
        }

    def _view(self) -> dict[tuple[str, str], Obj]:
        if self.live:
            self.sync()
        return self.snapshot

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self._view().get((namespace or "", name))

    def by_index(self, name: str, value: str) -> list[Obj]:
        ns, _, cluster = value.partition("/")
        return [
            o
            for (n, _k), o in self._view().items()
            if n == ns and ((o["metadata"].get("labels") or {}).get("ray.io/cluster") == cluster)
        ]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def record(self, obj: Obj, type_: str, reason: str, action: str, message: str) -> None:
        self.events.append((type_, reason, action, message))

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]
