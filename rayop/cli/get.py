"""`rayop get clusters|jobs|services|workergroups|nodes`: what runs, as tables (or YAML/JSON)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.base.objects import labels_of, meta, spec_of, status_of
from rayop.base.times import utcnow
from rayop.base.types import Obj
from rayop.cli import tables
from rayop.cli.kube import (
    AllNamespacesOpt,
    CliError,
    ContextOpt,
    Kube,
    KubeconfigOpt,
    NamespaceOpt,
    Output,
    OutputOpt,
    Target,
    as_list,
    complete_names,
    connect,
    print_objects,
    render,
    run,
)
from rayop.cli.scale import RAYWORKERGROUPS
from rayop.runtime.client import PODS, ApiError, Resource

app = typer.Typer(
    no_args_is_help=True,
    help="List Ray clusters, jobs, services, worker groups and Ray nodes (pods).",
)

ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "-c",
        "--cluster",
        metavar="CLUSTER",
        help="Only this RayCluster's.",
        autocompletion=complete_names(RAYCLUSTERS),
        show_default=False,
    ),
]


def _empty(kube: Kube, all_namespaces: bool) -> str:
    return "No resources found." if all_namespaces else f"No resources found in {kube.namespace} namespace."


async def _objects(kube: Kube, res: Resource, name: str | None, all_namespaces: bool) -> list[Obj]:
    if name:
        return [await kube.api.get(res, name, kube.namespace)]
    items = (await kube.api.list(res, None if all_namespaces else kube.namespace))["items"]
    return sorted(items, key=lambda o: (str(meta(o).get("namespace", "")), str(meta(o).get("name", ""))))


def _print_kind(
    kube: Kube,
    objs: list[Obj],
    headers: list[str],
    rows: list[list[str]],
    name: str | None,
    all_namespaces: bool,
    output: Output,
) -> None:
    data: object = objs[0] if name and objs else as_list(objs)
    print_objects(output, headers, rows, data, empty=_empty(kube, all_namespaces))


@app.command("clusters")
def clusters(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="One RayCluster.", autocompletion=complete_names(RAYCLUSTERS)),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """RayClusters: desired and available workers, CPUs, GPUs, memory, state, age."""

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            objs = await _objects(kube, RAYCLUSTERS, name, all_namespaces)
        now = utcnow()
        rows = [tables.cluster_row(o, now, all_namespaces) for o in objs]
        _print_kind(kube, objs, tables.cluster_headers(all_namespaces), rows, name, all_namespaces, output)

    run(main())


@app.command("jobs")
def jobs(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="One RayJob.", autocompletion=complete_names(RAYJOBS)),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """RayJobs: job status, deployment status, the cluster it runs on, duration, age."""

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            objs = await _objects(kube, RAYJOBS, name, all_namespaces)
        now = utcnow()
        rows = [tables.job_row(o, now, all_namespaces) for o in objs]
        _print_kind(kube, objs, tables.job_headers(all_namespaces), rows, name, all_namespaces, output)

    run(main())


@app.command("services")
def services(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="One RayService.", autocompletion=complete_names(RAYSERVICES)),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """RayServices: service status, Serve endpoints, active and pending clusters, age."""

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            objs = await _objects(kube, RAYSERVICES, name, all_namespaces)
        now = utcnow()
        rows = [tables.service_row(o, now, all_namespaces) for o in objs]
        _print_kind(kube, objs, tables.service_headers(all_namespaces), rows, name, all_namespaces, output)

    run(main())


async def _scale_targets(kube: Kube, namespace: str | None) -> list[Obj]:
    """The RayWorkerGroups (rayop's scale targets), or none when the kind is not installed."""
    try:
        items: list[Obj] = (await kube.api.list(RAYWORKERGROUPS, namespace))["items"]
    except ApiError as e:
        if e.status in (403, 404):
            return []
        raise
    return items


def _ray_pod_selector(cluster: str | None) -> str:
    sel = f"{C.LABEL_IS_RAY_NODE}=yes"
    return f"{sel},{C.LABEL_CLUSTER}={cluster}" if cluster else sel


@app.command("workergroups")
def workergroups(
    group: Annotated[str | None, typer.Argument(metavar="GROUP", help="One worker group.")] = None,
    cluster: ClusterOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Worker groups of RayClusters: min, max, ready/desired replicas, their CPUs, GPUs and memory, and
    who scales them (Ray's autoscaler, or `replicas`)."""

    async def main() -> list[tables.WorkerGroup]:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            ns = None if all_namespaces else kube.namespace
            if cluster and not all_namespaces:
                found = [await kube.api.get(RAYCLUSTERS, cluster, kube.namespace)]
            else:
                found = (await kube.api.list(RAYCLUSTERS, ns))["items"]
                found = [c for c in found if not cluster or meta(c).get("name") == cluster]
            pods = (await kube.api.list(PODS, ns, label_selector=_ray_pod_selector(cluster)))["items"]
            rwgs = await _scale_targets(kube, ns)
        out: list[tables.WorkerGroup] = []
        for c in sorted(found, key=lambda o: (str(meta(o).get("namespace")), str(meta(o).get("name")))):
            cns, cname = meta(c).get("namespace"), meta(c).get("name")
            mine = [p for p in pods if meta(p).get("namespace") == cns]
            targets = {
                str(spec_of(r).get("groupName")): str(meta(r).get("name"))
                for r in rwgs
                if meta(r).get("namespace") == cns
                and cname in (status_of(r).get("rayClusterName"), spec_of(r).get("rayClusterName"))
            }
            out += [g for g in tables.worker_groups(c, mine, targets) if not group or g.name == group]
        if group and not out:
            where = "in any namespace" if all_namespaces else f"in namespace {kube.namespace}"
            raise CliError(
                f"worker group {group} not found {where}" + (f" in RayCluster {cluster}" if cluster else "")
            )
        if output is not Output.table:
            sys.stdout.write(render([g.as_dict() for g in out], output))
        else:
            rows = [tables.workergroup_row(g, all_namespaces) for g in out]
            print_objects(
                output,
                tables.workergroup_headers(all_namespaces),
                rows,
                None,
                empty=_empty(kube, all_namespaces),
            )
        return out

    run(main())


@app.command("nodes")
def nodes(
    name: Annotated[str | None, typer.Argument(metavar="POD", help="One Ray pod.")] = None,
    cluster: ClusterOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Ray nodes: the pods of RayClusters, head first then by group, with phase, ready containers,
    restarts, IP, CPUs, GPUs, memory and age."""

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace)) as kube:
            ns = None if all_namespaces else kube.namespace
            pods = (
                await kube.api.list(
                    PODS,
                    ns,
                    label_selector=_ray_pod_selector(cluster),
                    field_selector=f"metadata.name={name}" if name else None,
                )
            )["items"]
        pods = [
            p for p in pods if labels_of(p).get(C.LABEL_NODE_TYPE) in (C.NODE_TYPE_HEAD, C.NODE_TYPE_WORKER)
        ]
        pods.sort(key=tables.node_sort_key)
        if name and not pods:
            where = "in any namespace" if all_namespaces else f"in namespace {kube.namespace}"
            raise CliError(f"Ray node {name} not found {where}")
        now = utcnow()
        rows = [tables.node_row(p, now, all_namespaces) for p in pods]
        data: object = pods[0] if name else as_list(pods)
        print_objects(
            output, tables.node_headers(all_namespaces), rows, data, empty=_empty(kube, all_namespaces)
        )

    run(main())


# Singular and kind-named spellings, as kubectl accepts them; hidden to keep the help short.
for _alias, _fn in (
    ("cluster", clusters),
    ("rayclusters", clusters),
    ("raycluster", clusters),
    ("job", jobs),
    ("rayjobs", jobs),
    ("rayjob", jobs),
    ("service", services),
    ("rayservices", services),
    ("rayservice", services),
    ("workergroup", workergroups),
    ("node", nodes),
):
    app.command(_alias, hidden=True)(_fn)
