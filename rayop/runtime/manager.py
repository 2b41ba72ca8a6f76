"""The manager: owns the shared informers, the controllers, the servers and leader election.

Start order follows controller-runtime: servers first (probes answer during start-up), then informers
(standby replicas keep warm caches, so a take-over does not wait for a full LIST), then, once leader and
once the caches have synced, the controllers and the leader-only runnables. SIGTERM or SIGINT stop it
gracefully: controllers finish their current reconcile (bounded by `graceful_shutdown_timeout`), the
lease is released, and run() returns. Losing the lease ends run() with LeaderElectionLost: the process
must exit, as a controller-runtime operator does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rayop.runtime.cache import Informer, strip_managed_fields
from rayop.runtime.client import SA_DIR, ApiClient, Resource
from rayop.runtime.controller import Controller
from rayop.runtime.events import EventRecorder
from rayop.runtime.leader import LeaderElector, default_identity
from rayop.runtime.protocols import Check, Reconcile, Runnable, Transform
from rayop.runtime.servers import Servers

log = logging.getLogger("rayop.runtime.manager")


class LeaderElectionLost(RuntimeError):
    """The lease was lost while leading; the process must exit."""


class CacheSyncTimeout(RuntimeError):
    """Informers did not finish their first LIST in time."""


class RunnableFailed(RuntimeError):
    """A controller or runnable crashed; the manager stopped everything."""


def default_lease_namespace(client: ApiClient) -> str:
    ns_file = SA_DIR / "namespace"
    try:
        return Path(ns_file).read_text().strip() or client.config.namespace
    except OSError:
        return client.config.namespace


class _Unset:
    """Marks an argument the caller did not give."""


_UNSET = _Unset()


class Manager:
    """See the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        *,
        leader_election: bool = True,
        leader_election_namespace: str | None = None,
        leader_election_id: str = "ray-operator-leader",
        identity: str | None = None,
        namespaces: Iterable[str] | None = None,
        concurrency: int = 4,
        metrics_addr: str | None = ":8080",
        probe_addr: str | None = ":8082",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        graceful_shutdown_timeout: float = 30.0,
        cache_sync_timeout: float = 120.0,
        component: str = "kuberay-operator",
        handle_signals: bool = True,
    ) -> None:
        self.client = client
        ns = [n for n in (namespaces or []) if n]
        self.namespaces: list[str] | None = sorted(set(ns)) or None
        self.concurrency = concurrency
        self.identity = identity or default_identity()
        self.component = component
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.cache_sync_timeout = cache_sync_timeout
        self.handle_signals = handle_signals
        self.servers = Servers(metrics_addr, probe_addr)
        self.servers.ready.add("informers", self.caches_synced)
        self.elector: LeaderElector | None = None
        if leader_election:
            self.elector = LeaderElector(
                client,
                leader_election_namespace or default_lease_namespace(client),
                leader_election_id,
                self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )
        self._informers: dict[tuple[Resource, str | None, str | None], Informer] = {}
        self.controllers: list[Controller] = []
        self._runnables: list[tuple[str, Runnable, bool]] = []
        self._events: EventRecorder | None = None
        self._stop = asyncio.Event()
        self._started_informers = False
        self.leading = asyncio.Event()

    # -- registration ----------------------------------------------------------------------------

    def informer(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | _Unset | None = _UNSET,
    ) -> Informer:
        """The shared informer for (resource, selectors), scoped to the watched namespaces. `transform`
        (default: strip managedFields) applies to a new informer; asking for an existing one with another
        transform is an error, since one cache serves every asker."""
        key = (resource, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is not None and not isinstance(transform, _Unset) and inf.transform is not transform:
            raise ValueError(f"{inf!r} is shared, and was asked for with another transform")
        if inf is None:
            if isinstance(transform, _Unset):
                transform = strip_managed_fields
            inf = Informer(
                self.client,
                resource,
                namespaces=self.namespaces,
                label_selector=label_selector,
                field_selector=field_selector,
                transform=transform,
            )
            self._informers[key] = inf
            if self._started_informers:
                asyncio.get_running_loop().create_task(inf.start())
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def add_controller(self, controller: Controller) -> Controller:
        self.controllers.append(controller)
        return controller

    def new_controller(
        self, name: str, reconcile: Reconcile, *, concurrency: int | None = None
    ) -> Controller:
        return self.add_controller(Controller(name, reconcile, concurrency=concurrency or self.concurrency))

    def add_runnable(self, name: str, fn: Runnable, *, needs_leader: bool = True) -> None:
        """A long-running coroutine function started with the controllers (or at once, without leader)."""
        self._runnables.append((name, fn, needs_leader))

    def add_readiness_check(self, name: str, check: Check) -> None:
        self.servers.ready.add(name, check)

    def add_health_check(self, name: str, check: Check) -> None:
        self.servers.health.add(name, check)

    @property
    def events(self) -> EventRecorder:
        if self._events is None:
            self._events = EventRecorder(self.client, self.component, self.identity)
        return self._events

    def caches_synced(self) -> bool:
        return all(inf.synced for inf in self._informers.values())

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    # -- running ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> list[signal.Signals]:
        if not self.handle_signals:
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): the caller stops us
        return installed

    async def run(self) -> None:
        """Run until stop() or a signal; raises LeaderElectionLost, CacheSyncTimeout or RunnableFailed."""
        installed = self._install_signals()
        tasks: dict[str, asyncio.Task[Any]] = {}
        leader_task: asyncio.Task[bool] | None = None
        stop_task: asyncio.Task[Any] | None = None
        lost = False
        crashed: list[str] = []
        try:
            await self.servers.start()
            self._started_informers = True
            for inf in self._informers.values():
                await inf.start()
            for name, fn, needs_leader in self._runnables:
                if not needs_leader:
                    tasks[name] = asyncio.create_task(fn(), name=name)

            stop_task = asyncio.create_task(self._stop.wait())
            if self.elector is not None:
                leader_task = asyncio.create_task(self.elector.run(), name="leader-election")
                won = asyncio.create_task(self.elector.wait_leader())
                done, _ = await asyncio.wait(
                    {won, stop_task, leader_task}, return_when=asyncio.FIRST_COMPLETED
                )
                won.cancel()
                if stop_task in done or (leader_task in done and not self.elector.is_leader):
                    return
            self.leading.set()

            synced = asyncio.create_task(self._wait_synced())
            done, _ = await asyncio.wait({synced, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if stop_task in done:
                synced.cancel()
                return
            synced.result()  # raises CacheSyncTimeout

            for c in self.controllers:
                tasks[f"controller-{c.name}"] = asyncio.create_task(c.run(), name=f"controller-{c.name}")
            for name, fn, needs_leader in self._runnables:
                if needs_leader:
                    tasks[name] = asyncio.create_task(fn(), name=name)
            log.info("manager running", extra={"controllers": [c.name for c in self.controllers]})

            waiters: set[asyncio.Task[Any]] = {stop_task, *tasks.values()}
            if leader_task is not None:
                waiters.add(leader_task)
            while True:
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if stop_task in done:
                    break
                if leader_task is not None and leader_task in done:
                    lost = True
                    break
                for t in done:
                    waiters.discard(t)
                    name = t.get_name()
                    if t.cancelled():
                        continue
                    if t.exception() is not None:
                        log.error("%s crashed", name, exc_info=t.exception())
                        crashed.append(name)
                        self._stop.set()
        finally:
            self.leading.clear()
            if stop_task is not None:
                stop_task.cancel()
            await self._shutdown(tasks, leader_task, graceful=not lost)
            for sig in installed:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)
        if crashed:
            raise RunnableFailed(f"crashed: {', '.join(crashed)}")
        if lost:
            raise LeaderElectionLost(
                f"lost lease {self.elector.namespace}/{self.elector.name}" if self.elector else ""
            )

    async def _wait_synced(self) -> None:
        for inf in self._informers.values():
            if not await inf.wait_synced(self.cache_sync_timeout):
                raise CacheSyncTimeout(f"{inf!r} did not sync within {self.cache_sync_timeout}s")

    async def _shutdown(
        self, tasks: dict[str, asyncio.Task[Any]], leader_task: asyncio.Task[bool] | None, graceful: bool
    ) -> None:
        for c in self.controllers:
            c.stop()
        controllers = {f"controller-{c.name}" for c in self.controllers}
        draining = [t for n, t in tasks.items() if n in controllers and not t.done()]
        if draining:
            # After a lost lease another replica may already lead: stop writing now, not gracefully.
            timeout = self.graceful_shutdown_timeout if graceful else 0
            _, still = await asyncio.wait(draining, timeout=timeout)
            for t in still:
                t.cancel()
        # Other runnables (servers such as the webhook) run until cancelled: they served while the
        # controllers drained, and waiting on them would only spend the whole grace period.
        rest = [t for n, t in tasks.items() if n not in controllers and not t.done()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        if self._events is not None:
            with contextlib.suppress(Exception):
                await self._events.stop()
        # Release the lease only after the controllers have stopped writing.
        if self.elector is not None:
            self.elector.stop()
        if leader_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(leader_task), timeout=10)
            if not leader_task.done():
                leader_task.cancel()
        for inf in self._informers.values():
            await inf.wait_stopped()
        await self.servers.stop()
        log.info("manager stopped")
