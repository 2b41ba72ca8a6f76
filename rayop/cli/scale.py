"""`rayop scale cluster NAME --group G --replicas N`: size one worker group.

The change is a JSON patch of the RayCluster's group with a resourceVersion precondition (and a test of
the group's name at its index), so it never overwrites a change made since it read the cluster (by
the autoscaler, another user, the operator's status writes); on a conflict it reads again and retries.
Ray's autoscaler owns `replicas` when `enableInTreeAutoscaling` is on: setting it by hand would be undone,
so the command refuses and says how to move the bounds instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import meta, spec_of, status_of
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.cli.kube import (
    CliError,
    ContextOpt,
    Kube,
    KubeconfigOpt,
    NamespaceOpt,
    Target,
    complete_names,
    connect,
    run,
)
from rayop.runtime.client import ApiClient, ApiError, Resource

app = typer.Typer(no_args_is_help=True, help="Scale Ray resources.")

CONFLICT_RETRIES = 5
# rayop's scale target for one worker group (rayop.io/v1alpha1 RayWorkerGroup, with a /scale subresource).
W_KIND = "RayWorkerGroup"
RAYWORKERGROUPS = Resource("rayop.io", "v1alpha1", "rayworkergroups", kind=W_KIND)


@dataclass(frozen=True)
class ScalePlan:
    """What to patch (a JSON patch) and what to tell the user; `patch` empty when nothing changes."""

    patch: list[dict[str, Any]]
    changes: list[str]


def plan_scale(
    cluster: Mapping[str, Any],
    group: str,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
) -> ScalePlan:
    """Pure: the patch that sets one group's replicas/min/max, or a CliError naming the rule it breaks."""
    name = str(meta(cluster).get("name", ""))
    groups = [g for g in spec_of(cluster).get("workerGroupSpecs") or [] if isinstance(g, dict)]
    names = [str(g.get("groupName", "")) for g in groups]
    if group not in names:
        raise CliError(
            f"RayCluster {name} has no worker group {group!r} (its groups: {', '.join(names) or 'none'})"
        )
    i = names.index(group)
    g = groups[i]
    if replicas is not None and cl.is_autoscaling_enabled(cluster):
        raise CliError(
            f"Ray's autoscaler sizes worker group {group} of RayCluster {name} "
            "(spec.enableInTreeAutoscaling is true) and would undo a new replica count; "
            f"move its bounds instead: rayop scale cluster {name} --group {group} --min N --max M"
        )
    for flag, v in (("--replicas", replicas), ("--min", min_replicas), ("--max", max_replicas)):
        if v is not None and v < 0:
            raise CliError(f"{flag} {v} must not be negative")
    cur_replicas = cl.as_int(g.get("replicas"))
    cur_min = cl.as_int(g.get("minReplicas"))
    cur_max = (
        cl.as_int(g.get("maxReplicas"), cl.MAX_INT32) if g.get("maxReplicas") is not None else cl.MAX_INT32
    )
    new_replicas = cur_replicas if replicas is None else replicas
    new_min = cur_min if min_replicas is None else min_replicas
    new_max = cur_max if max_replicas is None else max_replicas
    if new_min > new_max:
        raise CliError(f"minReplicas {new_min} must not be more than maxReplicas {new_max}")
    if not cl.is_autoscaling_enabled(cluster) or replicas is not None:
        if new_replicas < new_min:
            raise CliError(
                f"replicas {new_replicas} must not be less than minReplicas {new_min} (pass --min too)"
            )
        if new_replicas > new_max:
            raise CliError(
                f"replicas {new_replicas} must not be more than maxReplicas {new_max} (pass --max too)"
            )
    base = f"/spec/workerGroupSpecs/{i}"
    patch: list[dict[str, Any]] = [{"op": "test", "path": f"{base}/groupName", "value": group}]
    changes: list[str] = []
    for field, label, old, new, given in (
        ("replicas", "replicas", cur_replicas, new_replicas, replicas),
        ("minReplicas", "min", cur_min, new_min, min_replicas),
        ("maxReplicas", "max", cur_max, new_max, max_replicas),
    ):
        if given is not None and (old != new or g.get(field) is None):
            patch.append({"op": "add", "path": f"{base}/{field}", "value": new})
            changes.append(f"{label} {old} -> {new}")
    if not changes:
        return ScalePlan([], [])
    rv = str(meta(cluster).get("resourceVersion", ""))
    # A resourceVersion in the patched object is a precondition: the API server answers 409 when the
    # cluster changed since we read it.
    patch.append({"op": "replace", "path": "/metadata/resourceVersion", "value": rv})
    return ScalePlan(patch, changes)


async def _patch_cluster(
    kube: Kube, name: str, group: str, replicas: int | None, lo: int | None, hi: int | None
) -> list[str]:
    for attempt in range(CONFLICT_RETRIES):
        obj = await kube.api.get(RAYCLUSTERS, name, kube.namespace)
        plan = plan_scale(obj, group, replicas, lo, hi)
        if not plan.patch:
            return []
        try:
            await kube.api.patch(RAYCLUSTERS, name, plan.patch, kube.namespace, patch_type="json")
        except ApiError as e:
            # 409: changed since we read it; 422 from the test op: the groups moved. Read again.
            if (
                e.status == 409 or (e.status == 422 and "test" in e.message)
            ) and attempt + 1 < CONFLICT_RETRIES:
                continue
            raise
        return plan.changes
    return []  # not reached: the last attempt raises


async def find_scale_target(api: ApiClient, namespace: str, cluster: str, group: str) -> Obj | None:
    """The RayWorkerGroup that sizes this group of this cluster, if the operator keeps one (None when the
    kind is not installed)."""
    try:
        items = (await api.list(RAYWORKERGROUPS, namespace, label_selector=f"{C.LABEL_GROUP}={group}"))[
            "items"
        ]
    except ApiError as e:
        if e.status == 404:
            return None
        raise
    return pick_scale_target(items, cluster, group)


def pick_scale_target(items: list[Obj], cluster: str, group: str) -> Obj | None:
    """Pure: the one whose group is `group` and whose cluster (now, or by spec) is `cluster`."""
    for rwg in items:
        spec, st = spec_of(rwg), status_of(rwg)
        if spec.get("groupName") == group and cluster in (
            st.get("rayClusterName"),
            spec.get("rayClusterName"),
        ):
            return rwg
    return None


async def _scale_target(kube: Kube, target: Obj, replicas: int) -> list[str]:
    name = str(meta(target).get("name", ""))
    for attempt in range(CONFLICT_RETRIES):
        scale = await kube.api.get(RAYWORKERGROUPS, name, kube.namespace, sub="scale")
        current = cl.as_int(spec_of(scale).get("replicas"))
        if current == replicas:
            return []
        body = {
            "metadata": {"resourceVersion": meta(scale).get("resourceVersion")},
            "spec": {"replicas": replicas},
        }
        try:
            await kube.api.patch(RAYWORKERGROUPS, name, body, kube.namespace, sub="scale")
        except ApiError as e:
            if e.status == 409 and attempt + 1 < CONFLICT_RETRIES:
                continue
            raise
        return [f"replicas {current} -> {replicas}"]
    return []


@app.command("cluster")
def cluster(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The RayCluster.", autocompletion=complete_names(RAYCLUSTERS)),
    ],
    group: Annotated[
        str,
        typer.Option(
            "--group", "-g", "--worker-group", "-w", metavar="GROUP", help="The worker group to scale."
        ),
    ],
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas", "-r", metavar="N", help="Workers the group should have.", show_default=False
        ),
    ] = None,
    min_replicas: Annotated[
        int | None,
        typer.Option("--min", "--min-replicas", metavar="N", help="New minReplicas.", show_default=False),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option("--max", "--max-replicas", metavar="N", help="New maxReplicas.", show_default=False),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Set a worker group's replicas (or its min/max).

    Refused while Ray's autoscaler owns the group (enableInTreeAutoscaling): then change --min/--max.

    Example: rayop scale cluster demo --group default-group --replicas 3
    """
    if replicas is None and min_replicas is None and max_replicas is None:
        typer.echo("error: give --replicas, --min or --max", err=True)
        raise typer.Exit(2)

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            target = None
            if replicas is not None:
                obj = await kube.api.get(RAYCLUSTERS, name, kube.namespace)
                plan_scale(obj, group, replicas, min_replicas, max_replicas)  # the refusals, before anything
                target = await find_scale_target(kube.api, kube.namespace, name, group)
            changes: list[str] = []
            if target is None:
                changes += await _patch_cluster(kube, name, group, replicas, min_replicas, max_replicas)
            else:
                # The bounds live in the RayCluster; the count goes through the group's scale target, which
                # picks idle workers to remove on a scale-down.
                if min_replicas is not None or max_replicas is not None:
                    changes += await _patch_cluster(kube, name, group, None, min_replicas, max_replicas)
                assert replicas is not None
                changes += await _scale_target(kube, target, replicas)
            if not changes:
                typer.echo(f"worker group {group} of RayCluster {name} already matches; nothing to change")
                return
            via = f" through {W_KIND} {meta(target).get('name')}" if target is not None else ""
            typer.echo(
                f"scaled worker group {group} of RayCluster {name} in namespace {kube.namespace}{via}: "
                + ", ".join(changes)
            )

    run(main())
