"""The web view's HTTP side with in-memory caches: ETags, fragments, errors without stack traces, sign-in and
per-object authorisation (rayop/ui/server.py). The real TokenReview/SubjectAccessReview path is in
tests/integration/test_ui.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from rayop.base.resource import Resource
from rayop.runtime.client import ApiClient, ClientConfig
from rayop.ui.auth import Check, TokenReviewer, User
from rayop.ui.caches import INDEX_CLUSTER, Caches
from rayop.ui.fetch import Fetcher
from rayop.ui.fieldmanagers import ManagerTable
from rayop.ui.history import ScalingHistory
from rayop.ui.server import COOKIE, ServerOptions, UiServer
from rayop.ui.view import View

Obj = dict[str, Any]


class MemCache:
    """A dict standing in for an informer: get, list, and the view's cluster index."""

    def __init__(self, *objs: Obj) -> None:
        self.d: dict[tuple[str, str], Obj] = {}
        self.synced = True
        for o in objs:
            self.put(o)

    def put(self, o: Obj) -> None:
        self.d[(o["metadata"].get("namespace", ""), o["metadata"]["name"])] = o

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self.d.get((namespace or "", name))

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[Obj]:
        return [o for (ns, _), o in self.d.items() if namespace is None or ns == namespace]

    def by_index(self, name: str, value: str) -> Sequence[Obj]:
        assert name == INDEX_CLUSTER
        ns, _, cluster = value.partition("/")
        return [
            o
            for (n, _), o in self.d.items()
            if n == ns and o["metadata"].get("labels", {}).get("ray.io/cluster") == cluster
        ]


def rc(name: str, ns: str = "a") -> Obj:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": {"workerGroupSpecs": [{"groupName": "g", "replicas": 1}]},
        "status": {"state": "ready"},
    }


def make_view(*clusters: Obj) -> View:
    caches = Caches(MemCache(*clusters), MemCache(), MemCache(), MemCache(), MemCache())
    history = ScalingHistory()
    api = ApiClient(ClientConfig(server="http://127.0.0.1:9"))
    return View(caches, history, ManagerTable(), Fetcher(api, caches, history), api_server="https://api")


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], View]]:
    view = make_view(rc("alpha"))
    server = UiServer(view, ServerOptions())
    async with TestClient(TestServer(server.app)) as c:
        yield c, view


async def test_polls_get_304_until_something_changes(client: tuple[TestClient[Any, Any], View]) -> None:
    c, view = client
    r = await c.get("/")
    assert r.status == 200
    body = await r.text()
    assert body.startswith("<!doctype html>") and 'href="/clusters/a/alpha"' in body
    etag = r.headers["ETag"]
    assert f'data-etag="{etag.replace(chr(34), "&quot;")}"' in body
    r = await c.get("/?fragment=1", headers={"If-None-Match": etag})
    assert r.status == 304
    view.on_cluster("MODIFIED", rc("alpha"), rc("alpha"))
    r = await c.get("/?fragment=1", headers={"If-None-Match": etag})
    assert r.status == 200
    frag = await r.text()
    assert "<html" not in frag and "<h1>Overview</h1>" in frag
    assert r.headers["ETag"] != etag


async def test_security_headers_and_immutable_assets(client: tuple[TestClient[Any, Any], View]) -> None:
    c, _ = client
    r = await c.get("/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    body = await r.text()
    js = body.split('<script src="', 1)[1].split('"', 1)[0]
    assert js.startswith("/static/vendor/uPlot.iife.min.js?v=")
    r = await c.get(js)
    assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
    assert (await c.get("/static/../server.py")).status == 404


async def test_a_missing_object_is_a_page_that_says_so(client: tuple[TestClient[Any, Any], View]) -> None:
    c, _ = client
    r = await c.get("/clusters/a/nope")
    assert r.status == 404
    body = await r.text()
    assert "RayCluster a/nope is not there. It does not exist (it may have been deleted)." in body
    r = await c.get("/no/such/page")
    assert r.status == 404 and "There is no page at this address." in await r.text()


async def test_a_failing_page_shows_no_stack_trace(
    client: tuple[TestClient[Any, Any], View], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, view = client

    def boom(*_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(view, "cluster_page", boom)
    r = await c.get("/clusters/a/alpha")
    assert r.status == 500
    body = await r.text()
    assert "Something went wrong" in body
    assert "Traceback" not in body and "secret internals" not in body


def test_no_unauthenticated_view_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="without authentication"):
        UiServer(make_view(), ServerOptions(host="0.0.0.0"))
    UiServer(make_view(), ServerOptions(host="::1"))


# --- signed in -----------------------------------------------------------------------------------------


class FakeReviewer(TokenReviewer):
    def __init__(self) -> None:
        self.calls = 0

    async def review(self, token: str) -> User | None:
        self.calls += 1
        return User("alice", groups=("dev",)) if token == "good" else None


class NamespaceAuthorizer:
    """alice may read everything in namespace `a` and nothing else."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    async def allowed(self, user: User | None, check: Check) -> bool:
        self.checks.append(check)
        return user is not None and check.namespace == "a"

    async def visible(self, user: User | None, res: Resource, objs: Sequence[Obj]) -> list[Obj]:
        return [o for o in objs if await self.allowed(user, Check.of("get", res, o["metadata"]["namespace"]))]


@pytest.fixture
async def authed() -> AsyncIterator[TestClient[Any, Any]]:
    view = make_view(rc("alpha", "a"), rc("beta", "b"))
    server = UiServer(
        view,
        ServerOptions(host="0.0.0.0", auth=True),
        reviewer=FakeReviewer(),
        authorizer=NamespaceAuthorizer(),
    )
    async with TestClient(TestServer(server.app)) as c:
        yield c


async def test_without_a_token_pages_ask_to_sign_in(authed: TestClient[Any, Any]) -> None:
    r = await authed.get("/", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/login")
    r = await authed.get("/?fragment=1")
    assert r.status == 401
    r = await authed.get("/", headers={"Authorization": "Bearer wrong"}, allow_redirects=False)
    assert r.status == 401
    assert (await authed.get("/healthz")).status == 200
    r = await authed.get("/login")
    assert r.status == 200 and 'name="token"' in await r.text()


async def test_each_caller_sees_only_what_rbac_lets_them_read(authed: TestClient[Any, Any]) -> None:
    h = {"Authorization": "Bearer good"}
    body = await (await authed.get("/", headers=h)).text()
    assert "/clusters/a/alpha" in body and "/clusters/b/beta" not in body
    assert "1 more object is hidden: your account may not read it." in body
    assert (await authed.get("/clusters/a/alpha", headers=h)).status == 200
    r = await authed.get("/clusters/b/beta", headers=h)
    assert r.status == 404
    assert "or your account may not read it" in await r.text()


async def test_sign_in_sets_a_strict_http_only_cookie(authed: TestClient[Any, Any]) -> None:
    r = await authed.post("/login", data={"token": "bad"})
    assert r.status == 401 and "did not accept this token" in await r.text()
    r = await authed.post("/login", data={"token": "good"}, allow_redirects=False)
    assert r.status == 303
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=good") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    r = await authed.get("/", cookies={COOKIE: "good"})
    assert r.status == 200 and "Signed in as alice" in await r.text()
    r = await authed.post("/login", data={"token": "good"}, headers={"Origin": "https://evil.example"})
    assert r.status == 403
    r = await authed.post("/logout", allow_redirects=False)
    assert r.status == 303 and f"{COOKIE}=" in r.headers["Set-Cookie"]


async def test_an_unreachable_api_server_is_said_on_the_page(
    client: tuple[TestClient[Any, Any], View],
) -> None:
    c, view = client
    # The view's client points at a closed port: the next scheduled fetch fails to connect.
    await view.fetcher._fetch_events("a", "uid-alpha")
    body = await (await c.get("/")).text()
    assert "The Kubernetes API server has not answered since" in body
    assert 'role="alert"' in body


async def test_the_rayservice_page_reads_kuberays_status() -> None:
    rs: Obj = {
        "metadata": {
            "name": "svc",
            "namespace": "a",
            "uid": "uid-svc",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {},
        "status": {
            "numServeEndpoints": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "NonZeroServeEndpoints",
                    "lastTransitionTime": "2026-01-01T00:02:00Z",
                },
                {
                    "type": "UpgradeInProgress",
                    "status": "True",
                    "reason": "BothActivePendingClustersExist",
                    "lastTransitionTime": "2026-01-01T00:05:00Z",
                },
            ],
            "activeServiceStatus": {
                "rayClusterName": "alpha",
                "applicationStatuses": {
                    "fruit": {
                        "status": "RUNNING",
                        "serveDeploymentStatuses": {"MangoStand": {"status": "HEALTHY"}},
                    }
                },
            },
            "pendingServiceStatus": {"rayClusterName": "svc-xyz12"},
        },
    }
    view = make_view(rc("alpha"))
    cast_cache: Any = view.caches.rayservices
    cast_cache.put(rs)
    server = UiServer(view, ServerOptions())
    async with TestClient(TestServer(server.app)) as c:
        r = await c.get("/services/a/svc")
        assert r.status == 200
        body = await r.text()
        assert 'href="/clusters/a/alpha"' in body  # the active cluster exists
        assert "svc-xyz12" in body and "(not found)" in body  # the pending one does not yet
        assert "MangoStand" in body and "HEALTHY" in body
        assert "UpgradeInProgress → True" in body  # on the upgrade timeline
        overview = await (await c.get("/")).text()
        assert 'href="/services/a/svc"' in overview and "upgrading" in overview


def worker(name: str, ready: bool, deleting: bool = False) -> Obj:
    md: Obj = {
        "name": name,
        "namespace": "a",
        "labels": {"ray.io/cluster": "alpha", "ray.io/node-type": "worker", "ray.io/group": "g"},
    }
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": md,
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_ready_workers_are_counted_by_difference() -> None:
    view = make_view(rc("alpha"))

    def ready() -> int | None:
        return view.history.groups("a", "alpha")["g"].ready.last

    view.on_pod("ADDED", worker("w1", True), None)
    view.on_pod("ADDED", worker("w2", False), None)
    assert ready() == 1
    view.on_pod("MODIFIED", worker("w2", True), worker("w2", False))
    assert ready() == 2
    view.on_pod("MODIFIED", worker("w1", True, deleting=True), worker("w1", True))
    assert ready() == 1
    view.on_pod("DELETED", worker("w1", True, deleting=True), None)
    view.on_pod("DELETED", worker("w2", True), None)
    assert ready() == 0 and view.ready == {}
    # A cluster event reads the count, not the Pods.
    view.on_pod("ADDED", worker("w3", True), None)
    view.on_cluster("MODIFIED", rc("alpha"), rc("alpha"))
    assert ready() == 1
