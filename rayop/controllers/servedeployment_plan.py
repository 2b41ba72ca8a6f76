"""Pure decisions about a RayService's scale targets, RayServeDeployments (docs/scaling.md, "Serve
deployments as scale targets"). The RayService state machine calls them; nothing here does I/O.

- `overrides`: which numbers the Serve config PUT to a cluster carries, one per scale target that may size
  its deployment there (not one Serve's autoscaler sizes, and only a deployment the config lists or the
  cluster's Serve runs: Serve refuses an override for a deployment its application lacks) and whose number
  differs from what serveConfigV2 (or, where it says nothing, the deployment's code) makes Serve run, so a
  RayService nobody scales keeps exactly its config and is never PUT again for it.
- `plan`: one RayServeDeployment per deployment Ray reports on the active cluster (created at the number
  that runs, deleted when its application left serveConfigV2 or runs without it); per object, the number
  copied from serveConfigV2 when that changed, or from Serve's autoscaler when it sizes the deployment,
  and the status: replicas as Ray runs them, the selector of the Pods that hold them, and conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from rayop.api import servedeployment as SD
from rayop.base.objects import is_controlled_by, is_terminating, meta, name_of, spec_of, status_of
from rayop.base.times import format_time
from rayop.base.types import Obj
from rayop.builders import servedeployment as B

Key = B.Key
# Other deployments named in a DedicatedPods message.
MAX_NAMED: Final = 3


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ClusterView:
    """The active cluster as the plan needs it: Ray's Serve report and where its Pods are."""

    name: str
    apps: Mapping[str, Any] | None
    """GET /api/serve/applications/ `applications`; None when unknown (not asked, or no answer)."""
    pod_groups: Mapping[str, str] = field(default_factory=dict)
    """Pod name -> its `ray.io/group` (the head's is `headgroup`)."""
    pods_by_ip: Mapping[str, str] = field(default_factory=dict)
    """Pod IP -> Pod name."""


def ours(rayservice: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    return is_controlled_by(target, rayservice) and not is_terminating(target)


def autoscaled_why(
    target: Mapping[str, Any], config: Mapping[str, Any], active_apps: Mapping[str, Any] | None
) -> str:
    """Why Serve's autoscaler sizes the deployment ("" when it does not)."""
    key = B.key_of(target)
    if key is None:
        return ""
    entry = SD.config_entry(config, *key)
    if entry is not None and entry.get("num_replicas") == "auto":
        return "serveConfigV2 sets num_replicas: auto"
    if SD.entry_autoscaled(entry):
        return "serveConfigV2 sets autoscaling_config"
    details = B.reported(active_apps, *key)
    if details is not None:
        return (
            "Ray reports an autoscaling_config (from the deployment's code)"
            if B.reported_autoscaled(details)
            else ""
        )
    if status_of(target).get("scaledBy") == SD.SCALED_BY_SERVE_AUTOSCALER:
        return "Ray reported an autoscaling_config"
    return ""


def wanted_replicas(target: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[int, bool]:
    """The number a scale target asks for this pass, and whether it comes from serveConfigV2: a change of
    the deployment's num_replicas there since the object last followed it (status.configReplicas) wins
    over spec.replicas, as an edit of the RayCluster wins for a RayWorkerGroup."""
    key = B.key_of(target)
    asked = _int(spec_of(target).get("replicas")) or 0
    if key is None:
        return max(asked, 1), False
    stated = SD.entry_replicas(SD.config_entry(config, *key))
    followed = _int(status_of(target).get("configReplicas"))
    if stated is not None and followed is not None and stated != followed and stated != asked:
        return stated, True
    return max(asked, 1), False


def overrides(
    rayservice: Mapping[str, Any],
    targets: Mapping[str, Obj],
    config: Mapping[str, Any],
    cluster_apps: Mapping[str, Any] | None,
    active_apps: Mapping[str, Any] | None,
) -> dict[Key, int]:
    """The num_replicas to fold into the Serve config PUT to a cluster whose Serve reports `cluster_apps`."""
    out: dict[Key, int] = {}
    for t in targets.values():
        key = B.key_of(t)
        if key is None or not ours(rayservice, t) or key in out:
            continue
        if autoscaled_why(t, config, active_apps):
            continue
        here = B.reported(cluster_apps, *key)
        if B.reported_autoscaled(here):
            continue
        entry = SD.config_entry(config, *key)
        if here is None and entry is None:
            continue  # Serve would fail the whole application for a deployment it does not have
        n = wanted_replicas(t, config)[0]
        stated = SD.entry_replicas(entry)
        if n == (stated if stated is not None else B.code_replicas(t)):
            continue  # Serve runs that number from the config (or the code) alone: nothing to change
        out[key] = n
    return out


# The plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class TargetUpdate:
    """One existing RayServeDeployment: write `replicas` into its spec first (None: leave it), then the
    status; `observe` marks the generation the write leaves as applied (status.observedGeneration)."""

    target: Obj
    status: Obj
    replicas: int | None = None
    observe: bool = False
    notes: list[Note] = field(default_factory=list)


@dataclass
class TargetPlan:
    create: list[Obj] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    update: list[TargetUpdate] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # on the RayService


def _placement(view: ClusterView, details: Mapping[str, Any] | None) -> set[str]:
    """The Pods holding the deployment's live replicas."""
    pods = {B.replica_pod(r, view.pods_by_ip) for r in B.live_replicas(details)}
    return {p for p in pods if p}


def _condition(old: Mapping[str, Any], ctype: str, status: str, reason: str, message: str, now: str) -> Obj:
    prev = next((c for c in old.get("conditions") or [] if c.get("type") == ctype), None)
    since = prev.get("lastTransitionTime") if prev is not None and prev.get("status") == status else None
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
    }


def _synced(
    key: Key, why: str, n: int, details: Mapping[str, Any] | None, applied: bool, cluster: str
) -> tuple[str, str, str]:
    dep = key[1]
    if why:
        return (
            "True",
            SD.REASON_SERVE_AUTOSCALER,
            f"Serve's autoscaler sizes deployment {dep!r} ({why}); spec.replicas mirrors its target",
        )
    if not applied:
        return "False", SD.REASON_APPLYING, f"applying num_replicas {n} to RayCluster {cluster}"
    live = B.live_replicas(details)
    running = sum(1 for r in live if r.get("state") == SD.REPLICA_RUNNING)
    target = B.reported_target(details)
    if target is not None and target != n:
        return "False", SD.REASON_APPLYING, f"Serve's target is {target} replicas, not yet {n}"
    if running < n:
        return (
            "False",
            SD.REASON_SCALING_UP,
            f"{running} of {n} replicas running; the others start when the cluster has room for them "
            "(with enableInTreeAutoscaling, Ray's autoscaler adds worker Pods for them)",
        )
    if len(live) > n:
        return "False", SD.REASON_SCALING_DOWN, f"stopping {len(live) - n} of {len(live)} replicas"
    return "True", SD.REASON_IN_SYNC, f"{n} replicas running"


def _dedicated(view: ClusterView, key: Key, groups: set[str], placed: set[str]) -> tuple[str, str, str]:
    if not placed:
        return "Unknown", SD.REASON_NO_REPLICAS, "no replica of the deployment runs in a Pod yet"
    others: set[str] = set()
    for app, dep in B.deployments_of(view.apps):
        if (app, dep) == key:
            continue
        for r in B.live_replicas(B.reported(view.apps, app, dep)):
            pod = B.replica_pod(r, view.pods_by_ip)
            if pod and view.pod_groups.get(pod) in groups:
                others.add(f"{app}/{dep}")
    if others:
        named = sorted(others)
        more = f" and {len(named) - MAX_NAMED} more" if len(named) > MAX_NAMED else ""
        return (
            "False",
            SD.REASON_SHARED,
            f"the selected Pods also run replicas of {', '.join(named[:MAX_NAMED])}{more}: their CPU "
            "utilisation is not this deployment's alone (give it a worker group of its own)",
        )
    return "True", SD.REASON_DEDICATED, "the selected Pods run replicas of this deployment only"


def status_for(
    target: Mapping[str, Any],
    key: Key,
    *,
    view: ClusterView,
    why: str,
    n: int,
    stated: int | None,
    applied: bool,
    now: datetime,
) -> Obj:
    old = status_of(target)
    details = B.reported(view.apps, *key)
    live = B.live_replicas(details)
    placed = _placement(view, details)
    groups = {view.pod_groups[p] for p in placed if p in view.pod_groups}
    if groups:
        sel = B.selector(view.name, groups)
    elif old.get("selector") and old.get("rayClusterName") == view.name:
        sel = str(old["selector"])
    else:
        sel = B.selector(view.name, [])
    st: Obj = {
        "replicas": len(live),
        "readyReplicas": sum(1 for r in live if r.get("state") == SD.REPLICA_RUNNING),
        "selector": sel,
        "rayClusterName": view.name,
        "scaledBy": SD.SCALED_BY_SERVE_AUTOSCALER if why else SD.SCALED_BY_SCALE_TARGET,
    }
    target_n = B.reported_target(details)
    if target_n is not None:
        st["targetReplicas"] = target_n
    if stated is not None:
        st["configReplicas"] = stated
    if old.get("observedGeneration") is not None:
        st["observedGeneration"] = old["observedGeneration"]
    stamp = format_time(now)
    st["conditions"] = [
        _condition(old, SD.COND_SYNCED, *_synced(key, why, n, details, applied, view.name), stamp),
        _condition(old, SD.COND_DEDICATED_PODS, *_dedicated(view, key, groups, placed), stamp),
    ]
    return st


def _new(
    rayservice: Mapping[str, Any],
    config: Mapping[str, Any],
    key: Key,
    name: str,
    details: Mapping[str, Any] | None,
    apps: Mapping[str, Any],
) -> Obj:
    """A new RayServeDeployment starts at what runs: Serve's target (the config's num_replicas, or the
    code's, which it records), else the config's number, else 1."""
    probe: Obj = {"spec": {"applicationName": key[0], "deploymentName": key[1]}}
    target = B.reported_target(details)
    if autoscaled_why(probe, config, apps):
        return B.build(rayservice, key[0], key[1], name, target or 0)
    stated = SD.entry_replicas(SD.config_entry(config, *key))
    n = max(1, target if target is not None else stated or 1)
    code = n if stated is None and target is not None else None
    return B.build(rayservice, key[0], key[1], name, n, code_replicas=code)


def plan(
    rayservice: Mapping[str, Any],
    config: Mapping[str, Any],
    targets: Mapping[str, Obj],
    view: ClusterView | None,
    *,
    applied: bool,
    now: datetime,
) -> TargetPlan:
    """What to create, delete and write, from the active cluster's Serve report. `applied`: the active
    cluster runs the config with this pass's overrides. Nothing happens while the report is unknown."""
    out = TargetPlan()
    if view is None or view.apps is None:
        return out
    # New objects start from what runs, so only from a cluster that runs this pass's config.
    create = applied
    rs_name = name_of(rayservice)
    wanted: dict[str, Key] = {}
    for key in B.deployments_of(view.apps):
        name = B.target_name(rs_name, *key)
        if name is None:
            out.notes.append(
                Note(
                    "Warning",
                    SD.EV_FAILED_CREATE,
                    f"No {SD.KIND} for deployment {key[1]!r} of application {key[0]!r}: no valid object name "
                    f"can be made of {rs_name}-{key[0]}-{key[1]}",
                )
            )
            continue
        if name in wanted:
            out.notes.append(
                Note(
                    "Warning",
                    SD.EV_NAME_TAKEN,
                    f"No {SD.KIND} for deployment {key[1]!r} of application {key[0]!r}: its name {name!r} is "
                    f"the one of deployment {wanted[name][1]!r} of application {wanted[name][0]!r}",
                )
            )
            continue
        wanted[name] = key
    config_apps = SD.config_apps(config)
    for name, t in sorted(targets.items()):
        if not ours(rayservice, t) or name in wanted:
            continue
        old_key = B.key_of(t)
        if old_key is None:
            continue
        app = view.apps.get(old_key[0])
        if old_key[0] not in config_apps and app is None:
            out.delete.append((name, f"application {old_key[0]!r} is no longer in serveConfigV2"))
        elif isinstance(app, Mapping) and app.get("status") == "RUNNING":
            out.delete.append((name, f"application {old_key[0]!r} runs without deployment {old_key[1]!r}"))
    for name, key in wanted.items():
        found = targets.get(name)
        details = B.reported(view.apps, *key)
        if found is None:
            if create:
                out.create.append(_new(rayservice, config, key, name, details, view.apps))
            continue
        if not ours(rayservice, found):
            if not is_terminating(found):
                out.notes.append(
                    Note(
                        "Warning",
                        SD.EV_NAME_TAKEN,
                        f"{SD.KIND} {name} exists and belongs to someone else; deployment {key[1]!r} of "
                        f"application {key[0]!r} has no scale target",
                    )
                )
            continue
        out.update.append(_update(found, key, config, view, applied, now))
    return out


def _update(
    t: Obj, key: Key, config: Mapping[str, Any], view: ClusterView, applied: bool, now: datetime
) -> TargetUpdate:
    why = autoscaled_why(t, config, view.apps)
    details = B.reported(view.apps, *key)
    asked = _int(spec_of(t).get("replicas"))
    gen = meta(t).get("generation")
    seen = status_of(t).get("observedGeneration")
    stated = SD.entry_replicas(SD.config_entry(config, *key))
    notes: list[Note] = []
    if why:
        mirror = B.reported_target(details)
        if seen is not None and gen != seen and asked != mirror:
            notes.append(
                Note(
                    "Warning",
                    SD.EV_SCALE_IGNORED,
                    f"spec.replicas={asked} was ignored: Serve's autoscaler sizes deployment {key[1]!r} "
                    f"({why}); it mirrors Serve's target",
                )
            )
        st = status_for(t, key, view=view, why=why, n=asked or 0, stated=stated, applied=applied, now=now)
        write = mirror if mirror is not None and mirror != asked else None
        return TargetUpdate(t, st, write, observe=True, notes=notes)
    n, from_config = wanted_replicas(t, config)
    st = status_for(t, key, view=view, why="", n=n, stated=stated, applied=applied, now=now)
    if from_config:
        notes.append(
            Note(
                "Normal",
                SD.EV_SYNCED_FROM_CONFIG,
                f"serveConfigV2 was edited to num_replicas {n} for deployment {key[1]!r}; spec.replicas "
                f"follows (was {asked})",
            )
        )
        return TargetUpdate(t, st, n, notes=notes)
    if asked is not None and asked < 1:
        notes.append(
            Note(
                "Warning",
                SD.EV_SCALE_IGNORED,
                f"spec.replicas={asked}: Serve runs at least 1 replica of a deployment (num_replicas must be "
                "positive), so it runs 1",
            )
        )
    if applied and gen != seen:
        notes.append(
            Note(
                "Normal",
                SD.EV_SCALED,
                f"RayCluster {view.name} runs the Serve config with num_replicas {n} for deployment {key[1]!r}",
            )
        )
    return TargetUpdate(t, st, None, observe=applied, notes=notes)


__all__ = [
    "ClusterView",
    "Note",
    "TargetPlan",
    "TargetUpdate",
    "autoscaled_why",
    "overrides",
    "plan",
    "status_for",
    "wanted_replicas",
]
