"""`rayop session NAME`: the Ray dashboard, client and Serve ports of a cluster's head on localhost.

Each local port forwards, connection by connection, to the head pod through the API server's
`pods/portforward` (rayop.runtime.podio), so it works wherever `kubectl port-forward` would. The head pod is
looked up again when it changes (a restarted head keeps the session usable). Ports as KubeRay's
`kubectl ray session` uses them: 8265 (dashboard), 10001 (Ray client), 8000 (Serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from typing import Annotated

import aiohttp
import typer

from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import meta, status_of
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
from rayop.runtime.podio import Forwarder

# How long a looked-up head pod name is reused before asking the API server again.
HEAD_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class AppPort:
    label: str
    scheme: str
    remote: int


DASHBOARD = AppPort("Ray Dashboard", "http", 8265)
CLIENT = AppPort("Ray Interactive Client", "ray", 10001)
SERVE = AppPort("Ray Serve", "http", 8000)


def ports_for(kind: str) -> tuple[AppPort, ...]:
    """All three for a cluster; a RayJob's session needs only the dashboard; a RayService's, Serve too."""
    if kind == "job":
        return (DASHBOARD,)
    if kind == "service":
        return (DASHBOARD, SERVE)
    return (DASHBOARD, CLIENT, SERVE)


class HeadFinder:
    """The head pod's name for new connections, cached briefly."""

    def __init__(self, kube: Kube, ref: Ref) -> None:
        self.kube = kube
        self.ref = ref
        self.name = ""
        self.at = 0.0

    async def __call__(self) -> str:
        if self.name and time.monotonic() - self.at < HEAD_CACHE_SECONDS:
            return self.name
        cluster = await cluster_of(self.kube.api, self.kube.namespace, self.ref)
        pod = await head_pod(self.kube.api, self.kube.namespace, cluster)
        if pod is None or status_of(pod).get("phase") != "Running":
            raise CliError(f"RayCluster {meta(cluster).get('name')} has no running head pod")
        self.name, self.at = str(meta(pod).get("name", "")), time.monotonic()
        return self.name


async def wait_head(finder: HeadFinder, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            return await finder()
        except CliError as e:
            if time.monotonic() > deadline:
                raise CliError(f"{e} after {timeout:.0f} s") from None
            if not said:
                typer.echo(f"waiting for the head pod: {e}", err=True)
                said = True
        await asyncio.sleep(1.0)


async def check_dashboard(port: int, timeout: float = 60.0) -> str:
    """GET /api/version through the local forward until it answers; returns Ray's version."""
    deadline = time.monotonic() + timeout
    last = ""
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(
                    f"http://127.0.0.1:{port}/api/version", timeout=aiohttp.ClientTimeout(total=10)
                ) as r:
                    if r.status == 200:
                        return str((await r.json(content_type=None)).get("ray_version", "?"))
                    last = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                last = str(e) or type(e).__name__
            await asyncio.sleep(1.0)
    raise CliError(f"the dashboard did not answer through the forward in {timeout:.0f} s ({last})")


def session(
    target: Annotated[
        str,
        typer.Argument(
            metavar="NAME|cluster/NAME|job/NAME|service/NAME",
            help="A RayCluster (default), or the cluster of a RayJob or RayService.",
            autocompletion=complete_names(RAYCLUSTERS),
        ),
    ],
    dashboard_port: Annotated[
        int | None,
        typer.Option(
            "--dashboard-port",
            metavar="PORT",
            help="Local port of the dashboard (default 8265).",
            show_default=False,
        ),
    ] = None,
    client_port: Annotated[
        int | None,
        typer.Option(
            "--client-port",
            metavar="PORT",
            help="Local port of the Ray client (default 10001).",
            show_default=False,
        ),
    ] = None,
    serve_port: Annotated[
        int | None,
        typer.Option(
            "--serve-port", metavar="PORT", help="Local port of Ray Serve (default 8000).", show_default=False
        ),
    ] = None,
    address: Annotated[
        str, typer.Option("--address", metavar="ADDR", help="Local address to listen on.")
    ] = "127.0.0.1",
    wait: Annotated[
        float, typer.Option("--wait", metavar="SECONDS", help="How long to wait for a running head pod.")
    ] = 300.0,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Forward a Ray cluster's dashboard, client and Serve ports to localhost until Ctrl-C.

    An explicit port that is taken is an error; a default one that is taken is replaced by a free one.
    Port 0 picks a free port.

    Example: rayop session demo
    """
    ref = parse_ref(target, "cluster")
    if ref.kind == "pod":
        typer.echo("error: session takes a RayCluster, RayJob or RayService, not a pod", err=True)
        raise typer.Exit(2)
    chosen = {DASHBOARD: dashboard_port, CLIENT: client_port, SERVE: serve_port}

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with connect(Target(kubeconfig, context, namespace), timeout=30) as kube:
            finder = HeadFinder(kube, ref)
            # Fail early on a missing cluster or a forbidden read, before listening.
            await cluster_of(kube.api, kube.namespace, ref)
            head = await wait_head(finder, wait)
            forwarders: list[tuple[AppPort, Forwarder]] = []
            try:
                for app_port in ports_for(ref.kind):
                    explicit = chosen[app_port]
                    fwd = Forwarder(
                        kube.api,
                        kube.namespace,
                        finder,
                        app_port.remote,
                        app_port.remote if explicit is None else explicit,
                        host=address,
                    )
                    try:
                        await fwd.start()
                    except OSError as e:
                        if explicit is not None:
                            raise CliError(
                                f"cannot listen on {address}:{explicit} for the {app_port.label}: {e.strerror}"
                            ) from None
                        fwd.local_port = 0
                        await fwd.start()
                        typer.echo(
                            f"note: local port {app_port.remote} is taken; the {app_port.label} is on "
                            f"{fwd.local_port} instead",
                            err=True,
                        )
                    forwarders.append((app_port, fwd))
                typer.echo(f"Forwarding to the head pod {head} of {ref.kind} {ref.name} (Ctrl-C stops):")
                host = "localhost" if address in ("127.0.0.1", "localhost") else address
                for app_port, fwd in forwarders:
                    typer.echo(f"  {app_port.label}: {app_port.scheme}://{host}:{fwd.local_port}")
                version = await check_dashboard(forwarders[0][1].local_port)
                typer.echo(f"The dashboard answers (Ray {version}).")
                reported = 0
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    errors = [e for _, f in forwarders for e in f.errors]
                    for err in errors[reported:]:
                        typer.echo(f"port-forward: {err}", err=True)
                    reported = len(errors)
            finally:
                for _, fwd in forwarders:
                    await fwd.close()
        typer.echo("session closed")

    run(main())
