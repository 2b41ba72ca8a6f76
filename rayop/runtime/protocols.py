"""The seams between the runtime and the controllers: shared types and Protocols.

Controllers are written against these, not against the concrete classes, so a unit test can hand a
reconciler an in-memory cache or a recording event sink, and the operator hands it the real thing
(`rayop.runtime.manager.Manager`, `rayop.runtime.cache.Informer`, `rayop.runtime.controller.Controller`,
`rayop.runtime.events.EventRecorder`). This module imports none of those, so nothing here can form an
import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.client import ApiClient

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds
# An informer event: ("ADDED" | "MODIFIED" | "DELETED", the object, the previous object on MODIFIED).
Handler = Callable[[str, Obj, "Obj | None"], None]
Predicate = Callable[[str, Obj, "Obj | None"], bool]
Mapper = Callable[[Obj], "list[Key]"]
IndexFunc = Callable[[Obj], list[str]]
Transform = Callable[[Obj], Obj]
Runnable = Callable[[], Coroutine[Any, Any, Any]]
Check = Callable[[], "bool | Awaitable[bool]"]


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: nothing (None), a requeue after a delay, or a backoff requeue."""

    requeue_after: float | None = None
    requeue: bool = False


Reconcile = Callable[[Key], Awaitable["Result | None"]]


class Recorder(Protocol):
    """Records an events.k8s.io Event about `obj`. Synchronous and best effort: it never raises for an
    API problem and never blocks the reconcile that calls it."""

    def record(self, obj: Obj, type_: str, reason: str, action: str, message: str) -> None: ...


class Cache(Protocol):
    """The read side of an informer: objects as the last watch event left them. Shared and read-only:
    copy before changing."""

    def get(self, namespace: str | None, name: str) -> Obj | None: ...

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[Obj]: ...

    def by_index(self, name: str, value: str) -> Sequence[Obj]: ...


class Informer(Cache, Protocol):
    """A cache a controller can index and subscribe to."""

    def add_index(self, name: str, fn: IndexFunc) -> None: ...

    def add_handler(self, fn: Handler) -> None: ...

    async def wait_synced(self, timeout: float | None = None) -> bool: ...


class Reconciler(Protocol):
    async def reconcile(self, key: Key) -> Result: ...


class ControllerHandle(Protocol):
    """What a controller's `setup` wires: which informer events enqueue which keys."""

    def watch_primary(self, informer: Informer, predicate: Predicate = ...) -> None: ...

    def watch_owned(
        self,
        informer: Informer,
        owner_kind: str,
        mapper: Mapper | None = None,
        *,
        owner_group: str | None = None,
        predicate: Predicate = ...,
    ) -> None: ...

    def watch_map(self, informer: Informer, mapper: Mapper, predicate: Predicate = ...) -> None: ...

    def enqueue(self, key: Key, after: float | None = None) -> None: ...


class Manager(Protocol):
    """What a controller's `setup` needs from the manager that runs it."""

    @property
    def client(self) -> ApiClient: ...

    @property
    def events(self) -> Recorder: ...

    def informer(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = ...,
    ) -> Informer: ...

    def new_controller(
        self, name: str, reconcile: Reconcile, *, concurrency: int | None = None
    ) -> ControllerHandle: ...

    def add_runnable(self, name: str, fn: Runnable, *, needs_leader: bool = True) -> None: ...

    def add_readiness_check(self, name: str, check: Check) -> None: ...
