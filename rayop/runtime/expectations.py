"""Create/delete expectations: never act twice on a cache that has not yet seen our own writes.

After a reconcile creates a Pod, the next reconcile may run before the watch event for that Pod has
reached the cache; counting Pods in the cache would then create it again. So every create and delete
is recorded under (parent key, group), and the reconciler skips scaling a group until the cache shows
each expected create (or 30 s have passed, in case another actor deleted the object at once) and none
of the expected deletes. Satisfied records are dropped. Same rules as KubeRay's
`ray-operator/controllers/ray/expectations/scale_expectations.go` (docs/compatibility.md#pods), except that a
create may be pinned to the uid the API server returned, so a same-named object that is still terminating
does not count.

Why in-memory state is safe across an operator restart: expectations only bridge the gap between this
process's own acknowledged writes and its watch. A new process starts with none and does not reconcile
before its caches have synced from a fresh LIST, which the API server serves from etcd at a revision
that already contains every write the previous process got an answer for, so nothing it created or
deleted can be missing from or lingering in the new cache. From then on the watch delivers events in
order, and the new process records its own writes. A write still in flight when the previous leader died
is the same window KubeRay has; leader election bounds it (the old leader stops writing at its renew
deadline, before the lease can expire and a new leader can start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

CREATE = "create"
DELETE = "delete"
DEFAULT_TIMEOUT = 30.0


class ObjectGetter(Protocol):
    """Anything with Informer.get's signature."""

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None: ...


@dataclass
class _Expectation:
    action: str
    namespace: str
    name: str
    uid: str | None
    recorded: float


ParentKey = tuple[str, str]


class Expectations:
    """Expected creates and deletes per (parent key, group). See the module docstring."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        # parent key -> group -> object name -> expectation (a later record for a name replaces the earlier)
        self._items: dict[ParentKey, dict[str, dict[str, _Expectation]]] = {}

    def expect_create(
        self, key: ParentKey, group: str, name: str, *, namespace: str | None = None, uid: str | None = None
    ) -> None:
        self._add(key, group, _Expectation(CREATE, namespace or key[0], name, uid, self.clock()))

    def expect_delete(self, key: ParentKey, group: str, name: str, *, namespace: str | None = None) -> None:
        self._add(key, group, _Expectation(DELETE, namespace or key[0], name, None, self.clock()))

    def _add(self, key: ParentKey, group: str, exp: _Expectation) -> None:
        self._items.setdefault(key, {}).setdefault(group, {})[exp.name] = exp

    def _met(self, exp: _Expectation, cache: ObjectGetter) -> bool:
        obj = cache.get(exp.namespace, exp.name)
        if exp.action == CREATE:
            if obj is not None and (exp.uid is None or (obj.get("metadata") or {}).get("uid") == exp.uid):
                return True
            return self.clock() - exp.recorded >= self.timeout
        return obj is None

    def satisfied(self, key: ParentKey, group: str, cache: ObjectGetter) -> bool:
        """True when every expectation of the group is met; met ones are dropped as they are checked."""
        groups = self._items.get(key)
        if not groups:
            return True
        pending = groups.get(group)
        if not pending:
            return True
        for name, exp in list(pending.items()):
            if not self._met(exp, cache):
                return False
            del pending[name]
        del groups[group]
        if not groups:
            del self._items[key]
        return True

    def pending(self, key: ParentKey, group: str | None = None) -> list[tuple[str, str]]:
        """(action, name) of what is still expected, for logs and tests."""
        groups = self._items.get(key) or {}
        sel = [groups.get(group) or {}] if group is not None else list(groups.values())
        return [(e.action, e.name) for g in sel for e in g.values()]

    def forget(self, key: ParentKey, group: str | None = None) -> None:
        """Drop a parent's expectations (its object is gone, or everything is being recreated)."""
        if group is None:
            self._items.pop(key, None)
            return
        groups = self._items.get(key)
        if groups is not None:
            groups.pop(group, None)
            if not groups:
                del self._items[key]

    def __len__(self) -> int:
        return sum(len(g) for groups in self._items.values() for g in groups.values())
