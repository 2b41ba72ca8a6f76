"""`rayop ui`: the web view on its own, against any kubeconfig (no operator needed on this machine)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from rayop.operator.config import parse_namespaces

if TYPE_CHECKING:
    from rayop.runtime.client import ApiClient


def run_ui(
    kubeconfig: Annotated[
        str, typer.Option(help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
    ] = "",
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 8090,
    host: Annotated[
        str, typer.Option(help="Address to bind; any non-loopback address turns on bearer-token checks.")
    ] = "127.0.0.1",
    namespace: Annotated[str, typer.Option(help="Comma-separated namespaces to show; empty: all.")] = "",
    cert_dir: Annotated[str, typer.Option(help="tls.crt/tls.key to serve HTTPS.")] = "",
    direct: Annotated[
        bool,
        typer.Option(help="Reach Ray dashboards by cluster DNS instead of the API server's service proxy."),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the read-only web view of RayClusters, RayJobs and RayServices, with your kubeconfig's access."""
    from rayop.runtime.logs import setup_logging

    setup_logging("console", log_level)
    try:
        code = asyncio.run(
            _serve(kubeconfig or None, host, port, parse_namespaces(namespace), cert_dir, not direct)
        )
    except (ValueError, OSError) as e:
        typer.echo(f"rayop ui: {e}", err=True)
        raise typer.Exit(2) from e
    raise typer.Exit(code)


async def _access_warnings(client: ApiClient, namespaces: list[str]) -> list[str]:
    """What the kubeconfig's account may not list (SelfSubjectAccessReview): the view would wait for it."""
    from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
    from rayop.runtime.client import CORE_EVENTS, PODS, SERVICES, ApiError
    from rayop.ui.auth import SELF_SUBJECT_ACCESS_REVIEWS

    out = []
    for res in (RAYCLUSTERS, RAYJOBS, RAYSERVICES, PODS, SERVICES, CORE_EVENTS):
        for ns in namespaces or [""]:
            attrs = {"verb": "list", "group": res.group, "resource": res.plural, "namespace": ns}
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {k: v for k, v in attrs.items() if v}},
            }
            try:
                answer = await client.create(SELF_SUBJECT_ACCESS_REVIEWS, body)
            except (ApiError, OSError) as e:
                return [f"could not check what your account may read: {e}"]
            if not (answer.get("status") or {}).get("allowed"):
                where = f"in namespace {ns}" if ns else "in all namespaces (try --namespace)"
                out.append(
                    f"your account may not list {res.group_resource} {where}; the view will wait for them"
                )
    return out


async def _serve(
    kubeconfig: str | None, host: str, port: int, namespaces: list[str], cert_dir: str, use_proxy: bool
) -> int:
    from rayop import ui
    from rayop.controllers.common import POD_SELECTOR
    from rayop.runtime.client import ApiClient, load_config
    from rayop.runtime.manager import CacheSyncTimeout, Manager, RunnableFailed

    client = ApiClient(load_config(kubeconfig), user_agent="rayop-ui")
    for warning in await _access_warnings(client, namespaces):
        typer.echo(f"warning: {warning}", err=True)
    manager = Manager(
        client,
        leader_election=False,
        namespaces=namespaces,
        metrics_addr=None,
        probe_addr=None,
        component="rayop-ui",
        # Never give up on a kind the account cannot list yet: the page says what it is waiting for.
        cache_sync_timeout=10**9,
    )

    def ready(url: str) -> None:
        typer.echo(f"rayop web view: {url}  (Ctrl-C stops it)")

    ui.setup(
        manager,
        ui.UiOptions(
            host=host,
            port=port,
            cert_dir=cert_dir,
            pod_selector=POD_SELECTOR,
            namespaces=namespaces,
            fetch=ui.FetchOptions(use_proxy=use_proxy),
            on_ready=ready,
        ),
    )
    try:
        await manager.run()
        return 0
    except (CacheSyncTimeout, RunnableFailed) as e:
        logging.getLogger("rayop.ui").error("stopped: %s", e)
        return 1
    finally:
        await client.close()
