"""The controller runtime against the real kube-apiserver: informers, events, status writes, leases,
and a whole manager."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientSession

from rayop.local.plane import ControlPlane
from rayop.runtime.cache import Informer, index_by_label, label_index_value
from rayop.runtime.client import CONFIGMAPS, EVENTS, LEASES, PODS, ApiClient, ApiError, load_kubeconfig
from rayop.runtime.controller import Controller, Key, Result
from rayop.runtime.events import EventRecorder
from rayop.runtime.leader import LeaderElector
from rayop.runtime.manager import Manager
from rayop.runtime.status import write_status_if_changed


async def eventually(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def cm(name: str, ns: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": data,
    }


def pod(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]},
    }


async def test_informer_configmaps_with_label_selector(kube: ApiClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, cm("pre", namespace, {"app": "ray"}, k="0"))
    await kube.create(CONFIGMAPS, cm("unrelated", namespace, {"app": "other"}))
    inf = Informer(kube, CONFIGMAPS, namespace=namespace, label_selector="app=ray")
    events: list[tuple[str, str]] = []
    inf.add_handler(lambda t, o, old: events.append((t, o["metadata"]["name"])))
    await inf.start()
    try:
        assert await inf.wait_synced(20)
        assert [o["metadata"]["name"] for o in inf.list()] == ["pre"]
        assert "managedFields" not in inf.list()[0]["metadata"]

        await kube.create(CONFIGMAPS, cm("new", namespace, {"app": "ray"}))
        await kube.patch(CONFIGMAPS, "pre", {"data": {"k": "1"}}, namespace)
        await eventually(lambda: (inf.get(namespace, "pre") or {}).get("data") == {"k": "1"}, what="update")
        await eventually(lambda: inf.get(namespace, "new") is not None, what="create")

        # Leaving the selector looks like a delete to the watcher; entering it like an add.
        await kube.patch(CONFIGMAPS, "new", {"metadata": {"labels": {"app": "other"}}}, namespace)
        await eventually(lambda: inf.get(namespace, "new") is None, what="label moved out")
        await kube.patch(CONFIGMAPS, "unrelated", {"metadata": {"labels": {"app": "ray"}}}, namespace)
        await eventually(lambda: inf.get(namespace, "unrelated") is not None, what="label moved in")

        await kube.delete(CONFIGMAPS, "pre", namespace)
        await eventually(lambda: inf.get(namespace, "pre") is None, what="delete")
        assert ("DELETED", "pre") in events and ("MODIFIED", "pre") in events
        assert inf.relists == 1
    finally:
        await inf.wait_stopped()


async def test_informer_pods_indexed_by_cluster(kube: ApiClient, namespace: str) -> None:
    inf = Informer(kube, PODS, namespace=namespace, label_selector="ray.io/node-type in (head,worker)")
    inf.add_index("cluster", index_by_label("ray.io/cluster"))
    await inf.start()
    try:
        assert await inf.wait_synced(20)
        for i, node_type in enumerate(["head", "worker", "worker"]):
            labels = {"ray.io/cluster": "demo", "ray.io/node-type": node_type}
            await kube.create(PODS, pod(f"demo-{i}", namespace, labels))
        await kube.create(PODS, pod("not-ray", namespace, {"app": "x"}))
        key = label_index_value(namespace, "demo")
        await eventually(lambda: len(inf.by_index("cluster", key)) == 3, what="3 ray pods")
        assert inf.get(namespace, "not-ray") is None

        # Status updates (as a kubelet would make) reach the cache.
        p = await kube.get(PODS, "demo-0", namespace)
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        await kube.replace_status(PODS, p)
        await eventually(
            lambda: (inf.get(namespace, "demo-0") or {}).get("status", {}).get("phase") == "Running",
            what="pod status",
        )
        await kube.delete(PODS, "demo-1", namespace, grace_period=0)
        await eventually(lambda: len(inf.by_index("cluster", key)) == 2, what="pod deleted")
    finally:
        await inf.wait_stopped()


async def test_event_recorder_writes_and_folds_repeats(kube: ApiClient, namespace: str) -> None:
    obj = await kube.create(CONFIGMAPS, cm("subject", namespace))
    rec = EventRecorder(kube, "kuberay-operator", "test-instance")
    rec.record(obj, "Normal", "CreatedWorkerPod", "Create", "Created worker Pod x")
    for _ in range(4):
        rec.record(obj, "Warning", "FailedToCreateWorkerPod", "Create", "quota exceeded")
    rec.record({"metadata": {}}, "Normal", "Weird", "Create", "object without identity")  # never raises
    await rec.flush(10)
    try:
        evs = (await kube.list(EVENTS, namespace))["items"]
        by_reason = {e["reason"]: e for e in evs}
        created = by_reason["CreatedWorkerPod"]
        assert created["type"] == "Normal" and created["action"] == "Create"
        assert created["regarding"]["uid"] == obj["metadata"]["uid"]
        assert created["regarding"]["kind"] == "ConfigMap"
        assert created["reportingController"] == "kuberay-operator"
        assert created["reportingInstance"] == "test-instance"
        assert created["note"] == "Created worker Pod x"
        failed = [e for e in evs if e["reason"] == "FailedToCreateWorkerPod"]
        assert len(failed) == 1  # four records, one Event
        assert failed[0]["series"]["count"] == 4
    finally:
        await rec.stop()


async def test_status_written_only_when_changed_and_with_resource_version(
    kube: ApiClient, namespace: str
) -> None:
    p = await kube.create(PODS, pod("st", namespace, {"ray.io/node-type": "head"}))
    same = copy.deepcopy(p.get("status") or {})
    assert await write_status_if_changed(kube, PODS, p, same) is None

    new_status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    written = await write_status_if_changed(kube, PODS, p, new_status)
    assert written is not None and written["status"]["phase"] == "Running"
    assert written["metadata"]["resourceVersion"] != p["metadata"]["resourceVersion"]
    assert "status" not in p or p["status"] != written["status"]  # the input object is not modified

    # A write based on the stale object is refused, so it can never overwrite newer state.
    with pytest.raises(ApiError) as err:
        await write_status_if_changed(kube, PODS, p, {"phase": "Failed"})
    assert err.value.conflict
    assert (await kube.get(PODS, "st", namespace))["status"]["phase"] == "Running"


async def test_leader_election_one_leader_and_takeover(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    clients = [ApiClient(load_kubeconfig(plane.kubeconfig)) for _ in range(2)]
    timing = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}
    a = LeaderElector(clients[0], namespace, "ray-operator-leader", "a", **timing)
    b = LeaderElector(clients[1], namespace, "ray-operator-leader", "b", **timing)
    ta = asyncio.create_task(a.run())
    await a.wait_leader()
    tb = asyncio.create_task(b.run())
    try:
        await eventually(lambda: b.holder == "a", what="b observes a")
        await asyncio.sleep(timing["lease_duration"] + 1)  # longer than a lease: a keeps it by renewing
        assert a.is_leader and not b.is_leader
        lease = await kube.get(LEASES, "ray-operator-leader", namespace)
        assert lease["spec"]["holderIdentity"] == "a"

        # a dies without releasing: b must wait for the lease to expire, then take it.
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(b.wait_leader(), 20)
        assert asyncio.get_running_loop().time() - t0 < 20
        lease = await kube.get(LEASES, "ray-operator-leader", namespace)
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1

        # A graceful stop releases the lease for the next candidate at once.
        c = LeaderElector(clients[0], namespace, "ray-operator-leader", "c", **timing)
        tc = asyncio.create_task(c.run())
        b.stop()
        assert await asyncio.wait_for(tb, 10) is True
        await asyncio.wait_for(c.wait_leader(), 10)
        c.stop()
        assert await asyncio.wait_for(tc, 10) is True
    finally:
        for t in (ta, tb):
            t.cancel()
        for cl in clients:
            await cl.close()


async def test_lost_lease_ends_run(plane: ControlPlane, kube: ApiClient, namespace: str) -> None:
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    stopped: list[bool] = []
    a = LeaderElector(
        client,
        namespace,
        "lease-lost",
        "a",
        lease_duration=4,
        renew_deadline=2,
        retry_period=0.5,
        on_stopped=lambda: stopped.append(True),
    )
    task = asyncio.create_task(a.run())
    try:
        await asyncio.wait_for(a.wait_leader(), 10)
        # Someone else takes the lease (an admin, or a partition healed in the other's favour).
        lease = await kube.get(LEASES, "lease-lost", namespace)
        lease["spec"]["holderIdentity"] = "intruder"
        await kube.replace(LEASES, lease)
        assert await asyncio.wait_for(task, 20) is False
        assert a.lost and stopped == [True] and not a.is_leader
    finally:
        task.cancel()
        await client.close()


async def test_manager_runs_controllers_only_as_leader(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    seen: dict[str, list[Key]] = {"m1": [], "m2": []}
    managers = []
    for ident in ("m1", "m2"):
        client = ApiClient(load_kubeconfig(plane.kubeconfig))

        async def reconcile(key: Key, ident: str = ident) -> Result | None:
            seen[ident].append(key)
            return None

        m = Manager(
            client,
            leader_election_namespace=namespace,
            identity=ident,
            namespaces=[namespace],
            metrics_addr="127.0.0.1:0",
            probe_addr="127.0.0.1:0",
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
            handle_signals=False,
        )
        ctrl = m.add_controller(Controller(f"cm-{ident}", reconcile, concurrency=2))
        ctrl.watch_primary(m.informer(CONFIGMAPS))
        managers.append(m)
    await kube.create(CONFIGMAPS, cm("one", namespace))
    t1 = asyncio.create_task(managers[0].run())
    await eventually(lambda: managers[0].is_leader, what="m1 leads")
    t2 = asyncio.create_task(managers[1].run())
    try:
        await eventually(lambda: (namespace, "one") in seen["m1"], what="m1 reconciles")
        await eventually(lambda: managers[1].caches_synced(), what="standby cache warm")
        async with ClientSession() as s:
            for m in managers:  # both Ready: readiness does not depend on the lease
                async with s.get(f"http://127.0.0.1:{m.servers.probe_port}/readyz") as r:
                    assert r.status == 200
            async with s.get(f"http://127.0.0.1:{managers[0].servers.metrics_port}/metrics") as r:
                text = await r.text()
                assert 'controller_runtime_reconcile_total{controller="cm-m1",result="success"}' in text
        assert seen["m2"] == []

        managers[0].stop()  # graceful: releases the lease
        await asyncio.wait_for(t1, 30)
        await eventually(lambda: managers[1].is_leader, what="m2 takes over")
        await kube.create(CONFIGMAPS, cm("two", namespace))
        await eventually(lambda: (namespace, "two") in seen["m2"], what="m2 reconciles")
    finally:
        for m in managers:
            m.stop()
        await asyncio.gather(t1, t2, return_exceptions=True)
        for m in managers:
            await m.client.close()


async def test_stop_drains_controllers_then_cancels_servers(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    """A runnable that serves until cancelled (the webhook) must not hold shutdown for the grace period,
    and it keeps serving until the in-flight reconcile has finished."""
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    order: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: Key) -> Result | None:
        if key[1] != "one":  # kube-root-ca.crt, published into every namespace
            return None
        started.set()
        await release.wait()
        order.append("reconcile done")
        return None

    async def server() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("server cancelled")

    m = Manager(
        client,
        leader_election=False,
        namespaces=[namespace],
        metrics_addr="127.0.0.1:0",
        probe_addr="127.0.0.1:0",
        handle_signals=False,
        graceful_shutdown_timeout=60,
    )
    m.add_controller(Controller("cm-drain", reconcile, concurrency=1)).watch_primary(m.informer(CONFIGMAPS))
    m.add_runnable("server", server, needs_leader=False)
    run = asyncio.create_task(m.run())
    try:
        await kube.create(CONFIGMAPS, cm("one", namespace))
        await asyncio.wait_for(started.wait(), 20)
        m.stop()
        await asyncio.sleep(0)
        assert not run.done()  # still draining the reconcile
        release.set()
        await asyncio.wait_for(run, 10)  # far less than the 60 s grace period
        assert order == ["reconcile done", "server cancelled"]
    finally:
        release.set()
        m.stop()
        await asyncio.gather(run, return_exceptions=True)
        await client.close()
