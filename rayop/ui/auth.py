"""Who is asking, and what they may see: TokenReview and SubjectAccessReview, cached.

Bound to a loopback address the view trusts whoever can reach it (as `kubectl port-forward` users reach a
Pod's localhost): `AllowAll`. Exposed on any other address, every request must carry a bearer token (the
`Authorization` header, or the cookie the sign-in form sets); the API server says whose it is (TokenReview),
and whether that user may `get` each object the page would show (SubjectAccessReview), so the view never shows
anyone more than RBAC lets them read with kubectl.

Checks are cheap for the common cases: one cluster-wide `list` check admits every object of a kind, then one
`list` check per namespace, and only then one `get` per object. Answers are cached for `ttl` seconds (a
revoked RoleBinding stops counting within a minute), bounded in number; an API error denies (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import aiohttp

from rayop.base.objects import meta
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.client import ApiClient, ApiError

log = logging.getLogger("rayop.ui.auth")

TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False, kind="TokenReview")
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", namespaced=False, kind="SelfSubjectAccessReview"
)
SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False, kind="SubjectAccessReview"
)


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Check:
    """A resource attribute of a SubjectAccessReview: may the user `verb` this?"""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @classmethod
    def of(
        cls, verb: str, res: Resource, namespace: str = "", name: str = "", subresource: str = ""
    ) -> Check:
        return cls(verb, res.group, res.plural, namespace, name, subresource)


K = TypeVar("K")
V = TypeVar("V")


class _TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._d: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        hit = self._d.get(key)
        if hit is None or hit[0] < self.clock():
            self._d.pop(key, None)
            return False, None
        self._d.move_to_end(key)
        return True, hit[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        self._d[key] = (self.clock() + (self.ttl if ttl is None else ttl), value)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


class Authorizer(Protocol):
    """What a page asks before it shows something."""

    async def allowed(self, user: User | None, check: Check) -> bool: ...

    async def visible(self, user: User | None, res: Resource, objs: Sequence[Obj]) -> list[Obj]: ...


class AllowAll:
    """The loopback mode: whoever reaches the port sees what the operator's caches hold."""

    async def allowed(self, user: User | None, check: Check) -> bool:
        return True

    async def visible(self, user: User | None, res: Resource, objs: Sequence[Obj]) -> list[Obj]:
        return list(objs)


@dataclass
class AuthCounters:
    token_reviews: int = 0
    access_reviews: int = 0
    errors: int = 0


class TokenReviewer:
    """Bearer token -> User, by TokenReview; answers cached by the token's hash (failures briefly)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
        audiences: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        counters: AuthCounters | None = None,
    ) -> None:
        self.api = api
        self.negative_ttl = negative_ttl
        self.audiences = list(audiences)
        self._cache: _TTLCache[str, User | None] = _TTLCache(ttl, max_entries, clock)
        self.counters = counters or AuthCounters()

    async def review(self, token: str) -> User | None:
        if not token:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, user = self._cache.get(key)
        if hit:
            return user
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        if self.audiences:
            body["spec"]["audiences"] = self.audiences
        self.counters.token_reviews += 1
        try:
            answer = await self.api.create(TOKEN_REVIEWS, body)
        except (ApiError, aiohttp.ClientError, TimeoutError) as e:
            self.counters.errors += 1
            log.warning("TokenReview failed: %s", e)
            return None  # not cached: the next request asks again
        st = answer.get("status") or {}
        if not st.get("authenticated"):
            self._cache.put(key, None, self.negative_ttl)
            return None
        u = st.get("user") or {}
        extra = u.get("extra") or {}
        user = User(
            name=str(u.get("username") or ""),
            uid=str(u.get("uid") or ""),
            groups=tuple(str(g) for g in u.get("groups") or []),
            extra=tuple(sorted((str(k), tuple(str(x) for x in v or [])) for k, v in extra.items())),
        )
        self._cache.put(key, user)
        return user


class AccessReviewer:
    """SubjectAccessReview per check, cached per (user, check)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        ttl: float = 60.0,
        max_entries: int = 50_000,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        counters: AuthCounters | None = None,
    ) -> None:
        self.api = api
        self._cache: _TTLCache[tuple[User, Check], bool] = _TTLCache(ttl, max_entries, clock)
        self._sem = asyncio.Semaphore(concurrency)
        self.counters = counters or AuthCounters()

    async def allowed(self, user: User | None, check: Check) -> bool:
        if user is None:
            return False
        hit, ok = self._cache.get((user, check))
        if hit:
            return bool(ok)
        attrs = {
            "verb": check.verb,
            "group": check.group,
            "resource": check.resource,
            "namespace": check.namespace,
            "name": check.name,
            "subresource": check.subresource,
        }
        spec: Obj = {
            "user": user.name,
            "uid": user.uid,
            "groups": list(user.groups),
            "resourceAttributes": {k: v for k, v in attrs.items() if v},
        }
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        body: Obj = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        async with self._sem:
            self.counters.access_reviews += 1
            try:
                answer = await self.api.create(SUBJECT_ACCESS_REVIEWS, body)
            except (ApiError, aiohttp.ClientError, TimeoutError) as e:
                self.counters.errors += 1
                log.warning("SubjectAccessReview failed: %s", e)
                return False
        ok = bool((answer.get("status") or {}).get("allowed"))
        self._cache.put((user, check), ok)
        return ok

    async def visible(self, user: User | None, res: Resource, objs: Sequence[Obj]) -> list[Obj]:
        """The objects the user may `get`: all of them after one cluster-wide `list` check, else by namespace,
        else one by one."""
        if user is None or not objs:
            return []
        if await self.allowed(user, Check.of("list", res)):
            return list(objs)
        by_ns: dict[str, list[Obj]] = {}
        for o in objs:
            by_ns.setdefault(str(meta(o).get("namespace") or ""), []).append(o)
        namespaces = sorted(by_ns)
        ns_ok = await asyncio.gather(*(self.allowed(user, Check.of("list", res, ns)) for ns in namespaces))
        out: list[Obj] = []
        singles: list[Obj] = []
        for ns, ok in zip(namespaces, ns_ok, strict=True):
            (out if ok else singles).extend(by_ns[ns])
        if singles:
            each = await asyncio.gather(
                *(
                    self.allowed(
                        user,
                        Check.of(
                            "get", res, str(meta(o).get("namespace") or ""), str(meta(o).get("name") or "")
                        ),
                    )
                    for o in singles
                )
            )
            out.extend(o for o, ok in zip(singles, each, strict=True) if ok)
        return out


def bearer_token(headers: Mapping[str, str], cookies: Mapping[str, str], cookie_name: str) -> str:
    """The request's bearer token: the Authorization header first, else the sign-in cookie."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return cookies.get(cookie_name, "").strip()
