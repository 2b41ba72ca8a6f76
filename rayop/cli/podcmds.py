"""`rayop logs` (through the API server's pods/log, on any cluster) and `rayop exec` (on the local node
agent's machine: it enters the container's namespaces directly)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rayop.api.kinds import RAYJOBS
from rayop.base.objects import meta, status_of
from rayop.base.types import Obj
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
from rayop.cli.targets import Ref, cluster_of, head_pod, parse_ref
from rayop.node import containers
from rayop.node.locate import ANN_DEFAULT_CONTAINER, ContainerLocation, LocateError, locate
from rayop.runtime.client import PODS
from rayop.runtime.podio import pod_logs


async def _locate(target: Target, pod: str, container: str | None) -> ContainerLocation:
    async with connect(target) as kube:
        try:
            return await locate(kube.api, kube.namespace, pod, container)
        except LocateError as e:
            raise CliError(str(e)) from None


def _find(target: Target, pod: str, container: str | None) -> ContainerLocation:
    return run(_locate(target, pod, container))


async def _log_pod(kube: Kube, ref: Ref) -> Obj:
    if ref.kind == "pod":
        return await kube.api.get(PODS, ref.name, kube.namespace)
    if ref.kind == "job":
        # K8sJobMode: the submitter pod prints the driver's output (`ray job logs --follow`).
        job = await kube.api.get(RAYJOBS, ref.name, kube.namespace)
        sel = f"batch.kubernetes.io/job-name={ref.name}"
        pods: list[Obj] = (await kube.api.list(PODS, kube.namespace, label_selector=sel))["items"]
        if pods:
            pods.sort(key=lambda p: str(meta(p).get("creationTimestamp", "")), reverse=True)
            return pods[0]
        if not status_of(job).get("rayClusterName"):
            raise CliError(f"RayJob {ref.name} has no pods yet")
    cluster = await cluster_of(kube.api, kube.namespace, ref)
    pod = await head_pod(kube.api, kube.namespace, cluster)
    if pod is None:
        raise CliError(f"RayCluster {meta(cluster).get('name')} has no head pod yet")
    return pod


def default_container(pod: Obj) -> tuple[str, str | None]:
    """kubectl's choice: the default-container annotation, else the first container (with a notice
    naming the others)."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    chosen = (meta(pod).get("annotations") or {}).get(ANN_DEFAULT_CONTAINER) or (names[0] if names else "")
    notice = f'Defaulted container "{chosen}" out of: {", ".join(names)}' if len(names) > 1 else None
    return str(chosen), notice


def logs(
    target: Annotated[
        str,
        typer.Argument(
            metavar="POD|cluster/NAME|job/NAME",
            help="A pod, a RayCluster's head pod (cluster/NAME), or a RayJob's submitter or head (job/NAME).",
            autocompletion=complete_names(PODS),
        ),
    ],
    container: Annotated[
        str | None,
        typer.Option("-c", "--container", metavar="NAME", help="Container name.", show_default=False),
    ] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    previous: Annotated[bool, typer.Option("-p", "--previous", help="The previous run's output.")] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", metavar="N", help="Only the last N lines.", show_default=False)
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix each line with its time.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Print a container's output, through the API server (any cluster).

    Example: rayop logs cluster/demo -f
    """
    ref = parse_ref(target, "pod")

    async def main() -> None:
        async with connect(Target(kubeconfig, context, namespace), timeout=60) as kube:
            pod = await _log_pod(kube, ref)
            name = str(meta(pod).get("name", ""))
            chosen = container
            if chosen is None:
                chosen, notice = default_container(pod)
                if notice:
                    typer.echo(notice, err=True)
            out = sys.stdout.buffer
            async for chunk in pod_logs(
                kube.api,
                kube.namespace,
                name,
                container=chosen,
                follow=follow,
                previous=previous,
                tail_lines=tail,
                timestamps=timestamps,
            ):
                out.write(chunk)
                out.flush()

    run(main())


def exec_(
    pod: Annotated[str, typer.Argument(metavar="POD", help="Pod name.", autocompletion=complete_names(PODS))],
    command: Annotated[
        list[str], typer.Argument(metavar="COMMAND...", help="Command and arguments (after --).")
    ],
    container: Annotated[
        str | None,
        typer.Option("-c", "--container", metavar="NAME", help="Container name.", show_default=False),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Run a command in a container of the local node agent (in its namespaces and environment).

    Example: rayop exec demo-head-x7k2p -- ray status
    """
    loc = _find(Target(kubeconfig, context, namespace), pod, container)
    if not loc.running:
        typer.echo(f'error: container "{loc.container}" in pod "{pod}" is not running', err=True)
        raise typer.Exit(1)
    argv = containers.exec_argv(loc.pid, loc.spec_path, command)
    sys.stdout.flush()
    os.execv(argv[0], argv)


def register(app: typer.Typer) -> None:
    """Add `logs` and `exec` to another typer app (rayop.cli.main adds them itself, in its help panels)."""
    app.command("logs")(logs)
    app.command("exec")(exec_)
