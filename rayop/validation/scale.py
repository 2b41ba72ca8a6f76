"""Writes to the scale subresource of rayop's scale targets (`kubectl scale`, the HorizontalPodAutoscaler),
judged against the object that owns what they size.

Pure: the webhook reads the objects (from the operator's caches, or with a GET) and hands them in as a
`ScaleContext`.

- A RayWorkerGroup, against its RayCluster (or RayService): while Ray's autoscaler sizes the group
  (`enableInTreeAutoscaling`), a written number would be undone on Ray's next pass, so the write is refused
  with what to do instead. A number outside the group's [minReplicas, maxReplicas] is accepted and clamped,
  as KubeRay clamps `replicas`: refusing it would make an HPA repeat the write and log FailedRescale forever.
- A RayServeDeployment, against its RayService: while Serve's own autoscaler sizes the deployment
  (`autoscaling_config` or `num_replicas: auto`, in serveConfigV2 or, as Ray reported it, in the
  deployment's code) it cannot be a scale target, and the write is refused with the reason; Serve runs at
  least one replica, so 0 is refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C
from rayop.api import servedeployment as SD
from rayop.api import spec as RS
from rayop.api import workergroup as W
from rayop.base.objects import name_of, spec_of
from rayop.base.types import Obj
from rayop.validation.errors import FieldError, forbidden, invalid
from rayop.validation.kinds import parse_serve_config

REPLICAS_PATH = "spec.replicas"


@dataclass(frozen=True)
class ScaleContext:
    """What a scale request is judged against: the scale target (a RayWorkerGroup or RayServeDeployment)
    and `owner`, the RayCluster or RayService its spec names; either may be None (not found, or
    `unreadable` says why it could not be read)."""

    target: Obj | None
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
    if ctx.target is None or ctx.owner is None:
        if ctx.unreadable:
            return ScaleVerdict(
                warnings=[
                    f"could not check who sizes this worker group ({ctx.unreadable}); the operator "
                    "reverts the number if Ray's autoscaler owns the group"
                ]
            )
        return ScaleVerdict()
    gname = str(spec_of(ctx.target).get("groupName") or "")
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


def serve_autoscaler_message(owner: Obj, target: Obj, why: str) -> str:
    """Why a RayServeDeployment cannot be sized by a scale write, and what to do instead."""
    spec = spec_of(target)
    app, dep = spec.get("applicationName"), spec.get("deploymentName")
    return (
        f"Serve's own autoscaler sizes deployment {dep!r} of application {app!r} of RayService "
        f"{name_of(owner)!r} ({why}), so it cannot be a scale target: a number written here would be "
        "ignored. Serve adds and removes replicas for the ongoing requests, within autoscaling_config's "
        "min_replicas..max_replicas: change those. To size the deployment with kubectl scale or a "
        "HorizontalPodAutoscaler, remove autoscaling_config from the deployment (in serveConfigV2 and in "
        "its code) and give it an integer num_replicas."
    )


def _serve_config(owner: Obj) -> dict[str, Any]:
    parsed, _ = parse_serve_config(str(spec_of(owner).get("serveConfigV2") or ""))
    return parsed if isinstance(parsed, dict) else {}


def serve_autoscaled_why(owner: Obj, target: Obj) -> str:
    """Why Serve's autoscaler sizes the deployment ("" when it does not): serveConfigV2 says so, or the
    operator recorded that Ray applies an autoscaling_config from the deployment's code."""
    spec = spec_of(target)
    app, dep = spec.get("applicationName"), spec.get("deploymentName")
    entry = SD.config_entry(_serve_config(owner), str(app or ""), str(dep or ""))
    if entry is not None and entry.get("num_replicas") == "auto":
        return "serveConfigV2 sets num_replicas: auto"
    if SD.entry_autoscaled(entry):
        return "serveConfigV2 sets autoscaling_config"
    status = target.get("status") or {}
    if isinstance(status, dict) and status.get("scaledBy") == SD.SCALED_BY_SERVE_AUTOSCALER:
        return "Ray reports an autoscaling_config, from the deployment's code"
    return ""


def check_serve_deployment_scale(scale: Any, old: Any, ctx: ScaleContext) -> ScaleVerdict:
    """A write to a RayServeDeployment's scale subresource: refused while Serve's autoscaler sizes the
    deployment, and below 1 (Serve's num_replicas is a positive integer)."""
    wanted = _replicas(scale)
    if wanted is None:
        return ScaleVerdict([invalid(REPLICAS_PATH, spec_of(scale).get("replicas"), "must be an integer")])
    if wanted < 1:
        return ScaleVerdict(
            [
                invalid(
                    REPLICAS_PATH,
                    wanted,
                    "must be at least 1: Serve runs a deployment with a positive num_replicas (remove the "
                    "deployment from its application to stop it)",
                )
            ]
        )
    if ctx.target is None or ctx.owner is None:
        if ctx.unreadable:
            return ScaleVerdict(
                warnings=[
                    f"could not check who sizes this Serve deployment ({ctx.unreadable}); the operator "
                    "ignores the number if Serve's autoscaler sizes it"
                ]
            )
        return ScaleVerdict()
    why = serve_autoscaled_why(ctx.owner, ctx.target)
    if why and wanted != _replicas(old):
        return ScaleVerdict([forbidden(REPLICAS_PATH, serve_autoscaler_message(ctx.owner, ctx.target, why))])
    return ScaleVerdict()
