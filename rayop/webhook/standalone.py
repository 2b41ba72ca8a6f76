"""``rayop webhook``: the admission webhook as its own process (the operator embeds ``WebhookServer``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rayop.runtime.client import ApiClient, load_config
from rayop.webhook.certs import (
    GENERATED_MARKER,
    CertSource,
    FileCertSource,
    SecretCertSource,
    SelfSignedCertSource,
)
from rayop.webhook.lookup import ApiObjects, ObjectReader
from rayop.webhook.registration import DEFAULT_NAME, CaInjector, UrlOrService
from rayop.webhook.server import WebhookServer

log = logging.getLogger("rayop.webhook")


@dataclass
class WebhookOptions:
    host: str = "0.0.0.0"
    port: int = 9443
    cert_dir: str = ""
    kubeconfig: str | None = None
    url: str = ""  # what the API server dials, e.g. https://127.0.0.1:9443 on the local plane
    service: str = ""  # namespace/name[:port] of a Service in front of the webhook
    register: bool = False
    config_name: str = DEFAULT_NAME
    secret: str = ""  # namespace/name of the Secret that stores generated certificates
    # Name of a ValidatingWebhookConfiguration someone else created (the Helm chart): only its caBundle
    # is written, never its rules or targets (instead of ``register``).
    inject_ca_into: str = ""
    sans: list[str] = field(default_factory=list)
    gates: dict[str, bool] = field(default_factory=dict)
    check_interval: float = 60.0


def parse_service(text: str) -> dict[str, object]:
    ns, sep, rest = text.partition("/")
    if not sep or not ns or not rest:
        raise ValueError(f"--service {text!r}: want namespace/name[:port]")
    name, _, port = rest.partition(":")
    out: dict[str, object] = {"namespace": ns, "name": name}
    if port:
        out["port"] = int(port)
    return out


def default_sans(opts: WebhookOptions) -> list[str]:
    sans = list(opts.sans)
    if opts.service:
        svc = parse_service(opts.service)
        ns, name = svc["namespace"], svc["name"]
        sans += [f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}", str(name)]
    if opts.url:
        host = opts.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        sans.append(host)
    sans += ["127.0.0.1", "localhost"]
    return list(dict.fromkeys(s for s in sans if s))


def _needs_client(opts: WebhookOptions) -> bool:
    return opts.register or bool(opts.secret) or bool(opts.inject_ca_into)


def make_cert_source(opts: WebhookOptions, client: ApiClient | None) -> CertSource:
    sans: Sequence[str] = default_sans(opts)
    if opts.cert_dir:
        d = Path(opts.cert_dir)
        generated = (d / GENERATED_MARKER).exists()
        if (d / "tls.crt").exists() and (d / "tls.key").exists() and not generated:
            return FileCertSource(d)
    if opts.secret:
        if client is None:
            raise ValueError("--secret needs a kubeconfig or an in-cluster service account")
        ns, _, name = opts.secret.partition("/")
        if not ns or not name:
            raise ValueError(f"--secret {opts.secret!r}: want namespace/name")
        return SecretCertSource(client, ns, name, sans)
    return SelfSignedCertSource(sans)


async def start_webhook(
    opts: WebhookOptions, client: ApiClient | None, objects: ObjectReader | None = None
) -> WebhookServer:
    """Start a WebhookServer as ``opts`` describe (and register it); the operator embeds it this way.

    ``client`` is needed for ``opts.register`` and ``opts.secret``. ``objects`` reads what a scale request
    is judged against (the operator passes its caches); by default each object is read with a GET through
    ``client``. The caller stops the returned server.
    """
    source = make_cert_source(opts, client)
    if objects is None and client is not None:
        objects = ApiObjects(client)
    server = WebhookServer(
        opts.host,
        opts.port,
        cert_source=source,
        gates=opts.gates,
        check_interval=opts.check_interval,
        objects=objects,
    )
    await server.start()
    try:
        if opts.cert_dir and not isinstance(source, FileCertSource) and server.bundle is not None:
            # Hand the generated certificate (and each rotation) to whoever reads the directory.
            files = FileCertSource(opts.cert_dir)
            files.write(server.bundle)
            server.on_certificate.append(files.write)
        if opts.register:
            if client is None:
                raise ValueError("--register needs a kubeconfig or an in-cluster service account")
            target: UrlOrService = parse_service(opts.service) if opts.service else (opts.url or server.url)
            await server.register(client, target, name=opts.config_name)
            log.info("registered ValidatingWebhookConfiguration %s -> %s", opts.config_name, target)
        elif opts.inject_ca_into:
            if client is None:
                raise ValueError(
                    "--webhook-inject-ca-into needs a kubeconfig or an in-cluster service account"
                )
            server.injector = CaInjector(client, opts.inject_ca_into)
            server.on_ca_bundle.append(server.injector.publish)
            await server.injector.publish(server.ca_bundle)
    except BaseException:
        await server.stop()
        raise
    return server


def _optional_client(opts: WebhookOptions) -> ApiClient | None:
    """A client when a kubeconfig or a service account is at hand: scale requests are judged against the
    RayCluster, read with a GET. Without one they are allowed with a warning (the operator still reverts
    a number Ray's autoscaler owns)."""
    try:
        return ApiClient(load_config(opts.kubeconfig))
    except (OSError, KeyError, ValueError) as e:
        log.warning("no Kubernetes API access (%s): scale requests are not checked", e)
        return None


async def serve(opts: WebhookOptions, stop: asyncio.Event | None = None) -> None:
    """``rayop webhook``: serve until ``stop`` is set or SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    client = ApiClient(load_config(opts.kubeconfig)) if _needs_client(opts) else _optional_client(opts)
    try:
        server = await start_webhook(opts, client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        print(f"rayop webhook serving on {server.url}", flush=True)
        await stop.wait()
        await server.stop()
    finally:
        if client is not None:
            await client.close()
