"""`rayop logs` and `rayop exec`: read a container's logs and run commands in it, on the local node, straight
from the node agent's files and namespaces (no API server or kubelet API involved: they work while those
are down, and need root on the node's machine). `kubectl logs` and `kubectl exec` reach the same through the
API server and the node agent's kubelet API."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Annotated

import typer

from rayop.node import containers
from rayop.node.locate import ContainerLocation, LocateError, locate
from rayop.node.logs import LogOptions, LogReader
from rayop.runtime.client import ApiClient, load_config


async def _locate(
    kubeconfig: str | None, namespace: str | None, pod: str, container: str | None
) -> ContainerLocation:
    cfg = load_config(kubeconfig)
    async with ApiClient(cfg, user_agent="rayop-cli") as client:
        return await locate(client, namespace or cfg.namespace, pod, container)


def _find(
    kubeconfig: str | None, namespace: str | None, pod: str, container: str | None
) -> ContainerLocation:
    try:
        return asyncio.run(_locate(kubeconfig, namespace, pod, container))
    except LocateError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def logs(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    container: Annotated[str | None, typer.Option("-c", "--container", help="Container name.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Namespace.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    previous: Annotated[bool, typer.Option("-p", "--previous", help="The previous run's output.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Lines of recent output (-1: all).")] = -1,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix each line with its time.")] = False,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG).")] = None,
) -> None:
    """Print a container's output, kept on disk by the local node agent (`kubectl logs` reads the same
    through the node agent's kubelet API)."""
    loc = _find(kubeconfig, namespace, pod, container)
    attempt = loc.attempt - 1 if previous else loc.attempt
    if attempt < 0:
        typer.echo(f'error: previous terminated container "{loc.container}" not found', err=True)
        raise typer.Exit(1)
    opts = LogOptions(timestamps=timestamps, tail_lines=None if tail < 0 else tail)
    reader = LogReader(loc.run_dir(attempt) / "log", opts)
    out = sys.stdout.buffer
    while True:
        chunk = reader.read()
        if chunk:
            out.write(chunk)
            out.flush()
            continue
        if not follow or previous:
            return
        try:
            loc.refresh()
        except LocateError:
            return
        # Like kubectl: following ends when the container stops (and its last lines are out).
        if not loc.running and reader.at_end():
            return
        time.sleep(0.2)


def exec_(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    command: Annotated[list[str], typer.Argument(help="Command and arguments (after --).")],
    container: Annotated[str | None, typer.Option("-c", "--container", help="Container name.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Namespace.")] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG).")] = None,
) -> None:
    """Run a command inside a running container (its namespaces, environment and working directory)."""
    loc = _find(kubeconfig, namespace, pod, container)
    if not loc.running:
        typer.echo(f'error: container "{loc.container}" in pod "{pod}" is not running', err=True)
        raise typer.Exit(1)
    argv = containers.exec_argv(loc.pid, loc.spec_path, command)
    sys.stdout.flush()
    os.execv(argv[0], argv)


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
    app.command("exec")(exec_)
