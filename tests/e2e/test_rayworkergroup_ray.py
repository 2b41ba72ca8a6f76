"""A worker group scaled down through its RayWorkerGroup on real Ray (node agent, real Pods): idle workers
go first, each drained in Ray by a drain Pod; busy ones stay until they are idle, and the task and the actor
they run survive. A scale-down reversed while its drains run replaces the drained workers.

The operator reaches the head's dashboard through the API server's service proxy; drain Pods reach the
GCS through the head Service's DNS name inside the node's pod network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rayop.api import workergroup as W
from rayop.api.kinds import RAYCLUSTERS
from rayop.controllers.podplan import is_running_and_ready
from rayop.node import containers
from rayop.node.agent import NodeAgent
from rayop.node.locate import locate
from rayop.ray.dashboard import DashboardClient
from rayop.runtime.client import PODS, ApiClient
from tests.e2e import test_node_agent as na
from tests.helpers import eventually
from tests.integration.events import events_of, wait_event
from tests.integration.workergroups import get_rwg, operator, set_scale

pytestmark = [
    na.pytestmark,
    pytest.mark.skipif(not (na.RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment"),
]
node_net = na.node_net
node_plane = na.node_plane
kube = na.kube
ns = na.ns

T = 420.0  # three Ray nodes and a head starting at once on a loaded 2-core machine take a while
TASK_SECONDS = 45

# Runs in the head Pod for the whole test: a long task on worker A, a detached actor on worker B, then it
# waits for both and prints what they returned.
DRIVER = """
import json, sys, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ips = json.loads(sys.argv[1])
ray.init(namespace="scale-test")
node = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
@ray.remote(num_cpus=1)
def long(seconds):
    time.sleep(seconds)
    return "task done"
@ray.remote(num_cpus=0)
class Holder:
    def ping(self):
        return "actor alive"
holder = Holder.options(name="holder", lifetime="detached", scheduling_strategy=On(node[ips["b"]], soft=False)).remote()
ray.get(holder.ping.remote())
ref = long.options(scheduling_strategy=On(node[ips["a"]], soft=False)).remote(SECONDS)
print("STARTED", flush=True)
print("RESULT", ray.get(ref), ray.get(holder.ping.remote()), flush=True)
""".replace("SECONDS", str(TASK_SECONDS))


def cluster(ns: str) -> dict[str, Any]:
    def container(name: str, cpu: str, memory: str) -> dict[str, Any]:
        res = {"cpu": cpu, "memory": memory}
        return {"name": name, "image": "rayproject/ray:2.60.0", "resources": {"requests": res, "limits": res}}

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "scaled", "namespace": ns},
        "spec": {
            "rayVersion": "2.60.0",
            # The head runs no tasks: every task and actor lands on a worker.
            "headGroupSpec": {
                "rayStartParams": {"num-cpus": "0"},
                "template": {"spec": {"containers": [container("ray-head", "1", "2Gi")]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": 3,
                    "minReplicas": 0,
                    "maxReplicas": 5,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [container("ray-worker", "1", "1Gi")]}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
async def node(node_plane: Any, node_net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and pods share this host's home.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    agent, task = await na.start_agent(node_plane, node_net, state, cpu="16", memory="16Gi", default_env=env)
    try:
        yield agent
    finally:
        leftovers = await na.stop_agent(agent, task)
        assert leftovers == [], f"netns left behind: {leftovers}"


async def workers(kube: ApiClient, ns: str) -> dict[str, dict[str, Any]]:
    items = (await kube.list(PODS, ns, label_selector="ray.io/cluster=scaled,ray.io/node-type=worker"))[
        "items"
    ]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


async def explain(kube: ApiClient, ns: str) -> str:
    """What the operator said and what the drain Pods did, for a failure message."""
    lines = [f"event {r}: {n}" for r, n in await events_of(kube, ns, "scaled-workers")]
    drains = (await kube.list(PODS, ns, label_selector=f"ray.io/node-type={W.NODE_TYPE_DRAIN}"))["items"]
    for d in drains:
        st = d.get("status") or {}
        lines.append(f"drain {d['metadata']['name']}: {st.get('phase')} {st.get('containerStatuses')}")
        with contextlib.suppress(Exception):
            lines.append((await na.logs(kube, ns, d["metadata"]["name"]))[-1500:])
    rc = await kube.get(RAYCLUSTERS, "scaled", ns)
    lines.append(f"group: {rc['spec']['workerGroupSpecs'][0]}"[:1500])
    return "\n".join(lines)


async def test_scale_down_removes_idle_workers_first_and_keeps_busy_ones(
    node: NodeAgent, kube: ApiClient, ns: str
) -> None:
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    async with operator(kube, ns, use_proxy=True, retry_seconds=3.0):
        await kube.create(RAYCLUSTERS, cluster(ns))

        async def three_ready() -> bool:
            obj = await get_rwg(kube, ns, "scaled-workers")
            return bool(obj and (obj.get("status") or {}).get("readyReplicas") == 3)

        try:
            await eventually(three_ready, T, 1.0, what="3 ready workers")
        except AssertionError:
            pods = await kube.list(PODS, ns)
            raise AssertionError(
                await na.diagnose(kube, ns, [p["metadata"]["name"] for p in pods["items"]])
            ) from None
        marks["ready"] = time.monotonic() - t0
        pods = await workers(kube, ns)
        a, b, c = sorted(pods)
        ips = {"a": pods[a]["status"]["podIP"], "b": pods[b]["status"]["podIP"]}
        heads = (await kube.list(PODS, ns, label_selector="ray.io/cluster=scaled,ray.io/node-type=head"))[
            "items"
        ]
        loc = await locate(kube, ns, heads[0]["metadata"]["name"], "ray-head")
        driver = asyncio.create_task(
            containers.exec_in(loc.pid, loc.spec_path, ["python", "-c", DRIVER, json.dumps(ips)], T)
        )
        dash = DashboardClient.via_proxy(kube, ns, "scaled-head-svc")
        try:
            # Scale to 1 once Ray runs the task and the actor.
            async def running() -> bool:
                if driver.done():
                    code, out = driver.result()
                    raise RuntimeError(
                        f"the driver exited with {code}: {out.decode(errors='replace')[-2000:]}"
                    )
                tasks = await dash.list_state("tasks", [("state", "=", "RUNNING")])
                actors = await dash.list_state("actors", [("state", "=", "ALIVE")])
                return any(t.get("name") == "long" for t in tasks) and len(actors) >= 1

            await eventually(running, 120, 1.0, what="the task and the actor running in Ray")
            marks["work running"] = time.monotonic() - t0
            await set_scale(kube, ns, "scaled-workers", 1)

            async def both_busy() -> bool:
                note = next(
                    (n for r, n in await events_of(kube, ns, "scaled-workers") if r == W.EV_WORKERS_BUSY), ""
                )
                return f"{a} runs 1 task" in note and f"{b} hosts 1 actor" in note

            # The idle worker goes first, drained in Ray; the busy two stay, and the event says why.
            await eventually(both_busy, 120, 1.0, what="a WorkersBusy event naming the task and the actor")
            marks["busy reported"] = time.monotonic() - t0

            async def idle_one_gone() -> bool:
                return set(await workers(kube, ns)) == {a, b}

            await eventually(idle_one_gone, 120, 0.5, what=f"{c} removed")
            marks["idle removed"] = time.monotonic() - t0
            assert not driver.done(), "the task finished before the idle worker went: nothing was busy"
            note = await wait_event(kube, ns, "scaled-workers", W.EV_SELECTED_WORKER, c)
            assert "Ray drained its node" in note

            # Once the task is done its worker is idle, and goes; the actor's worker stays.
            code, out = await asyncio.wait_for(driver, T)
            text = out.decode(errors="replace")
            assert code == 0, text[-3000:]
            assert "RESULT task done actor alive" in text, text[-3000:]
            marks["task done"] = time.monotonic() - t0

            async def only_actor_left() -> bool:
                return set(await workers(kube, ns)) == {b}

            await eventually(only_actor_left, 120, 0.5, what=f"{a} removed once idle")
            marks["task worker removed"] = time.monotonic() - t0
        except AssertionError as e:
            raise AssertionError(f"{e}\n{await explain(kube, ns)}") from None
        finally:
            await dash.close()
            if not driver.done():
                driver.cancel()
        rc = await kube.get(RAYCLUSTERS, "scaled", ns)
        assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 1
        # The actor still answers after both scale-downs.
        code, out = await containers.exec_in(
            loc.pid,
            loc.spec_path,
            [
                "python",
                "-c",
                "import ray; ray.init(namespace='scale-test'); "
                "print('PING', ray.get(ray.get_actor('holder').ping.remote()))",
            ],
            120,
        )
        assert code == 0 and "PING actor alive" in out.decode(errors="replace"), out.decode(errors="replace")
        # The events say which workers were drained (the idle one, then the one whose task ended).
        for worker in (c, a):
            try:
                await wait_event(kube, ns, "scaled-workers", W.EV_DRAINING_WORKER, worker)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{await explain(kube, ns)}") from None
    print(f"\nRayWorkerGroup scale-down on real Ray (s since apply): {marks}")


async def test_a_worker_drained_for_a_scale_down_that_was_reversed_is_replaced(
    node: NodeAgent, kube: ApiClient, ns: str
) -> None:
    """2 -> 0 -> 1 with both drains running when the size goes back up, as an HPA may within seconds. An
    accepted drain ends the raylet but not `ray start --block`, so a drained Pod kept would stay not Ready
    with no Ray node for minutes; rayop removes both and a new Pod takes the kept one's place."""
    rc = cluster(ns)
    rc["metadata"]["name"] = "flip"
    rc["spec"]["workerGroupSpecs"][0]["replicas"] = 2
    sel = "ray.io/cluster=flip,ray.io/node-type=worker"
    seen: list[str] = []

    async def state() -> tuple[set[str], int, int]:
        """Live worker Pods, how many are Ready, and Ray's alive worker nodes (-1: no answer)."""
        items = (await kube.list(PODS, ns, label_selector=sel))["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in live if is_running_and_ready(p))
        dash = DashboardClient.via_proxy(kube, ns, "flip-head-svc")
        try:
            nodes = sum(1 for n in await dash.list_alive_nodes() if not n.get("is_head_node"))
        except Exception:
            nodes = -1
        finally:
            await dash.close()
        names = {p["metadata"]["name"] for p in live}
        seen.append(f"pods={sorted(names)} ready={ready} ray_nodes={nodes}")
        return names, ready, nodes

    async def drain_pods() -> int:
        items = (
            await kube.list(
                PODS, ns, label_selector=f"ray.io/cluster=flip,ray.io/node-type={W.NODE_TYPE_DRAIN}"
            )
        )["items"]
        return len(items)

    async with operator(kube, ns, use_proxy=True, retry_seconds=3.0):
        await kube.create(RAYCLUSTERS, rc)
        try:

            async def two_in_ray() -> set[str] | None:
                names, ready, nodes = await state()
                return names if (len(names), ready, nodes) == (2, 2, 2) else None

            first = await eventually(two_in_ray, T, 2.0, what="2 workers in Ray")
            await set_scale(kube, ns, "flip-workers", 0)
            await eventually(lambda: _eq(drain_pods(), 2), 60, 0.3, what="both drains started")
            await set_scale(kube, ns, "flip-workers", 1)

            async def replaced() -> bool:
                names, ready, nodes = await state()
                return len(names) == 1 and not names & first and (ready, nodes) == (1, 1)

            await eventually(replaced, T, 2.0, what="1 new worker in Ray, the drained ones gone")
            note = await wait_event(kube, ns, "flip-workers", W.EV_SELECTED_WORKER, "Replacing")
            assert "a new Pod takes its place" in note
        except AssertionError as e:
            lines = "\n".join(seen[-10:])
            events = "\n".join(f"event {r}: {n}" for r, n in await events_of(kube, ns, "flip-workers"))
            raise AssertionError(f"{e}\n{lines}\n{events}") from None
    assert (await kube.get(RAYCLUSTERS, "flip", ns))["spec"]["workerGroupSpecs"][0]["replicas"] == 1


async def _eq(coro: Any, want: int) -> bool:
    return bool(await coro == want)
