"""How the client paces itself: an optional client-side token bucket, and the wait before a retry the
server asked for."""

from __future__ import annotations

import asyncio
import random
import time

# 429 (Too Many Requests) and 5xx answers with Retry-After are retried after the wait the server asks for,
# up to this many times, as client-go does (rest.Request's maxRetries 10, checkWait).
MAX_RETRIES = 10
RETRY_BACKOFF_BASE = 0.5  # seconds; doubles per retry of one request, at least the server's Retry-After
RETRY_BACKOFF_CAP = 32.0


def retry_delay(retry_after: float, attempt: int) -> float:
    """How long to wait before sending a request again: what the server asked for, at least a backoff
    that doubles per attempt, plus up to 20% jitter so that many requests turned away together do not
    come back together."""
    backoff = min(RETRY_BACKOFF_CAP, RETRY_BACKOFF_BASE * 2**attempt)
    return float(max(retry_after, backoff) * random.uniform(1.0, 1.2))


class TokenBucket:
    """Client-side rate limit (qps/burst), like client-go's flowcontrol. Off unless qps > 0: an operator may
    set one (`--qps`, `--burst`) to cap what it sends to a shared API server."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.last = time.monotonic()
        self.lock = asyncio.Lock()
        self.waited_seconds = 0.0

    async def take(self) -> None:
        if self.qps <= 0:
            return
        async with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
            self.last = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.qps
                self.waited_seconds += wait
                await asyncio.sleep(wait)
                self.tokens = 0.0
                self.last = time.monotonic()
            else:
                self.tokens -= 1
