"""The web view: RayClusters, RayJobs and RayServices at a glance, with their scaling history. Read-only.

Served by `rayop operator --ui-port=N` (every replica, leader or not, from its own caches) and by `rayop ui`
against any kubeconfig. Modules:

- `caches`: the informers the view reads and the lookups pages share;
- `fieldmanagers`: who last set each worker group's replicas, read from managedFields before the cache
  strips them;
- `history`: desired / ready / Ray-reported workers per group over time, bounded, rebuilt from events;
- `model`: what each page shows, as pure functions of cached objects;
- `render`: the HTML, escaped by construction;
- `fetch`: Ray-reported workers, events and driver logs on a bounded schedule;
- `auth`: TokenReview and SubjectAccessReview, cached, when the view is exposed beyond loopback;
- `view`: informer handlers and pages; `server`: the aiohttp application.

`setup(manager, options)` registers the caches, handlers and the server on a runtime manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import PODS, SERVICES
from rayop.runtime.protocols import Informer, Manager
from rayop.ui.auth import AccessReviewer, AuthCounters, TokenReviewer
from rayop.ui.caches import INDEX_CLUSTER, Caches
from rayop.ui.fetch import Fetcher, FetchOptions, rebuild_history
from rayop.ui.fieldmanagers import ManagerTable, serve_config_manager
from rayop.ui.history import ScalingHistory
from rayop.ui.server import ServerOptions, UiServer, is_loopback
from rayop.ui.view import View

log = logging.getLogger("rayop.ui")


@dataclass(frozen=True)
class UiOptions:
    """How the view is served. `auth` None means: on unless bound to a loopback address."""

    host: str = "127.0.0.1"
    port: int = 0
    cert_dir: str = ""
    auth: bool | None = None
    # The Pods the operator caches (the controllers' label selector), so the view shares their informer.
    pod_selector: str | None = None
    # The namespaces the caches watch (empty: all); history is rebuilt from events there.
    namespaces: list[str] = field(default_factory=list)
    # Where links to Ray dashboards point (the API server's service proxy); default: the client's server.
    api_server_url: str = ""
    history_window: float = 3 * 3600.0
    fetch: FetchOptions = field(default_factory=FetchOptions)
    on_ready: Callable[[str], None] | None = None

    @property
    def auth_on(self) -> bool:
        return (not is_loopback(self.host)) if self.auth is None else self.auth


@dataclass
class Ui:
    view: View
    server: UiServer
    fetcher: Fetcher
    history: ScalingHistory
    counters: AuthCounters
    # Set once the server answers, the caches have synced and the history was rebuilt from events.
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return self.server.url


def _wrap_transform(informer: Informer, table: ManagerTable) -> None:
    """Note field managers before the informer's own transform strips managedFields."""
    current = getattr(informer, "transform", None)
    if getattr(current, "__wrapped__", None) is not None:
        return
    cast(Any, informer).transform = table.wrap(current)


def setup(manager: Manager, options: UiOptions) -> Ui:
    """Register the view's caches, handlers and server (a runnable on every replica) on `manager`."""
    clusters = manager.informer(RAYCLUSTERS)
    table = ManagerTable()
    _wrap_transform(clusters, table)
    jobs = manager.informer(RAYJOBS)
    rayservices = manager.informer(RAYSERVICES)
    serve_table = ManagerTable(serve_config_manager)
    _wrap_transform(rayservices, serve_table)
    pods = manager.informer(PODS, label_selector=options.pod_selector)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    services = manager.informer(SERVICES)
    services.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    caches = Caches(clusters, jobs, rayservices, pods, services)
    history = ScalingHistory(window=options.history_window)
    fetcher = Fetcher(
        manager.client,
        caches,
        history,
        options.fetch,
        serve_history=ScalingHistory(window=options.history_window),
        serve_managers=serve_table,
    )
    view = View(
        caches, history, table, fetcher, api_server=options.api_server_url or manager.client.config.server
    )
    clusters.add_handler(view.on_cluster)
    pods.add_handler(view.on_pod)
    jobs.add_handler(view.on_job)
    rayservices.add_handler(view.on_rayservice)
    services.add_handler(view.on_other)
    counters = AuthCounters()
    auth = options.auth_on
    server = UiServer(
        view,
        ServerOptions(host=options.host, port=options.port, cert_dir=options.cert_dir, auth=auth),
        reviewer=TokenReviewer(manager.client, counters=counters) if auth else None,
        authorizer=AccessReviewer(manager.client, counters=counters) if auth else None,
    )
    ui = Ui(view, server, fetcher, history, counters)

    async def serve() -> None:
        await server.start()
        if options.on_ready is not None:
            options.on_ready(server.url)
        fetching = asyncio.create_task(fetcher.run(), name="ui-fetcher")
        try:
            if await clusters.wait_synced(None) and await pods.wait_synced(None):
                try:
                    n = await rebuild_history(manager.client, caches, history, options.namespaces or None)
                    log.info("scaling history rebuilt from events", extra={"changes": n})
                except Exception as e:  # the view works without it
                    log.warning("could not rebuild the scaling history from events: %s", e)
            ui.ready.set()
            await asyncio.Event().wait()
        finally:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            await server.stop()

    manager.add_runnable("ui", serve, needs_leader=False)
    return ui


__all__ = ["FetchOptions", "Ui", "UiOptions", "setup"]
