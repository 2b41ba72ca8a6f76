"""Work queue semantics (client-go's): dedupe, one worker per key, delays, rate limits, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rayop.runtime.queue import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    QueueShutDown,
    RateLimiter,
    WorkQueue,
)


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_dedupe() -> None:
    q: WorkQueue[str] = WorkQueue("t-dedupe")
    for _ in range(3):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0


async def test_key_added_while_processing_waits_for_done() -> None:
    q: WorkQueue[str] = WorkQueue("t-processing")
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # never handed to a second worker while the first holds it
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_one_worker_per_key_under_concurrency() -> None:
    q: WorkQueue[int] = WorkQueue("t-concurrency")
    active: dict[int, int] = {}
    overlaps = 0
    processed = 0

    async def worker() -> None:
        nonlocal overlaps, processed
        while True:
            try:
                k = await q.get()
            except QueueShutDown:
                return
            active[k] = active.get(k, 0) + 1
            if active[k] > 1:
                overlaps += 1
            await asyncio.sleep(0.001)
            if processed < 200:
                q.add(k)  # re-add while processing: must be deferred, never parallel
            processed += 1
            active[k] -= 1
            q.done(k)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for k in range(3):
        q.add(k)
    await eventually(lambda: processed >= 200)
    q.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == 0


async def test_add_after_keeps_earliest_deadline() -> None:
    q: WorkQueue[str] = WorkQueue("t-after")
    q.add_after("a", 30.0)
    q.add_after("a", 0.05)  # earlier wins
    q.add_after("a", 60.0)  # later is covered by the pending earlier one
    assert len(q) == 0 and q.pending_delayed() == 1
    assert await asyncio.wait_for(q.get(), 10) == "a"
    assert q.pending_delayed() == 0
    q.done("a")
    q.add_after("b", 0)
    assert len(q) == 1


async def test_add_rate_limited_and_forget() -> None:
    q: WorkQueue[str] = WorkQueue("t-rl", RateLimiter(base=0.001, cap=1.0))
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert await asyncio.wait_for(q.get(), 10) == "a"
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_item_exponential_backoff() -> None:
    rl: ItemExponentialRateLimiter[str] = ItemExponentialRateLimiter(0.005, 1000.0)
    delays = [rl.when("k") for _ in range(6)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16])
    for _ in range(100):
        last = rl.when("k")
    assert last == 1000.0
    assert rl.when("other") == 0.005
    rl.forget("k")
    assert rl.when("k") == 0.005


def test_bucket_allows_burst_then_spaces_at_qps() -> None:
    clock = FakeClock()
    b = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert all(b.when() == 0 for _ in range(100))
    assert b.when() == pytest.approx(0.1)
    assert b.when() == pytest.approx(0.2)  # reservations queue behind each other
    clock.t += 1.0
    assert b.when() == pytest.approx(0.0)  # 10 tokens refilled covered the 2 reserved + this one


def test_default_limiter_is_max_of_both() -> None:
    clock = FakeClock()
    rl: RateLimiter[str] = RateLimiter(clock=clock)
    for _ in range(100):
        rl.when("x")  # burst used up; per-item delay for "x" grew big
    assert rl.when("fresh") == pytest.approx(0.1)  # bucket dominates for a fresh key
    assert rl.when("x") == 1000.0  # per-item cap dominates


async def test_shutdown_drains_then_raises() -> None:
    q: WorkQueue[str] = WorkQueue("t-shutdown")
    q.add("a")
    waiter_q: WorkQueue[str] = WorkQueue("t-shutdown-2")
    waiting = asyncio.create_task(waiter_q.get())
    await asyncio.sleep(0)
    q.shutdown()
    waiter_q.shutdown()
    assert await q.get() == "a"
    with pytest.raises(QueueShutDown):
        await q.get()
    with pytest.raises(QueueShutDown):
        await waiting
    q.add("b")  # ignored after shutdown
    assert len(q) == 0


async def test_cancelled_getter_does_not_strand_items() -> None:
    q: WorkQueue[str] = WorkQueue("t-cancel")
    g1 = asyncio.create_task(q.get())
    g2 = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    g1.cancel()
    await asyncio.sleep(0)
    assert await asyncio.wait_for(g2, 5) == "a"
    assert g1.cancelled()
