"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

- A candidate takes the Lease when it is free or when its record has not changed for
  `lease_duration` seconds *as observed locally* (clocks of different hosts are never compared).
- The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it stops leading.
- Every write carries the resourceVersion it read, so two candidates never both win (409 for the loser).
- Losing the lease is final for the process: on_stopped runs and run() returns; the manager then exits,
  as controller-runtime does, because reconcilers cannot be trusted to have stopped writing otherwise.
- On a graceful stop the leader releases the Lease (empty holder) so a standby takes over at once.

Defaults 15/10/2 s are controller-runtime's; the Lease name KubeRay uses is `ray-operator-leader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rayop.base.times import format_micro_time, utcnow
from rayop.runtime import metrics
from rayop.runtime.client import LEASES, ApiClient, ApiError

log = logging.getLogger("rayop.runtime.leader")

Callback = Callable[[], "Awaitable[None] | None"]


def _now_micro() -> str:
    return format_micro_time(utcnow())


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Acquire, hold and release one Lease. See the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        name: str = "ray-operator-leader",
        identity: str | None = None,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started: Callback | None = None,
        on_stopped: Callback | None = None,
        release_on_stop: bool = True,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.release_on_stop = release_on_stop
        self._observed: dict[str, Any] | None = None  # last Lease read or written
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # monotonic time the spec was last seen to change
        self._leading = asyncio.Event()
        self._stop = asyncio.Event()
        self.lost = False
        self._m_leader = metrics.LEADER.labels(name)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def holder(self) -> str | None:
        spec = self._observed_spec or {}
        return spec.get("holderIdentity") or None

    async def wait_leader(self) -> None:
        await self._leading.wait()

    def stop(self) -> None:
        """Stop campaigning or leading (graceful; releases the Lease if held)."""
        self._stop.set()

    async def run(self) -> bool:
        """Campaign, then lead until stop() (returns True) or until the lease is lost (returns False)."""
        try:
            if not await self._acquire():
                return True
            self._leading.set()
            self._m_leader.set(1)
            log.info(
                "became leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
            )
            await _call(self.on_started)
            kept = await self._renew_loop()
            self._leading.clear()
            self._m_leader.set(0)
            if kept:
                if self.release_on_stop:
                    await self._release()
                return True
            self.lost = True
            log.error("leader election lost", extra={"lease": f"{self.namespace}/{self.name}"})
            return False
        finally:
            if self._leading.is_set():
                self._leading.clear()
                self._m_leader.set(0)
            if self.lost or self._stop.is_set():
                await _call(self.on_stopped)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if stop() was called meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    async def _acquire(self) -> bool:
        while not self._stop.is_set():
            try:
                if await self._try_acquire_or_renew():
                    return True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("leader election: %s", e)
            # client-go's JitterUntil(retryPeriod, 1.2)
            if await self._sleep_or_stop(self.retry_period * (1 + random.random() * 1.2)):
                return False
        return False

    async def _renew_loop(self) -> bool:
        """Renew until stop() (True) or until renewing failed for renew_deadline (False)."""
        last_ok = time.monotonic()
        while True:
            if await self._sleep_or_stop(self.retry_period):
                return True
            try:
                async with asyncio.timeout(max(0.1, self.renew_deadline - (time.monotonic() - last_ok))):
                    ok = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                ok = False
            except Exception as e:
                log.warning("leader election renew: %s", e)
                ok = False
            if ok:
                last_ok = time.monotonic()
            elif time.monotonic() - last_ok >= self.renew_deadline:
                return False

    async def _try_acquire_or_renew(self) -> bool:
        now = _now_micro()
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as e:
            if not e.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": mine,
            }
            try:
                created = await self.client.create(LEASES, body, self.namespace)
            except ApiError as ce:
                if ce.conflict:
                    return False
                raise
            self._observe(created)
            return True

        spec = lease.get("spec") or {}
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if time.monotonic() - self._observed_at < duration:
                return False  # held by someone else and not expired by our observation
        new_spec = dict(spec)
        if holder == self.identity:
            new_spec["renewTime"] = now
            new_spec["leaseDurationSeconds"] = mine["leaseDurationSeconds"]
        else:
            new_spec.update(mine)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            updated = await self.client.replace(LEASES, lease)
        except ApiError as e:
            if e.conflict:
                return False
            raise
        self._observe(updated)
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = dict(spec)
            self._observed_at = time.monotonic()
        self._observed = lease

    async def _release(self) -> None:
        if self._observed is None:
            return
        lease = dict(self._observed)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        spec.update({"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _now_micro()})
        lease["spec"] = spec
        try:
            async with asyncio.timeout(self.retry_period * 2):
                await self.client.replace(LEASES, lease)
            log.info("released leader lease", extra={"lease": f"{self.namespace}/{self.name}"})
        except Exception as e:
            log.warning("could not release lease: %s", e)


async def _call(cb: Callback | None) -> None:
    if cb is None:
        return
    try:
        res = cb()
        if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
            await res
    except Exception:
        log.exception("leader election callback failed")
