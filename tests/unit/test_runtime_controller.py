"""Predicates, owner mapping, expectations, and the controller's worker loop (fake API server)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientSession

from rayop.runtime.cache import Informer
from rayop.runtime.client import CONFIGMAPS, ApiClient, ApiError, ClientConfig
from rayop.runtime.controller import (
    Controller,
    Key,
    Result,
    controller_owner,
    default_predicate,
    map_by_label,
)
from rayop.runtime.expectations import Expectations
from rayop.runtime.servers import Servers, parse_addr
from tests.unit.fakeapi import FakeApi


async def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def rc(
    gen: int = 1, labels: dict[str, str] | None = None, ann: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "generation": gen,
            "labels": labels or {},
            "annotations": ann or {},
        },
        "status": {"state": "ready"},
    }


# -- predicates ---------------------------------------------------------------------------------


def test_default_predicate_skips_status_only_updates() -> None:
    old = rc()
    new = copy.deepcopy(old)
    new["status"]["state"] = "suspended"
    new["metadata"]["resourceVersion"] = "9"
    assert not default_predicate("MODIFIED", new, old)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["metadata"].update(generation=2),
        lambda o: o["metadata"]["labels"].update(a="b"),
        lambda o: o["metadata"]["annotations"].update(a="b"),
        lambda o: o["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"),
    ],
    ids=["generation", "labels", "annotations", "deletion"],
)
def test_default_predicate_passes_spec_and_metadata_changes(change: Callable[[dict[str, Any]], None]) -> None:
    old = rc()
    new = copy.deepcopy(old)
    change(new)
    assert default_predicate("MODIFIED", new, old)


def test_default_predicate_passes_adds_and_deletes() -> None:
    assert default_predicate("ADDED", rc(), None)
    assert default_predicate("DELETED", rc(), None)


def test_controller_owner_and_label_mapping() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "labels": {"ray.io/cluster": "lbl"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"},
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayCluster",
                    "name": "rc1",
                    "uid": "2",
                    "controller": True,
                },
            ],
        }
    }
    assert controller_owner(pod, "RayCluster") == ("ns", "rc1")
    assert controller_owner(pod, "RayCluster", "ray.io") == ("ns", "rc1")
    assert controller_owner(pod, "RayCluster", "other.io") is None
    assert controller_owner(pod, "ConfigMap") is None  # not the controller reference
    assert map_by_label("ray.io/cluster")(pod) == [("ns", "lbl")]
    assert map_by_label("missing")(pod) == []


# -- expectations -------------------------------------------------------------------------------


class FakeCache:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objs.get((namespace or "", name))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_expectations_create_and_delete() -> None:
    cache, clock = FakeCache(), Clock()
    exp = Expectations(clock=clock)
    key = ("ns", "rc")
    assert exp.satisfied(key, "g", cache)
    exp.expect_create(key, "g", "p1")
    exp.expect_create(key, "g", "p2")
    exp.expect_create(key, "other", "p9")
    assert not exp.satisfied(key, "g", cache)
    cache.objs[("ns", "p1")] = {"metadata": {"uid": "u1"}}
    assert not exp.satisfied(key, "g", cache)
    assert exp.pending(key, "g") == [("create", "p2")]  # p1 was dropped once met
    cache.objs[("ns", "p2")] = {"metadata": {}}
    assert exp.satisfied(key, "g", cache)
    assert not exp.satisfied(key, "other", cache)  # groups are independent

    exp.expect_delete(key, "g", "p1")
    assert not exp.satisfied(key, "g", cache)
    clock.t += 1000  # deletes never time out: the cache must show them
    assert not exp.satisfied(key, "g", cache)
    del cache.objs[("ns", "p1")]
    assert exp.satisfied(key, "g", cache)


def test_expectations_create_times_out_and_uid_pins() -> None:
    cache, clock = FakeCache(), Clock()
    exp = Expectations(timeout=30, clock=clock)
    key = ("ns", "rc")
    cache.objs[("ns", "head")] = {"metadata": {"uid": "old"}}  # a terminating namesake
    exp.expect_create(key, "", "head", uid="new")
    assert not exp.satisfied(key, "", cache)
    cache.objs[("ns", "head")] = {"metadata": {"uid": "new"}}
    assert exp.satisfied(key, "", cache)

    exp.expect_create(key, "", "vanished")
    clock.t += 29
    assert not exp.satisfied(key, "", cache)
    clock.t += 2  # created and deleted by someone else before our cache saw it
    assert exp.satisfied(key, "", cache)
    assert len(exp) == 0


def test_expectations_forget() -> None:
    exp = Expectations()
    exp.expect_create(("ns", "a"), "g1", "p1")
    exp.expect_create(("ns", "a"), "g2", "p2")
    exp.expect_create(("ns", "b"), "g1", "p3")
    exp.forget(("ns", "a"), "g1")
    assert exp.pending(("ns", "a")) == [("create", "p2")]
    exp.forget(("ns", "a"))
    assert exp.pending(("ns", "a")) == [] and len(exp) == 1


# -- controller on a fake API server ------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    api = FakeApi()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def client(fake: FakeApi) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(server=f"http://127.0.0.1:{fake.port}", qps=0))
    yield c
    await c.close()


def cm(name: str, owner: str | None = None, **data: str) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "ns", "generation": 1}
    if owner:
        md["ownerReferences"] = [
            {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": owner, "uid": "x", "controller": True}
        ]
    return {"metadata": md, "data": data}


async def test_controller_reconciles_merges_and_survives_errors(fake: FakeApi, client: ApiClient) -> None:
    fake.put("configmaps", cm("p1"))
    calls: list[Key] = []
    fail_once = {("ns", "boom")}

    async def reconcile(key: Key) -> Result | None:
        calls.append(key)
        if key in fail_once:
            fail_once.discard(key)
            raise RuntimeError("first attempt fails")
        if key == ("ns", "conflict") and calls.count(key) == 1:
            raise ApiError(409, {"reason": "Conflict", "message": "stale"})
        if key == ("ns", "later") and calls.count(key) == 1:
            return Result(requeue_after=0.05)
        return None

    ctrl = Controller("t-ctrl", reconcile, concurrency=3)
    primaries = Informer(client, CONFIGMAPS, namespace="ns", label_selector=None)
    children = Informer(client, CONFIGMAPS, namespace="other")
    ctrl.watch_primary(primaries)
    ctrl.watch_owned(children, "RayCluster")
    await primaries.start()
    await children.start()
    task = asyncio.create_task(ctrl.run())
    try:
        await eventually(lambda: ("ns", "p1") in calls, what="initial reconcile")
        for name in ("boom", "conflict", "later"):
            fake.put("configmaps", cm(name))
        await eventually(lambda: calls.count(("ns", "boom")) == 2, what="retry after exception")
        await eventually(lambda: calls.count(("ns", "conflict")) == 2, what="retry after 409")
        await eventually(lambda: calls.count(("ns", "later")) == 2, what="requeue_after")

        # A status-only update is filtered; a spec (generation) change is not.
        n = calls.count(("ns", "p1"))
        obj = cm("p1")
        obj["status"] = {"x": 1}
        fake.put("configmaps", obj)
        fake.put("configmaps", cm("marker"))  # FIFO: once marker is reconciled, p1 would have been
        await eventually(lambda: ("ns", "marker") in calls, what="marker")
        assert calls.count(("ns", "p1")) == n
        obj2 = cm("p1")
        obj2["metadata"]["generation"] = 2
        fake.put("configmaps", obj2)
        await eventually(lambda: calls.count(("ns", "p1")) == n + 1, what="generation change")

        # Child events map to the owner's key in the child's namespace.
        child = cm("child", owner="parent")
        child["metadata"]["namespace"] = "other"
        fake.put("configmaps", child)
        await eventually(lambda: ("other", "parent") in calls, what="owner mapping")
        assert calls.count(("ns", "p1")) == n + 1
    finally:
        ctrl.stop()
        await asyncio.wait_for(task, 10)
        await primaries.wait_stopped()
        await children.wait_stopped()


async def test_unreachable_api_server_is_an_error_to_retry_not_a_panic(
    fake: FakeApi, client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An API server restart drops every in-flight request (found by the chaos campaign's apiserver-kill):
    the reconcile is retried and counted as an error, never as a panic, and logged without a traceback."""
    import aiohttp

    from rayop.runtime import metrics

    fake.put("configmaps", cm("flaky"))
    calls: list[Key] = []

    async def reconcile(key: Key) -> Result | None:
        calls.append(key)
        if len(calls) == 1:
            raise aiohttp.ServerDisconnectedError()
        if len(calls) == 2:
            raise ConnectionResetError("reset by peer")
        return None

    ctrl = Controller("t-unreachable", reconcile)
    informer = Informer(client, CONFIGMAPS, namespace="ns")
    ctrl.watch_primary(informer)
    await informer.start()
    task = asyncio.create_task(ctrl.run())
    try:
        await eventually(lambda: len(calls) == 3, what="third attempt")
    finally:
        ctrl.stop()
        await asyncio.wait_for(task, 10)
        await informer.wait_stopped()
    assert metrics.RECONCILE_PANICS.labels("t-unreachable")._value.get() == 0
    assert metrics.RECONCILE_ERRORS.labels("t-unreachable")._value.get() == 2
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a transport error"


# -- servers --------------------------------------------------------------------------------------


def test_parse_addr() -> None:
    assert parse_addr(":8080") == ("0.0.0.0", 8080)
    assert parse_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_addr("[::1]:9") == ("::1", 9)
    assert parse_addr("0") is None and parse_addr("") is None
    with pytest.raises(ValueError):
        parse_addr("8080")


async def test_servers_metrics_health_ready() -> None:
    servers = Servers("127.0.0.1:0", "127.0.0.1:0")
    ready = {"v": False}
    servers.ready.add("caches", lambda: ready["v"])
    await servers.start()
    try:
        async with ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{servers.metrics_port}/metrics") as r:
                body = await r.text()
                assert r.status == 200 and "controller_runtime_reconcile_total" in body
            async with s.get(f"http://127.0.0.1:{servers.probe_port}/healthz") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{servers.probe_port}/readyz?verbose") as r:
                assert r.status == 500 and "[-]caches failed" in await r.text()
            ready["v"] = True
            async with s.get(f"http://127.0.0.1:{servers.probe_port}/readyz") as r:
                assert r.status == 200
    finally:
        await servers.stop()


# -- manager without leader election --------------------------------------------------------------


async def test_manager_runs_controllers_and_stops_on_crash(fake: FakeApi, client: ApiClient) -> None:
    from rayop.runtime.manager import Manager, RunnableFailed

    fake.put("configmaps", cm("a"))
    seen: list[Key] = []

    async def reconcile(key: Key) -> Result | None:
        seen.append(key)
        return None

    m = Manager(
        client, leader_election=False, metrics_addr="0", probe_addr="127.0.0.1:0", handle_signals=False
    )
    m.new_controller("t-mgr", reconcile).watch_primary(m.informer(CONFIGMAPS))
    crash = asyncio.Event()

    async def runnable() -> None:
        await crash.wait()
        raise RuntimeError("runnable broke")

    m.add_runnable("breaker", runnable)
    task = asyncio.create_task(m.run())
    await eventually(lambda: ("ns", "a") in seen, what="reconcile under the manager")
    assert m.is_leader and m.caches_synced()
    crash.set()
    with pytest.raises(RunnableFailed):
        await asyncio.wait_for(task, 20)
