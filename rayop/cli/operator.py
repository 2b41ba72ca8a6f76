"""`rayop operator`: run the operator with KubeRay's flags (docs/compatibility.md#operator)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# Set by the `rayop` entry point (rayop.cli.main.main): once the flags are parsed, exec a fresh interpreter
# that runs only the operator (rayop.operator.config.exec_operator). Off when the command is invoked in-process
# (tests, CliRunner), which must not have their process replaced.
REEXEC = False


def _bool_option(help_: str) -> object:
    # Go-style booleans take `--flag=false` (what KubeRay's Helm chart passes) or `--flag false`.
    # A bare `--flag` would need click's optional-value options, which typer does not expose.
    return typer.Option(help=help_ + " (true|false)", metavar="BOOL")


def run_operator(
    metrics_addr: Annotated[
        str, typer.Option(help="Address the metrics endpoint binds to ('0' disables).")
    ] = ":8080",
    health_probe_bind_address: Annotated[
        str, typer.Option(help="Address the /healthz and /readyz endpoints bind to.")
    ] = ":8082",
    enable_leader_election: Annotated[
        str, _bool_option("Hold the ray-operator-leader Lease so only one replica reconciles.")
    ] = "true",
    leader_election_namespace: Annotated[
        str, typer.Option(help="Namespace of the Lease (default: the pod's, else the kubeconfig's).")
    ] = "",
    watch_namespace: Annotated[
        str, typer.Option(help="Comma-separated namespaces to watch; empty watches all.")
    ] = "",
    reconcile_concurrency: Annotated[
        int, typer.Option(help="Workers per controller (KubeRay: 1); async, so cheap.")
    ] = 16,
    qps: Annotated[
        float,
        typer.Option(
            help="Client-side API request rate limit; -1 (the default) or 0: none, the API server's "
            "Priority and Fairness decides (KubeRay: 100)."
        ),
    ] = -1.0,
    burst: Annotated[int, typer.Option(help="Client-side API request burst, with --qps.")] = 200,
    log_stdout_encoder: Annotated[str, typer.Option(help="json or console.")] = "json",
    log_file_path: Annotated[str, typer.Option(help="Also write logs to this file.")] = "",
    log_file_encoder: Annotated[str, typer.Option(help="json or console.")] = "json",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    feature_gates: Annotated[
        str, typer.Option(help="e.g. RayClusterStatusConditions=true,RayCronJob=false")
    ] = "",
    kubeconfig: Annotated[
        str, typer.Option(help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
    ] = "",
    use_kubernetes_proxy: Annotated[
        str, _bool_option("Reach Ray head dashboards through the API server's service proxy.")
    ] = "false",
    enable_metrics: Annotated[str, _bool_option("Export the kuberay_* metrics.")] = "false",
    batch_scheduler: Annotated[
        str, typer.Option(help="Batch scheduler name (not supported by rayop yet).")
    ] = "",
    config: Annotated[
        str, typer.Option(help="config.ray.io/v1alpha1 Configuration file; flags are then ignored.")
    ] = "",
    enable_webhook: Annotated[
        str,
        _bool_option(
            "Serve the validating admission webhook (default on; ENABLE_WEBHOOKS=false turns it off)."
        ),
    ] = "",
    webhook_host: Annotated[str, typer.Option(help="Address the webhook binds to.")] = "0.0.0.0",
    webhook_port: Annotated[int, typer.Option(help="Webhook HTTPS port.")] = 9443,
    webhook_cert_dir: Annotated[
        str, typer.Option(help="Mounted tls.crt/tls.key/ca.crt (e.g. cert-manager); default: generate.")
    ] = "",
    webhook_url: Annotated[
        str, typer.Option(help="URL the API server dials (registers the ValidatingWebhookConfiguration).")
    ] = "",
    webhook_service: Annotated[
        str, typer.Option(help="namespace/name[:port] of the webhook Service (registers the configuration).")
    ] = "",
    webhook_secret: Annotated[
        str,
        typer.Option(help="namespace/name of a Secret holding generated certificates, shared by replicas."),
    ] = "",
    enable_rayworkergroups: Annotated[
        str,
        _bool_option(
            "Keep a rayop.io RayWorkerGroup per worker group for kubectl scale and the HPA (needs its CRD)."
        ),
    ] = "true",
    enable_rayservedeployments: Annotated[
        str,
        _bool_option(
            "Keep a rayop.io RayServeDeployment per Serve deployment of a RayService for kubectl scale and "
            "the HPA (needs its CRD)."
        ),
    ] = "true",
    ui_port: Annotated[int, typer.Option(help="Serve the read-only web view on this port (0: off).")] = 0,
    ui_host: Annotated[
        str,
        typer.Option(help="Address the web view binds to; any non-loopback address turns on token checks."),
    ] = "127.0.0.1",
    ui_cert_dir: Annotated[str, typer.Option(help="tls.crt/tls.key for the web view (HTTPS).")] = "",
    webhook_inject_ca_into: Annotated[
        str,
        typer.Option(
            help="Name of an existing ValidatingWebhookConfiguration (the Helm chart's): only write its "
            "caBundle, instead of registering one."
        ),
    ] = "",
) -> None:
    """Run the operator: reconcile RayClusters (and the other Ray kinds) until SIGTERM."""
    # Imported here: the operator's modules take a second to load, which every other command would pay.
    from rayop.operator.config import (
        OperatorConfig,
        exec_operator,
        parse_bool,
        parse_feature_gates,
        parse_namespaces,
    )

    webhook: dict[str, object] = {
        "webhook_host": webhook_host,
        "webhook_port": webhook_port,
        "webhook_cert_dir": webhook_cert_dir,
        "webhook_url": webhook_url,
        "webhook_service": webhook_service,
        "webhook_secret": webhook_secret,
        "ui_port": ui_port,
        "ui_host": ui_host,
        "ui_cert_dir": ui_cert_dir,
        "webhook_inject_ca_into": webhook_inject_ca_into,
    }
    try:
        if enable_webhook:
            webhook["enable_webhook"] = parse_bool(enable_webhook, "--enable-webhook")
        if config:
            cfg = OperatorConfig.from_file(
                config, kubeconfig=kubeconfig or None, log_level=log_level, **webhook
            )
        else:
            cfg = OperatorConfig(
                metrics_addr=metrics_addr,
                probe_addr=health_probe_bind_address,
                enable_leader_election=parse_bool(enable_leader_election, "--enable-leader-election"),
                leader_election_namespace=leader_election_namespace,
                watch_namespaces=parse_namespaces(watch_namespace),
                reconcile_concurrency=reconcile_concurrency,
                qps=qps,
                burst=burst,
                log_stdout_encoder=log_stdout_encoder,
                log_file_path=log_file_path,
                log_file_encoder=log_file_encoder,
                log_level=log_level,
                feature_gates=parse_feature_gates(feature_gates),
                kubeconfig=kubeconfig or None,
                use_kubernetes_proxy=parse_bool(use_kubernetes_proxy, "--use-kubernetes-proxy"),
                enable_metrics=parse_bool(enable_metrics, "--enable-metrics"),
                batch_scheduler=batch_scheduler,
                enable_worker_groups=parse_bool(enable_rayworkergroups, "--enable-rayworkergroups"),
                enable_serve_deployments=parse_bool(
                    enable_rayservedeployments, "--enable-rayservedeployments"
                ),
                **webhook,  # type: ignore[arg-type]
            )
    except (ValueError, OSError) as e:
        typer.echo(f"rayop operator: {e}", err=True)
        raise typer.Exit(2) from e
    if REEXEC:
        exec_operator(cfg, sys.argv[1:])
    from rayop.operator.main import main

    raise typer.Exit(main(cfg))
