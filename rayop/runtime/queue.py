"""A rate-limited, delaying work queue with client-go's semantics, for asyncio.

The guarantees reconcilers rely on (client-go `util/workqueue`):

- A key waiting in the queue is held once, however many events arrive for it (dedupe: events merge).
- A key is handed to at most one worker at a time. If it is added while being processed it is marked
  dirty and handed out again after `done()`, so the newest state is always reconciled once more.
- `add_after` keeps only the earliest pending deadline per key.
- `add_rate_limited` delays by max(per-key exponential backoff 5 ms .. 1000 s, an overall 10 qps /
  burst 100 token bucket): client-go's `DefaultTypedControllerRateLimiter`. `forget()` resets the key's
  backoff after a success.

All methods except `get()` are synchronous and must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from rayop.runtime import metrics

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """`get()` on a queue that was shut down and has nothing left to hand out."""


class ItemExponentialRateLimiter(Generic[K]):
    """Per-key exponential backoff: base * 2^failures, capped."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        # Cap the exponent first: 2**n overflows float for large n.
        if n > 64:
            return self.cap
        return float(min(self.cap, self.base * (2**n)))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """Overall token bucket (qps, burst); each call reserves a token and returns how long to wait for it."""

    def __init__(
        self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self) -> float:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        # Tokens may go negative: later reservations queue up behind earlier ones, as with rate.Limiter.
        return -self._tokens / self.qps


class RateLimiter(Generic[K]):
    """max(per-item exponential, overall bucket), like client-go's default controller rate limiter."""

    def __init__(
        self,
        base: float = 0.005,
        cap: float = 1000.0,
        qps: float = 10.0,
        burst: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.item: ItemExponentialRateLimiter[K] = ItemExponentialRateLimiter(base, cap)
        self.bucket = BucketRateLimiter(qps, burst, clock)

    def when(self, key: K) -> float:
        return max(self.item.when(key), self.bucket.when())

    def forget(self, key: K) -> None:
        self.item.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.item.num_requeues(key)


class WorkQueue(Generic[K]):
    """Dedupe, one-worker-per-key, delayed and rate-limited adds. See the module docstring."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter[K] | None = None) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[K] = rate_limiter or RateLimiter()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: dict[K, float] = {}  # key -> monotonic start of processing
        self._added_at: dict[K, float] = {}
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._m_depth = metrics.WQ_DEPTH.labels(name, name)
        self._m_adds = metrics.WQ_ADDS.labels(name, name)
        self._m_retries = metrics.WQ_RETRIES.labels(name, name)
        self._m_queue_dur = metrics.WQ_QUEUE_DURATION.labels(name, name)
        self._m_work_dur = metrics.WQ_WORK_DURATION.labels(name, name)
        metrics.WQ_UNFINISHED.labels(name, name).set_function(self._unfinished_seconds)
        metrics.WQ_LONGEST.labels(name, name).set_function(self._longest_running)

    # -- core queue ------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        if self._shutting_down:
            return
        if key in self._dirty:
            return
        self._m_adds.inc()
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key in self._processing:
            # Re-queued by done(): never hand one key to two workers.
            return
        self._queue.append(key)
        self._m_depth.set(len(self._queue))
        self._wake_one()

    async def get(self) -> K:
        """Wait for a key and mark it processing; raises QueueShutDown once shut down and drained."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Pass a wake-up we consumed on to the next waiter so no item is stranded.
                if fut.done() and not fut.cancelled():
                    self._wake_one()
                raise
            finally:
                if fut in self._getters:
                    self._getters.remove(fut)
        key = self._queue.popleft()
        self._m_depth.set(len(self._queue))
        now = time.monotonic()
        added = self._added_at.pop(key, now)
        self._m_queue_dur.observe(now - added)
        self._processing[key] = now
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        started = self._processing.pop(key, None)
        if started is not None:
            self._m_work_dur.observe(time.monotonic() - started)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._m_depth.set(len(self._queue))
            self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- delays ----------------------------------------------------------------------------------

    def add_after(self, key: K, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._waiting.get(key)
        if existing is not None:
            if existing[0] <= when:
                return  # an earlier wake-up is already pending; it covers this one
            existing[1].cancel()
        handle = loop.call_at(when, self._fire, key)
        self._waiting[key] = (when, handle)

    def _fire(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        self._m_retries.inc()
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    # -- lifecycle and introspection -------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop accepting keys; workers drain what is queued, then get() raises QueueShutDown."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def shutdown_now(self) -> None:
        """Shut down and drop whatever is still queued."""
        self.shutdown()
        self._queue.clear()
        self._dirty.clear()
        self._added_at.clear()
        self._m_depth.set(0)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        return len(self._queue)

    def pending_delayed(self) -> int:
        return len(self._waiting)

    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    def _unfinished_seconds(self) -> float:
        # Gauges are read from the scrape thread: iterate over a snapshot, never the live dict.
        now = time.monotonic()
        return sum(now - t for t in list(self._processing.values()))

    def _longest_running(self) -> float:
        started = list(self._processing.values())
        if not started:
            return 0.0
        return time.monotonic() - min(started)
