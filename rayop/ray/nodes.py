"""What each Ray node of a cluster is doing, as the dashboard reports it: the input of a safe scale-down.

`observe_nodes` makes three calls (the node summary, running tasks, live actors) and `node_loads` joins
them, purely, into one `RayNode` per node. A node is idle when it runs no task, hosts no actor and holds
no primary copy of an object: the same things that make Ray's raylet refuse a drain for idle termination
(`ray drain-node --reason DRAIN_NODE_REASON_IDLE_TERMINATION`), which stays the race-free check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rayop.ray.dashboard import DashboardClient

# Task states that hold a worker of a node (python/ray/util/state/common.py TypeTaskStatus); the
# others are finished or still waiting for a node.
_DONE_TASK_STATES = ("FINISHED", "FAILED")


@dataclass(frozen=True)
class RayNode:
    node_id: str
    instance_id: str  # the Pod name (KubeRay sets RAY_CLOUD_INSTANCE_ID from metadata.name)
    ip: str
    alive: bool
    is_head: bool = False
    tasks: int = 0
    actors: int = 0
    primary_copies: int = 0

    @property
    def idle(self) -> bool:
        return self.tasks == 0 and self.actors == 0 and self.primary_copies == 0

    @property
    def load(self) -> int:
        """How much would be lost with the node: the busiest node has the highest load."""
        return self.tasks + self.actors + self.primary_copies

    def why_busy(self) -> str:
        """What keeps the node from being idle, in words ("" when idle)."""
        parts = []
        for n, what in ((self.tasks, "task"), (self.actors, "actor"), (self.primary_copies, "object")):
            if n:
                parts.append(f"{n} {what}{'s' if n != 1 else ''}")
        if not parts:
            return ""
        if self.primary_copies:
            parts[-1] += " (primary copies)" if self.primary_copies != 1 else " (primary copy)"
        return ", ".join(parts)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _count_by_node(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        node = r.get("node_id")
        if isinstance(node, str) and node:
            out[node] = out.get(node, 0) + 1
    return out


def node_loads(
    summary: Iterable[Mapping[str, Any]],
    tasks: Iterable[Mapping[str, Any]],
    actors: Iterable[Mapping[str, Any]],
) -> list[RayNode]:
    """One RayNode per node of the summary (dead ones included: a Pod whose node died holds nothing)."""
    running = _count_by_node(t for t in tasks if t.get("state") not in _DONE_TASK_STATES)
    hosting = _count_by_node(a for a in actors if a.get("state") != "DEAD")
    out = []
    for r in summary:
        node_id = str(r.get("nodeId") or "")
        if not node_id:
            continue
        store = r.get("storeStats")
        copies = _int(store.get("numObjectStorePrimaryCopies")) if isinstance(store, Mapping) else 0
        out.append(
            RayNode(
                node_id=node_id,
                instance_id=str(r.get("instanceId") or ""),
                ip=str(r.get("nodeManagerAddress") or ""),
                alive=r.get("state") == "ALIVE",
                is_head=r.get("isHeadNode") is True,
                tasks=running.get(node_id, 0),
                actors=hosting.get(node_id, 0),
                primary_copies=copies,
            )
        )
    return out


async def observe_nodes(client: DashboardClient) -> list[RayNode]:
    """The cluster's nodes and what each is doing, from three dashboard calls made at once."""
    summary, tasks, actors = await asyncio.gather(
        client.node_summary(),
        client.list_state("tasks", [("state", "!=", s) for s in _DONE_TASK_STATES]),
        client.list_state("actors", [("state", "!=", "DEAD")]),
    )
    return node_loads(summary, tasks, actors)


def node_of_pod(nodes: Iterable[RayNode], pod_name: str, pod_ip: str) -> RayNode | None:
    """The live Ray node a Pod runs: by instance id (the Pod's name), else by IP for Pods that do not
    set RAY_CLOUD_INSTANCE_ID. A Pod whose raylet restarted has one dead and one live node; the live one
    counts."""
    live = [n for n in nodes if n.alive]
    for n in live:
        if n.instance_id and n.instance_id == pod_name:
            return n
    if pod_ip:
        for n in live:
            if not n.instance_id and n.ip == pod_ip:
                return n
    return None


def ran_on_dead_node(nodes: Iterable[RayNode], pod_name: str) -> bool:
    """Whether Ray lists only dead nodes for the Pod: its raylet exited (drained, or crashed) and nothing
    of Ray runs there any more."""
    mine = [n for n in nodes if n.instance_id == pod_name]
    return bool(mine) and not any(n.alive for n in mine)


__all__ = ["RayNode", "node_loads", "node_of_pod", "observe_nodes", "ran_on_dead_node"]
