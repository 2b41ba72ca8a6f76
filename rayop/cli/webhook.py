"""`rayop webhook`: run the validating admission webhook on its own (docs/compatibility.md#validation)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from rayop.api.features import parse_feature_gates, resolve_gates


def run_webhook(
    port: Annotated[int, typer.Option(help="HTTPS port (0 picks a free one).")] = 9443,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "0.0.0.0",
    cert_dir: Annotated[
        str,
        typer.Option(
            help="Directory with tls.crt/tls.key (and ca.crt), reloaded when they change; "
            "if empty, a generated certificate is written there."
        ),
    ] = "",
    kubeconfig: Annotated[
        str, typer.Option(help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
    ] = "",
    url: Annotated[
        str, typer.Option(help="URL the API server uses to reach this webhook, e.g. https://127.0.0.1:9443.")
    ] = "",
    service: Annotated[
        str, typer.Option(help="namespace/name[:port] of the Service in front of the webhook (in-cluster).")
    ] = "",
    register: Annotated[
        bool,
        typer.Option("--register/--no-register", help="Create/update the ValidatingWebhookConfiguration."),
    ] = False,
    config_name: Annotated[
        str, typer.Option(help="Name of the ValidatingWebhookConfiguration.")
    ] = "rayop-validating-webhook",
    secret: Annotated[
        str,
        typer.Option(
            help="namespace/name of a Secret to keep generated certificates in (shared by replicas)."
        ),
    ] = "",
    san: Annotated[
        list[str] | None, typer.Option(help="Extra DNS name or IP for the certificate (repeatable).")
    ] = None,
    feature_gates: Annotated[str, typer.Option(help="e.g. RayClusterNetworkPolicy=true")] = "",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve admission.k8s.io/v1 reviews for RayCluster, RayJob and RayService until SIGTERM."""
    from rayop.runtime.logs import setup_logging
    from rayop.webhook.standalone import WebhookOptions, serve

    try:
        gates = resolve_gates(parse_feature_gates(feature_gates))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--feature-gates") from e
    setup_logging("console", log_level.upper())
    opts = WebhookOptions(
        host=host,
        port=port,
        cert_dir=cert_dir,
        kubeconfig=kubeconfig or None,
        url=url,
        service=service,
        register=register,
        config_name=config_name,
        secret=secret,
        sans=list(san or []),
        gates=gates,
    )
    try:
        asyncio.run(serve(opts))
    except ValueError as e:
        typer.echo(f"rayop webhook: {e}", err=True)
        raise typer.Exit(2) from e
