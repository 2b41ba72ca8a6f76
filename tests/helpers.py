"""Polling helpers: tests synchronise on outcomes with a deadline, never on bare sleeps."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until predicate() is truthy; return its value or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate} (last: {last!r})")


async def eventually(
    predicate: Callable[[], Awaitable[Any] | Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
) -> Any:
    """Async variant: predicate may be sync or async; exceptions count as 'not yet' until the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    err: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            res = predicate()
            if inspect.isawaitable(res):
                res = await res
            last, err = res, None
            if res:
                return res
        except AssertionError as e:
            err = e
        except Exception as e:
            err = e
        await asyncio.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what or predicate} (last: {last!r}, error: {err!r})"
    )
