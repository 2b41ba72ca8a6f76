"""The scaling history the view plots: desired, ready and Ray-reported workers per worker group over time.

The operator's own record, kept in memory: each series is a step function stored as its change points, so a
group that does not scale costs a few tuples however long it runs. Bounded twice: points older than the
window go (the last one before the window stays, so the line still starts at the window's edge), and each
series keeps at most `max_points` points.

After a restart nothing of this is in memory; `rebuild` recovers the shape of the last hour from the events
the RayCluster controller wrote for each worker Pod it created or deleted (the API server keeps events for an
hour by default), walking back from the Pods the cache holds now. Changes rebuilt that way say so, and who
made them is unknown: events do not record it.

Nothing here does I/O or reads a clock: times are passed in (seconds since the epoch).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rayop.ui.fieldmanagers import UNKNOWN, FieldManager

DESIRED = "desired"
READY = "ready"
RAY = "ray"
METRICS = (DESIRED, READY, RAY)

SOURCE_WATCH = "watch"
SOURCE_EVENTS = "events"
SOURCE_MANAGED_FIELDS = "managedFields"
# How long after a change of replicas the controller's Pod events may come and still be that change.
MERGE_SECONDS = 30.0


@dataclass(frozen=True)
class ScaleChange:
    """A change of a group's desired workers, and who made it."""

    t: float
    group: str
    before: int | None
    after: int
    by: str
    actor: str
    source: str = SOURCE_WATCH


class Steps:
    """A step series as its change points [(t, value)]; value None marks "unknown" (a gap in the plot)."""

    def __init__(self, max_points: int) -> None:
        self.points: deque[tuple[float, int | None]] = deque(maxlen=max_points)

    @property
    def last(self) -> int | None:
        return self.points[-1][1] if self.points else None

    @property
    def known(self) -> bool:
        return bool(self.points)

    def set(self, t: float, value: int | None) -> bool:
        """Record `value` from time t; False when it is what the series already holds."""
        if self.points and self.points[-1][1] == value:
            return False
        if self.points and t < self.points[-1][0]:
            t = self.points[-1][0]  # clocks of different sources: never go back in time
        self.points.append((t, value))
        return True

    def prune(self, cutoff: float) -> None:
        while len(self.points) >= 2 and self.points[1][0] <= cutoff:
            self.points.popleft()

    def prepend(self, earlier: list[tuple[float, int | None]]) -> None:
        """Older points (sorted), kept only where they come before what the series holds."""
        first = self.points[0][0] if self.points else float("inf")
        older = [p for p in earlier if p[0] < first]
        room = (self.points.maxlen or len(older) + len(self.points)) - len(self.points)
        for p in reversed(older[-room:] if room > 0 else []):
            self.points.appendleft(p)


@dataclass
class GroupHistory:
    desired: Steps
    ready: Steps
    ray: Steps
    changes: deque[ScaleChange] = field(default_factory=lambda: deque(maxlen=200))

    def series(self, metric: str) -> Steps:
        s: Steps = getattr(self, metric)
        return s


class ScalingHistory:
    """Per (namespace, cluster, group) histories; `gen` moves whenever anything changed."""

    def __init__(self, window: float = 3 * 3600.0, max_points: int = 1000, max_changes: int = 200) -> None:
        self.window = window
        self.max_points = max_points
        self.max_changes = max_changes
        self.gen = 0
        self._clusters: dict[tuple[str, str], dict[str, GroupHistory]] = {}

    def _group(self, namespace: str, name: str, group: str) -> GroupHistory:
        groups = self._clusters.setdefault((namespace, name), {})
        g = groups.get(group)
        if g is None:
            g = GroupHistory(
                Steps(self.max_points),
                Steps(self.max_points),
                Steps(self.max_points),
                deque(maxlen=self.max_changes),
            )
            groups[group] = g
        return g

    def _prune(self, g: GroupHistory, now: float) -> None:
        cutoff = now - self.window
        for m in METRICS:
            g.series(m).prune(cutoff)
        while g.changes and g.changes[0].t < cutoff:
            g.changes.popleft()

    # -- recording -----------------------------------------------------------------------------------

    def desired(
        self,
        namespace: str,
        name: str,
        group: str,
        value: int,
        t: float,
        by: FieldManager | None = None,
        *,
        source: str = SOURCE_WATCH,
    ) -> ScaleChange | None:
        """A group's desired workers as a watch event shows them. A change is returned (and kept) with
        who made it; the first sight of a group is a change only when managedFields date the last one."""
        g = self._group(namespace, name, group)
        before = g.desired.last
        known = g.desired.known
        if not g.desired.set(t, value):
            return None
        self.gen += 1
        change: ScaleChange | None = None
        if known:
            change = ScaleChange(
                t, group, before, value, by.label if by else UNKNOWN, by.actor if by else UNKNOWN, source
            )
        elif by is not None and by.time and t - self.window < by.time <= t:
            change = ScaleChange(by.time, group, None, value, by.label, by.actor, SOURCE_MANAGED_FIELDS)
        if change is not None:
            g.changes.append(change)
        self._prune(g, t)
        return change

    def observe(
        self, namespace: str, name: str, group: str, metric: str, value: int | None, t: float
    ) -> bool:
        """Ready or Ray-reported workers of a group (None: not known now)."""
        g = self._group(namespace, name, group)
        if not g.series(metric).set(t, value):
            return False
        self.gen += 1
        self._prune(g, t)
        return True

    def drop_groups(self, namespace: str, name: str, keep: Iterable[str]) -> None:
        """Forget groups the cluster no longer has (renamed or removed)."""
        groups = self._clusters.get((namespace, name))
        if not groups:
            return
        gone = set(groups) - set(keep)
        for g in gone:
            del groups[g]
        if gone:
            self.gen += 1

    def forget(self, namespace: str, name: str) -> None:
        if self._clusters.pop((namespace, name), None) is not None:
            self.gen += 1

    # -- reading -------------------------------------------------------------------------------------

    def groups(self, namespace: str, name: str) -> Mapping[str, GroupHistory]:
        return self._clusters.get((namespace, name), {})

    def changes(self, namespace: str, name: str) -> list[ScaleChange]:
        out = [c for g in self.groups(namespace, name).values() for c in g.changes]
        return sorted(out, key=lambda c: c.t)

    def plot_data(self, namespace: str, name: str, now: float) -> dict[str, dict[str, Any]]:
        """Per group: aligned columns for a stepped plot (`x` in seconds, then one column per metric, each
        holding the value in force at x, None before it was known) and the group's changes."""
        out: dict[str, dict[str, Any]] = {}
        for group, g in sorted(self.groups(namespace, name).items()):
            xs = sorted({t for m in METRICS for t, _ in g.series(m).points} | {now})
            cols: dict[str, list[int | None]] = {}
            for m in METRICS:
                pts = list(g.series(m).points)
                col: list[int | None] = []
                i, cur = 0, None
                for x in xs:
                    while i < len(pts) and pts[i][0] <= x:
                        cur = pts[i][1]
                        i += 1
                    col.append(cur)
                cols[m] = col
            out[group] = {
                "x": [round(x, 3) for x in xs],
                **cols,
                "changes": [
                    {"t": round(c.t, 3), "before": c.before, "after": c.after, "by": c.by, "actor": c.actor}
                    for c in g.changes
                ],
            }
        return out

    # -- after a restart -------------------------------------------------------------------------------

    def rebuild(
        self,
        namespace: str,
        name: str,
        steps: list[PodCountStep],
        pods_now: Mapping[str, int],
        now: float,
    ) -> int:
        """Recover each group's worker count before now from the controller's pod events (sorted or not),
        walking back from the Pods there are now. Returns how many changes were rebuilt."""
        cutoff = now - self.window
        by_group: dict[str, list[PodCountStep]] = {}
        for s in steps:
            if s.t >= cutoff:
                by_group.setdefault(s.group, []).append(s)
        rebuilt = 0
        for group, evs in by_group.items():
            evs.sort(key=lambda s: s.t)
            # Walk back: the count after the last event is the count now.
            after: int | None = pods_now.get(group, 0)
            points: list[tuple[float, int | None]] = []
            changes: list[ScaleChange] = []
            first = evs[-1].t
            for s in reversed(evs):
                if after is None:
                    break  # earlier events cannot be anchored
                before = s.count_before(after)
                points.append((s.t, after))
                if before != after:
                    changes.append(ScaleChange(s.t, group, before, after, UNKNOWN, UNKNOWN, SOURCE_EVENTS))
                after = before
                first = s.t
            points.append((first - 1.0, after))
            points.reverse()
            changes.reverse()
            g = self._group(namespace, name, group)
            g.desired.prepend(_collapse(points))
            first_live = min((c.t for c in g.changes if c.source == SOURCE_WATCH), default=float("inf"))
            keep = [c for c in changes if c.t < first_live]
            existing = list(g.changes)
            for m in [c for c in existing if c.source == SOURCE_MANAGED_FIELDS]:
                # managedFields date the last change to the second and name who made it; the controller's
                # events of the Pods that followed say what it was. One change, told twice: merge them.
                match = next(
                    (
                        i
                        for i in range(len(keep) - 1, -1, -1)
                        if keep[i].after == m.after and m.t - 1 <= keep[i].t <= m.t + MERGE_SECONDS
                    ),
                    None,
                )
                if match is not None:
                    keep[match] = replace(keep[match], by=m.by, actor=m.actor)
                    existing.remove(m)
            g.changes.clear()
            g.changes.extend(sorted(keep + existing, key=lambda c: c.t))
            rebuilt += len(keep)
        if by_group:
            self.gen += 1
        return rebuilt


def _collapse(points: list[tuple[float, int | None]]) -> list[tuple[float, int | None]]:
    out: list[tuple[float, int | None]] = []
    for p in points:
        if out and out[-1][1] == p[1]:
            continue
        out.append(p)
    return out


@dataclass(frozen=True)
class PodCountStep:
    """One pod event of the RayCluster controller: `add` n Pods, `remove` n Pods, or `zero` (a suspended
    group's Pods deleted together)."""

    t: float
    group: str
    op: str
    n: int = 1

    def count_before(self, after: int) -> int | None:
        """The count before this event, or None when the event does not tell (a suspended group's)."""
        if self.op == "add":
            return max(0, after - self.n)
        if self.op == "remove":
            return after + self.n
        return None


# The notes of the RayCluster controller's worker Pod events (rayop/controllers/raycluster/pods.py).
_CREATED = re.compile(r"^Created (?:worker Pod|(\d+) worker Pods) in group (\S+?):")
_DELETED = re.compile(r"^Deleted worker Pod (\S+?)/(\S+?)(?:;|$)")
_SUSPENDED = re.compile(r"of suspended worker group (\S+)$")
POD_NAME_PREFIX_MAX = 50  # KubeRay's pod name prefix limit (`<cluster>-<group>` cut to 50 characters)


def worker_pod_group(pod: str, cluster: str, groups: Iterable[str]) -> str | None:
    """The group a worker Pod name belongs to: `<cluster>-<group>` (cut to 50) + `-worker-<suffix>`."""
    best: str | None = None
    for g in groups:
        prefix = f"{cluster}-{g}"[:POD_NAME_PREFIX_MAX].lower() + "-worker-"
        if pod.startswith(prefix) and (best is None or len(g) > len(best)):
            best = g
    return best


def step_from_event(
    reason: str, note: str, t: float, cluster: str, groups: Iterable[str]
) -> PodCountStep | None:
    """A PodCountStep from one event of a RayCluster, or None when the event is not about worker counts."""
    if reason == "CreatedWorkerPod":
        m = _CREATED.match(note)
        if m:
            return PodCountStep(t, m.group(2), "add", int(m.group(1) or 1))
    elif reason == "DeletedWorkerPod":
        m = _DELETED.match(note)
        if m:
            group = worker_pod_group(m.group(2), cluster, groups)
            return PodCountStep(t, group, "remove") if group else None
        m = _SUSPENDED.search(note)
        if m:
            return PodCountStep(t, m.group(1), "zero")
    return None
