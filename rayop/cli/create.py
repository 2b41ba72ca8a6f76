"""`rayop create cluster NAME`: a RayCluster from flags (or its YAML with --dry-run)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated

import typer

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import status_of
from rayop.builders.generate import (
    DEFAULT_GROUP,
    DEFAULT_RAY_VERSION,
    ClusterShape,
    ShapeError,
    build_raycluster,
    check_shape,
)
from rayop.cli.kube import (
    CliError,
    ContextOpt,
    Dump,
    KubeconfigOpt,
    NamespaceOpt,
    Target,
    connect,
    render,
    run,
)
from rayop.runtime.client import ApiClient

app = typer.Typer(no_args_is_help=True, help="Create Ray resources from flags.")

FIELD_MANAGER = "rayop-cli"

# The cluster flags, shared with `rayop job submit` (names and defaults as KubeRay's plugin has them).
RayVersionOpt = Annotated[
    str, typer.Option("--ray-version", metavar="VERSION", help="Ray version of the cluster.")
]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        "--image",
        metavar="IMAGE",
        help="Container image (default: rayproject/ray:<ray-version>).",
        show_default=False,
    ),
]
HeadCpuOpt = Annotated[str, typer.Option("--head-cpu", metavar="QTY", help="CPUs of the head.")]
HeadMemoryOpt = Annotated[str, typer.Option("--head-memory", metavar="QTY", help="Memory of the head.")]
HeadGpuOpt = Annotated[str, typer.Option("--head-gpu", metavar="QTY", help="GPUs of the head.")]
WorkerGroupOpt = Annotated[
    str, typer.Option("--worker-group", metavar="NAME", help="Name of the worker group.")
]
WorkerReplicasOpt = Annotated[int, typer.Option("--worker-replicas", metavar="N", help="Workers to start.")]
WorkerCpuOpt = Annotated[str, typer.Option("--worker-cpu", metavar="QTY", help="CPUs of each worker.")]
WorkerMemoryOpt = Annotated[
    str, typer.Option("--worker-memory", metavar="QTY", help="Memory of each worker.")
]
WorkerGpuOpt = Annotated[str, typer.Option("--worker-gpu", metavar="QTY", help="GPUs of each worker.")]
AutoscaleOpt = Annotated[
    bool,
    typer.Option("--autoscale", help="Let Ray's autoscaler size the worker group between --min and --max."),
]
MinOpt = Annotated[
    int | None,
    typer.Option("--min", metavar="N", help="Fewest workers (minReplicas).", show_default=False),
]
MaxOpt = Annotated[
    int | None,
    typer.Option(
        "--max",
        metavar="N",
        help="Most workers (maxReplicas); required with --autoscale.",
        show_default=False,
    ),
]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label", "-l", metavar="KEY=VALUE", help="A label for the object (repeat it).", show_default=False
    ),
]


def parse_labels(labels: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in labels or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label {item!r} must be KEY=VALUE")
        out[key] = value
    return out


def shape_from(
    *,
    ray_version: str,
    image: str | None,
    head_cpu: str,
    head_memory: str,
    head_gpu: str,
    worker_group: str,
    worker_replicas: int,
    worker_cpu: str,
    worker_memory: str,
    worker_gpu: str,
    autoscale: bool,
    min_replicas: int | None,
    max_replicas: int | None,
    labels: list[str] | None,
) -> ClusterShape:
    return ClusterShape(
        ray_version=ray_version,
        image=image or "",
        head_cpu=head_cpu,
        head_memory=head_memory,
        head_gpu=head_gpu,
        worker_group=worker_group,
        worker_replicas=worker_replicas,
        worker_cpu=worker_cpu,
        worker_memory=worker_memory,
        worker_gpu=worker_gpu,
        autoscale=autoscale,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        labels=parse_labels(labels),
    )


async def wait_cluster_ready(
    api: ApiClient, namespace: str, name: str, timeout: float, *, quiet: bool = False
) -> None:
    """Poll until the RayCluster's state is `ready` (printing state changes to stderr), or fail at the
    deadline naming the state it was stuck in."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        st = status_of(await api.get(RAYCLUSTERS, name, namespace))
        state = str(st.get("state") or "pending")
        shown = state
        if st.get("desiredWorkerReplicas") is not None:
            shown += f" ({st.get('readyWorkerReplicas', 0)}/{st['desiredWorkerReplicas']} workers ready)"
        if shown != last and not quiet:
            typer.echo(f"RayCluster {name}: {shown}", err=True)
            last = shown
        if state == C.STATE_READY:
            return
        if state == C.STATE_FAILED:
            raise CliError(
                f"RayCluster {name} failed: {st.get('reason') or st.get('message') or 'see its events'}"
            )
        if time.monotonic() > deadline:
            raise CliError(
                f"RayCluster {name} was not ready after {timeout:.0f} s (state {state}); "
                f"see `rayop get nodes -c {name} -n {namespace}`"
            )
        await asyncio.sleep(1.0)


@app.command("cluster")
def cluster(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the RayCluster.")],
    ray_version: RayVersionOpt = DEFAULT_RAY_VERSION,
    image: ImageOpt = None,
    head_cpu: HeadCpuOpt = "2",
    head_memory: HeadMemoryOpt = "4Gi",
    head_gpu: HeadGpuOpt = "0",
    worker_group: WorkerGroupOpt = DEFAULT_GROUP,
    worker_replicas: WorkerReplicasOpt = 1,
    worker_cpu: WorkerCpuOpt = "2",
    worker_memory: WorkerMemoryOpt = "4Gi",
    worker_gpu: WorkerGpuOpt = "0",
    autoscale: AutoscaleOpt = False,
    min_replicas: MinOpt = None,
    max_replicas: MaxOpt = None,
    labels: LabelOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the RayCluster instead of creating it.")
    ] = False,
    output: Annotated[
        Dump | None,
        typer.Option(
            "-o",
            "--output",
            help="Print the RayCluster as yaml or json (default with --dry-run: yaml).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the cluster is ready.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="How long --wait waits.")
    ] = 300.0,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Create a RayCluster: one head and one worker group, sized by the flags.

    Example: rayop create cluster demo --worker-replicas 2 --worker-cpu 1 --worker-memory 2Gi
    """
    try:
        shape = shape_from(
            ray_version=ray_version,
            image=image,
            head_cpu=head_cpu,
            head_memory=head_memory,
            head_gpu=head_gpu,
            worker_group=worker_group,
            worker_replicas=worker_replicas,
            worker_cpu=worker_cpu,
            worker_memory=worker_memory,
            worker_gpu=worker_gpu,
            autoscale=autoscale,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            labels=labels,
        )
        errs = check_shape(shape)
        if errs:
            raise ShapeError("; ".join(errs))
        target = Target(kubeconfig, context, namespace)
        if dry_run:
            # Like kubectl --dry-run=client: no server needed; the namespace comes from the flags or the
            # kubeconfig when there is one.
            ns = namespace or _namespace_without_server(target)
            sys.stdout.write(render(build_raycluster(name, ns, shape), output or Dump.yaml))
            return
    except (ShapeError, CliError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        async with connect(target) as kube:
            obj = build_raycluster(name, kube.namespace, shape)
            created = await kube.api.create(RAYCLUSTERS, obj, kube.namespace, fieldManager=FIELD_MANAGER)
            if output is not None:
                sys.stdout.write(render(created, output))
            else:
                typer.echo(f"raycluster.ray.io/{name} created in namespace {kube.namespace}")
            if wait:
                await wait_cluster_ready(kube.api, kube.namespace, name, timeout)

    run(main())


def _namespace_without_server(target: Target) -> str:
    try:
        return target.config().namespace
    except Exception:
        return "default"
