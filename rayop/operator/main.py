"""Build and run the operator process: client, manager, controllers, servers, leader election."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import rayop.controllers as controllers
from rayop.api import kinds
from rayop.base.resource import Resource
from rayop.controllers import cached_fields
from rayop.operator.config import OperatorConfig
from rayop.runtime.client import ApiClient, load_config
from rayop.runtime.logs import setup_logging
from rayop.runtime.manager import CacheSyncTimeout, LeaderElectionLost, Manager, RunnableFailed
from rayop.runtime.protocols import Cache
from rayop.webhook import WebhookOptions, WebhookServer, start_webhook
from rayop.webhook.lookup import ApiObjects, CachedObjects

log = logging.getLogger("rayop.operator")

USER_AGENT = "kuberay-operator/rayop"


def make_client(config: OperatorConfig) -> ApiClient:
    cc = load_config(config.kubeconfig)
    cc.qps = config.qps
    cc.burst = config.burst
    return ApiClient(cc, user_agent=USER_AGENT)


def build_manager(config: OperatorConfig, client: ApiClient | None = None, **manager_kw: Any) -> Manager:
    """A manager wired from config, with every controller `rayop.controllers.setup` registers."""
    client = client or make_client(config)
    kw: dict[str, Any] = {
        "leader_election": config.enable_leader_election,
        "leader_election_namespace": config.leader_election_namespace or None,
        "leader_election_id": config.leader_election_id,
        "namespaces": config.watch_namespaces,
        "concurrency": config.reconcile_concurrency,
        "metrics_addr": config.metrics_addr,
        "probe_addr": config.probe_addr,
    }
    kw.update(manager_kw)
    manager = Manager(client, **kw)
    if config.enable_webhook:
        add_webhook(manager, config)
    controllers.setup(manager, config.controller_settings())
    if config.ui_port:
        add_ui(manager, config)
    return manager


def add_ui(manager: Manager, config: OperatorConfig) -> None:
    """Serve the web view on every replica, from its own caches (after the controllers registered theirs,
    so the view shares their informers)."""
    from rayop import ui
    from rayop.controllers.common import POD_SELECTOR

    ui.setup(
        manager,
        ui.UiOptions(
            host=config.ui_host,
            port=config.ui_port,
            cert_dir=config.ui_cert_dir,
            pod_selector=POD_SELECTOR,
            namespaces=list(config.watch_namespaces),
            fetch=ui.FetchOptions(use_proxy=config.use_kubernetes_proxy),
        ),
    )


def add_webhook(manager: Manager, config: OperatorConfig) -> None:
    """Serve admissions on every replica (not only the leader): the API server calls whichever
    replica its Service picks, and a standby that refused would fail closed (failurePolicy Fail).
    It registers its ValidatingWebhookConfiguration only when told how the API server reaches it."""
    opts = WebhookOptions(
        host=config.webhook_host,
        port=config.webhook_port,
        cert_dir=config.webhook_cert_dir,
        url=config.webhook_url,
        service=config.webhook_service,
        register=bool(config.webhook_url or config.webhook_service) and not config.webhook_inject_ca_into,
        secret=config.webhook_secret,
        inject_ca_into=config.webhook_inject_ca_into,
        gates=config.all_feature_gates(),
    )
    state: dict[str, WebhookServer] = {}
    # A scale request is judged against the RayWorkerGroup and its RayCluster or RayService: read them from the
    # informers the controllers share (every replica runs them), not with a GET per request.
    # Through cached_fields, so that the webhook (registered first) and the controllers ask for the
    # same trimmed cache of each kind.
    caches: dict[Resource, Cache] = {kinds.RAYCLUSTERS: cached_fields.informer(manager, kinds.RAYCLUSTERS)}
    if config.enable_worker_groups:
        caches[kinds.RAYWORKERGROUPS] = cached_fields.informer(manager, kinds.RAYWORKERGROUPS)
        # A RayService's RayWorkerGroup is judged against the RayService (its rayClusterConfig).
        caches[kinds.RAYSERVICES] = cached_fields.informer(manager, kinds.RAYSERVICES)
    if config.enable_serve_deployments:
        caches[kinds.RAYSERVEDEPLOYMENTS] = cached_fields.informer(manager, kinds.RAYSERVEDEPLOYMENTS)
        # A RayServeDeployment is judged against its RayService (its serveConfigV2).
        caches[kinds.RAYSERVICES] = cached_fields.informer(manager, kinds.RAYSERVICES)
    objects = CachedObjects(caches, ApiObjects(manager.client))

    async def serve() -> None:
        server = await start_webhook(opts, manager.client, objects)
        state["server"] = server
        try:
            if server.injector is not None:
                await server.injector.keep(lambda: server.ca_bundle)
            else:
                await asyncio.Event().wait()
        finally:
            await server.stop()

    manager.add_runnable("webhook", serve, needs_leader=False)
    manager.add_readiness_check("webhook", lambda: "server" in state and state["server"].ready)


async def run(config: OperatorConfig, **manager_kw: Any) -> int:
    """Run until SIGTERM/SIGINT (0), a lost lease (1) or a start-up failure (1)."""
    manager = build_manager(config, **manager_kw)
    log.info(
        "starting manager",
        extra={
            "watchNamespaces": config.watch_namespaces or "all",
            "leaderElection": config.enable_leader_election,
            "reconcileConcurrency": config.reconcile_concurrency,
            "featureGates": config.all_feature_gates(),
        },
    )
    try:
        await manager.run()
        return 0
    except LeaderElectionLost as e:
        log.error("exiting: %s", e)
        return 1
    except (CacheSyncTimeout, RunnableFailed) as e:
        log.error("exiting: %s", e)
        return 1
    finally:
        await manager.client.close()


def main(config: OperatorConfig) -> int:
    setup_logging(
        config.log_stdout_encoder,
        config.log_level,
        file_path=config.log_file_path or None,
        file_encoder=config.log_file_encoder,
    )
    tune_gc()
    return asyncio.run(run(config))


def tune_gc() -> None:
    """Make the cyclic collector cheap for a process whose heap is mostly its informer caches.

    Thousands of cached pods are long-lived dicts without cycles, yet with CPython's default thresholds
    (700, 10, 10) the collector walked them again and again while a watch delivered a burst of pods:
    a second of CPU per 1,100-pod scale-up, taken from the API server on the same cores. Freezing
    what start-up built and collecting young objects less often cut that to about 0.3 s with the same
    peak memory (bench/raycluster_scale.py).
    """
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
