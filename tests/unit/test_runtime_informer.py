"""Fault injection for the informer against a scripted fake API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rayop.runtime.cache import (
    INDEX_OWNER_UID,
    Backoff,
    Informer,
    index_by_label,
    index_by_owner_uid,
    label_index_value,
)
from rayop.runtime.client import CONFIGMAPS, ApiClient, ClientConfig
from tests.unit.fakeapi import FakeApi

Events = list[tuple[str, str, Any]]


async def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def cm(name: str, ns: str = "ns1", labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": data,
    }


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


def fast_backoff() -> Backoff:
    return Backoff(base=0.02, cap=0.1)


async def started(client: ApiClient, **kw: Any) -> tuple[Informer, Events]:
    kw.setdefault("backoff", fast_backoff)
    inf = Informer(client, CONFIGMAPS, **kw)
    events: Events = []
    inf.add_handler(lambda t, o, old: events.append((t, o["metadata"]["name"], old)))
    await inf.start()
    assert await inf.wait_synced(10)
    return inf, events


async def test_paged_list_then_watch_events(fake: FakeApi, client: ApiClient) -> None:
    for i in range(5):
        fake.put("configmaps", cm(f"c{i}"))
    inf, events = await started(client, page_size=2)
    try:
        assert sorted(o["metadata"]["name"] for o in inf.list()) == [f"c{i}" for i in range(5)]
        assert fake.count("list") == 3  # 2 + 2 + 1
        assert [e[0] for e in events] == ["ADDED"] * 5

        fake.put("configmaps", cm("c5"))
        fake.put("configmaps", cm("c1", x="1"))
        fake.delete("configmaps", "ns1", "c2")
        await eventually(lambda: len(events) == 8, what="3 watch events")
        assert [(t, n) for t, n, _ in events[5:]] == [("ADDED", "c5"), ("MODIFIED", "c1"), ("DELETED", "c2")]
        assert events[6][2] is not None and events[6][2].get("data") == {}  # old state handed over
        c1 = inf.get("ns1", "c1")
        assert c1 is not None and c1["data"] == {"x": "1"}
        assert inf.get("ns1", "c2") is None
        assert fake.count("list") == 3
    finally:
        await inf.wait_stopped()


async def test_managed_fields_stripped(fake: FakeApi, client: ApiClient) -> None:
    obj = cm("m")
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]
    fake.put("configmaps", obj)
    inf, _ = await started(client)
    try:
        got = inf.get("ns1", "m")
        assert got is not None and "managedFields" not in got["metadata"]
        assert got["kind"] == "ConfigMap" and got["apiVersion"] == "v1"
    finally:
        await inf.wait_stopped()


async def test_bookmark_moves_resume_point(fake: FakeApi, client: ApiClient) -> None:
    fake.put("configmaps", cm("a"))
    inf, _ = await started(client)
    try:
        await eventually(lambda: fake.count("watch") == 1, what="first watch")
        rv = fake.bookmark()
        await eventually(lambda: inf.resource_versions[None] == str(rv), what="bookmark rv")
        fake.disconnect_watches()
        await eventually(lambda: fake.count("watch") == 2, what="re-watch")
        last = [q for k, _, q in fake.requests if k == "watch"][-1]
        assert last["resourceVersion"] == str(rv)
        assert last["allowWatchBookmarks"] == "true"
        assert fake.count("list") == 1
    finally:
        await inf.wait_stopped()


async def test_disconnect_resumes_without_relist_and_misses_nothing(fake: FakeApi, client: ApiClient) -> None:
    inf, events = await started(client)
    try:
        await eventually(lambda: fake.count("watch") == 1, what="first watch")
        fake.disconnect_watches()
        # Changes made while the stream is down arrive through the resumed watch.
        fake.put("configmaps", cm("while-down"))
        await eventually(lambda: inf.get("ns1", "while-down") is not None, what="object after reconnect")
        assert fake.count("list") == 1
        assert ("ADDED", "while-down") in [(t, n) for t, n, _ in events]
    finally:
        await inf.wait_stopped()


async def test_410_relists_with_synthetic_delete_and_update(fake: FakeApi, client: ApiClient) -> None:
    fake.put("configmaps", cm("keep"))
    fake.put("configmaps", cm("gone"))
    fake.put("configmaps", cm("changed"))
    inf, events = await started(client)
    try:
        await eventually(lambda: fake.count("watch") == 1, what="first watch")
        # Changes the watch never delivers, then history is compacted away.
        fake.delete("configmaps", "ns1", "gone", notify=False)
        fake.put("configmaps", cm("changed", v="2"), notify=False)
        fake.put("configmaps", cm("new"), notify=False)
        fake.compact()
        events.clear()
        fake.disconnect_watches()
        await eventually(lambda: fake.count("list") == 2, what="re-list after 410")
        await eventually(lambda: len(events) == 3, what="synthetic events")
        assert sorted((t, n) for t, n, _ in events) == [
            ("ADDED", "new"),
            ("DELETED", "gone"),
            ("MODIFIED", "changed"),
        ]
        assert sorted(o["metadata"]["name"] for o in inf.list()) == ["changed", "keep", "new"]
        # And the watch continues from the new list.
        fake.put("configmaps", cm("after"))
        await eventually(lambda: inf.get("ns1", "after") is not None, what="event after re-list")
    finally:
        await inf.wait_stopped()


async def test_410_as_http_status(fake: FakeApi, client: ApiClient) -> None:
    inf, _ = await started(client)
    try:
        await eventually(lambda: fake.count("watch") == 1, what="first watch")
        fake.plan.append(("status", 410))
        fake.disconnect_watches()
        await eventually(lambda: fake.count("list") == 2, what="re-list")
    finally:
        await inf.wait_stopped()


async def test_429_backs_off_and_recovers(fake: FakeApi, client: ApiClient) -> None:
    fake.plan.extend([("list-status", 429, 1), ("list-status", 500)])
    inf = Informer(client, CONFIGMAPS, backoff=fast_backoff)
    await inf.start()
    try:
        assert await inf.wait_synced(15)
        assert fake.count("list") == 3
        fake.plan.append(("status", 429, 1))
        fake.disconnect_watches()
        fake.put("configmaps", cm("later"))
        await eventually(lambda: inf.get("ns1", "later") is not None, what="recovery after 429")
        assert fake.count("list") == 3  # a 429 on watch keeps the resume point
    finally:
        await inf.wait_stopped()


async def test_stalled_watch_is_restarted(fake: FakeApi, client: ApiClient) -> None:
    fake.plan.append("hang")
    inf, _ = await started(client, stall_timeout=0.3)
    try:
        fake.put("configmaps", cm("x"))
        await eventually(lambda: inf.get("ns1", "x") is not None, what="event after stall restart")
        assert fake.count("watch") >= 2
        assert fake.count("list") == 1
    finally:
        await inf.wait_stopped()


async def test_event_larger_than_aiohttp_line_limit(fake: FakeApi, client: ApiClient) -> None:
    inf, _ = await started(client)
    try:
        fake.put("configmaps", cm("big", blob="x" * 400_000))
        await eventually(lambda: inf.get("ns1", "big") is not None, what="large event")
        big = inf.get("ns1", "big")
        assert big is not None and len(big["data"]["blob"]) == 400_000
        assert fake.count("list") == 1
    finally:
        await inf.wait_stopped()


async def test_indexes_follow_updates_and_deletes(fake: FakeApi, client: ApiClient) -> None:
    a = cm("a", labels={"ray.io/cluster": "one"})
    a["metadata"]["ownerReferences"] = [
        {"uid": "u1", "kind": "RayCluster", "name": "one", "controller": True}
    ]
    fake.put("configmaps", a)
    fake.put("configmaps", cm("b", labels={"ray.io/cluster": "one"}))
    fake.put("configmaps", cm("c", ns="ns2", labels={"ray.io/cluster": "one"}))
    inf, _ = await started(client)
    try:
        inf.add_index("cluster", index_by_label("ray.io/cluster"))
        inf.add_index(INDEX_OWNER_UID, index_by_owner_uid)
        names = lambda v: sorted(o["metadata"]["name"] for o in inf.by_index("cluster", v))  # noqa: E731
        assert names(label_index_value("ns1", "one")) == ["a", "b"]
        assert names(label_index_value("ns2", "one")) == ["c"]
        assert [o["metadata"]["name"] for o in inf.by_index(INDEX_OWNER_UID, "u1")] == ["a"]
        fake.put("configmaps", cm("b", labels={"ray.io/cluster": "two"}))
        fake.delete("configmaps", "ns1", "a")
        await eventually(lambda: names(label_index_value("ns1", "two")) == ["b"], what="relabel")
        await eventually(lambda: names(label_index_value("ns1", "one")) == [], what="index cleanup")
        assert inf.by_index(INDEX_OWNER_UID, "u1") == []
        assert inf.list(labels={"ray.io/cluster": "one"})[0]["metadata"]["name"] == "c"
    finally:
        await inf.wait_stopped()


async def test_namespace_scopes_share_one_store(fake: FakeApi, client: ApiClient) -> None:
    fake.put("configmaps", cm("a", ns="ns1"))
    fake.put("configmaps", cm("b", ns="ns2"))
    fake.put("configmaps", cm("c", ns="ns3"))
    inf, _ = await started(client, namespaces=["ns1", "ns2"])
    try:
        assert sorted(o["metadata"]["name"] for o in inf.list()) == ["a", "b"]
        assert inf.list(namespace="ns2")[0]["metadata"]["name"] == "b"
        paths = {p for k, p, _ in fake.requests if k == "list"}
        assert paths == {"/api/v1/namespaces/ns1/configmaps", "/api/v1/namespaces/ns2/configmaps"}
        # A 410 in one scope re-lists only that scope and does not drop the other's objects.
        fake.delete("configmaps", "ns1", "a", notify=False)
        fake.compact()
        fake.disconnect_watches()
        await eventually(lambda: inf.get("ns1", "a") is None, what="synthetic delete in ns1")
        assert inf.get("ns2", "b") is not None
    finally:
        await inf.wait_stopped()


async def test_label_selector_is_sent(fake: FakeApi, client: ApiClient) -> None:
    fake.put("configmaps", cm("ray", labels={"app": "ray"}))
    fake.put("configmaps", cm("other", labels={"app": "x"}))
    inf, _ = await started(client, label_selector="app=ray")
    try:
        assert [o["metadata"]["name"] for o in inf.list()] == ["ray"]
    finally:
        await inf.wait_stopped()


async def test_handler_added_late_gets_replay_and_bad_handler_is_contained(
    fake: FakeApi, client: ApiClient
) -> None:
    fake.put("configmaps", cm("a"))
    inf, _ = await started(client)
    try:

        def bad(t: str, o: dict[str, Any], old: dict[str, Any] | None) -> None:
            raise RuntimeError("boom")

        inf.add_handler(bad)
        late: Events = []
        inf.add_handler(lambda t, o, old: late.append((t, o["metadata"]["name"], old)))
        assert late == [("ADDED", "a", None)]
        fake.put("configmaps", cm("b"))
        await eventually(lambda: len(late) == 2, what="event past a failing handler")
    finally:
        await inf.wait_stopped()


async def test_streams_that_close_at_once_back_off_and_recover(fake: FakeApi, client: ApiClient) -> None:
    fake.plan.extend(["empty"] * 4)
    inf, _ = await started(client)
    try:
        fake.put("configmaps", cm("x"))
        await eventually(lambda: inf.get("ns1", "x") is not None, what="event after empty streams")
        assert inf.watch_restarts >= 4
        assert fake.count("list") == 1
    finally:
        await inf.wait_stopped()
