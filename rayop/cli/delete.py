"""`rayop delete cluster|job|service NAME`."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated

import typer

from rayop.api.kinds import RAYCLUSTER, RAYJOB, RAYSERVICE, KindSpec
from rayop.cli.kube import (
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Target,
    complete_names,
    connect,
    run,
)

app = typer.Typer(no_args_is_help=True, help="Delete Ray resources.")

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until it is gone (its pods too, for a cluster).")]


def _delete(kind: KindSpec, name: str, yes: bool, wait: bool, target: Target) -> None:
    async def main() -> None:
        async with connect(target) as kube:
            # Read first: "not found" and "forbidden" then name the object, and a confirmation names
            # the namespace it really is in.
            await kube.api.get(kind.resource, name, kube.namespace)
            if not yes and sys.stdin.isatty():
                ok = typer.confirm(f"Delete {kind.kind} {name} in namespace {kube.namespace}?", default=False)
                if not ok:
                    raise CliError("not deleted", code=1)
            # Background: the API server's garbage collector removes pods and services after the object.
            await kube.api.delete(kind.resource, name, kube.namespace, propagation="Background")
            typer.echo(f"{kind.singular}.{kind.group}/{name} deleted from namespace {kube.namespace}")
            if wait:
                deadline = time.monotonic() + 300
                while await kube.api.get_or_none(kind.resource, name, kube.namespace) is not None:
                    if time.monotonic() > deadline:
                        raise CliError(
                            f"{kind.kind} {name} still exists after 300 s (a finalizer may hold it)"
                        )
                    await asyncio.sleep(0.5)

    run(main())


@app.command("cluster")
def cluster(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="The RayCluster.", autocompletion=complete_names(RAYCLUSTER.resource)
        ),
    ],
    yes: YesOpt = False,
    wait: WaitOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Delete a RayCluster (its pods and services go with it)."""
    _delete(RAYCLUSTER, name, yes, wait, Target(kubeconfig, context, namespace))


@app.command("job")
def job(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The RayJob.", autocompletion=complete_names(RAYJOB.resource)),
    ],
    yes: YesOpt = False,
    wait: WaitOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Delete a RayJob (and the cluster it created, unless it runs on a selected cluster)."""
    _delete(RAYJOB, name, yes, wait, Target(kubeconfig, context, namespace))


@app.command("service")
def service(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="The RayService.", autocompletion=complete_names(RAYSERVICE.resource)
        ),
    ],
    yes: YesOpt = False,
    wait: WaitOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Delete a RayService (and its clusters)."""
    _delete(RAYSERVICE, name, yes, wait, Target(kubeconfig, context, namespace))


for _alias, _fn in (
    ("rayclusters", cluster),
    ("raycluster", cluster),
    ("clusters", cluster),
    ("rayjob", job),
    ("jobs", job),
    ("rayservice", service),
    ("services", service),
):
    app.command(_alias, hidden=True)(_fn)
