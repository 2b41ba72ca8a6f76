"""The web view against the real API server: pages from the caches (no API call per view, at 100 RayClusters x
11 Pods), real TokenReview and SubjectAccessReview, who changed replicas from real managedFields, the history
rebuilt from the controller's events after a restart, and `rayop ui` as a command."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from rayop import ui
from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import is_terminating
from rayop.controllers.common import POD_SELECTOR
from rayop.local.plane import ControlPlane
from rayop.runtime.client import (
    CORE_EVENTS,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    ApiClient,
    load_kubeconfig,
)
from rayop.runtime.manager import Manager
from tests.helpers import eventually
from tests.integration.rayclusters import fake_kubelet, raycluster
from tests.integration.rayclusters import operator as rc_operator

Obj = dict[str, Any]


@contextlib.asynccontextmanager
async def view(client: ApiClient, namespaces: list[str], **options: Any) -> AsyncIterator[ui.Ui]:
    """The web view alone on a manager of its own, as `rayop ui` runs it."""
    mgr = Manager(
        client,
        leader_election=False,
        namespaces=namespaces,
        metrics_addr=None,
        probe_addr=None,
        handle_signals=False,
    )
    u = ui.setup(mgr, ui.UiOptions(port=0, pod_selector=POD_SELECTOR, namespaces=namespaces, **options))
    task = asyncio.create_task(mgr.run())
    try:
        await asyncio.wait_for(u.ready.wait(), 60)
        yield u
    finally:
        mgr.stop()
        await asyncio.wait_for(task, 30)


async def get(url: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:
        return r.status, await r.text()


def plain_pod(ns: str, cluster: str, name: str, node_type: str, group: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {C.LABEL_CLUSTER: cluster, C.LABEL_NODE_TYPE: node_type, C.LABEL_GROUP: group},
        },
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
    }


async def test_the_overview_of_100_clusters_with_11_pods_each_makes_no_api_call(
    kube: ApiClient, namespace: str, plane: ControlPlane
) -> None:
    ns = namespace
    sem = asyncio.Semaphore(32)

    async def create(res: Any, obj: Obj) -> None:
        async with sem:
            await kube.create(res, obj, ns)

    clusters = [f"rc-{i:03d}" for i in range(100)]
    await asyncio.gather(*(create(RAYCLUSTERS, raycluster(c, ns, replicas=10)) for c in clusters))
    pods = [plain_pod(ns, c, f"{c}-head", "head", "headgroup") for c in clusters]
    pods += [
        plain_pod(ns, c, f"{c}-workers-worker-{j}", "worker", "workers") for c in clusters for j in range(10)
    ]
    await asyncio.gather(*(create(PODS, p) for p in pods))

    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    try:
        async with view(client, [ns]) as u:
            await eventually(lambda: len(u.view.caches.pods.list(ns)) == 1100, 60, what="1100 pods cached")
            before = client.request_count
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                status, body = await get(u.url)
                times.append(time.perf_counter() - t0)
                assert status == 200
            assert body.count('href="/clusters/') == 100
            # Nothing in the page came from the API server: the caches answered.
            assert client.request_count == before, client.request_count - before
            print(
                f"\noverview of 100 clusters x 11 pods: {min(times) * 1000:.0f} ms (best of 5), {len(body)} bytes"
            )
    finally:
        await client.close()


async def token_for(kube: ApiClient, ns: str, sa: str) -> str:
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(ns, sa, "token"),
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    return str(answer["status"]["token"])


async def test_tokens_and_rbac_decide_what_each_caller_sees(
    kube: ApiClient, namespace: str, plane: ControlPlane
) -> None:
    from rayop.runtime.client import NAMESPACES

    a, b = namespace, f"{namespace}-b"
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": b}})
    try:
        await kube.create(RAYCLUSTERS, raycluster("alpha", a), a)
        await kube.create(RAYCLUSTERS, raycluster("beta", b), b)
        await kube.create(
            SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer"}}, a
        )
        await kube.create(
            ROLES,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "ray-viewer"},
                "rules": [{"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list"]}],
            },
            a,
        )
        await kube.create(
            ROLEBINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "ray-viewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ray-viewer"},
                "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": a}],
            },
            a,
        )
        token = await token_for(kube, a, "viewer")
        client = ApiClient(load_kubeconfig(plane.kubeconfig))
        try:
            async with view(client, [a, b], auth=True) as u:
                await eventually(
                    lambda: len(u.view.caches.clusters.list()) == 2, 30, what="both clusters cached"
                )
                status, _ = await get(u.url, allow_redirects=False)
                assert status == 303  # to the sign-in form
                bearer = {"Authorization": f"Bearer {token}"}
                status, body = await get(u.url, headers=bearer)
                assert status == 200
                assert f'href="/clusters/{a}/alpha"' in body and "beta" not in body
                assert "1 more object is hidden" in body
                status, body = await get(f"{u.url}clusters/{a}/alpha", headers=bearer)
                assert status == 200
                assert "Your account may not list Pods in this namespace." in body
                status, _ = await get(f"{u.url}clusters/{b}/beta", headers=bearer)
                assert status == 404
                status, _ = await get(u.url, headers={"Authorization": "Bearer not-a-token"})
                assert status == 401
                # Answers are cached: a second look asks the API server nothing.
                before = client.request_count
                status, _ = await get(u.url, headers=bearer)
                assert status == 200 and client.request_count == before
                assert u.counters.token_reviews >= 2 and u.counters.access_reviews >= 2
        finally:
            await client.close()
    finally:
        await kube.delete(NAMESPACES, b, ignore_not_found=True)


async def test_who_changed_replicas_and_the_history_after_a_restart(
    kube: ApiClient, namespace: str, plane: ControlPlane
) -> None:
    ns = namespace
    # Ray's autoscaler patches with Python `requests` and no fieldManager: the API server names it by its
    # User-Agent. A user's `kubectl patch` names itself.
    autoscaler = ApiClient(load_kubeconfig(plane.kubeconfig), user_agent="python-requests/2.32.5")
    client = ApiClient(load_kubeconfig(plane.kubeconfig))

    def patch(n: int) -> list[Obj]:
        return [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": n}]

    try:
        async with rc_operator(kube, ns), fake_kubelet(kube, ns):
            await kube.create(RAYCLUSTERS, raycluster("web", ns, replicas=1), ns)
            async with view(client, [ns]) as u:

                def desired() -> int | None:
                    g = u.history.groups(ns, "web").get("workers")
                    return g.desired.last if g else None

                def live_pods() -> int:
                    return sum(not is_terminating(p) for p in u.view.caches.cluster_pods(ns, "web"))

                # Each step waits for the operator to have followed the last one: a change made before
                # it acted would fold two steps into one batch of Pod creations, and one Event.
                await eventually(lambda: desired() == 1, 30, what="first sight")
                await eventually(lambda: live_pods() == 2, 60, what="head and 1 worker")
                await autoscaler.patch(RAYCLUSTERS, "web", patch(3), ns, patch_type="json")
                await eventually(lambda: desired() == 3, 30, what="autoscaler's change seen")
                await eventually(lambda: live_pods() == 4, 60, what="head and 3 workers")
                await kube.patch(
                    RAYCLUSTERS, "web", patch(2), ns, patch_type="json", field_manager="kubectl-patch"
                )
                await eventually(lambda: desired() == 2, 30, what="user's change seen")
                # Only the changes seen live: the view may also have rebuilt the first Pod's creation from events.
                changes = [
                    (c.before, c.after, c.by) for c in u.history.changes(ns, "web") if c.source == "watch"
                ]
                assert changes == [(1, 3, "Ray autoscaler"), (3, 2, "user (kubectl-patch)")]
                status, body = await get(f"{u.url}clusters/{ns}/web")
                assert status == 200 and "Ray autoscaler" in body and "user (kubectl-patch)" in body
                # The operator created and deleted worker Pods to follow; wait for its events.
                await eventually(lambda: live_pods() == 3, 60, what="head and 2 workers")

            # Events are written in the background; the restart must come after they are stored.
            async def pod_events() -> bool:
                evs = await kube.list(CORE_EVENTS, ns, field_selector="involvedObject.name=web")
                reasons = [e.get("reason") for e in evs["items"]]
                return reasons.count("CreatedWorkerPod") == 2 and reasons.count("DeletedWorkerPod") == 1

            await eventually(pod_events, 30, 0.5, what="the controller's Pod events stored")
            # A restart: a fresh view knows nothing, then rebuilds the worker counts from the events.
            async with view(client, [ns]) as fresh:
                rebuilt = [(c.after, c.by) for c in fresh.history.changes(ns, "web") if c.source == "events"]
                # The Pod counts from the controller's events; the last change's author from managedFields.
                assert rebuilt == [(1, "unknown"), (3, "unknown"), (2, "user (kubectl-patch)")], rebuilt
                status, body = await get(f"{fresh.url}clusters/{ns}/web")
                assert "rebuilt from events" in body
    finally:
        await autoscaler.close()
        await client.close()


def test_rayop_ui_serves_a_kubeconfig(plane: ControlPlane) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rayop.cli.main", "ui", f"--kubeconfig={plane.kubeconfig}", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = ""
        lines = []
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("rayop web view: "):
                url = line.split(": ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), "no URL printed"
        # The plane's admin may list everything: no access warning.
        assert not [x for x in lines if x.startswith("warning:")], lines
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<h1>Overview</h1>" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


async def test_every_replica_serves_the_view_leader_or_not(
    kube: ApiClient, namespace: str, plane: ControlPlane
) -> None:
    from rayop.local.plane import pick_free_ports
    from rayop.operator.config import OperatorConfig
    from rayop.operator.main import build_manager

    ns = namespace
    await kube.create(RAYCLUSTERS, raycluster("shared", ns, replicas=0), ns)
    ports = pick_free_ports(2)
    replicas = []
    for port in ports:
        cfg = OperatorConfig(
            watch_namespaces=[ns],
            leader_election_namespace=ns,
            ui_port=port,
            enable_webhook=False,
            kubeconfig=plane.kubeconfig,
        )
        client = ApiClient(load_kubeconfig(plane.kubeconfig))
        mgr = build_manager(cfg, client, metrics_addr=None, probe_addr=None, handle_signals=False)
        replicas.append((mgr, client, asyncio.create_task(mgr.run())))
    try:
        await eventually(lambda: sum(m.is_leader for m, _, _ in replicas) == 1, 60, what="one leader")
        for port in ports:

            async def listed(port: int = port) -> bool:
                status, body = await get(f"http://127.0.0.1:{port}/")
                return status == 200 and f'href="/clusters/{ns}/shared"' in body

            await eventually(listed, 30, 0.2, what=f"the view on port {port} lists the cluster")
    finally:
        for mgr, client, task in replicas:
            mgr.stop()
            await asyncio.wait_for(task, 30)
            await client.close()
