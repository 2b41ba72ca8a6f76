"""The admission webhook's HTTPS server (aiohttp).

Serves ``/validate-ray-io-v1-{raycluster,rayjob,rayservice}``, the scale path of each kind whose scale
subresource it judges (``/validate-rayop-io-v1alpha1-rayworkergroup-scale``), ``/healthz`` and ``/readyz``. The
certificate comes from a ``CertSource``; rotated certificates are loaded into the live ``SSLContext``, so
new handshakes use them without restarting the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from rayop.api import features as F
from rayop.base.pki import load_chain
from rayop.runtime.client import ApiClient
from rayop.webhook.admission import PATHS, SCALE_PATHS, BadReview, review, review_scale, scale_target
from rayop.webhook.certs import CertBundle, CertSource, FileCertSource, split_pems
from rayop.webhook.lookup import SCALE_CONTEXTS, ObjectReader
from rayop.webhook.registration import (
    DEFAULT_NAME,
    DEFAULT_TIMEOUT_SECONDS,
    CaInjector,
    UrlOrService,
    ensure_webhook_configuration,
)

log = logging.getLogger("rayop.webhook")

CaBundleHook = Callable[[bytes], Awaitable[None]]
DEFAULT_PORT = 9443
# The API server re-reads the ValidatingWebhookConfiguration through an informer; give it this long to see
# a new caBundle before we present a certificate signed by a new CA.
CA_PROPAGATION_SECONDS = 5.0
MAX_BODY = 8 * 1024 * 1024  # pod templates can be large; the API server caps objects at ~3 MiB anyway


# controller-runtime's webhook metric names, so dashboards built for KubeRay's webhook keep working.
REQUESTS = Counter(
    "controller_runtime_webhook_requests_total",
    "Total number of admission requests by HTTP status code.",
    ["code", "webhook"],
)
LATENCY = Histogram(
    "controller_runtime_webhook_latency_seconds",
    "Histogram of the latency of processing admission requests",
    ["webhook"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
IN_FLIGHT = Gauge(
    "controller_runtime_webhook_requests_in_flight",
    "Current number of admission requests being served.",
    ["webhook"],
)


class Stats:
    """Counters for tests and the benchmark (no Prometheus dependency in the hot path)."""

    def __init__(self) -> None:
        self.allowed = 0
        self.denied = 0
        self.bad_requests = 0
        self.seconds = 0.0


def make_app(
    gates: Mapping[str, bool] | None = None,
    ready: Callable[[], bool] | None = None,
    stats: Stats | None = None,
    objects: ObjectReader | None = None,
) -> web.Application:
    """The aiohttp application (no TLS): tests post AdmissionReviews to it directly. ``objects`` reads
    what a scale request is judged against (the operator's caches, or the API server)."""
    resolved = F.resolve_gates(gates)
    st = stats or Stats()
    app = web.Application(client_max_size=MAX_BODY)

    def handler(kind: str, scale: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            path = request.path
            IN_FLIGHT.labels(path).inc()
            t0 = time.perf_counter()
            try:
                resp = await decide(request)
            finally:
                IN_FLIGHT.labels(path).dec()
                LATENCY.labels(path).observe(time.perf_counter() - t0)
            REQUESTS.labels(str(resp.status), path).inc()
            return resp

        async def decide(request: web.Request) -> web.Response:
            t0 = time.perf_counter()
            try:
                body = await request.json(loads=json.loads)
            except (ValueError, UnicodeDecodeError) as e:
                st.bad_requests += 1
                return web.json_response({"error": f"request body is not JSON: {e}"}, status=400)
            try:
                if scale:
                    ns, name = scale_target(body)
                    ctx = await SCALE_CONTEXTS[kind](objects, ns, name)
                    out = review_scale(kind, body, ctx)
                else:
                    out = review(kind, body, resolved)
            except BadReview as e:
                st.bad_requests += 1
                return web.json_response({"error": str(e)}, status=400)
            resp = out["response"]
            if resp["allowed"]:
                st.allowed += 1
            else:
                st.denied += 1
            st.seconds += time.perf_counter() - t0
            if not resp["allowed"]:
                log.info("denied %s %s: %s", kind, resp.get("uid"), resp.get("status", {}).get("message"))
            return web.json_response(out)

        return handle

    for kind, path in PATHS.items():
        app.router.add_post(path, handler(kind))
    for kind, path in SCALE_PATHS.items():
        app.router.add_post(path, handler(kind, scale=True))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ok = ready() if ready else True
        return web.Response(status=200 if ok else 503, text="ok" if ok else "not ready")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class WebhookServer:
    """HTTPS admission server.

    ``cert_source`` supplies certificates; passing ``cert_dir`` instead serves the files in that directory
    (``tls.crt``, ``tls.key``, ``ca.crt``) and reloads them when they change. ``on_ca_bundle`` hooks run
    before a certificate from a new CA is served (use them to update the webhook configuration's caBundle).
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        cert_dir: str | os.PathLike[str] | None = None,
        *,
        cert_source: CertSource | None = None,
        gates: Mapping[str, bool] | None = None,
        check_interval: float = 60.0,
        ca_propagation_seconds: float = CA_PROPAGATION_SECONDS,
        objects: ObjectReader | None = None,
    ) -> None:
        if cert_source is None and cert_dir is None:
            raise ValueError("WebhookServer needs cert_dir or cert_source")
        self.host = host
        self.port = port
        self.cert_source: CertSource = cert_source or FileCertSource(Path(str(cert_dir)))
        self.gates = F.resolve_gates(gates)
        self.objects = objects
        self.check_interval = check_interval
        self.ca_propagation_seconds = ca_propagation_seconds
        self.on_ca_bundle: list[CaBundleHook] = []
        self.on_certificate: list[Callable[[CertBundle], None]] = []
        # Set by start_webhook when the configuration belongs to someone else (the Helm chart).
        self.injector: CaInjector | None = None
        self.stats = Stats()
        self.bundle: CertBundle | None = None
        self._ssl: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._task: asyncio.Task[None] | None = None
        self._serving = False

    @property
    def ready(self) -> bool:
        """True once the listener is up with a certificate loaded."""
        return self._serving and self.bundle is not None

    @property
    def ca_bundle(self) -> bytes:
        return self.bundle.ca_bundle if self.bundle else b""

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"https://{host}:{self.port}"

    def _load_into(self, ctx: ssl.SSLContext, b: CertBundle) -> None:
        load_chain(ctx, b.cert_pem, b.key_pem)

    def _context(self, b: CertBundle) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_into(ctx, b)
        return ctx

    async def start(self) -> None:
        self.bundle = await self.cert_source.load()
        for hook in self.on_ca_bundle:
            await hook(self.bundle.ca_bundle)
        self._ssl = self._context(self.bundle)
        app = make_app(self.gates, ready=lambda: self.ready, stats=self.stats, objects=self.objects)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self._ssl, reuse_address=True
        )
        await self._site.start()
        sockets = getattr(self._site._server, "sockets", None) or []
        if self.port == 0 and sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._serving = True
        self._task = asyncio.create_task(self._watch(), name="rayop-webhook-certs")
        # The bind address, not `url`: in a Pod the webhook is reached on the Pod's IP through its Service,
        # and "127.0.0.1" in the log would send whoever debugs that path the wrong way.
        log.info("webhook serving on %s port %d (HTTPS)", self.host or "all addresses", self.port)

    async def stop(self) -> None:
        self._serving = False
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def apply(self, b: CertBundle) -> None:
        """Serve ``b`` from now on: publish a changed CA first, then swap the certificate."""
        old = self.bundle
        ca_changed = old is None or b.ca_bundle != old.ca_bundle
        if ca_changed:
            for hook in self.on_ca_bundle:
                await hook(b.ca_bundle)
            if old is not None and not _same_issuer(old, b) and self.ca_propagation_seconds > 0:
                await asyncio.sleep(self.ca_propagation_seconds)
        if self._ssl is not None:
            self._load_into(self._ssl, b)
        self.bundle = b
        for fn in self.on_certificate:
            fn(b)
        log.info("webhook certificate now valid until %s", b.not_after.isoformat())

    async def register(
        self,
        client: ApiClient,
        url_or_service: UrlOrService | None = None,
        *,
        name: str = DEFAULT_NAME,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        namespace_selector: Mapping[str, Any] | None = None,
    ) -> None:
        """Point the API server at this server (URL defaults to ``self.url``) and keep its caBundle current."""
        target: UrlOrService = url_or_service if url_or_service is not None else self.url

        async def publish(ca: bytes) -> None:
            await ensure_webhook_configuration(
                client,
                target,
                ca,
                name=name,
                timeout_seconds=timeout_seconds,
                namespace_selector=namespace_selector,
            )

        self.on_ca_bundle.append(publish)
        if self.bundle is not None:
            await publish(self.bundle.ca_bundle)

    async def rotate(self, *, ca: bool = False) -> CertBundle:
        """Force a rotation now (tests, ``rayop webhook`` admin)."""
        b = await self.cert_source.rotate(ca=ca)
        await self.apply(b)
        return b

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                b = await self.cert_source.refresh()
                if b is not None:
                    await self.apply(b)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep serving the current certificate; try again next tick
                log.warning("webhook certificate refresh failed: %s", e)


def _same_issuer(a: CertBundle, b: CertBundle) -> bool:
    """Whether ``b``'s serving certificate is signed by the CA ``a`` already published first."""
    ca_a, ca_b = split_pems(a.ca_bundle), split_pems(b.ca_bundle)
    return bool(ca_a) and bool(ca_b) and ca_a[0] == ca_b[0]


def review_json(kind: str, body: bytes, gates: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Convenience for benchmarks: decide one raw AdmissionReview body."""
    return review(kind, json.loads(body), gates)
