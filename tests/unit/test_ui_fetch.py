"""The web view's bounded fetch schedule (rayop/ui/fetch.py): what is fetched, how often, and when it stops."""

from __future__ import annotations

import asyncio
from typing import Any

from rayop.runtime.client import ApiClient, ClientConfig
from rayop.ui.caches import Caches
from rayop.ui.fetch import Fetcher, FetchOptions, ServeReplicas, serve_replicas
from rayop.ui.history import ScalingHistory
from tests.helpers import eventually
from tests.unit.test_ui_server import MemCache, rc

Obj = dict[str, Any]


def head(cluster: str, ready: bool) -> Obj:
    return {
        "metadata": {
            "name": f"{cluster}-head",
            "namespace": "a",
            "labels": {"ray.io/cluster": cluster, "ray.io/node-type": "head", "ray.io/group": "headgroup"},
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def head_svc(cluster: str) -> Obj:
    return {
        "metadata": {
            "name": f"{cluster}-head-svc",
            "namespace": "a",
            "labels": {"ray.io/cluster": cluster, "ray.io/node-type": "head"},
        }
    }


class FakeDashboard:
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    async def list_alive_nodes(self) -> list[Obj]:
        self.calls.append(self.name)
        return [{"node_ip": "1.1.1.1", "labels": {"ray.io/node-group": "g"}}]

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_ray_is_asked_on_a_schedule_and_only_where_the_head_is_ready(monkeypatch: Any) -> None:
    caches = Caches(
        MemCache(rc("up"), rc("down")),
        MemCache(),
        MemCache(),
        MemCache(head("up", True), head("down", False)),
        MemCache(head_svc("up"), head_svc("down")),
    )
    clock = Clock()
    history = ScalingHistory()
    opts = FetchOptions(sweep_interval=60, viewed_ray_interval=5, interest_seconds=30, tick=0.01)
    f = Fetcher(
        ApiClient(ClientConfig(server="http://127.0.0.1:9")), caches, history, opts, clock=clock, wall=clock
    )
    calls: list[str] = []

    async def dashboard(ns: str, cluster: str) -> Any:
        return FakeDashboard(calls, cluster)

    monkeypatch.setattr(f, "_dashboard", dashboard)
    task = asyncio.create_task(f.run())

    async def settle() -> None:
        # Two passes of the loop after the clock moved, and every fetch they started finished.
        start = f.rounds
        await eventually(lambda: f.rounds >= start + 2 and not f._running, 5, 0.005, what="fetch loop passes")

    try:
        # The first sweep of each cluster is spread over the interval; after it, a ready head was asked once.
        await settle()
        assert calls == []
        clock.t += 61
        await settle()
        assert calls == ["up"]
        assert f.ray_counts("a", "up").value == {"g": 1}
        assert history.groups("a", "up")["g"].ray.last == 1
        # Nothing more until the next sweep...
        clock.t += 30
        await settle()
        assert calls == ["up"]
        # ...unless someone looks at the cluster: then every 5 s, while the interest lasts.
        f.ray_counts("a", "up", viewed=True)
        await settle()
        assert calls == ["up", "up"]
        clock.t += 5
        await settle()
        assert calls == ["up", "up", "up"]
        clock.t += 31  # interest lapsed, and the next sweep came: one more call
        await settle()
        clock.t += 5
        await settle()
        assert calls.count("up") == 4
        # The cluster whose head is not ready was never asked.
        assert "down" not in calls
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def serve_details(target: int, running: int, autoscaled: bool) -> Obj:
    config: Obj = {"num_replicas": target}
    if autoscaled:
        config = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 5}}
    return {
        "applications": {
            "fruit": {
                "deployments": {
                    "Mango": {
                        "target_num_replicas": target,
                        "deployment_config": config,
                        "replicas": [{"state": "RUNNING"}] * running + [{"state": "STARTING"}],
                    }
                }
            }
        }
    }


def test_serve_replicas_read_serves_answer() -> None:
    assert serve_replicas(serve_details(3, 2, False)) == {"fruit/Mango": ServeReplicas(3, 2, False)}
    assert serve_replicas(serve_details(4, 4, True))["fruit/Mango"].autoscaled
    # Older answers without target_num_replicas fall back to the configured count; junk reads as nothing.
    old = serve_details(2, 1, False)
    del old["applications"]["fruit"]["deployments"]["Mango"]["target_num_replicas"]
    assert serve_replicas(old)["fruit/Mango"].target == 2
    assert serve_replicas({"applications": {"x": "y"}}) == {}


class FakeServeDashboard:
    def __init__(self) -> None:
        self.details: Obj = {}

    async def get_serve_applications(self) -> Obj:
        return self.details

    async def close(self) -> None:
        return None


async def test_serve_replicas_history_names_who_changed_them(monkeypatch: Any) -> None:
    rs: Obj = {
        "metadata": {
            "name": "svc",
            "namespace": "a",
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "time": "2026-01-01T00:00:00Z",
                    "fieldsV1": {"f:spec": {"f:serveConfigV2": {}}},
                }
            ],
        },
        "status": {"activeServiceStatus": {"rayClusterName": "up"}},
    }
    caches = Caches(
        MemCache(rc("up")), MemCache(), MemCache(rs), MemCache(head("up", True)), MemCache(head_svc("up"))
    )
    f = Fetcher(ApiClient(ClientConfig(server="http://127.0.0.1:9")), caches, ScalingHistory(), wall=Clock())
    f.serve_managers.note(rs)
    dash = FakeServeDashboard()

    async def dashboard(ns: str, cluster: str) -> Any:
        return dash

    monkeypatch.setattr(f, "_dashboard", dashboard)
    dash.details = serve_details(1, 1, False)
    await f._fetch_serve("a", "svc")
    dash.details = serve_details(3, 1, False)  # a new serveConfigV2 asks for 3
    await f._fetch_serve("a", "svc")
    dash.details = serve_details(5, 3, True)  # then Serve's autoscaler decides
    await f._fetch_serve("a", "svc")
    changes = [(c.before, c.after, c.by) for c in f.serve_history.changes("a", "svc")]
    assert changes == [(1, 3, "user (kubectl-client-side-apply)"), (3, 5, "Ray Serve autoscaler")]
    assert f.serve("a", "svc").value == {"fruit/Mango": ServeReplicas(5, 3, True)}
