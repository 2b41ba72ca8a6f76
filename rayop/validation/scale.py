"""Writes to a RayWorkerGroup's scale subresource (`kubectl scale`, the HorizontalPodAutoscaler), judged
against the RayCluster (or RayService) that owns the group.

Pure: the webhook reads the objects (from the operator's caches, or with a GET) and hands them in as a
`ScaleContext`. The one refusal: while Ray's autoscaler sizes the group (`enableInTreeAutoscaling`), a
written number would be undone on Ray's next pass, so the write is refused with what to do instead. A
number outside the group's [minReplicas, maxReplicas] is accepted and clamped, as KubeRay clamps `replicas`:
refusing it would make an HPA repeat the write and log FailedRescale forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.api import workergroup as W
from rayop.base.objects import name_of, spec_of
from rayop.base.types import Obj
from rayop.validation.errors import FieldError, forbidden, invalid

REPLICAS_PATH = "spec.replicas"


@dataclass(frozen=True)
class ScaleContext:
    """What a scale request is judged against. `owner` is the RayCluster or RayService named by the
    worker group's spec; either may be None (not found, or `unreadable` says why it could not be read)."""

    worker_group: Obj | None
    owner: Obj | None
    unreadable: str = ""


@dataclass(frozen=True)
class ScaleVerdict:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def owner_cluster_spec(owner: Obj | None) -> dict[str, Any]:
    """The RayCluster spec that holds the worker groups: a RayCluster's spec, a RayService's
    rayClusterConfig."""
    if not owner:
        return {}
    spec = spec_of(owner)
    if owner.get("kind") == C.KIND_RAYSERVICE:
        inner = spec.get("rayClusterConfig")
        return dict(inner) if isinstance(inner, dict) else {}
    return dict(spec)


def _replicas(scale: Any) -> int | None:
    value = spec_of(scale if isinstance(scale, dict) else None).get("replicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def autoscaler_message(owner: Obj, group: str, lo: int, hi: int) -> str:
    """Why a scale write is refused while Ray's autoscaler sizes the group, and what to do instead."""
    field_path = (
        "spec.rayClusterConfig.enableInTreeAutoscaling"
        if owner.get("kind") == C.KIND_RAYSERVICE
        else "spec.enableInTreeAutoscaling"
    )
    bounds = f"{lo}..{hi}" if hi < RS.MAX_INT32 else f"{lo} or more"
    return (
        f"Ray's autoscaler sizes worker group {group!r} ({owner.get('kind')} {name_of(owner)!r} sets "
        f"{field_path}: true), so this number would be undone. Ray adds workers for pending tasks and "
        f"actors and removes idle ones within the group's minReplicas..maxReplicas ({bounds}): change "
        f"those bounds, or ask Ray for capacity with ray.autoscaler.sdk.request_resources(). To size the "
        f"group with kubectl scale or a HorizontalPodAutoscaler, set {field_path} to false."
    )


def check_worker_group_scale(scale: Any, old: Any, ctx: ScaleContext) -> ScaleVerdict:
    """Errors refuse the write; warnings are shown to the writer (`kubectl scale` prints them)."""
    wanted = _replicas(scale)
    if wanted is None:
        return ScaleVerdict([invalid(REPLICAS_PATH, spec_of(scale).get("replicas"), "must be an integer")])
    if wanted < 0:
        return ScaleVerdict([invalid(REPLICAS_PATH, wanted, "must be greater than or equal to 0")])
    if ctx.worker_group is None or ctx.owner is None:
        if ctx.unreadable:
            return ScaleVerdict(
                warnings=[
                    f"could not check who sizes this worker group ({ctx.unreadable}); the operator "
                    "reverts the number if Ray's autoscaler owns the group"
                ]
            )
        return ScaleVerdict()
    gname = str(spec_of(ctx.worker_group).get("groupName") or "")
    cspec = owner_cluster_spec(ctx.owner)
    group = RS.worker_group(cspec, gname)
    if group is None:
        return ScaleVerdict(
            warnings=[f"worker group {gname!r} is gone from {ctx.owner.get('kind')} {name_of(ctx.owner)!r}"]
        )
    lo, hi = RS.replica_bounds(group)
    if RS.scaled_by(cspec, group) == W.SCALED_BY_RAY_AUTOSCALER:
        if wanted == _replicas(old):
            return ScaleVerdict()  # not a change: nothing to undo
        return ScaleVerdict([forbidden(REPLICAS_PATH, autoscaler_message(ctx.owner, gname, lo, hi))])
    clamped = min(max(wanted, lo), hi)
    if clamped != wanted:
        side = "below the group's minReplicas" if wanted < lo else "above the group's maxReplicas"
        return ScaleVerdict(
            warnings=[
                f"{REPLICAS_PATH}: {wanted} is {side} ({lo if wanted < lo else hi}); the group runs {clamped}"
            ]
        )
    return ScaleVerdict()
