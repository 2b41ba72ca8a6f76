"""One step of an incremental upgrade (or of its rollback), as a pure function.

Two RayClusters share a RayService's traffic through its HTTPRoute: traffic moves *to* one of them and
*from* the other (to the pending cluster during an upgrade, back to the active one during a rollback).
Each has a Serve `target_capacity` (the share of its Serve replicas it runs, 0-100). `next_move` says
what to do next, from what is recorded on the API server (both capacities, the route's weight for the
`to` cluster, when the weights last changed) and never from memory, so a restarted operator continues
where the last one stopped. The rules are KubeRay's (`ray-operator/controllers/ray/rayservice_controller.go`
reconcileServeTargetCapacity, calculateTrafficRoutedPercent, checkIfNeedTargetCapacityUpdate):

1. done when the `from` cluster's capacity is 0 and the `to` cluster gets all the traffic;
2. nothing while the Gateway or the HTTPRoute are not ready;
3. when the `to` cluster's traffic has caught up with its capacity: if the two capacities sum to at most
   100, raise the `to` capacity by `maxSurgePercent` (to at most 100), else lower the `from` capacity by
   `maxSurgePercent` (to at least 0);
4. otherwise, once `intervalSeconds` have passed since the weights last changed and the `to` cluster can
   serve, move `stepSizePercent` of the traffic to it, never beyond its capacity.

At most one thing changes per call, so a capacity change and the traffic it allows are never written in
the same pass: the weights move only after Ray has accepted the capacity. Capacities and traffic only ever
move one way (the `to` capacity and traffic up, the `from` capacity down). Where KubeRay would move
traffic backwards (a weight above the capacity, which only a hand edit makes), this raises the capacity
instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

MoveKind = Literal["done", "wait", "raise_to", "lower_from", "shift"]
DONE: Final = "done"
WAIT: Final = "wait"
RAISE_TO: Final = "raise_to"
LOWER_FROM: Final = "lower_from"
SHIFT: Final = "shift"


@dataclass(frozen=True)
class Options:
    """`spec.upgradeStrategy.clusterUpgradeOptions` (validated: 0-100, step <= surge, interval > 0)."""

    step_percent: int
    interval_seconds: int
    max_surge_percent: int = 100


@dataclass(frozen=True)
class Split:
    """Where the traffic and capacities stand."""

    to_capacity: int
    from_capacity: int
    to_traffic: int
    """The HTTPRoute's weight for the `to` cluster (the `from` cluster has the rest)."""
    last_moved: datetime | None = None
    """When the HTTPRoute's weights last changed; None: never."""


@dataclass(frozen=True)
class Move:
    kind: MoveKind
    split: Split
    """The split after this move."""
    wait_seconds: float | None = None
    """For `wait` on the interval: how long until the next traffic step may happen."""
    why: str = ""


def next_move(split: Split, opts: Options, now: datetime, *, to_ready: bool, routes_ready: bool) -> Move:
    """The next step from `split` (see the module docstring)."""
    s = split
    if s.from_capacity <= 0 and s.to_traffic >= 100:
        return Move(DONE, s, why="all traffic moved and the other cluster's capacity is 0")
    if not routes_ready:
        return Move(WAIT, s, why="the Gateway or HTTPRoute is not ready")
    surge = max(opts.max_surge_percent, 0)
    if s.to_traffic >= s.to_capacity:
        if s.to_capacity + s.from_capacity <= 100:
            raised = min(100, s.to_capacity + surge)
            if raised > s.to_capacity:
                return Move(RAISE_TO, _with(s, to_capacity=raised), why=f"capacity {s.to_capacity}->{raised}")
        else:
            lowered = max(0, s.from_capacity - surge)
            if lowered < s.from_capacity:
                return Move(
                    LOWER_FROM, _with(s, from_capacity=lowered), why=f"capacity {s.from_capacity}->{lowered}"
                )
        return Move(WAIT, s, why="maxSurgePercent is 0: capacities cannot change")
    if not to_ready:
        return Move(WAIT, s, why="the cluster traffic moves to cannot serve yet")
    if s.last_moved is not None:
        elapsed = (now - s.last_moved).total_seconds()
        if elapsed < opts.interval_seconds:
            left = opts.interval_seconds - elapsed
            return Move(WAIT, s, wait_seconds=left, why=f"next traffic step in {left:.1f}s")
    moved = min(100, s.to_traffic + max(opts.step_percent, 0), s.to_capacity)
    if moved <= s.to_traffic:
        return Move(WAIT, s, why="stepSizePercent is 0: traffic cannot move")
    return Move(SHIFT, _with(s, to_traffic=moved, last_moved=now), why=f"traffic {s.to_traffic}->{moved}")


def _with(
    s: Split,
    *,
    to_capacity: int | None = None,
    from_capacity: int | None = None,
    to_traffic: int | None = None,
    last_moved: datetime | None = None,
) -> Split:
    return Split(
        to_capacity=s.to_capacity if to_capacity is None else to_capacity,
        from_capacity=s.from_capacity if from_capacity is None else from_capacity,
        to_traffic=s.to_traffic if to_traffic is None else to_traffic,
        last_moved=s.last_moved if last_moved is None else last_moved,
    )
