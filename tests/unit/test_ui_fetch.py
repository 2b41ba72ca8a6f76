"""The web view's bounded fetch schedule (rayop/ui/fetch.py): what is fetched, how often, and when it stops."""

from __future__ import annotations

import asyncio
from typing import Any

from rayop.runtime.client import ApiClient, ClientConfig
from rayop.ui.caches import Caches
from rayop.ui.fetch import Fetcher, FetchOptions
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
